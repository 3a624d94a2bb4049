"""django-zart: ``runzartworker`` processes, workflows started with ``zart.start``.

The workflows are in ``benchmarks/suite_workflows.py``; the settings are
``benchmarks/settings.py`` (poll interval 0.05 s, LISTEN/NOTIFY on).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness import configure_django, create_database, truncate_tables
from benchmarks.systems.common import System as Base
from benchmarks.systems.common import ZartTables, conninfo

WORKFLOWS = {"chain": "bench-chain", "fanout": "bench-fanout", "nap": "bench-nap"}


class System(ZartTables, Base):
    name = "zart"
    database = "zart_bench_suite"

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.env = configure_django(self.database, {"ZART_BENCH_POLL_INTERVAL": "0.05"})

    def use_database(self, database: str) -> None:
        """Point this process and the workers it starts at another database (W5)."""
        from django.db import connection

        connection.close()
        connection.settings_dict["NAME"] = database
        self.env = {**self.env, "ZART_BENCH_DATABASE": database}
        self.database = database

    def setup(self) -> None:
        create_database(self.database)

    def reset(self) -> None:
        self.after_enqueue()
        truncate_tables(conninfo(self.database))

    def worker_argv(self, workload: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "django",
            "runzartworker",
            "--poll-interval",
            "0.05",
            "-v",
            "0",
        ]

    def worker_env(self) -> dict[str, str]:
        return dict(self.env)

    def ready(self, procs: list[subprocess.Popen[bytes]], files: list[Path]) -> bool:
        row = self.poll_conn.execute("SELECT ARRAY(SELECT pid FROM zart_workers)").fetchone()
        return row is not None and {p.pid for p in procs} <= set(row[0])

    def start(self, kind: str, i: int, size: int) -> str:
        import django_zart as zart

        return zart.start(WORKFLOWS[kind], {"i": i, "n": size})

    def start_many(self, kind: str, first: int, count: int, size: int) -> list[str] | None:
        import django_zart as zart

        if not hasattr(zart, "start_many"):
            return None
        inputs = [{"i": i, "n": size} for i in range(first, first + count)]
        return list(zart.start_many(WORKFLOWS[kind], inputs))

    def after_enqueue(self) -> None:
        from django.db import connection

        connection.close()
