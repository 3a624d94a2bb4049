"""Retry policies for steps: a value object that answers "wait how long, or give up?"."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .durations import MAX_SECONDS, Duration, to_seconds
from .errors import InvalidArgument


@dataclass(frozen=True)
class Retry:
    """How often and how soon a failed step is tried again.

    ``attempts`` counts retries after the first try, so ``Retry.exponential(3, "2s")``
    means up to four tries, waiting 2s, 4s and 8s between them. Waits are durable: the
    execution is suspended and rescheduled, no thread sleeps.
    """

    attempts: int = 0
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: float | None = None
    jitter: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise InvalidArgument("Retry attempts must be an int, not %r." % (self.attempts,))
        if self.attempts < 0:
            raise InvalidArgument("Retry attempts cannot be negative: %d." % self.attempts)
        if not (isinstance(self.backoff, int | float) and 1 <= self.backoff <= 100):
            raise InvalidArgument("Retry backoff must be between 1 and 100: %r." % (self.backoff,))

    @classmethod
    def none(cls) -> Retry:
        """Never retry: the first failure is final."""
        return cls()

    @classmethod
    def fixed(cls, attempts: int, delay: Duration) -> Retry:
        """Retry up to ``attempts`` times, waiting ``delay`` before each retry."""
        return cls(attempts=attempts, delay=to_seconds(delay))

    @classmethod
    def exponential(
        cls,
        attempts: int,
        base: Duration,
        max_delay: Duration | None = None,
        jitter: bool = False,
    ) -> Retry:
        """Retry up to ``attempts`` times, waiting ``base``, then twice as long each time.

        ``max_delay`` caps a single wait; ``jitter`` spreads each wait over its upper half
        so that many executions failing together do not retry in lockstep.
        """
        return cls(
            attempts=attempts,
            delay=to_seconds(base),
            backoff=2.0,
            max_delay=None if max_delay is None else to_seconds(max_delay),
            jitter=jitter,
        )

    def next_delay(self, tries: int) -> float | None:
        """Seconds to wait after ``tries`` failed tries, or ``None`` to give up.

        The wait grows until ``max_delay`` (at most 100 years): however many attempts a
        policy allows, the thousandth computes no ``2.0 ** 1024``.
        """
        if tries > self.attempts:
            return None
        ceiling = MAX_SECONDS if self.max_delay is None else self.max_delay
        delay = self.delay
        if self.backoff > 1 and delay > 0:
            # Compare exponents, not values, so the power never overflows.
            room = math.log(ceiling / delay, self.backoff) if ceiling > delay else 0
            delay = ceiling if tries - 1 >= room else delay * self.backoff ** (tries - 1)
        delay = min(delay, ceiling)
        if self.jitter:
            delay = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - spreading load
        return delay
