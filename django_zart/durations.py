"""One parser for every duration a user writes: ``timedelta``, seconds, or ``"30m"``."""

from __future__ import annotations

import math
import re
from datetime import timedelta

Duration = timedelta | int | float | str

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def to_seconds(value: Duration) -> float:
    """Return ``value`` in seconds; raise ``ValueError`` naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("A duration cannot be a boolean: %r" % value)
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(
                "Invalid duration %r: use a number of seconds, a timedelta, or a string "
                'like "500ms", "2s", "30m", "1h", "1d".' % value
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError("Invalid duration %r of type %s." % (value, type(value).__name__))
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("A duration must be finite and not negative: %r" % value)
    return seconds
