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

A prepared statement outlives the schema it was planned on: once a migration changes the
type of a column it returns, PostgreSQL refuses it ("cached plan must not change result
type", SQLSTATE 0A000) for as long as its connection lives. Such a connection is closed at
once, so that the next statement prepares afresh on a new one; the error still reaches
the caller, whose transaction it broke (the store replays its work, see ``guard``).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, LiteralString

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql.psycopg_any import register_tzloader
from psycopg.postgres import types
from psycopg.pq import Format

_TIMESTAMPTZ_OID = types["timestamptz"].oid


class PreparedCursor(psycopg.Cursor[Any]):
    """Binds parameters on the server and prepares every statement it runs.

    One per connection, kept with it: the store's statements run one at a time.
    """

    in_use = False

    def execute(  # type: ignore[override]
        self, query: LiteralString, params: Any = None, **kwargs: Any
    ) -> PreparedCursor:
        kwargs["prepare"] = True
        super().execute(query, params, **kwargs)
        return self


_cursors: weakref.WeakKeyDictionary[psycopg.Connection[Any], PreparedCursor] = (
    weakref.WeakKeyDictionary()
)


def prepares(db: BaseDatabaseWrapper | None = None) -> bool:
    """Whether the store's statements are prepared on the current connection."""
    db = db or connections[DEFAULT_DB_ALIAS]
    db.ensure_connection()
    raw = db.connection
    return (
        isinstance(raw, psycopg.Connection)
        and raw.prepare_threshold is not None
        and not db.queries_logged
        and not db.execute_wrappers
    )


@contextmanager
def store_cursor() -> Iterator[Any]:
    """A cursor for one of the store's statements, with Django's errors and checks."""
    db = connections[DEFAULT_DB_ALIAS]  # looked up once: each lookup costs a context read
    db.close_if_health_check_failed()
    if not prepares(db):
        with db.cursor() as django_cursor:
            yield django_cursor
        return
    db.validate_thread_sharing()
    db.validate_no_broken_transaction()
    with db.wrap_database_errors:
        cursor = _cursor_of(db)
        cursor.in_use = True
        try:
            yield cursor
        except psycopg.errors.FeatureNotSupported:
            db.close()  # its prepared statements are stale
            raise
        finally:
            cursor.in_use = False


def _cursor_of(db: BaseDatabaseWrapper) -> PreparedCursor:
    raw = db.connection
    cursor = _cursors.get(raw)
    if cursor is None or cursor.closed or cursor.in_use:
        cursor = PreparedCursor(raw)
        loader = cursor.adapters.get_loader(_TIMESTAMPTZ_OID, Format.TEXT)
        if getattr(loader, "timezone", None) != db.timezone:
            register_tzloader(db.timezone, cursor)  # as Django's own cursors do
        if raw not in _cursors or _cursors[raw].closed:
            _cursors[raw] = cursor
    return cursor
