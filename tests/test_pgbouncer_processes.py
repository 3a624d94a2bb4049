"""Worker processes behind PgBouncer in transaction pooling mode, on PostgreSQL.

The process tests marked ``direct_and_pgbouncer`` also run their bodies behind it; these
two prove that PgBouncer really is in the worker's path, and that a NOTIFY still wakes an
idle worker at once through its direct listener connection.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connection

import django_zart as zart
from django_zart.models import Execution
from tests.conftest import PgBouncer, WorkerProcess
from tests.test_worker_processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.pgbouncer]
Start = Callable[..., WorkerProcess]


def tcp_connections(pid: int) -> list[tuple[int, int]]:
    """(local port, remote port) of each established TCP connection the process holds."""
    inodes = set()
    for fd in Path("/proc/%d/fd" % pid).iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path("/proc/%d/net/%s" % (pid, table)).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if inode in inodes and state == "01":  # ESTABLISHED
                found.append((int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)))
    return found


def listening_ports() -> set[int]:
    """Client ports of the test database's sessions whose last statement was the LISTEN."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT client_port FROM pg_stat_activity"
            " WHERE datname = current_database() AND query = 'LISTEN zart_due'"
        )
        return {row[0] for row in cursor.fetchall()}


def direct_listener_port(worker: WorkerProcess, bouncer: PgBouncer) -> int | None:
    """The local port of the worker's one direct connection, if it is a LISTEN session."""
    direct = [
        local for local, remote in tcp_connections(worker.pid) if remote == bouncer.server_port
    ]
    if len(direct) == 1 and direct[0] in listening_ports():
        return direct[0]
    return None


def test_the_worker_queries_through_pgbouncer_and_listens_directly(
    worker_process: Start, pgbouncer: PgBouncer
) -> None:
    worker = worker_process("--concurrency", "2", via="pgbouncer")
    zart.start("three-steps", {"n": 1}, execution_id="pooled")
    assert zart.wait_completion("pooled", 20) == 6
    wait_for(lambda: direct_listener_port(worker, pgbouncer) is not None, 10, "the LISTEN")
    database = connection.settings_dict["NAME"]

    def pooled_clients_are_the_workers() -> bool:
        # The test process connects directly, so PgBouncer's clients on the test database
        # are the worker's connections, and the worker's connections to PgBouncer are those.
        to_bouncer = {
            local for local, remote in tcp_connections(worker.pid) if remote == pgbouncer.port
        }
        clients = {
            client["port"]
            for client in pgbouncer.admin("SHOW CLIENTS")
            if client["database"] == database
        }
        return bool(to_bouncer) and to_bouncer == clients

    wait_for(pooled_clients_are_the_workers, 10, "the worker's connections in SHOW CLIENTS")
    remotes = [remote for _, remote in tcp_connections(worker.pid)]
    # Everything but the listener goes through PgBouncer.
    assert set(remotes) <= {pgbouncer.port, pgbouncer.server_port}
    assert remotes.count(pgbouncer.server_port) == 1
    stats = {row["database"]: row for row in pgbouncer.admin("SHOW STATS")}
    assert stats[database]["total_xact_count"] >= 5  # claim, three checkpoints, finish
    assert worker.terminate() == 0
    assert "Traceback" not in worker.output()


def test_notify_wakes_an_idle_worker_behind_pgbouncer_at_once(
    worker_process: Start, pgbouncer: PgBouncer
) -> None:
    # An idle worker also looks for due schedule ticks every second, and claims then: the
    # wake-ups must come well within that second, not only within the poll interval.
    worker = worker_process("--poll-interval", "5", via="pgbouncer")
    wait_for(lambda: direct_listener_port(worker, pgbouncer) is not None, 10, "the LISTEN")
    time.sleep(0.5)  # its first look for work is over; it idles
    for i in range(10):
        zart.start("arith", {"a": i, "b": 1}, execution_id="woken-%d" % i)
        assert zart.wait_completion("woken-%d" % i, 10) == {"sum": i + 111}
        time.sleep(0.13)  # start the next at another point of the worker's idle second
    latencies = [
        (started - created).total_seconds()
        for created, started in Execution.objects.filter(pk__startswith="woken-").values_list(
            "created_at", "started_at"
        )
    ]
    zart.start("approval", {}, execution_id="evented")
    wait_for(lambda: zart.status("evented").status == "SUSPENDED", 10, "the wait")
    time.sleep(0.3)
    sent = time.monotonic()
    zart.send_event("evented", "approved", {"by": "pooled"})
    assert zart.wait_completion("evented", 10, poll_interval=0.01)["by"] == "pooled"
    event_latency = time.monotonic() - sent
    assert worker.terminate() == 0
    print(
        "\nbehind PgBouncer, start to claim: p50 %.3fs, max %.3fs; event to completion %.3fs"
        % (statistics.median(latencies), max(latencies), event_latency)
    )
    # Polling alone would spread them over the second between looks.
    assert len(latencies) == 10 and max(latencies) < 0.4
    assert event_latency < 0.5
