"""pgbench: the server's own ceiling for the write pattern of a step.

A custom script of one ``INSERT`` and one ``UPDATE`` per transaction (a row appended to
a log table, a counter row updated), on a small table pair in ``zart_bench_pgbench``,
with 1, 2, 4 and 8 clients. Reports transactions per second.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.systems.common import SERVER, conninfo, recreate_database
from benchmarks.systems.common import System as Base

PGBENCH = shutil.which("pgbench") or "/usr/bin/pgbench"
SCRIPT = """\\set id random(1, 1000)
BEGIN;
INSERT INTO bench_log (counter_id, value) VALUES (:id, 1);
UPDATE bench_counter SET value = value + 1, updated_at = now() WHERE id = :id;
END;
"""
CLIENTS = (1, 2, 4, 8)


def version() -> str | None:
    try:
        return subprocess.run(
            [PGBENCH, "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


class System(Base):
    name = "pgbench"
    database = "zart_bench_pgbench"

    def setup(self) -> None:
        recreate_database(self.database)
        with psycopg.connect(conninfo(self.database), autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE bench_counter (id int PRIMARY KEY, value bigint NOT NULL,"
                " updated_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.execute(
                "CREATE TABLE bench_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " counter_id int NOT NULL, value int NOT NULL,"
                " created_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.execute(
                "INSERT INTO bench_counter (id, value) SELECT g, 0 FROM generate_series(1, 1000) g"
            )

    def ceiling(self, *, quick: bool) -> dict[str, Any]:
        seconds = 5 if quick else 10
        out: dict[str, Any] = {}
        params = dict(item.split("=", 1) for item in SERVER.split())
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "step.sql"
            script.write_text(SCRIPT)
            for clients in CLIENTS:
                command = [
                    PGBENCH,
                    "-n",
                    "-h", params.get("host", "127.0.0.1"),
                    "-p", params.get("port", "5432"),
                    "-U", params.get("user", "postgres"),
                    "-c", str(clients),
                    "-j", str(min(clients, 2)),
                    "-T", str(seconds),
                    "-f", str(script),
                    self.database,
                ]  # fmt: skip
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                match = re.search(r"tps = ([0-9.]+)", done.stdout)
                out["tps_c%d" % clients] = float(match.group(1)) if match else None
        return out
