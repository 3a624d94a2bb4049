"""System checks, in this process: settings, database options, name clashes, migrations."""

import io
import types
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import CheckMessage
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import OperationalError, connection
from django.db.migrations.recorder import MigrationRecorder
from django.test import override_settings

import django_zart as zart
from django_zart import checks, registry, steps
from django_zart.checks import check_database, check_migrations, check_names, check_settings
from django_zart.conf import CHECKS, DEFAULTS, get_settings
from django_zart.worker import Worker, WorkerOptions

WAL = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"


def ids(messages: list[CheckMessage]) -> list[str]:
    return sorted(str(m.id) for m in messages)


# Settings


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
    assert ids(check_settings()) == ["django_zart.E001"] * 3 + ["django_zart.E002"]


@override_settings(ZART=["POLL_INTERVAL", 1])
def test_a_zart_that_is_not_a_dict_is_one_error() -> None:
    [message] = check_settings()
    assert message.id == "django_zart.E001"
    assert "ZART must be a dict, not list" in message.msg


@override_settings(ZART={"POLL_INTERVALL": 1, "workflow_modules": [], "QUEUE": ["a"]})
def test_an_unknown_key_gets_the_likely_one_as_hint() -> None:
    hints = {m.msg: m.hint for m in check_settings()}
    assert hints == {
        "Unknown key 'POLL_INTERVALL' in ZART: it sets nothing.": "Did you mean 'POLL_INTERVAL'?",
        "Unknown key 'workflow_modules' in ZART: it sets nothing.": (
            "Did you mean 'WORKFLOW_MODULES'?"
        ),
        "Unknown key 'QUEUE' in ZART: it sets nothing.": "Did you mean 'QUEUES'?",
    }


@override_settings(ZART={"NOTHING_LIKE_IT": 1, 7: 1})
def test_an_unknown_key_without_a_likely_one_lists_the_known_keys() -> None:
    messages = check_settings()
    assert ids(messages) == ["django_zart.E002"] * 2
    assert all(str(m.hint).startswith("Known keys: API_TOKENS, EVENT_TOKENS") for m in messages)


@override_settings(ZART={"POLL_INTERVALL": 1})
def test_the_settings_error_outside_the_checks_names_the_likely_key_too() -> None:
    with pytest.raises(ImproperlyConfigured, match="Did you mean 'POLL_INTERVAL'"):
        get_settings()


BAD_VALUES: dict[str, Any] = {
    "POLL_INTERVAL": "soon",
    "MAX_TASKS_PER_POLL": 0,
    "MAX_CONCURRENT_TASKS": "4",
    "SHUTDOWN_TIMEOUT": float("nan"),
    "ORPHAN_TIMEOUT": True,
    "QUEUES": [],
    "MAX_RECOVERIES": -1,
    "MAX_PAYLOAD_BYTES": 10**12,
    "WORKFLOW_MODULES": "shop.workflows",
    "EVENT_TOKENS": [""],
    "LISTEN_DATABASE": "nowhere",
    "WORKER_RETENTION": "a while",
    "FAULT_POINTS": ["sometimes"],
    "API_TOKENS": {"short": ["read"]},
    "RETENTION": {"COMPLETED": "1s"},
    "REDACT_KEYS": "password",
}


def test_every_key_has_a_bad_value_here() -> None:
    assert set(BAD_VALUES) == set(CHECKS) == set(DEFAULTS)


@pytest.mark.parametrize("key", sorted(BAD_VALUES))
def test_a_bad_value_is_an_error_naming_its_key(key: str) -> None:
    with override_settings(ZART={key: BAD_VALUES[key]}):
        [error] = check_settings()
    assert error.id == "django_zart.E001"
    assert error.msg.startswith('ZART["%s"]' % key), error.msg
    assert error.hint


def fake_connections(**aliases: Any) -> dict[str, Any]:
    """Connections by alias, for checks that read only their vendor and settings."""
    return {
        alias: SimpleNamespace(
            vendor=vendor,
            settings_dict={"NAME": "/srv/app.sqlite3", "OPTIONS": options},
        )
        for alias, (vendor, options) in aliases.items()
    }


@pytest.mark.parametrize(
    ("default", "listen", "expected"),
    [
        ("postgresql", "postgresql", []),
        ("postgresql", "sqlite", ["django_zart.E003"]),
        ("sqlite", "sqlite", []),  # SQLite workers do not LISTEN
    ],
)
def test_the_listen_database_must_be_postgresql_where_workers_listen(
    monkeypatch: pytest.MonkeyPatch, default: str, listen: str, expected: list[str]
) -> None:
    monkeypatch.setattr(
        checks, "connections", fake_connections(default=(default, {}), events=(listen, {}))
    )
    monkeypatch.setitem(settings.DATABASES, "events", {})  # an alias, as conf checks
    with override_settings(ZART={"LISTEN_DATABASE": "events"}):
        messages = check_settings()
    assert ids(messages) == expected
    if expected:
        assert "'events', a sqlite database" in messages[0].msg


def test_short_event_tokens_are_a_warning() -> None:
    with override_settings(ZART={"EVENT_TOKENS": ["hook", "x" * 16]}):
        [warning] = check_settings()
    assert warning.id == "django_zart.W004"
    assert "1 token(s) shorter than 16 characters" in warning.msg
    with override_settings(ZART={"EVENT_TOKENS": ["x" * 16]}):
        assert check_settings() == []


# The database's vendor and options


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": WAL}, []),
        ({}, ["django_zart.W001", "django_zart.W003"]),
        ({"transaction_mode": "IMMEDIATE", "timeout": 20}, ["django_zart.W003"]),
        ({"init_command": "PRAGMA journal_mode = 'wal'"}, ["django_zart.W001"]),
        ({"transaction_mode": "EXCLUSIVE", "init_command": "pragma JOURNAL_MODE=wal;"}, []),
        (
            {"transaction_mode": "IMMEDIATE", "init_command": "PRAGMA foreign_keys=ON;"},
            ["django_zart.W003"],
        ),
    ],
)
def test_sqlite_options(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], expected: list[str]
) -> None:
    monkeypatch.setattr(checks, "connections", fake_connections(default=("sqlite", options)))
    messages = check_database()
    assert ids(messages) == expected
    for message in messages:  # the hint says all of it: lock mode, timeout and WAL
        assert '"transaction_mode": "IMMEDIATE"' in str(message.hint)
        assert '"timeout": 20' in str(message.hint)
        assert '"init_command": "%s"' % WAL in str(message.hint)


def test_wal_is_not_asked_of_an_in_memory_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_connections(default=("sqlite", {"transaction_mode": "IMMEDIATE"}))
    fake["default"].settings_dict["NAME"] = ":memory:"
    monkeypatch.setattr(checks, "connections", fake)
    assert check_database() == []


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [("postgresql", []), ("mysql", ["django_zart.W002"]), ("oracle", ["django_zart.W002"])],
)
def test_database_vendors(
    monkeypatch: pytest.MonkeyPatch, vendor: str, expected: list[str]
) -> None:
    monkeypatch.setattr(checks, "connections", fake_connections(default=(vendor, {})))
    messages = check_database()
    assert ids(messages) == expected
    assert all(m.hint and vendor in m.msg for m in messages)


def test_this_database_passes() -> None:
    assert check_database() == []  # tests/settings.py configures SQLite as the README says


# Workflow and step names


def module(name: str, source: str) -> types.ModuleType:
    """Run ``source`` as the module ``name``, as an import would."""
    mod = types.ModuleType(name)
    exec(source, mod.__dict__)  # noqa: S102 - the test's own source
    return mod


GREET = """
import django_zart as zart

@zart.step("clash-say")
def say(text):
    return text

@zart.workflow("clash-greet")
def greet(data):
    return say("hi")
"""


@pytest.mark.usefixtures("isolated_registry")
def test_one_workflow_name_for_two_functions_is_an_error_naming_both() -> None:
    module("shop.workflows", GREET)
    module("billing.workflows", GREET)
    messages = check_names()
    assert ids(messages) == ["django_zart.E004", "django_zart.E005"]
    workflow, step = sorted(messages, key=lambda m: str(m.id))
    assert workflow.msg == (
        "Workflow name 'clash-greet' is used by shop.workflows.greet and "
        "billing.workflows.greet; workflow names must be unique."
    )
    assert step.msg == (
        "Step name 'clash-say' is used by shop.workflows.say and billing.workflows.say; "
        "step names must be unique."
    )
    assert all("Rename one of them" in str(m.hint) for m in messages)
    # The first function keeps the name; using it is refused, so neither runs for the other.
    with pytest.raises(zart.ZartError, match=r"shop\.workflows\.greet and billing"):
        registry.get_workflow("clash-greet")
    with pytest.raises(zart.ZartError, match=r"shop\.workflows\.say and billing"):
        steps.get_step("clash-say")
    with pytest.raises(zart.ZartError, match="must be unique"):
        Worker(WorkerOptions.from_settings(burst=True)).run()
    with pytest.raises(SystemCheckError, match=r"django_zart\.E004"):
        call_command("check")


@pytest.mark.usefixtures("isolated_registry")
def test_a_module_imported_again_is_no_clash() -> None:
    first = module("shop.workflows", GREET)
    again = module("shop.workflows", GREET)
    assert check_names() == []
    assert registry.get_workflow("clash-greet") is again.greet is not first.greet


@pytest.mark.usefixtures("isolated_registry")
def test_three_functions_under_one_name() -> None:
    for name in ("a.workflows", "b.workflows", "c.workflows"):
        module(name, GREET)
    [workflow, _step] = sorted(check_names(), key=lambda m: str(m.id))
    assert "used by a.workflows.greet, b.workflows.greet and c.workflows.greet" in workflow.msg


def test_the_test_workflows_have_no_clash() -> None:
    assert check_names() == []


# Migrations


def test_migrations_are_not_checked_without_a_database() -> None:
    # No django_db mark: a query here would fail the test.
    assert check_migrations() == []
    assert check_migrations(databases=["other"]) == []
    call_command("check", "--fail-level", "WARNING")  # offline, as Django's own checks


@pytest.mark.django_db
def test_applied_migrations_pass() -> None:
    assert check_migrations(databases=["default"]) == []
    call_command("check", "--database", "default", "--fail-level", "WARNING")


@pytest.mark.django_db
def test_missing_migrations_are_a_warning() -> None:
    recorder = MigrationRecorder(connection)
    applied = sorted(name for app, name in recorder.applied_migrations() if app == "django_zart")
    latest = applied[-1]
    recorder.record_unapplied("django_zart", latest)  # undone with the test's transaction
    [warning] = check_migrations(databases=["default"])
    assert warning.id == "django_zart.W005"
    assert warning.msg.startswith(
        "1 django_zart migration(s) not applied to the database 'default': %s." % latest
    )
    assert "manage.py migrate" in str(warning.hint)
    assert check_migrations(databases=["default"], app_configs=[]) == []
    stderr = io.StringIO()
    call_command("check", "--database", "default", stderr=stderr)  # a warning does not fail
    assert "django_zart.W005" in stderr.getvalue()


def test_an_unreachable_database_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(connection: Any) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr("django.db.migrations.executor.MigrationExecutor", unreachable)
    [warning] = check_migrations(databases=["default"])
    assert warning.id == "django_zart.W005"
    assert "Cannot tell" in warning.msg and "connection refused" in warning.msg


@pytest.mark.django_db
def test_check_command_runs_clean() -> None:
    call_command("check", "--fail-level", "ERROR")
