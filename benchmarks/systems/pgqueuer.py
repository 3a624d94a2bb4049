"""PgQueuer: one job per step, chained (see ``jobs.py``); its worker is this module.

Client: ``SyncQueries.enqueue`` (a list of jobs in one call for the bulk start). Worker
(``python -m benchmarks.systems.pgqueuer``): a ``QueueManager`` on an asyncpg connection
(``AsyncpgDriver``, PgQueuer's main driver; its psycopg driver holds the connection for
up to 1 s while it waits for NOTIFYs, which makes every chained step wait) with its
defaults (LISTEN/NOTIFY, batch size 10); the handlers enqueue the next job through the
same ``Queries`` and write the bench tables on a second (psycopg) connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import psycopg

from benchmarks.systems import jobs
from benchmarks.systems.common import System as Base
from benchmarks.systems.common import conninfo, recreate_database, url, worker_ready

DATABASE = "zart_bench_pgqueuer"


class System(Base):
    name = "pgqueuer"
    database = DATABASE

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self._client: psycopg.Connection | None = None
        self._queries: Any = None

    def setup(self) -> None:
        from pgqueuer.adapters.persistence.queries import Queries
        from pgqueuer.db import PsycopgDriver

        recreate_database(self.database)

        async def install() -> None:
            conn = await psycopg.AsyncConnection.connect(conninfo(self.database), autocommit=True)
            await Queries(PsycopgDriver(conn)).install()
            await conn.close()

        asyncio.run(install())
        with psycopg.connect(conninfo(self.database), autocommit=True) as conn:
            jobs.create_schema(conn)

    def reset(self) -> None:
        self.after_enqueue()
        with psycopg.connect(conninfo(self.database), autocommit=True) as conn:
            conn.execute(
                "DO $$ DECLARE t text; BEGIN FOR t IN SELECT tablename FROM pg_tables"
                " WHERE schemaname = 'public' LOOP EXECUTE format('TRUNCATE %I', t);"
                " END LOOP; END $$"
            )

    @property
    def queries(self) -> Any:
        from pgqueuer.adapters.drivers.psycopg import SyncPsycopgDriver
        from pgqueuer.adapters.persistence.queries import SyncQueries

        if self._client is None or self._client.closed:
            self._client = psycopg.connect(conninfo(self.database), autocommit=True)
            self._queries = SyncQueries(SyncPsycopgDriver(self._client))
        return self._queries

    def after_enqueue(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def worker_argv(self, workload: str) -> list[str]:
        return [sys.executable, "-m", "benchmarks.systems.pgqueuer"]

    def start(self, kind: str, i: int, size: int) -> str:
        wid = jobs.new_id()
        entry = "fanout" if kind == "fanout" else "step"
        self.queries.enqueue(entry, json.dumps(jobs.first_job(kind, wid, i, size)).encode())
        return wid

    def start_many(self, kind: str, first: int, count: int, size: int) -> list[str] | None:
        ids = [jobs.new_id() for _ in range(count)]
        entry = "fanout" if kind == "fanout" else "step"
        payloads: list[bytes | None] = [
            json.dumps(jobs.first_job(kind, wid, first + n, size)).encode()
            for n, wid in enumerate(ids)
        ]
        self.queries.enqueue([entry] * count, payloads, [0] * count)
        return ids

    def finished_sql(self) -> str:
        return jobs.FINISHED

    def count_sql(self) -> str:
        return jobs.COUNT


# -- the worker ----------------------------------------------------------------------


async def work() -> None:
    import asyncpg
    from pgqueuer import QueueManager
    from pgqueuer.adapters.persistence.queries import Queries
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.models import Job

    conn = await asyncpg.connect(url(DATABASE))
    app = await psycopg.AsyncConnection.connect(conninfo(DATABASE), autocommit=True)
    queries = Queries(AsyncpgDriver(conn))
    qm = QueueManager(queries)

    @qm.entrypoint("step")
    async def step(job: Job) -> None:
        p = json.loads(job.payload or b"{}")
        value = p["v"] + 1
        if p["k"] < p["n"]:
            payload = {**p, "k": p["k"] + 1, "v": value}
            await queries.enqueue("step", json.dumps(payload).encode())
        else:
            await app.execute(jobs.DONE, [p["wf"], value])

    @qm.entrypoint("fanout")
    async def fanout(job: Job) -> None:
        p = json.loads(job.payload or b"{}")
        await app.execute(jobs.GATHER, [p["wf"], p["n"]])
        payloads: list[bytes | None] = [
            json.dumps({"wf": p["wf"], "j": j}).encode() for j in range(p["n"])
        ]
        await queries.enqueue(["branch"] * p["n"], payloads, [0] * p["n"])

    @qm.entrypoint("branch")
    async def branch(job: Job) -> None:
        p = json.loads(job.payload or b"{}")
        cur = await app.execute(jobs.BRANCH, [p["j"] + 1, p["wf"]])
        row = await cur.fetchone()
        if row is not None and row[0] == 0:
            await app.execute(jobs.DONE, [p["wf"], row[1]])

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, qm.shutdown.set)
    loop.call_later(0.5, worker_ready)
    await qm.run()
    await app.close()
    await conn.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(work())
