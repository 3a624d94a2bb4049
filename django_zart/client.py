"""Starting executions and reading their outcome: the API for views, shells and tests.

``start`` joins the caller's transaction: inside ``transaction.atomic()`` the execution
exists only if that transaction commits, so a rolled-back signup starts no workflow.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from . import pauses, serialization
from .conf import get_settings
from .db import get_store
from .db.types import NewExecution
from .durations import Duration, to_seconds
from .errors import (
    ExecutionAlreadyExists,
    ExecutionCancelled,
    ExecutionFailed,
    ExecutionNotFound,
    InvalidArgument,
    WaitTimeout,
)
from .ids import new_execution_id
from .models import Execution
from .names import MAX_ID_LENGTH, MAX_QUEUE_LENGTH, check_name, check_priority
from .registry import Workflow, get_workflow
from .states import ExecutionStatus, RunReason

logger = logging.getLogger(__name__)


IF_EXISTS = ("raise", "return")

MAX_LIMIT_KEY_LENGTH = 255


def start(
    workflow: str | Workflow,
    input: Any = None,
    *,
    execution_id: str | None = None,
    queue: str | None = None,
    if_exists: str = "raise",
    by: str = "",
    priority: int | None = None,
) -> str:
    """Start an execution of ``workflow`` and return its id.

    The id is the idempotency key: if an execution with it exists, running or finished,
    nothing is started, and ``ExecutionAlreadyExists`` is raised with its status; with
    ``if_exists="return"`` its id is returned instead, if it runs the same workflow.
    ``by`` says who asked; it is recorded on the run. ``priority`` (default: the
    workflow's): among due work of its queue, a higher priority is claimed first.
    """
    definition = get_workflow(workflow)
    _check_start_options(queue, if_exists, by)
    rank = definition.priority if priority is None else check_priority(priority)
    if execution_id is None:
        execution_id = new_execution_id()
    check_name(execution_id, "execution_id", limit=MAX_ID_LENGTH)
    try:
        return create(
            new_execution(
                definition,
                input,
                execution_id,
                queue or definition.queue,
                by=serialization.clean(by),
                priority=rank,
            )
        )
    except ExecutionAlreadyExists as exc:
        if if_exists == "return" and exc.workflow == definition.name:
            return execution_id
        raise


def start_many(
    workflow: str | Workflow,
    inputs: Iterable[Any],
    *,
    execution_ids: Iterable[str] | None = None,
    queue: str | None = None,
    if_exists: str = "raise",
    by: str = "",
    priority: int | None = None,
) -> list[str]:
    """Start one execution of ``workflow`` per input, in one transaction; return the ids.

    All or nothing: if one of ``execution_ids`` exists, ``ExecutionAlreadyExists`` is
    raised and none is started, unless ``if_exists="return"``, which leaves the existing
    ones (of the same workflow) as they are and starts the others. Workers are woken once.
    """
    definition = get_workflow(workflow)
    _check_start_options(queue, if_exists, by)
    rank = definition.priority if priority is None else check_priority(priority)
    inputs = list(inputs)
    if execution_ids is None:
        ids = [new_execution_id() for _ in inputs]
    else:
        if isinstance(execution_ids, str):
            raise InvalidArgument("execution_ids must be a list of ids, not a string.")
        ids = list(execution_ids)
        if len(ids) != len(inputs):
            raise InvalidArgument(
                "%d execution_ids for %d inputs: give one id per input." % (len(ids), len(inputs))
            )
        for execution_id in ids:
            check_name(execution_id, "execution_id", limit=MAX_ID_LENGTH)
        if len(set(ids)) != len(ids):
            twice = next(i for i in ids if ids.count(i) > 1)
            raise InvalidArgument("execution_ids holds %r twice." % twice)
    by = serialization.clean(by)
    new = [
        new_execution(
            definition, data, execution_id, queue or definition.queue, by=by, priority=rank
        )
        for data, execution_id in zip(inputs, ids, strict=True)
    ]
    if not new:
        return []
    with transaction.atomic():
        created = set(get_store().create_executions(new))
        for execution_id in ids:
            if execution_id not in created:
                exists = already_exists(execution_id)
                if if_exists == "raise" or exists.workflow != definition.name:
                    raise exists  # rolls back every start of the call
    return ids


def _check_start_options(queue: str | None, if_exists: str, by: object) -> None:
    if if_exists not in IF_EXISTS:
        raise InvalidArgument("if_exists must be 'raise' or 'return', not %r." % (if_exists,))
    if queue is not None:
        check_name(queue, "queue", limit=MAX_QUEUE_LENGTH)
    if not isinstance(by, str):
        raise InvalidArgument("by must be a string, not %r." % (by,))


def new_execution(
    definition: Workflow,
    input: Any,
    execution_id: str,
    queue: str,
    *,
    parent_id: str | None = None,
    wake_parent: bool = False,
    reason: str = RunReason.INITIAL,
    by: str = "",
    priority: int | None = None,
) -> NewExecution:
    """The row to insert, its input encoded and checked against the payload limit.

    An execution a pause rule holds (as this process last read the rules) starts paused.
    """
    what = "the input of workflow %r" % definition.name
    encoded = serialization.encode(input, what)
    text = serialization.dumps(encoded, what, get_settings().max_payload_bytes)
    return NewExecution(
        id=execution_id,
        workflow=definition.name,
        queue=queue,
        input_json=None if encoded is None else text,
        timeout=definition.timeout,
        parent_id=parent_id,
        wake_parent=wake_parent,
        paused_by=pauses.hold_new(execution_id, definition.name),
        reason=reason,
        triggered_by=by[:200],
        priority=definition.priority if priority is None else priority,
        limit_key=limit_key(definition, input),
        limit_max=definition.concurrency,
    )


def limit_key(definition: Workflow, input: Any) -> str | None:
    """The concurrency key of a new execution: its workflow's name, and its key if any.

    ``InvalidArgument`` (before anything is written) if the key function fails or gives
    something other than a string or an int.
    """
    if definition.concurrency is None:
        return None
    if definition.concurrency_key is None:
        return definition.name
    try:
        key = definition.concurrency_key(input)
    except Exception as exc:
        raise InvalidArgument(
            "The concurrency_key of workflow %r failed on this input: %s: %s"
            % (definition.name, type(exc).__name__, exc)
        ) from exc
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise InvalidArgument(
            "The concurrency_key of workflow %r must give a string or an int, not %r."
            % (definition.name, key)
        )
    text = serialization.clean(str(key))
    full = "%s/%s" % (definition.name, text)
    if len(full) > MAX_LIMIT_KEY_LENGTH:  # long keys are told apart by their digest
        full = "%s/#%s" % (definition.name, hashlib.sha256(text.encode()).hexdigest())
    return full


def create(new: NewExecution) -> str:
    """Insert the execution, its first run and its task, and wake a worker, atomically:
    on PostgreSQL one statement, so a ``start()`` in autocommit is one round trip."""
    if not get_store().create_executions([new]):
        raise already_exists(new.id)
    return new.id


def already_exists(execution_id: str) -> ExecutionAlreadyExists:
    """The error for an id that was taken when its insert was tried."""
    row = Execution.objects.filter(pk=execution_id).values_list("status", "workflow").first()
    if row is None:  # deleted since (retention): it existed when the insert was refused
        return ExecutionAlreadyExists(execution_id, "DELETED")
    return ExecutionAlreadyExists(execution_id, row[0], row[1])


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
    """Poll fast at first (short workflows end within milliseconds), then settle at the
    interval. Each poll is one primary-key read; growing by half each time, a workflow
    that ends after T ms is seen by about 1.5 T ms, not 2 T."""
    ceiling = to_seconds(poll_interval) if poll_interval is not None else 0.2
    delay = min(0.002, ceiling) if poll_interval is None else ceiling
    while True:
        yield delay
        delay = min(delay * 1.5, ceiling)


# -- async twins ---------------------------------------------------------------------


async def astart(
    workflow: str | Workflow,
    input: Any = None,
    *,
    execution_id: str | None = None,
    queue: str | None = None,
    if_exists: str = "raise",
    by: str = "",
    priority: int | None = None,
) -> str:
    return await sync_to_async(start)(
        workflow,
        input,
        execution_id=execution_id,
        queue=queue,
        if_exists=if_exists,
        by=by,
        priority=priority,
    )


async def astart_many(
    workflow: str | Workflow,
    inputs: Iterable[Any],
    *,
    execution_ids: Iterable[str] | None = None,
    queue: str | None = None,
    if_exists: str = "raise",
    by: str = "",
    priority: int | None = None,
) -> list[str]:
    return await sync_to_async(start_many)(
        workflow,
        inputs,
        execution_ids=execution_ids,
        queue=queue,
        if_exists=if_exists,
        by=by,
        priority=priority,
    )


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
