"""Parallel branches: ``schedule``, ``wait_all`` and ``map``.

A scheduled branch is a step call that any worker can claim: its step row and a task are
written at once, and the body goes on. ``wait_all`` returns the results in order once
every branch finished; until then the body is suspended, holding no thread, and the last
branch to finish wakes it (see ``Store.finish_branch``). Branches get the retries and
timeouts of their step, and a finished branch is never run again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async

from . import faults, serialization
from .conf import get_settings
from .context import ExecutionContext, Suspend, in_event_loop, require_body
from .db.types import Record
from .errors import ZartError
from .failures import step_failed
from .states import StepKind, StepStatus
from .steps import Step

FINISHED = (StepStatus.COMPLETED, StepStatus.FAILED)


@dataclass(frozen=True)
class Handle:
    """A scheduled branch; pass handles to ``zart.wait_all``."""

    position: str
    step: str


def schedule(step: Step, *args: Any, **kwargs: Any) -> Handle:
    """Start ``step(*args, **kwargs)`` as a branch any worker can run; do not wait."""
    ctx, numbered = _number(step, [(args, kwargs)], "schedule")
    (handle,) = _schedule(ctx, step, numbered)
    return handle


Numbered = list[tuple[int, str, tuple[Any, ...], dict[str, Any]]]


def _number(
    step: Step, calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]], function: str
) -> tuple[ExecutionContext, Numbered]:
    """Give each branch its position now, in call order."""
    if not isinstance(step, Step):
        raise TypeError("zart.%s() takes a @zart.step function, not %r." % (function, step))
    ctx = require_body(function)
    numbered: Numbered = []
    for args, kwargs in calls:
        name, explicit = step.position_name(None, args, kwargs)
        sequence, position = ctx.next_position(name, explicit=explicit)
        numbered.append((sequence, position, args, kwargs))
    return ctx, numbered


def _schedule(ctx: ExecutionContext, step: Step, numbered: Numbered) -> list[Handle]:
    """Record and queue the branches an earlier replay did not schedule yet."""
    points, payloads = [], []
    for sequence, position, args, kwargs in numbered:
        if ctx.recorded(sequence, position, StepKind.BRANCH) is not None:
            continue  # scheduled by an earlier replay
        what = "the arguments of branch %r" % position
        payload = serialization.encode([list(args), kwargs], what)
        serialization.dumps(payload, what, get_settings().max_payload_bytes)
        points.append(
            ctx.checkpoint(
                sequence, position, step.name, StepKind.BRANCH, StepStatus.SCHEDULED, attempts=0
            )
        )
        payloads.append(payload)
    if points:
        with faults.around_checkpoint(StepKind.BRANCH):
            step_ids = ctx.store.schedule_branches(ctx.claim, points, payloads)
        for step_id, point in zip(step_ids, points, strict=True):
            ctx.remember_point(step_id, point)
    return [Handle(position, step.name) for _, position, _, _ in numbered]


def wait_all(handles: Iterable[Handle], *, return_exceptions: bool = False) -> Any:
    """The branches' results, in order, once all finished.

    A failed branch raises its ``StepFailed`` (after every branch finished); with
    ``return_exceptions=True`` its place in the list holds the ``StepFailed`` instead.
    In an async workflow, ``await`` it.
    """
    handles = list(handles)
    ctx = require_body("wait_all")
    group = ctx.next_position("wait_all")
    if in_event_loop():
        return sync_to_async(_wait_all)(ctx, group, handles, return_exceptions)
    return _wait_all(ctx, group, handles, return_exceptions)


def map(step: Step, items: Iterable[Any]) -> Any:
    """``step(item)`` for every item, as parallel branches; their results in order."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [((item,), {}) for item in items]
    ctx, numbered = _number(step, calls, "map")
    group = ctx.next_position("wait_all")
    if in_event_loop():
        return _amap(ctx, step, numbered, group)
    return _wait_all(ctx, group, _schedule(ctx, step, numbered), False)


async def _amap(
    ctx: ExecutionContext, step: Step, numbered: Numbered, group: tuple[int, str]
) -> Any:
    handles = await sync_to_async(_schedule)(ctx, step, numbered)
    return await sync_to_async(_wait_all)(ctx, group, handles, False)


def _wait_all(
    ctx: ExecutionContext, group_at: tuple[int, str], handles: list[Handle], return_exceptions: bool
) -> list[Any]:
    sequence, position = group_at
    positions = [h.position for h in handles]
    group = ctx.recorded(sequence, position, StepKind.GROUP)
    records = _current(ctx, positions)
    result = json.dumps({"positions": positions})
    if not all(r.status in FINISHED for r in records):
        if group is not None:
            raise Suspend(None)
        waiting = ctx.checkpoint(
            sequence, position, "wait_all", StepKind.GROUP, StepStatus.WAITING, result=result
        )
        raise Suspend(None, waiting)
    if group is not None and group.status != StepStatus.COMPLETED:
        done = ctx.checkpoint(
            sequence, position, "wait_all", StepKind.GROUP, StepStatus.COMPLETED, result=result
        )
        with faults.around_checkpoint(StepKind.GROUP):
            ctx.write(done)
    results: list[Any] = []
    for record in records:
        if record.status == StepStatus.COMPLETED:
            results.append(serialization.decode(record.result))
            continue
        failure = step_failed(record.position, record.attempts, record.error or {})
        if not return_exceptions:
            raise failure
        results.append(failure)
    return results


def _current(ctx: ExecutionContext, positions: list[str]) -> list[Record]:
    """The branches' records: from the replay's checkpoints if all finished, else fresh."""
    known = [ctx.by_position.get(p) for p in positions]
    if all(r is not None and r.status in FINISHED for r in known):
        return [r for r in known if r is not None]
    missing = [p for p in positions if p not in ctx.by_position]
    if missing:
        raise ZartError(
            "wait_all() got handles of branches this run did not schedule: %s" % ", ".join(missing)
        )
    fresh = {r.position: r for r in ctx.store.branch_states(ctx.claim, positions)}
    for record in fresh.values():
        if record.status in FINISHED:
            ctx.remember(record)
    return [fresh[p] for p in positions]
