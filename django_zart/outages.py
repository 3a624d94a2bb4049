"""One log line per database outage, and a growing wait between tries.

During a PostgreSQL restart every thread of a worker fails at once, and would each log
a traceback per try. They share one ``OutageLog`` instead: the first failure logs a
warning, later ones wait quietly with a backoff that grows to a few seconds, and the
first success after them logs (at INFO) that the database is back and how long it was
gone. A thread that finds its connection dead a little later (it was busy in a long step
when the connections were cut) belongs to the same outage: within ``QUIET`` seconds of
its end, a failure is logged at INFO only.
"""

from __future__ import annotations

import logging
import random
import threading
import time

MAX_BACKOFF = 5.0

QUIET = 10.0
"""Seconds after an outage's end during which a new failure counts as part of it."""


class OutageLog:
    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0
        self._ended = -QUIET

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, doing: str, exc: BaseException) -> float:
        """Note a failure while ``doing`` something; return how long to wait before trying again."""
        with self._lock:
            self._failures += 1
            failures = self._failures
            if self._since is None:
                self._since = time.monotonic()
                log = (
                    self._logger.info if self._since - self._ended < QUIET else self._logger.warning
                )
                log(
                    "Database unavailable while %s (%s); retrying with backoff, nothing is "
                    "failed or counted meanwhile",
                    doing,
                    exc,
                )
        delay = min(0.05 * 2 ** min(failures, 10), MAX_BACKOFF)
        return float(delay / 2 + random.uniform(0, delay / 2))  # noqa: S311 - spreading retries

    def succeeded(self) -> None:
        """Note a success: if the database was down, say it is back."""
        if self._since is None:  # the common case, without taking the lock
            return
        with self._lock:
            if self._since is None:
                return
            self._logger.info(
                "Database available again after %.1fs (%d failed tries)",
                time.monotonic() - self._since,
                self._failures,
            )
            self._since = None
            self._failures = 0
            self._ended = time.monotonic()
