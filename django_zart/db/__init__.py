"""The store: every write a worker makes for claimed work (see ``base.Store``).

``get_store()`` returns the implementation for the default database. This package's
``__init__`` imports no models: ``db.types`` is imported by the public API, before the
app registry is ready, so the stores are imported when first asked for.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from django.db import connection

if TYPE_CHECKING:
    from .base import Store

__all__ = ["get_store"]


@cache
def get_store() -> Store:
    if connection.vendor == "postgresql":
        from .postgresql import PostgresStore

        return PostgresStore()
    from .base import Store

    return Store()
