"""The ``ZART`` settings dict: defaults, lazy reading, validation.

Settings are read when first needed, never at import time, so tests can override them
with ``override_settings(ZART=...)``; the cache is dropped on ``setting_changed``.
Every key is checked for its type and its range here, once, for the system checks, for
``get_settings()`` and for the worker's command-line options alike: a poll interval of
zero would have an idle worker burn a core, and a lease of 1e15 seconds would make every
claim fail on a timestamp out of range.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from .durations import to_seconds
from .errors import InvalidArgument
from .names import MAX_QUEUE_LENGTH, check_name

DEFAULTS: dict[str, Any] = {
    "POLL_INTERVAL": 0.2,
    "MAX_TASKS_PER_POLL": 10,
    "MAX_CONCURRENT_TASKS": 4,
    "SHUTDOWN_TIMEOUT": 5.0,
    "ORPHAN_TIMEOUT": 30.0,
    "QUEUES": ["default"],
    "MAX_RECOVERIES": 5,
    "MAX_PAYLOAD_BYTES": 1024 * 1024,
    "WORKFLOW_MODULES": [],
    "EVENT_TOKENS": [],
    "LISTEN_DATABASE": "default",
    "WORKER_RETENTION": "1h",
    "FAULT_POINTS": [],
    "API_TOKENS": {},
    "RETENTION": {},
    "REDACT_KEYS": ["password", "secret", "token", "authorization", "api_key"],
}

FAULT_KINDS = ("step", "sleep", "event", "branch", "child", "group")
FAULT_POINTS = frozenset(
    ["after-finish"]
    + ["%s-checkpoint:%s" % (when, kind) for when in ("before", "after") for kind in FAULT_KINDS]
)
"""The points ``ZART["FAULT_POINTS"]`` may name (see ``django_zart.faults``)."""


def _duration(low: float, high: float) -> Callable[[str, Any], float]:
    def check(key: str, value: Any) -> float:
        try:
            seconds = to_seconds(value)
        except InvalidArgument as exc:  # its message names the value, not the key
            raise InvalidArgument("%s: %s" % (key, exc)) from None
        if not low <= seconds <= high:
            raise InvalidArgument(
                "%s must be between %s and %s seconds, not %r." % (key, low, high, value)
            )
        return seconds

    return check


def _integer(low: int, high: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidArgument(
                "%s must be an integer from %d to %d, not %r." % (key, low, high, value)
            )
        return value

    return check


def _strings(
    *, non_empty: bool = False, item: Callable[[str, Any], str] | None = None
) -> Callable[[str, Any], tuple[str, ...]]:
    def check(key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
            raise InvalidArgument("%s must be a list of non-empty strings, not %r." % (key, value))
        if non_empty and not value:
            raise InvalidArgument("%s must name at least one." % key)
        if item is not None:
            for v in value:
                item(key, v)
        return tuple(value)

    return check


def _queue(key: str, value: Any) -> str:
    return check_name(value, "A queue name in %s" % key, limit=MAX_QUEUE_LENGTH)


RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class Rate:
    """A queue's rate limit: ``per_second`` claims a second, at most ``burst`` at once."""

    per_second: float
    burst: int


def _queues(key: str, value: Any) -> tuple[str, ...]:
    """The queue names of ``QUEUES``: a list of names, or a dict of name to options."""
    if isinstance(value, dict):
        if not value:
            raise InvalidArgument("%s must name at least one." % key)
        for name, options in value.items():
            _queue(key, name)
            _queue_rate(key, name, options)
        return tuple(value)
    return _strings(non_empty=True, item=_queue)(key, value)


def _queue_rate(key: str, name: str, options: Any) -> Rate | None:
    where = "%s[%r]" % (key, name)
    if not isinstance(options, dict) or set(options) - {"rate", "burst"}:
        raise InvalidArgument(
            '%s must be a dict of options: {"rate": "100/m"} and optionally "burst", not %r.'
            % (where, options)
        )
    if "rate" not in options:
        if "burst" in options:
            raise InvalidArgument('%s: "burst" needs a "rate".' % where)
        return None
    rate = options["rate"]
    count, _, unit = rate.partition("/") if isinstance(rate, str) else ("", "", "")
    if not count.isdigit() or unit not in RATE_UNITS or not 1 <= int(count) <= 1_000_000:
        raise InvalidArgument(
            '%s: the rate must be "<count>/<s, m, h or d>" with a count from 1 to 1,000,000, '
            "e.g. '100/m', not %r." % (where, rate)
        )
    burst = options.get("burst", 1)
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 1_000_000:
        raise InvalidArgument("%s: burst must be an integer from 1 to 1,000,000." % where)
    return Rate(per_second=int(count) / RATE_UNITS[unit], burst=burst)


def queue_rates(value: Any) -> dict[str, Rate]:
    """The rate limits of a valid ``QUEUES`` value, by queue name."""
    if not isinstance(value, dict):
        return {}
    rates = {name: _queue_rate("QUEUES", name, options) for name, options in value.items()}
    return {name: rate for name, rate in rates.items() if rate is not None}


def _fault_point(key: str, value: Any) -> str:
    if value not in FAULT_POINTS:
        raise InvalidArgument(
            "%s: unknown fault point %r; known: %s." % (key, value, ", ".join(sorted(FAULT_POINTS)))
        )
    return str(value)


def _database_alias(key: str, value: Any) -> str:
    if not isinstance(value, str) or value not in settings.DATABASES:
        raise InvalidArgument("%s is %r, which is not an alias in DATABASES." % (key, value))
    return value


MIN_TOKEN_LENGTH = 16
"""The shortest bearer token: ``API_TOKENS`` refuses shorter ones; ``EVENT_TOKENS`` have
always taken any length, so for them a system check warns instead."""

API_SCOPES = ("read", "write", "events")
"""What an API token may do: read anything, operate (start, cancel, restart, rerun,
retry a step, pause), send events."""


def _api_tokens(key: str, value: Any) -> dict[str, frozenset[str]]:
    if not isinstance(value, dict):
        raise InvalidArgument(
            '%s must be a dict of token to scopes, e.g. {"<token>": ["read"]}, not %r.'
            % (key, value)
        )
    tokens = {}
    for token, scopes in value.items():
        if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
            raise InvalidArgument(
                "%s: every token must be a string of at least %d characters."
                % (key, MIN_TOKEN_LENGTH)
            )
        if (
            not isinstance(scopes, list | tuple)
            or not scopes
            or any(scope not in API_SCOPES for scope in scopes)
        ):
            raise InvalidArgument(
                "%s: the scopes of a token must be a non-empty list of %s, not %r."
                % (key, ", ".join(API_SCOPES), scopes)
            )
        tokens[token] = frozenset(scopes)
    return tokens


def _retention(key: str, value: Any) -> dict[str, float]:
    from .states import TERMINAL

    if not isinstance(value, dict):
        raise InvalidArgument(
            '%s must be a dict of final status to duration, e.g. {"COMPLETED": "30d"}, '
            "not %r." % (key, value)
        )
    kept = {}
    for status, duration in value.items():
        if status not in TERMINAL:
            raise InvalidArgument(
                "%s: %r is not a final status; use %s." % (key, status, ", ".join(sorted(TERMINAL)))
            )
        kept[str(status)] = _duration(60, 100 * 365 * 86400)("%s[%r]" % (key, status), duration)
    return kept


CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "POLL_INTERVAL": _duration(0.01, 3600),
    "MAX_TASKS_PER_POLL": _integer(1, 1000),
    "MAX_CONCURRENT_TASKS": _integer(1, 1000),
    "SHUTDOWN_TIMEOUT": _duration(0, 86400),
    "ORPHAN_TIMEOUT": _duration(0.5, 86400),
    "QUEUES": _queues,
    "MAX_RECOVERIES": _integer(0, 1000),
    "MAX_PAYLOAD_BYTES": _integer(1, 100 * 1024 * 1024),
    "WORKFLOW_MODULES": _strings(),
    "EVENT_TOKENS": _strings(),
    "LISTEN_DATABASE": _database_alias,
    "WORKER_RETENTION": _duration(0, 365 * 86400),
    "FAULT_POINTS": _strings(item=_fault_point),
    "API_TOKENS": _api_tokens,
    "RETENTION": _retention,
    "REDACT_KEYS": _strings(),
}
"""How each key is checked: a function returning the value to use, or raising
``InvalidArgument`` with a message that names the key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    poll_interval: float
    max_tasks_per_poll: int
    max_concurrent_tasks: int
    shutdown_timeout: float
    orphan_timeout: float
    queues: tuple[str, ...]
    max_recoveries: int
    max_payload_bytes: int
    workflow_modules: tuple[str, ...]
    event_tokens: tuple[str, ...]
    listen_database: str
    worker_retention: float
    fault_points: frozenset[str]
    api_tokens: dict[str, frozenset[str]]
    """Token to scopes."""
    retention: dict[str, float]
    """Final status to the seconds after which its executions are deleted."""
    redact_keys: tuple[str, ...]
    """Keys whose values the admin masks (case-insensitive substrings)."""
    queue_rates: dict[str, Rate]
    """The queues with a rate limit (``QUEUES`` as a dict with ``"rate"`` options)."""


def check_value(key: str, value: Any, *, label: str | None = None) -> Any:
    """``value`` as the setting ``key`` uses it, or ``InvalidArgument`` saying why not.

    ``label`` names the value in the message (a command-line option, say).
    """
    return CHECKS[key](label or 'ZART["%s"]' % key, value)


def closest_key(key: Any) -> str | None:
    """The known key an unknown one was probably meant to be (case aside), if any."""
    close = difflib.get_close_matches(str(key).upper(), DEFAULTS, n=1)
    return close[0] if close else None


def unknown_key_hint(key: Any) -> str:
    suggestion = closest_key(key)
    if suggestion is not None:
        return "Did you mean %r?" % suggestion
    return "Known keys: %s." % ", ".join(sorted(DEFAULTS))


def unknown_keys(raw: dict[Any, Any]) -> list[Any]:
    """The keys of a ``ZART`` dict that no setting has: a typo leaves its default in force."""
    return [key for key in raw if key not in DEFAULTS]


def invalid_values(raw: Any) -> list[str]:
    """One message per setting in a ``ZART`` value of the wrong type or out of its range."""
    if not isinstance(raw, dict):
        return ["ZART must be a dict, not %s." % type(raw).__name__]
    merged = {**DEFAULTS, **raw}
    problems = []
    for key in CHECKS:
        try:
            check_value(key, merged[key])
        except InvalidArgument as exc:
            problems.append(str(exc))
    return problems


def validate(raw: Any) -> list[str]:
    """Return one message per problem in a ``ZART`` value (empty when it is valid)."""
    if not isinstance(raw, dict):
        return invalid_values(raw)
    unknown = [
        "Unknown key %r in ZART. %s" % (key, unknown_key_hint(key)) for key in unknown_keys(raw)
    ]
    return unknown + invalid_values(raw)


@cache
def get_settings() -> Settings:
    """The validated settings; an invalid ``ZART`` raises ``ImproperlyConfigured``."""
    raw = getattr(settings, "ZART", {})
    problems = validate(raw)
    if problems:
        raise ImproperlyConfigured(" ".join(problems))
    merged = {**DEFAULTS, **raw}
    values = {key.lower(): check_value(key, value) for key, value in merged.items()}
    values["fault_points"] = frozenset(values["fault_points"])
    values["queue_rates"] = queue_rates(merged["QUEUES"])
    return Settings(**values)


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "ZART":
        get_settings.cache_clear()
