"""bare: ``bare_worker.py --idle``, the same design's SQL from a plain psycopg loop.

It runs on django-zart's tables (the same database as the ``zart`` adapter) and starts
executions with ``bare_worker.ENQUEUE`` (the rows ``zart.start`` writes, in one
statement). It has no fan-out: parallel branches are not part of the loop.
"""

from __future__ import annotations

import sys
from typing import Any

import psycopg

from benchmarks import bare_worker
from benchmarks.harness import HERE, truncate_tables
from benchmarks.systems.common import System as Base
from benchmarks.systems.common import ZartTables, conninfo


class System(ZartTables, Base):
    name = "bare"
    database = "zart_bench_suite"
    not_applicable = {  # noqa: RUF012
        "W4": "the bare loop runs sequential steps only (no branches)",
    }

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self._client: psycopg.Connection | None = None

    def use_database(self, database: str) -> None:
        self.teardown()
        self.after_enqueue()
        self.database = database

    @property
    def client(self) -> psycopg.Connection:
        if self._client is None or self._client.closed:
            self._client = psycopg.connect(conninfo(self.database), autocommit=True)
        return self._client

    def setup(self) -> None:
        pass  # the zart adapter creates and migrates the database

    def reset(self) -> None:
        self.after_enqueue()
        truncate_tables(conninfo(self.database))

    def worker_argv(self, workload: str) -> list[str]:
        return [
            sys.executable,
            str(HERE / "bare_worker.py"),
            "--idle",
            "--dsn",
            conninfo(self.database),
        ]

    def start(self, kind: str, i: int, size: int) -> str:
        return bare_worker.enqueue(self.client, [{"i": i, "n": size}])[0]

    def start_many(self, kind: str, first: int, count: int, size: int) -> list[str] | None:
        inputs = [{"i": i, "n": size} for i in range(first, first + count)]
        return bare_worker.enqueue(self.client, inputs)

    def after_enqueue(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
