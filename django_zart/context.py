"""The execution a worker thread is running, found through a ``ContextVar``.

No context object is threaded through user code: step calls and ``zart.context()`` find
the current execution here. The control-flow exceptions below derive from
``BaseException`` so that a workflow's ``except Exception:`` cannot swallow them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .db.types import Checkpoint
from .errors import DuplicateStepName, NonDeterminismError, NotInWorkflow, ZartError

if TYPE_CHECKING:
    from .db.base import Store
    from .db.types import Claim


class Suspend(BaseException):
    """The body cannot go on before ``wake_at`` (``None``: before an event arrives).

    ``checkpoint``, if any, is written in the same transaction that releases the
    execution (a sleep's or a wait's ``WAITING`` row, a failed attempt's ``RETRYING``):
    one commit, and no state where one exists without the other.
    """

    def __init__(self, wake_at: datetime | None, checkpoint: Checkpoint | None = None) -> None:
        self.wake_at = wake_at
        self.checkpoint = checkpoint


class LeaseLost(BaseException):
    """Another worker holds the execution now; this one must stop without writing."""


class Abort(BaseException):
    """Fail the execution at once with ``error``, bypassing workflow retries."""

    def __init__(self, error: ZartError) -> None:
        self.error = error


@dataclass
class Record:
    """A checkpoint of the current run, as loaded or just written."""

    step_id: int
    sequence: int
    position: str
    name: str
    kind: str
    status: str
    result: Any
    error: dict[str, Any] | None
    attempts: int
    wake_at: datetime | None


@dataclass(frozen=True)
class WorkflowInfo:
    """What ``zart.context()`` tells a running workflow or step."""

    execution_id: str
    workflow: str
    run: int
    attempt: int
    """Inside a step, that step's attempt (1 for the first try); otherwise the run."""
    step: str | None


@dataclass
class ExecutionContext:
    claim: Claim
    store: Store
    loaded: list[Record]
    records: dict[int, Record] = field(init=False)
    """Checkpoints of auto-named calls, by sequence (their order among such calls)."""
    by_position: dict[str, Record] = field(init=False)
    sequence: int = 0
    occurrences: dict[str, int] = field(default_factory=dict)
    explicit_seen: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)

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
        """The database clock, read at claim time and advanced by the monotonic clock."""
        return self.claim.db_now + timedelta(seconds=time.monotonic() - self.started)

    def next_position(self, name: str, *, explicit: bool = False) -> tuple[int, str]:
        """Allocate the next durable call's sequence number and position key.

        Auto-named calls are numbered in call order and a repeated name gets an
        occurrence suffix (``name#2``), so loops just work. Explicitly named calls
        (templates, ``with_id``) take sequence 0: they are found by name alone, which
        survives reordering, and a name may occur once per run.
        """
        if explicit:
            if name in self.explicit_seen:
                raise Abort(DuplicateStepName(self.claim.execution_id, name))
            self.explicit_seen.add(name)
            return 0, name
        self.sequence += 1
        count = self.occurrences.get(name, 0) + 1
        self.occurrences[name] = count
        return self.sequence, name if count == 1 else "%s#%d" % (name, count)

    def recorded(self, sequence: int, position: str, kind: str) -> Record | None:
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
        )
        self.remember(record)
        return record

    def claim_event(self, sequence: int, position: str, name: str) -> tuple[Any] | None:
        """Consume the oldest waiting event ``name`` into a checkpoint.

        Returns ``(payload,)`` (the payload may well be ``None``), or ``None`` if no such
        event is waiting.
        """
        from .states import StepKind, StepStatus

        point = self.checkpoint(sequence, position, name, StepKind.EVENT, StepStatus.COMPLETED)
        taken = self.store.consume_event(self.claim, point, name)
        if taken is None:
            return None
        step_id, payload = taken
        self.remember_point(step_id, point, payload)
        return (payload,)

    def checkpoint(
        self,
        sequence: int,
        position: str,
        name: str,
        kind: str,
        status: str,
        *,
        result: str | None = None,
        error: str | None = None,
        attempts: int = 1,
        wake_at: datetime | None = None,
        rows: tuple[tuple[int, str, str | None], ...] = (),
    ) -> Checkpoint:
        return Checkpoint(
            sequence=sequence,
            position=position,
            name=name,
            kind=kind,
            status=status,
            result=result,
            error=error,
            attempts=attempts,
            wake_at=wake_at,
            at=self.now(),
            attempt_rows=rows,
        )

    def check_deadline(self) -> None:
        from .errors import ExecutionTimedOut

        deadline = self.claim.deadline_at
        if deadline is not None and self.now() >= deadline:
            raise Abort(ExecutionTimedOut(self.claim.execution_id, self.claim.timeout or 0))


current: ContextVar[ExecutionContext | None] = ContextVar("zart_execution", default=None)

_step_scope: ContextVar[tuple[str, int] | None] = ContextVar("zart_step", default=None)
"""The running step attempt. A context variable, not a field of the shared execution
context: steps gathered in one event loop each run in their own asyncio task."""


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
