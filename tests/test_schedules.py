"""Recurring workflows: cron parsing, ticks, catch-up, overlap, declarations."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

import django_zart as zart
from django_zart.cron import Cron
from django_zart.models import Execution, Schedule
from django_zart.schedules import run_due, sync_declared

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/5 * * * *", "2026-01-01T10:03", "2026-01-01T10:05"),
        ("0 9 * * mon-fri", "2026-11-28T10:00", "2026-11-30T09:00"),  # Saturday -> Monday
        ("@monthly", "2026-01-31T00:00", "2026-02-01T00:00"),
        ("0 0 29 2 *", "2026-01-31T00:00", "2028-02-29T00:00"),
        ("30 2 1,15 * *", "2026-03-01T02:30", "2026-03-15T02:30"),
        ("0 0 * * 7", "2026-11-29T00:00", "2026-12-06T00:00"),  # 7 is Sunday too
    ],
)
def test_cron_next_tick(expression: str, after: str, expected: str) -> None:
    moment = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert Cron.parse(expression).next_after(moment) == datetime.fromisoformat(expected).replace(
        tzinfo=UTC
    )


def test_cron_in_a_time_zone() -> None:
    moment = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
    assert Cron.parse("0 9 * * *").next_after(moment, "Europe/Paris") == datetime(
        2026, 7, 1, 7, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "expression", ["* * *", "61 * * * *", "*/0 * * * *", "x * * * *", "0 0 31 2 *"]
)
def test_invalid_cron_is_refused_when_declared(expression: str) -> None:
    with pytest.raises(ValueError, match="Cron"):
        if expression == "0 0 31 2 *":
            Cron.parse(expression).next_after(datetime(2026, 1, 1, tzinfo=UTC))
        else:
            zart.workflow("never-" + expression, schedule=expression)(lambda data: None)


def test_schedule_recurring_validates() -> None:
    with pytest.raises(zart.UnknownWorkflow):
        zart.schedule_recurring("s", "nope", every="1m")
    with pytest.raises(zart.ZartError, match="exactly one"):
        zart.schedule_recurring("s", "long-tick")
    with pytest.raises(zart.ZartError, match="time zone"):
        zart.schedule_recurring("s", "long-tick", cron="* * * * *", timezone="Mars/Base")
    with pytest.raises(zart.ZartError, match="same id"):
        zart.schedule_recurring("s", "long-tick", every="1m", execution_id="fixed")
    with pytest.raises(zart.ZartError, match="overlap"):
        zart.schedule_recurring("s", "long-tick", every="1m", overlap="sometimes")
    assert not Schedule.objects.exists()


def backdate(name: str, seconds: float) -> None:
    Schedule.objects.filter(pk=name).update(
        next_tick_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_a_tick_starts_one_execution_once() -> None:
    zart.schedule_recurring(
        "nightly", "long-tick", {"seconds": 0}, every="1d", execution_id="nightly-{occurrence}"
    )
    backdate("nightly", 1)
    assert run_due() == 1
    assert run_due() == 0  # the next tick is a day away
    assert list(Execution.objects.values_list("pk", flat=True)) == ["nightly-1"]
    row = Schedule.objects.get(pk="nightly")
    assert row.occurrence == 1 and row.next_tick_at > timezone.now() + timedelta(hours=23)


def test_missed_ticks_within_the_catch_up_window_run(drain: Callable[..., None]) -> None:
    zart.schedule_recurring(
        "catchup", "long-tick", {"seconds": 0}, every="1m", catch_up="10m", overlap="ALLOW"
    )
    backdate("catchup", 30 * 60 + 1)  # a 30-minute outage: 31 ticks, 10 of them recent
    assert run_due() == 10
    ids = sorted(Execution.objects.values_list("pk", flat=True))
    assert len(ids) == 10 and all(i.startswith("catchup-") for i in ids)
    assert Schedule.objects.get(pk="catchup").occurrence == 31


def test_overlap_policies(run_worker: Callable[..., int]) -> None:
    zart.schedule_recurring(
        "skip", "long-tick", {"seconds": 0}, every="1s", execution_id="skip-{occurrence}"
    )
    backdate("skip", 0.5)
    assert run_due() == 1  # skip-1 starts, and stays pending: no worker runs it
    backdate("skip", 0.5)
    assert run_due() == 0  # skipped: skip-1 still runs
    zart.schedule_recurring(
        "cancel",
        "long-tick",
        {"seconds": 0},
        every="1s",
        overlap="CANCEL",
        execution_id="cancel-{occurrence}",
    )
    backdate("cancel", 0.5)
    run_due()
    backdate("cancel", 0.5)
    assert run_due() == 1
    assert zart.status("cancel-1").status == "CANCELLED"
    assert zart.status("cancel-2").status == "PENDING"


@pytest.fixture
def declared() -> Iterator[None]:
    from django_zart import recurrence

    saved = dict(recurrence.declared)
    yield
    recurrence.declared.clear()
    recurrence.declared.update(saved)


@pytest.mark.usefixtures("declared")
def test_declared_schedules_are_synced() -> None:
    import tests.recurring  # noqa: F401  (declares "tick")

    sync_declared()
    row = Schedule.objects.get(pk="tick")
    assert row.declared and row.every == 1 and row.execution_id == "tick-{occurrence}"
    Schedule.objects.create(
        name="gone", workflow="tick", every=5, declared=True, next_tick_at=timezone.now()
    )
    sync_declared()
    assert not Schedule.objects.filter(pk="gone").exists()  # no longer in the code


@pytest.mark.postgres
def test_many_workers_start_each_tick_once(worker_process: Callable[..., Any]) -> None:
    import time

    from django.db.models import Count

    from tests.models import SideEffect
    from tests.test_worker_processes import wait_for

    workers = [worker_process(modules="tests.recurring") for _ in range(3)]
    ticks = Execution.objects.filter(workflow="tick")
    wait_for(lambda: ticks.count() >= 3, 30, "three ticks")
    started = time.monotonic()
    time.sleep(2)
    ticking = time.monotonic() - started  # all three workers up
    for worker in workers:
        assert worker.terminate() == 0
    elapsed = time.monotonic() - started  # some still ticking while the others stop
    row = Schedule.objects.get(pk="tick")
    ids = sorted(ticks.values_list("pk", flat=True), key=lambda i: int(i.split("-")[1]))
    # One execution per tick, numbered without gaps or repeats, about one a second.
    assert ids == ["tick-%d" % n for n in range(1, row.occurrence + 1)]
    assert 3 + int(ticking) - 1 <= len(ids) <= 3 + int(elapsed) + 2
    per_execution = (
        SideEffect.objects.filter(step="tick").values("execution_id").annotate(n=Count("id"))
    )
    assert all(r["n"] == 1 for r in per_execution)


def test_unschedule() -> None:
    zart.schedule_recurring("x", "long-tick", every="1h")
    assert zart.unschedule("x") is True and zart.unschedule("x") is False
