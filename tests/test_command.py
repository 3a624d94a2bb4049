"""``manage.py runzartworker`` options, run in this process."""

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
