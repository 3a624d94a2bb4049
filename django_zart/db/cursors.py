"""The cursor the store's own statements run on: prepared on the server when Django's
connection allows prepared statements.

Django leaves them off (``OPTIONS["prepare_threshold"]`` defaults to ``None``), so that
a pooler in transaction mode, which hands each transaction any server connection, keeps
working; a project that connects directly, or through PgBouncer 1.21+ with
``max_prepared_statements``, turns them on by setting ``prepare_threshold``. The store
follows that one choice. Its statements run thousands of times a minute on each worker
connection, and one parsed and planned once per connection costs the server about half
the CPU of one planned on every call (``benchmarks/README.md``); its parameters also
travel apart from the statement, which saves the worker quoting them.

Django's own cursor is kept where someone watches it: with queries logged (``DEBUG``,
``CaptureQueriesContext``) or execute wrappers installed, every statement goes through
it as before, unprepared.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, LiteralString

import psycopg
from django.db import connection
from django.db.backends.postgresql.psycopg_any import register_tzloader
from psycopg.postgres import types
from psycopg.pq import Format

_TIMESTAMPTZ_OID = types["timestamptz"].oid


class PreparedCursor(psycopg.Cursor[Any]):
    """Binds parameters on the server and prepares every statement it runs."""

    def execute(  # type: ignore[override]
        self, query: LiteralString, params: Any = None, **kwargs: Any
    ) -> PreparedCursor:
        kwargs["prepare"] = True
        super().execute(query, params, **kwargs)
        return self


def prepares() -> bool:
    """Whether the store's statements are prepared on the current connection."""
    connection.ensure_connection()
    raw = connection.connection
    return (
        isinstance(raw, psycopg.Connection)
        and raw.prepare_threshold is not None
        and not connection.queries_logged
        and not connection.execute_wrappers
    )


@contextmanager
def store_cursor() -> Iterator[Any]:
    """A cursor for one of the store's statements, with Django's errors and checks."""
    connection.close_if_health_check_failed()
    if not prepares():
        with connection.cursor() as django_cursor:
            yield django_cursor
        return
    connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        cursor = PreparedCursor(connection.connection)
        loader = cursor.adapters.get_loader(_TIMESTAMPTZ_OID, Format.TEXT)
        if getattr(loader, "timezone", None) != connection.timezone:
            register_tzloader(connection.timezone, cursor)  # as Django's own cursors do
        try:
            yield cursor
        finally:
            cursor.close()
