"""Throughput of django-zart workers on PostgreSQL, against a bare SQL loop of the same design.

Run from the repository root::

    python benchmarks/throughput.py                 # 1000 workflows, 1 and 2 workers
    python benchmarks/throughput.py --quick         # 200 workflows, well under a minute
    python benchmarks/throughput.py --workflows 5000 --workers 1,2,4 --repeat 3

For each worker count and each system (``zart``: real ``runzartworker`` processes;
``bare``: ``bare_worker.py`` processes sending the same statements from a plain psycopg
loop) it empties the tables, starts N three-step workflows with ``zart.start`` (timed on
its own), starts the processes and polls every 20 ms until all N executions are
COMPLETED. It reports workflows/s, steps/s, commits per workflow (``pg_stat_database``),
worker CPU per step (``/proc``) and the server's CPU and WAL per workflow, prints a table
with the zart/bare ratios of the same run, and writes the figures as JSON under
``benchmarks/results/``. See ``benchmarks/README.md`` for how to read them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make the benchmarks package importable
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import (  # noqa: E402
    HERE,
    LOGS,
    RESULTS,
    configure_django,
    create_database,
    dsn,
    environment,
    find_postmaster,
    fmt,
    kill_workers,
    print_table,
    process_cpu,
    relative,
    server_cpu,
    start_worker,
    stop_workers,
    truncate_tables,
)

WORKFLOW = "bench-three-steps"
STEPS = 3  # checkpointed steps per workflow
POLL_EVERY = 0.02  # seconds between completion polls

POLL_SQL = (
    "SELECT (SELECT count(*) FROM zart_executions WHERE status = 'COMPLETED'),"
    " ARRAY(SELECT pid FROM zart_workers)"
)
DB_STATS = (
    "sessions",
    "xact_commit",
    "xact_rollback",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "blks_read",
    "blks_hit",
)
STATS_SQL = "SELECT %s FROM pg_stat_database WHERE datname = %%s" % ", ".join(DB_STATS)
WAL_SQL = "SELECT wal_records, wal_fpi, wal_bytes::bigint FROM pg_stat_wal"
VERIFY_SQL = """
SELECT count(*) FILTER (WHERE status = 'COMPLETED'),
       count(*) FILTER (WHERE output = to_jsonb((input ->> 'i')::int + 3)),
       extract(epoch FROM min(started_at))::float8,
       extract(epoch FROM max(finished_at))::float8,
       (SELECT count(*) FROM zart_steps WHERE status = 'COMPLETED'),
       (SELECT count(*) FROM zart_tasks)
  FROM zart_executions
"""


# -- setup ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Throughput of django-zart workers vs a bare SQL loop of the same design."
    )
    parser.add_argument("--workflows", type=int, help="workflows per measurement (1000)")
    parser.add_argument("--quick", action="store_true", help="200 workflows unless --workflows")
    parser.add_argument("--workers", default="1,2", help="worker process counts (1,2)")
    parser.add_argument("--systems", default="zart,bare", help="what to measure (zart,bare)")
    parser.add_argument(
        "--repeat", type=int, help="rounds; the table shows medians (3, or 1 with --quick)"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.05,
        help="runzartworker --poll-interval, seconds (0.05)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        help="runzartworker --concurrency (default: the worker's default)",
    )
    parser.add_argument(
        "--conn-max-age",
        default="0",
        help="Django CONN_MAX_AGE of the workers: seconds or 'none' (0, Django's default)",
    )
    parser.add_argument(
        "--server-side-binding",
        action="store_true",
        help="Django OPTIONS server_side_binding=True for the workers "
        "(psycopg binds parameters on the server and prepares statements)",
    )
    parser.add_argument(
        "--worker-verbosity",
        type=int,
        default=1,
        help="runzartworker -v (1, the default: one INFO line per step)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the zart workers under cProfile (inflates their CPU); "
        "writes .pstats files under benchmarks/results/",
    )
    parser.add_argument(
        "--database",
        default="zart_bench",
        help="database to (re)create on DATABASE_URL's server (zart_bench)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300,
        help="give up on a measurement after this many seconds (300)",
    )
    parser.add_argument("--output", type=Path, help="JSON file (default: under results/)")
    args = parser.parse_args(argv)
    if args.workflows is None:
        args.workflows = 200 if args.quick else 1000
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    args.worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    if min([args.workflows, args.repeat, *args.worker_counts]) < 1:
        parser.error("--workflows, --workers and --repeat must be positive")
    if set(args.system_list) - {"zart", "bare"}:
        parser.error("--systems takes zart and/or bare")
    return args


def settings_env(args: argparse.Namespace) -> dict[str, str]:
    """The ``ZART_BENCH_*`` settings of the worker processes (see ``settings.py``)."""
    return {
        "ZART_BENCH_CONN_MAX_AGE": str(args.conn_max_age),
        "ZART_BENCH_POLL_INTERVAL": str(args.poll_interval),
        "ZART_BENCH_SERVER_SIDE_BINDING": "1" if args.server_side_binding else "0",
    }


# -- measuring -----------------------------------------------------------------------


@dataclass
class Sample:
    db: dict[str, int]
    wal: dict[str, int]
    settled: bool


def read_stats(monitor: psycopg.Connection, database: str) -> Sample:
    # The monitor is connected to another database, in autocommit: each read is its own
    # transaction (a fresh stats snapshot) and adds no commit to the benchmark database.
    row = monitor.execute(STATS_SQL, [database]).fetchone()
    wal = monitor.execute(WAL_SQL).fetchone()
    assert row is not None and wal is not None
    return Sample(
        db=dict(zip(DB_STATS, map(int, row), strict=True)),
        wal={"records": int(wal[0]), "fpi": int(wal[1]), "bytes": int(wal[2])},
        settled=True,
    )


def settled_stats(monitor: psycopg.Connection, database: str, limit: float = 15) -> Sample:
    """Statistics once every backend of the database has flushed its counters.

    Backends report their counters asynchronously (at most once a second while busy, on
    exit at the latest), so this is read only when none of ours is connected any more,
    and re-read until two reads agree.
    """
    time.sleep(0.6)
    last = read_stats(monitor, database)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(0.3)
        sample = read_stats(monitor, database)
        if sample.db == last.db:
            return sample
        last = sample
    last.settled = False
    return last


class Poller:
    """Counts completed executions (and registered workers) on its own connection."""

    def __init__(self, conninfo: str) -> None:
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.statements = 0  # each is a commit in the benchmark database; subtracted

    def poll(self) -> tuple[int, list[int]]:
        row = self.conn.execute(POLL_SQL).fetchone()
        self.statements += 1
        assert row is not None
        return int(row[0]), list(row[1])

    def close(self) -> None:
        self.conn.close()


@dataclass
class Phase:
    system: str
    workers: int
    workflows: int
    round: int
    enqueue_s: float = 0.0
    startup_s: float = 0.0
    run_s: float = 0.0
    wall_s: float = 0.0
    db_window_s: float = 0.0
    commits: int = 0
    rollbacks: int = 0
    poller_commits: int = 0
    connections: int = 0
    worker_cpu_s: float = 0.0
    worker_cpu_total_s: float = 0.0
    server_cpu_s: float | None = None
    db: dict[str, int] = field(default_factory=dict)
    wal: dict[str, int] = field(default_factory=dict)
    stats_settled: bool = True
    exit_codes: list[int | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return self.workflows * STEPS

    def derived(self) -> dict[str, float | None]:
        n, steps = self.workflows, self.steps
        return {
            "workflows_per_s": n / self.run_s if self.run_s > 0 else None,
            "steps_per_s": steps / self.run_s if self.run_s > 0 else None,
            "enqueue_per_s": n / self.enqueue_s if self.enqueue_s > 0 else None,
            "commits_per_workflow": self.commits / n,
            "connections_per_workflow": self.connections / n,
            "worker_cpu_ms_per_step": 1000 * self.worker_cpu_s / steps,
            "server_cpu_ms_per_step": (
                None if self.server_cpu_s is None else 1000 * self.server_cpu_s / steps
            ),
            "wal_bytes_per_workflow": self.wal.get("bytes", 0) / n,
        }


class Bench:
    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args = args
        self.env = env
        self.conninfo = dsn(args.database)
        self.monitor = psycopg.connect(dsn("postgres"), autocommit=True)
        self.postmaster = find_postmaster(self.monitor)
        self.logs = LOGS
        self.logs.mkdir(parents=True, exist_ok=True)
        self.profiles: list[Path] = []

    # -- one measurement ---------------------------------------------------------------

    def measure(self, system: str, workers: int, round_: int) -> Phase:
        args = self.args
        phase = Phase(system, workers, args.workflows, round_)
        self.reset()
        phase.enqueue_s = self.enqueue(args.workflows)
        phase.notes += self.prepare()
        before = settled_stats(self.monitor, args.database)
        cpu_before = server_cpu(self.postmaster)
        poller = Poller(self.conninfo)
        started = time.time()
        if system == "zart":
            procs = self.start_zart(workers, round_)
            done, worker_cpu, total_cpu = self.run_zart(procs, poller, phase)
        else:
            procs = self.start_bare(workers, round_)
            done, worker_cpu, total_cpu = self.run_bare(procs, poller, phase)
        cpu_after = server_cpu(self.postmaster)
        phase.exit_codes = [p.returncode for p in procs]
        poller.close()
        after = settled_stats(self.monitor, args.database)
        self.account(phase, before, after, poller.statements)
        if cpu_before is not None and cpu_after is not None:
            phase.server_cpu_s = cpu_after - cpu_before
        phase.worker_cpu_s, phase.worker_cpu_total_s = worker_cpu, total_cpu
        first_start = self.verify(phase)
        phase.wall_s = done - started
        phase.startup_s = first_start - started
        phase.run_s = done - first_start
        return phase

    def reset(self) -> None:
        truncate_tables(self.conninfo)

    def enqueue(self, n: int) -> float:
        """Start n executions through the client API; return the seconds it took."""
        from django.db import connection

        import django_zart as zart

        began = time.perf_counter()
        for i in range(n):
            zart.start(WORKFLOW, {"i": i})
        elapsed = time.perf_counter() - began
        connection.close()
        return elapsed

    def prepare(self) -> list[str]:
        """Fresh planner statistics and a checkpoint, so each measurement starts alike."""
        notes = []
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute("ANALYZE zart_tasks, zart_executions, zart_execution_runs, zart_steps")
            try:
                conn.execute("CHECKPOINT")
            except psycopg.errors.InsufficientPrivilege:
                notes.append("no CHECKPOINT before the measurement (not privileged)")
        return notes

    def account(self, phase: Phase, before: Sample, after: Sample, poller: int) -> None:
        delta = {k: after.db[k] - before.db[k] for k in before.db}
        phase.db = delta
        phase.wal = {k: after.wal[k] - before.wal[k] for k in before.wal}
        phase.poller_commits = poller
        phase.commits = delta["xact_commit"] - poller
        phase.connections = delta["sessions"] - 1  # less the poller's own
        phase.rollbacks = delta["xact_rollback"]
        phase.stats_settled = before.settled and after.settled
        if not phase.stats_settled:
            phase.notes.append("pg_stat_database did not settle: commit counts are approximate")

    def verify(self, phase: Phase) -> float:
        """Check every execution completed with the right output; return the first claim."""
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            row = conn.execute(VERIFY_SQL).fetchone()
        assert row is not None
        completed, correct, first_start, last_finish, steps, tasks = row
        n = phase.workflows
        if (completed, correct, steps, tasks) != (n, n, n * STEPS, 0):
            raise SystemExit(
                "%s with %d worker(s): %d completed, %d correct outputs, %d steps, %d tasks "
                "left (expected %d, %d, %d, 0)"
                % (phase.system, phase.workers, completed, correct, steps, tasks, n, n, n * STEPS)
            )
        phase.db_window_s = last_finish - first_start
        return float(first_start)

    # -- the two systems ---------------------------------------------------------------

    def start_zart(self, workers: int, round_: int) -> list[subprocess.Popen[bytes]]:
        args = self.args
        options = ["--poll-interval", str(args.poll_interval), "-v", str(args.worker_verbosity)]
        if args.concurrency:
            options += ["--concurrency", str(args.concurrency)]
        procs = []
        for i in range(workers):
            command: list[str] = []
            if args.profile:
                profile = RESULTS / ("profile-w%d-r%d-%d.pstats" % (workers, round_, i))
                self.profiles.append(profile)
                command = [sys.executable, str(HERE / "profile_worker.py"), str(profile)]
            log = self.logs / ("zart-w%d-r%d-%d.log" % (workers, round_, i))
            procs.append(start_worker(self.env, options, log, command=command))
        return procs

    def run_zart(
        self, procs: list[subprocess.Popen[bytes]], poller: Poller, phase: Phase
    ) -> tuple[float, float, float]:
        """Wait for completion, read the workers' CPU, stop them with SIGTERM.

        A worker's CPU is counted from the first poll that sees it registered (Django
        setup and imports excluded) to just before SIGTERM.
        """
        ours = {p.pid for p in procs}
        ready: dict[int, float] = {}

        def on_poll(pids: list[int]) -> None:
            for pid in ours.intersection(pids).difference(ready):
                ready[pid] = process_cpu(pid) or 0.0

        done = self.wait(procs, poller, phase, on_poll, must_live=True)
        end = {p.pid: process_cpu(p.pid) or 0.0 for p in procs}
        phase.notes += stop_workers(procs)
        missed = ours.difference(ready)
        if missed:
            phase.notes.append("%d worker(s) registered after the work was done" % len(missed))
        busy = sum(end[pid] - ready[pid] for pid in ready)
        return done, busy, sum(end.values())

    def start_bare(self, workers: int, round_: int) -> list[subprocess.Popen[bytes]]:
        procs = []
        for i in range(workers):
            log = self.logs / ("bare-w%d-r%d-%d.log" % (workers, round_, i))
            with log.open("wb") as err:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, str(HERE / "bare_worker.py"), "--dsn", self.conninfo],
                        cwd=ROOT,
                        env=self.env,
                        stdout=subprocess.PIPE,
                        stderr=err,
                    )
                )
        return procs

    def run_bare(
        self, procs: list[subprocess.Popen[bytes]], poller: Poller, phase: Phase
    ) -> tuple[float, float, float]:
        done = self.wait(procs, poller, phase, None, must_live=False)
        busy = total = 0.0
        for proc in procs:
            out, _ = proc.communicate(timeout=30)
            if proc.returncode != 0:
                raise SystemExit("bare worker %d exited with %s" % (proc.pid, proc.returncode))
            report = json.loads(out)
            busy += report["cpu_s"]
            total += report["cpu_s"]
        return done, busy, total

    def wait(
        self,
        procs: list[subprocess.Popen[bytes]],
        poller: Poller,
        phase: Phase,
        on_poll: Any,
        *,
        must_live: bool,
    ) -> float:
        """Poll every 20 ms until all executions completed; return that moment (epoch)."""
        deadline = time.monotonic() + self.args.timeout
        while True:
            completed, pids = poller.poll()
            if on_poll is not None:
                on_poll(pids)
            if completed >= phase.workflows:
                return time.time()
            for proc in procs:
                code = proc.poll()
                if code is not None and (must_live or code != 0):
                    self.abort(
                        procs,
                        "a %s worker exited with %s; see %s" % (phase.system, code, self.logs),
                    )
            if time.monotonic() > deadline:
                self.abort(
                    procs,
                    "%d of %d completed after %ss"
                    % (completed, phase.workflows, self.args.timeout),
                )
            time.sleep(POLL_EVERY)

    def abort(self, procs: list[subprocess.Popen[bytes]], message: str) -> None:
        kill_workers(procs)
        raise SystemExit(message)


# -- reporting -----------------------------------------------------------------------


def summarize(phases: list[Phase]) -> list[dict[str, Any]]:
    """Median of each figure per (system, workers), with zart/bare ratios."""
    rows: list[dict[str, Any]] = []
    keys = sorted({(p.workers, p.system) for p in phases}, key=lambda k: (k[0], k[1] != "zart"))
    for workers, system in keys:
        group = [p for p in phases if (p.system, p.workers) == (system, workers)]
        derived = [p.derived() for p in group]
        row: dict[str, Any] = {"system": system, "workers": workers, "rounds": len(group)}
        for name in derived[0]:
            values = [d[name] for d in derived if d[name] is not None]
            row[name] = statistics.median(values) if values else None
        for name in ("enqueue_s", "startup_s", "run_s"):
            row[name] = statistics.median(getattr(p, name) for p in group)
        rows.append(row)
    return rows


def ratios(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for workers in sorted({r["workers"] for r in summary}):
        by = {r["system"]: r for r in summary if r["workers"] == workers}
        if set(by) != {"zart", "bare"}:
            continue
        zart, bare = by["zart"], by["bare"]
        row: dict[str, Any] = {"workers": workers}
        for name in (
            "workflows_per_s",
            "commits_per_workflow",
            "worker_cpu_ms_per_step",
            "server_cpu_ms_per_step",
            "wal_bytes_per_workflow",
        ):
            a, b = zart.get(name), bare.get(name)
            row[name] = a / b if a is not None and b else None
        out.append(row)
    return out


def print_tables(summary: list[dict[str, Any]], ratio_rows: list[dict[str, Any]]) -> None:
    head = (
        "system",
        "workers",
        "enqueue/s",
        "startup s",
        "run s",
        "workflows/s",
        "steps/s",
        "commits/wf",
        "conns/wf",
        "worker CPU ms/step",
        "server CPU ms/step*",
        "WAL kB/wf*",
    )
    lines = [head]
    for r in summary:
        lines.append(
            (
                r["system"],
                str(r["workers"]),
                fmt(r["enqueue_per_s"], 0),
                fmt(r["startup_s"], 2),
                fmt(r["run_s"], 2),
                fmt(r["workflows_per_s"]),
                fmt(r["steps_per_s"], 0),
                fmt(r["commits_per_workflow"], 2),
                fmt(r["connections_per_workflow"], 3),
                fmt(r["worker_cpu_ms_per_step"], 3),
                fmt(r["server_cpu_ms_per_step"], 3),
                fmt((r["wal_bytes_per_workflow"] or 0) / 1024, 1),
            )
        )
    print_table(lines)
    print("* the whole PostgreSQL cluster, other databases included\n")
    if ratio_rows:
        lines = [
            (
                "workers",
                "throughput zart/bare",
                "commits zart/bare",
                "worker CPU zart/bare",
                "server CPU zart/bare",
                "WAL zart/bare",
            )
        ]
        for r in ratio_rows:
            lines.append(
                (
                    str(r["workers"]),
                    fmt(r["workflows_per_s"], 2),
                    fmt(r["commits_per_workflow"], 2),
                    fmt(r["worker_cpu_ms_per_step"], 2),
                    fmt(r["server_cpu_ms_per_step"], 2),
                    fmt(r["wal_bytes_per_workflow"], 2),
                )
            )
        print_table(lines)


def print_profiles(paths: list[Path]) -> None:
    import pstats

    existing = [str(p) for p in paths if p.exists()]
    if not existing:
        return
    print(
        "\nCPU profile of the zart workers' threads (thread CPU time, all measurements"
        " merged; the profiler inflates it), top 30 by own time:"
    )
    stats = pstats.Stats(*existing)
    stats.sort_stats("tottime").print_stats(30)
    print("Top 30 by cumulative time:")
    stats.sort_stats("cumulative").print_stats(30)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env = configure_django(args.database, settings_env(args))
    create_database(args.database)
    bench = Bench(args, env)
    meta = environment(bench.monitor)
    print(
        "django-zart throughput: %d three-step workflows, workers %s, %d round(s); "
        "load average %.2f on %s CPUs"
        % (args.workflows, args.workers, args.repeat, meta["loadavg_at_start"][0], meta["cpus"])
    )
    phases: list[Phase] = []
    for round_ in range(args.repeat):
        # Alternate which system goes first, so a drift in the machine's load is shared.
        systems = args.system_list if round_ % 2 == 0 else args.system_list[::-1]
        for workers in args.worker_counts:
            for system in systems:
                phase = bench.measure(system, workers, round_)
                d = phase.derived()
                print(
                    "  %-4s %d worker(s): %7.1f workflows/s, %.2f commits/wf, "
                    "%.3f ms CPU/step%s"
                    % (
                        system,
                        workers,
                        d["workflows_per_s"] or 0,
                        d["commits_per_workflow"] or 0,
                        d["worker_cpu_ms_per_step"] or 0,
                        "" if not phase.notes else "  (%s)" % "; ".join(phase.notes),
                    )
                )
                phases.append(phase)
    summary = summarize(phases)
    ratio_rows = ratios(summary)
    print()
    print_tables(summary, ratio_rows)
    meta["loadavg_at_end"] = os.getloadavg()
    result = {
        "benchmark": "throughput",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": meta,
        "summary": summary,
        "ratios_zart_over_bare": ratio_rows,
        "measurements": [{**asdict(p), **p.derived()} for p in phases],
    }
    output = args.output or RESULTS / (
        "throughput-%s.json" % datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print("\nWrote %s" % relative(output))
    if args.profile:
        print_profiles(bench.profiles)
    bench.monitor.close()


if __name__ == "__main__":
    main()
