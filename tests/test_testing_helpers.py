"""django_zart.testing: workflows run to their end in the test's thread, in no real time.

Most tests run twice, in a test that rolls back (like ``TestCase``) and in one that
commits (like ``TransactionTestCase``); the suite runs on PostgreSQL and on SQLite.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.test import TestCase

import django_zart as zart
from django_zart.context import ExecutionContext
from django_zart.models import Event, Execution, Step, Task
from django_zart.testing import QUEUE, Clock, Stuck, Wait
from tests.models import SideEffect
from tests.workflows import count, mark

REAL_TIME_LIMIT = 1.0
"""Seconds of real time a run may take, whatever its sleeps, deadlines and back-offs."""


@pytest.fixture(
    params=[
        pytest.param("rolled-back", marks=pytest.mark.django_db),
        pytest.param("committed", marks=pytest.mark.django_db(transaction=True)),
    ]
)
def database(request: pytest.FixtureRequest) -> str:
    """Marks, not ``getfixturevalue``: pytest-django sets up the test databases that the
    collected tests' marks ask for."""
    return str(request.param)


@contextmanager
def quickly() -> Iterator[None]:
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    assert elapsed < REAL_TIME_LIMIT, "took %.2f s of real time" % elapsed


def ran(execution_id: str, step: str) -> int:
    return SideEffect.objects.filter(execution_id=execution_id, step=step).count()


# -- workflows -------------------------------------------------------------------------


@zart.step("th-send-email", retry=zart.Retry.exponential(3, "1h"))
def send_email(email: str) -> None:
    mark("send-email")
    if count("send-email") < 3:  # the mail server is down twice
        raise ConnectionError("mail server down")


@zart.step("th-setup-billing")
def setup_billing(email: str) -> str:
    mark("setup-billing")
    return "cus_%s" % email.split("@")[0]


@zart.workflow("th-onboarding")
def onboarding(data: dict) -> dict:
    send_email(data["email"])
    return {"customer": setup_billing(data["email"])}


@zart.step("th-notify-manager")
def notify_manager(expense: dict) -> None:
    mark("notify")


@zart.step("th-escalate")
def escalate(expense: dict) -> None:
    mark("escalate")


@zart.workflow("th-expense-approval")
def expense_approval(expense: dict) -> str:
    notify_manager(expense)
    try:
        decision = zart.wait_for_event("decision", timeout="3d")
    except zart.EventTimeout:
        escalate(expense)
        decision = zart.wait_for_event("decision")
    zart.sleep("cooling-off", "1h")
    return "paid" if decision["approved"] else "rejected"


@zart.workflow("th-reminder")
def reminder(data: None) -> float:
    started = zart.now("started")
    zart.sleep("a-month", "30d")
    return (zart.now("woke") - started).total_seconds()


@zart.workflow("th-what-time")
def what_time(data: None) -> object:
    return zart.now("now")


@zart.step("th-charge")
def charge(order: str) -> str:
    mark("charge")  # no idempotency key: a second run charges again
    return "ch_%s" % order


@zart.step("th-charge-once")
def charge_once(order: str) -> str:
    execution_id = zart.context().execution_id
    SideEffect.objects.get_or_create(execution_id=execution_id, step="charge-once")
    return "ch_%s" % order


@zart.workflow("th-checkout")
def checkout(data: dict) -> list:
    return [charge(data["order"]), charge_once(data["order"])]


@zart.step("th-invoice")
def invoice(order: str) -> str:
    mark("invoice")
    return "inv_%s" % order


@zart.workflow("th-invoice")
def invoice_wf(data: dict) -> str:
    zart.sleep("grace", "1d")
    return invoice(data["order"])


@zart.workflow("th-order")
def order(data: dict) -> dict:
    fired = zart.start_workflow("th-invoice", {"order": "extra"})
    return {"invoice": zart.run_workflow("th-invoice", data), "fired": fired}


@zart.step("th-square")
def square(x: int) -> int:
    mark("square-%d" % x)
    return x * x


@zart.workflow("th-fan-out")
def fan_out(data: dict) -> int:
    return sum(zart.map(square, data["items"]))


@zart.step("th-async-charge")
async def async_charge(order: str) -> str:
    await SideEffect.objects.acreate(execution_id=zart.context().execution_id, step="async-charge")
    return "ch_%s" % order


@zart.workflow("th-async-checkout")
async def async_checkout(data: dict) -> str:
    await zart.sleep("settle", "2h")
    return await async_charge(data["order"])


@zart.workflow("th-too-slow", timeout="1h")
def too_slow(data: None) -> str:
    zart.sleep("nap", "2h")
    return "woke"


@zart.workflow("th-late-parent")
def late_parent(data: None) -> str:
    zart.sleep("first", "1d")  # the clock is a day ahead when the child starts
    return str(zart.run_workflow("th-too-slow", None))


@zart.step("th-guarded", timeout="5s")
def guarded(x: int) -> int:
    mark("guarded")  # in a thread of its own, on a connection of its own
    return x + 1


@zart.workflow("th-guarded")
def guarded_wf(data: dict) -> int:
    return guarded(data["x"])


@zart.workflow("th-forever")
def forever(data: None) -> None:
    for tick in range(1000):
        zart.sleep("tick-%d" % tick, "1m")


# -- running to the end ----------------------------------------------------------------


def test_steps_retries_and_their_back_off_complete_at_once(database: str) -> None:
    clock = Clock()
    with quickly():
        result = zart.testing.run(
            "th-onboarding", {"email": "ada@example.com"}, execution_id="o-1", clock=clock
        )
    assert result.status == "COMPLETED"
    assert result.output == {"customer": "cus_ada"}
    assert ran("o-1", "send-email") == 3
    step = Step.objects.get(execution_id="o-1", name="th-send-email")
    assert step.status == "COMPLETED" and step.attempts == 3
    # Waited 1h, then 2h, on the virtual clock (less the real time the run took).
    assert abs(clock.offset - timedelta(hours=3)) < timedelta(seconds=1)
    assert result.passes == 3  # the first try, then one claim per retry
    assert not Task.objects.exists()


def test_a_long_sleep_takes_no_time(database: str) -> None:
    with quickly():
        result = zart.testing.run("th-reminder", None)
    assert result.status == "COMPLETED"
    assert 30 * 86400 <= result.output < 30 * 86400 + 60
    sleep = Step.objects.get(execution_id=result.execution_id, kind="SLEEP")
    assert sleep.status == "COMPLETED"


def test_an_event_is_delivered_when_the_workflow_waits_for_it(database: str) -> None:
    with quickly():
        result = zart.testing.run(
            expense_approval, {"id": 17}, events={"decision": {"approved": True}}
        )
    assert result.output == "paid"
    assert ran(result.execution_id, "notify") == 1
    assert ran(result.execution_id, "escalate") == 0  # it came before the deadline
    event = Event.objects.get(execution_id=result.execution_id)
    assert event.consumed_by is not None
    assert result.undelivered_events == ()


def test_a_wait_times_out_then_the_event_comes_step_by_step(database: str) -> None:
    with quickly():
        driver = zart.testing.start(expense_approval, {"id": 18}, execution_id="e-18")
        driver.advance()
        (wait,) = driver.waits
        assert (wait.kind, wait.name) == ("event", "decision")
        assert wait.until is not None
        assert wait.until - driver.clock.now() > timedelta(days=2, hours=23)

        driver.advance("3d")  # past the deadline: escalated, waiting again, without one
        assert driver.status == "SUSPENDED"
        assert ran("e-18", "escalate") == 1
        assert driver.waits == [Wait("e-18", "event", "decision", None)]

        assert driver.send_event("decision", {"approved": False}) is True
        result = driver.finish()
    assert result.output == "rejected"
    assert list(
        Step.objects.filter(execution_id="e-18", kind="EVENT").values_list("status", flat=True)
    ) == ["FAILED", "COMPLETED"]


def test_a_wait_nothing_will_end_is_reported_as_stuck(database: str) -> None:
    with quickly(), pytest.raises(Stuck) as info:
        zart.testing.run(expense_approval, {"id": 19}, execution_id="e-19")
    stuck = info.value
    assert stuck.waits == [Wait("e-19", "event", "decision", None)]
    assert str(stuck).startswith(
        "Execution 'e-19' cannot finish (nothing more is due): it waits for event "
        "'decision', without a timeout. Its status is SUSPENDED."
    )
    assert stuck.result.status == "SUSPENDED"
    assert ran("e-19", "escalate") == 1  # the 3-day deadline passed on the virtual clock
    # Its task went back to its own queue, for whatever the test does next.
    assert Task.objects.get(execution_id="e-19").queue == "default"


def test_scripted_events_it_never_waited_for_are_named(database: str) -> None:
    with pytest.raises(Stuck, match="Scripted events it never waited for: 'decison'"):
        zart.testing.run(expense_approval, {"id": 20}, events={"decison": {"approved": True}})


def test_events_as_a_list_feed_successive_waits(database: str) -> None:
    driver = zart.testing.start(
        expense_approval,
        {"id": 21},
        events=[("decision", {"approved": True}), ("decision", {"approved": False})],
    )
    driver.advance("3d")  # the first wait timed out before any event was sent
    result = driver.finish()
    assert result.output == "paid"  # the second wait took the first scripted event
    assert result.undelivered_events == ("decision",)


def test_advancing_the_clock_runs_what_comes_due_in_order(database: str) -> None:
    driver = zart.testing.start("th-onboarding", {"email": "cy@example.com"})
    driver.advance()  # the first try failed; the next is an hour away
    assert ran(driver.execution_id, "send-email") == 1
    driver.advance("3h")  # both retries come due within it: after 1h, then 2h more
    assert driver.result.output == {"customer": "cus_cy"}
    assert abs(driver.clock.offset - timedelta(hours=3)) < timedelta(seconds=1)


def test_a_clock_that_does_not_move_by_itself(database: str) -> None:
    clock = Clock(auto=False)
    driver = zart.testing.start("th-reminder", None, clock=clock)
    with pytest.raises(Stuck, match=r"sleeps in 'a-month' until .*Clock\(auto=False\)"):
        driver.finish()
    driver.advance("29d")
    assert driver.status == "SUSPENDED"
    driver.advance("1d")
    assert driver.result.status == "COMPLETED"


def test_a_clock_can_start_at_a_chosen_time(database: str) -> None:
    from django.utils import timezone

    new_year = timezone.now().replace(microsecond=0) + timedelta(days=400)
    result = zart.testing.run("th-what-time", None, clock=Clock(new_year))
    assert new_year <= result.output < new_year + timedelta(seconds=5)


def test_a_clock_cannot_start_in_the_past(database: str) -> None:
    from django.utils import timezone

    with pytest.raises(zart.InvalidArgument, match="in the past"):
        zart.testing.run("th-what-time", None, clock=Clock(timezone.now() - timedelta(1)))


def test_the_workflow_timeout_follows_the_virtual_clock(database: str) -> None:
    with quickly():
        result = zart.testing.run("th-too-slow", None)
    assert result.status == "FAILED"
    assert result.error is not None
    assert result.error["type"] == "django_zart.errors.ExecutionTimedOut"


def test_child_workflows_run_too(database: str) -> None:
    with quickly():
        result = zart.testing.run("th-order", {"order": "o7"}, execution_id="order-7")
    assert result.output == {"invoice": "inv_o7", "fired": "order-7/start_workflow:th-invoice"}
    children = Execution.objects.filter(parent_id="order-7")
    assert sorted(children.values_list("status", flat=True)) == ["COMPLETED", "COMPLETED"]


def test_a_childs_deadline_is_on_the_virtual_clock(database: str) -> None:
    clock = Clock()
    result = zart.testing.run("th-late-parent", None, execution_id="late", clock=clock)
    assert result.status == "FAILED"  # run_workflow raised the child's failure
    child = Execution.objects.get(parent_id="late")
    assert child.error["type"] == "django_zart.errors.ExecutionTimedOut"
    # Started a day late by the database clock, it still had its hour: it reached its
    # sleep, and timed out an hour into it.
    assert Step.objects.filter(execution_id=child.pk, kind="SLEEP").exists()
    assert child.deadline_at is not None  # (SQLite: two clocks, a few ms apart)
    assert abs(child.deadline_at - child.created_at - timedelta(days=1, hours=1)) < timedelta(
        seconds=1
    )
    assert abs(clock.offset - timedelta(days=1, hours=1)) < timedelta(seconds=1)


def test_parallel_branches_run_too(database: str) -> None:
    with quickly():
        result = zart.testing.run("th-fan-out", {"items": [1, 2, 3]})
    assert result.output == 14


def test_an_async_workflow(database: str) -> None:
    with quickly():
        result = zart.testing.run("th-async-checkout", {"order": "a1"})
    assert result.output == "ch_a1"


# -- crashes ---------------------------------------------------------------------------


def test_crash_after_runs_a_step_that_is_not_idempotent_twice(database: str) -> None:
    with quickly():
        result = zart.testing.run("th-checkout", {"order": "c1"}, crash_after="th-charge")
    assert result.output == ["ch_c1", "ch_c1"]
    assert result.crashes == ("th-charge",)
    assert ran(result.execution_id, "charge") == 2  # charged twice: not idempotent
    assert ran(result.execution_id, "charge-once") == 1
    assert Step.objects.get(execution_id=result.execution_id, name="th-charge").attempts == 1


def test_crash_after_an_idempotent_step_leaves_one_side_effect(database: str) -> None:
    result = zart.testing.run("th-checkout", {"order": "c2"}, crash_after="th-charge-once")
    assert result.crashes == ("th-charge-once",)
    assert ran(result.execution_id, "charge-once") == 1
    assert ran(result.execution_id, "charge") == 1  # checkpointed before the crash


def test_crash_after_a_position_an_async_step_and_a_branch(database: str) -> None:
    result = zart.testing.run("th-async-checkout", {"order": "a2"}, crash_after="th-async-charge")
    assert result.output == "ch_a2" and ran(result.execution_id, "async-charge") == 2

    result = zart.testing.run("th-fan-out", {"items": [1, 2]}, crash_after="th-square#2")
    assert result.output == 5 and result.crashes == ("th-square#2",)
    assert ran(result.execution_id, "square-2") == 2


def test_crash_after_a_step_that_never_ran_fails_the_test(database: str) -> None:
    with pytest.raises(AssertionError, match="'th-charj', which execution 'typo' never"):
        zart.testing.run(
            "th-checkout", {"order": "c3"}, execution_id="typo", crash_after="th-charj"
        )


# -- what a run leaves alone -------------------------------------------------------------


def test_other_executions_are_left_alone(database: str) -> None:
    zart.start("th-onboarding", {"email": "bob@example.com"}, execution_id="other")
    zart.testing.run("th-onboarding", {"email": "ada@example.com"})
    other = Execution.objects.get(pk="other")
    assert other.status == "PENDING" and other.started_at is None
    assert Task.objects.get(execution_id="other").queue == "default"
    assert not Task.objects.filter(queue=QUEUE).exists()


def test_a_run_that_never_ends_stops_at_max_passes(database: str) -> None:
    with quickly(), pytest.raises(Stuck, match="still running after max_passes=5 claims"):
        zart.testing.run("th-forever", None, execution_id="loop", max_passes=5)
    task = Task.objects.get(execution_id="loop")
    assert task.held_by is None and task.queue == "default"


def test_the_hooks_are_off_outside_a_pass(database: str) -> None:
    with pytest.raises(Stuck):
        zart.testing.run(expense_approval, {"id": 22}, crash_after="th-escalate")
    assert ExecutionContext.virtual_clock is None
    assert ExecutionContext.before_checkpoint is None


def test_drive_an_execution_started_elsewhere(database: str) -> None:
    zart.start(expense_approval, {"id": 23}, execution_id="from-a-view")
    driver = zart.testing.drive("from-a-view", events={"decision": {"approved": True}})
    assert driver.finish().output == "paid"
    with pytest.raises(zart.ExecutionNotFound):
        zart.testing.drive("nobody")


def test_bad_arguments(database: str) -> None:
    with pytest.raises(zart.InvalidArgument, match="events takes"):
        zart.testing.start("th-reminder", None, events=["decision"])  # type: ignore[list-item]
    with pytest.raises(zart.InvalidArgument, match="max_passes"):
        zart.testing.start("th-reminder", None, max_passes=0)


@pytest.mark.django_db(transaction=True)
def test_a_step_with_a_timeout_needs_a_test_that_commits() -> None:
    with quickly():
        result = zart.testing.run("th-guarded", {"x": 1})
    assert result.output == 2
    assert ran(result.execution_id, "guarded") == 1


# -- as the README shows it ------------------------------------------------------------


class ExpenseApprovalTests(TestCase):
    """A ``django.test.TestCase``: each test runs in a transaction that is rolled back."""

    def test_paid_once_approved(self) -> None:
        started = time.monotonic()
        result = zart.testing.run(
            "th-expense-approval", {"id": 17}, events={"decision": {"approved": True}}
        )
        self.assertLess(time.monotonic() - started, REAL_TIME_LIMIT)
        self.assertEqual(result.status, "COMPLETED")
        self.assertEqual(result.output, "paid")

    def test_escalated_after_three_days(self) -> None:
        run = zart.testing.start("th-expense-approval", {"id": 17}, execution_id="expense-17")
        run.advance("3d")
        self.assertEqual(ran("expense-17", "escalate"), 1)
        run.send_event("decision", {"approved": True})
        self.assertEqual(run.finish().output, "paid")
