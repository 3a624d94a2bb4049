"""System checks: a bad ``ZART`` setting, a risky database, a clash of workflow or step
names, or missing migrations is reported by ``manage.py check`` and before every command.

| id | level | what |
| --- | --- | --- |
| ``django_zart.E001`` | Error | a ``ZART`` value of the wrong type or out of its range |
| ``django_zart.E002`` | Error | an unknown ``ZART`` key (its setting keeps its default) |
| ``django_zart.E003`` | Error | ``LISTEN_DATABASE`` is not PostgreSQL, the default is |
| ``django_zart.E004`` | Error | one workflow name for two functions |
| ``django_zart.E005`` | Error | one step name for two functions |
| ``django_zart.W001`` | Warning | SQLite without ``transaction_mode`` IMMEDIATE |
| ``django_zart.W002`` | Warning | a database other than PostgreSQL or SQLite |
| ``django_zart.W003`` | Warning | SQLite without the WAL journal |
| ``django_zart.W004`` | Warning | an ``EVENT_TOKENS`` token shorter than 16 characters |
| ``django_zart.W005`` | Warning | django_zart migrations not applied (``--database``) |

Only ``check_migrations`` reads the database, and only for the aliases Django passes in
``databases`` (``check --database default``, ``migrate``), as Django's own database checks
do: a plain ``manage.py check`` stays offline.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.sqlite3.creation import DatabaseCreation

from . import registry, steps
from .conf import (
    MIN_TOKEN_LENGTH,
    invalid_values,
    queue_rates,
    unknown_key_hint,
    unknown_keys,
    validate,
)

SETTINGS_HINT = "See the Settings section of the django-zart README."

SQLITE_OPTIONS = (
    'DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20, '
    '"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}'
)
SQLITE_HINT = (
    "Set %s: IMMEDIATE takes the write lock when a transaction starts, so a writer waits "
    "for it (up to the timeout, in seconds) instead of failing mid-transaction; WAL lets "
    "readers and a writer run side by side. Use PostgreSQL for several workers or machines."
    % SQLITE_OPTIONS
)
_WAL = re.compile(r"journal_mode\s*=\s*['\"]?wal\b", re.IGNORECASE)


@register()
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    raw = getattr(settings, "ZART", {})
    invalid = invalid_values(raw)
    messages: list[CheckMessage] = [
        Error(problem, hint=SETTINGS_HINT, id="django_zart.E001") for problem in invalid
    ]
    if not isinstance(raw, dict):
        return messages
    messages += [
        Error(
            "Unknown key %r in ZART: it sets nothing." % (key,),
            hint=unknown_key_hint(key),
            id="django_zart.E002",
        )
        for key in unknown_keys(raw)
    ]
    if not invalid:  # the checks below take the values' types and ranges for granted
        messages += _check_listen_database(raw) + _check_event_tokens(raw)
    return messages


def _check_listen_database(raw: dict[str, Any]) -> list[CheckMessage]:
    """The worker's ``LISTEN`` connection talks to PostgreSQL, whatever its alias says."""
    alias = raw.get("LISTEN_DATABASE", DEFAULT_DB_ALIAS)
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        return []  # only PostgreSQL workers LISTEN
    vendor = connections[alias].vendor
    if vendor == "postgresql":
        return []
    return [
        Error(
            'ZART["LISTEN_DATABASE"] is %r, a %s database: workers LISTEN on PostgreSQL, '
            "where the default database is." % (alias, vendor),
            hint="Name an alias of the default database's PostgreSQL server, e.g. a direct "
            "connection beside one through PgBouncer.",
            id="django_zart.E003",
        )
    ]


def _check_event_tokens(raw: dict[str, Any]) -> list[CheckMessage]:
    short = sum(len(token) < MIN_TOKEN_LENGTH for token in raw.get("EVENT_TOKENS", ()))
    if not short:
        return []
    return [
        Warning(
            'ZART["EVENT_TOKENS"] has %d token(s) shorter than %d characters: anyone who '
            "guesses one can send events to any execution." % (short, MIN_TOKEN_LENGTH),
            hint="Use long random tokens, e.g. python -c "
            '"import secrets; print(secrets.token_urlsafe(32))".',
            id="django_zart.W004",
        )
    ]


@register()
def check_names(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Two functions under one name: executions of the name would run the first one."""
    messages: list[CheckMessage] = []
    for clashes, error_id in (
        (registry.clashes, "django_zart.E004"),
        (steps.clashes, "django_zart.E005"),
    ):
        messages += [
            Error(
                clashes.message(name),
                hint="Rename one of them (keep the name of the one whose executions or "
                "checkpoints are stored), or import its module under one name only.",
                obj=name,
                id=error_id,
            )
            for name, _paths in clashes
        ]
    return messages


@register()
def check_limits(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """A concurrency limit and a queue's rate limit are claimed apart: not both at once."""
    raw = getattr(settings, "ZART", {})
    if not isinstance(raw, dict) or validate(raw):
        return []  # check_settings reports it
    rates = queue_rates(raw.get("QUEUES"))
    return [
        Error(
            "Workflow %r has a concurrency limit and its queue %r a rate limit; a workflow "
            "can have one or the other." % (workflow.name, workflow.queue),
            hint="Put the workflow in a queue without a rate, or drop its concurrency.",
            obj=workflow.name,
            id="django_zart.E006",
        )
        for workflow in registry.limited_workflows()
        if workflow.queue in rates
    ]


@register(Tags.database)
def check_database(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """The default database's vendor and, for SQLite, its options (read from the settings)."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor == "postgresql":
        return []
    if connection.vendor == "sqlite":
        return _check_sqlite(connection)
    return [
        Warning(
            "django-zart is tested on PostgreSQL and SQLite, not on %s." % connection.vendor,
            hint="Use PostgreSQL, or SQLite for one machine.",
            id="django_zart.W002",
        )
    ]


def _check_sqlite(connection: BaseDatabaseWrapper) -> list[CheckMessage]:
    options = connection.settings_dict.get("OPTIONS", {})
    messages: list[CheckMessage] = []
    if options.get("transaction_mode") not in ("IMMEDIATE", "EXCLUSIVE"):
        messages.append(
            Warning(
                "SQLite without transaction_mode IMMEDIATE: concurrent writers (a worker "
                "and a web process) can fail with 'database is locked'.",
                hint=SQLITE_HINT,
                id="django_zart.W001",
            )
        )
    in_memory = DatabaseCreation.is_in_memory_db(connection.settings_dict["NAME"])
    if not in_memory and not _WAL.search(str(options.get("init_command", ""))):
        messages.append(
            Warning(
                "SQLite without journal_mode=WAL: a writer and its readers lock each other "
                "out, so a busy worker stalls the admin and the API, and they it.",
                hint=SQLITE_HINT,
                id="django_zart.W003",
            )
        )
    return messages


@register(Tags.database)
def check_migrations(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """django_zart migrations not applied to the default database, which django-zart uses.

    A Warning, not an Error: ``migrate`` runs the checks on its database before it
    migrates, and an Error there would stop the command that fixes it. Not shown by
    ``migrate`` itself, which is about to apply them.
    """
    if not databases or DEFAULT_DB_ALIAS not in databases:
        return []
    if sys.argv[1:2] == ["migrate"]:
        return []
    if app_configs is not None and not any(c.name == "django_zart" for c in app_configs):
        return []
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes("django_zart"))
    except DatabaseError as exc:
        return [
            Warning(
                "Cannot tell whether the django_zart migrations are applied to the "
                "database %r: %s" % (DEFAULT_DB_ALIAS, str(exc).strip()),
                hint="Check that the database is reachable.",
                id="django_zart.W005",
            )
        ]
    pending = [migration.name for migration, _ in plan if migration.app_label == "django_zart"]
    if not pending:
        return []
    return [
        Warning(
            "%d django_zart migration(s) not applied to the database %r: %s. Workers, the "
            "admin and the API fail on the missing tables or columns."
            % (len(pending), DEFAULT_DB_ALIAS, ", ".join(pending)),
            hint="Run manage.py migrate.",
            id="django_zart.W005",
        )
    ]
