"""Run workflows in a project's own tests: in-process, on the real engine and database.

``run`` starts an execution and drives it on the calling thread until it finishes. Each
pass claims due work from the store and hands it to ``engine.execute``, as a worker
thread does, so a test exercises what production runs: checkpoints, replays, retries,
children and branches, on the test's database. There is nothing to mock, and no worker
to start or stop.

Nothing waits in real time. A ``Clock`` keeps the test's virtual time, which never runs
behind the database clock and, once moved ahead of it, stands still until moved again.
The engine judges every durable time by one reading, ``ExecutionContext.now``; while a
pass runs, the driver sets ``ExecutionContext.virtual_clock`` so that this reading is
the clock's (``None`` otherwise). Work is due when the clock reaches its ``run_after``;
the driver then makes it due by the database clock (``run_after`` now) and claims it, so
the claim itself is the production one. When nothing is due, ``run`` moves the clock to
the next due time (the end of a sleep, a retry delay, an event's deadline) and goes on:
the claim that follows runs exactly at that time, so the times it sets add up exactly,
however long the test takes in real time.

Only the driven execution and its children (``run_workflow``, ``start_workflow``, and
theirs) are run, whatever their queues: before each claim their due tasks move to a
queue of their own (``QUEUE``), and back to their executions' queues when the driver
stops. Other executions, those a step starts with ``zart.start`` among them, are left as
they are.

``crash_after`` stops the execution after a step's side effect and before its checkpoint
is written (``ExecutionContext.before_checkpoint``), as a worker killed there would stop,
then lets the claim's lease run out, so that the next pass takes the work over and replays
it: the step runs again, and the test can check that running it twice did no harm.

The hooks belong to the process, not to a thread: a real worker must not run in the same
process while a driver runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import F, OuterRef, Subquery
from django.db.models.functions import Now

from . import engine, serialization
from .client import start as start_execution
from .conf import get_settings
from .context import ExecutionContext
from .db import get_store
from .db.types import Checkpoint, Claim
from .durations import Duration, to_seconds
from .errors import ExecutionNotFound, InvalidArgument
from .events import send_event
from .models import Execution, Step, Task
from .registry import Workflow
from .states import TERMINAL, ExecutionStatus, StepKind, StepStatus

__all__ = ["QUEUE", "Clock", "Driver", "Result", "Stuck", "Wait", "drive", "run", "start"]

QUEUE = "django_zart.testing"
"""The queue a driver claims from: it moves the due tasks of its executions there first."""

DEFAULT_MAX_PASSES = 1000

_FOREVER = datetime.max.replace(tzinfo=UTC)


class SimulatedCrash(BaseException):
    """Stops an execution at a ``crash_after`` step, as a killed worker would stop.

    A ``BaseException``, like the engine's own signals: a workflow's ``except Exception``
    must not swallow it.
    """

    def __init__(self, position: str) -> None:
        super().__init__(position)
        self.position = position


@dataclass(frozen=True)
class Wait:
    """Something an unfinished execution waits for."""

    execution_id: str
    kind: str
    """``"event"``, ``"sleep"``, ``"retry"``, ``"child"``, ``"branches"`` or ``"paused"``."""
    name: str
    """The event's name, the sleep's or the step's position, the child's execution id,
    the group's position, or the pause rule's id."""
    until: datetime | None = None
    """When it ends by itself (virtual time), if it does."""

    def __str__(self) -> str:
        return "execution %r %s" % (self.execution_id, self.phrase())

    def phrase(self) -> str:
        """What it waits for, without the execution: "waits for event 'decision'"."""
        until = "" if self.until is None else " until %s" % self.until.isoformat()
        return {
            "event": "waits for event %r%s" % (self.name, until or ", without a timeout"),
            "sleep": "sleeps in %r%s" % (self.name, until),
            "retry": "retries step %r%s" % (self.name, until.replace(" until", " at")),
            "child": "waits for child execution %r" % self.name,
            "branches": "waits for the branches of %r" % self.name,
            "paused": "is held by pause rule %s" % self.name,
        }.get(self.kind, "waits for %s %r%s" % (self.kind, self.name, until))


@dataclass(frozen=True)
class Result:
    """The execution as a driver left it."""

    execution: Execution
    passes: int
    """Claims executed: passes of the engine over the execution, its children and branches."""
    crashes: tuple[str, ...] = ()
    """Positions of the steps where ``crash_after`` stopped the execution."""
    undelivered_events: tuple[str, ...] = ()
    """Names of scripted events the execution never waited for."""

    @property
    def execution_id(self) -> str:
        return self.execution.pk

    @property
    def status(self) -> str:
        return self.execution.status

    @property
    def output(self) -> Any:
        """The decoded output of a completed execution; ``None`` otherwise."""
        if self.execution.status != ExecutionStatus.COMPLETED:
            return None
        return serialization.decode(self.execution.output)

    @property
    def error(self) -> dict[str, Any] | None:
        """The stored error of a failed or cancelled execution."""
        error: dict[str, Any] | None = self.execution.error
        return error


class Stuck(AssertionError):
    """The execution cannot finish: it waits for what nothing will bring (an event that
    was not sent, a pause rule, a clock that does not move by itself), or it was still
    running after ``max_passes`` claims.

    An ``AssertionError``, so that test runners report a failure of the test, not an
    error in it. ``waits`` says what it waits for; ``result``, where it stands.
    """

    def __init__(self, message: str, *, waits: list[Wait], result: Result) -> None:
        super().__init__(message)
        self.waits = waits
        self.result = result


class Clock:
    """A test's virtual time. It never runs behind the database clock, and once moved
    ahead of it, it stands still until it is moved again.

    ``start`` sets the time it reads first (not in the past: the database stamps work
    that is due at once with its own time, which the clock must not run behind). With
    ``auto`` (the default), ``run`` and ``Driver.finish`` move it to the next due time
    whenever nothing else can happen; without, only ``advance`` moves it.
    """

    def __init__(self, start: datetime | None = None, *, auto: bool = True) -> None:
        if start is not None and (not isinstance(start, datetime) or start.tzinfo is None):
            raise InvalidArgument("Clock(start=...) needs an aware datetime, not %r." % (start,))
        self.auto = auto
        self._at = start
        self._checked = start is None

    def __repr__(self) -> str:
        at = "the database clock" if self._at is None else self._at.isoformat()
        return "<Clock at %s auto=%s>" % (at, self.auto)

    def _moved_to(self) -> datetime | None:
        """Where the clock was last moved to, if anywhere."""
        if not self._checked:
            self._checked = True
            if self._at is not None and self._at < get_store().now():
                start, self._at = self._at, None
                raise InvalidArgument(
                    "Clock(start=%s) is in the past; a virtual clock may only run ahead of "
                    "the database's." % start.isoformat()
                )
        return self._at

    def reading(self, db_now: datetime) -> datetime:
        """The virtual time when the database clock reads ``db_now``."""
        at = self._moved_to()
        return db_now if at is None or at < db_now else at

    def now(self) -> datetime:
        """The virtual time now."""
        return self.reading(get_store().now())

    @property
    def offset(self) -> timedelta:
        """How far the clock is ahead of the database's now."""
        db_now = get_store().now()
        return self.reading(db_now) - db_now

    def advance(self, duration: Duration) -> None:
        """Move the clock forward by ``duration``, running nothing (``Driver.advance``
        runs what comes due meanwhile)."""
        self._at = self.now() + timedelta(seconds=to_seconds(duration))

    def advance_to(self, when: datetime) -> bool:
        """Move the clock to ``when`` unless it is there already; whether it moved."""
        if when <= self.now():
            return False
        self._at = when
        return True


Events = Mapping[str, Any] | Iterable[tuple[str, Any]]


class Driver:
    """Drives one execution, and its child executions, on the calling thread.

    ``advance`` runs what is due (after moving the clock, if asked), ``send_event`` sends
    an event, ``finish`` runs to the end; ``waits`` and ``result`` say where it stands.
    """

    def __init__(
        self,
        execution_id: str,
        *,
        events: Events | None = None,
        crash_after: str | Iterable[str] | None = None,
        clock: Clock | None = None,
        max_passes: int = DEFAULT_MAX_PASSES,
    ) -> None:
        if isinstance(max_passes, bool) or not isinstance(max_passes, int) or max_passes < 1:
            raise InvalidArgument("max_passes must be a positive int, not %r." % (max_passes,))
        self.execution_id = execution_id
        self.clock = clock or Clock()
        self.max_passes = max_passes
        self.passes = 0
        self.crashes: list[str] = []
        self._events = _scripted(events)
        self._crash_at = {crash_after} if isinstance(crash_after, str) else set(crash_after or ())
        self._store = get_store()
        self._tree: list[str] = []
        self._adopt([execution_id])

    def __repr__(self) -> str:
        return "<Driver %s passes=%d>" % (self.execution_id, self.passes)

    # -- what a test reads -----------------------------------------------------------

    @property
    def execution(self) -> Execution:
        return Execution.objects.get(pk=self.execution_id)

    @property
    def status(self) -> str:
        return self.execution.status

    @property
    def result(self) -> Result:
        return Result(
            execution=self.execution,
            passes=self.passes,
            crashes=tuple(self.crashes),
            undelivered_events=tuple(name for name, _ in self._events),
        )

    @property
    def waits(self) -> list[Wait]:
        """What the unfinished executions of the run wait for, the driven one first."""
        return _waits(self.execution_id, self._tree)

    # -- what a test does ------------------------------------------------------------

    def send_event(
        self, name: str, payload: Any = None, *, execution_id: str | None = None
    ) -> bool:
        """``zart.send_event`` to the driven execution (or to one it started); it runs at
        the next ``advance`` or ``finish``."""
        return bool(send_event(execution_id or self.execution_id, name, payload))

    def advance(self, duration: Duration | None = None) -> None:
        """Run what is due; then, with ``duration``, let that much virtual time pass.

        Within ``duration``, due times come in their order, each running what it makes
        due (a sleep that ends, then the deadline of the wait after it) before the next;
        then the clock stands at the end of ``duration``, whatever ``Clock.auto`` says.
        Scripted events are sent whenever the execution waits for them.
        """
        seconds = None if duration is None else to_seconds(duration)
        self._drive(horizon=None)
        if seconds is not None:
            end = self.clock.now() + timedelta(seconds=seconds)
            self._drive(horizon=end)
            self.clock.advance_to(end)

    def finish(self) -> Result:
        """Run to the end: every execution of the run finished or waiting for good.

        Raises ``Stuck`` if the driven execution has not finished then, and
        ``AssertionError`` if a ``crash_after`` step was never reached (a misspelt name
        would otherwise let an idempotency test pass without crashing anything).
        """
        self._drive(horizon=_FOREVER if self.clock.auto else None)
        result = self.result
        if not result.execution.is_finished:
            raise self._stuck(result, "nothing more is due")
        if self._crash_at:
            raise AssertionError(
                "crash_after named %s, which execution %r never checkpointed."
                % (", ".join(repr(name) for name in sorted(self._crash_at)), self.execution_id)
            )
        return result

    # -- driving -----------------------------------------------------------------------

    def _drive(self, *, horizon: datetime | None) -> None:
        """Claim and execute, send scripted events, move the clock up to ``horizon``
        (``None``: not at all), until none of it can be done."""
        passes = 0
        try:
            while True:
                claim = self._claim_due()
                if claim is not None:
                    if passes == self.max_passes:
                        self._store.release([claim.token], [claim.task_id])
                        raise self._stuck(
                            self.result,
                            "still running after max_passes=%d claims, a loop that never "
                            "ends?" % self.max_passes,
                        )
                    passes += 1
                    self._execute(claim)
                elif not (self._deliver() or self._jump(horizon)):
                    return
        finally:
            self._restore_queues()

    def _claim_due(self) -> Claim | None:
        """Make the run's work that is due by the virtual clock due now, in ``QUEUE``,
        and claim one task of it."""
        Task.objects.filter(
            execution_id__in=self._tree,
            held_by__isnull=True,
            paused_by__isnull=True,
            run_after__lte=self.clock.now(),
        ).update(run_after=Now(), queue=QUEUE)
        lease = get_settings().orphan_timeout
        claims = self._store.claim(queues=[QUEUE], limit=1, lease=lease)
        if not claims:  # work under a concurrency limit is claimed apart, within its limit
            claims = self._store.claim_limited(queues=[QUEUE], limit=1, lease=lease)
        return claims[0] if claims else None

    def _execute(self, claim: Claim) -> None:
        self.passes += 1
        try:
            with self._hooks():
                engine.execute(claim, self._store)
        except SimulatedCrash as crash:
            self.crashes.append(crash.position)
            # The dead worker's lease runs out: the next claim takes its work over.
            expired = self._store.now() - timedelta(seconds=1)
            Task.objects.filter(held_by=claim.token).update(lease_until=expired)
        self._adopt(self._started_by_run())

    @contextmanager
    def _hooks(self) -> Iterator[None]:
        hooked = ExecutionContext
        clock, crash = hooked.virtual_clock, hooked.before_checkpoint
        hooked.virtual_clock = lambda claim: self.clock.reading(claim.db_now)
        hooked.before_checkpoint = self._crash_point if self._crash_at else None
        try:
            yield
        finally:
            hooked.virtual_clock, hooked.before_checkpoint = clock, crash

    def _crash_point(self, point: Checkpoint) -> None:
        if point.kind != StepKind.STEP:
            return
        for name in (point.position, point.name):
            if name in self._crash_at:
                self._crash_at.discard(name)
                raise SimulatedCrash(point.position)

    def _deliver(self) -> bool:
        """Send the first scripted event the driven execution now waits for."""
        if not self._events:
            return False
        waiting = set(
            Step.objects.filter(
                execution_id=self.execution_id,
                run_index=F("execution__run_index"),
                kind=StepKind.EVENT,
                status=StepStatus.WAITING,
            )
            .exclude(execution__status__in=TERMINAL)
            .values_list("name", flat=True)
        )
        for index, (name, payload) in enumerate(self._events):
            if name in waiting:
                del self._events[index]
                send_event(self.execution_id, name, payload)
                return True
        return False

    def _jump(self, horizon: datetime | None) -> bool:
        """Move the clock to the run's next due time, if there is one ahead and before
        ``horizon``."""
        if horizon is None:
            return False
        due = (
            Task.objects.filter(
                execution_id__in=self._tree,
                held_by__isnull=True,
                paused_by__isnull=True,
                run_after__isnull=False,
            )
            .order_by("run_after")
            .values_list("run_after", flat=True)
            .first()
        )
        return due is not None and due <= horizon and self.clock.advance_to(due)

    def _started_by_run(self) -> list[str]:
        """Children of the run's executions started since the last look."""
        return list(
            Execution.objects.filter(parent_id__in=self._tree)
            .exclude(pk__in=self._tree)
            .values_list("pk", flat=True)
        )

    def _adopt(self, execution_ids: list[str]) -> None:
        """Drive these executions too.

        Their deadlines were set by the database clock when they were created: they move
        by how far the virtual clock was ahead of it then (it has not moved since).
        """
        if not execution_ids:
            return
        self._tree.extend(execution_ids)
        timed = Execution.objects.filter(pk__in=execution_ids, deadline_at__isnull=False)
        for pk, created_at in timed.values_list("pk", "created_at"):
            ahead = self.clock.reading(created_at) - created_at
            if ahead:
                Execution.objects.filter(pk=pk).update(deadline_at=F("deadline_at") + ahead)

    def _restore_queues(self) -> None:
        queue = Execution.objects.filter(pk=OuterRef("execution_id")).values("queue")[:1]
        Task.objects.filter(execution_id__in=self._tree, queue=QUEUE).update(queue=Subquery(queue))

    def _stuck(self, result: Result, why: str) -> Stuck:
        waits = self.waits
        described = [
            "it " + wait.phrase() if wait.execution_id == self.execution_id else str(wait)
            for wait in waits
        ]
        lines = [
            "Execution %r cannot finish (%s): %s."
            % (self.execution_id, why, "; ".join(described) or "it waits for nothing recorded"),
            "Its status is %s." % result.status,
        ]
        if not self.clock.auto and any(w.until is not None for w in waits):
            lines.append("The clock does not move by itself (Clock(auto=False)): advance it.")
        if any(w.kind == "event" for w in waits):
            lines.append("Send events with run(..., events={name: payload}) or send_event().")
        if self._events:
            names = ", ".join(repr(name) for name, _ in self._events)
            lines.append("Scripted events it never waited for: %s." % names)
        return Stuck(" ".join(lines), waits=waits, result=result)


# -- entry points ----------------------------------------------------------------------


def start(
    workflow: str | Workflow,
    input: Any = None,
    *,
    execution_id: str | None = None,
    events: Events | None = None,
    crash_after: str | Iterable[str] | None = None,
    clock: Clock | None = None,
    max_passes: int = DEFAULT_MAX_PASSES,
) -> Driver:
    """``zart.start`` the workflow and return a ``Driver`` for it; nothing runs yet."""
    started = start_execution(workflow, input, execution_id=execution_id)
    return Driver(
        started, events=events, crash_after=crash_after, clock=clock, max_passes=max_passes
    )


def drive(
    execution_id: str,
    *,
    events: Events | None = None,
    crash_after: str | Iterable[str] | None = None,
    clock: Clock | None = None,
    max_passes: int = DEFAULT_MAX_PASSES,
) -> Driver:
    """A ``Driver`` for an execution started elsewhere (by a view under test, say)."""
    if not Execution.objects.filter(pk=execution_id).exists():
        raise ExecutionNotFound(execution_id)
    return Driver(
        execution_id, events=events, crash_after=crash_after, clock=clock, max_passes=max_passes
    )


def run(
    workflow: str | Workflow,
    input: Any = None,
    *,
    execution_id: str | None = None,
    events: Events | None = None,
    crash_after: str | Iterable[str] | None = None,
    clock: Clock | None = None,
    max_passes: int = DEFAULT_MAX_PASSES,
) -> Result:
    """Start the workflow and run it to its end in this thread; return the ``Result``.

    ``events``: ``{name: payload}`` or ``[(name, payload), ...]``, each sent when the
    execution waits for an event of that name (before any deadline of that wait).
    ``crash_after``: a step's name or position (or several), where the execution stops
    once, after the step ran and before its checkpoint is written, and is then taken
    over and replayed. ``clock``: the virtual clock (a new one by default). Raises
    ``Stuck`` if the execution cannot finish.
    """
    driver = start(
        workflow,
        input,
        execution_id=execution_id,
        events=events,
        crash_after=crash_after,
        clock=clock,
        max_passes=max_passes,
    )
    return driver.finish()


# -- helpers ---------------------------------------------------------------------------


def _scripted(events: Events | None) -> list[tuple[str, Any]]:
    if events is None:
        return []
    if isinstance(events, Mapping):
        return list(events.items())
    scripted = []
    for item in events:
        if not isinstance(item, tuple) or len(item) != 2 or not isinstance(item[0], str):
            raise InvalidArgument(
                "events takes {name: payload} or [(name, payload), ...], not %r." % (item,)
            )
        scripted.append(item)
    return scripted


_WAIT_KINDS: dict[tuple[str, str], str] = {
    (StepKind.EVENT, StepStatus.WAITING): "event",
    (StepKind.SLEEP, StepStatus.WAITING): "sleep",
    (StepKind.STEP, StepStatus.RETRYING): "retry",
    (StepKind.BRANCH, StepStatus.RETRYING): "retry",
    (StepKind.CHILD, StepStatus.SCHEDULED): "child",
    (StepKind.GROUP, StepStatus.WAITING): "branches",
}


def _waits(root: str, tree: list[str]) -> list[Wait]:
    unfinished = set(
        Execution.objects.filter(pk__in=tree)
        .exclude(status__in=TERMINAL)
        .values_list("pk", flat=True)
    )
    order: Callable[[str], int] = {pk: index for index, pk in enumerate(tree)}.__getitem__
    paused = [
        Wait(execution_id, "paused", str(rule))
        for execution_id, rule in Task.objects.filter(
            execution_id__in=unfinished, paused_by__isnull=False
        )
        .order_by("pk")
        .values_list("execution_id", "paused_by_id")
    ]
    rows = (
        Step.objects.filter(
            execution_id__in=unfinished,
            run_index=F("execution__run_index"),
            status__in=[StepStatus.WAITING, StepStatus.RETRYING, StepStatus.SCHEDULED],
        )
        .order_by("pk")
        .values_list("execution_id", "kind", "status", "name", "position", "result", "wake_at")
    )
    waits = []
    for execution_id, kind, status, name, position, result, wake_at in rows:
        what = _WAIT_KINDS.get((kind, status))
        if what is None:
            continue  # a branch still to run: its group is the wait
        label = {"event": name, "child": (result or {}).get("id", position)}.get(what, position)
        waits.append(Wait(execution_id, what, label, wake_at))
    return sorted(
        itertools.chain(paused, waits),
        key=lambda wait: (wait.execution_id != root, order(wait.execution_id)),
    )
