"""Telling a database outage from a bad value, and dropping dead connections early.

A PostgreSQL restart, a failover or a pooler restart closes every connection. A worker
thread that used its dead connection for the next execution would fail innocent work, so:

* ``drop_dead_connection`` notices a connection the server closed before it is used, at
  the cost of one ``poll()`` on its socket, not a round trip: an idle connection has
  nothing to read until the server sends the error that ends it;
* ``store_operation`` turns what a store write raises into the runtime's signals, by
  type: ``DatabaseUnavailable`` (wait and replay, counting nothing) for connection and
  server failures and for prepared statements a migration made stale, ``StoreRefused``
  (fail the step or the execution once, with the reason) for values the database
  rejects.
"""

from __future__ import annotations

import functools
import select
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import DataError, InterfaceError, NotSupportedError, OperationalError, connection

from .types import DatabaseUnavailable, StoreRefused

P = ParamSpec("P")
R = TypeVar("R")


def store_operation(fn: Callable[P, R]) -> Callable[P, R]:
    """Translate the database errors of one store operation into runtime signals.

    Every ``OperationalError`` of the store's own statements is an outage (a lost
    connection, a server shutting down, a deadlock victim): replaying the claim is always
    safe, since every write is fenced by the claim token. So is a ``NotSupportedError``:
    the store's statements are fixed, and the one way they meet it is a prepared statement
    whose result type a migration changed, on a connection the store cursor has closed.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (OperationalError, InterfaceError, NotSupportedError) as exc:
            raise DatabaseUnavailable(exc) from exc
        except (DataError, UnicodeError) as exc:
            raise StoreRefused(exc) from exc

    return wrapper


CONNECTION_SQLSTATES = ("08", "57P")
"""SQLSTATE classes of a lost connection: connection exceptions (08) and the server
shutting down or refusing connections for now (57P01 to 57P04)."""


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc``, raised by user code, came from losing the connection.

    Told by type and SQLSTATE: a statement error (a deadlock, a timeout, a constraint) is
    the user code's failure; a connection the server ended, or an error the client raised
    without any answer from the server, is the database's. (The connection's own state
    cannot tell: leaving ``transaction.atomic()`` reconnects it.)
    """
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(CONNECTION_SQLSTATES)


def drop_dead_connection() -> bool:
    """Close this thread's connection if the server has ended it; return whether it did.

    Outside a transaction only: inside one, the transaction's own statements report the
    loss. Django opens a fresh connection on the next query.
    """
    raw = connection.connection
    if raw is None or connection.in_atomic_block:
        return False
    if _is_dead(raw):
        connection.close()
        return True
    return False


def _is_dead(raw: object) -> bool:
    if getattr(raw, "closed", False) or getattr(raw, "broken", False):
        return True
    if connection.vendor != "postgresql":
        return False  # SQLite has no server to end the connection
    try:
        fileno = raw.fileno()  # type: ignore[attr-defined]
    except Exception:
        return True
    poller = select.poll()
    poller.register(fileno, select.POLLIN | select.POLLERR | select.POLLHUP)
    # An idle connection that is not LISTENing has nothing to read: anything readable
    # is the server's goodbye (or an end of file).
    return bool(poller.poll(0))
