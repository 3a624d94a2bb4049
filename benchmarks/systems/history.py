"""W5, django-zart and bare only: does a large history or many sleepers cost anything?

- **History**: one database per size (``zart_bench_h1k``, ``_h100k``, ``_h1m``; built once
  per suite run, dropped at its end) holds that many finished executions, shaped like
  real ones (a COMPLETED execution, its run, three COMPLETED steps), inserted with one
  ``INSERT ... SELECT generate_series`` per table. On each, per system: the start → result
  p50 of a 3-step workflow on an idle worker (the claim's latency) and W1 steps/s with
  1 worker. What a measurement adds is deleted after it, so the history stays its size.
- **Sleepers** (django-zart): 10,000 executions in ``zart.sleep("nap", 3600)``; once all
  are SUSPENDED, the CPU of the worker (and of the server) over 30 s idle.
- **Long run** (``--long``, django-zart): RSS of one worker at the start and the end of a
  run of that many steps (100,000 by default; the target is 1,000,000).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import bare_worker
from benchmarks.harness import create_database, process_cpu
from benchmarks.systems.common import Stats, bounded, conninfo, drop_database

SIZES = {"1k": 1_000, "100k": 100_000, "1m": 1_000_000}
HISTORY = """
INSERT INTO zart_executions (id, workflow, queue, status, input, output, run_index,
                             replay_base, wake_parent, created_at, started_at, finished_at,
                             updated_at)
SELECT 'hist-' || g, 'bench-chain', 'default', 'COMPLETED', jsonb_build_object('i', g, 'n', 3),
       to_jsonb(g + 3), 1, 1, false, now() - interval '1 day', now() - interval '1 day',
       now() - interval '1 day', now() - interval '1 day'
  FROM generate_series(%(first)s::int, %(last)s::int) AS g;
INSERT INTO zart_execution_runs (index, reason, status, execution_id, created_at,
                                 finished_at, triggered_by)
SELECT 1, 'INITIAL', 'COMPLETED', 'hist-' || g, now() - interval '1 day',
       now() - interval '1 day', ''
  FROM generate_series(%(first)s::int, %(last)s::int) AS g;
INSERT INTO zart_steps (run_id, execution_id, run_index, sequence, position, name, kind,
                        status, result, error, attempts, wake_at, created_at, updated_at)
SELECT r.id, r.execution_id, 1, s, CASE WHEN s = 1 THEN 'add-one' ELSE 'add-one#' || s END,
       'add-one', 'STEP', 'COMPLETED', to_jsonb(s), NULL, 1, NULL,
       now() - interval '1 day', now() - interval '1 day'
  FROM zart_execution_runs r CROSS JOIN generate_series(1, 3) AS s
 WHERE r.execution_id LIKE 'hist-%%';
"""
CLEAN = """
DELETE FROM zart_steps WHERE execution_id NOT LIKE 'hist-%';
DELETE FROM zart_tasks WHERE execution_id NOT LIKE 'hist-%';
DELETE FROM zart_execution_runs WHERE execution_id NOT LIKE 'hist-%';
DELETE FROM zart_executions WHERE id NOT LIKE 'hist-%';
DELETE FROM zart_workers;
"""

ROWS: list[tuple[str, str, str, int]] = [
    *(("W5", "p50_%s" % s, "W5 start→result p50 ms, %s history" % s, 1) for s in SIZES),
    *(("W5", "steps_%s" % s, "W5 W1 steps/s, %s history" % s, 0) for s in SIZES),
    ("W5", "sleep_cpu_ms", "W5 worker CPU ms over 30 s, 10k sleeping", 0),
    ("W5", "sleep_server_cpu_ms", "W5 server CPU ms over 30 s, 10k sleeping", 0),
    ("W5", "rss_start_mb", "W5 long run: worker RSS MB at start", 1),
    ("W5", "rss_end_mb", "W5 long run: worker RSS MB at end", 1),
]

_built: set[str] = set()


def sizes(args: Any) -> list[str]:
    return [s for s in SIZES if not (args.quick and s == "1m")]


def build(zart: Any, size: str) -> str:
    """The history database of ``size`` (built on first use)."""
    database = "zart_bench_h%s" % size
    if database in _built:
        return database
    zart.use_database(database)
    create_database(database)
    began = time.monotonic()
    with psycopg.connect(conninfo(database), autocommit=True) as conn:
        for statement in HISTORY.split(";")[:-1]:
            conn.execute(statement, {"first": 1, "last": SIZES[size]})
        conn.execute("VACUUM ANALYZE")
        # A history grows over months, its pages long since written out: the measurement
        # must not pay for the checkpoint this load's WAL would otherwise bring on (full
        # page images after it, and its writes on the same disk).
        conn.execute("CHECKPOINT")
    print("  W5: %s finished executions inserted in %.0f s" % (size, time.monotonic() - began))
    _built.add(database)
    return database


def clean(database: str) -> None:
    """Delete what a measurement added (a failure is printed: the next one cleans again)."""
    try:
        with psycopg.connect(conninfo(database), autocommit=True) as conn:
            for statement in CLEAN.split(";")[:-1]:
                conn.execute(statement)
    except psycopg.Error as exc:
        print("  W5: could not clean %s: %s" % (database, exc))


def drop_all() -> None:
    for database in sorted(_built):
        drop_database(database)
    _built.clear()


def measure(systems: list[Any], args: Any) -> dict[str, dict[str, Any]]:
    """One round of W5 over ``systems`` (zart and/or bare, in the round's order)."""
    by_name = {s.name: s for s in systems}
    zart = by_name.get("zart")
    if zart is None:  # the history databases are built through Django
        from benchmarks.systems import load

        zart = load("zart")(args)
    main = zart.database
    out: dict[str, dict[str, Any]] = {s.name: {} for s in systems}
    tries = 15 if args.quick else 30
    try:
        for size in sizes(args):
            database = bounded(600, lambda s=size: {"db": build(zart, s)})["db"]  # type: ignore[misc]
            for system in systems:
                system.use_database(database)
                try:
                    got = bounded(
                        args.timeout,
                        lambda s=system: s.latency("W5", tries, "chain", 3, fresh=False),  # type: ignore[misc]
                    )
                    out[system.name]["p50_%s" % size] = got["p50_ms"]
                    clean(database)
                    got = bounded(
                        args.timeout,
                        lambda s=system: s.throughput("W5", 1, args.workflows, 3, fresh=False),  # type: ignore[misc]
                    )
                    out[system.name]["steps_%s" % size] = got["steps_per_s"]
                except Exception as exc:
                    print("  W5 %s %s: FAILED %s" % (system.name, size, exc))
                finally:
                    clean(database)
    finally:
        for system in systems:
            system.use_database(main)
        zart.use_database(main)
    if "zart" in by_name:
        try:
            out["zart"].update(bounded(args.timeout, lambda: sleepers(zart, args)))
        except Exception as exc:
            print("  W5 zart sleepers: FAILED %s" % exc)
        if args.long:
            try:
                out["zart"].update(bounded(args.long / 50 + 120, lambda: long_run(zart, args)))
            except Exception as exc:
                print("  W5 zart long run: FAILED %s" % exc)
    return out


def start_bulk(zart: Any, workflow: str, inputs: list[dict[str, int]]) -> None:
    """Start executions in bulk: ``zart.start_many`` if the engine has it, else the rows
    ``zart.start`` writes, from ``bare_worker.ENQUEUE``."""
    import django_zart

    for n in range(0, len(inputs), 5000):
        chunk = inputs[n : n + 5000]
        if hasattr(django_zart, "start_many"):
            django_zart.start_many(workflow, chunk)
        else:
            with psycopg.connect(conninfo(zart.database), autocommit=True) as conn:
                bare_worker.enqueue(conn, chunk, workflow)
    zart.after_enqueue()


def sleepers(zart: Any, args: Any) -> dict[str, Any]:
    count, idle = (2000, 10.0) if args.quick else (10_000, 30.0)
    zart.reset()
    start_bulk(zart, "bench-nap", [{"i": i} for i in range(count)])
    procs = zart.start_workers("W5-sleep", 1)
    stats = Stats(zart.database)
    try:
        query = "SELECT count(*) FROM zart_executions WHERE status = 'SUSPENDED'"
        while zart.poll_conn.execute(query).fetchone()[0] < count:  # type: ignore[index]
            time.sleep(0.2)
        time.sleep(1)
        cpu0, server0 = process_cpu(procs[0].pid) or 0.0, stats.server_cpu()
        time.sleep(idle)
        cpu1, server1 = process_cpu(procs[0].pid) or 0.0, stats.server_cpu()
    finally:
        zart.stop(procs)
        zart.teardown()
        stats.close()
    scale = 30.0 / idle  # reported per 30 s
    return {
        "sleep_cpu_ms": 1000 * (cpu1 - cpu0) * scale,
        "sleep_server_cpu_ms": (
            None if server0 is None or server1 is None else 1000 * (server1 - server0) * scale
        ),
        "sleepers": count,
    }


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def long_run(zart: Any, args: Any) -> dict[str, Any]:
    workflows = max(1, args.long // 3)
    zart.reset()
    start_bulk(zart, "bench-chain", [{"i": i, "n": 3} for i in range(workflows)])
    procs = zart.start_workers("W5-long", 1)
    samples: list[float] = []
    try:
        pid = procs[0].pid
        first = None
        while True:
            done = zart.count()
            if first is None and done > 0:
                first = rss_mb(pid)
            if done >= workflows:
                break
            if procs[0].poll() is not None:
                raise RuntimeError("zart worker exited with %s" % procs[0].returncode)
            rss = rss_mb(pid)
            if rss is not None:
                samples.append(rss)
            time.sleep(1)
        end = rss_mb(pid)
    finally:
        zart.stop(procs)
        zart.teardown()
    return {
        "rss_start_mb": first,
        "rss_end_mb": end,
        "rss_median_mb": statistics.median(samples) if samples else None,
        "long_steps": workflows * 3,
    }


def spreads(summary: dict[str, Any]) -> list[tuple[str, float | None]]:
    """W5 spread per system: max/min - 1 over the history sizes (0 = no effect)."""
    out: list[tuple[str, float | None]] = []
    for name in ("zart", "bare"):
        figures = summary.get("W5", {}).get(name, {})
        for key, label in (("p50", "start→result p50"), ("steps", "W1 steps/s")):
            values = [v["median"] for k, v in figures.items() if k.startswith(key + "_")]
            spread = max(values) / min(values) - 1 if len(values) > 1 and min(values) else None
            out.append(("W5 %s spread over history, %s" % (label, name), spread))
    return out
