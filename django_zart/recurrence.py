"""When recurring workflows tick, and the schedules declared in code.

Kept free of models: ``@zart.workflow(schedule=...)`` runs at import time, and checks
its schedule here before the workflow is registered, so an invalid one leaves nothing
registered. ``schedules`` keeps the rows in line with what is declared here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import serialization
from .cron import Cron
from .durations import Duration, to_seconds
from .errors import ZartError
from .states import OverlapPolicy


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
        return moment + timedelta(seconds=self.every or 0)


@dataclass(frozen=True)
class Declaration:
    """A checked schedule: what a row of ``zart_schedules`` holds."""

    workflow: str
    recurrence: Recurrence
    input: Any
    overlap: str
    catch_up: float
    execution_id: str

    @classmethod
    def of(
        cls,
        name: str,
        workflow: str,
        *,
        cron: str | None,
        every: Duration | None,
        timezone: str | None = None,
        input: Any = None,
        overlap: str = OverlapPolicy.SKIP,
        catch_up: Duration = "1h",
        execution_id: str = "{schedule}-{tick}",
    ) -> Declaration:
        """Check every part of a schedule; raise ``ZartError`` naming what is wrong."""
        return cls(
            workflow=workflow,
            recurrence=Recurrence.of(cron, every, timezone),
            input=serialization.encode(input, "the input of schedule %r" % name),
            overlap=_overlap(overlap),
            catch_up=to_seconds(catch_up),
            execution_id=_template(execution_id),
        )


declared: dict[str, Declaration] = {}
"""Schedules declared with ``@zart.workflow(schedule=...)``, by name (the workflow's)."""


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
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
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
