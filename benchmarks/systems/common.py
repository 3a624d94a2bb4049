"""What every system adapter shares: the measurements of the suite's workloads.

A system says how to start its worker processes, how to start one workflow (or many),
and how to count finished ones in its database; the measurements here are the same for
all of them:

- ``throughput``: the workers are started on an empty queue and paused (SIGSTOP) once
  ready; the work is enqueued, counters are read (``/proc`` CPU of the workers and of the
  whole PostgreSQL server, ``pg_stat_database`` of the system's database), the workers
  are resumed (SIGCONT) and the run lasts until every workflow is finished.
- ``latency``: one idle worker; one workflow at a time, from just before the start call
  to the moment a 1 ms poll of the system's own tables sees it finished.
- ``enqueue``: start calls per second from this process, each its own transaction.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.harness import (
    LOGS,
    ROOT,
    find_postmaster,
    kill_workers,
    process_cpu,
    server_cpu,
    stop_workers,
)

# Every worker process the suite started and has not stopped yet (killed on a timeout).
LIVE: list[subprocess.Popen[bytes]] = []
SERVER = os.environ.get("ZART_BENCH_SERVER", "host=127.0.0.1 port=5432 user=postgres")


def conninfo(database: str) -> str:
    return "%s dbname=%s" % (SERVER, database)


def url(database: str) -> str:
    """The same database as a URL (for libraries that take one)."""
    parts = dict(item.split("=", 1) for item in SERVER.split())
    auth = parts.get("user", "postgres") + (":" + parts["password"] if "password" in parts else "")
    return "postgresql://%s@%s:%s/%s" % (
        auth,
        parts.get("host", "127.0.0.1"),
        parts.get("port", "5432"),
        database,
    )


def recreate_database(database: str) -> None:
    if not database.startswith("zart_bench"):
        raise SystemExit("refusing to touch database %r" % database)
    name = sql.Identifier(database)
    with psycopg.connect(conninfo("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def drop_database(database: str) -> None:
    if not database.startswith("zart_bench"):
        raise SystemExit("refusing to touch database %r" % database)
    with psycopg.connect(conninfo("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Timeout(Exception):
    """A measurement ran past its time limit."""


def _alarm(signum: int, frame: Any) -> None:
    raise Timeout("measurement took longer than its time limit")


def bounded(limit: float, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``fn()`` with a time limit (SIGALRM); worker processes left behind are killed."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(limit) + 1)
    try:
        return fn()
    finally:
        signal.alarm(0)
        kill_workers(list(LIVE))
        LIVE.clear()


class Stats:
    """Commit counts of one database, read from another one so reads add no commit."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.monitor = psycopg.connect(conninfo("postgres"), autocommit=True)
        self.postmaster = find_postmaster(self.monitor)

    def commits(self) -> int:
        row = self.monitor.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [self.database]
        ).fetchone()
        return int(row[0]) if row else 0

    def settled_commits(self, limit: float = 12) -> int:
        """The count once backends have flushed their counters (two equal reads)."""
        time.sleep(0.5)
        last = self.commits()
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = self.commits()
            if now == last:
                return now
            last = now
        return last

    def server_cpu(self) -> float | None:
        return server_cpu(self.postmaster)

    def close(self) -> None:
        self.monitor.close()


class System:
    """Base of the adapters. Subclasses set ``name`` and ``database`` and fill the hooks."""

    name = ""
    database = ""
    #: workloads it has no equivalent for, with the reason
    not_applicable: dict[str, str] = {}  # noqa: RUF012
    poll_every = 0.001  # seconds between two "finished yet?" reads in latency workloads

    def __init__(self, options: Any) -> None:
        self.options = options
        self.logs = LOGS / "suite"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._poll: psycopg.Connection | None = None
        self.poll_statements = 0

    # -- hooks -------------------------------------------------------------------------

    def setup(self) -> None:
        """Create the database and schema (once per suite run)."""

    def reset(self) -> None:
        """Empty the tables before a measurement."""

    def teardown(self) -> None:
        if self._poll is not None:
            self._poll.close()
            self._poll = None

    def worker_argv(self, workload: str) -> list[str]:
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT)}

    def ready(self, procs: list[subprocess.Popen[bytes]], files: list[Path]) -> bool:
        """Every worker set up and waiting for work (default: it wrote its ready file)."""
        return all(f.exists() for f in files)

    def start(self, kind: str, i: int, size: int) -> str:
        """Start one workflow (``chain`` of ``size`` steps, ``fanout`` of
        ``size`` branches) in its own transaction; return its id."""
        raise NotImplementedError

    def start_many(self, kind: str, first: int, count: int, size: int) -> list[str] | None:
        """Start ``count`` workflows with the system's bulk API, or None if it has none."""
        return None

    def finished_sql(self) -> str:
        """SQL with one ``%s`` (an id) returning one row while that workflow is finished."""
        raise NotImplementedError

    def count_sql(self) -> str:
        """SQL returning the number of finished workflows."""
        raise NotImplementedError

    # -- processes ---------------------------------------------------------------------

    def start_workers(self, workload: str, count: int) -> list[subprocess.Popen[bytes]]:
        procs = []
        self.ready_files = []
        for n in range(count):
            ready = self.logs / ("%s-%s-%d.ready" % (self.name, workload, n))
            ready.unlink(missing_ok=True)
            self.ready_files.append(ready)
            env = {**self.worker_env(), "BENCH_READY_FILE": str(ready)}
            log = self.logs / ("%s-%s-%d.log" % (self.name, workload, n))
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    self.worker_argv(workload),
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            procs.append(proc)
            LIVE.append(proc)
        deadline = time.monotonic() + 60
        while not self.ready(procs, self.ready_files):
            for proc in procs:
                if proc.poll() is not None:
                    self.stop(procs)
                    raise RuntimeError(
                        "%s worker exited with %s; see %s" % (self.name, proc.returncode, log)
                    )
            if time.monotonic() > deadline:
                self.stop(procs)
                raise RuntimeError("%s workers not ready after 60 s" % self.name)
            time.sleep(0.05)
        time.sleep(0.3)  # let the first poll/LISTEN settle
        return procs

    def stop(self, procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        stop_workers(procs, timeout=15)
        kill_workers(procs)
        for proc in procs:
            if proc in LIVE:
                LIVE.remove(proc)

    # -- database reads ----------------------------------------------------------------

    @property
    def poll_conn(self) -> psycopg.Connection:
        if self._poll is None or self._poll.closed:
            self._poll = psycopg.connect(conninfo(self.database), autocommit=True)
        return self._poll

    def count(self) -> int:
        self.poll_statements += 1
        row = self.poll_conn.execute(self.count_sql()).fetchone()
        return int(row[0]) if row else 0

    def wait_finished(self, ids: list[str], limit: float) -> float:
        """Poll until every id is finished; return the moment (perf_counter)."""
        query = self.finished_sql()
        deadline = time.monotonic() + limit
        pending = list(ids)
        while pending:
            self.poll_statements += 1
            if self.poll_conn.execute(query, [pending[0]]).fetchone() is not None:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise Timeout("%s: %s not finished after %gs" % (self.name, pending[0], limit))
            time.sleep(self.poll_every)
        return time.perf_counter()

    # -- measurements ------------------------------------------------------------------

    def throughput(
        self,
        workload: str,
        workers: int,
        workflows: int,
        steps: int,
        kind: str = "chain",
        *,
        fresh: bool = True,
    ) -> dict[str, Any]:
        """``workflows`` workflows of ``steps`` steps through ``workers`` paused workers.

        ``fresh``: empty the tables first (W5 keeps what is in them).
        """
        if fresh:
            self.reset()
        stats = Stats(self.database)
        procs = self.start_workers(workload, workers)
        try:
            for proc in procs:
                os.kill(proc.pid, signal.SIGSTOP)
            base = self.count()
            if self.start_many(kind, 0, workflows, steps) is None:
                for i in range(workflows):
                    self.start(kind, i, steps)
            self.after_enqueue()
            commits0 = stats.settled_commits()
            polls0 = self.poll_statements
            cpu0 = {p.pid: process_cpu(p.pid) or 0.0 for p in procs}
            server0 = stats.server_cpu()
            began = time.perf_counter()
            for proc in procs:
                os.kill(proc.pid, signal.SIGCONT)
            deadline = time.monotonic() + self.options.timeout
            while self.count() - base < workflows:
                for proc in procs:
                    if proc.poll() is not None:
                        raise RuntimeError(
                            "%s worker exited with %s" % (self.name, proc.returncode)
                        )
                if time.monotonic() > deadline:
                    raise Timeout("%s: %s not done" % (self.name, workload))
                time.sleep(0.02)
            elapsed = time.perf_counter() - began
            server1 = stats.server_cpu()
            worker_cpu = sum((process_cpu(p.pid) or 0.0) - cpu0[p.pid] for p in procs)
            polls = self.poll_statements - polls0
        finally:
            self.stop(procs)
        self.teardown()
        commits = stats.settled_commits() - commits0 - polls
        stats.close()
        total = workflows * steps
        return {
            "steps_per_s": total / elapsed,
            "ms_per_step": 1000 * elapsed / total,
            "run_s": elapsed,
            "worker_cpu_ms_per_step": 1000 * worker_cpu / total,
            "server_cpu_ms_per_step": (
                None if server0 is None or server1 is None else 1000 * (server1 - server0) / total
            ),
            "commits_per_step": commits / total,
        }

    def after_enqueue(self) -> None:
        """Close the client's own connections (so their counters are flushed)."""

    def latency(
        self, workload: str, tries: int, kind: str, size: int, *, fresh: bool = True
    ) -> dict[str, Any]:
        """Start → finished, one at a time, on idle workers (1, or 2 for fan-outs)."""
        if fresh:
            self.reset()
        procs = self.start_workers(workload, 2 if kind == "fanout" else 1)
        times = []
        try:
            self.poll_conn.execute("SELECT 1")
            for i in range(tries):
                time.sleep(random.uniform(0.02, 0.05))
                began = time.perf_counter()
                wid = self.start(kind, i, size)
                done = self.wait_finished([wid], self.options.timeout)
                times.append(1000 * (done - began))
        finally:
            self.stop(procs)
            self.teardown()
        return {
            "p50_ms": statistics.median(times),
            "p90_ms": percentile(times, 90),
            "p99_ms": percentile(times, 99),
            "max_ms": max(times),
            "ms": times[0] if len(times) == 1 else statistics.median(times),
        }

    def enqueue(self, count: int) -> dict[str, Any]:
        """``start`` calls per second, and the bulk API's workflows per second."""
        self.reset()
        began = time.perf_counter()
        for i in range(count):
            self.start("chain", i, 3)
        single = count / (time.perf_counter() - began)
        self.after_enqueue()
        self.reset()
        began = time.perf_counter()
        bulk = self.start_many("chain", 0, count, 3)
        many = None if bulk is None else count / (time.perf_counter() - began)
        self.after_enqueue()
        self.teardown()
        return {"starts_per_s": single, "start_many_per_s": many}


def worker_ready() -> None:
    """Called by a worker process once it waits for work."""
    path = os.environ.get("BENCH_READY_FILE")
    if path:
        Path(path).touch()


def python() -> str:
    return sys.executable


class ZartTables:
    """The finished-workflow reads of the systems that use django-zart's tables (django-zart
    and its bare loop)."""

    def finished_sql(self) -> str:
        return "SELECT 1 FROM zart_executions WHERE id = %s AND status = 'COMPLETED'"

    def count_sql(self) -> str:
        # The last hour's finishes only, through the (status, finished_at) index: counting
        # every COMPLETED row took 70 ms per poll with W5's million finished executions
        # (finished a day ago), a core's worth of server CPU taken from the workers.
        return (
            "SELECT count(*) FROM zart_executions WHERE status = 'COMPLETED'"
            " AND finished_at > now() - interval '1 hour'"
        )
