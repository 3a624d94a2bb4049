"""Durable step calls: replay a checkpoint, or run an attempt and checkpoint it.

A call is split into a pure planning part (no I/O), the attempt itself (sync or awaited,
under the step's timeout), and the recording part (one fenced write), so sync and async
steps share every decision.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection, transaction

from . import faults, serialization, signals
from .clashes import Clashes, origin
from .conf import get_settings
from .context import ExecutionContext, Suspend, current, in_event_loop, in_step
from .db.guard import connection_lost
from .db.types import DatabaseUnavailable, Record, StoreRefused
from .errors import SerializationError, StepFailed, StepTimeout, ZartError
from .failures import step_failed
from .names import check_name
from .retry import Retry
from .states import AttemptStatus, StepKind, StepStatus

logger = logging.getLogger(__name__)

_steps: dict[str, Step] = {}
clashes = Clashes("step")
"""Step names registered by several functions (see ``django_zart.clashes``)."""


def is_registered(name: str) -> bool:
    """Whether this process has the code of the step ``name``."""
    return name in _steps


def get_step(name: str) -> Step:
    """The registered step of this name (parallel branches run steps by name)."""
    try:
        step = _steps[name]
    except KeyError:
        raise ZartError(
            "No step named %r is registered in this worker; is its module imported by a "
            "workflows.py or ZART['WORKFLOW_MODULES']?" % name
        ) from None
    clashes.refuse(name)
    return step


@dataclass(frozen=True, slots=True)
class Call:
    """A step call, numbered when it is made: its position and a digest of its arguments."""

    sequence: int
    position: str
    call_hash: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt about to run: where it is recorded and what came before it."""

    call: Call
    number: int
    earlier: tuple[tuple[int, str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Replayed:
    value: Any


_abandoned: set[threading.Thread] = set()
_abandoned_lock = threading.Lock()


def abandoned_threads() -> int:
    """Threads of sync steps that ran past their timeout and have not returned yet.

    A thread cannot be killed: each one still holds its connection and may hold a CPU.
    The worker counts them against its concurrency and shows them on its row.
    """
    with _abandoned_lock:
        return len(_abandoned)


class Step:
    """A checkpointed function; outside a workflow it is just the function."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        retry: Retry | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        give_up_on: tuple[type[BaseException], ...] = (),
        timeout: float | None = None,
        atomic: bool = False,
    ) -> None:
        self.fn = fn
        self.name = check_name(name, "A step name")
        self.retry = retry or Retry.none()
        self.retry_on = retry_on
        self.give_up_on = give_up_on
        self.timeout = timeout
        self.atomic = atomic
        self.is_async = asyncio.iscoroutinefunction(fn)
        if atomic and self.is_async:
            raise ZartError(
                "Step %r is async and atomic: an atomic step runs in a transaction of the "
                "worker's connection, which Django holds on one thread; make it a plain "
                "function." % name
            )
        if atomic and timeout is not None:
            raise ZartError(
                "Step %r is atomic and has a timeout: an atomic step runs on the worker's "
                "own thread and connection, where it cannot be abandoned; bound its queries "
                "with PostgreSQL's statement_timeout instead." % name
            )
        self.templated = "{" in name
        self._signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)
        existing = _steps.get(name)
        if existing is not None and origin(existing.fn) != origin(fn):
            clashes.add(name, origin(existing.fn), origin(fn))
        else:
            _steps[name] = self

    def __repr__(self) -> str:
        return "<Step %s>" % self.name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._dispatch(None, args, kwargs)

    def with_id(self, name: str) -> Callable[..., Any]:
        """This step under an explicit, unique-per-run name: ``notify.with_id(f"n-{id}")(x)``.

        Explicit names find their checkpoint by name, not by call order, so they survive
        reordering (a loop over a list that changed order between replays).
        """
        if not isinstance(name, str) or not name:
            raise ValueError("with_id() needs a non-empty name, not %r." % (name,))
        return lambda *args, **kwargs: self._dispatch(name, args, kwargs)

    def position_name(
        self, explicit: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, bool]:
        if explicit is not None:
            return explicit, True
        if not self.templated:
            return self.name, False
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        try:
            return self.name.format(**bound.arguments), True
        except (KeyError, IndexError, AttributeError) as exc:
            raise ZartError(
                "Step name template %r does not fit the call's arguments: %s" % (self.name, exc)
            ) from None

    def _dispatch(self, explicit: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        ctx = current.get()
        if ctx is None or ctx.step is not None:
            # Outside a workflow, or nested in another step (which is the durable unit).
            return self.fn(*args, **kwargs)
        looping = in_event_loop()
        if looping and not self.is_async:
            raise TypeError(
                "Step %r is synchronous but was called from an async workflow; make it "
                "'async def' or call it from a sync workflow." % self.name
            )
        call = self.number_call(ctx, explicit, args, kwargs)
        if looping:
            return self._acall(ctx, call, args, kwargs)
        if self.is_async:
            return async_to_sync(self._acall)(ctx, call, args, kwargs)
        return self.attempts(ctx, self.plan(ctx, call), args, kwargs)

    def number_call(
        self,
        ctx: ExecutionContext,
        explicit: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Call:
        """Give the call its position now, in call order, before anything is awaited."""
        name, is_explicit = self.position_name(explicit, args, kwargs)
        if is_explicit:  # made at call time: a template or with_id
            check_name(name, "The name of a call of step %r" % self.name)
        sequence, position = ctx.next_position(name, explicit=is_explicit)
        return Call(sequence, position, serialization.digest([list(args), kwargs]))

    def attempts(
        self,
        ctx: ExecutionContext,
        attempt: Attempt | Replayed,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run attempts until one succeeds, the step gives up, or a retry must wait."""
        while True:
            if isinstance(attempt, Replayed):
                return attempt.value
            if self.atomic:
                attempt = atomic_attempt(ctx, self, attempt, args, kwargs)
                continue
            try:
                with in_step(attempt.call.position, attempt.number):
                    value = self.run_sync(args, kwargs)
            except Exception as exc:
                attempt = failed(ctx, self, attempt, exc)
            else:
                return succeeded(ctx, self, attempt, value)

    async def _acall(
        self, ctx: ExecutionContext, call: Call, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        attempt = await sync_to_async(self.plan)(ctx, call)
        while True:
            if isinstance(attempt, Replayed):
                return attempt.value
            try:
                with in_step(attempt.call.position, attempt.number):
                    value = await self.run_async(args, kwargs)
            except Exception as exc:
                attempt = await sync_to_async(failed)(ctx, self, attempt, exc)
            else:
                return await sync_to_async(succeeded)(ctx, self, attempt, value)

    def plan(self, ctx: ExecutionContext, call: Call) -> Attempt | Replayed:
        """Replay the call, or give its next attempt unless a pause rule holds the step."""
        planned = plan(ctx, call)
        if isinstance(planned, Attempt):
            from .pauses import check_step  # the models: loaded once the app is ready

            check_step(ctx, self.name)
        return planned

    def run_sync(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """One attempt of a sync step, under its timeout.

        A thread cannot be killed: past the timeout the attempt fails with
        ``StepTimeout`` and whatever the abandoned thread returns later is discarded.
        """
        if self.is_async:
            return async_to_sync(self.run_async)(args, kwargs)
        if self.timeout is None:
            return self.fn(*args, **kwargs)
        outcome: list[Any] = []
        context = contextvars.copy_context()

        def target() -> None:
            try:
                outcome.append((True, context.run(self.fn, *args, **kwargs)))
            except BaseException as exc:
                outcome.append((False, exc))
            finally:
                connection.close()
                with _abandoned_lock:
                    _abandoned.discard(threading.current_thread())

        thread = threading.Thread(target=target, name="zart-step-%s" % self.name, daemon=True)
        thread.start()
        thread.join(self.timeout)
        if not outcome:
            with _abandoned_lock:
                if thread.is_alive():
                    _abandoned.add(thread)
                count = len(_abandoned)
            logger.warning(
                "Step timed out step=%s after %ss; its thread goes on and is abandoned "
                "(%d abandoned in this worker, counted against its concurrency)",
                self.name,
                self.timeout,
                count,
            )
            raise StepTimeout(self.name, self.timeout)
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    async def run_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """One attempt of an async step; past its timeout it is cancelled."""
        if self.timeout is None:
            return await self.fn(*args, **kwargs)
        try:
            return await asyncio.wait_for(self.fn(*args, **kwargs), self.timeout)
        except TimeoutError:
            raise StepTimeout(self.name, self.timeout) from None

    def retries(self, exc: BaseException) -> bool:
        return isinstance(exc, self.retry_on) and not isinstance(exc, self.give_up_on)


def plan(ctx: ExecutionContext, call: Call) -> Attempt | Replayed:
    """Decide from the checkpoints whether the call replays or runs (and which attempt)."""
    record = ctx.recorded(call.sequence, call.position, StepKind.STEP, call.call_hash)
    return plan_from(ctx, call, record)


def plan_from(ctx: ExecutionContext, call: Call, record: Record | None) -> Attempt | Replayed:
    if record is None:
        ctx.check_deadline()
        return Attempt(call, 1)
    if record.status == StepStatus.COMPLETED:
        return Replayed(serialization.decode(record.result))
    if record.status == StepStatus.FAILED:
        raise step_failed(call.position, record.attempts, record.error or {})
    # RETRYING: the next attempt runs once its time has come.
    if record.wake_at is not None and record.wake_at > ctx.now():
        raise Suspend(record.wake_at)
    ctx.check_deadline()
    return Attempt(call, record.attempts + 1)


def succeeded(ctx: ExecutionContext, step: Step, attempt: Attempt, value: Any) -> Any:
    what = "the result of step %r" % attempt.call.position
    try:
        encoded, point = completion(ctx, step, attempt, value, what)
    except SerializationError as exc:
        # Deterministic: no retry would return anything else.
        return give_up(ctx, step, attempt, exc)
    try:
        with faults.around_checkpoint(StepKind.STEP):
            ctx.write(point, encoded)
    except StoreRefused as refused:
        return give_up(ctx, step, attempt, serialization.refused(what, refused))
    return done(ctx, step, attempt, encoded)


def completion(
    ctx: ExecutionContext, step: Step, attempt: Attempt, value: Any, what: str
) -> tuple[Any, Any]:
    """The encoded result and the checkpoint of a successful attempt.

    Raises ``SerializationError`` for a result that cannot be stored.
    """
    encoded = serialization.encode(value, what)
    text = serialization.dumps(encoded, what, get_settings().max_payload_bytes)
    rows = attempt.earlier
    if attempt.number > 1:
        rows = (*rows, (attempt.number, AttemptStatus.SUCCEEDED, None))
    return encoded, _checkpoint(ctx, step, attempt, StepStatus.COMPLETED, result=text, rows=rows)


def done(ctx: ExecutionContext, step: Step, attempt: Attempt, encoded: Any) -> Any:
    """Log and announce a checkpointed success; the value the workflow gets."""
    logger.info(
        "Step done execution=%s workflow=%s step=%s attempt=%d",
        ctx.claim.execution_id,
        ctx.claim.workflow,
        attempt.call.position,
        attempt.number,
    )
    value = serialization.decode(encoded)
    ctx.announce(
        signals.step_completed,
        step=attempt.call.position,
        name=step.name,
        attempt=attempt.number,
        result=value,
    )
    return value


def atomic_attempt(
    ctx: ExecutionContext,
    step: Step,
    attempt: Attempt,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Attempt | Replayed:
    """One attempt of an ``atomic=True`` step: its body and its checkpoint in one
    transaction, so the body's database writes commit if and only if the checkpoint does.

    A worker that dies in the middle leaves neither (the server rolls the transaction
    back), and the attempt runs again as if it had never run. A failed attempt, a result
    that cannot be stored and a cancel seen by the checkpoint's write roll the body's
    writes back too; the failure is recorded afterwards, on its own. Returns the next
    attempt, or the value (as ``Replayed``) once checkpointed.
    """
    what = "the result of step %r" % attempt.call.position
    try:
        with transaction.atomic():
            with in_step(attempt.call.position, attempt.number):
                value = step.fn(*args, **kwargs)
            encoded, point = completion(ctx, step, attempt, value, what)
            with faults.around_checkpoint(StepKind.STEP):
                ctx.write(point, encoded)
    except SerializationError as exc:
        give_up(ctx, step, attempt, exc)
    except StoreRefused as refused:
        give_up(ctx, step, attempt, serialization.refused(what, refused))
    except Exception as exc:
        return failed(ctx, step, attempt, exc)
    return Replayed(done(ctx, step, attempt, encoded))


def failed(ctx: ExecutionContext, step: Step, attempt: Attempt, exc: Exception) -> Attempt:
    """Record a failed attempt; return the next one, or suspend until it is due.

    A connection the database dropped under the step is not the step's failure: the
    worker replays the claim on a fresh connection instead.
    """
    if connection_lost(exc):
        raise DatabaseUnavailable(exc) from exc
    delay = step.retry.next_delay(attempt.number) if step.retries(exc) else None
    if delay is None:
        give_up(ctx, step, attempt, exc)  # raises StepFailed
    error = serialization.error_text(exc)
    rows = (*attempt.earlier, (attempt.number, AttemptStatus.FAILED, error))
    logger.info(
        "Step attempt failed execution=%s workflow=%s step=%s attempt=%d retry_in=%.3fs",
        ctx.claim.execution_id,
        ctx.claim.workflow,
        attempt.call.position,
        attempt.number,
        delay,
    )
    if delay <= 0:
        return Attempt(attempt.call, attempt.number + 1, rows)
    wake_at = ctx.now() + timedelta(seconds=delay)
    point = _checkpoint(
        ctx, step, attempt, StepStatus.RETRYING, error=error, rows=rows, wake_at=wake_at
    )
    raise Suspend(wake_at, point) from None


def give_up(ctx: ExecutionContext, step: Step, attempt: Attempt, exc: Exception) -> NoReturn:
    """Record the step's failure for good and raise it into the workflow as StepFailed."""
    error = serialization.error_text(exc)
    rows = (*attempt.earlier, (attempt.number, AttemptStatus.FAILED, error))
    if attempt.number == 1:
        rows = ()  # the step row holds the only attempt's error
    point = _checkpoint(ctx, step, attempt, StepStatus.FAILED, error=error, rows=rows)
    with faults.around_checkpoint(StepKind.STEP):
        record = ctx.write(point)
    logger.info(
        "Step failed execution=%s workflow=%s step=%s attempts=%d",
        ctx.claim.execution_id,
        ctx.claim.workflow,
        attempt.call.position,
        attempt.number,
    )
    ctx.announce(
        signals.step_failed,
        step=attempt.call.position,
        name=step.name,
        attempt=attempt.number,
        error=record.error or {},
    )
    raise step_failed(attempt.call.position, attempt.number, record.error or {}) from exc


def _checkpoint(
    ctx: ExecutionContext,
    step: Step,
    attempt: Attempt,
    status: str,
    *,
    rows: tuple[tuple[int, str, str | None], ...] = (),
    **fields: Any,
) -> Any:
    return ctx.checkpoint(
        attempt.call.sequence,
        attempt.call.position,
        step.name,
        StepKind.STEP,
        status,
        attempts=attempt.number,
        call_hash=attempt.call.call_hash,
        attempt_rows=rows,
        **fields,
    )


def step_or(call: Callable[[], Any], default: Any) -> Any:
    """``call()`` (a step call), or ``default`` if that step failed for good.

    The step's failure is checkpointed, so the choice replays the same way. In an async
    workflow: ``await zart.step_or(lambda: charge(order), None)``.
    """
    try:
        value = call()
    except StepFailed:
        return default
    if inspect.isawaitable(value):
        return _await_or(value, default)
    return value


async def _await_or(awaitable: Any, default: Any) -> Any:
    try:
        return await awaitable
    except StepFailed:
        return default
