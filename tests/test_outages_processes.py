"""What a production database does to connections, done to real worker processes: its
connections terminated (a failover, a pooler restart), the server restarted, the
listener's session cut. Innocent work must neither fail nor count a crash, and an outage
is one log line, not a traceback per try."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from django.db import InterfaceError, OperationalError, connection
from django.db.models import Count

import django_zart as zart
from django_zart.models import Execution, Run
from django_zart.models import Worker as WorkerRow
from tests.conftest import WorkerProcess
from tests.models import SideEffect
from tests.test_worker_processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
Start = Callable[..., WorkerProcess]
T = TypeVar("T")


def retrying(read: Callable[[], T], timeout: float = 60) -> T:
    """Run a read of the test's own, surviving a server restart under it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read()
        except (OperationalError, InterfaceError):
            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def terminate_backends(where: str = "true") -> int:
    """Terminate the test database's other sessions (all the workers' connections)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND " + where
        )
        return int(cursor.fetchone()[0])


def started_worker(start: Start, *args: str) -> WorkerProcess:
    worker = start(*args)
    wait_for(lambda: WorkerRow.objects.filter(pid=worker.pid).exists(), 20, "the worker")
    return worker


def outage_lines(log: str) -> int:
    """The WARNING lines that announce an outage (its later echoes are INFO)."""
    return len(re.findall("WARNING Database unavailable", log))


def test_terminated_connections_fail_nothing_and_count_nothing(worker_process: Start) -> None:
    worker = started_worker(
        worker_process, "--concurrency", "8", "--orphan-timeout", "4", "--poll-interval", "0.05"
    )
    warm = [zart.start("arith", {"a": i, "b": 0}) for i in range(16)]  # every thread connects
    for execution_id in warm:
        zart.wait_completion(execution_id, 20)
    assert terminate_backends() >= 8
    started = time.monotonic()
    ids = [zart.start("arith", {"a": i, "b": 1}) for i in range(20)]
    outputs = [zart.wait_completion(execution_id, 20) for execution_id in ids]
    elapsed = time.monotonic() - started
    assert outputs == [{"sum": i + 111} for i in range(20)]
    # Not one lease of 4 s waited out: each thread noticed its dead connection at once.
    assert elapsed < 3, elapsed
    assert Run.objects.filter(execution_id__in=ids).count() == 20  # no workflow retry
    log = worker.output()
    assert "Traceback" not in log and "Worker error" not in log, log
    assert worker.terminate() == 0


def test_a_connection_cut_under_a_running_step_is_replayed_not_failed(
    worker_process: Start,
) -> None:
    worker = started_worker(worker_process, "--orphan-timeout", "10")
    zart.start("long-then-more", {"seconds": 1.0}, execution_id="cut")
    wait_for(lambda: SideEffect.objects.filter(step="long").exists(), 20, "the long step")
    terminate_backends()
    assert zart.wait_completion("cut", 20) == ["long", "after-long"]
    runs = dict(
        SideEffect.objects.filter(execution_id="cut")
        .values_list("step")
        .annotate(n=Count("id"))
        .values_list("step", "n")
    )
    # The step's checkpoint could not be written on the cut connection: the step ran
    # again on a fresh one (at least once), nothing failed, no lease was waited out.
    assert runs == {"long": 2, "after-long": 1}
    assert Run.objects.filter(execution_id="cut").count() == 1
    log = worker.output()
    assert outage_lines(log) == 1 and "Database available again" in log, log
    assert "Traceback" not in log
    assert worker.terminate() == 0


def test_the_listener_reconnects_after_its_session_is_cut(worker_process: Start) -> None:
    worker = started_worker(worker_process, "--poll-interval", "5")
    listening = "query = 'LISTEN zart_due'"
    wait_for(lambda: _count(listening) == 1, 10, "the LISTEN session")
    assert terminate_backends(listening) == 1
    wait_for(lambda: _count(listening) == 1, 10, "a new LISTEN session")
    lags = []
    for i in range(5):
        execution_id = zart.start("arith", {"a": i, "b": 0})
        zart.wait_completion(execution_id, 10)
        row = Execution.objects.get(pk=execution_id)
        lags.append((row.started_at - row.created_at).total_seconds())
        time.sleep(0.3)
    # Woken by NOTIFY, not by the once-a-second look for due work.
    assert sorted(lags)[2] < 0.3, lags
    assert worker.terminate() == 0


def _count(where: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND " + where
        )
        return int(cursor.fetchone()[0])


def _cluster_of_this_server() -> list[str]:
    """``pg_ctlcluster`` arguments for the local cluster serving the test database."""
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        pytest.skip("needs Debian's pg_ctlcluster to restart the server")
    port = str(connection.settings_dict.get("PORT") or 5432)
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    )
    for line in listing.stdout.splitlines():
        version, name, cluster_port, status, *_ = line.split()
        if cluster_port == port and status == "online":
            return [version, name]
    pytest.skip("no local cluster listens on port %s" % port)


def test_a_postgresql_restart_mid_run_loses_and_fails_nothing(worker_process: Start) -> None:
    cluster = _cluster_of_this_server()
    workers = [started_worker(worker_process, "--orphan-timeout", "5") for _ in range(2)]
    ids = [zart.start("fault-sleep", None) for _ in range(30)]
    ids += [zart.start("arith", {"a": i, "b": 0}) for i in range(30)]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "restart"],
        check=True,
        capture_output=True,
    )
    ids += retrying(lambda: [zart.start("arith", {"a": i, "b": 1}) for i in range(30)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        statuses = retrying(
            lambda: dict(Execution.objects.filter(pk__in=ids).values_list("pk", "status"))
        )
        if all(s == "COMPLETED" for s in statuses.values()):
            break
        time.sleep(0.2)
    assert all(s == "COMPLETED" for s in statuses.values()), statuses
    assert Run.objects.filter(execution_id__in=ids).count() == len(ids)  # no retry, no crash
    for worker in workers:
        assert worker.process.poll() is None  # survived
        log = worker.output()
        assert outage_lines(log) <= 2, log  # one line per outage (main loop and listener)
        assert "Traceback" not in log, log
        assert worker.terminate() == 0
