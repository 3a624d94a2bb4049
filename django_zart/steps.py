"""Durable step calls: replay a checkpoint, or run an attempt and checkpoint it.

A call is split into a pure planning part (no I/O), the attempt itself (sync or awaited),
and the recording part (one fenced write), so sync and async steps share every decision.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async

from . import serialization
from .conf import get_settings
from .context import ExecutionContext, Record, Suspend, current
from .errors import SerializationError, StepFailed
from .retry import Retry
from .states import AttemptStatus, StepKind, StepStatus

logger = logging.getLogger(__name__)


@dataclass
class Attempt:
    """An attempt about to run: where it is recorded and what came before it."""

    sequence: int
    position: str
    number: int
    earlier: tuple[tuple[int, str, str | None], ...]


class Step:
    """A checkpointed function; outside a workflow it is just the function."""

    def __init__(self, fn: Callable[..., Any], *, name: str, retry: Retry | None) -> None:
        self.fn = fn
        self.name = name
        self.retry = retry or Retry.none()
        self.is_async = asyncio.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return "<Step %s>" % self.name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = current.get()
        if ctx is None or ctx.step is not None:
            # Outside a workflow, or nested in another step (which is the durable unit).
            return self.fn(*args, **kwargs)
        if _in_event_loop():
            if not self.is_async:
                raise TypeError(
                    "Step %r is synchronous but was called from an async workflow; make it "
                    "'async def' or call it from a sync workflow." % self.name
                )
            return self._acall(ctx, args, kwargs)
        if self.is_async:
            return async_to_sync(self._acall)(ctx, args, kwargs)
        return self._call(ctx, args, kwargs)

    def _call(self, ctx: ExecutionContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        attempt = plan(ctx, self)
        while True:
            if isinstance(attempt, Replayed):
                return attempt.value
            ctx.step, ctx.attempt = self.name, attempt.number
            try:
                value = self.fn(*args, **kwargs)
            except Exception as exc:
                attempt = failed(ctx, self, attempt, exc)
            else:
                return succeeded(ctx, self, attempt, value)
            finally:
                ctx.step = None

    async def _acall(
        self, ctx: ExecutionContext, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        attempt = plan(ctx, self)
        while True:
            if isinstance(attempt, Replayed):
                return attempt.value
            ctx.step, ctx.attempt = self.name, attempt.number
            try:
                value = await self.fn(*args, **kwargs)
            except Exception as exc:
                ctx.step = None
                attempt = await sync_to_async(failed)(ctx, self, attempt, exc)
            else:
                ctx.step = None
                return await sync_to_async(succeeded)(ctx, self, attempt, value)


@dataclass
class Replayed:
    value: Any


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def plan(ctx: ExecutionContext, step: Step) -> Attempt | Replayed:
    """Decide from the checkpoints whether the call replays or runs (and which attempt)."""
    sequence, position = ctx.next_position(step.name)
    record = ctx.recorded(sequence, position, StepKind.STEP)
    if record is None:
        ctx.check_deadline()
        return Attempt(sequence, position, 1, ())
    if record.status == StepStatus.COMPLETED:
        return Replayed(serialization.decode(record.result))
    if record.status == StepStatus.FAILED:
        raise StepFailed(step.name, record.attempts, record.error or {})
    # RETRYING: the next attempt runs once its time has come.
    assert record.wake_at is not None
    if record.wake_at > ctx.now():
        raise Suspend(record.wake_at)
    ctx.check_deadline()
    return Attempt(sequence, position, record.attempts + 1, ())


def succeeded(ctx: ExecutionContext, step: Step, attempt: Attempt, value: Any) -> Any:
    settings = get_settings()
    what = "the result of step %r" % step.name
    try:
        encoded = serialization.encode(value, what)
        text = serialization.dumps(encoded, what, settings.max_payload_bytes)
    except SerializationError as exc:
        # Deterministic: no retry would return anything else.
        return give_up(ctx, step, attempt, exc)
    rows = attempt.earlier
    if attempt.number > 1:
        rows = (*rows, (attempt.number, AttemptStatus.SUCCEEDED, None))
    _write(ctx, step, attempt, StepStatus.COMPLETED, result=text, value=encoded, rows=rows)
    logger.info(
        "Step done execution=%s workflow=%s step=%s attempt=%d",
        ctx.claim.execution_id, ctx.claim.workflow, attempt.position, attempt.number,
    )
    return serialization.decode(encoded)


def failed(ctx: ExecutionContext, step: Step, attempt: Attempt, exc: Exception) -> Attempt:
    """Record a failed attempt; return the next one, or suspend until it is due."""
    delay = step.retry.next_delay(attempt.number)
    if delay is None:
        give_up(ctx, step, attempt, exc)
    assert delay is not None
    error = _error_text(exc)
    rows = (*attempt.earlier, (attempt.number, AttemptStatus.FAILED, error))
    logger.info(
        "Step attempt failed execution=%s workflow=%s step=%s attempt=%d retry_in=%.3fs",
        ctx.claim.execution_id, ctx.claim.workflow, attempt.position, attempt.number, delay,
    )
    if delay <= 0:
        return Attempt(attempt.sequence, attempt.position, attempt.number + 1, rows)
    wake_at = ctx.now() + timedelta(seconds=delay)
    point = ctx.checkpoint(
        attempt.sequence, attempt.position, step.name, StepKind.STEP, StepStatus.RETRYING,
        error=error, attempts=attempt.number, wake_at=wake_at, rows=rows,
    )
    raise Suspend(wake_at, point) from None


def give_up(ctx: ExecutionContext, step: Step, attempt: Attempt, exc: Exception) -> Any:
    error = _error_text(exc)
    rows = (*attempt.earlier, (attempt.number, AttemptStatus.FAILED, error))
    if attempt.number == 1:
        rows = ()  # the step row holds the only attempt's error
    record = _write(ctx, step, attempt, StepStatus.FAILED, error=error, rows=rows)
    logger.info(
        "Step failed execution=%s workflow=%s step=%s attempts=%d",
        ctx.claim.execution_id, ctx.claim.workflow, attempt.position, attempt.number,
    )
    raise StepFailed(step.name, attempt.number, record.error or {}) from exc


def _error_text(exc: BaseException) -> str:
    return serialization.dumps(
        serialization.describe_exception(exc), "an error", 10 * 1024 * 1024
    )


def _write(
    ctx: ExecutionContext,
    step: Step,
    attempt: Attempt,
    status: str,
    *,
    result: str | None = None,
    value: Any = None,
    error: str | None = None,
    rows: tuple[tuple[int, str, str | None], ...] = (),
) -> Record:
    point = ctx.checkpoint(
        attempt.sequence, attempt.position, step.name, StepKind.STEP, status,
        result=result, error=error, attempts=attempt.number, rows=rows,
    )
    return ctx.write(point, value)
