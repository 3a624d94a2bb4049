"""Claims, leases and worker ids across real worker processes: what a killed worker held
but never started, a step longer than its lease, a cancel while running, a worker id
used again after a crash."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import django_zart as zart
from django_zart.models import Task
from django_zart.models import Worker as WorkerRow
from tests.conftest import WorkerProcess
from tests.models import SideEffect
from tests.test_worker_processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
Start = Callable[..., WorkerProcess]


def test_a_killed_worker_counts_a_crash_only_for_work_it_was_running(
    worker_process: Start,
) -> None:
    """A worker claims only for its idle threads: while its one thread runs ``busy``,
    ``queued`` stays unclaimed. After the kill only ``busy`` counts a recovery: with
    MAX_RECOVERIES=1 it fails as a crash loop, while ``queued``, which never ran,
    completes."""
    zart.start("held", {"seconds": 60}, execution_id="busy")
    zart.start("arith", {"a": 1, "b": 2}, execution_id="queued")
    first = worker_process("--concurrency", "1", "--orphan-timeout", "1")
    wait_for(lambda: SideEffect.objects.filter(step="hold").exists(), 20, "busy to run")
    time.sleep(0.5)  # several polls of the busy worker
    assert Task.objects.get(execution_id="queued").held_by is None
    first.kill()
    second = worker_process("--orphan-timeout", "1", env={"ZART_TEST_MAX_RECOVERIES": "1"})
    assert zart.wait_completion("queued", 20) == {"sum": 113}
    with pytest.raises(zart.ExecutionFailed) as info:
        zart.wait_completion("busy", 20)
    assert info.value.error["type"] == "django_zart.errors.WorkerCrashLoop"
    assert second.terminate() == 0


def test_a_step_longer_than_the_lease_keeps_it(worker_process: Start) -> None:
    """The heartbeat extends the lease of running work: a second worker, polling all the
    while, never takes a four-second step over from a one-second lease."""
    zart.start("long-then-more", {"seconds": 4}, execution_id="long")
    first = worker_process("--orphan-timeout", "1", "--poll-interval", "0.05")
    wait_for(lambda: SideEffect.objects.filter(step="long").exists(), 20, "the long step")
    second = worker_process("--orphan-timeout", "1", "--poll-interval", "0.05")
    assert zart.wait_completion("long", 20) == ["long", "after-long"]
    assert SideEffect.objects.filter(step="long").count() == 1
    for worker in (first, second):
        assert worker.terminate() == 0
        assert "Lease lost" not in worker.output()


def test_a_cancel_while_running_stops_at_the_next_durable_call(worker_process: Start) -> None:
    zart.start("long-then-more", {"seconds": 1.5}, execution_id="stop")
    worker = worker_process("--orphan-timeout", "5", "-v", "1")
    wait_for(lambda: SideEffect.objects.filter(step="long").exists(), 20, "the long step")
    assert zart.cancel("stop", reason="no longer needed")
    wait_for(lambda: "cancelled while running" in worker.output(), 20, "the worker to stop")
    assert zart.status("stop").status == "CANCELLED"
    assert not SideEffect.objects.filter(step="after-long").exists()
    assert "Lease lost" not in worker.output()
    assert worker.terminate() == 0


def test_a_crashed_workers_id_is_free_again_once_its_lease_ends(worker_process: Start) -> None:
    first = worker_process("--worker-id", "web-1", "--orphan-timeout", "1")
    wait_for(lambda: WorkerRow.objects.filter(pk="web-1", pid=first.pid).exists(), 20, "web-1")
    twin = worker_process("--worker-id", "web-1", "--orphan-timeout", "1")
    assert twin.process.wait(30) == 1
    assert "Worker id 'web-1' is in use by a live worker" in twin.output()
    assert "Traceback" not in twin.output()
    first.kill()
    again = worker_process("--worker-id", "web-1", "--orphan-timeout", "1")
    wait_for(lambda: WorkerRow.objects.filter(pk="web-1", pid=again.pid).exists(), 20, "reuse")
    assert again.terminate() == 0
    assert not WorkerRow.objects.filter(pk="web-1").exists()


def test_an_impossible_concurrency_is_refused_before_anything_is_written(
    worker_process: Start,
) -> None:
    worker = worker_process("--concurrency", "100000")
    assert worker.process.wait(30) != 0
    assert "must be an integer from 1 to 1000, not 100000" in worker.output()
    assert "Traceback" not in worker.output()
    assert not WorkerRow.objects.exists()
