"""The execution a worker thread is running, found through a ``ContextVar``.

No context object is threaded through user code: step calls and ``zart.context()`` find
the current execution here. The control-flow exceptions below derive from
``BaseException`` so that a workflow's ``except Exception:`` cannot swallow them.

Durable calls are numbered when they are made. In an ``async def`` workflow, tasks the
body creates (``asyncio.gather``, ``create_task``, task groups) each get a *lane*,
numbered in creation order, and the calls a lane makes are numbered within it: so the
calls of ``gather(pipeline(a), pipeline(b))`` find their own checkpoints on replay, in
whatever order the original calls happened to finish.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from asgiref.sync import async_to_sync
from django.dispatch import Signal

from . import signals
from .db.types import Checkpoint, Claim, Record
from .errors import (
    DuplicateStepName,
    ExecutionTimedOut,
    NonDeterminismError,
    NotInWorkflow,
    ZartError,
)

if TYPE_CHECKING:
    from .db.base import Store

Lane = tuple[int, ...]


class Suspend(BaseException):
    """The body cannot go on before ``wake_at`` (``None``: before an event arrives).

    ``checkpoint``, if any, is written in the same transaction that releases the
    execution (a sleep's or a wait's ``WAITING`` row, a failed attempt's ``RETRYING``):
    one commit, and no state where one exists without the other.
    """

    def __init__(self, wake_at: datetime | None, checkpoint: Checkpoint | None = None) -> None:
        self.wake_at = wake_at
        self.checkpoint = checkpoint


class Pause(Suspend):
    """A pause rule holds the execution (or branch) before its next attempt: released
    under ``rule_id``, it is due again when the rule ends."""

    def __init__(self, rule_id: int) -> None:
        super().__init__(None)
        self.rule_id = rule_id


class Abort(BaseException):
    """Fail the execution at once with ``error``, bypassing workflow retries."""

    def __init__(self, error: ZartError) -> None:
        self.error = error


@dataclass(frozen=True)
class WorkflowInfo:
    """What ``zart.context()`` tells a running workflow or step."""

    execution_id: str
    workflow: str
    run: int
    attempt: int
    """Inside a step, that step's attempt (1 for the first try); otherwise the run."""
    step: str | None


@dataclass(eq=False)
class ExecutionContext:
    claim: Claim
    store: Store
    loaded: list[Record]
    deadline: datetime | None = None
    """When the execution times out (none while its failure handler runs)."""
    timeout: float | None = None
    records: dict[int, Record] = field(init=False)
    """Checkpoints of auto-named calls of the main lane, by sequence."""
    by_position: dict[str, Record] = field(init=False)
    sequence: int = 0
    occurrences: dict[tuple[Lane, str], int] = field(default_factory=dict)
    lanes: dict[Lane, int] = field(default_factory=dict)
    explicit_seen: set[str] = field(default_factory=set)

    # Hooks for django_zart.testing. Both are None in production, where each costs one
    # attribute read; a test driver sets them only while it runs a claim in its thread.
    virtual_clock: ClassVar[Callable[[Claim], datetime] | None] = None
    """The durable clock of a claim, read by ``now`` in place of the database's: a test's
    virtual time, which it moves ahead of the database's as it pleases. What the engine
    records from it (wake times, deadlines, checkpoint times) is then virtual time too."""
    before_checkpoint: ClassVar[Callable[[Checkpoint], None] | None] = None
    """Called with each checkpoint once it is made and before it is written, that is
    after the call's side effect: a test raises there to stop the execution as a worker
    killed at that instant would (``testing.run(crash_after=...)``)."""

    def __post_init__(self) -> None:
        self.records = {r.sequence: r for r in self.loaded if r.sequence}
        self.by_position = {r.position: r for r in self.loaded}

    @property
    def step(self) -> str | None:
        """The step whose attempt runs in this thread or task, if any."""
        scope = _step_scope.get()
        return None if scope is None else scope[0]

    @property
    def attempt(self) -> int:
        scope = _step_scope.get()
        return 0 if scope is None else scope[1]

    def now(self) -> datetime:
        """The database clock, read when the claim was taken, advanced by the monotonic
        clock since (an outage replayed on the same claim keeps counting).

        Every durable time is judged by this one reading (sleeps, event deadlines, retry
        delays, the workflow's timeout), so ``virtual_clock`` moves all of them at once.
        """
        virtual = ExecutionContext.virtual_clock
        if virtual is not None:
            return virtual(self.claim)
        elapsed = time.monotonic() - self.claim.clock_origin
        return self.claim.db_now + timedelta(seconds=elapsed)

    def next_position(self, name: str, *, explicit: bool = False) -> tuple[int, str]:
        """Allocate the next durable call's sequence number and position key.

        Auto-named calls of the main lane are numbered in call order and a repeated name
        gets an occurrence suffix (``name#2``), so loops just work. Calls of another lane
        carry it (``name@1.2``) and take sequence 0, like explicitly named calls
        (templates, ``with_id``): those are found by position alone, which survives
        reordering, and an explicit name may occur once per run.
        """
        if explicit:
            if name in self.explicit_seen:
                raise Abort(DuplicateStepName(self.claim.execution_id, name))
            self.explicit_seen.add(name)
            return 0, name
        lane = _lane.get()
        count = self.occurrences.get((lane, name), 0) + 1
        self.occurrences[(lane, name)] = count
        position = name if count == 1 else "%s#%d" % (name, count)
        if lane:
            return 0, "%s@%s" % (position, ".".join(map(str, lane)))
        self.sequence += 1
        return self.sequence, position

    def next_lane(self, parent: Lane) -> Lane:
        number = self.lanes.get(parent, 0) + 1
        self.lanes[parent] = number
        return (*parent, number)

    def recorded(
        self, sequence: int, position: str, kind: str, call_hash: str = ""
    ) -> Record | None:
        """The checkpoint at this position, after checking the history agrees."""
        record = self.records.get(sequence) if sequence else None
        if record is None:
            record = self.by_position.get(position)
            if record is None:
                return None
        if record.position != position or record.kind != kind or record.sequence != sequence:
            raise Abort(
                NonDeterminismError(
                    self.claim.execution_id,
                    sequence,
                    "%s %r (at position %d)"
                    % (record.kind.lower(), record.position, record.sequence),
                    "%s %r" % (kind.lower(), position),
                )
            )
        if call_hash and record.call_hash and call_hash != record.call_hash:
            raise Abort(
                NonDeterminismError(
                    self.claim.execution_id,
                    sequence,
                    "%s %r called with arguments #%s" % (kind.lower(), position, record.call_hash),
                    "it with other arguments (#%s)" % call_hash,
                )
            )
        return record

    def remember(self, record: Record) -> None:
        if record.sequence:
            self.records[record.sequence] = record
        self.by_position[record.position] = record

    def write(self, point: Checkpoint, value: Any = None) -> Record:
        """Commit one checkpoint (fenced by the claim) and remember it for this replay.

        ``value`` is the encoded result, kept so the in-memory record needs no parsing.
        """
        step_id = self.store.record(self.claim, point)
        return self.remember_point(step_id, point, value)

    def announce(self, signal: Signal, **kwargs: Any) -> None:
        """Send ``signal`` about this execution once what was just written is committed."""
        signals.send_on_commit(
            signal, self.claim.workflow, execution_id=self.claim.execution_id, **kwargs
        )

    def remember_point(self, step_id: int, point: Checkpoint, value: Any = None) -> Record:
        record = Record(
            step_id=step_id,
            sequence=point.sequence,
            position=point.position,
            name=point.name,
            kind=point.kind,
            status=point.status,
            result=value,
            error=None if point.error is None else json.loads(point.error),
            attempts=point.attempts,
            wake_at=point.wake_at,
            call_hash=point.call_hash,
        )
        self.remember(record)
        return record

    def checkpoint(
        self, sequence: int, position: str, name: str, kind: str, status: str, **fields: Any
    ) -> Checkpoint:
        """A checkpoint of this run, stamped with the durable clock."""
        point = Checkpoint(
            sequence=sequence,
            position=position,
            name=name,
            kind=kind,
            status=status,
            at=self.now(),
            **fields,
        )
        hook = ExecutionContext.before_checkpoint
        if hook is not None:
            hook(point)
        return point

    def check_deadline(self) -> None:
        if self.deadline is not None and self.now() >= self.deadline:
            raise Abort(ExecutionTimedOut(self.claim.execution_id, self.timeout or 0))


current: ContextVar[ExecutionContext | None] = ContextVar("zart_execution", default=None)

_step_scope: ContextVar[tuple[str, int] | None] = ContextVar("zart_step", default=None)
"""The running step attempt. A context variable, not a field of the shared execution
context: steps gathered in one event loop each run in their own asyncio task."""

_lane: ContextVar[Lane] = ContextVar("zart_lane", default=())
"""The asyncio task of the workflow body this code runs in; ``()`` is the body itself."""


@contextmanager
def in_step(name: str, attempt: int) -> Iterator[None]:
    token = _step_scope.set((name, attempt))
    try:
        yield
    finally:
        _step_scope.reset(token)


def in_event_loop() -> bool:
    """Whether this thread runs an event loop: durable calls then return awaitables."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_async_body(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
    """Run an ``async def`` workflow body to its end, numbering the tasks it creates."""

    async def body() -> Any:
        loop = asyncio.get_running_loop()
        previous = loop.get_task_factory()
        loop.set_task_factory(_lane_task)  # type: ignore[arg-type]
        try:
            return await fn(*args)
        finally:
            loop.set_task_factory(previous)

    return async_to_sync(body)()


def _lane_task(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any],
    *,
    context: contextvars.Context | None = None,
) -> asyncio.Task[Any]:
    """A task factory: a task the workflow body creates is a new lane.

    Tasks created inside a step attempt (a step's own timeout, its own gather) are not
    durable calls' lanes: they run only when the attempt runs, never on replay.
    """
    task_context = context.copy() if context is not None else contextvars.copy_context()
    ctx = current.get()
    if ctx is not None and _step_scope.get() is None:
        task_context.run(_lane.set, ctx.next_lane(_lane.get()))
    return asyncio.Task(coro, loop=loop, context=task_context)


def require(function: str) -> ExecutionContext:
    ctx = current.get()
    if ctx is None:
        raise NotInWorkflow(function)
    return ctx


def require_body(function: str) -> ExecutionContext:
    """The context, for durable calls that only the workflow body may make."""
    ctx = require(function)
    if ctx.step is not None:
        raise ZartError(
            "zart.%s() was called inside step %r; call it from the workflow body, where it "
            "is checkpointed." % (function, ctx.step)
        )
    return ctx


def context() -> WorkflowInfo:
    """Who is running: execution id, workflow name, run index and attempt."""
    ctx = require("context")
    return WorkflowInfo(
        execution_id=ctx.claim.execution_id,
        workflow=ctx.claim.workflow,
        run=ctx.claim.run_index,
        attempt=ctx.attempt if ctx.step is not None else ctx.claim.run_index,
        step=ctx.step,
    )
