"""The ``ZART`` settings dict: defaults, lazy reading, validation.

Settings are read when first needed, never at import time, so tests can override them
with ``override_settings(ZART=...)``; the cache is dropped on ``setting_changed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from .durations import to_seconds

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
}

_DURATIONS = ("POLL_INTERVAL", "SHUTDOWN_TIMEOUT", "ORPHAN_TIMEOUT")
_POSITIVE_INTS = ("MAX_TASKS_PER_POLL", "MAX_CONCURRENT_TASKS", "MAX_PAYLOAD_BYTES")


@dataclass(frozen=True)
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


def validate(raw: Any) -> list[str]:
    """Return one message per problem in a ``ZART`` value (empty when it is valid)."""
    if not isinstance(raw, dict):
        return ["ZART must be a dict, not %s." % type(raw).__name__]
    problems = [
        "Unknown key %r in ZART; known keys: %s." % (key, ", ".join(sorted(DEFAULTS)))
        for key in raw
        if key not in DEFAULTS
    ]
    merged = {**DEFAULTS, **raw}
    for key in _DURATIONS:
        try:
            to_seconds(merged[key])
        except ValueError as exc:
            problems.append('ZART["%s"]: %s' % (key, exc))
    if to_seconds_or_zero(merged["ORPHAN_TIMEOUT"]) <= 0:
        problems.append('ZART["ORPHAN_TIMEOUT"] must be more than zero.')
    for key in _POSITIVE_INTS:
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append('ZART["%s"] must be a positive integer, not %r.' % (key, value))
    recoveries = merged["MAX_RECOVERIES"]
    if isinstance(recoveries, bool) or not isinstance(recoveries, int) or recoveries < 0:
        problems.append('ZART["MAX_RECOVERIES"] must be an integer >= 0, not %r.' % recoveries)
    for key in ("QUEUES", "WORKFLOW_MODULES", "EVENT_TOKENS"):
        value = merged[key]
        if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
            problems.append('ZART["%s"] must be a list of non-empty strings.' % key)
    if not merged["QUEUES"]:
        problems.append('ZART["QUEUES"] must name at least one queue.')
    if merged["LISTEN_DATABASE"] not in settings.DATABASES:
        problems.append(
            'ZART["LISTEN_DATABASE"] is %r, which is not an alias in DATABASES.'
            % (merged["LISTEN_DATABASE"],)
        )
    return problems


def to_seconds_or_zero(value: Any) -> float:
    try:
        return to_seconds(value)
    except ValueError:
        return 0.0


@cache
def get_settings() -> Settings:
    """The validated settings; an invalid ``ZART`` raises ``ImproperlyConfigured``."""
    from django.core.exceptions import ImproperlyConfigured

    raw = getattr(settings, "ZART", {})
    problems = validate(raw)
    if problems:
        raise ImproperlyConfigured(" ".join(problems))
    merged = {**DEFAULTS, **raw}
    return Settings(
        poll_interval=to_seconds(merged["POLL_INTERVAL"]),
        max_tasks_per_poll=merged["MAX_TASKS_PER_POLL"],
        max_concurrent_tasks=merged["MAX_CONCURRENT_TASKS"],
        shutdown_timeout=to_seconds(merged["SHUTDOWN_TIMEOUT"]),
        orphan_timeout=to_seconds(merged["ORPHAN_TIMEOUT"]),
        queues=tuple(merged["QUEUES"]),
        max_recoveries=merged["MAX_RECOVERIES"],
        max_payload_bytes=merged["MAX_PAYLOAD_BYTES"],
        workflow_modules=tuple(merged["WORKFLOW_MODULES"]),
        event_tokens=tuple(merged["EVENT_TOKENS"]),
        listen_database=merged["LISTEN_DATABASE"],
    )


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "ZART":
        get_settings.cache_clear()
