"""One parser for every duration a user writes: ``timedelta``, seconds, or ``"30m"``.

Every duration is bounded here, where it is declared: a workflow timeout of ``1e12``
seconds would put a deadline past the year 9999, which the database stores but Python
cannot read back, failing every claim that touches the row.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from .errors import InvalidArgument

Duration = timedelta | int | float | str

MAX_SECONDS = 100 * 365.25 * 86400
"""The longest duration django-zart stores: 100 years."""

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def to_seconds(value: Duration) -> float:
    """Return ``value`` in seconds; raise ``InvalidArgument`` naming the accepted forms."""
    if isinstance(value, bool):
        raise InvalidArgument("A duration cannot be a boolean: %r" % value)
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value) if math.isfinite(value) else math.inf
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise InvalidArgument(
                "Invalid duration %r: use a number of seconds, a timedelta, or a string "
                'like "500ms", "2s", "30m", "1h", "1d".' % value[:100]
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise InvalidArgument("Invalid duration %r of type %s." % (value, type(value).__name__))
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgument("A duration must be finite and not negative: %r" % (value,))
    if seconds > MAX_SECONDS:
        raise InvalidArgument(
            "A duration of %r is longer than the longest django-zart stores (100 years)." % (value,)
        )
    return seconds
