"""Durable calls other than steps: sleeping, waiting for events, recording values.

Each is checkpointed at its own position, like a step. A sleep or a wait that cannot go
on yet records when it may (``wake_at``) and suspends the execution: no thread waits.
In an ``async def`` workflow, await them: ``await zart.sleep("cool-off", "1h")``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async

from . import serialization
from .conf import get_settings
from .context import ExecutionContext, Record, Suspend, in_event_loop, require_body
from .durations import Duration, to_seconds
from .errors import EventTimeout
from .states import StepKind, StepStatus


def _begin(function: str, kind: str, name: str) -> tuple[ExecutionContext, int, str, Record | None]:
    if not isinstance(name, str) or not name:
        raise ValueError("zart.%s() needs a non-empty name, not %r." % (function, name))
    ctx = require_body(function)
    sequence, position = ctx.next_position(name)
    return ctx, sequence, position, ctx.recorded(sequence, position, kind)


def _sync_or_async(function: Callable[..., Any], *args: Any) -> Any:
    """Run now in a sync workflow; return an awaitable in an async one (ORM off the loop)."""
    if in_event_loop():
        return sync_to_async(function)(*args)
    return function(*args)


# -- sleeping ------------------------------------------------------------------------


def sleep(name: str, duration: Duration) -> Any:
    """Suspend the execution for ``duration``, durably; a replay after waking goes on.

    The wake time is fixed when the workflow first reaches the sleep, by the database
    clock, so a crash or a redeploy while sleeping neither shortens nor restarts it.
    """
    seconds = to_seconds(duration)
    return _sync_or_async(_sleep, "sleep", name, lambda ctx: ctx.now() + timedelta(seconds=seconds))


def sleep_until(name: str, when: datetime) -> Any:
    """Suspend the execution until the aware datetime ``when``."""
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise ValueError("zart.sleep_until() needs an aware datetime, not %r." % (when,))
    return _sync_or_async(_sleep, "sleep_until", name, lambda ctx: when)


def _sleep(function: str, name: str, wake_time: Callable[[ExecutionContext], datetime]) -> None:
    ctx, sequence, position, record = _begin(function, StepKind.SLEEP, name)
    if record is not None and record.status == StepStatus.COMPLETED:
        return
    wake_at = record.wake_at if record is not None else wake_time(ctx)
    assert wake_at is not None
    if wake_at > ctx.now():
        if record is not None:
            raise Suspend(wake_at)
        raise Suspend(
            wake_at,
            ctx.checkpoint(
                sequence, position, name, StepKind.SLEEP, StepStatus.WAITING, wake_at=wake_at
            ),
        )
    ctx.write(
        ctx.checkpoint(
            sequence, position, name, StepKind.SLEEP, StepStatus.COMPLETED, wake_at=wake_at
        )
    )


# -- events --------------------------------------------------------------------------


def wait_for_event(name: str, *, timeout: Duration | None = None) -> Any:
    """Return the payload of the next event ``name`` sent to this execution.

    Events sent before the workflow gets here are kept: the k-th wait for a name gets the
    k-th event of that name. Without ``timeout`` it waits forever; with one it raises
    ``zart.EventTimeout`` (catchable) if no event came first. Either outcome is recorded
    once and replayed.
    """
    seconds = None if timeout is None else to_seconds(timeout)
    return _sync_or_async(_wait_for_event, name, seconds)


def _wait_for_event(name: str, timeout: float | None) -> Any:
    ctx, sequence, position, record = _begin("wait_for_event", StepKind.EVENT, name)
    if record is not None and record.status == StepStatus.COMPLETED:
        return serialization.decode(record.result)
    if record is not None and record.status == StepStatus.FAILED:
        raise EventTimeout(name, timeout or 0)
    received = ctx.claim_event(sequence, position, name)
    if received is not None:
        return serialization.decode(received[0])
    deadline = record.wake_at if record is not None else None
    if record is None and timeout is not None:
        deadline = ctx.now() + timedelta(seconds=timeout)
    if deadline is not None and ctx.now() >= deadline:
        error = EventTimeout(name, timeout or 0)
        ctx.write(
            ctx.checkpoint(
                sequence,
                position,
                name,
                StepKind.EVENT,
                StepStatus.FAILED,
                error=serialization.error_text(error),
                wake_at=deadline,
            )
        )
        raise error
    if record is not None:
        raise Suspend(deadline)
    raise Suspend(
        deadline,
        ctx.checkpoint(
            sequence, position, name, StepKind.EVENT, StepStatus.WAITING, wake_at=deadline
        ),
    )


# -- recorded values -----------------------------------------------------------------


def now(name: str) -> Any:
    """The current time by the database clock, recorded once and replayed after."""
    return _sync_or_async(_capture, "now", name, lambda ctx: ctx.now())


def capture(name: str, fn: Callable[[], Any]) -> Any:
    """Call ``fn`` once (a random id, an API read) and replay its recorded result.

    ``fn`` may be a coroutine function in an async workflow. Unlike a step, it has no
    retry policy: an exception propagates to the workflow and nothing is recorded.
    """
    if in_event_loop():
        return _acapture(name, fn)
    return _capture("capture", name, lambda ctx: fn())


async def _acapture(name: str, fn: Callable[[], Any]) -> Any:
    ctx, sequence, position, record = await sync_to_async(_begin)("capture", StepKind.CAPTURE, name)
    if record is not None:
        return serialization.decode(record.result)
    value = fn()
    if inspect.isawaitable(value):
        value = await value
    return await sync_to_async(_record_value)(ctx, sequence, position, name, value)


def _capture(function: str, name: str, fn: Callable[[ExecutionContext], Any]) -> Any:
    ctx, sequence, position, record = _begin(function, StepKind.CAPTURE, name)
    if record is not None:
        return serialization.decode(record.result)
    return _record_value(ctx, sequence, position, name, fn(ctx))


def _record_value(
    ctx: ExecutionContext, sequence: int, position: str, name: str, value: Any
) -> Any:
    what = "the value captured as %r" % name
    encoded = serialization.encode(value, what)
    text = serialization.dumps(encoded, what, get_settings().max_payload_bytes)
    ctx.write(
        ctx.checkpoint(
            sequence, position, name, StepKind.CAPTURE, StepStatus.COMPLETED, result=text
        ),
        encoded,
    )
    return serialization.decode(encoded)
