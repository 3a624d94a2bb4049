import pytest
from django.core.management import call_command
from django.test import override_settings

from django_zart.checks import check_settings


def test_valid_settings_pass() -> None:
    assert check_settings() == []


@override_settings(
    ZART={"POLL_INTERVAL": "soon", "MAX_CONCURRENT_TASKS": 0, "QUEUES": "a", "TYPO": 1}
)
def test_bad_settings_are_reported() -> None:
    messages = [m.msg for m in check_settings()]
    assert any("POLL_INTERVAL" in m for m in messages)
    assert any("MAX_CONCURRENT_TASKS" in m for m in messages)
    assert any("QUEUES" in m for m in messages)
    assert any("TYPO" in m for m in messages)
    assert {m.id for m in check_settings()} == {"django_zart.E001"}


@pytest.mark.django_db
def test_check_command_runs_clean() -> None:
    call_command("check", "--fail-level", "ERROR")
