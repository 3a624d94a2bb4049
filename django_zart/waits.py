"""Durable calls other than steps: sleeping, waiting for events, recording values.

Each is checkpointed at its own position, like a step. A sleep or a wait that cannot go
on yet records when it may (``wake_at``) and suspends the execution: no thread waits.
In an ``async def`` workflow, await them: ``await zart.sleep("cool-off", "1h")``. Either
way the call takes its position when it is made, not when it is awaited.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async

from . import faults, serialization
from .conf import get_settings
from .context import ExecutionContext, Suspend, in_event_loop, require_body
from .durations import Duration, to_seconds
from .errors import EventTimeout, InvalidArgument
from .names import check_name
from .states import StepKind, StepStatus


def _number(function: str, name: str) -> tuple[ExecutionContext, int, str]:
    """The context and the call's position, allocated now, in call order."""
    check_name(name, "The name given to zart.%s()" % function)
    ctx = require_body(function)
    sequence, position = ctx.next_position(name)
    return ctx, sequence, position


def _sync_or_async(function: Callable[..., Any], *args: Any) -> Any:
    """Run now in a sync workflow; return an awaitable in an async one (ORM off the loop)."""
    if in_event_loop():
        return sync_to_async(function)(*args)
    return function(*args)


def _write(ctx: ExecutionContext, point: Any, value: Any = None) -> None:
    with faults.around_checkpoint(point.kind):
        ctx.write(point, value)


# -- sleeping ------------------------------------------------------------------------


def sleep(name: str, duration: Duration) -> Any:
    """Suspend the execution for ``duration``, durably; a replay after waking goes on.

    The wake time is fixed when the workflow first reaches the sleep, by the database
    clock, so a crash or a redeploy while sleeping neither shortens nor restarts it.
    """
    seconds = to_seconds(duration)
    ctx, sequence, position = _number("sleep", name)
    return _sync_or_async(
        _sleep, ctx, sequence, position, name, lambda: ctx.now() + timedelta(seconds=seconds)
    )


def sleep_until(name: str, when: datetime) -> Any:
    """Suspend the execution until the aware datetime ``when``."""
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise InvalidArgument("zart.sleep_until() needs an aware datetime, not %r." % (when,))
    ctx, sequence, position = _number("sleep_until", name)
    return _sync_or_async(_sleep, ctx, sequence, position, name, lambda: when)


def _sleep(
    ctx: ExecutionContext,
    sequence: int,
    position: str,
    name: str,
    wake_time: Callable[[], datetime],
) -> None:
    record = ctx.recorded(sequence, position, StepKind.SLEEP)
    if record is not None and record.status == StepStatus.COMPLETED:
        return
    wake_at = record.wake_at if record is not None and record.wake_at else wake_time()
    if wake_at > ctx.now():
        if record is not None:
            raise Suspend(wake_at)
        point = ctx.checkpoint(
            sequence, position, name, StepKind.SLEEP, StepStatus.WAITING, wake_at=wake_at
        )
        raise Suspend(wake_at, point)
    done = ctx.checkpoint(
        sequence, position, name, StepKind.SLEEP, StepStatus.COMPLETED, wake_at=wake_at
    )
    _write(ctx, done)


# -- events --------------------------------------------------------------------------


def wait_for_event(name: str, *, timeout: Duration | None = None) -> Any:
    """Return the payload of the next event ``name`` sent to this execution.

    Events sent before the workflow gets here are kept: the k-th wait for a name gets the
    k-th event of that name. Without ``timeout`` it waits forever; with one it raises
    ``zart.EventTimeout`` (catchable) if no event came first. Either outcome is recorded
    once and replayed.
    """
    seconds = None if timeout is None else to_seconds(timeout)
    ctx, sequence, position = _number("wait_for_event", name)
    return _sync_or_async(_wait_for_event, ctx, sequence, position, name, seconds)


def _wait_for_event(
    ctx: ExecutionContext, sequence: int, position: str, name: str, timeout: float | None
) -> Any:
    record = ctx.recorded(sequence, position, StepKind.EVENT)
    if record is not None and record.status == StepStatus.COMPLETED:
        return serialization.decode(record.result)
    if record is not None and record.status == StepStatus.FAILED:
        raise EventTimeout(name, timeout or 0)
    point = ctx.checkpoint(sequence, position, name, StepKind.EVENT, StepStatus.COMPLETED)
    with faults.around_checkpoint(StepKind.EVENT):
        taken = ctx.store.consume_event(ctx.claim, point, name)
    if taken is not None:
        step_id, payload = taken
        ctx.remember_point(step_id, point, payload)
        return serialization.decode(payload)
    deadline = record.wake_at if record is not None else None
    if record is None and timeout is not None:
        deadline = ctx.now() + timedelta(seconds=timeout)
    if deadline is not None and ctx.now() >= deadline:
        error = EventTimeout(name, timeout or 0)
        timed_out = ctx.checkpoint(
            sequence,
            position,
            name,
            StepKind.EVENT,
            StepStatus.FAILED,
            error=serialization.error_text(error),
            wake_at=deadline,
        )
        _write(ctx, timed_out)
        raise error
    if record is not None:
        raise Suspend(deadline)
    waiting = ctx.checkpoint(
        sequence, position, name, StepKind.EVENT, StepStatus.WAITING, wake_at=deadline
    )
    raise Suspend(deadline, waiting)


# -- recorded values -----------------------------------------------------------------


def now(name: str) -> Any:
    """The current time by the database clock, recorded once and replayed after."""
    ctx, sequence, position = _number("now", name)
    return _sync_or_async(_capture, ctx, sequence, position, name, ctx.now)


def capture(name: str, fn: Callable[[], Any]) -> Any:
    """Call ``fn`` once (a random id, an API read) and replay its recorded result.

    ``fn`` may be a coroutine function in an async workflow. Unlike a step, it has no
    retry policy: an exception propagates to the workflow and nothing is recorded.
    """
    ctx, sequence, position = _number("capture", name)
    if in_event_loop():
        return _acapture(ctx, sequence, position, name, fn)
    return _capture(ctx, sequence, position, name, fn)


async def _acapture(
    ctx: ExecutionContext, sequence: int, position: str, name: str, fn: Callable[[], Any]
) -> Any:
    record = await sync_to_async(ctx.recorded)(sequence, position, StepKind.CAPTURE)
    if record is not None:
        return serialization.decode(record.result)
    value = fn()
    if inspect.isawaitable(value):
        value = await value
    return await sync_to_async(_record_value)(ctx, sequence, position, name, value)


def _capture(
    ctx: ExecutionContext, sequence: int, position: str, name: str, fn: Callable[[], Any]
) -> Any:
    record = ctx.recorded(sequence, position, StepKind.CAPTURE)
    if record is not None:
        return serialization.decode(record.result)
    return _record_value(ctx, sequence, position, name, fn())


def _record_value(
    ctx: ExecutionContext, sequence: int, position: str, name: str, value: Any
) -> Any:
    what = "the value captured as %r" % name
    encoded = serialization.encode(value, what)
    text = serialization.dumps(encoded, what, get_settings().max_payload_bytes)
    point = ctx.checkpoint(
        sequence, position, name, StepKind.CAPTURE, StepStatus.COMPLETED, result=text
    )
    ctx.write(point, encoded)
    return serialization.decode(encoded)
