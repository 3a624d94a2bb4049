"""Retry policies for steps: a value object that answers "wait how long, or give up?"."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .durations import Duration, to_seconds


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
            raise ValueError("Retry attempts must be an int, not %r." % (self.attempts,))
        if self.attempts < 0:
            raise ValueError("Retry attempts cannot be negative: %d." % self.attempts)
        if self.backoff < 1:
            raise ValueError("Retry backoff must be >= 1: %r." % self.backoff)

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
        """Seconds to wait after ``tries`` failed tries, or ``None`` to give up."""
        if tries > self.attempts:
            return None
        delay = self.delay * self.backoff ** (tries - 1)
        if self.max_delay is not None:
            delay = min(delay, self.max_delay)
        if self.jitter:
            delay = delay / 2 + random.uniform(0, delay / 2)
        return delay
