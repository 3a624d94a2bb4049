"""Wake-up latency of an idle django-zart worker on PostgreSQL, with NOTIFY and polling only.

Run from the repository root::

    python benchmarks/wakeup.py                  # 200 runs per row (~2 min)
    python benchmarks/wakeup.py --quick          # 30 runs per row (~25 s)
    python benchmarks/wakeup.py --runs 500 --poll-interval 0.5

Two measurements, each against one idle ``runzartworker`` process:

- **start**: from just before ``zart.start()`` to the moment the workflow's first step
  starts running (the step returns ``time.time()``);
- **event**: a workflow waits in ``zart.wait_for_event("go")``; once it is SUSPENDED, from
  just before ``zart.send_event(execution_id, "go", payload)`` to the start of the step
  after the wait.

Each is measured one run at a time, after a short random pause, with the default worker
(LISTEN/NOTIFY) and with a worker started with ``--no-listen`` (polling only). The table
gives p50, p95 and max per row, the polling/notify ratios and where the time goes (the
call itself, its commit to the worker's claim, the claim to the workflow body, the body to
the step); the JSON under ``benchmarks/results/`` has every run. See
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
    LOGS,
    RESULTS,
    configure_django,
    create_database,
    dsn,
    environment,
    fmt,
    kill_workers,
    print_table,
    process_cpu,
    relative,
    start_worker,
    stop_workers,
    truncate_tables,
)

START_WORKFLOW = "bench-wakeup-start"
EVENT_WORKFLOW = "bench-wakeup-event"
TARGET_P50_MS = 20.0  # the goal for the notify rows
MODES = ("notify", "polling")
SCENARIOS = ("start", "event")
# The parts of a run, as (name, from, to) over the timestamps of a Run.
SEGMENTS = (
    ("call", "before", "returned"),
    ("commit->claim", "returned", "claim"),
    ("claim->body", "claim", "body"),
    ("body->step", "body", "step"),
)


# -- setup ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Wake-up latency of an idle django-zart worker: NOTIFY vs polling."
    )
    parser.add_argument("--runs", type=int, help="measured runs per row (200; 30 with --quick)")
    parser.add_argument("--quick", action="store_true", help="30 runs per row unless --runs")
    parser.add_argument(
        "--warmup", type=int, default=5, help="runs before each row that are not counted (5)"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.2,
        help="runzartworker --poll-interval, seconds (0.2, the default)",
    )
    parser.add_argument(
        "--modes",
        default="notify,polling",
        help="worker modes: notify (default worker), polling (--no-listen)",
    )
    parser.add_argument("--scenarios", default="start,event", help="what to measure")
    parser.add_argument(
        "--pause", type=float, default=0.01, help="least pause before each run, seconds (0.01)"
    )
    parser.add_argument(
        "--notify-jitter",
        type=float,
        default=0.04,
        help="random extra pause in notify mode, up to this (0.04); in "
        "polling mode it is up to one poll interval",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        help="runzartworker --concurrency (default: the worker's default)",
    )
    parser.add_argument(
        "--worker-verbosity",
        type=int,
        default=1,
        help="runzartworker -v (1, the default: INFO lines to the log)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random pauses (1)")
    parser.add_argument(
        "--database",
        default="zart_bench_wakeup",
        help="database to (re)create on DATABASE_URL's server (zart_bench_wakeup)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30, help="give up on a run after this many seconds (30)"
    )
    parser.add_argument("--output", type=Path, help="JSON file (default: under results/)")
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 30 if args.quick else 200
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if args.runs < 1 or args.warmup < 0 or args.poll_interval <= 0:
        parser.error("--runs must be positive, --warmup not negative, --poll-interval > 0")
    if not args.mode_list or set(args.mode_list) - set(MODES):
        parser.error("--modes takes notify and/or polling")
    if not args.scenario_list or set(args.scenario_list) - set(SCENARIOS):
        parser.error("--scenarios takes start and/or event")
    return args


# -- measuring -----------------------------------------------------------------------


@dataclass
class Run:
    """One wake-up: epoch seconds, all from this machine's clock."""

    before: float  # just before zart.start / zart.send_event
    returned: float  # when it returned (its transaction committed)
    claim: float | None  # the worker's claim statement began (database now())
    body: float  # the workflow body was entered, in the run that reached the step
    step: float  # the step function was entered

    @property
    def latency(self) -> float:
        return self.step - self.before


@dataclass
class Series:
    scenario: str
    mode: str
    runs: list[Run] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the measured runs, pauses included
    worker_cpu_s: float | None = None
    loadavg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    notes: list[str] = field(default_factory=list)

    def summary(self, poll_interval: float) -> dict[str, Any]:
        ms = [1000 * r.latency for r in self.runs]
        row: dict[str, Any] = {
            "scenario": self.scenario,
            "mode": self.mode,
            "runs": len(ms),
            **stats(ms),
            # With NOTIFY, a run this slow was most likely woken by the poll instead.
            "over_half_poll_interval": sum(v > 500 * poll_interval for v in ms),
            "worker_cpu_ms_per_run": (
                None if self.worker_cpu_s is None else 1000 * self.worker_cpu_s / len(ms)
            ),
            "seconds": self.seconds,
        }
        row["breakdown_ms"] = {
            name: stats(
                [
                    1000 * (getattr(r, b) - getattr(r, a))
                    for r in self.runs
                    if getattr(r, a) is not None and getattr(r, b) is not None
                ]
            )
            for name, a, b in SEGMENTS
        }
        return row


def stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None, "mean": None, "min": None}
    ordered = sorted(values)
    p95 = ordered[0]
    if len(ordered) > 1:
        p95 = statistics.quantiles(ordered, n=100, method="inclusive")[94]
    return {
        "p50": statistics.median(ordered),
        "p95": p95,
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
        "min": ordered[0],
    }


class Bench:
    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args = args
        self.env = env
        self.conninfo = dsn(args.database)
        self.monitor = psycopg.connect(dsn("postgres"), autocommit=True)
        self.random = random.Random(args.seed)
        self.proc: subprocess.Popen[bytes] | None = None
        self.watch: psycopg.Connection | None = None

    # -- the worker --------------------------------------------------------------------

    def start_worker(self, mode: str) -> None:
        args = self.args
        options = ["--poll-interval", str(args.poll_interval), "-v", str(args.worker_verbosity)]
        if args.concurrency:
            options += ["--concurrency", str(args.concurrency)]
        if mode == "polling":
            options.append("--no-listen")
        self.proc = start_worker(self.env, options, LOGS / ("wakeup-%s.log" % mode))
        deadline = time.monotonic() + 60
        assert self.watch is not None
        while True:
            row = self.watch.execute(
                "SELECT count(*) FROM zart_workers WHERE pid = %s", [self.proc.pid]
            ).fetchone()
            if row and row[0]:
                break
            self.check_worker()
            if time.monotonic() > deadline:
                self.abort("the worker did not register within 60s")
            time.sleep(0.05)
        time.sleep(0.5)  # registration comes before the LISTEN connection is up

    def stop_worker(self) -> list[str]:
        if self.proc is None:
            return []
        notes = stop_workers([self.proc])
        if self.proc.returncode not in (0, None):
            notes.append("the worker exited with %s" % self.proc.returncode)
        self.proc = None
        return notes

    def check_worker(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.abort("the worker exited with %s; see %s" % (self.proc.returncode, LOGS))

    def abort(self, message: str) -> None:
        if self.proc is not None:
            kill_workers([self.proc])
        raise SystemExit(message)

    # -- runs --------------------------------------------------------------------------

    def pause(self, mode: str) -> None:
        jitter = self.args.poll_interval if mode == "polling" else self.args.notify_jitter
        time.sleep(self.args.pause + self.random.uniform(0, jitter))

    def wait_output(self, execution_id: str) -> dict[str, Any]:
        """Poll the execution until it completes (2 ms, doubling to 20 ms between polls)."""
        assert self.watch is not None
        deadline = time.monotonic() + self.args.timeout
        delay = 0.002
        while True:
            time.sleep(delay)
            row = self.watch.execute(
                "SELECT status, output FROM zart_executions WHERE id = %s", [execution_id]
            ).fetchone()
            if row and row[0] == "COMPLETED":
                return dict(row[1])
            if row and row[0] in ("FAILED", "CANCELLED"):
                self.abort("execution %s is %s" % (execution_id, row[0]))
            self.check_worker()
            if time.monotonic() > deadline:
                self.abort(
                    "execution %s did not complete within %ss (status %s)"
                    % (execution_id, self.args.timeout, row[0] if row else None)
                )
            delay = min(delay * 2, 0.02)

    def wait_suspended(self, prefix: str, count: int) -> None:
        """Wait until ``count`` executions named ``prefix-*`` wait for their event."""
        assert self.watch is not None
        deadline = time.monotonic() + self.args.timeout + count * 0.1
        while True:
            row = self.watch.execute(
                "SELECT count(*) FROM zart_executions e JOIN zart_tasks t"
                " ON t.execution_id = e.id WHERE e.id LIKE %s AND e.status = 'SUSPENDED'"
                " AND t.held_by IS NULL AND t.run_after IS NULL",
                [prefix + "-%"],
            ).fetchone()
            if row and row[0] >= count:
                return
            self.check_worker()
            if time.monotonic() > deadline:
                self.abort("%s of %d executions suspended" % (row[0] if row else 0, count))
            time.sleep(0.05)

    def run_start(self, mode: str, index: int) -> Run:
        import django_zart as zart

        self.pause(mode)
        before = time.time()
        execution_id = zart.start(START_WORKFLOW, execution_id="start-%s-%d" % (mode, index))
        returned = time.time()
        return self.finish_run(before, returned, self.wait_output(execution_id))

    def run_event(self, mode: str, execution_id: str) -> Run:
        import django_zart as zart

        self.pause(mode)
        before = time.time()
        # With a payload: a "go" without one (payload None) is consumed but not seen as
        # delivered by wait_for_event at the time of writing, and the execution waits on.
        waiting = zart.send_event(execution_id, "go", {"run": execution_id})
        returned = time.time()
        if not waiting:
            self.abort("execution %s was not waiting for its event" % execution_id)
        return self.finish_run(before, returned, self.wait_output(execution_id))

    @staticmethod
    def finish_run(before: float, returned: float, output: dict[str, Any]) -> Run:
        return Run(
            before=before,
            returned=returned,
            claim=output.get("claim"),
            body=float(output["body"]),
            step=float(output["step"]),
        )

    # -- one row -----------------------------------------------------------------------

    def measure(self, scenario: str, mode: str) -> Series:
        args = self.args
        series = Series(scenario, mode)
        total = args.warmup + args.runs
        if scenario == "event":
            # Every execution is started and left waiting first, so each measured run
            # finds the worker idle and its execution SUSPENDED.
            import django_zart as zart

            prefix = "event-%s" % mode
            ids = [
                zart.start(EVENT_WORKFLOW, execution_id="%s-%d" % (prefix, i)) for i in range(total)
            ]
            self.wait_suspended(prefix, total)
            time.sleep(args.poll_interval)
        assert self.proc is not None
        cpu_before = None
        began = 0.0
        for i in range(total):
            if i == args.warmup:
                cpu_before = process_cpu(self.proc.pid)
                began = time.monotonic()
            run = self.run_start(mode, i) if scenario == "start" else self.run_event(mode, ids[i])
            if i >= args.warmup:
                series.runs.append(run)
        series.seconds = time.monotonic() - began
        cpu_after = process_cpu(self.proc.pid)
        if cpu_before is not None and cpu_after is not None:
            series.worker_cpu_s = cpu_after - cpu_before
        series.loadavg = os.getloadavg()
        from django.db import connection

        connection.close()
        return series

    def measure_mode(self, mode: str) -> list[Series]:
        truncate_tables(self.conninfo)
        self.watch = psycopg.connect(self.conninfo, autocommit=True)
        try:
            self.start_worker(mode)
            out = []
            for scenario in self.args.scenario_list:
                series = self.measure(scenario, mode)
                d = series.summary(self.args.poll_interval)
                print(
                    "  %-5s %-7s p50 %6.1f ms  p95 %6.1f ms  max %6.1f ms"
                    % (scenario, mode, d["p50"], d["p95"], d["max"])
                )
                out.append(series)
            notes = self.stop_worker()
            for series in out:
                series.notes += notes
            return out
        finally:
            if self.proc is not None:
                kill_workers([self.proc])
                self.proc = None
            self.watch.close()


# -- reporting -----------------------------------------------------------------------


def ratios(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for scenario in SCENARIOS:
        by = {r["mode"]: r for r in summary if r["scenario"] == scenario}
        if set(by) != set(MODES):
            continue
        row: dict[str, Any] = {"scenario": scenario}
        for name in ("p50", "p95", "max", "mean"):
            a, b = by["polling"][name], by["notify"][name]
            row[name] = a / b if a is not None and b else None
        out.append(row)
    return out


def print_tables(
    summary: list[dict[str, Any]], ratio_rows: list[dict[str, Any]], poll_interval: float
) -> None:
    lines = [
        (
            "scenario",
            "mode",
            "runs",
            "p50 ms",
            "p95 ms",
            "max ms",
            "mean ms",
            "> interval/2",
            "worker CPU ms/run",
        )
    ]
    for r in summary:
        lines.append(
            (
                r["scenario"],
                r["mode"],
                str(r["runs"]),
                fmt(r["p50"]),
                fmt(r["p95"]),
                fmt(r["max"]),
                fmt(r["mean"]),
                str(r["over_half_poll_interval"]),
                fmt(r["worker_cpu_ms_per_run"], 2),
            )
        )
    print_table(lines)
    if ratio_rows:
        print()
        lines = [("scenario", "p50 polling/notify", "p95 polling/notify", "mean polling/notify")]
        for r in ratio_rows:
            lines.append((r["scenario"], fmt(r["p50"]), fmt(r["p95"]), fmt(r["mean"])))
        print_table(lines)
    print("\nWhere the time goes, p50 ms (the parts' medians need not add up to the total):")
    lines = [("scenario", "mode", *(name for name, _, _ in SEGMENTS))]
    for r in summary:
        lines.append(
            (
                r["scenario"],
                r["mode"],
                *(fmt(r["breakdown_ms"][name]["p50"]) for name, _, _ in SEGMENTS),
            )
        )
    print_table(lines)
    print()
    half = 500 * poll_interval
    for r in summary:
        if r["mode"] == "notify" and r["p50"] is not None:
            print(
                "%s, notify: p50 %.1f ms %s the %.0f ms target"
                % (
                    r["scenario"],
                    r["p50"],
                    "meets" if r["p50"] <= TARGET_P50_MS else "misses",
                    TARGET_P50_MS,
                )
            )
        if r["mode"] == "polling" and r["mean"] is not None:
            print(
                "%s, polling: mean %.1f ms; half the poll interval is %.0f ms"
                % (r["scenario"], r["mean"], half)
            )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env = configure_django(
        args.database,
        {
            "ZART_BENCH_POLL_INTERVAL": str(args.poll_interval),
            "ZART_BENCH_CONN_MAX_AGE": "0",
            "ZART_BENCH_SERVER_SIDE_BINDING": "0",
        },
    )
    create_database(args.database)
    bench = Bench(args, env)
    meta = environment(bench.monitor)
    print(
        "django-zart wake-up latency: %d runs per row (+%d warm-up), poll interval %g s; "
        "load average %.2f on %s CPUs"
        % (args.runs, args.warmup, args.poll_interval, meta["loadavg_at_start"][0], meta["cpus"])
    )
    series: list[Series] = []
    for mode in args.mode_list:
        series += bench.measure_mode(mode)
    summary = [s.summary(args.poll_interval) for s in series]
    order = {(sc, m): i for i, (sc, m) in enumerate((sc, m) for sc in SCENARIOS for m in MODES)}
    summary.sort(key=lambda r: order[(r["scenario"], r["mode"])])
    ratio_rows = ratios(summary)
    print()
    print_tables(summary, ratio_rows, args.poll_interval)
    meta["loadavg_at_end"] = os.getloadavg()
    result = {
        "benchmark": "wakeup",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": meta,
        "summary": summary,
        "ratios_polling_over_notify": ratio_rows,
        "series": [
            {
                "scenario": s.scenario,
                "mode": s.mode,
                "loadavg_at_end": s.loadavg,
                "notes": s.notes,
                "runs": [asdict(r) for r in s.runs],
            }
            for s in series
        ],
    }
    output = args.output or RESULTS / (
        "wakeup-%s.json" % datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print("\nWrote %s" % relative(output))
    bench.monitor.close()


if __name__ == "__main__":
    main()
