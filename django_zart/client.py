"""Starting executions and reading their outcome: the API for views, shells and tests.

``start`` joins the caller's transaction: inside ``transaction.atomic()`` the execution
exists only if that transaction commits, so a rolled-back signup starts no workflow.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.db.models.functions import Now

from . import serialization
from .conf import get_settings
from .db import get_store
from .db.transitions import end_run, transition
from .durations import Duration, to_seconds
from .errors import (
    ExecutionAlreadyExists,
    ExecutionCancelled,
    ExecutionFailed,
    ExecutionNotFound,
    WaitTimeout,
)
from .models import Execution, Run, Task
from .names import MAX_ID_LENGTH, MAX_QUEUE_LENGTH, check_name
from .registry import Workflow, get_workflow
from .states import TERMINAL, ExecutionStatus, RunStatus

logger = logging.getLogger(__name__)


def start(
    workflow: str | Workflow,
    input: Any = None,
    *,
    execution_id: str | None = None,
    queue: str | None = None,
) -> str:
    """Start an execution of ``workflow`` and return its id.

    The id is the idempotency key: if an execution with it exists, running or finished,
    ``ExecutionAlreadyExists`` is raised with its status and nothing is started.
    """
    definition = get_workflow(workflow)
    if execution_id is None:
        execution_id = str(uuid.uuid4())
    check_name(execution_id, "execution_id", limit=MAX_ID_LENGTH)
    if queue is not None:
        check_name(queue, "queue", limit=MAX_QUEUE_LENGTH)
    return create(definition, input, execution_id, queue or definition.queue)


def create(
    definition: Workflow,
    input: Any,
    execution_id: str,
    queue: str,
    *,
    parent_id: str | None = None,
    wake_parent: bool = False,
) -> str:
    """Insert the execution, its first run and its task, and wake a worker, atomically."""
    what = "the input of workflow %r" % definition.name
    encoded = serialization.encode(input, what)
    serialization.dumps(encoded, what, get_settings().max_payload_bytes)
    deadline = None
    if definition.timeout is not None:
        deadline = Now() + timedelta(seconds=definition.timeout)
    try:
        with transaction.atomic():
            Execution.objects.create(
                id=execution_id,
                workflow=definition.name,
                queue=queue,
                input=encoded,
                deadline_at=deadline,
                parent_id=parent_id,
                wake_parent=wake_parent,
            )
            Run.objects.create(execution_id=execution_id, index=1)
            Task.objects.create(execution_id=execution_id, queue=queue)
            get_store().notify(queue)
    except IntegrityError:
        existing = Execution.objects.filter(pk=execution_id).values_list("status", flat=True)
        status = existing.first()
        if status is None:
            raise
        raise ExecutionAlreadyExists(execution_id, status) from None
    return execution_id


def cancel(execution_id: str, *, reason: str = "") -> bool:
    """Cancel an unfinished execution and its unfinished children.

    Its queued work is dropped at once; a worker running it finds out at its next write
    (a step's checkpoint) and stops there, so a step already running completes its side
    effects but its result is discarded. Returns ``False`` if it had already finished.
    A parent waiting for it in ``run_workflow`` sees ``ExecutionCancelled``.
    """
    check_name(execution_id, "execution_id", limit=MAX_ID_LENGTH)
    error = {
        "type": "django_zart.errors.ExecutionCancelled",
        "message": serialization.clean(str(reason or "Cancelled on request."))[:10_000],
    }
    with transaction.atomic():
        # Tasks first, then the execution: the order a worker's writes lock them in.
        list(Task.objects.select_for_update().filter(execution_id=execution_id).order_by("pk"))
        row = (
            Execution.objects.select_for_update()
            .filter(pk=execution_id)
            .values_list("status", "run_index", "parent_id", "wake_parent")
            .first()
        )
        if row is None:
            raise ExecutionNotFound(execution_id)
        status, run_index, parent_id, wake_parent = row
        if status in TERMINAL:
            return False
        Task.objects.filter(execution_id=execution_id).delete()
        transition(execution_id, ExecutionStatus.CANCELLED, error=error, finished_at=Now())
        run = Run.objects.filter(execution_id=execution_id, index=run_index).values_list("pk")
        end_run(run.get()[0], RunStatus.CANCELLED, error)
        if wake_parent and parent_id is not None:
            get_store().wake_body(parent_id)
        children = list(
            Execution.objects.filter(parent_id=execution_id)
            .unfinished()
            .values_list("pk", flat=True)
        )
        for child in children:
            cancel(child, reason="Its parent %r was cancelled." % execution_id)
    logger.info("Execution cancelled execution=%s children=%d", execution_id, len(children))
    return True


async def acancel(execution_id: str, *, reason: str = "") -> bool:
    return await sync_to_async(cancel)(execution_id, reason=reason)


def status(execution_id: str) -> Execution:
    """The execution row: status, output, error and timestamps."""
    check_name(execution_id, "execution_id", limit=MAX_ID_LENGTH)
    try:
        return Execution.objects.get(pk=execution_id)
    except Execution.DoesNotExist:
        raise ExecutionNotFound(execution_id) from None


def wait(execution_id: str, timeout: Duration, poll_interval: Duration | None = None) -> Execution:
    """Block until the execution finishes and return its row, or raise ``WaitTimeout``."""
    limit = to_seconds(timeout)
    deadline = time.monotonic() + limit
    for delay in _poll_delays(poll_interval):
        execution = status(execution_id)
        if execution.is_finished:
            return execution
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(execution_id, limit, execution.status)
        time.sleep(min(delay, remaining))
    raise AssertionError("unreachable")


def wait_completion(
    execution_id: str, timeout: Duration, poll_interval: Duration | None = None
) -> Any:
    """Block until the execution finishes and return its output (decoded).

    Raises ``ExecutionFailed`` or ``ExecutionCancelled`` with the stored error.
    """
    return outcome(wait(execution_id, timeout, poll_interval))


def start_and_wait(
    workflow: str | Workflow,
    input: Any = None,
    *,
    execution_id: str | None = None,
    timeout: Duration,
    queue: str | None = None,
) -> Any:
    """``start`` then ``wait_completion``."""
    execution_id = start(workflow, input, execution_id=execution_id, queue=queue)
    return wait_completion(execution_id, timeout)


def outcome(execution: Execution) -> Any:
    """The decoded output of a finished execution, or its failure raised."""
    if execution.status == ExecutionStatus.COMPLETED:
        return serialization.decode(execution.output)
    if execution.status == ExecutionStatus.CANCELLED:
        raise ExecutionCancelled(execution.pk, execution.error)
    raise ExecutionFailed(execution.pk, execution.error)


def _poll_delays(poll_interval: Duration | None) -> Any:
    """Poll fast at first (short workflows), then settle at the interval."""
    ceiling = to_seconds(poll_interval) if poll_interval is not None else 0.2
    delay = min(0.005, ceiling) if poll_interval is None else ceiling
    while True:
        yield delay
        delay = min(delay * 2, ceiling)


# -- async twins ---------------------------------------------------------------------


async def astart(
    workflow: str | Workflow,
    input: Any = None,
    *,
    execution_id: str | None = None,
    queue: str | None = None,
) -> str:
    return await sync_to_async(start)(workflow, input, execution_id=execution_id, queue=queue)


async def astatus(execution_id: str) -> Execution:
    return await sync_to_async(status)(execution_id)


async def await_execution(
    execution_id: str, timeout: Duration, poll_interval: Duration | None = None
) -> Execution:
    """Async ``wait``: waits with ``asyncio.sleep``, holding no thread."""
    limit = to_seconds(timeout)
    deadline = time.monotonic() + limit
    for delay in _poll_delays(poll_interval):
        execution = await astatus(execution_id)
        if execution.is_finished:
            return execution
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(execution_id, limit, execution.status)
        await asyncio.sleep(min(delay, remaining))
    raise AssertionError("unreachable")


async def await_completion(
    execution_id: str, timeout: Duration, poll_interval: Duration | None = None
) -> Any:
    return outcome(await await_execution(execution_id, timeout, poll_interval))


async def astart_and_wait(
    workflow: str | Workflow,
    input: Any = None,
    *,
    execution_id: str | None = None,
    timeout: Duration,
    queue: str | None = None,
) -> Any:
    execution_id = await astart(workflow, input, execution_id=execution_id, queue=queue)
    return await await_completion(execution_id, timeout)
