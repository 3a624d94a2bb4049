"""Run one claimed execution until it completes, fails or suspends.

The body is replayed from the top with the run's checkpoints loaded in one query;
completed steps return their stored results, the first new step runs, and every new
checkpoint is committed before the next step starts. The body never runs inside a
transaction of ours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync

from . import serialization
from .conf import get_settings
from .context import Abort, ExecutionContext, LeaseLost, Suspend, current
from .db.base import Store
from .db.types import Claim
from .errors import (
    ExecutionTimedOut,
    SerializationError,
    UnknownWorkflow,
    WorkerCrashLoop,
    ZartError,
)
from .registry import Workflow, get_workflow
from .states import ExecutionStatus, RunReason, TaskKind

logger = logging.getLogger(__name__)


def execute(claim: Claim, store: Store) -> str:
    """Advance the execution as far as it goes; return what happened to it."""
    try:
        return _execute(claim, store)
    except LeaseLost:
        logger.warning(
            "Lease lost execution=%s workflow=%s: another worker holds it now; this "
            "worker's result is discarded",
            claim.execution_id,
            claim.workflow,
        )
        return "lease-lost"


def _execute(claim: Claim, store: Store) -> str:
    if claim.kind == TaskKind.BRANCH:
        from .branches import execute_branch

        return execute_branch(claim, store)
    try:
        workflow = get_workflow(claim.workflow)
    except UnknownWorkflow as exc:
        return _fail(claim, store, exc, None)
    claim.timeout = workflow.timeout
    compensating = claim.run_reason == RunReason.COMPENSATION
    if compensating:
        claim.deadline_at = None  # the handler runs after the deadline that failed it
    if claim.recoveries and claim.recoveries >= get_settings().max_recoveries:
        return _fail(claim, store, WorkerCrashLoop(claim.execution_id, claim.recoveries), workflow)
    ctx = ExecutionContext(claim=claim, store=store, loaded=store.load_checkpoints(claim))
    if claim.deadline_at is not None and ctx.now() >= claim.deadline_at:
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
    token = current.set(ctx)
    try:
        if compensating:
            return _compensate(claim, store, workflow)
        output = _call(workflow.fn, serialization.decode(claim.input))
    except Suspend as suspend:
        return _suspend(claim, store, suspend)
    except Abort as abort:
        return _fail(claim, store, abort.error, workflow)
    except Exception as exc:
        if claim.run_index <= workflow.max_retries:
            index = store.rerun(claim, error=serialization.error_text(exc))
            logger.info(
                "Execution retried execution=%s workflow=%s run=%d error=%s",
                claim.execution_id,
                claim.workflow,
                index,
                type(exc).__name__,
            )
            return "retried"
        return _fail(claim, store, exc, workflow)
    finally:
        current.reset(token)
    return _complete(claim, store, output, workflow)


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    if asyncio.iscoroutinefunction(fn):
        return async_to_sync(fn)(*args)
    return fn(*args)


def _suspend(claim: Claim, store: Store, suspend: Suspend) -> str:
    wake_at = suspend.wake_at
    if claim.deadline_at is not None:
        wake_at = claim.deadline_at if wake_at is None else min(wake_at, claim.deadline_at)
    store.suspend(claim, wake_at, suspend.checkpoint)
    logger.info(
        "Execution suspended execution=%s workflow=%s until=%s",
        claim.execution_id,
        claim.workflow,
        "an event" if wake_at is None else wake_at.isoformat(),
    )
    return "suspended"


def _compensate(claim: Claim, store: Store, workflow: Workflow) -> str:
    """Run ``on_failure`` to its end, then fail the execution with the original error."""
    assert workflow.on_failure is not None
    error = dict(store.execution_error(claim.execution_id) or {})
    try:
        _call(workflow.on_failure, serialization.decode(claim.input), dict(error))
    except Suspend as suspend:
        return _suspend(claim, store, suspend)
    except (Abort, Exception) as exc:
        failure = exc.error if isinstance(exc, Abort) else exc
        error["compensation"] = {
            k: v
            for k, v in serialization.describe_exception(failure).items()
            if k in ("type", "message", "traceback")
        }
    else:
        error["compensation"] = "completed"
    store.finish(
        claim,
        status=ExecutionStatus.FAILED,
        output=None,
        error=serialization.dumps(error, "an error", serialization.ERROR_LIMIT),
    )
    logger.info(
        "Execution failed execution=%s workflow=%s error=%s compensation=%s",
        claim.execution_id,
        claim.workflow,
        error.get("type"),
        "completed" if error["compensation"] == "completed" else "failed",
    )
    return "failed"


def _complete(claim: Claim, store: Store, output: Any, workflow: Workflow) -> str:
    what = "the output of workflow %r" % claim.workflow
    try:
        text = serialization.dumps(
            serialization.encode(output, what), what, get_settings().max_payload_bytes
        )
    except SerializationError as exc:
        return _fail(claim, store, exc, workflow)
    store.finish(claim, status=ExecutionStatus.COMPLETED, output=text, error=None)
    logger.info("Execution completed execution=%s workflow=%s", claim.execution_id, claim.workflow)
    return "completed"


def _fail(claim: Claim, store: Store, exc: BaseException, workflow: Workflow | None) -> str:
    """Fail the execution, or hand it to the workflow's ``on_failure`` first (once)."""
    if workflow is not None and workflow.on_failure is not None:
        error = serialization.error_text(exc)
        index = store.rerun(claim, error=error, reason=RunReason.COMPENSATION)
        logger.info(
            "Execution failing execution=%s workflow=%s error=%s: running on_failure in run %d",
            claim.execution_id,
            claim.workflow,
            type(exc).__name__,
            index,
        )
        return "compensating"
    error = serialization.error_text(exc)
    store.finish(claim, status=ExecutionStatus.FAILED, output=None, error=error)
    log = logger.info if isinstance(exc, ZartError) else logger.warning
    log(
        "Execution failed execution=%s workflow=%s error=%s: %s",
        claim.execution_id,
        claim.workflow,
        type(exc).__name__,
        exc,
    )
    return "failed"
