"""Every write a worker makes for claimed work, and the SQL behind it.

``get_store()`` returns the implementation for the default database: PostgreSQL gets
single-statement claims and finishes; other databases (SQLite, the embedded default) use
short ORM transactions.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from django.db import connection

from .types import Checkpoint, Claim

if TYPE_CHECKING:
    from .base import Store

__all__ = ["Checkpoint", "Claim", "get_store"]


@cache
def get_store() -> Store:
    if connection.vendor == "postgresql":
        from .postgresql import PostgresStore

        return PostgresStore()
    from .base import Store

    return Store()
