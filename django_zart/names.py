"""The names and ids users give: what the database columns can hold, checked up front.

A name with a NUL character or a lone surrogate cannot be stored by PostgreSQL, and one
longer than its column fails the insert: both are refused here, where they are given,
with the argument named, instead of as a database error later.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import InvalidArgument

MAX_NAME_LENGTH = 200
"""Workflow, step, event and schedule names; a step's position adds a suffix to it."""

MAX_ID_LENGTH = 255
"""Execution ids (``zart_executions.id``)."""

MAX_QUEUE_LENGTH = 100

TASKS_WORKFLOW = "django_zart.tasks.run"
"""The workflow that runs the tasks of Django's Tasks framework (``django_zart.tasks``);
named here so that the admin knows its executions without importing the framework."""

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""What PostgreSQL cannot store in text or jsonb: NUL, and surrogates (never valid alone)."""


def check_name(value: Any, what: str, *, limit: int = MAX_NAME_LENGTH) -> str:
    """Return ``value`` if it is a storable, non-empty string; else ``InvalidArgument``."""
    if not isinstance(value, str):
        raise InvalidArgument("%s must be a string, not %s." % (what, type(value).__name__))
    if not value.strip():
        raise InvalidArgument("%s must not be empty." % what)
    if len(value) > limit:
        raise InvalidArgument("%s is longer than %d characters (%d)." % (what, limit, len(value)))
    found = UNSTORABLE.search(value)
    if found is not None:
        raise InvalidArgument(
            "%s contains %s at index %d, which the database cannot store."
            % (what, _describe(found.group()), found.start())
        )
    return value


def unstorable(text: str) -> str | None:
    """What in ``text`` the database cannot store (a NUL, a lone surrogate), if anything."""
    found = UNSTORABLE.search(text)
    return None if found is None else "%s at index %d" % (_describe(found.group()), found.start())


def _describe(char: str) -> str:
    return "a NUL character" if char == "\x00" else "a lone surrogate (U+%04X)" % ord(char)


MAX_PRIORITY = 1_000_000


def check_priority(value: object, what: str = "priority") -> int:
    """A priority: an int from -1,000,000 to 1,000,000 (higher is claimed first)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument("%s must be an int, not %r." % (what, value))
    if not -MAX_PRIORITY <= value <= MAX_PRIORITY:
        raise InvalidArgument(
            "%s must be from %d to %d, not %d." % (what, -MAX_PRIORITY, MAX_PRIORITY, value)
        )
    return value
