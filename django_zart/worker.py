"""The worker: claim due work, run it on a fixed set of threads, keep leases alive.

The main thread claims in batches, for its idle threads only: a claimed execution starts
at once, so a worker killed with work in hand counts a crash recovery only for work it was
really running (a claim queued for a busy thread would count as one too).

Each thread keeps its own database connection for the life of the worker, checks it is
still alive before each execution (a dead one is dropped, at the cost of a ``poll()``),
and outlives database outages: an execution interrupted by one is replayed on a fresh
connection once the database answers, nothing failed and nothing counted. A heartbeat
thread extends the leases of held work in one statement per interval; a worker killed
with SIGKILL stops heartbeating, and its work is taken over once the leases expire.
"""

from __future__ import annotations

import functools
import logging
import os
import queue as queue_module
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar

from django.db import InterfaceError, OperationalError, connection

from . import engine, pauses, registry
from .conf import Rate, check_value, get_settings
from .db import get_store
from .db.guard import drop_dead_connection
from .db.types import Claim, DatabaseUnavailable
from .errors import WorkerIdInUse, ZartError
from .models import Worker as WorkerRow
from .names import check_name
from .outages import OutageLog
from .registry import has_limits
from .retention import prune_due
from .schedules import run_due, sync_declared
from .steps import abandoned_threads
from .steps import clashes as step_clashes

if TYPE_CHECKING:
    from .listener import Listener

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEDULE_INTERVAL = 1.0
"""Seconds between a worker's looks for due schedule ticks."""

PRUNE_INTERVAL = 60.0
"""Seconds between a worker's deletions of long-dead workers' rows."""

LISTENING_POLL_INTERVAL = SCHEDULE_INTERVAL
"""Seconds between an idle worker's polls while its LISTEN is open (if longer than
``POLL_INTERVAL``): work made due now is announced then, and the poll only finds what
nothing announces (a lease run out, a due time set meanwhile by a busy worker)."""

RETENTION_INTERVAL = 60.0
"""Seconds between a worker's passes of ``ZART["RETENTION"]`` (a few batches each)."""


def _running(pid: int) -> bool:
    """Whether a process of this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _default_worker_id() -> str:
    return "%s-%d-%s" % (socket.gethostname()[:60], os.getpid(), uuid.uuid4().hex[:6])


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
    worker_id: str = field(default_factory=_default_worker_id)

    def __post_init__(self) -> None:
        """Hold options to the ranges of the settings they override."""
        self.queues = list(check_value("QUEUES", self.queues, label="queues"))
        for option, key in (
            ("concurrency", "MAX_CONCURRENT_TASKS"),
            ("max_tasks_per_poll", "MAX_TASKS_PER_POLL"),
            ("poll_interval", "POLL_INTERVAL"),
            ("orphan_timeout", "ORPHAN_TIMEOUT"),
            ("shutdown_timeout", "SHUTDOWN_TIMEOUT"),
        ):
            setattr(self, option, check_value(key, getattr(self, option), label=option))
        check_name(self.worker_id, "The worker id", limit=100)

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
        self._outage = OutageLog(logger)
        self._listening: Listener | None = None
        self._limited = False
        """Whether work under concurrency limits may be due (looked at every second)."""
        self._rate_next: dict[str, float] = {}
        """When each rate-limited queue has a token again (``time.monotonic()``)."""

    def request_stop(self) -> None:
        """Stop claiming; running work gets ``shutdown_timeout`` to finish."""
        self._stop.set()
        self._wake.set()

    def run(self) -> int:
        """Work until stopped (or, in burst mode, until nothing is due); return the count.

        Raises ``WorkerIdInUse`` if a live worker has this worker's id, and ``ZartError``
        if two functions share a workflow or step name (it would run one for the other) or
        the threads cannot be started; nothing is left behind then.
        """
        registry.clashes.refuse_any()
        step_clashes.refuse_any()
        opts = self.options
        logger.info(
            "Worker starting id=%s queues=%s concurrency=%d poll_interval=%.3fs",
            opts.worker_id,
            ",".join(opts.queues),
            opts.concurrency,
            opts.poll_interval,
        )
        threads = self._start_threads()
        try:
            self._register_when_available()
            self._guarded("syncing declared schedules", sync_declared)
        except BaseException:
            self._stop_threads(threads)
            raise
        try:
            listener = self._listener()
            try:
                self._loop()
            finally:
                if listener is not None:
                    listener.stop()
        finally:
            self._shutdown(threads)
        logger.info("Worker stopped id=%s processed=%d", opts.worker_id, self.processed)
        return self.processed

    def _start_threads(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._work, name="zart-%d" % i, daemon=True)
            for i in range(self.options.concurrency)
        ]
        threads.append(threading.Thread(target=self._heartbeat, name="zart-hb", daemon=True))
        started: list[threading.Thread] = []
        try:
            for thread in threads:
                thread.start()
                started.append(thread)
        except RuntimeError as exc:
            self._stop_threads(started)
            raise ZartError(
                "Cannot start %d worker threads (%s); lower --concurrency."
                % (self.options.concurrency, exc)
            ) from None
        return started

    def _stop_threads(self, threads: list[threading.Thread]) -> None:
        self._drained.set()
        for _ in threads:
            self._inbox.put(None)
        for thread in threads:
            thread.join(timeout=1)

    def _register_when_available(self) -> None:
        """Register; a worker started while the database restarts waits for it.

        ``WorkerIdInUse`` is not an outage: it goes to the caller.
        """
        while True:
            try:
                drop_dead_connection()
                self._register()
            except (DatabaseUnavailable, OperationalError, InterfaceError) as exc:
                connection.close()
                if self._stop.wait(self._outage.failed("registering", exc)):
                    raise ZartError("Stopped before the database could be reached.") from None
                continue
            self._outage.succeeded()
            return

    def _register(self) -> bool:
        """Insert this worker's row; an id held by a dead worker is taken over.

        A holder on this machine whose process is gone is dead at once (a restart after a
        crash); another holder is dead once its lease ends without a heartbeat, which is
        waited for. A holder that keeps heartbeating is live: ``WorkerIdInUse``.
        """
        opts = self.options
        row = WorkerRow(
            id=opts.worker_id,
            hostname=socket.gethostname()[:255],
            pid=os.getpid(),
            queues=opts.queues,
            concurrency=opts.concurrency,
        )
        holder = self.store.register_worker(row, opts.orphan_timeout)
        if holder is not None and holder.hostname == row.hostname and not _running(holder.pid):
            holder = self.store.register_worker(row, opts.orphan_timeout, replace_live=True)
        if holder is not None:
            logger.info(
                "Worker id %s is held by %s pid %d; waiting %.1fs for its lease to end",
                opts.worker_id,
                holder.hostname,
                holder.pid,
                holder.expires_in,
            )
            if self._stop.wait(holder.expires_in + 0.1):
                raise ZartError("Stopped while waiting for worker id %r." % opts.worker_id)
            holder = self.store.register_worker(row, opts.orphan_timeout)
        if holder is not None:
            raise WorkerIdInUse(opts.worker_id, holder.heartbeat_age)
        self._prune()
        return True

    def _loop(self) -> None:
        opts = self.options
        next_schedules = 0.0
        next_retention = time.monotonic() + RETENTION_INTERVAL / 10
        while not self._stop.is_set():
            self._wake.clear()  # before claiming: a wake-up during the claim is kept
            if time.monotonic() >= next_schedules:
                next_schedules = time.monotonic() + SCHEDULE_INTERVAL
                self._every_second()
            if time.monotonic() >= next_retention:
                next_retention = time.monotonic() + RETENTION_INTERVAL
                self._guarded("deleting executions past their retention", prune_due)
            capacity = opts.concurrency - abandoned_threads()
            with self._lock:
                busy = len(self._running)
            room = min(capacity - busy, opts.max_tasks_per_poll)
            if room <= 0:
                self._wake.wait(opts.poll_interval)
                continue
            claims = self._claim(room)
            if claims is None:  # the database is unavailable: wait, then try again
                continue
            self._last_poll_full = len(claims) == room
            with self._lock:
                for claim in claims:
                    self._running[claim.task_id] = claim
            for claim in claims:
                self._inbox.put(claim)
            if self._last_poll_full:
                continue
            if opts.burst and not claims:
                with self._lock:
                    busy = len(self._running)
                if not busy:
                    break
            self._wake.wait(self._idle_wait())

    def _every_second(self) -> None:
        self._guarded("starting due schedule ticks", run_due)
        self._guarded("ending expired pause rules", pauses.sweep)
        self._limited = bool(self._guarded("looking for limited work", self._any_limits))
        if self._limited:  # slots freed by leases that ran out, or by cancels
            self._guarded("freeing concurrency slots", self.store.free_slots)

    def _any_limits(self) -> bool:
        return has_limits() or self.store.has_limited_work()

    def _claim(self, room: int) -> list[Claim] | None:
        """Up to ``room`` claims: free work first, then work under concurrency limits, then
        work of rate-limited queues that have tokens."""
        opts = self.options
        free, rated = self._queues()
        claims: list[Claim] | None = []
        if free:
            claims = self._guarded(
                "claiming work",
                functools.partial(
                    self.store.claim, queues=free, limit=room, lease=opts.orphan_timeout
                ),
            )
        if claims is None:
            return None
        if free and self._limited and len(claims) < room:
            limited = self._guarded(
                "claiming work under concurrency limits",
                functools.partial(
                    self.store.claim_limited,
                    queues=free,
                    limit=room - len(claims),
                    lease=opts.orphan_timeout,
                ),
            )
            claims += limited or []
        for queue, rate in rated.items():
            if len(claims) >= room or time.monotonic() < self._rate_next.get(queue, 0.0):
                continue
            got = self._guarded(
                "claiming work of rate-limited queue %r" % queue,
                functools.partial(
                    self.store.claim_rated,
                    queue=queue,
                    rate=rate,
                    limit=room - len(claims),
                    lease=opts.orphan_timeout,
                ),
            )
            if got is not None:
                claims += got[0]
                wait = got[1]
                self._rate_next[queue] = 0.0 if wait is None else time.monotonic() + wait
        return claims

    def _queues(self) -> tuple[list[str], dict[str, Rate]]:
        """This worker's queues without a rate limit, and those with one."""
        rates = get_settings().queue_rates
        rated = {q: rates[q] for q in self.options.queues if q in rates}
        return [q for q in self.options.queues if q not in rated], rated

    def _guarded(self, doing: str, operation: Callable[[], T]) -> T | None:
        """Run a worker-level database operation; ``None`` if it failed.

        An outage is logged once and waited out with a backoff; any other failure is a
        bug, logged with its traceback and tried again after the poll interval (raised,
        in burst mode).
        """
        try:
            drop_dead_connection()
            result = operation()
        except (DatabaseUnavailable, OperationalError, InterfaceError) as exc:
            connection.close()
            self._stop.wait(self._outage.failed(doing, exc))
            return None
        except Exception:
            if self.options.burst:  # a run meant to end: end it with the bug, not a loop
                raise
            logger.exception("Worker error while %s; trying again shortly", doing)
            connection.close()
            self._stop.wait(self.options.poll_interval)
            return None
        self._outage.succeeded()
        return result

    def _idle_wait(self) -> float:
        """Until the earliest known due time, a notification, or the poll interval (a
        second, while notifications come)."""
        interval = min(self.options.poll_interval, SCHEDULE_INTERVAL)
        if self._listening is not None and self._listening.listening:
            interval = max(interval, LISTENING_POLL_INTERVAL)
        free, rated = self._queues()
        due_in = self._guarded(
            "reading the next due time", lambda: self.store.next_due_in(queues=free)
        )
        for queue in rated:  # the due work of a queue out of tokens waits for its next one
            queue_due = self._guarded(
                "reading the next due time",
                functools.partial(self.store.next_due_in, queues=[queue]),
            )
            if queue_due is not None:
                queue_due = max(queue_due, self._rate_next.get(queue, 0.0) - time.monotonic())
                due_in = queue_due if due_in is None else min(due_in, queue_due)
        if due_in is None:
            return interval
        return min(interval, max(due_in, 0.01))

    def _listener(self) -> Listener | None:
        if not self.options.listen or self.options.burst or connection.vendor != "postgresql":
            return None
        from .listener import Listener  # psycopg: not needed by a project on SQLite

        listener = Listener(self.options.queues, self._wake.set, self._outage)
        listener.start()
        self._listening = listener
        return listener

    def _work(self) -> None:
        while True:
            claim = self._inbox.get()
            if claim is None:
                connection.close()
                return
            outcome = None
            try:
                outcome = self._run(claim)
            except Exception:
                logger.exception(
                    "Worker error execution=%s workflow=%s; the lease will expire and "
                    "another worker will take it over",
                    claim.execution_id,
                    claim.workflow,
                )
                connection.close()
            finally:
                if claim.limit_key is not None:  # its slot is free now: wake a waiting one
                    self._guarded(
                        "freeing a concurrency slot",
                        functools.partial(self.store.free_slots, [claim.limit_key]),
                    )
                with self._lock:
                    self._running.pop(claim.task_id, None)
                    self.processed += 1
                # More may be due (the last claim was full), or this suspension may now be
                # the earliest due time: let the main loop look again.
                if (
                    self._last_poll_full
                    or self.options.burst
                    or outcome is engine.Outcome.SUSPENDED
                ):
                    self._wake.set()

    def _run(self, claim: Claim) -> engine.Outcome | None:
        """Execute the claim; through an outage, wait and replay it on a fresh connection.

        Every write is fenced by the claim, so a replay goes on from the last committed
        checkpoint; if the lease ran out meanwhile, the first write says so. ``None``:
        the worker was asked to stop during the outage.
        """
        while True:
            drop_dead_connection()
            try:
                outcome = engine.execute(claim, self.store)
            except DatabaseUnavailable as exc:
                connection.close()
                if self._stop.wait(self._outage.failed("running %s" % claim.execution_id, exc)):
                    return None
                claim = replace(claim, fresh=False)  # some checkpoints may be written now
                continue
            self._outage.succeeded()
            return outcome

    def _heartbeat(self) -> None:
        opts = self.options
        interval = max(opts.orphan_timeout / 3, 0.05)
        next_prune = time.monotonic() + PRUNE_INTERVAL
        while not self._drained.wait(interval):
            with self._lock:
                tokens = list({c.token for c in self._running.values()})
            alive = self._guarded(
                "heartbeating",
                functools.partial(
                    self.store.heartbeat,
                    opts.worker_id,
                    tokens,
                    opts.orphan_timeout,
                    abandoned_threads(),
                ),
            )
            if alive is False:  # pruned while this process was frozen: come back
                self._guarded("registering again", self._register)
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_INTERVAL
                self._guarded("pruning dead workers", self._prune)
        connection.close()

    def _prune(self) -> None:
        pruned = self.store.prune_workers(get_settings().worker_retention)
        if pruned:
            logger.info("Deleted the rows of %d long-dead worker(s)", pruned)

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
            released = self._guarded(
                "releasing unfinished work",
                lambda: self.store.release(list({c.token for c in left}), None),
            )
            logger.warning(
                "Worker released %s unfinished execution(s) after the shutdown timeout: %s",
                "no" if released is None else released,
                ", ".join(c.execution_id for c in left),
            )
        for _ in range(self.options.concurrency):
            self._inbox.put(None)
        for thread in threads:  # idle threads close their connections and exit
            thread.join(timeout=0 if left else 1)
        self._guarded("deregistering", lambda: self.store.unregister_worker(self.options.worker_id))
