"""Child workflows: ``run_workflow`` waits for one, ``start_workflow`` does not.

A child is an execution of its own (any worker runs it), linked to its parent. Its start
is checkpointed in the parent, so a replay never starts it twice; its id, unless given,
derives from the parent's id and the call's position. A waiting parent is suspended, and
the child's end wakes it. Cancelling the parent cancels its unfinished children.

Starting a child and reading its outcome are the engine's own writes and reads: their
database errors are outages or refusals (``store_operation``), never the workflow's.
"""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from . import faults, serialization
from .client import create, new_execution
from .context import ExecutionContext, Suspend, in_event_loop, require_body
from .db.guard import store_operation
from .errors import ExecutionAlreadyExists, ExecutionCancelled, ExecutionFailed, ZartError
from .models import Execution
from .names import MAX_ID_LENGTH, check_name
from .registry import Workflow, get_workflow
from .states import TERMINAL, ExecutionStatus, StepKind, StepStatus


def run_workflow(
    workflow: str | Workflow, input: Any = None, *, execution_id: str | None = None
) -> Any:
    """Start a child execution and return its output, or raise its failure.

    Raises ``ExecutionFailed`` (with the child's stored error) or ``ExecutionCancelled``.
    In an async workflow, ``await`` it.
    """
    return _call("run_workflow", workflow, input, execution_id, wait=True)


def start_workflow(
    workflow: str | Workflow, input: Any = None, *, execution_id: str | None = None
) -> Any:
    """Start a child execution without waiting for it; return its id."""
    return _call("start_workflow", workflow, input, execution_id, wait=False)


def _call(
    function: str, workflow: str | Workflow, input: Any, execution_id: str | None, *, wait: bool
) -> Any:
    """Number the call now, in call order; run it now, or as an awaitable (async)."""
    ctx = require_body(function)
    definition = get_workflow(workflow)
    if execution_id is not None:
        check_name(execution_id, "The child's execution_id", limit=MAX_ID_LENGTH)
    sequence, position = ctx.next_position("%s:%s" % (function, execution_id or definition.name))
    args = (ctx, sequence, position, definition, input, execution_id, wait)
    if in_event_loop():
        return sync_to_async(_run_workflow)(*args)
    return _run_workflow(*args)


def _run_workflow(
    ctx: ExecutionContext,
    sequence: int,
    position: str,
    definition: Workflow,
    input: Any,
    execution_id: str | None,
    wait: bool,
) -> Any:
    record = ctx.recorded(sequence, position, StepKind.CHILD)
    if record is None:
        child_id = execution_id or "%s/%s" % (ctx.claim.execution_id, position)
        check_name(child_id, "The child's execution id", limit=MAX_ID_LENGTH)
        _start_child(ctx, sequence, position, definition, input, child_id, wait)
        if not wait:
            return child_id
        raise Suspend(None)
    child_id = (record.result or {}).get("id", "")
    if not wait:
        return child_id
    if record.status == StepStatus.SCHEDULED:
        return _outcome_of_running(ctx, sequence, position, child_id)
    return _replayed(record.status, child_id, record.result, record.error)


@store_operation
def _start_child(
    ctx: ExecutionContext,
    sequence: int,
    position: str,
    definition: Workflow,
    input: Any,
    child_id: str,
    wait: bool,
) -> None:
    status = StepStatus.SCHEDULED if wait else StepStatus.COMPLETED
    point = ctx.checkpoint(
        sequence,
        position,
        definition.name,
        StepKind.CHILD,
        status,
        result=json.dumps({"id": child_id}),
    )
    with faults.around_checkpoint(StepKind.CHILD), transaction.atomic():
        step_id = ctx.store.record(ctx.claim, point)
        try:
            create(
                new_execution(
                    definition,
                    input,
                    child_id,
                    definition.queue,
                    parent_id=ctx.claim.execution_id,
                    wake_parent=wait,
                    by="parent:%s" % ctx.claim.execution_id,
                )
            )
        except ExecutionAlreadyExists:
            parent = Execution.objects.filter(pk=child_id).values_list("parent_id", flat=True)
            if parent.first() != ctx.claim.execution_id:
                raise ZartError(
                    "Cannot start child execution %r: that id belongs to another execution."
                    % child_id
                ) from None
    ctx.remember_point(step_id, point, {"id": child_id})


def _outcome_of_running(ctx: ExecutionContext, sequence: int, position: str, child_id: str) -> Any:
    child = Execution.objects.filter(pk=child_id).values_list("status", "output", "error").first()
    if child is None or child[0] not in TERMINAL:
        raise Suspend(None)
    status, output, error = child
    step_status = StepStatus.COMPLETED if status == ExecutionStatus.COMPLETED else StepStatus.FAILED
    result = {"id": child_id, "output": output, "status": status}
    point = ctx.checkpoint(
        sequence,
        position,
        "child",
        StepKind.CHILD,
        step_status,
        result=json.dumps(result),
        error=None if error is None else serialization.error_json(error),
    )
    with faults.around_checkpoint(StepKind.CHILD):
        ctx.write(point, result)
    return _replayed(step_status, child_id, result, error)


def _replayed(status: str, child_id: str, result: Any, error: dict[str, Any] | None) -> Any:
    if status == StepStatus.COMPLETED:
        return serialization.decode(result.get("output"))
    if result.get("status") == ExecutionStatus.CANCELLED:
        raise ExecutionCancelled(child_id, error)
    raise ExecutionFailed(child_id, error)
