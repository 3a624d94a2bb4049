"""Run one claimed execution until it completes, fails or suspends.

The body is replayed from the top with the run's checkpoints loaded in one query;
completed steps return their stored results, the first new step runs, and every new
checkpoint is committed before the next step starts. The body never runs inside a
transaction of ours.

``execute`` returns what happened as an ``Outcome``. One thing it does not decide:
``DatabaseUnavailable`` (the connection broke, the server restarts) propagates to the
worker, which waits for the database and calls ``execute`` again with the same claim:
every write is fenced by the claim, so a replay picks up exactly where the last
committed checkpoint left off, and nothing is failed or counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from . import faults, pauses, serialization, signals
from .branches import execute_branch
from .conf import get_settings
from .context import Abort, ExecutionContext, Pause, Suspend, current, run_async_body
from .db.base import Store
from .db.guard import connection_lost
from .db.types import Claim, DatabaseUnavailable, LeaseLost, StoreRefused, loads_json
from .deferral import defer_unknown
from .errors import (
    ExecutionTimedOut,
    SerializationError,
    UnknownWorkflow,
    WorkerCrashLoop,
    ZartError,
)
from .registry import Workflow, get_workflow
from .states import TERMINAL, ExecutionStatus, RunReason, TaskKind

logger = logging.getLogger(__name__)


OPERATOR_RUNS = frozenset({RunReason.RESTART, RunReason.RERUN, RunReason.RETRY_STEP})


class Outcome(StrEnum):
    """What a worker's pass over a claim did to its execution."""

    COMPLETED = "completed"
    FAILED = "failed"
    SUSPENDED = "suspended"
    """Waiting for a time or an event; released for any worker."""
    RETRIED = "retried"
    """The body raised and a new run (``max_retries``) is due at once."""
    COMPENSATING = "compensating"
    """Failed for good; its ``on_failure`` handler is due as a new run."""
    LEASE_LOST = "lease-lost"
    """Another worker took it over; this worker's result was discarded."""
    CANCELLED = "cancelled"
    """Cancelled while this worker ran it; it stopped at its next durable call."""
    DROPPED = "dropped"
    """The execution had finished already; its left-over task was deleted."""
    PAUSED = "paused"
    """A pause rule holds it; due again when the rule ends."""
    DEFERRED = "deferred"
    """Its workflow or step is not in this worker's code; given back for a worker that
    has it (``deferral``)."""


def execute(claim: Claim, store: Store) -> Outcome:
    """Advance the execution as far as it goes; return what happened to it."""
    try:
        return _execute(claim, store)
    except LeaseLost:
        return _lost(claim, store)


def _lost(claim: Claim, store: Store) -> Outcome:
    status, run_index, reason = store.execution_state(claim.execution_id) or (None, 0, None)
    if run_index > claim.run_index and reason in OPERATOR_RUNS:
        logger.info(
            "Execution reopened while running execution=%s workflow=%s run=%d: an operator "
            "asked for a new run (%s); this worker's run is discarded",
            claim.execution_id,
            claim.workflow,
            claim.run_index,
            reason,
        )
        return Outcome.LEASE_LOST
    if status == ExecutionStatus.CANCELLED:
        store.drop(claim)
        logger.info(
            "Execution cancelled while running execution=%s workflow=%s: stopped at its "
            "next durable call",
            claim.execution_id,
            claim.workflow,
        )
        return Outcome.CANCELLED
    logger.warning(
        "Lease lost execution=%s workflow=%s status=%s: another worker holds it now; this "
        "worker's result is discarded",
        claim.execution_id,
        claim.workflow,
        status,
    )
    return Outcome.LEASE_LOST


def _execute(claim: Claim, store: Store) -> Outcome:
    if claim.unreadable is not None:
        return _fail(
            claim,
            store,
            ZartError(
                "The stored execution %r cannot be read (%s); it is failed so that it does "
                "not block other work." % (claim.execution_id, claim.unreadable)
            ),
            None,
        )
    if claim.status in TERMINAL:
        store.drop(claim)
        return Outcome.DROPPED
    step = claim.branch.name if claim.branch is not None else None
    rule = pauses.matching(claim.execution_id, claim.workflow, step)
    if rule is not None:
        return _pause(claim, store, rule)
    if claim.kind == TaskKind.BRANCH:
        return Outcome(execute_branch(claim, store))
    try:
        workflow = get_workflow(claim.workflow)
    except UnknownWorkflow:
        defer_unknown(claim, store, "workflow", claim.workflow)
        return Outcome.DEFERRED
    if claim.recoveries and claim.recoveries >= get_settings().max_recoveries:
        crash = WorkerCrashLoop(claim.execution_id, claim.recoveries)
        return _fail(claim, store, crash, workflow)
    compensating = claim.run_reason == RunReason.COMPENSATION
    ctx = ExecutionContext(
        claim=claim,
        store=store,
        loaded=store.load_checkpoints(claim),
        # The failure handler runs after the deadline that may have failed the execution.
        deadline=None if compensating else claim.deadline_at,
        timeout=workflow.timeout,
    )
    if ctx.deadline is not None and ctx.now() >= ctx.deadline:
        return _fail(
            claim, store, ExecutionTimedOut(claim.execution_id, workflow.timeout or 0), workflow
        )
    logger.info(
        "Execution %s execution=%s workflow=%s run=%d",
        "started" if claim.fresh else "compensating" if compensating else "resumed",
        claim.execution_id,
        claim.workflow,
        claim.run_index,
    )
    if claim.fresh and claim.run_index == 1 and signals.execution_started.has_listeners():
        signals.send_on_commit(
            signals.execution_started,
            claim.workflow,
            execution_id=claim.execution_id,
            input=serialization.decode(claim.input),
        )
    return _run_body(ctx, workflow, compensating)


def _run_body(ctx: ExecutionContext, workflow: Workflow, compensating: bool) -> Outcome:
    claim, store = ctx.claim, ctx.store
    token = current.set(ctx)
    try:
        if compensating:
            return _compensate(ctx, workflow)
        output = _call(workflow.fn, serialization.decode(claim.input))
    except Suspend as suspend:
        return _suspend(ctx, suspend)
    except Abort as abort:
        return _fail(claim, store, abort.error, workflow)
    except StoreRefused as refused:
        return _fail(claim, store, serialization.refused("a checkpoint", refused), workflow)
    except Exception as exc:
        if connection_lost(exc):
            raise DatabaseUnavailable(exc) from exc
        if claim.run_index <= workflow.max_retries:
            index = store.rerun(claim, error=serialization.error_text(exc))
            logger.info(
                "Execution retried execution=%s workflow=%s run=%d error=%s",
                claim.execution_id,
                claim.workflow,
                index,
                type(exc).__name__,
            )
            return Outcome.RETRIED
        return _fail(claim, store, exc, workflow)
    finally:
        current.reset(token)
    return _complete(claim, store, output, workflow)


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    if asyncio.iscoroutinefunction(fn):
        return run_async_body(fn, *args)
    return fn(*args)


def _pause(claim: Claim, store: Store, rule_id: int) -> Outcome:
    """Hold the claim under the rule; if the rule has ended since it was read, run on."""
    if not store.pause(claim, rule_id):
        pauses.invalidate()
        store.release([claim.token], [claim.task_id])  # due again at once
        return Outcome.SUSPENDED
    logger.info(
        "Execution paused execution=%s workflow=%s rule=%s",
        claim.execution_id,
        claim.workflow,
        rule_id,
    )
    return Outcome.PAUSED


def _suspend(ctx: ExecutionContext, suspend: Suspend) -> Outcome:
    if isinstance(suspend, Pause):
        return _pause(ctx.claim, ctx.store, suspend.rule_id)
    claim, wake_at = ctx.claim, suspend.wake_at
    if ctx.deadline is not None:
        wake_at = ctx.deadline if wake_at is None else min(wake_at, ctx.deadline)
    if suspend.checkpoint is None:
        ctx.store.suspend(claim, wake_at)
    else:
        with faults.around_checkpoint(suspend.checkpoint.kind):
            ctx.store.suspend(claim, wake_at, suspend.checkpoint)
    logger.info(
        "Execution suspended execution=%s workflow=%s until=%s",
        claim.execution_id,
        claim.workflow,
        "an event" if wake_at is None else wake_at.isoformat(),
    )
    return Outcome.SUSPENDED


def _compensate(ctx: ExecutionContext, workflow: Workflow) -> Outcome:
    """Run ``on_failure`` to its end, then fail the execution with the original error."""
    claim, store = ctx.claim, ctx.store
    error = dict(store.execution_error(claim.execution_id) or {})
    try:
        if workflow.on_failure is None:  # removed from the code since the failure
            raise ZartError("The workflow has no on_failure handler any more.")
        _call(workflow.on_failure, serialization.decode(claim.input), dict(error))
    except Suspend as suspend:
        return _suspend(ctx, suspend)
    except (Abort, StoreRefused, Exception) as exc:
        if connection_lost(exc):
            raise DatabaseUnavailable(exc) from exc
        failure: BaseException = exc.error if isinstance(exc, Abort) else exc
        described = serialization.describe_exception(failure)
        error["compensation"] = {k: described[k] for k in ("type", "message", "traceback")}
    else:
        error["compensation"] = "completed"
    _finish(claim, store, ExecutionStatus.FAILED, None, serialization.error_json(error))
    logger.info(
        "Execution failed execution=%s workflow=%s error=%s compensation=%s",
        claim.execution_id,
        claim.workflow,
        error.get("type"),
        "completed" if error["compensation"] == "completed" else "failed",
    )
    return Outcome.FAILED


def _complete(claim: Claim, store: Store, output: Any, workflow: Workflow) -> Outcome:
    what = "the output of workflow %r" % claim.workflow
    try:
        text = serialization.dumps(
            serialization.encode(output, what), what, get_settings().max_payload_bytes
        )
        _finish(claim, store, ExecutionStatus.COMPLETED, text, None)
    except SerializationError as exc:
        return _fail(claim, store, exc, workflow)
    except StoreRefused as refused:
        return _fail(claim, store, serialization.refused(what, refused), workflow)
    logger.info("Execution completed execution=%s workflow=%s", claim.execution_id, claim.workflow)
    return Outcome.COMPLETED


def _fail(claim: Claim, store: Store, exc: BaseException, workflow: Workflow | None) -> Outcome:
    """Fail the execution, or hand it to the workflow's ``on_failure`` first (once)."""
    error = serialization.error_text(exc)
    if workflow is not None and workflow.on_failure is not None:
        index = store.rerun(claim, error=error, reason=RunReason.COMPENSATION)
        logger.info(
            "Execution failing execution=%s workflow=%s error=%s: running on_failure in run %d",
            claim.execution_id,
            claim.workflow,
            type(exc).__name__,
            index,
        )
        return Outcome.COMPENSATING
    try:
        _finish(claim, store, ExecutionStatus.FAILED, None, error)
    except StoreRefused as refused:
        # Stored errors are cleaned, so this is the database refusing something else:
        # record that much, rather than leaving the execution to crash-loop.
        what = "the error of execution %r" % claim.execution_id
        refusal = serialization.error_text(serialization.refused(what, refused))
        _finish(claim, store, ExecutionStatus.FAILED, None, refusal)
    log = logger.info if isinstance(exc, ZartError) else logger.warning
    log(
        "Execution failed execution=%s workflow=%s error=%s: %s",
        claim.execution_id,
        claim.workflow,
        type(exc).__name__,
        serialization.clean(serialization.describe_exception(exc)["message"])[:500],
    )
    return Outcome.FAILED


def _finish(claim: Claim, store: Store, status: str, output: str | None, error: str | None) -> None:
    store.finish(claim, status=status, output=output, error=error)
    faults.point("after-finish")
    if not signals.execution_finished.has_listeners():
        return  # no decoding of the output for nobody
    signals.send_on_commit(
        signals.execution_finished,
        claim.workflow,
        execution_id=claim.execution_id,
        status=status,
        output=None if output is None else serialization.decode(loads_json(output)),
        error=loads_json(error),
    )
