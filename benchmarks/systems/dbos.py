"""DBOS Transact: workflows of ``@DBOS.step`` functions on a PostgreSQL system database,
enqueued through a ``Queue``; its worker is this module.

Client: ``DBOSClient.enqueue`` (DBOS has no bulk enqueue). Worker
(``python -m benchmarks.systems.dbos``): ``DBOS.launch()`` with the queues registered with
``polling_interval_sec=0.05`` (default 1 s; 0.05 s as the django-zart workers of the
suite), no concurrency limits, logging at WARNING. The chain is one workflow calling its
step n times; the fan-out is a workflow that enqueues n child workflows (one step each)
on a second queue and gathers their handles' results.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import psycopg

from benchmarks.systems.common import System as Base
from benchmarks.systems.common import conninfo, recreate_database, url, worker_ready

DATABASE = "zart_bench_dbos"
APP = "zart-bench"
POLL_INTERVAL = 0.05
FINISHED = "SELECT 1 FROM dbos.workflow_status WHERE workflow_uuid = %s AND status = 'SUCCESS'"
COUNT = (
    "SELECT count(*) FROM dbos.workflow_status"
    " WHERE status = 'SUCCESS' AND name IN ('chain', 'fanout')"
)


class System(Base):
    name = "dbos"
    database = DATABASE

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self._client: Any = None

    @property
    def client(self) -> Any:
        from dbos import DBOSClient

        if self._client is None:
            self._client = DBOSClient(system_database_url=url(DATABASE), application_name=APP)
        return self._client

    def setup(self) -> None:
        recreate_database(self.database)
        self.stop(self.start_workers("setup", 1))  # launching DBOS creates its schema

    def reset(self) -> None:
        self.after_enqueue()
        with psycopg.connect(conninfo(self.database), autocommit=True) as conn:
            conn.execute("TRUNCATE dbos.workflow_status CASCADE")

    def after_enqueue(self) -> None:
        if self._client is not None:
            self._client.destroy()
            self._client = None

    def worker_argv(self, workload: str) -> list[str]:
        return [sys.executable, "-m", "benchmarks.systems.dbos"]

    def start(self, kind: str, i: int, size: int) -> str:
        if kind == "fanout":
            options = {"queue_name": "bench", "workflow_name": "fanout"}
            handle = self.client.enqueue(options, size)
        else:
            options = {"queue_name": "bench", "workflow_name": "chain"}
            handle = self.client.enqueue(options, i, size)
        return str(handle.workflow_id)

    def finished_sql(self) -> str:
        return FINISHED

    def count_sql(self) -> str:
        return COUNT


def work() -> None:
    from dbos import DBOS

    DBOS(
        config={
            "name": APP,
            "system_database_url": url(DATABASE),
            "log_level": "WARNING",
        }
    )

    @DBOS.step(name="add_one")
    def add_one(value: int) -> int:
        return value + 1

    @DBOS.workflow(name="chain")
    def chain(i: int, n: int) -> int:
        value = i
        for _ in range(n):
            value = add_one(value)
        return value

    @DBOS.workflow(name="branch")
    def branch(j: int) -> int:
        return add_one(j)

    @DBOS.workflow(name="fanout")
    def fanout(n: int) -> int:
        branches = DBOS.retrieve_queue("bench-branches")
        handles = [branches.enqueue(branch, j) for j in range(n)]
        return sum(h.get_result() for h in handles)

    DBOS.launch()
    DBOS.register_queue("bench", polling_interval_sec=POLL_INTERVAL)
    DBOS.register_queue("bench-branches", polling_interval_sec=POLL_INTERVAL)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker_ready()
    stop.wait()
    DBOS.destroy()


if __name__ == "__main__":
    work()
    sys.exit(0)
