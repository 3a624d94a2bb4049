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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import transaction
from django.utils import timezone as django_timezone

from . import serialization
from .cron import Cron, CronError
from .durations import Duration, to_seconds
from .errors import ExecutionAlreadyExists, ZartError
from .registry import Workflow, get_workflow
from .states import OverlapPolicy

logger = logging.getLogger(__name__)

TICK_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Recurrence:
    """When ticks fall: a cron expression in a time zone, or a fixed interval."""

    cron: Cron | None
    every: float | None
    timezone: str

    @classmethod
    def of(cls, cron: str | None, every: Duration | None, tz: str | None) -> Recurrence:
        if (cron is None) == (every is None):
            raise ZartError("A schedule needs exactly one of cron=... or every=....")
        zone = tz or "UTC"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ZartError("Unknown time zone %r for a schedule." % zone) from None
        if cron is not None:
            return cls(Cron.parse(cron), None, zone)
        seconds = to_seconds(every)  # type: ignore[arg-type]
        if seconds <= 0:
            raise ZartError("A schedule's every= must be more than zero.")
        return cls(None, seconds, zone)

    def next_after(self, moment: datetime) -> datetime:
        if self.cron is not None:
            return self.cron.next_after(moment, self.timezone)
        assert self.every is not None
        return moment + timedelta(seconds=self.every)


@dataclass(frozen=True)
class Declaration:
    workflow: str
    recurrence: Recurrence
    input: Any
    overlap: str
    catch_up: float
    execution_id: str


_declared: dict[str, Declaration] = {}


def declare(
    workflow: str,
    *,
    cron: str | None,
    every: Duration | None,
    timezone: str | None = None,
    input: Any = None,
    overlap: str = OverlapPolicy.SKIP,
    catch_up: Duration = "1h",
    execution_id: str = "{schedule}-{tick}",
) -> None:
    """Record a schedule declared with ``@zart.workflow``; invalid ones fail here."""
    _declared[workflow] = Declaration(
        workflow=workflow,
        recurrence=Recurrence.of(cron, every, timezone),
        input=serialization.encode(input, "the input of schedule %r" % workflow),
        overlap=_overlap(overlap),
        catch_up=to_seconds(catch_up),
        execution_id=_template(execution_id),
    )


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
    from .models import Schedule

    definition = get_workflow(workflow)
    declaration = Declaration(
        workflow=definition.name,
        recurrence=Recurrence.of(cron, every, timezone),
        input=serialization.encode(input, "the input of schedule %r" % name),
        overlap=_overlap(overlap),
        catch_up=to_seconds(catch_up),
        execution_id=_template(execution_id),
    )
    return _save(Schedule, name, declaration, declared=False)


def unschedule(name: str) -> bool:
    """Delete the schedule ``name``; executions it started are left alone."""
    from .models import Schedule

    deleted, _ = Schedule.objects.filter(pk=name).delete()
    return bool(deleted)


def sync_declared() -> None:
    """Bring the rows of code-declared schedules in line with the code (worker start)."""
    from .models import Schedule

    for name, declaration in _declared.items():
        get_workflow(declaration.workflow)
        _save(Schedule, name, declaration, declared=True)
    Schedule.objects.filter(declared=True).exclude(pk__in=list(_declared)).delete()


def _save(model: Any, name: str, declaration: Declaration, *, declared: bool) -> Any:
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
        row = model.objects.select_for_update().filter(pk=name).first()
        if row is None:
            return model.objects.create(
                name=name, next_tick_at=recurrence.next_after(django_timezone.now()), **fields
            )
        timing_changed = (row.cron, row.every, row.timezone) != (
            fields["cron"],
            fields["every"],
            fields["timezone"],
        )
        for key, value in fields.items():
            setattr(row, key, value)
        if timing_changed:
            row.next_tick_at = recurrence.next_after(django_timezone.now())
        row.updated_at = django_timezone.now()
        row.save()
        return row


def run_due(limit: int = 10) -> int:
    """Start the executions of due ticks; returns how many were started."""
    from .models import Schedule

    started = 0
    if not Schedule.objects.filter(next_tick_at__lte=django_timezone.now()).exists():
        return 0  # the common case: one plain read, no transaction, no lock
    with transaction.atomic():
        due = list(
            Schedule.objects.filter(next_tick_at__lte=django_timezone.now())
            .select_for_update(skip_locked=True)
            .order_by("next_tick_at")[:limit]
        )
        now = django_timezone.now()
        for row in due:
            started += _tick(row, now)
    return started


def _tick(row: Any, now: datetime) -> int:
    from .client import cancel, create
    from .models import Execution

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
                cancel(previous, reason="Replaced by the next tick of schedule %r." % row.name)
            execution_id = row.execution_id.format(
                schedule=row.name, tick=tick.strftime(TICK_FORMAT), occurrence=row.occurrence
            )
            try:
                create(definition, serialization.decode(row.input), execution_id, definition.queue)
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


def _overlap(value: str) -> str:
    upper = str(value).upper()
    if upper not in OverlapPolicy.values:
        raise ZartError(
            "overlap must be one of %s, not %r." % (", ".join(OverlapPolicy.values), value)
        )
    return upper


def _template(template: str) -> str:
    try:
        template.format(schedule="s", tick="t", occurrence=1)
    except (KeyError, IndexError, ValueError) as exc:
        raise ZartError(
            "Execution id template %r may use {schedule}, {tick} and {occurrence}: %s"
            % (template, exc)
        ) from None
    if "{tick}" not in template and "{occurrence}" not in template:
        raise ZartError(
            "Execution id template %r must contain {tick} or {occurrence}, or "
            "every tick would get the same id." % template
        )
    return template


__all__ = ["CronError", "declare", "run_due", "schedule_recurring", "sync_declared", "unschedule"]
