"""``manage.py runzartworker`` options, run in this process."""

from typing import Any

import pytest
from django.core.management import CommandError, call_command

import django_zart as zart

pytestmark = pytest.mark.django_db(transaction=True)


def test_burst_runs_everything_due_and_exits() -> None:
    ids = [zart.start("arith", {"a": i, "b": 0}) for i in range(5)]
    call_command(
        "runzartworker", "--burst", "--concurrency", "2", "--queue", "default", verbosity=0
    )
    assert [zart.wait_completion(i, 1)["sum"] for i in ids] == [110, 111, 112, 113, 114]


def test_other_queues_are_left_alone() -> None:
    execution_id = zart.start("arith", {"a": 1, "b": 1}, queue="reports")
    call_command("runzartworker", "--burst", verbosity=0)
    assert zart.status(execution_id).status == "PENDING"
    call_command("runzartworker", "--burst", "--queue", "reports", verbosity=0)
    assert zart.status(execution_id).status == "COMPLETED"


@pytest.mark.parametrize(
    "args",
    [["--concurrency", "0"], ["--poll-interval", "soon"], ["--orphan-timeout", "0"]],
)
def test_bad_options_are_refused(args: list[str]) -> None:
    with pytest.raises(CommandError):
        call_command("runzartworker", "--burst", *args)


def test_help_shows_the_projects_settings_not_the_packages_defaults(settings: Any) -> None:
    from django_zart.management.commands.runzartworker import Command

    settings.ZART = {**settings.ZART, "MAX_CONCURRENT_TASKS": 7, "QUEUES": ["mail", "web"]}
    text = " ".join(Command().create_parser("manage.py", "runzartworker").format_help().split())
    assert 'ZART["MAX_CONCURRENT_TASKS"], here 7' in text
    assert 'ZART["QUEUES"], here mail,web' in text
