"""The worker: claim due work, run it on a fixed set of threads, keep leases alive.

The main thread claims in batches and keeps at most ``concurrency`` claimed executions
waiting for a thread, so a burst of due work costs few claim statements; waiting ones are
held under the same heartbeated lease and released on shutdown. Each thread keeps its own
database
connection for the life of the worker. A heartbeat thread extends the leases of running
work in one statement per interval; a worker killed with SIGKILL stops heartbeating, and
its work is taken over once the leases expire.
"""

from __future__ import annotations

import logging
import os
import queue as queue_module
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from django.db import connection

from . import engine
from .conf import get_settings
from .db import Claim, get_store
from .listener import Listener
from .models import Worker as WorkerRow
from .schedules import run_due, sync_declared

logger = logging.getLogger(__name__)

SCHEDULE_INTERVAL = 1.0
"""Seconds between a worker's looks for due schedule ticks."""


@dataclass
class WorkerOptions:
    queues: list[str]
    concurrency: int
    max_tasks_per_poll: int
    poll_interval: float
    orphan_timeout: float
    shutdown_timeout: float
    burst: bool = False
    listen: bool = True
    """LISTEN for notifications of due work (PostgreSQL); off, the worker only polls."""
    worker_id: str = field(
        default_factory=lambda: (
            "%s-%d-%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:6])
        )
    )

    @classmethod
    def from_settings(cls, **overrides: object) -> WorkerOptions:
        settings = get_settings()
        values: dict[str, object] = {
            "queues": list(settings.queues),
            "concurrency": settings.max_concurrent_tasks,
            "max_tasks_per_poll": settings.max_tasks_per_poll,
            "poll_interval": settings.poll_interval,
            "orphan_timeout": settings.orphan_timeout,
            "shutdown_timeout": settings.shutdown_timeout,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


class Worker:
    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.store = get_store()
        self.processed = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._drained = threading.Event()  # stops the heartbeat once nothing runs
        self._lock = threading.Lock()
        self._running: dict[int, Claim] = {}
        self._inbox: queue_module.SimpleQueue[Claim | None] = queue_module.SimpleQueue()
        self._last_poll_full = False

    def request_stop(self) -> None:
        """Stop claiming; running work gets ``shutdown_timeout`` to finish."""
        self._stop.set()
        self._wake.set()

    def run(self) -> int:
        """Work until stopped (or, in burst mode, until nothing is due); return the count."""
        opts = self.options
        logger.info(
            "Worker starting id=%s queues=%s concurrency=%d poll_interval=%.3fs",
            opts.worker_id,
            ",".join(opts.queues),
            opts.concurrency,
            opts.poll_interval,
        )
        self.store.register_worker(
            WorkerRow(
                id=opts.worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queues=opts.queues,
                concurrency=opts.concurrency,
            )
        )
        sync_declared()
        threads = [
            threading.Thread(target=self._work, name="zart-%d" % i, daemon=True)
            for i in range(opts.concurrency)
        ]
        threads.append(threading.Thread(target=self._heartbeat, name="zart-hb", daemon=True))
        for thread in threads:
            thread.start()
        listener = self._listener()
        try:
            self._loop()
        finally:
            if listener is not None:
                listener.stop()
            self._shutdown(threads)
        logger.info("Worker stopped id=%s processed=%d", opts.worker_id, self.processed)
        return self.processed

    def _loop(self) -> None:
        opts = self.options
        next_schedules = 0.0
        while not self._stop.is_set():
            self._wake.clear()  # before claiming: a wake-up during the claim is kept
            if time.monotonic() >= next_schedules:
                next_schedules = time.monotonic() + SCHEDULE_INTERVAL
                self._run_schedules()
            with self._lock:
                idle = 2 * opts.concurrency - len(self._running)
            if idle <= 0:
                self._wake.wait(opts.poll_interval)
                continue
            limit = min(idle, opts.max_tasks_per_poll)
            try:
                claims = self.store.claim(
                    queues=opts.queues, limit=limit, lease=opts.orphan_timeout
                )
            except Exception:
                logger.exception("Claim failed; retrying after the poll interval")
                connection.close()
                claims = []
            self._last_poll_full = len(claims) == limit
            with self._lock:
                for claim in claims:
                    self._running[claim.task_id] = claim
            for claim in claims:
                self._inbox.put(claim)
            if self._last_poll_full:
                continue
            if opts.burst and not claims:
                with self._lock:
                    busy = bool(self._running)
                if not busy:
                    break
            self._wake.wait(self._idle_wait())

    def _run_schedules(self) -> None:
        try:
            run_due()
        except Exception:
            logger.exception("Starting due schedule ticks failed; trying again shortly")
            connection.close()

    def _idle_wait(self) -> float:
        """Until the earliest known due time, a notification, or the poll interval."""
        interval = min(self.options.poll_interval, SCHEDULE_INTERVAL)
        try:
            due_in = self.store.next_due_in(queues=self.options.queues)
        except Exception:
            logger.exception("Reading the next due time failed")
            connection.close()
            return interval
        if due_in is None:
            return interval
        return min(interval, max(due_in, 0.01))

    def _listener(self) -> Listener | None:
        if not self.options.listen or self.options.burst or connection.vendor != "postgresql":
            return None
        listener = Listener(self.options.queues, self._wake.set)
        listener.start()
        return listener

    def _work(self) -> None:
        while True:
            claim = self._inbox.get()
            if claim is None:
                connection.close()
                return
            outcome = "error"
            try:
                outcome = engine.execute(claim, self.store)
            except Exception:
                logger.exception(
                    "Worker error execution=%s workflow=%s; the lease will expire and "
                    "another worker will take it over",
                    claim.execution_id,
                    claim.workflow,
                )
                connection.close()
            finally:
                with self._lock:
                    self._running.pop(claim.task_id, None)
                    self.processed += 1
                # More may be due (the last claim was full), or this suspension may now be
                # the earliest due time: let the main loop look again.
                if self._last_poll_full or self.options.burst or outcome == "suspended":
                    self._wake.set()

    def _heartbeat(self) -> None:
        interval = max(self.options.orphan_timeout / 3, 0.05)
        while not self._drained.wait(interval):
            with self._lock:
                tokens = list({c.token for c in self._running.values()})
            try:
                self.store.heartbeat(self.options.worker_id, tokens, self.options.orphan_timeout)
            except Exception:
                logger.exception("Heartbeat failed")
                connection.close()
        connection.close()

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        self._stop.set()
        deadline = time.monotonic() + self.options.shutdown_timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    break
            time.sleep(0.01)
        with self._lock:
            left = list(self._running.values())
        self._drained.set()
        if left:
            released = self.store.release(list({c.token for c in left}), [c.task_id for c in left])
            logger.warning(
                "Worker released %d unfinished execution(s) after the shutdown timeout: %s",
                released,
                ", ".join(c.execution_id for c in left),
            )
        for _ in range(self.options.concurrency):
            self._inbox.put(None)
        for thread in threads:  # idle threads close their connections and exit
            thread.join(timeout=0 if left else 1)
        self.store.unregister_worker(self.options.worker_id)
