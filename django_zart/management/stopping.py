"""SIGTERM and SIGINT for a worker, without taking a lock in the signal handler.

Python runs a signal handler in the main thread between two bytecodes, possibly while
that thread is inside ``threading.Event.wait()`` holding the event's lock: a handler that
sets the event waits for that lock forever, and the worker never exits. So the handler
only writes the signal's number to a pipe (one system call, no lock); a thread reading
the pipe does the rest, as any other thread could.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger("django_zart.worker")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopOnSignal:
    """The first signal calls ``stop`` (from a thread of its own); a second one ends the
    process at once, as a crash would: what it held goes to other workers when its lease
    ends."""

    def __init__(self, stop: Callable[[], None]) -> None:
        self.stop = stop
        self._previous: dict[int, Any] = {}
        self._read, self._write = os.pipe()
        self._thread = threading.Thread(target=self._watch, name="zart-signals", daemon=True)

    def install(self) -> None:
        self._thread.start()
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        os.close(self._write)  # the watching thread reads the end of the pipe and returns

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        os.write(self._write, bytes([signum]))

    def _watch(self) -> None:
        received = 0
        while data := os.read(self._read, 1):
            name = signal.Signals(data[0]).name
            received += 1
            if received > 1:
                logger.warning("Received %s again: exiting now", name)
                logging.shutdown()
                os._exit(1)
            logger.info("Received %s: finishing running work, then exiting", name)
            self.stop()
        os.close(self._read)
