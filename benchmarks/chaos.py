"""Chaos run of django-zart on PostgreSQL: kill workers, restart the server, cut every
connection, then check by SQL that nothing was lost or done twice.

Run from the repository root::

    python benchmarks/chaos.py                  # 2,000 workflows, 4 workers (~2 min)
    python benchmarks/chaos.py --short          # 800 workflows (~45 s), for CI
    python benchmarks/chaos.py --duration 600   # waves of workflows for ten minutes

It recreates its own database, starts ``runzartworker`` processes (``--orphan-timeout
3``) and a mix of workflows (``benchmarks/chaos_workflows.py``: retries, sleeps, events,
parallel branches, loops, child workflows, a workflow designed to fail, hostile values).
While they run it sends their events at random moments, SIGKILLs a random worker every
``--kill-every`` seconds (now and then a SIGTERM instead), always starting a replacement
at once, restarts the PostgreSQL cluster once and terminates every backend of the
database once. Then it checks the invariants (see ``benchmarks/README.md``), prints one
line per invariant and exits non-zero if any was violated.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import heapq
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make the benchmarks package importable
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import (  # noqa: E402
    LOGS,
    RESULTS,
    configure_django,
    create_database,
    dsn,
    environment,
    relative,
    start_worker,
)

T = TypeVar("T")

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
STRAY = "stray"
"""The name of events no workflow waits for: they must stay unconsumed."""
STRAY_SHARE = 0.05
"""Share of started executions that also get a stray event at a random moment."""
RANDOM_EVENT_WINDOW = (0.3, 6.0)
"""Seconds after its start within which an execution's ``random`` events are sent."""
TERM_EVERY = 5
"""Every fifth action on a worker is a SIGTERM (it must exit 0), the others SIGKILLs."""
RESTART_AT, TERMINATE_AT = 0.3, 0.6
"""When the server restart and the backend terminations happen: fraction of the workflows
finished (or of ``--duration``)."""
SETTLE = 5.0
"""Seconds between the end of the restart and the terminations, so workers reconnected."""
TICK = 0.05
START_BATCH = 50
"""Executions started per tick of the driver's loop (one transaction), so the chaos goes
on while it starts them."""
PROGRESS_EVERY = 0.5
REPORT_EVERY = 10.0
STALL = 60.0
"""Stop waiting once no execution finished for this long (the rest is reported stuck)."""
SHUTDOWN_TIMEOUT = 5.0
"""runzartworker --shutdown-timeout (the default): what a SIGTERMed worker's work gets."""
TERM_GRACE = 15.0
"""Seconds past the worker's shutdown timeout a SIGTERMed worker may take to exit."""
REGISTER_PATIENCE = 30.0
"""How long the final stop waits for the workers started last to register."""
DRIVER_PATIENCE = 120.0
"""How long the driver retries one of its statements through connection errors."""


# -- options -------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Kill workers, restart PostgreSQL, cut connections under a mix of "
        "django-zart workflows; then check that nothing was lost or done twice."
    )
    parser.add_argument(
        "--workflows", type=int, help="workflows started (per wave with --duration): 2000"
    )
    parser.add_argument("--workers", type=int, default=4, help="worker processes (4)")
    parser.add_argument(
        "--duration",
        type=float,
        help="keep starting waves of --workflows until this many seconds passed",
    )
    parser.add_argument(
        "--kill-every", type=float, default=2.0, help="seconds between worker kills (2)"
    )
    parser.add_argument(
        "--no-restart", action="store_true", help="do not restart the PostgreSQL cluster"
    )
    parser.add_argument(
        "--no-terminate",
        action="store_true",
        help="do not terminate the database's backends (pg_terminate_backend)",
    )
    parser.add_argument(
        "--short", action="store_true", help="the CI form: 800 workflows unless --workflows"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice (1)")
    parser.add_argument(
        "--orphan-timeout",
        type=float,
        default=3.0,
        help="runzartworker --orphan-timeout: lease of a killed worker's work (3)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="give up waiting this many seconds after the last start (240; 90 with --short)",
    )
    parser.add_argument(
        "--worker-verbosity", type=int, default=1, help="runzartworker -v (1: INFO lines)"
    )
    parser.add_argument(
        "--database",
        default="zart_bench_chaos",
        help="database to (re)create on DATABASE_URL's server (zart_bench_chaos)",
    )
    parser.add_argument("--output", type=Path, help="JSON file (default: under results/)")
    args = parser.parse_args(argv)
    if args.workflows is None:
        args.workflows = 800 if args.short else 2000
    if args.timeout is None:
        args.timeout = 90.0 if args.short else 240.0
    if min(args.workflows, args.workers) < 1 or args.kill_every <= 0:
        parser.error("--workflows and --workers must be positive, --kill-every above 0")
    return args


# -- the driver's own statements -----------------------------------------------------


def _connection_errors() -> tuple[type[BaseException], ...]:
    from django.db import InterfaceError, OperationalError

    return (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


class Driver:
    """The driver's database access: Django's connection, retried through failures.

    The server restart and the backend terminations hit the driver's connection too (a
    restart drops it, and a statement can be cut anywhere): every statement is retried on
    a fresh connection until ``DRIVER_PATIENCE`` runs out. A write whose acknowledgement
    was lost is checked with ``committed`` before it is sent again.
    """

    def __init__(self) -> None:
        self.errors = 0
        self.errors_by_type: Counter[str] = Counter()

    def call(self, fn: Callable[[], T], committed: Callable[[], bool] | None = None) -> T | None:
        """``fn()``; ``None`` if it failed but ``committed()`` says it took effect."""
        deadline = time.monotonic() + DRIVER_PATIENCE
        errors = _connection_errors()
        while True:
            try:
                return fn()
            except errors as exc:
                self.errors += 1
                self.errors_by_type[type(exc.__cause__ or exc).__name__] += 1
                close_connection()
                if time.monotonic() > deadline:
                    raise SystemExit(
                        "the driver's database connection failed for good: %s" % exc
                    ) from exc
                time.sleep(0.25)
                if committed is not None and self.call(committed):
                    return None

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        def fetch() -> list[tuple[Any, ...]]:
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute(query, params or None)  # no params: a literal % stays
                return list(cursor.fetchall()) if cursor.description else []

        return self.call(fetch) or []

    def value(self, query: str, params: Sequence[Any] = ()) -> Any:
        rows = self.rows(query, params)
        return rows[0][0] if rows else None


def close_connection() -> None:
    from django.db import DatabaseError, connection

    try:
        connection.close()
    except DatabaseError:
        connection.connection = None


# -- worker processes ----------------------------------------------------------------


@dataclass
class WorkerProcess:
    number: int
    proc: subprocess.Popen[bytes]
    log: Path
    fate: str = "running"
    """running, killed (SIGKILL), terminated (SIGTERM mid-run), stopped (SIGTERM at the
    end), died (exited by itself) or hung (ignored SIGTERM, then killed)."""
    signalled_at: float | None = None
    code: int | None = None

    def expected_code(self) -> int | None:
        return {"killed": -signal.SIGKILL, "terminated": 0, "stopped": 0}.get(self.fate)


class Pool:
    """The worker processes: kill or stop one, and always start its replacement at once."""

    def __init__(self, env: dict[str, str], options: list[str], shutdown_timeout: float) -> None:
        self.env = env
        self.options = options
        self.grace = shutdown_timeout + TERM_GRACE
        self.procs: list[WorkerProcess] = []
        self.kills = 0
        self.terms = 0
        self.stopping = False
        self.registered: set[int] = set()
        """Pids seen in zart_workers: these have their signal handlers installed."""

    def start(self) -> None:
        number = len(self.procs) + 1
        log = LOGS / ("chaos-worker-%03d.log" % number)
        self.procs.append(WorkerProcess(number, start_worker(self.env, self.options, log), log))

    def running(self) -> list[WorkerProcess]:
        return [p for p in self.procs if p.fate == "running" and p.proc.poll() is None]

    def signal_one(self, rng: random.Random, sig: signal.Signals) -> WorkerProcess | None:
        """SIGKILL or SIGTERM a random running worker and start its replacement.

        Only a registered worker gets a SIGTERM: before that its handler may not be
        installed yet, and Python's default would kill it (a SIGKILL then, instead).
        """
        candidates = self.running()
        if sig == signal.SIGTERM:
            ready = [p for p in candidates if p.proc.pid in self.registered]
            candidates, sig = (ready, sig) if ready else (candidates, signal.SIGKILL)
        if not candidates:
            return None
        victim = rng.choice(candidates)
        victim.proc.send_signal(sig)
        victim.fate = "killed" if sig == signal.SIGKILL else "terminated"
        victim.signalled_at = time.monotonic()
        if sig == signal.SIGKILL:
            self.kills += 1
        else:
            self.terms += 1
        self.start()
        return victim

    def reap(self) -> None:
        """Note exits; replace a worker that died by itself; kill one that hangs."""
        now = time.monotonic()
        for p in self.procs:
            if p.code is not None:
                continue
            p.code = p.proc.poll()
            if p.code is not None:
                if p.fate == "running":
                    p.fate = "died"
                    if not self.stopping:
                        self.start()
                continue
            if p.fate in ("terminated", "stopped") and now - (p.signalled_at or now) > self.grace:
                p.proc.kill()
                p.code = p.proc.wait()
                p.fate = "hung"

    def stop(self) -> None:
        """SIGTERM every running worker (each must exit 0) and wait for all to exit."""
        self.stopping = True
        for p in self.running():
            p.proc.send_signal(signal.SIGTERM)
            p.fate = "stopped"
            p.signalled_at = time.monotonic()
        while any(p.code is None for p in self.procs):
            self.reap()
            time.sleep(TICK)

    def unexpected(self) -> list[str]:
        return [
            "worker %d (pid %d, %s) exited with %s; %s: %s"
            % (p.number, p.proc.pid, p.fate, p.code, relative(p.log), last_line(p.log))
            for p in self.procs
            if p.fate in ("died", "hung") or p.code != p.expected_code()
        ]

    def killed_pids(self) -> set[int]:
        return {p.proc.pid for p in self.procs if p.fate == "killed"}


def last_line(log: Path) -> str:
    """The last line of a worker's log: for a traceback, the exception itself."""
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


# -- starting workflows and sending their events -------------------------------------


@dataclass
class Started:
    execution_id: str
    workflow: str
    data: dict[str, Any]


@dataclass(order=True)
class Due:
    at: float
    order: int
    execution_id: str = field(compare=False)
    name: str = field(compare=False)
    payload: dict[str, Any] = field(compare=False)
    designed: bool = field(compare=False, default=True)


class Load:
    """Starts the workflows (in waves) and sends their events when they are due."""

    def __init__(self, args: argparse.Namespace, driver: Driver, rng: random.Random) -> None:
        from benchmarks import chaos_workflows as wf

        self.args = args
        self.driver = driver
        self.rng = rng
        self.kinds = list(wf.MIX)
        self.weights = [wf.MIX[k] for k in self.kinds]
        self.started: list[Started] = []
        self.queue: list[Started] = []
        self.waves = 0
        self.due: list[Due] = []
        self.after_timeout: dict[tuple[str, str], dict[str, Any]] = {}
        self.sent: Counter[str] = Counter()
        """Outcome of each designed event: stored, or refused (ExecutionFinished)."""
        self.refused: list[str] = []
        self.strays: Counter[str] = Counter()
        self.last_start = time.monotonic()
        self._order = 0
        self._next_timeout_check = 0.0

    # -- starting

    def new_wave(self) -> None:
        from benchmarks import chaos_workflows as wf

        self.waves += 1
        base = len(self.started) + len(self.queue)
        for i in range(self.args.workflows):
            n = base + i
            workflow = self.rng.choices(self.kinds, self.weights)[0]
            execution_id = "chaos-%d-%d" % (self.waves, n)
            self.queue.append(Started(execution_id, workflow, wf.make_input(workflow, n)))
        self.queue.reverse()  # popped from the end

    def start_some(self) -> None:
        """Start the next batch of executions, in one transaction (retried as a whole)."""
        batch = self.queue[-START_BATCH:][::-1]
        if not batch:
            return
        del self.queue[-len(batch) :]
        self.driver.call(functools.partial(self._start, batch))
        for item in batch:
            self.started.append(item)
            self.plan_events(item)
        self.last_start = time.monotonic()

    def _start(self, batch: list[Started]) -> None:
        from django.db import transaction

        import django_zart as zart

        with transaction.atomic():
            for item in batch:
                # Already there: an earlier try committed, only its acknowledgement was lost.
                with contextlib.suppress(zart.ExecutionAlreadyExists):
                    zart.start(item.workflow, item.data, execution_id=item.execution_id)

    # -- events

    def plan_events(self, item: Started) -> None:
        from benchmarks import chaos_workflows as wf

        now = time.monotonic()
        low, high = RANDOM_EVENT_WINDOW
        last: dict[str, float] = {}
        for event in wf.event_plan(item.workflow, item.data):
            if event.when == "after-timeout":
                self.after_timeout[(item.execution_id, event.name)] = event.payload
                continue
            at = now if event.when == "early" else now + self.rng.uniform(low, high)
            at = max(at, last.get(event.name, at - 1) + 0.001)  # same name: in order
            last[event.name] = at
            self.push(Due(at, 0, item.execution_id, event.name, event.payload))
        if self.rng.random() < STRAY_SHARE:
            stray = {"token": "stray/%s" % item.execution_id}
            at = now + self.rng.uniform(0, 2 * high)
            self.push(Due(at, 0, item.execution_id, STRAY, stray, designed=False))

    def push(self, due: Due) -> None:
        self._order += 1
        due.order = self._order
        heapq.heappush(self.due, due)

    def send_due(self) -> None:
        now = time.monotonic()
        while self.due and self.due[0].at <= now:
            self.send(heapq.heappop(self.due))
        if now >= self._next_timeout_check and self.after_timeout:
            self._next_timeout_check = now + 0.5
            self.send_after_timeouts()

    def send_after_timeouts(self) -> None:
        """Send the events whose first wait's timeout is now recorded (a FAILED wait).

        An execution that finished before that (not as designed) cannot take its event:
        it counts as refused, and the run does not wait for it.
        """
        keys = list(self.after_timeout)
        rows = self.driver.rows(
            "SELECT w.e, w.n, EXISTS (SELECT 1 FROM zart_steps s WHERE s.execution_id = w.e"
            " AND s.name = w.n AND s.kind = 'EVENT' AND s.status = 'FAILED'),"
            " e.status = ANY(%s) FROM unnest(%s::text[], %s::text[]) AS w(e, n)"
            " JOIN zart_executions e ON e.id = w.e",
            [list(TERMINAL), [k[0] for k in keys], [k[1] for k in keys]],
        )
        for execution_id, name, timed_out, finished in rows:
            if timed_out or finished:
                payload = self.after_timeout.pop((execution_id, name))
                due = Due(time.monotonic(), 0, execution_id, name, payload)
                if timed_out:
                    self.send(due)
                else:
                    self.refuse(due)

    def send(self, due: Due) -> None:
        import django_zart as zart

        def send() -> str:
            try:
                zart.send_event(due.execution_id, due.name, due.payload)
            except zart.ExecutionFinished:
                return "refused"
            return "stored"

        def committed() -> bool:
            return bool(
                self.driver.rows(
                    "SELECT 1 FROM zart_events WHERE execution_id = %s AND name = %s"
                    " AND payload ->> 'token' = %s",
                    [due.execution_id, due.name, due.payload["token"]],
                )
            )

        outcome = self.driver.call(send, committed) or "stored"
        if not due.designed:
            self.strays[outcome] += 1
            return
        self.sent[outcome] += 1
        if outcome == "refused":
            self.refused.append("%s %s" % (due.execution_id, due.payload["token"]))

    def refuse(self, due: Due) -> None:
        self.sent["refused"] += 1
        self.refused.append("%s %s (finished before its wait)" % (due.execution_id, due.name))

    def pending_events(self) -> int:
        return len(self.due) + len(self.after_timeout)


# -- chaos ---------------------------------------------------------------------------


def find_cluster(port: int) -> tuple[str, str]:
    """The local cluster (version, name) listening on ``port``, from ``pg_lsclusters``."""
    try:
        out = subprocess.run(
            ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            "cannot list the PostgreSQL clusters (%s); pass --no-restart" % exc
        ) from exc
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == str(port):
            return fields[0], fields[1]
    raise SystemExit("no local PostgreSQL cluster listens on port %d; pass --no-restart" % port)


def database_port() -> int:
    from django.db import connection

    host = str(connection.settings_dict.get("HOST") or "")
    if host not in ("", "localhost", "127.0.0.1", "::1") and not host.startswith("/"):
        raise SystemExit(
            "the server %s is not local: it cannot be restarted; pass --no-restart" % host
        )
    return int(connection.settings_dict.get("PORT") or 5432)


@dataclass
class Disruption:
    """One of the two once-per-run events: when it happened and what it did."""

    at: float | None = None
    seconds: float | None = None
    detail: str = ""


class Chaos:
    """Kills and stops workers on a timer; restarts the server and cuts connections once."""

    def __init__(
        self,
        args: argparse.Namespace,
        pool: Pool,
        driver: Driver,
        rng: random.Random,
        began: float,
    ) -> None:
        self.args = args
        self.pool = pool
        self.driver = driver
        self.rng = rng
        self.began = began
        self.next_action = began + args.kill_every
        self.actions = 0
        self.cluster = None if args.no_restart else find_cluster(database_port())
        self.restart = Disruption() if self.cluster else None
        self.terminate = None if args.no_terminate else Disruption()
        self._restarting: subprocess.Popen[bytes] | None = None

    def step(self, progress: float) -> None:
        now = time.monotonic()
        if now >= self.next_action:
            jitter = self.rng.uniform(0.75, 1.25)
            self.next_action = now + self.args.kill_every * jitter
            self.actions += 1
            term = self.actions % TERM_EVERY == 0
            self.pool.signal_one(self.rng, signal.SIGTERM if term else signal.SIGKILL)
        self.step_restart(progress)
        due = self.terminate and self.terminate.at is None and progress >= TERMINATE_AT
        if due and self.restart_settled():
            self.terminate_backends()

    def restart_settled(self) -> bool:
        """Whether the restart (if any) is over: the terminations then hit new connections."""
        if self.restart is None:
            return True
        if self.restart.at is None or self.restart.seconds is None:
            return False
        return time.monotonic() - self.began > self.restart.at + self.restart.seconds + SETTLE

    def step_restart(self, progress: float) -> None:
        if self.restart is None or self.cluster is None:
            return
        if self.restart.at is None and progress >= RESTART_AT:
            version, name = self.cluster
            self.restart.at = time.monotonic() - self.began
            self._restarting = subprocess.Popen(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        if self._restarting is not None and self._restarting.poll() is not None:
            out = (self._restarting.stdout.read() if self._restarting.stdout else b"").decode()
            code = self._restarting.returncode
            self.restart.seconds = time.monotonic() - self.began - (self.restart.at or 0)
            self.restart.detail = "cluster %s/%s, exit %d%s" % (
                *self.cluster,
                code,
                (": " + out.strip()) if code else "",
            )
            self._restarting = None

    def terminate_backends(self) -> None:
        """Terminate every client backend of the database except the driver's own."""
        assert self.terminate is not None
        self.terminate.at = time.monotonic() - self.began
        count = self.driver.value(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        )
        self.terminate.detail = "%d backends terminated" % (count or 0)

    def finish(self) -> None:
        """Let a restart still under way complete before the checks."""
        if self._restarting is not None:
            self._restarting.wait()
            self.step_restart(1.0)


# -- the run -------------------------------------------------------------------------


@dataclass
class Progress:
    unfinished: int = 0
    finished_started: int = 0
    total: int = 0
    changed_at: float = field(default_factory=time.monotonic)


class Run:
    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.driver = Driver()
        self.load = Load(args, self.driver, self.rng)
        options = [
            "--orphan-timeout",
            str(args.orphan_timeout),
            "--shutdown-timeout",
            str(SHUTDOWN_TIMEOUT),
            "-v",
            str(args.worker_verbosity),
        ]
        self.pool = Pool(env, options, SHUTDOWN_TIMEOUT)
        self.began = time.monotonic()
        self.chaos = Chaos(args, self.pool, self.driver, self.rng, self.began)
        self.progress = Progress()
        self.notes: list[str] = []
        self.takeovers: dict[str, int] = {}
        """The most ``zart_tasks.recoveries`` seen per execution (tasks go when it ends)."""
        self.most_held_per_key = 0
        """The most tasks of one concurrency key held under a live lease, as sampled."""

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def fraction(self) -> float:
        """How far the run is: of ``--duration``, or of the first wave's workflows."""
        if self.args.duration:
            return self.elapsed() / float(self.args.duration)
        return self.progress.finished_started / int(self.args.workflows)

    def poll(self) -> None:
        row = self.driver.rows(
            "SELECT count(*) FILTER (WHERE status <> ALL(%s)),"
            " count(*) FILTER (WHERE parent_id IS NULL AND status = ANY(%s)), count(*),"
            " ARRAY(SELECT pid FROM zart_workers) FROM zart_executions",
            [list(TERMINAL), list(TERMINAL)],
        )[0]
        self.pool.registered.update(row[3])
        for execution_id, recoveries in self.driver.rows(
            "SELECT execution_id, max(recoveries) FROM zart_tasks WHERE recoveries > 0"
            " GROUP BY execution_id"
        ):
            self.takeovers[execution_id] = max(recoveries, self.takeovers.get(execution_id, 0))
        held = self.driver.value(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM zart_tasks"
            " WHERE limit_key IS NOT NULL AND held_by IS NOT NULL AND lease_until > now()"
            " GROUP BY limit_key) AS k"
        )
        self.most_held_per_key = max(self.most_held_per_key, int(held or 0))
        unfinished, finished, total = (int(v) for v in row[:3])
        if (unfinished, finished, total) != (
            self.progress.unfinished,
            self.progress.finished_started,
            self.progress.total,
        ):
            self.progress = Progress(unfinished, finished, total)

    def want_wave(self) -> bool:
        if self.load.queue:
            return False
        if self.load.waves == 0:
            return True
        if not self.args.duration or self.elapsed() >= self.args.duration:
            return False
        return self.progress.unfinished < int(self.args.workflows) / 2

    def loop(self) -> None:
        for _ in range(self.args.workers):
            self.pool.start()
        next_poll = next_report = 0.0
        while True:
            now = time.monotonic()
            if self.want_wave():
                self.load.new_wave()
            self.load.start_some()
            self.load.send_due()
            self.chaos.step(self.fraction())
            self.pool.reap()
            if now >= next_poll:
                next_poll = now + PROGRESS_EVERY
                self.poll()
                if self.finished() or self.gave_up():
                    return
            if now >= next_report:
                next_report = now + REPORT_EVERY
                self.report()
            time.sleep(TICK)

    def finished(self) -> bool:
        return (
            not self.load.queue
            and not self.want_wave()
            and self.load.pending_events() == 0
            and self.progress.unfinished == 0
            and self.progress.total >= len(self.load.started)
        )

    def gave_up(self) -> bool:
        if self.load.queue or self.want_wave():
            return False
        now = time.monotonic()
        if now - self.load.last_start > self.args.timeout:
            self.notes.append(
                "gave up waiting %.0fs after the last start (--timeout)" % self.args.timeout
            )
            return True
        if now - self.progress.changed_at > STALL:
            self.notes.append("gave up waiting: nothing finished for %.0fs" % STALL)
            return True
        return False

    def report(self) -> None:
        p = self.progress
        print(
            "  %5.0fs  %d started, %d executions, %d unfinished, %d events pending;"
            " kills %d, terms %d, workers %d"
            % (
                self.elapsed(),
                len(self.load.started),
                p.total,
                p.unfinished,
                self.load.pending_events(),
                self.pool.kills,
                self.pool.terms,
                len(self.pool.running()),
            ),
            flush=True,
        )

    def wind_down(self) -> float:
        """Stop the chaos and the workers; return the run's elapsed seconds.

        Workers are stopped once registered, so that each has its SIGTERM handler (a
        replacement started a moment ago may still be importing Django).
        """
        self.chaos.finish()
        elapsed = self.elapsed()
        deadline = time.monotonic() + REGISTER_PATIENCE
        while time.monotonic() < deadline and any(
            p.proc.pid not in self.pool.registered for p in self.pool.running()
        ):
            self.pool.reap()
            self.poll()
            time.sleep(PROGRESS_EVERY)
        self.pool.stop()
        return elapsed


# -- the checks ----------------------------------------------------------------------


@dataclass
class Invariant:
    name: str
    violations: int
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.violations == 0


def count_rows(
    driver: Driver,
    name: str,
    query: str,
    examples: str | None = None,
    params: Sequence[Any] = (),
) -> Invariant:
    """An invariant whose violations ``query`` counts; ``examples`` lists a few."""
    found = int(driver.value(query, params) or 0)
    rows = driver.rows(examples, params) if examples else []
    return Invariant(name, found, [" ".join(str(v) for v in row) for row in rows[:5]])


def check_outcomes(driver: Driver, started: list[Started]) -> tuple[Invariant, Counter[str]]:
    """Every started execution and designed child exists and ended as designed."""
    from benchmarks.chaos_workflows import designed
    from django_zart import serialization
    from django_zart.models import Execution

    def fetch() -> list[tuple[Any, ...]]:
        return list(
            Execution.objects.values_list("id", "workflow", "input", "status", "output", "error")
        )

    rows = {row[0]: row for row in driver.call(fetch) or []}
    expected: dict[str, tuple[str, dict[str, Any]]] = {}
    for item in started:
        expected[item.execution_id] = (item.workflow, item.data)
        design = designed(item.workflow, item.data)
        for suffix, data in design.children if design else ():
            expected["%s/%s" % (item.execution_id, suffix)] = ("chaos-child", data)
    problems: list[str] = []
    kinds: Counter[str] = Counter()
    for execution_id, (workflow, data) in expected.items():
        row = rows.pop(execution_id, None)
        problem = outcome_problem(row, workflow, data, designed, serialization.decode)
        if problem:
            got, want = problem
            problems.append("%s (%s): %s; expected %s" % (execution_id, workflow, got, want))
            kinds["%s: %s" % (workflow, got)] += 1
    for execution_id, row in rows.items():
        problems.append("%s (%s): not started by the driver nor designed" % (execution_id, row[1]))
        kinds["unexpected execution"] += 1
    return Invariant("every execution finished as designed", len(problems), problems[:5]), kinds


def outcome_problem(
    row: tuple[Any, ...] | None,
    workflow: str,
    data: dict[str, Any],
    designed: Callable[[str, Any], Any],
    decode: Callable[[Any], Any],
) -> tuple[str, str] | None:
    """What one execution ended with and what it should have, or ``None`` if as designed."""
    if row is None:
        return "missing", "started"
    _, stored_workflow, stored_input, status, output, error = row
    design = designed(workflow, data)
    if stored_workflow != workflow or decode(stored_input) != data or design is None:
        return "stored as %s %r" % (stored_workflow, stored_input), "%s %r" % (workflow, data)
    expected = describe(design.status, design.error_type, design.cause_type)
    got = describe(status, *error_types(error))
    if got != expected:
        return describe(status, *error_types(error), message=error_message(error)), expected
    if status == "COMPLETED" and decode(output) != design.output:
        return "COMPLETED with output %r" % (output,), "output %r" % (design.output,)
    return None


def error_types(error: dict[str, Any] | None) -> tuple[str | None, str | None]:
    error = error or {}
    return error.get("type"), (error.get("cause") or {}).get("type")


def error_message(error: dict[str, Any] | None) -> str:
    """The start of an error's message, unless it is one of django-zart's own errors
    (their messages name the execution, which would split the tally)."""
    error = error or {}
    if str(error.get("type", "")).startswith("django_zart."):
        return ""
    lines = str(error.get("message", "")).strip().splitlines()
    return lines[0][:60] if lines else ""


def describe(status: str, error_type: str | None, cause_type: str | None, message: str = "") -> str:
    text = status if error_type is None else "%s %s" % (status, error_type)
    if cause_type:
        text += " (cause %s)" % cause_type
    return text + (": %s" % message if message else "")


CRASH_LOOP = "django_zart.errors.WorkerCrashLoop"


def check_steps(driver: Driver) -> list[Invariant]:
    return [
        count_rows(
            driver,
            "one checkpoint per run and position",
            "SELECT count(*) FROM (SELECT 1 FROM zart_steps GROUP BY run_id, position"
            " HAVING count(*) > 1) d",
        ),
        count_rows(
            driver,
            "no step body ran after its checkpoint existed",
            "SELECT count(*) FROM chaos_side_effects WHERE checkpoint_existed",
            "SELECT execution_id, position, 'attempt', attempt, 'pid', pid"
            " FROM chaos_side_effects WHERE checkpoint_existed LIMIT 5",
        ),
        count_rows(
            driver,
            "every recorded attempt ran",
            "SELECT count(*) FROM zart_steps s CROSS JOIN LATERAL generate_series(1, s.attempts)"
            " AS a(n) WHERE s.kind IN ('STEP', 'BRANCH') AND s.status IN ('COMPLETED', 'FAILED')"
            " AND NOT EXISTS (SELECT 1 FROM chaos_side_effects c"
            " WHERE c.execution_id = s.execution_id AND c.run_index = s.run_index"
            " AND c.position = s.position AND c.attempt = a.n)",
        ),
        count_rows(
            driver,
            "no step or run left in flight in a finished execution",
            "SELECT (SELECT count(*) FROM zart_steps s JOIN zart_executions e"
            " ON e.id = s.execution_id WHERE e.status = 'COMPLETED'"
            " AND s.status NOT IN ('COMPLETED', 'FAILED'))"
            " + (SELECT count(*) FROM zart_execution_runs r JOIN zart_executions e"
            " ON e.id = r.execution_id WHERE e.status = ANY(%s) AND r.status = 'RUNNING')",
            params=[list(TERMINAL)],
        ),
    ]


def check_atomic(driver: Driver) -> Invariant:
    """An atomic step's ledger row exists if and only if its COMPLETED checkpoint does,
    exactly once: killed workers, dropped connections and failed attempts included."""
    return count_rows(
        driver,
        "atomic steps wrote exactly once",
        "SELECT (SELECT count(*) FROM chaos_ledger l WHERE NOT EXISTS (SELECT 1 FROM"
        " zart_steps s WHERE s.execution_id = l.execution_id AND s.run_index = l.run_index"
        " AND s.position = l.position AND s.status = 'COMPLETED'))"
        " + (SELECT count(*) FROM zart_steps s WHERE s.name = 'chaos-credit'"
        " AND s.status = 'COMPLETED' AND (SELECT count(*) FROM chaos_ledger l"
        " WHERE l.execution_id = s.execution_id AND l.run_index = s.run_index"
        " AND l.position = s.position) <> 1)",
        "SELECT execution_id, position, count(*) FROM chaos_ledger"
        " GROUP BY execution_id, position HAVING count(*) <> 1 LIMIT 5",
    )


def check_events(driver: Driver, load: Load) -> list[Invariant]:
    tokens = driver.value(
        "SELECT count(*) FROM (SELECT 1 FROM zart_events WHERE name <> %s"
        " GROUP BY execution_id, payload ->> 'token' HAVING count(*) > 1) d",
        [STRAY],
    )
    stored = driver.value("SELECT count(*) FROM zart_events WHERE name <> %s", [STRAY])
    lost = load.sent["stored"] - int(stored or 0)
    refused = load.sent["refused"]
    sent = Invariant(
        "every designed event accepted and stored once",
        int(tokens or 0) + max(lost, 0) + refused,
        ["refused: %s" % r for r in load.refused[:5]],
    )
    return [
        sent,
        count_rows(
            driver,
            "no wait took two events",
            "SELECT count(*) FROM (SELECT 1 FROM zart_events WHERE consumed_by_id IS NOT NULL"
            " GROUP BY consumed_by_id HAVING count(*) > 1) d",
        ),
        count_rows(
            driver,
            "no event taken by two waits",
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM zart_steps WHERE kind = 'EVENT'"
            " AND status = 'COMPLETED' GROUP BY execution_id, result ->> 'token'"
            " HAVING count(*) > 1) d)"
            " + (SELECT count(*) FROM zart_steps s WHERE s.kind = 'EVENT'"
            " AND s.status = 'COMPLETED' AND NOT EXISTS (SELECT 1 FROM zart_events e"
            " WHERE e.consumed_by_id = s.id AND e.payload = s.result))",
        ),
        count_rows(
            driver,
            "no designed event left unconsumed",
            "SELECT count(*) FROM zart_events WHERE consumed_at IS NULL AND name <> %s",
            "SELECT execution_id, name, payload ->> 'token' FROM zart_events"
            " WHERE consumed_at IS NULL AND name <> %s ORDER BY id LIMIT 5",
            params=[STRAY],
        ),
        count_rows(
            driver,
            "no stray event consumed",
            "SELECT count(*) FROM zart_events WHERE consumed_at IS NOT NULL AND name = %s",
            params=[STRAY],
        ),
    ]


def check_leftovers(driver: Driver) -> list[Invariant]:
    return [
        count_rows(
            driver,
            "no task held by a dead worker",
            "SELECT count(*) FROM zart_tasks WHERE held_by IS NOT NULL",
            "SELECT execution_id, kind, 'recoveries', recoveries FROM zart_tasks"
            " WHERE held_by IS NOT NULL LIMIT 5",
        ),
        count_rows(
            driver,
            "no task left for a finished execution",
            "SELECT count(*) FROM zart_tasks t JOIN zart_executions e ON e.id = t.execution_id"
            " WHERE e.status = ANY(%s)",
            params=[list(TERMINAL)],
        ),
        count_rows(
            driver,
            "no execution stuck unfinished",
            "SELECT count(*) FROM zart_executions WHERE status <> ALL(%s)",
            "SELECT id, workflow, status FROM zart_executions WHERE status <> ALL(%s)"
            " ORDER BY id LIMIT 5",
            params=[list(TERMINAL)],
        ),
    ]


def check_crash_loops(driver: Driver, killed: set[int]) -> Invariant:
    """No execution failed with ``WorkerCrashLoop``: the work never crashes a worker.

    Each example says in how many killed workers a step of that execution ran, which
    tells an execution that really was in the killed workers from one merely counted.
    """
    rows = driver.rows(
        "SELECT e.id, e.workflow, ARRAY(SELECT DISTINCT pid FROM chaos_side_effects c"
        " WHERE c.execution_id = e.id)"
        " FROM zart_executions e WHERE e.error ->> 'type' = %s"
        " OR e.error -> 'cause' ->> 'type' = %s ORDER BY e.id",
        [CRASH_LOOP, CRASH_LOOP],
    )
    examples = [
        "%s (%s): ran in %d killed worker(s)" % (eid, workflow, len(killed.intersection(pids)))
        for eid, workflow, pids in rows
    ]
    return Invariant("no execution failed with WorkerCrashLoop", len(rows), examples[:5])


def rerun_figures(driver: Driver) -> dict[str, int]:
    """Step bodies run vs attempts the checkpoints record: the re-runs after crashes."""
    rows, distinct = driver.rows(
        "SELECT count(*), count(DISTINCT (execution_id, run_index, position, attempt))"
        " FROM chaos_side_effects"
    )[0]
    recorded = driver.value(
        "SELECT coalesce(sum(attempts), 0) FROM zart_steps"
        " WHERE kind IN ('STEP', 'BRANCH') AND status IN ('COMPLETED', 'FAILED')"
    )
    steps = driver.value("SELECT count(*) FROM zart_steps")
    executions = driver.value("SELECT count(*) FROM zart_executions")
    ledger, ledger_rows = driver.rows(
        "SELECT coalesce(sum(amount), 0), count(*) FROM chaos_ledger"
    )[0]
    atomic_done = driver.value(
        "SELECT count(*) FROM zart_executions WHERE workflow = 'chaos-atomic'"
        " AND status = 'COMPLETED'"
    )
    atomic_bodies = driver.value(
        "SELECT count(*) FROM chaos_side_effects WHERE step = 'chaos-credit'"
    )
    return {
        # The exactly-once counter: 6 per completed chaos-atomic execution, whatever ran.
        "atomic_ledger_total": int(ledger),
        "atomic_ledger_rows": int(ledger_rows),
        "atomic_executions_completed": int(atomic_done or 0),
        "atomic_step_bodies_run": int(atomic_bodies or 0),
        "side_effect_rows": int(rows),
        "distinct_attempts": int(distinct),
        "recorded_attempts": int(recorded or 0),
        "reruns": int(rows) - int(distinct),
        "step_rows": int(steps or 0),
        "executions": int(executions or 0),
    }


def check(run: Run) -> tuple[list[Invariant], Counter[str], dict[str, int]]:
    from benchmarks.chaos_workflows import LIMIT

    outcomes, kinds = check_outcomes(run.driver, run.load.started)
    workers = run.pool.unexpected()
    invariants = [
        outcomes,
        *check_steps(run.driver),
        check_atomic(run.driver),
        Invariant(
            "no concurrency key held by more than its limit (sampled)",
            max(run.most_held_per_key - LIMIT, 0),
            [],
        ),
        *check_events(run.driver, run.load),
        *check_leftovers(run.driver),
        check_crash_loops(run.driver, run.pool.killed_pids()),
        Invariant("every worker exited as expected", len(workers), workers[:5]),
    ]
    figures = rerun_figures(run.driver)
    figures.update(takeover_figures(run.driver, run.takeovers, run.pool.killed_pids()))
    figures["most_held_per_key"] = run.most_held_per_key
    return invariants, kinds, figures


def takeover_figures(driver: Driver, takeovers: dict[str, int], killed: set[int]) -> dict[str, int]:
    """How often work was taken over, against how often it really ran in a killed worker.

    An execution taken over more often than killed workers ran one of its steps was (at
    least once) counted as crashed while it only waited in a worker's queue, or between
    two steps: the count a ``WorkerCrashLoop`` is decided on.
    """
    ran_in_killed = dict(
        driver.rows(
            "SELECT execution_id, count(DISTINCT pid) FROM chaos_side_effects"
            " WHERE pid = ANY(%s) AND execution_id = ANY(%s) GROUP BY execution_id",
            [sorted(killed), sorted(takeovers)],
        )
    )
    return {
        "executions_taken_over": len(takeovers),
        "most_takeovers": max(takeovers.values(), default=0),
        "taken_over_more_than_killed_in": sum(
            1 for eid, count in takeovers.items() if count > ran_in_killed.get(eid, 0)
        ),
    }


# -- reporting -----------------------------------------------------------------------


def print_invariants(invariants: list[Invariant]) -> None:
    width = max(len(i.name) for i in invariants)
    print("%-*s  %10s  %s" % (width, "invariant", "violations", "result"))
    print("%s  %s  %s" % ("-" * width, "-" * 10, "-" * 6))
    for inv in invariants:
        print("%-*s  %10d  %s" % (width, inv.name, inv.violations, "OK" if inv.ok else "FAIL"))


def print_details(invariants: list[Invariant], kinds: Counter[str]) -> None:
    failed = [i for i in invariants if not i.ok and i.examples]
    if kinds:
        print("\nExecutions not as designed, by workflow and outcome:")
        for kind, count in kinds.most_common():
            print("  %5d  %s" % (count, kind[:160]))
    for inv in failed:
        print("\n%s, e.g.:" % inv.name)
        for example in inv.examples:
            print("  %s" % example[:200])


def summary_lines(run: Run, elapsed: float, figures: dict[str, int]) -> list[str]:
    from benchmarks.chaos_workflows import LIMIT

    load, pool = run.load, run.pool
    total = figures["executions"]
    attempts = figures["distinct_attempts"]
    reruns = figures["reruns"]
    mix = Counter(item.workflow for item in load.started)
    lines = [
        "executions %d (%d started in %d wave(s), %d children), steps %d, elapsed %.1fs"
        % (
            total,
            len(load.started),
            load.waves,
            total - len(load.started),
            figures["step_rows"],
            elapsed,
        ),
        "mix: %s" % ", ".join("%s %d" % kv for kv in sorted(mix.items())),
        "kills %d, terms %d, worker processes %d" % (pool.kills, pool.terms, len(pool.procs)),
        "step bodies ran %d times for %d attempts (%d recorded in checkpoints): %d re-runs"
        " (%.1f%%)"
        % (
            figures["side_effect_rows"],
            attempts,
            figures["recorded_attempts"],
            reruns,
            100.0 * reruns / attempts if attempts else 0.0,
        ),
        "exactly-once counter: %d in %d ledger rows for %d completed chaos-atomic executions"
        " (%d expected); its step bodies ran %d times"
        % (
            figures["atomic_ledger_total"],
            figures["atomic_ledger_rows"],
            figures["atomic_executions_completed"],
            6 * figures["atomic_executions_completed"],
            figures["atomic_step_bodies_run"],
        ),
        "concurrency limit %d per key: at most %d held at once (sampled every %gs)"
        % (LIMIT, figures["most_held_per_key"], PROGRESS_EVERY),
        "events: %d stored, %d refused; stray events: %d stored, %d refused"
        % (
            load.sent["stored"],
            load.sent["refused"],
            load.strays["stored"],
            load.strays["refused"],
        ),
        "takeovers (zart_tasks.recoveries, sampled every %gs): %d executions, at most %d"
        " times; %d taken over more often than a killed worker ran one of their steps"
        % (
            PROGRESS_EVERY,
            figures["executions_taken_over"],
            figures["most_takeovers"],
            figures["taken_over_more_than_killed_in"],
        ),
        *disruption_lines(run.chaos),
        "driver statements retried after an error: %d %s"
        % (run.driver.errors, dict(run.driver.errors_by_type)),
    ]
    return lines + run.notes


def disruption_lines(chaos: Chaos) -> list[str]:
    lines = []
    for label, what in (("restart", chaos.restart), ("terminate", chaos.terminate)):
        if what is None:
            lines.append("%s: off" % label)
        elif what.at is None:
            lines.append("%s: never reached (progress stayed below its mark)" % label)
        else:
            took = "" if what.seconds is None else ", took %.1fs" % what.seconds
            lines.append("%s at %.1fs%s: %s" % (label, what.at, took, what.detail))
    return lines


def write_json(
    run: Run,
    invariants: list[Invariant],
    kinds: Counter[str],
    figures: dict[str, int],
    summary: list[str],
    meta: dict[str, Any],
) -> Path:
    result = {
        "benchmark": "chaos",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(run.args).items()},
        "environment": meta,
        "invariants": [asdict(i) for i in invariants],
        "not_as_designed": dict(kinds),
        "figures": figures,
        "summary": summary,
        "workers": [
            {"number": p.number, "pid": p.proc.pid, "fate": p.fate, "code": p.code}
            for p in run.pool.procs
        ],
    }
    output = run.args.output or RESULTS / (
        "chaos-%s.json" % datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return output


# -- main ----------------------------------------------------------------------------


def prepare(args: argparse.Namespace) -> dict[str, str]:
    """Django, a fresh database with the side-effect table, and the workers' environment."""
    env = configure_django(args.database, {"ZART_BENCH_POLL_INTERVAL": "0.2"})
    create_database(args.database)
    for old in LOGS.glob("chaos-worker-*.log"):  # an earlier run's, which may have had more
        old.unlink()
    from django.db import connection

    from benchmarks.chaos_workflows import SIDE_EFFECTS_DDL

    with connection.cursor() as cursor:
        cursor.execute(SIDE_EFFECTS_DDL)
    return env


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = prepare(args)
    run = Run(args, env)
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        meta = environment(conn)
    plan = (
        "waves of %d workflows for %.0fs" % (args.workflows, args.duration)
        if args.duration
        else "%d workflows" % args.workflows
    )
    print(
        "django-zart chaos: %s, %d workers, a kill every %gs, orphan timeout %gs, seed %d;"
        " load average %.2f on %s CPUs"
        % (
            plan,
            args.workers,
            args.kill_every,
            args.orphan_timeout,
            args.seed,
            meta["loadavg_at_start"][0],
            meta["cpus"],
        ),
        flush=True,
    )
    try:
        run.loop()
    finally:
        elapsed = run.wind_down()
    invariants, kinds, figures = check(run)
    print()
    print_invariants(invariants)
    summary = summary_lines(run, elapsed, figures)
    print()
    for line in summary:
        print(line)
    print_details(invariants, kinds)
    meta["loadavg_at_end"] = os.getloadavg()
    output = write_json(run, invariants, kinds, figures, summary, meta)
    print("\nWrote %s; worker logs in %s" % (relative(output), relative(LOGS)))
    return 0 if all(i.ok for i in invariants) else 1


if __name__ == "__main__":
    sys.exit(main())
