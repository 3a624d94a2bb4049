"""What the benchmark scripts share: Django set-up, the benchmark database, worker
processes, ``/proc`` CPU readings and plain-text tables.

The scripts are run as files (``python benchmarks/<name>.py``); each puts the repository
root on ``sys.path`` before importing this module as ``benchmarks.harness``.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"
RESULTS = HERE / "results"
LOGS = RESULTS / "logs"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- Django and the benchmark database -----------------------------------------------


def configure_django(database: str, settings_env: dict[str, str]) -> dict[str, str]:
    """Set up Django on ``benchmarks.settings`` in this process.

    ``settings_env`` holds the ``ZART_BENCH_*`` variables ``benchmarks/settings.py``
    reads. Returns the environment for worker processes (the same settings).
    """
    path = os.environ.get("PYTHONPATH")
    env = {
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "ZART_BENCH_DATABASE": database,
        **settings_env,
        "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""),
    }
    os.environ.update(env)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    return {**os.environ, **env}


def dsn(dbname: str) -> str:
    """A libpq connection string to ``dbname`` on the server Django is configured for."""
    from django.db import connection

    settings = connection.settings_dict
    if connection.vendor != "postgresql":
        raise SystemExit("This benchmark needs PostgreSQL; DATABASE_URL points elsewhere.")
    params = {
        "host": settings.get("HOST"),
        "port": settings.get("PORT"),
        "user": settings.get("USER"),
        "password": settings.get("PASSWORD"),
    }
    return make_conninfo(dbname=dbname, **{k: str(v) for k, v in params.items() if v})


def create_database(database: str) -> None:
    """Drop and recreate the benchmark database, then migrate it."""
    from django.core.management import call_command
    from django.db import connection

    name = sql.Identifier(database)
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    call_command("migrate", verbosity=0)
    connection.close()


def truncate_tables(conninfo: str) -> None:
    """Empty every ``zart_*`` table of the database."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        tables = [
            sql.Identifier(row[0])
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename LIKE 'zart\\_%'"
            )
        ]
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(sql.SQL(", ").join(tables))
        )


# -- worker processes ----------------------------------------------------------------


def start_worker(
    env: dict[str, str], options: Sequence[str], log: Path, *, command: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Start ``runzartworker`` (or ``command``) with ``options``, output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    command = list(command) or [sys.executable, "-m", "django", "runzartworker"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*command, *options], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def stop_workers(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 30) -> list[str]:
    """SIGTERM every process and wait for it; kill any that ignores it. Returns notes."""
    notes = []
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            notes.append("worker %d ignored SIGTERM for %gs; killed" % (proc.pid, timeout))
    return notes


def kill_workers(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- /proc ---------------------------------------------------------------------------


def proc_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (index 0 is field 3, the state)."""
    try:
        text = Path("/proc/%d/stat" % pid).read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a live process."""
    fields = proc_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / CLK_TCK


def find_postmaster(conn: psycopg.Connection) -> int | None:
    """The server's main process, if it runs on this machine (else None)."""
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    fields = proc_fields(row[0]) if row else None
    if fields is None:
        return None
    return int(fields[1])


def server_cpu(postmaster: int | None) -> float | None:
    """CPU seconds of the whole server: the postmaster, its live children, reaped ones."""
    if postmaster is None:
        return None
    own = proc_fields(postmaster)
    if own is None:
        return None
    ticks = sum(int(v) for v in own[11:15])  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = proc_fields(int(entry.name))
        if fields is not None and fields[1] == str(postmaster):
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


# -- reporting -----------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else "%.*f" % (digits, value)


def print_table(lines: list[tuple[str, ...]]) -> None:
    """Right-aligned columns; the first line is the header."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for n, line in enumerate(lines):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def environment(monitor: psycopg.Connection) -> dict[str, Any]:
    """Versions, machine and git state, for the JSON results."""
    import django

    row = monitor.execute("SHOW server_version").fetchone()
    commit, changed = git("rev-parse", "HEAD"), git("status", "--porcelain", "django_zart")
    return {
        "python": platform.python_version(),
        "django": django.get_version(),
        "psycopg": psycopg.__version__,
        "postgresql": row[0] if row else None,
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "git_commit": commit,
        "engine_has_uncommitted_changes": None if changed is None else bool(changed),
    }


def relative(path: Path) -> Path:
    """``path`` relative to the repository root when it is under it, for messages."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
