"""Five-field cron expressions (minute hour day-of-month month day-of-week).

Supported: ``*``, numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, lists ``a,b``,
month and weekday names (``jan``, ``mon``), weekday 7 as Sunday, and the macros
``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``. As in Vixie cron, when
both day fields are restricted a day matches if either does. Times are evaluated in the
schedule's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = {
    n: i
    for i, n in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1,
    )
}
_DAYS = {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


class CronError(ValueError):
    """The expression is not valid cron; the message says which part and why."""


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        text = _MACROS.get(expression.strip().lower(), expression)
        parts = text.split()
        if len(parts) != 5:
            raise CronError(
                "Cron %r has %d fields; it needs 5: minute hour day-of-month month "
                "day-of-week (or a macro such as @daily)." % (expression, len(parts))
            )
        values = [
            _field(part, *spec, expression) for part, spec in zip(parts, _FIELDS, strict=True)
        ]
        weekdays = frozenset(7 if d == 0 else d for d in values[4]) | frozenset(
            0 if d == 7 else d for d in values[4]
        )
        return cls(
            expression=expression,
            minutes=tuple(sorted(values[0])),
            hours=tuple(sorted(values[1])),
            days=frozenset(values[2]),
            months=frozenset(values[3]),
            weekdays=weekdays,
            any_day=parts[2] == "*",
            any_weekday=parts[4] == "*",
        )

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_date = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.any_day:
            return by_weekday
        if self.any_weekday:
            return by_date
        return by_date or by_weekday

    def next_after(self, moment: datetime, tz: str = "UTC") -> datetime:
        """The first tick strictly after the aware ``moment``, as an aware UTC datetime."""
        zone = ZoneInfo(tz)
        local = moment.astimezone(zone)
        day = local.date()
        for _ in range(366 * 5):
            if self._day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        tick = datetime.combine(day, time(hour, minute), tzinfo=zone)
                        if tick > local:
                            return tick.astimezone(UTC)
            day += timedelta(days=1)
        raise CronError("Cron %r never matches a date." % self.expression)


def _field(
    part: str, name: str, low: int, high: int, names: dict[str, int], expression: str
) -> set[int]:
    values: set[int] = set()
    for item in part.split(","):
        base, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = low, high
            elif "-" in base:
                first, last = base.split("-", 1)
                start, end = _value(first, names), _value(last, names)
            else:
                start = end = _value(base, names)
                if step_text:
                    end = high
        except ValueError:
            raise CronError("Cron %r: %r is not a valid %s." % (expression, item, name)) from None
        if step < 1 or not low <= start <= end <= high:
            raise CronError(
                "Cron %r: %r is out of range for the %s (%d-%d)."
                % (expression, item, name, low, high)
            )
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, names: dict[str, int]) -> int:
    return names[text.lower()] if text.lower() in names else int(text)
