"""Recurring workflows: declared in code or with ``zart.schedule_recurring``.

Each schedule is a row with its next tick. Workers look for due rows about once a second
with ``SKIP LOCKED``; the one that gets a row starts the tick's execution and moves the
row to its next tick in one transaction. The execution id comes from a template of the
tick (``"{schedule}-{tick}"`` by default), so a tick is started at most once, whatever
crashes, and exactly once while some worker runs. Ticks missed by less than the catch-up
window (a worker outage) still run; older ones are skipped.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models.functions import Now

from . import serialization
from .client import create, new_execution
from .cron import CronError
from .db import get_store
from .durations import Duration
from .errors import ExecutionAlreadyExists
from .models import Execution, Schedule
from .names import check_name
from .operations import cancel_quietly
from .recurrence import Declaration, Recurrence
from .recurrence import declared as declarations
from .registry import Workflow, get_workflow
from .states import OverlapPolicy, RunReason

logger = logging.getLogger(__name__)

TICK_FORMAT = "%Y%m%dT%H%M%SZ"


def schedule_recurring(
    name: str,
    workflow: str | Workflow,
    input: Any = None,
    *,
    cron: str | None = None,
    every: Duration | None = None,
    timezone: str | None = None,
    overlap: str = OverlapPolicy.SKIP,
    catch_up: Duration = "1h",
    execution_id: str = "{schedule}-{tick}",
) -> Any:
    """Create or update the schedule ``name``; returns its row.

    ``overlap`` is what a tick does while the previous tick's execution still runs:
    ``"SKIP"`` it (the default), ``"CANCEL"`` the previous one and start anew, or
    ``"ALLOW"`` both. ``execution_id`` is a template over ``{schedule}``, ``{tick}``
    (the tick's UTC time) and ``{occurrence}`` (1 for the first tick).
    """
    check_name(name, "A schedule name")
    definition = get_workflow(workflow)
    declaration = Declaration.of(
        name,
        definition.name,
        cron=cron,
        every=every,
        timezone=timezone,
        input=input,
        overlap=overlap,
        catch_up=catch_up,
        execution_id=execution_id,
    )
    return _save(name, declaration, declared=False)


def unschedule(name: str) -> bool:
    """Delete the schedule ``name``; executions it started are left alone."""
    deleted, _ = Schedule.objects.filter(pk=name).delete()
    return bool(deleted)


def sync_declared() -> None:
    """Bring the rows of code-declared schedules in line with the code (worker start)."""
    for name, declaration in declarations.items():
        get_workflow(declaration.workflow)
        _save(name, declaration, declared=True)
    Schedule.objects.filter(declared=True).exclude(pk__in=list(declarations)).delete()


def _save(name: str, declaration: Declaration, *, declared: bool) -> Schedule:
    recurrence = declaration.recurrence
    fields = {
        "workflow": declaration.workflow,
        "input": declaration.input,
        "cron": recurrence.cron.expression if recurrence.cron else "",
        "every": recurrence.every,
        "timezone": recurrence.timezone,
        "overlap": declaration.overlap,
        "catch_up": declaration.catch_up,
        "execution_id": declaration.execution_id,
        "declared": declared,
    }
    with transaction.atomic():
        now = get_store().now()
        row = Schedule.objects.select_for_update().filter(pk=name).first()
        if row is None:
            return Schedule.objects.create(
                name=name, next_tick_at=recurrence.next_after(now), **fields
            )
        timing_changed = (row.cron, row.every, row.timezone) != (
            fields["cron"],
            fields["every"],
            fields["timezone"],
        )
        for key, value in fields.items():
            setattr(row, key, value)
        if timing_changed:
            row.next_tick_at = recurrence.next_after(now)
        row.updated_at = now
        row.save()
        return row


def run_due(limit: int = 10) -> int:
    """Start the executions of due ticks; returns how many were started.

    Ticks are judged by the database clock, like leases and sleeps: a worker whose own
    clock runs ahead starts nothing early.
    """
    started = 0
    if not Schedule.objects.filter(next_tick_at__lte=Now()).exists():
        return 0  # the common case: one plain read, no transaction, no lock
    with transaction.atomic():
        due = list(
            Schedule.objects.filter(next_tick_at__lte=Now())
            .select_for_update(skip_locked=True)
            .order_by("next_tick_at")[:limit]
        )
        now = get_store().now()
        for row in due:
            started += _tick(row, now)
    return started


def _tick(row: Schedule, now: datetime) -> int:
    recurrence = Recurrence.of(row.cron or None, row.every, row.timezone)
    definition = get_workflow(row.workflow)
    oldest = now - timedelta(seconds=row.catch_up)
    tick, started = row.next_tick_at, 0
    for _ in range(1000):  # a long outage with a short interval: the rest is skipped
        if tick > now:
            break
        row.occurrence += 1
        if tick >= oldest:
            previous = row.last_execution_id
            running = previous and Execution.objects.filter(pk=previous).unfinished().exists()
            if running and row.overlap == OverlapPolicy.SKIP:
                logger.info("Schedule tick skipped schedule=%s running=%s", row.name, previous)
                tick = recurrence.next_after(tick)
                continue
            if running and row.overlap == OverlapPolicy.CANCEL:
                cancel_quietly(
                    previous,
                    reason="Replaced by the next tick of schedule %r." % row.name,
                    by="schedule:%s" % row.name,
                )
            execution_id = row.execution_id.format(
                schedule=row.name, tick=tick.strftime(TICK_FORMAT), occurrence=row.occurrence
            )
            try:
                create(
                    new_execution(
                        definition,
                        serialization.decode(row.input),
                        execution_id,
                        definition.queue,
                        reason=RunReason.SCHEDULE,
                        by="schedule:%s" % row.name,
                    )
                )
                started += 1
            except ExecutionAlreadyExists:
                pass  # started by an earlier pass whose row update was lost: not again
            row.last_execution_id = execution_id
            logger.info("Schedule tick started schedule=%s execution=%s", row.name, execution_id)
        tick = recurrence.next_after(tick)
    row.next_tick_at = tick if tick > now else recurrence.next_after(now)
    row.updated_at = now
    row.save(update_fields=["occurrence", "last_execution_id", "next_tick_at", "updated_at"])
    return started


__all__ = ["CronError", "run_due", "schedule_recurring", "sync_declared", "unschedule"]
