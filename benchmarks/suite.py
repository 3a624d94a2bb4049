"""django-zart side by side with its bare SQL loop and peer systems on the same PostgreSQL.

Run from the repository root (the peers need ``pip install -e ".[bench]"``)::

    python benchmarks/suite.py                      # every system, every workload, 2 rounds
    python benchmarks/suite.py --quick              # smaller counts, 1M history skipped
    python benchmarks/suite.py --systems zart,bare --workloads W1,W2 --rounds 3

Each round runs every workload on every system, one system after the other (the order
reversed every other round, so drifts in the machine's load are shared). Prints one table
(median and min-max over the rounds) and the ratios, and writes everything as JSON under
``benchmarks/results/``. See ``benchmarks/README.md`` for what each workload does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make the benchmarks package importable
    sys.path.insert(0, str(ROOT))

from benchmarks import systems  # noqa: E402
from benchmarks.harness import RESULTS, git, print_table, relative  # noqa: E402
from benchmarks.systems import common, history, pgbench  # noqa: E402

WORKLOADS = ("ceiling", "W1", "enqueue", "W2", "W3", "W4", "W5")
PEERS = ("pgqueuer", "dbos", "procrastinate")

# (workload, metric key, label, digits); the table's rows in order
ROWS: list[tuple[str, str, str, int]] = [
    ("ceiling", "tps_c1", "pgbench INSERT+UPDATE tx/s, 1 client", 0),
    ("ceiling", "tps_c2", "pgbench tx/s, 2 clients", 0),
    ("ceiling", "tps_c4", "pgbench tx/s, 4 clients", 0),
    ("ceiling", "tps_c8", "pgbench tx/s, 8 clients", 0),
    ("W1", "w1_steps_per_s", "W1 steps/s, 1 worker", 0),
    ("W1", "w2_steps_per_s", "W1 steps/s, 2 workers", 0),
    ("W1", "w1_worker_cpu_ms_per_step", "W1 worker CPU ms/step (1 worker)", 3),
    ("W1", "w1_server_cpu_ms_per_step", "W1 server CPU ms/step (1 worker)", 3),
    ("W1", "w1_commits_per_step", "W1 commits/step (1 worker)", 2),
    ("enqueue", "starts_per_s", "enqueue: start() calls/s", 0),
    ("enqueue", "start_many_per_s", "enqueue: bulk starts/s", 0),
    ("W2", "p50_ms", "W2 start→result p50 ms", 1),
    ("W2", "p90_ms", "W2 p90 ms", 1),
    ("W2", "p99_ms", "W2 p99 ms", 1),
    ("W2", "max_ms", "W2 max ms", 1),
    ("W3", "ms_per_step", "W3 200 sequential steps: ms/step", 2),
    ("W3", "commits_per_step", "W3 commits/step", 2),
    ("W4", "fanout100_ms", "W4 100 branches gathered, ms", 0),
    ("W4", "fanout1000_ms", "W4 1000 branches gathered, ms", 0),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts; no 1M history")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (2)")
    parser.add_argument(
        "--systems", default=",".join(systems.NAMES), help="(%s)" % ",".join(systems.NAMES)
    )
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help="(%s)" % ",".join(WORKLOADS)
    )
    parser.add_argument(
        "--timeout", type=float, default=170, help="seconds one measurement may take (170)"
    )
    parser.add_argument(
        "--long",
        type=int,
        nargs="?",
        const=100_000,
        default=0,
        help="W5: also a long run of this many steps (100000; the target is 1000000), "
        "with the worker's RSS at its start and end",
    )
    parser.add_argument("--output", type=Path, help="JSON file (default: under results/)")
    args = parser.parse_args(argv)
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.workload_list = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if set(args.system_list) - set(systems.NAMES):
        parser.error("--systems takes %s" % ", ".join(systems.NAMES))
    if set(args.workload_list) - set(WORKLOADS):
        parser.error("--workloads takes %s" % ", ".join(WORKLOADS))
    if args.rounds < 1:
        parser.error("--rounds must be positive")
    args.workflows = 200 if args.quick else 1000
    args.tries = 30 if args.quick else 200
    return args


# -- running -------------------------------------------------------------------------


def measure(system: Any, workload: str, args: argparse.Namespace) -> dict[str, Any]:
    """One workload on one system: its figures (several measurements for W1 and W4)."""
    n, limit = args.workflows, args.timeout
    if workload == "W1":
        one = common.bounded(limit, lambda: system.throughput("W1", 1, n, 3))
        two = common.bounded(limit, lambda: system.throughput("W1", 2, n, 3))
        out = {"w1_" + k: v for k, v in one.items()}
        out.update({"w2_" + k: v for k, v in two.items()})
        return out
    if workload == "enqueue":
        return common.bounded(limit, lambda: system.enqueue(n))
    if workload == "W2":
        return common.bounded(limit, lambda: system.latency("W2", args.tries, "chain", 3))
    if workload == "W3":
        return common.bounded(limit, lambda: system.throughput("W3", 1, 1, 200))
    if workload == "W4":
        out = {}
        for size in (100, 1000):
            got = common.bounded(limit, lambda s=size: system.latency("W4", 1, "fanout", s))  # type: ignore[misc]
            out["fanout%d_ms" % size] = got["ms"]
        return out
    if workload == "ceiling":
        return common.bounded(limit, lambda: system.ceiling(quick=args.quick))
    raise ValueError(workload)


def applicable(system: Any, workload: str) -> str | None:
    """None, or why the system has no equivalent of the workload."""
    if workload == "ceiling":
        return None if system.name == "pgbench" else "only pgbench"
    if system.name == "pgbench":
        return "pgbench measures the server alone"
    if workload == "W5" and system.name not in ("zart", "bare"):
        return "django-zart and bare only"
    return system.not_applicable.get(workload)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every round: every workload, every system; returns the raw figures."""
    instances: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for name in args.system_list:
        try:
            instance = systems.load(name)(args)
            instance.setup()
            instances[name] = instance
        except Exception as exc:  # a peer that cannot run is left out, with the reason
            traceback.print_exc()
            failures[name] = "setup failed: %s" % str(exc).splitlines()[0][:200]
            print("  %s: left out (%s)" % (name, failures[name]), flush=True)
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    errors: dict[str, dict[str, list[str]]] = {}
    skipped: dict[str, dict[str, str]] = {}
    for round_ in range(args.rounds):
        order = list(instances) if round_ % 2 == 0 else list(instances)[::-1]
        for workload in args.workload_list:
            if workload == "W5":
                run_w5(
                    [instances[s] for s in order if s in ("zart", "bare")],
                    args,
                    round_,
                    raw,
                    errors,
                )
                continue
            for name in order:
                system = instances[name]
                reason = applicable(system, workload)
                if reason:
                    skipped.setdefault(workload, {})[name] = reason
                    continue
                began = time.monotonic()
                try:
                    figures = measure(system, workload, args)
                except Exception as exc:
                    message = "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0][:300])
                    errors.setdefault(workload, {}).setdefault(name, []).append(message)
                    print("  round %d %s %s: FAILED %s" % (round_ + 1, workload, name, message))
                    system.teardown()
                    continue
                raw.setdefault(workload, {}).setdefault(name, []).append(figures)
                print(
                    "  round %d %-7s %-13s %5.1fs  %s"
                    % (round_ + 1, workload, name, time.monotonic() - began, brief(figures)),
                    flush=True,
                )
    for instance in instances.values():
        instance.teardown()
    history.drop_all()
    return {"raw": raw, "errors": errors, "skipped": skipped, "left_out": failures}


def run_w5(
    w5: list[Any],
    args: argparse.Namespace,
    round_: int,
    raw: dict[str, dict[str, list[dict[str, Any]]]],
    errors: dict[str, dict[str, list[str]]],
) -> None:
    """One round of W5 (django-zart and bare together, on the same history databases)."""
    if not w5:
        return
    try:
        measured = history.measure(w5, args)
    except Exception as exc:
        message = "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0][:300])
        for system in w5:
            errors.setdefault("W5", {}).setdefault(system.name, []).append(message)
        print("  round %d W5: FAILED %s" % (round_ + 1, message))
        return
    for name, figures in measured.items():
        raw.setdefault("W5", {}).setdefault(name, []).append(figures)
        print("  round %d W5 %s: %s" % (round_ + 1, name, brief(figures)), flush=True)


def brief(figures: dict[str, Any]) -> str:
    return ", ".join("%s=%.4g" % (k, v) for k, v in figures.items() if isinstance(v, int | float))[
        :200
    ]


# -- reporting -----------------------------------------------------------------------


def summarize(raw: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per workload, system and figure: median, min and max over the rounds."""
    out: dict[str, Any] = {}
    for workload, by_system in raw.items():
        for name, rounds in by_system.items():
            keys = {k for r in rounds for k, v in r.items() if isinstance(v, int | float)}
            for key in sorted(keys):
                values = [r[key] for r in rounds if isinstance(r.get(key), int | float)]
                out.setdefault(workload, {}).setdefault(name, {})[key] = {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                    "rounds": len(values),
                }
    return out


def cell(summary: dict[str, Any], workload: str, name: str, key: str, digits: int) -> str:
    entry = summary.get(workload, {}).get(name, {}).get(key)
    if entry is None:
        return ""
    text = "%.*f" % (digits, entry["median"])
    if entry["rounds"] > 1 and entry["min"] != entry["max"]:
        text += " (%.*f-%.*f)" % (digits, entry["min"], digits, entry["max"])
    return text


def median(summary: dict[str, Any], workload: str, name: str, key: str) -> float | None:
    entry = summary.get(workload, {}).get(name, {}).get(key)
    return None if entry is None else entry["median"]


def table(result: dict[str, Any], names: list[str]) -> list[tuple[str, ...]]:
    summary, skipped, errors = result["summary"], result["skipped"], result["errors"]
    lines: list[tuple[str, ...]] = [("workload", *(systems.LABELS[n] for n in names))]
    rows = ROWS + history.ROWS
    for workload, key, label, digits in rows:
        if workload not in result["workloads"]:
            continue
        cells = []
        for name in names:
            text = cell(summary, workload, name, key, digits)
            rounds = result["raw"].get(workload, {}).get(name, [])
            if not text:
                if rounds and all(r.get(key, 0) is None for r in rounds):
                    text = "n/a"
                elif name in errors.get(workload, {}):
                    text = "failed"
                elif name in result["left_out"]:
                    text = "left out"
                elif name in skipped.get(workload, {}) or workload == "W5":
                    text = "n/a"
                else:
                    text = "-"
            cells.append(text)
        if any(c not in ("n/a", "-") for c in cells):
            lines.append((label, *cells))
    return lines


def ratios(summary: dict[str, Any]) -> list[tuple[str, float | None]]:
    def m(workload: str, name: str, key: str) -> float | None:
        return median(summary, workload, name, key)

    def div(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    peers = [m("W1", p, "w1_steps_per_s") for p in PEERS]
    best_peer = max((p for p in peers if p is not None), default=None)
    out: list[tuple[str, float | None]] = [
        (
            "W1 steps/s zart/bare, 1 worker",
            div(m("W1", "zart", "w1_steps_per_s"), m("W1", "bare", "w1_steps_per_s")),
        ),
        (
            "W1 steps/s zart/bare, 2 workers",
            div(m("W1", "zart", "w2_steps_per_s"), m("W1", "bare", "w2_steps_per_s")),
        ),
        ("W1 steps/s zart/best peer, 1 worker", div(m("W1", "zart", "w1_steps_per_s"), best_peer)),
        ("W1 zart worker CPU ms/step", m("W1", "zart", "w1_worker_cpu_ms_per_step")),
        (
            "W1 server CPU/step zart/bare",
            div(
                m("W1", "zart", "w1_server_cpu_ms_per_step"),
                m("W1", "bare", "w1_server_cpu_ms_per_step"),
            ),
        ),
        (
            "enqueue start()/s zart/bare",
            div(m("enqueue", "zart", "starts_per_s"), m("enqueue", "bare", "starts_per_s")),
        ),
        ("zart start_many workflows/s", m("enqueue", "zart", "start_many_per_s")),
        ("W2 p50 zart/bare", div(m("W2", "zart", "p50_ms"), m("W2", "bare", "p50_ms"))),
        ("W3 zart ms/step", m("W3", "zart", "ms_per_step")),
        ("W3 zart commits/step", m("W3", "zart", "commits_per_step")),
        ("W4 zart 100 branches ms", m("W4", "zart", "fanout100_ms")),
        ("W4 zart 1000 branches ms", m("W4", "zart", "fanout1000_ms")),
    ]
    out += history.spreads(summary)
    return out


def environment(names: list[str]) -> dict[str, Any]:
    import importlib.metadata

    import django
    import psycopg

    versions: dict[str, str | None] = {}
    for package in ("django-zart", "dbos", "pgqueuer", "procrastinate"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    with psycopg.connect(common.conninfo("postgres")) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "django": django.get_version(),
        "psycopg": psycopg.__version__,
        "postgresql": row[0] if row else None,
        "pgbench": pgbench.version(),
        "packages": versions,
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "loadavg_at_start": os.getloadavg(),
        "git_commit": git("rev-parse", "HEAD"),
        "engine_has_uncommitted_changes": bool(git("status", "--porcelain", "django_zart")),
        "systems": names,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    began = time.monotonic()
    meta = environment(args.system_list)
    print(
        "suite: %s on %s; workloads %s; %d round(s)%s; load %.2f on %s CPUs"
        % (
            ",".join(args.system_list),
            meta["postgresql"],
            ",".join(args.workload_list),
            args.rounds,
            " (quick)" if args.quick else "",
            meta["loadavg_at_start"][0],
            meta["cpus"],
        ),
        flush=True,
    )
    result = run(args)
    result["workloads"] = args.workload_list
    result["summary"] = summarize(result["raw"])
    names = list(args.system_list)
    print()
    print_table(table(result, names))
    print("\nmedian (min-max) over %d round(s); n/a: no equivalent (see the README)" % args.rounds)
    ratio_rows = ratios(result["summary"])
    print()
    print_table(
        [("ratio / target figure", "value")]
        + [(k, "-" if v is None else "%.3g" % v) for k, v in ratio_rows]
    )
    for kind in ("errors", "left_out"):
        if result[kind]:
            print("\n%s: %s" % (kind, json.dumps(result[kind], indent=1)))
    elapsed = time.monotonic() - began
    print("\nrun time %.0f s" % elapsed)
    meta["loadavg_at_end"] = os.getloadavg()
    document = {
        "benchmark": "suite",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_s": elapsed,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": meta,
        "summary": result["summary"],
        "ratios": dict(ratio_rows),
        "skipped": result["skipped"],
        "errors": result["errors"],
        "left_out": result["left_out"],
        "rounds": result["raw"],
    }
    output = args.output or RESULTS / (
        "suite-%s.json" % datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print("Wrote %s" % relative(output))


if __name__ == "__main__":
    main()
