"""What an operator does to executions: cancel, restart, rerun steps, retry a failed step.

Each operation is one transaction that locks the execution's tasks, then the execution
(the order every writer locks them in), checks that the state allows it, and changes
the status through the guarded transitions: a worker racing an operation either
finishes first (and the operation sees the finished state) or finds its next write
refused. The command line, the HTTP API and the admin call these functions; none of
them writes a status itself.

A new run (restart, rerun, retry-step) is appended to the execution's history with
its reason and who asked (``by``); the earlier runs and their steps stay as they were.
The new run gets copies of the checkpoints it keeps, so what it replays is exactly
what the operation chose, whatever happened in the runs before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now

from . import pauses, serialization, signals
from .conf import get_settings
from .db import get_store
from .db.transitions import end_run, transition
from .errors import (
    ExecutionFinished,
    ExecutionNotFinished,
    ExecutionNotFound,
    InvalidArgument,
    OperationRefused,
    StepNotFailed,
    StepNotFound,
)
from .models import Execution, Run, Step, Task
from .names import MAX_ID_LENGTH, MAX_NAME_LENGTH, check_name
from .registry import get_workflow
from .states import TERMINAL, ExecutionStatus, RunReason, RunStatus, StepKind, StepStatus

logger = logging.getLogger(__name__)

_SAME_INPUT: Any = object()

KEPT = (StepStatus.COMPLETED, StepStatus.FAILED)
"""The checkpoints a new run keeps: final outcomes. A sleep, a wait or a branch that
was still open when the execution ended is done again."""


def cancel(execution_id: str, *, reason: str = "", by: str = "") -> Execution:
    """Cancel an unfinished execution, its queued branches and its unfinished children.

    A pending, sleeping, waiting or paused execution is cancelled at once. A running one
    is cancelled too, and its worker finds out at its next durable call: the step in
    flight finishes and is checkpointed, nothing after it runs. A parent waiting for it
    in ``run_workflow`` sees ``ExecutionCancelled``. Cancelling a finished execution
    raises ``ExecutionFinished``.
    """
    check_name(execution_id, "execution_id", limit=MAX_ID_LENGTH)
    reason = serialization.text_argument(reason, "reason")
    by = _by(by)
    with transaction.atomic():
        status = _cancel(execution_id, reason, by)
        if status is not None:
            raise ExecutionFinished(execution_id, status, "be cancelled")
    return _fresh(execution_id)


def cancel_quietly(execution_id: str, *, reason: str, by: str = "") -> bool:
    """``cancel``, returning ``False`` for a finished execution instead of raising.

    For the engine's own cancels (a schedule's overlap policy), where an execution that
    finished meanwhile is nothing to report.
    """
    with transaction.atomic():
        return _cancel(execution_id, reason, by) is None


def _cancel(execution_id: str, reason: str, by: str) -> str | None:
    """Cancel in the caller's transaction; the final status instead if it had finished."""
    list(Task.objects.select_for_update().filter(execution_id=execution_id).order_by("pk"))
    row = (
        Execution.objects.select_for_update()
        .filter(pk=execution_id)
        .values_list("status", "run_index", "parent_id", "wake_parent", "workflow")
        .first()
    )
    if row is None:
        raise ExecutionNotFound(execution_id)
    status, run_index, parent_id, wake_parent, workflow = row
    if status in TERMINAL:
        return str(status)
    error: dict[str, Any] = {
        "type": "django_zart.errors.ExecutionCancelled",
        "message": reason or "Cancelled on request.",
    }
    if by:
        error["by"] = by
    # A task a live worker holds stays with it: its next write sees the cancel and
    # stops there. Everything queued goes now.
    Task.objects.filter(execution_id=execution_id).filter(
        Q(held_by__isnull=True) | Q(lease_until__lt=Now())
    ).delete()
    transition(execution_id, ExecutionStatus.CANCELLED, error=error, finished_at=Now())
    run = Run.objects.filter(execution_id=execution_id, index=run_index).values_list("pk")
    end_run(run.get()[0], RunStatus.CANCELLED, error)
    if wake_parent and parent_id is not None:
        get_store().wake_body(parent_id)
    children = list(
        Execution.objects.filter(parent_id=execution_id).unfinished().values_list("pk", flat=True)
    )
    for child in children:
        _cancel(child, "Its parent %r was cancelled." % execution_id, by)
    logger.info(
        "Execution cancelled execution=%s by=%s children=%d", execution_id, by or "-", len(children)
    )
    signals.send_on_commit(
        signals.execution_finished,
        workflow,
        execution_id=execution_id,
        status=ExecutionStatus.CANCELLED.value,
        output=None,
        error=error,
    )
    return None


def restart(execution_id: str, *, input: Any = _SAME_INPUT, by: str = "") -> Execution:
    """Run a finished execution again from scratch, with the same input or ``input``.

    Earlier runs and their steps stay as history; the new run replays nothing. Events
    consumed by earlier runs stay consumed: a restarted wait waits for a new event.
    """
    encoded = _SAME_INPUT
    if input is not _SAME_INPUT:
        what = "the new input of execution %r" % execution_id
        encoded = serialization.encode(input, what)
        serialization.dumps(encoded, what, get_settings().max_payload_bytes)
    return _new_run(
        execution_id,
        reason=RunReason.RESTART,
        action="be restarted",
        by=by,
        keep=lambda execution, rows: [],
        input=encoded,
    )


def rerun(
    execution_id: str,
    *,
    steps: Iterable[str] | None = None,
    from_step: str | None = None,
    by: str = "",
) -> Execution:
    """Run a finished execution again, keeping every checkpoint but the chosen steps.

    ``steps`` names steps to execute again (by name, every occurrence, or by position key
    such as ``charge#2``); ``from_step`` executes that step and everything after it
    again. The new run replays the rest from their checkpoints.
    """
    if (steps is None) == (from_step is None):
        raise InvalidArgument("Give either steps=[...] or from_step=..., not both or neither.")
    if from_step is not None:
        check_name(from_step, "from_step", limit=MAX_NAME_LENGTH)
        chosen = [from_step]
    else:
        if isinstance(steps, str) or steps is None:
            raise InvalidArgument("steps must be a list of step names, not %r." % (steps,))
        chosen = list(steps)
        if not chosen:
            raise InvalidArgument("steps must name at least one step.")
        for name in chosen:
            check_name(name, "A step in steps", limit=MAX_NAME_LENGTH)

    def keep(execution: Execution, rows: list[Step]) -> list[Step]:
        for name in chosen:
            if not any(_named(row, name) for row in rows):
                raise StepNotFound(execution.pk, name, _names(rows))
        if from_step is not None:
            first = next(row for row in rows if _named(row, from_step))
            return [row for row in rows if not _after(row, first)]
        return [row for row in rows if not any(_named(row, name) for name in chosen)]

    return _new_run(execution_id, reason=RunReason.RERUN, action="be rerun", by=by, keep=keep)


def retry_step(execution_id: str, step: str, *, by: str = "") -> Execution:
    """Give a step that failed for good a fresh set of attempts; the execution resumes.

    The execution must have failed. A new run (reason ``RETRY_STEP``) replays every
    checkpoint of the failed run but that step's, so it goes on from there. The workflow's
    ``on_failure`` handler, if it ran, is not undone.
    """
    check_name(step, "step", limit=MAX_NAME_LENGTH)

    def keep(execution: Execution, rows: list[Step]) -> list[Step]:
        if execution.status != ExecutionStatus.FAILED:
            raise StepNotFailed(
                execution.pk,
                step,
                "the execution is %s, not FAILED; to run a step again, rerun it."
                % execution.status,
            )
        matching = [row for row in rows if _named(row, step)]
        if not matching:
            known = Step.objects.filter(execution_id=execution.pk)
            if not any(_named(row, step) for row in known.only("name", "position")):
                raise StepNotFound(execution.pk, step, _names(rows))
            raise StepNotFailed(execution.pk, step, "it did not run in the failed run.")
        failed = [row for row in matching if row.status in (StepStatus.FAILED, StepStatus.RETRYING)]
        if not failed:
            raise StepNotFailed(
                execution.pk, step, "its outcome is %s, not a failure." % matching[-1].status
            )
        return [row for row in rows if row not in failed]

    return _new_run(
        execution_id,
        reason=RunReason.RETRY_STEP,
        action="retry a step",
        by=by,
        keep=keep,
    )


def _new_run(
    execution_id: str,
    *,
    reason: str,
    action: str,
    by: str,
    keep: Callable[[Execution, list[Step]], list[Step]],
    input: Any = _SAME_INPUT,
) -> Execution:
    """Append a run to a finished execution, with copies of the checkpoints it keeps."""
    check_name(execution_id, "execution_id", limit=MAX_ID_LENGTH)
    by = _by(by)
    store = get_store()
    with transaction.atomic():
        tasks = Task.objects.select_for_update().filter(execution_id=execution_id)
        list(tasks.order_by("pk"))
        execution = Execution.objects.select_for_update().filter(pk=execution_id).first()
        if execution is None:
            raise ExecutionNotFound(execution_id)
        if execution.status not in TERMINAL:
            raise ExecutionNotFinished(execution_id, execution.status, action)
        definition = get_workflow(execution.workflow)
        replayed = _replayed_rows(execution)
        kept = _without_open_groups(replayed, keep(execution, replayed))
        index = execution.run_index + 1
        # A worker still holding a task of a cancelled run loses it: its next write fails.
        tasks.delete()
        changes: dict[str, Any] = {
            "run_index": index,
            "replay_base": index,
            "output": None,
            "error": None,
            "finished_at": None,
            "deadline_at": None
            if definition.timeout is None
            else Now() + timedelta(seconds=definition.timeout),
        }
        if input is not _SAME_INPUT:
            changes["input"] = input
        if not transition(execution_id, ExecutionStatus.PENDING, reopen=True, **changes):
            raise OperationRefused("Execution %r changed while it was reopened." % execution_id)
        run = Run.objects.create(
            execution_id=execution_id, index=index, reason=reason, triggered_by=by
        )
        Step.objects.bulk_create(_copy(row, run) for row in kept)
        rule = pauses.hold_new(execution_id, execution.workflow)
        if rule is not None:
            transition(execution_id, ExecutionStatus.PAUSED)
        Task.objects.create(
            execution_id=execution_id,
            queue=execution.queue,
            paused_by_id=rule,
            priority=-definition.priority,
        )
        store.notify(execution.queue)
    logger.info(
        "Execution reopened execution=%s run=%d reason=%s by=%s kept=%d",
        execution_id,
        index,
        reason,
        by or "-",
        len(kept),
    )
    return _fresh(execution_id)


def _replayed_rows(execution: Execution) -> list[Step]:
    """The checkpoints the last run of the body replayed or wrote, latest per position.

    A failure handler's run (``COMPENSATION``) is not the body's: the run before it is.
    The body's run replayed the completed steps of the runs back to the last one that
    did not replay its predecessors (any run but a workflow retry).
    """
    runs = list(
        Run.objects.filter(execution_id=execution.pk)
        .exclude(reason=RunReason.COMPENSATION)
        .order_by("index")
        .values_list("index", "reason")
    )
    if not runs:
        return []
    target = runs[-1][0]
    base = max(index for index, reason in runs if reason != RunReason.RETRY)
    rows = (
        Step.objects.filter(execution_id=execution.pk, run_index__gte=base, run_index__lte=target)
        .filter(Q(run_index=target) | Q(status=StepStatus.COMPLETED))
        .order_by("run_index", "pk")
    )
    latest: dict[str, Step] = {}
    for row in rows:
        latest[row.position] = row
    return sorted(latest.values(), key=lambda row: (row.created_at, row.sequence, row.pk))


def _without_open_groups(replayed: list[Step], chosen: list[Step]) -> list[Step]:
    """The final checkpoints of ``chosen``, less each ``wait_all`` one of whose branches
    goes: the new run schedules that branch again and must wait for it again."""
    kept = [row for row in chosen if row.status in KEPT]
    gone = {row.position for row in replayed} - {row.position for row in kept}
    return [
        row for row in kept if row.kind != StepKind.GROUP or not gone & set(_group_positions(row))
    ]


def _group_positions(row: Step) -> list[str]:
    positions = row.result.get("positions") if isinstance(row.result, dict) else None
    return [p for p in positions if isinstance(p, str)] if isinstance(positions, list) else []


def _copy(row: Step, run: Run) -> Step:
    return Step(
        run=run,
        execution_id=row.execution_id,
        run_index=run.index,
        sequence=row.sequence,
        position=row.position,
        name=row.name,
        kind=row.kind,
        status=row.status,
        result=row.result,
        error=row.error,
        attempts=row.attempts,
        wake_at=row.wake_at,
        call_hash=row.call_hash,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _named(row: Step, name: str) -> bool:
    return row.name == name or row.position == name


def _after(row: Step, first: Step) -> bool:
    """Whether ``row`` is ``first`` or came after it in the run."""
    if row.sequence and first.sequence:
        return row.sequence >= first.sequence
    return row.created_at >= first.created_at


def _names(rows: list[Step]) -> list[str]:
    return sorted({row.name for row in rows})


def _fresh(execution_id: str) -> Execution:
    return Execution.objects.get(pk=execution_id)


def _by(value: Any) -> str:
    return serialization.text_argument(value, "by", 200)


async def acancel(execution_id: str, *, reason: str = "", by: str = "") -> Execution:
    return await sync_to_async(cancel)(execution_id, reason=reason, by=by)
