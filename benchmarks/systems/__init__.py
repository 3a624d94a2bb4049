"""One adapter per benchmarked system, driven by ``benchmarks/suite.py``.

Each module defines a ``System`` subclass of :class:`benchmarks.systems.common.System`
(the ones on PostgreSQL job queues also hold their worker's code, run with
``python -m benchmarks.systems.<name>``). Peer modules import their library only when
used, so the suite runs without the ``bench`` extra for ``zart``, ``bare`` and ``pgbench``.
"""

from __future__ import annotations

import importlib
from typing import Any

NAMES = ("bare", "zart", "pgqueuer", "dbos", "procrastinate", "pgbench")
LABELS = {
    "bare": "bare",
    "zart": "django-zart",
    "pgqueuer": "PgQueuer",
    "dbos": "DBOS",
    "procrastinate": "procrastinate",
    "pgbench": "pgbench",
}


def load(name: str) -> Any:
    """The ``System`` class of one adapter module."""
    return importlib.import_module("benchmarks.systems.%s" % name).System
