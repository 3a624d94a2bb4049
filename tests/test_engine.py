"""Replay, checkpoints, retries and failures, run by a real in-process worker."""

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import django_zart as zart
from django_zart.models import Run, Step, StepAttempt, Task
from tests.models import Flag, SideEffect

pytestmark = pytest.mark.django_db(transaction=True)
Drain = Callable[..., None]


def test_three_steps_complete_with_their_checkpoints(drain: Drain) -> None:
    zart.start("arith", {"a": 1, "b": 2}, execution_id="a1")
    drain("a1")
    execution = zart.status("a1")
    assert execution.status == "COMPLETED" and execution.output == {"sum": 113}
    steps = list(Step.objects.filter(execution=execution).values_list("position", "result"))
    assert steps == [("add", 3), ("add#2", 13), ("add#3", 113)]
    assert execution.started_at and execution.finished_at
    assert Run.objects.get(execution=execution).status == "COMPLETED"
    assert not Task.objects.exists()


def test_a_trivial_step_is_one_statement(run_worker: Callable[..., int]) -> None:
    """The worker thread writes each checkpoint with a single INSERT, no SELECT."""
    from django_zart import engine
    from django_zart.db import get_store

    zart.start("three-steps", {"n": 1}, execution_id="q")
    store = get_store()
    (claim,) = store.claim(queues=["default"], limit=1, lease=30)
    with CaptureQueriesContext(connection) as queries:
        assert engine.execute(claim, store) == "completed"
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    if connection.vendor == "postgresql":
        # A fresh run loads nothing: three step INSERTs and the finishing statement.
        assert statements == ["INSERT", "INSERT", "INSERT", "WITH"]
    else:
        assert statements.count("INSERT") == 3 and "SELECT" not in statements[:3]


def test_completed_steps_are_not_run_again_on_replay(drain: Drain) -> None:
    Flag.objects.create(name="first", value="a")
    zart.start("changing", None, execution_id="r1")
    drain("r1")
    assert zart.wait_completion("r1", 1) == "adone"
    # 'wait-once' failed once, so the body was replayed; 'a' ran once, from its checkpoint.
    assert SideEffect.objects.filter(step="wait-once").count() == 2
    assert Step.objects.get(execution_id="r1", position="a").attempts == 1


def test_values_round_trip_through_checkpoints(drain: Drain) -> None:
    zart.start("types-wf", None, execution_id="types")
    drain("types")
    value = zart.wait_completion("types", 1)
    assert value["amount"].__class__.__name__ == "Decimal" and value["pair"] == (1, 2)
    # PostgreSQL's jsonb writes 1e16 without its exponent: still a float when read back.
    assert value["floats"] == [1e16, 1.5e300, 1e-7, 2.0]
    assert all(isinstance(f, float) for f in value["floats"])


def test_non_json_step_result_fails_that_step(drain: Drain) -> None:
    zart.start("bad-result-wf", None, execution_id="bad")
    drain("bad")
    step = Step.objects.get(execution_id="bad")
    assert step.status == "FAILED"
    assert step.error["type"] == "django_zart.errors.SerializationError"
    assert "bad-result" in step.error["message"] and "builtins.object" in step.error["message"]
    with pytest.raises(zart.ExecutionFailed) as info:
        zart.wait_completion("bad", 1)
    assert info.value.error["type"] == "django_zart.errors.StepFailed"
    assert info.value.error["cause"]["type"] == "django_zart.errors.SerializationError"


def test_changed_code_on_replay_is_non_determinism(drain: Drain, run_worker: Callable) -> None:
    Flag.objects.create(name="first", value="a")
    zart.start("changing", None, execution_id="nd")
    run_worker()  # runs 'a', then 'wait-once' fails and the execution suspends
    assert zart.status("nd").status == "SUSPENDED"
    Flag.objects.filter(name="first").update(value="b")  # the "deploy" changes the code path
    drain("nd")
    with pytest.raises(zart.ExecutionFailed) as info:
        zart.wait_completion("nd", 1)
    error = info.value.error
    assert error["type"] == "django_zart.errors.NonDeterminismError"
    assert "step 'a' (at position 1)" in error["message"] and "step 'b'" in error["message"]


def test_workflow_max_retries_reruns_the_body_keeping_completed_steps(drain: Drain) -> None:
    zart.start("body-retry", None, execution_id="br")
    drain("br")
    assert zart.wait_completion("br", 1) == "a3"
    runs = list(Run.objects.filter(execution_id="br").values_list("index", "reason", "status"))
    assert runs == [(1, "INITIAL", "FAILED"), (2, "RETRY", "FAILED"), (3, "RETRY", "COMPLETED")]
    assert Run.objects.get(execution_id="br", index=1).error["type"] == "builtins.ValueError"
    assert Step.objects.filter(execution_id="br").count() == 1  # 'a' ran once, in run 1


def test_timeout_fails_the_execution(drain: Drain) -> None:
    zart.start("slow", None, execution_id="slow")
    drain("slow")
    with pytest.raises(zart.ExecutionFailed) as info:
        zart.wait_completion("slow", 1)
    assert info.value.error["type"] == "django_zart.errors.ExecutionTimedOut"
    assert not Step.objects.filter(execution_id="slow", position="b").exists()


def test_async_workflows_and_steps(drain: Drain) -> None:
    zart.start("async-wf", {"x": 5}, execution_id="async")
    drain("async")
    assert zart.wait_completion("async", 1) == 20
    assert Step.objects.filter(execution_id="async").count() == 2


def test_context_inside_a_workflow(drain: Drain) -> None:
    zart.start("context-wf", None, execution_id="ctx")
    drain("ctx")
    assert zart.wait_completion("ctx", 1) == {"id": "ctx", "workflow": "context-wf", "run": 1}


class TestRetries:
    def test_two_failures_then_success(self, drain: Drain) -> None:
        zart.start("flaky-wf", {"failures": 2}, execution_id="f2")
        drain("f2")
        assert zart.wait_completion("f2", 1) == "ok after 3"
        step = Step.objects.get(execution_id="f2")
        assert step.status == "COMPLETED" and step.attempts == 3
        attempts = list(StepAttempt.objects.filter(step=step).values_list("number", "status"))
        assert attempts == [(1, "FAILED"), (2, "FAILED"), (3, "SUCCEEDED")]
        errors = [a.error["message"] for a in StepAttempt.objects.filter(step=step)[:2]]
        assert errors == ["attempt 1 failed", "attempt 2 failed"]

    def test_retries_are_durable_delays(self) -> None:
        from django_zart import engine
        from django_zart.db import get_store

        zart.start("flaky-wf", {"failures": 1}, execution_id="f1")
        store = get_store()
        (claim,) = store.claim(queues=["default"], limit=1, lease=30)
        assert engine.execute(claim, store) == "suspended"
        execution = zart.status("f1")
        assert execution.status == "SUSPENDED"  # no thread sleeps through the delay
        task = Task.objects.get(execution=execution)
        assert task.held_by is None and task.run_after > execution.started_at

    def test_exhausted_retries_fail_with_step_failed(self, drain: Drain) -> None:
        zart.start("flaky-wf", {"failures": 5}, execution_id="f5")
        drain("f5")
        with pytest.raises(zart.ExecutionFailed) as info:
            zart.wait_completion("f5", 1)
        error = info.value.error
        assert error["type"] == "django_zart.errors.StepFailed"
        assert error["step"] == "flaky" and error["attempts"] == 4
        assert error["cause"] == {"type": "builtins.RuntimeError", "message": "attempt 4 failed"}
        step = Step.objects.get(execution_id="f5")
        assert step.status == "FAILED"
        assert StepAttempt.objects.filter(step=step, status="FAILED").count() == 4
        assert SideEffect.objects.filter(execution_id="f5").count() == 4


def test_work_that_keeps_killing_its_worker_fails_after_max_recoveries() -> None:
    import time

    from django.test import override_settings

    from django_zart import engine
    from django_zart.db import get_store

    zart.start("arith", {"a": 1, "b": 2}, execution_id="loop")
    store = get_store()
    with override_settings(ZART={"MAX_RECOVERIES": 2}):
        for expected in (0, 1):
            (claim,) = store.claim(queues=["default"], limit=1, lease=0.05)
            assert claim.recoveries == expected
            time.sleep(0.15)  # the worker "dies" holding it; its lease runs out
        (claim,) = store.claim(queues=["default"], limit=1, lease=30)
        assert claim.recoveries == 2
        assert engine.execute(claim, store) == "failed"
    with pytest.raises(zart.ExecutionFailed) as info:
        zart.wait_completion("loop", 1)
    assert info.value.error["type"] == "django_zart.errors.WorkerCrashLoop"
    assert "2 times" in info.value.error["message"]


def test_stale_claim_cannot_write_after_takeover() -> None:
    import time

    from django_zart import engine
    from django_zart.db import get_store

    zart.start("arith", {"a": 1, "b": 2}, execution_id="stale")
    store = get_store()
    (stale,) = store.claim(queues=["default"], limit=1, lease=0.05)
    time.sleep(0.15)
    (fresh,) = store.claim(queues=["default"], limit=1, lease=30)
    assert engine.execute(stale, store) == "lease-lost"
    assert not Step.objects.filter(execution_id="stale").exists()
    assert engine.execute(fresh, store) == "completed"
    assert zart.wait_completion("stale", 1) == {"sum": 113}
