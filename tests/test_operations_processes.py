"""The operations against real worker processes: two workers share the work while an
operator cancels, restarts, reruns and pauses it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import django_zart as zart
from django_zart.models import Run, Step, Task
from tests.conftest import WorkerProcess
from tests.models import SideEffect
from tests.test_worker_processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
Start = Callable[..., WorkerProcess]

STEPS = ("ops-prepare", "ops-charge", "ops-ship")


def effects(execution_id: str) -> list[int]:
    return [
        SideEffect.objects.filter(execution_id=execution_id, step=step).count() for step in STEPS
    ]


def finished(*execution_ids: str) -> bool:
    return not zart.executions().filter(pk__in=execution_ids).unfinished().exists()


def clean(*workers: WorkerProcess) -> None:
    for worker in workers:
        assert worker.terminate() == 0
        assert "Lease lost" not in worker.output()
        assert "Traceback" not in worker.output()


def test_cancel_while_running_keeps_the_step_in_flight_and_runs_nothing_after(
    worker_process: Start,
) -> None:
    zart.start("long-then-more", {"seconds": 1.5}, execution_id="stop")
    workers = [worker_process("--orphan-timeout", "2", "-v", "1") for _ in range(2)]
    wait_for(lambda: SideEffect.objects.filter(step="long").exists(), 20, "the long step")
    assert zart.cancel("stop", reason="no longer needed", by="cli:ops").status == "CANCELLED"
    wait_for(lambda: not Task.objects.exists(), 20, "the running worker to let go")
    long = Step.objects.get(execution_id="stop")
    assert (long.name, long.status, long.result) == ("long", "COMPLETED", "long")
    assert not SideEffect.objects.filter(step="after-long").exists()
    assert sum("cancelled while running" in w.output() for w in workers) == 1
    clean(*workers)


def test_restart_and_rerun_while_two_workers_run_each_step_the_chosen_number_of_times(
    worker_process: Start,
) -> None:
    ids = ["op-%d" % n for n in range(20)]
    workers = [worker_process("--poll-interval", "0.05") for _ in range(2)]
    for execution_id in ids:
        zart.start("ops", {"id": execution_id}, execution_id=execution_id)
    wait_for(lambda: finished(*ids), 30, "the first runs")
    for execution_id in ids[:10]:
        zart.restart(execution_id, by="test")
    for execution_id in ids[10:]:
        zart.rerun(execution_id, from_step="ops-charge", by="test")
    wait_for(lambda: finished(*ids), 30, "the second runs")
    assert {zart.status(i).status for i in ids} == {"COMPLETED"}
    assert all(effects(i) == [2, 2, 2] for i in ids[:10])
    assert all(effects(i) == [1, 2, 2] for i in ids[10:])
    reasons = Run.objects.filter(index=2).values_list("reason", flat=True)
    assert sorted(set(reasons)) == ["RERUN", "RESTART"]
    assert not Task.objects.exists()
    clean(*workers)


def test_a_step_pause_holds_running_work_at_that_step_across_workers(
    worker_process: Start,
) -> None:
    rule = zart.pause(step="ops-ship", reason="carrier down")
    workers = [worker_process("--poll-interval", "0.05") for _ in range(2)]
    ids = ["held-%d" % n for n in range(10)]
    for execution_id in ids:
        zart.start("ops", {}, execution_id=execution_id)
    wait_for(
        lambda: zart.executions(status="PAUSED").count() == 10, 30, "every execution to be held"
    )
    assert all(effects(i) == [1, 1, 0] for i in ids)
    zart.resume(rule.pk)
    wait_for(lambda: finished(*ids), 30, "the resumed executions")
    assert all(effects(i) == [1, 1, 1] for i in ids)
    clean(*workers)


def test_cancels_and_restarts_racing_three_workers_lose_and_repeat_nothing(
    worker_process: Start,
) -> None:
    """Sixty executions of ten short steps on three workers; twenty are cancelled at
    random moments, ten of those restarted. Every step body that ran has its checkpoint
    (the step in flight is kept), none ran after its cancel was seen, and every
    execution ends as it should."""
    import random

    ids = ["race-%d" % n for n in range(60)]
    workers = [worker_process("--poll-interval", "0.05", "--concurrency", "4") for _ in range(3)]
    for execution_id in ids:
        zart.start("ticks", {"seconds": 0.05, "steps": 10}, execution_id=execution_id)
    cancelled = []
    for execution_id in random.sample(ids, 20):
        time.sleep(random.uniform(0, 0.05))
        try:
            zart.cancel(execution_id)
        except zart.ExecutionFinished:
            continue
        cancelled.append(execution_id)
    assert len(cancelled) >= 10, "the workers outran the cancels: nothing was tested"
    restarted = cancelled[:10]
    wait_for(lambda: not Task.objects.filter(execution_id__in=cancelled).exists(), 30, "let go")
    for execution_id in restarted:
        zart.restart(execution_id)
    wait_for(lambda: finished(*ids), 60, "every execution")
    for execution_id in ids:
        status = zart.status(execution_id).status
        expected = "CANCELLED" if execution_id in set(cancelled) - set(restarted) else "COMPLETED"
        assert status == expected, (execution_id, status)
        checkpoints = Step.objects.filter(execution_id=execution_id, status="COMPLETED").count()
        ran = SideEffect.objects.filter(execution_id=execution_id).count()
        assert ran == checkpoints, (execution_id, ran, checkpoints)
    assert not Task.objects.exists()
    clean(*workers)
