"""procrastinate: one job per step, chained (see ``jobs.py``); its worker is this module.

Client: ``task.defer`` (and ``task.batch_defer`` for the bulk start) through a
``SyncPsycopgConnector``. Worker (``python -m benchmarks.systems.procrastinate``):
``App.run_worker_async`` on a ``PsycopgConnector`` with LISTEN/NOTIFY (its default),
concurrency 10 (default 1; 10 is PgQueuer's batch size) and a 0.05 s fetch polling
interval (default 5 s: a job deferred from inside a running job often waited for the
next poll, 410 ms/step on W3); the async handlers defer the next job with
``defer_async`` and write the bench tables on their own connection.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import psycopg

from benchmarks.systems import jobs
from benchmarks.systems.common import System as Base
from benchmarks.systems.common import conninfo, recreate_database, worker_ready

DATABASE = "zart_bench_procrastinate"
QUEUE = "bench"
CONCURRENCY = 10
POLL_INTERVAL = 0.05  # default 5 s; 0.05 s as the django-zart workers of the suite


def make_app(connector: Any) -> Any:
    """The procrastinate app with the three tasks (client and worker alike)."""
    import procrastinate

    app = procrastinate.App(connector=connector)
    state: dict[str, psycopg.AsyncConnection] = {}

    async def db() -> psycopg.AsyncConnection:
        if "conn" not in state:
            state["conn"] = await psycopg.AsyncConnection.connect(
                conninfo(DATABASE), autocommit=True
            )
        return state["conn"]

    @app.task(name="step", queue=QUEUE)
    async def step(wf: str, k: int, n: int, v: int) -> None:
        value = v + 1
        if k < n:
            await step.defer_async(wf=wf, k=k + 1, n=n, v=value)
        else:
            await (await db()).execute(jobs.DONE, [wf, value])

    @app.task(name="fanout", queue=QUEUE)
    async def fanout(wf: str, n: int) -> None:
        await (await db()).execute(jobs.GATHER, [wf, n])
        await branch.batch_defer_async(*({"wf": wf, "j": j} for j in range(n)))

    @app.task(name="branch", queue=QUEUE)
    async def branch(wf: str, j: int) -> None:
        cur = await (await db()).execute(jobs.BRANCH, [j + 1, wf])
        row = await cur.fetchone()
        if row is not None and row[0] == 0:
            await (await db()).execute(jobs.DONE, [wf, row[1]])

    return app


class System(Base):
    name = "procrastinate"
    database = DATABASE

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self._app: Any = None

    @property
    def app(self) -> Any:
        import procrastinate

        if self._app is None:
            self._app = make_app(procrastinate.SyncPsycopgConnector(conninfo=conninfo(DATABASE)))
            self._app.open()
        return self._app

    def setup(self) -> None:
        recreate_database(self.database)
        self.app.schema_manager.apply_schema()
        with psycopg.connect(conninfo(self.database), autocommit=True) as conn:
            jobs.create_schema(conn)

    def reset(self) -> None:
        self.after_enqueue()
        with psycopg.connect(conninfo(self.database), autocommit=True) as conn:
            conn.execute(
                "TRUNCATE procrastinate_jobs, procrastinate_events, bench_done, bench_gather"
                " RESTART IDENTITY CASCADE"
            )

    def after_enqueue(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None

    def worker_argv(self, workload: str) -> list[str]:
        return [sys.executable, "-m", "benchmarks.systems.procrastinate"]

    def start(self, kind: str, i: int, size: int) -> str:
        wid = jobs.new_id()
        task = self.app.tasks["fanout" if kind == "fanout" else "step"]
        task.defer(**jobs.first_job(kind, wid, i, size))
        return wid

    def start_many(self, kind: str, first: int, count: int, size: int) -> list[str] | None:
        ids = [jobs.new_id() for _ in range(count)]
        task = self.app.tasks["fanout" if kind == "fanout" else "step"]
        task.batch_defer(*(jobs.first_job(kind, wid, first + n, size) for n, wid in enumerate(ids)))
        return ids

    def finished_sql(self) -> str:
        return jobs.FINISHED

    def count_sql(self) -> str:
        return jobs.COUNT


async def work() -> None:
    import procrastinate

    app = make_app(procrastinate.PsycopgConnector(conninfo=conninfo(DATABASE)))
    async with app.open_async():
        asyncio.get_running_loop().call_later(0.5, worker_ready)
        await app.run_worker_async(
            queues=[QUEUE],
            concurrency=CONCURRENCY,
            wait=True,
            fetch_job_polling_interval=POLL_INTERVAL,
        )


if __name__ == "__main__":
    asyncio.run(work())
