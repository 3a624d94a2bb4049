"""The engine under values, clocks and states that broke it: run by a real in-process
worker against the real database."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

import django_zart as zart
from django_zart import engine
from django_zart.db import get_store
from django_zart.db.types import Claim, LeaseLost
from django_zart.durations import MAX_SECONDS
from django_zart.models import Execution, Run, Step, Task, Worker
from django_zart.steps import abandoned_threads
from tests.factories import ExecutionFactory, RunFactory, TaskFactory, WorkerFactory
from tests.models import Flag, SideEffect

pytestmark = pytest.mark.django_db(transaction=True)
Drain = Callable[..., None]


def ran(execution_id: str, step: str) -> int:
    return SideEffect.objects.filter(execution_id=execution_id, step=step).count()


# -- values the database refuses -----------------------------------------------------


def test_a_step_result_with_a_nul_fails_the_step_and_the_workflow_catches_it(
    drain: Drain,
) -> None:
    zart.start("nul-step", None, execution_id="ns")
    drain("ns")
    assert zart.wait_completion("ns", 1) == "caught: django_zart.errors.SerializationError"
    step = Step.objects.get(execution_id="ns", position="nul-result")
    assert step.status == "FAILED" and "NUL character" in step.error["message"]
    assert ran("ns", "nul-body") == 1


def test_an_output_with_a_nul_fails_the_execution_once(drain: Drain) -> None:
    zart.start("nul-output", None, execution_id="no")
    drain("no")
    with pytest.raises(zart.ExecutionFailed) as info:
        zart.wait_completion("no", 1)
    assert info.value.error["type"] == "django_zart.errors.SerializationError"
    assert "the output of workflow 'nul-output'" in info.value.error["message"]
    assert ran("no", "nul-output-body") == 1  # failed once, never taken over


def test_an_error_message_the_database_cannot_store_is_recorded_cleaned(drain: Drain) -> None:
    zart.start("nul-error", None, execution_id="ne")
    drain("ne")
    with pytest.raises(zart.ExecutionFailed) as info:
        zart.wait_completion("ne", 1)
    assert info.value.error["type"] == "builtins.ValueError"
    assert info.value.error["message"] == "broken \\x00 value \ufffd here"
    assert ran("ne", "nul-error-body") == 1


def test_an_exception_that_cannot_be_printed_is_still_recorded(drain: Drain) -> None:
    zart.start("unprintable-error", None, execution_id="ue")
    drain("ue")
    with pytest.raises(zart.ExecutionFailed) as info:
        zart.wait_completion("ue", 1)
    assert info.value.error["message"] == "<unprintable Unprintable: str() raised RuntimeError>"


@pytest.mark.postgres
def test_one_unreadable_row_fails_alone_and_never_its_claim_batch(drain: Drain) -> None:
    """A deadline past the year 9999 and an input Python cannot parse, written behind the
    engine's back: the executions claimed with them run as usual."""
    ids = ["ok-1", "late", "unparsable", "ok-2"]
    for execution_id in ids:
        zart.start("arith", {"a": 1, "b": 2}, execution_id=execution_id)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE zart_executions SET deadline_at = '20000-01-01' WHERE id = 'late'")
        cursor.execute(
            "UPDATE zart_executions SET input = ('{\"a\": 1' || repeat('0', 5000) || '}')::jsonb"
            " WHERE id = 'unparsable'"
        )
    drain(*ids)
    # (Read column by column: Python cannot load the row's deadline either.)
    outcomes = dict(Execution.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert outcomes == {
        "ok-1": "COMPLETED",
        "late": "COMPLETED",
        "unparsable": "FAILED",
        "ok-2": "COMPLETED",
    }
    error = Execution.objects.values_list("error", flat=True).get(pk="unparsable")
    assert "cannot be read" in error["message"]


# -- time ----------------------------------------------------------------------------


def test_durable_time_is_the_time_the_execution_runs(run_worker: Callable[..., int]) -> None:
    """With one thread busy for 1.5 s, the next execution waits; its durable clock says the
    time it really ran, not the time the worker first looked at it."""
    zart.start("held", {"seconds": 1.5}, execution_id="busy")
    zart.start("now-after-queue", None, execution_id="queued")
    run_worker(concurrency=1)
    seen = zart.wait_completion("queued", 1)
    finished = zart.status("queued").finished_at
    lag = (finished - timezone.datetime.fromisoformat(seen)).total_seconds()
    assert 0 <= lag < 0.5, lag


def test_retry_delays_never_overflow() -> None:
    capped = zart.Retry.exponential(5000, "1s", max_delay="1h")
    assert capped.next_delay(1025) == capped.next_delay(5000) == 3600
    uncapped = zart.Retry.exponential(5000, "1s")
    assert uncapped.next_delay(1025) == MAX_SECONDS
    assert uncapped.next_delay(3) == 4


# -- replay and determinism ----------------------------------------------------------


def test_gathered_pipelines_replay_their_own_checkpoints(drain: Drain) -> None:
    """``b`` reaches ``transform`` first; on replay ``a`` does (its fetch replays at
    once). Each pipeline must still get its own checkpoint back."""
    zart.start("pipelines", None, execution_id="pl")
    drain("pl")
    assert zart.wait_completion("pl", 1) == ["FETCHED-A", "FETCHED-B"]
    positions = set(Step.objects.filter(execution_id="pl").values_list("position", flat=True))
    assert positions == {"fetch@1", "fetch@2", "transform@1", "transform@2", "then-replay"}


def test_a_step_replayed_with_other_arguments_is_not_deterministic(drain: Drain) -> None:
    zart.start("arguments-change", None, execution_id="ac")
    store = get_store()
    (claim,) = store.claim(queues=["default"], limit=1, lease=30)
    assert engine.execute(claim, store) == "suspended"  # arg_echo("original") recorded
    Flag.objects.create(name="argument", value="changed")
    drain("ac")
    with pytest.raises(zart.ExecutionFailed) as info:
        zart.wait_completion("ac", 1)
    assert info.value.error["type"] == "django_zart.errors.NonDeterminismError"
    assert "with other arguments" in info.value.error["message"]


# -- guarded transitions and fencing -------------------------------------------------


def test_a_finished_execution_is_not_finished_again() -> None:
    """A claim on a cancelled execution whose task was left behind cannot complete it:
    the guarded transition refuses, and nothing is written."""
    execution = ExecutionFactory(status="CANCELLED", finished_at=timezone.now())
    run = RunFactory(execution=execution, status="CANCELLED")
    token = uuid.uuid4()
    task = TaskFactory(execution=execution, held_by=token, lease_until=timezone.now())
    store = get_store()
    claim = _claim_for(execution, run, task, token)
    with pytest.raises(LeaseLost):
        store.finish(claim, status="COMPLETED", output='"done"', error=None)
    execution.refresh_from_db()
    assert execution.status == "CANCELLED" and execution.output is None
    assert Task.objects.filter(pk=task.pk).exists()
    assert Run.objects.get(pk=run.pk).status == "CANCELLED"


def _claim_for(execution: Execution, run: Run, task: Task, token: uuid.UUID) -> Claim:
    return Claim(
        task_id=task.pk,
        token=token,
        execution_id=execution.pk,
        status=execution.status,
        workflow=execution.workflow,
        input=None,
        run_id=run.pk,
        run_index=run.index,
        run_reason=run.reason,
        replay_base=1,
        deadline_at=None,
        fresh=False,
        recoveries=0,
        db_now=timezone.now(),
        clock_origin=time.monotonic(),
    )


def test_a_cancelled_running_execution_keeps_its_step_in_flight_and_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    zart.start("arith", {"a": 1, "b": 2}, execution_id="cx")
    store = get_store()
    (claim,) = store.claim(queues=["default"], limit=1, lease=30)
    zart.cancel("cx")
    assert Task.objects.filter(execution_id="cx").exists()  # the worker's, until it learns
    with caplog.at_level(logging.INFO, logger="django_zart"):
        assert engine.execute(claim, store) == "cancelled"
    assert "cancelled while running" in caplog.text
    assert "Lease lost" not in caplog.text
    # The step in flight was checkpointed; nothing after it ran; the task is gone.
    assert list(Step.objects.filter(execution_id="cx").values_list("name", flat=True)) == ["add"]
    assert not Task.objects.filter(execution_id="cx").exists()
    assert zart.status("cx").status == "CANCELLED"


# -- workers -------------------------------------------------------------------------


def test_a_dead_workers_id_can_be_used_again_and_a_live_ones_cannot() -> None:
    store = get_store()
    WorkerFactory(id="alive")
    WorkerFactory(id="gone", dead_for=timedelta(minutes=5))
    row = Worker(id="alive", hostname="h", pid=1, queues=["default"], concurrency=1)
    holder = store.register_worker(row, 30)
    assert holder is not None and 29 < holder.expires_in <= 30
    row = Worker(id="gone", hostname="h", pid=2, queues=["default"], concurrency=1)
    assert store.register_worker(row, 30) is None
    assert Worker.objects.get(pk="gone").pid == 2


def test_a_worker_refuses_an_id_in_use(run_worker: Callable[..., int]) -> None:
    """The holder's lease is waited out once; a holder that heartbeats meanwhile is live."""
    holder = WorkerFactory(id="busy-id", hostname="elsewhere")
    Worker.objects.filter(pk="busy-id").update(expires_at=timezone.now() + timedelta(seconds=1))
    keep_alive = threading.Timer(
        0.5,
        lambda: Worker.objects.filter(pk="busy-id").update(
            expires_at=timezone.now() + timedelta(seconds=30)
        ),
    )
    keep_alive.start()
    with pytest.raises(zart.WorkerIdInUse, match="'busy-id' is in use by a live worker"):
        run_worker(worker_id="busy-id")
    keep_alive.join()
    assert Worker.objects.get(pk="busy-id").pid == holder.pid  # left untouched


def test_a_crashed_holder_on_this_machine_gives_its_id_up_at_once(
    run_worker: Callable[..., int],
) -> None:
    WorkerFactory(id="restarted", hostname=socket.gethostname(), pid=2**22 + 1)  # no such pid
    started = time.monotonic()
    run_worker(worker_id="restarted")
    assert time.monotonic() - started < 5  # the 30 s lease was not waited out


def test_long_dead_workers_are_pruned_at_start(run_worker: Callable[..., int]) -> None:
    WorkerFactory(id="long-dead", dead_for=timedelta(hours=3))
    WorkerFactory(id="just-died", dead_for=timedelta(minutes=1))
    run_worker()
    assert set(Worker.objects.values_list("pk", flat=True)) == {"just-died"}


def test_an_abandoned_step_thread_is_counted_until_it_returns(
    drain: Drain, caplog: pytest.LogCaptureFixture
) -> None:
    zart.start("abandons", {"seconds": 1.5}, execution_id="ab")
    with caplog.at_level(logging.WARNING, logger="django_zart"):
        drain("ab")
    assert zart.wait_completion("ab", 1) == "django_zart.errors.StepTimeout"
    assert abandoned_threads() == 1
    assert "1 abandoned in this worker" in caplog.text
    deadline = time.monotonic() + 5
    while abandoned_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert abandoned_threads() == 0
