"""Durable sleep, events and recorded values, run by a real in-process worker."""

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

import django_zart as zart
from django_zart import engine
from django_zart.db import get_store
from django_zart.models import Event, Step, Task
from tests.models import Flag, SideEffect

pytestmark = pytest.mark.django_db(transaction=True)
Drain = Callable[..., None]


def run_once(execution_id: str) -> str:
    """Claim the execution and run it to its next suspension in this thread."""
    store = get_store()
    claims = store.claim(queues=["default"], limit=10, lease=30)
    outcome = "not claimed"
    for claim in claims:
        result = engine.execute(claim, store)
        if claim.execution_id == execution_id:
            outcome = result
    return outcome


class TestSleep:
    def test_sleep_suspends_then_continues_past_it(self, drain: Drain) -> None:
        zart.start("sleeper", {"seconds": 0.5}, execution_id="s")
        assert run_once("s") == "suspended"
        step = Step.objects.get(execution_id="s", kind="SLEEP")
        assert step.status == "WAITING" and step.wake_at is not None
        task = Task.objects.get(execution_id="s")
        assert task.held_by is None and abs(task.run_after - step.wake_at) < timedelta(
            milliseconds=1
        )
        assert run_once("s") == "not claimed"  # not due yet
        time.sleep(0.55)
        assert run_once("s") == "completed"
        assert zart.wait_completion("s", 1) == "a"
        assert Step.objects.get(execution_id="s", kind="SLEEP").status == "COMPLETED"

    def test_sleep_until_a_past_time_does_not_suspend(self) -> None:
        zart.start(
            "sleep-until",
            {"when": (timezone.now() - timedelta(1)).isoformat()},
            execution_id="past",
        )
        assert run_once("past") == "completed"

    def test_sleep_until_needs_an_aware_datetime(self) -> None:
        from datetime import datetime

        with pytest.raises(ValueError, match="aware"):
            zart.sleep_until("x", datetime(2030, 1, 1))

    def test_sleep_outside_a_workflow(self) -> None:
        with pytest.raises(zart.NotInWorkflow):
            zart.sleep("x", 1)


class TestEvents:
    def test_event_wakes_a_waiting_execution(self) -> None:
        zart.start("approval", {}, execution_id="ap")
        assert run_once("ap") == "suspended"
        task = Task.objects.get(execution_id="ap")
        assert task.run_after is None  # waits forever: not claimable, not polled
        assert zart.send_event("ap", "approved", {"by": "alice"}) is True
        assert run_once("ap") == "completed"
        assert zart.wait_completion("ap", 1) == {"approved": True, "by": "alice"}
        event = Event.objects.get(execution_id="ap")
        assert event.consumed_at is not None and event.consumed_by.position == "approved"

    def test_an_event_without_payload_wakes_the_wait(self) -> None:
        zart.start("two-events", None, execution_id="bare")
        assert run_once("bare") == "suspended"
        assert zart.send_event("bare", "x") is True
        assert run_once("bare") == "suspended"  # the first wait got None, the second waits
        assert zart.send_event("bare", "x") is True
        assert run_once("bare") == "completed"
        assert zart.wait_completion("bare", 1) == [None, None]

    def test_event_sent_before_the_wait_is_kept(self) -> None:
        zart.start("approval", {}, execution_id="early")
        assert zart.send_event("early", "approved", {"by": "bob"}) is False
        assert run_once("early") == "completed"
        assert zart.wait_completion("early", 1)["by"] == "bob"

    def test_event_sent_during_a_sleep_is_kept_for_the_later_wait(self) -> None:
        zart.start("event-after-sleep", {"seconds": 0.3}, execution_id="later")
        assert run_once("later") == "suspended"
        assert zart.send_event("later", "go", [1, 2]) is False
        time.sleep(0.35)
        assert run_once("later") == "completed"
        assert zart.wait_completion("later", 1) == [1, 2]

    def test_same_name_twice_goes_to_successive_waits(self) -> None:
        zart.start("two-events", None, execution_id="two")
        zart.send_event("two", "x", "first")
        zart.send_event("two", "x", "second")
        zart.send_event("two", "x", "third")
        assert run_once("two") == "completed"
        assert zart.wait_completion("two", 1) == ["first", "second"]
        assert Event.objects.unconsumed().get(execution_id="two").payload == "third"

    def test_timeout_is_catchable(self) -> None:
        zart.start("approval", {"timeout": 0.3}, execution_id="late")
        assert run_once("late") == "suspended"
        time.sleep(0.35)
        assert run_once("late") == "completed"
        assert zart.wait_completion("late", 1) == {"approved": False, "by": None}
        step = Step.objects.get(execution_id="late")
        assert step.status == "FAILED" and step.error["type"] == "django_zart.errors.EventTimeout"

    def test_event_and_timeout_racing_record_one_outcome(self) -> None:
        """The event lands after the deadline passed but before a worker looked: the
        event wins, once, and a replay returns the same outcome."""
        zart.start("approval", {"timeout": 0.2}, execution_id="race")
        assert run_once("race") == "suspended"
        time.sleep(0.25)
        zart.send_event("race", "approved", {"by": "carol"})
        assert run_once("race") == "completed"
        assert zart.wait_completion("race", 1) == {"approved": True, "by": "carol"}
        assert Step.objects.filter(execution_id="race").count() == 1
        # A second event after the outcome is recorded is refused (finished) — and a
        # timeout recorded first is never overturned by a late event:
        zart.start("approval", {"timeout": 0.2}, execution_id="race-2")
        run_once("race-2")
        time.sleep(0.25)
        assert run_once("race-2") == "completed"
        with pytest.raises(zart.ExecutionFinished):
            zart.send_event("race-2", "approved", {"by": "too late"})
        assert zart.wait_completion("race-2", 1)["approved"] is False

    def test_event_arriving_while_the_body_runs_is_not_lost(self) -> None:
        """A worker holds the execution and has looked for the event (none yet); the
        event commits before the worker suspends: the release makes it due at once."""
        zart.start("approval", {}, execution_id="held")
        store = get_store()
        (claim,) = store.claim(queues=["default"], limit=1, lease=30)
        assert zart.send_event("held", "approved", {"by": "dave"}) is False  # held, not waiting
        # Recreate the interleaving "the body looked, then the event committed": hide the
        # event from the body's look, and show it again before anyone runs the body next.
        Event.objects.filter(execution_id="held").update(name="hidden")
        assert engine.execute(claim, store) == "suspended"
        Event.objects.filter(execution_id="held").update(name="approved")
        task = Task.objects.get(execution_id="held")
        assert task.run_after is not None and task.run_after <= timezone.now()
        assert run_once("held") == "completed"

    def test_unknown_and_finished_executions(self, drain: Drain) -> None:
        with pytest.raises(zart.ExecutionNotFound):
            zart.send_event("nope", "x")
        zart.start("arith", {"a": 1, "b": 1}, execution_id="done")
        drain("done")
        with pytest.raises(zart.ExecutionFinished) as info:
            zart.send_event("done", "x", {"a": 1})
        assert info.value.status == "COMPLETED"
        assert not Event.objects.exists()

    def test_bad_payloads(self) -> None:
        zart.start("approval", {}, execution_id="p")
        with pytest.raises(zart.SerializationError):
            zart.send_event("p", "approved", object())
        assert not Event.objects.exists()


class TestRecordedValues:
    def test_capture_and_now_are_replayed(self, drain: Drain) -> None:
        zart.start("captures", None, execution_id="cap")
        drain("cap")
        output = zart.wait_completion("cap", 1)
        assert SideEffect.objects.filter(execution_id="cap", step="capture").count() == 1
        assert SideEffect.objects.filter(execution_id="cap", step="wait-once").count() == 2
        assert output["again"] == output["value"]
        assert output["when"].tzinfo is not None


def test_async_workflow_sleeps_and_waits(drain: Drain) -> None:
    zart.start("async-approval", {"seconds": 0.2}, execution_id="aa")
    assert run_once("aa") == "suspended"
    time.sleep(0.25)
    assert run_once("aa") == "suspended"  # now waiting for the event
    assert zart.send_event("aa", "ok", {"n": 21}) is True
    assert run_once("aa") == "completed"
    assert zart.wait_completion("aa", 1) == {"n": 42, "at": True}


def test_a_step_replaced_by_a_sleep_is_non_determinism(drain: Drain) -> None:
    Flag.objects.create(name="kind", value="step")
    zart.start("step-or-sleep", None, execution_id="kind")
    assert run_once("kind") == "suspended"  # 'a' done, 'wait-once' failed once
    Flag.objects.filter(name="kind").update(value="sleep")
    time.sleep(0.35)
    drain("kind")
    with pytest.raises(zart.ExecutionFailed) as info:
        zart.wait_completion("kind", 1)
    assert info.value.error["type"] == "django_zart.errors.NonDeterminismError"
    assert "step 'a'" in info.value.error["message"] and "sleep 'a'" in info.value.error["message"]
