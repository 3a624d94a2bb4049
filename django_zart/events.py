"""Sending events to executions: from code, the ``zart`` command and the HTTP view."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from . import serialization
from .conf import get_settings
from .db import get_store
from .errors import ExecutionFinished, ExecutionNotFound, InvalidArgument
from .models import Event, Execution, Step, Task
from .names import MAX_ID_LENGTH, check_name
from .states import TERMINAL, StepKind, StepStatus, TaskKind


def send_event(execution_id: str, name: str, payload: Any = None, *, by: str = "") -> bool:
    """Store event ``name`` for the execution and wake it if it waits for it.

    Returns ``True`` when the execution was waiting for this event (it is due now), and
    ``False`` when the event is kept for a later ``wait_for_event`` of that name. Raises
    ``ExecutionNotFound`` for an unknown id and ``ExecutionFinished`` for a finished one:
    nothing is stored then. Joins the caller's transaction like ``start``. ``by`` says
    who sent it; it is stored with the event.
    """
    check_name(execution_id, "execution_id", limit=MAX_ID_LENGTH)
    check_name(name, "The event name")
    if not isinstance(by, str):
        raise InvalidArgument("by must be a string, not %r." % (by,))
    what = "the payload of event %r" % name
    encoded = serialization.encode(payload, what)
    serialization.dumps(encoded, what, get_settings().max_payload_bytes)
    with transaction.atomic():
        # The body's task, then the execution: the order a worker's writes lock them in.
        # The execution's row lock orders this against the worker's finishing statement:
        # an event is either stored for a live execution or refused, never stored for a
        # finished one.
        body = Task.objects.select_for_update().filter(
            execution_id=execution_id, kind=TaskKind.BODY
        )
        list(body.values_list("pk", flat=True))
        row = (
            Execution.objects.select_for_update()
            .filter(pk=execution_id)
            .values_list("status", "run_index")
            .first()
        )
        if row is None:
            raise ExecutionNotFound(execution_id)
        status, run_index = row
        if status in TERMINAL:
            raise ExecutionFinished(execution_id, status, "take events; the event was not stored")
        Event.objects.create(
            execution_id=execution_id,
            name=name,
            payload=encoded,
            sent_by=serialization.clean(by)[:200],
        )
        waiting = Step.objects.filter(
            execution_id=execution_id,
            run_index=run_index,
            kind=StepKind.EVENT,
            name=name,
            status=StepStatus.WAITING,
        ).exists()
        if waiting:
            get_store().wake_body(execution_id)
        else:
            # A worker holding the execution may be about to suspend on this very wait:
            # wake_pending makes its release due at once.
            Task.objects.filter(execution_id=execution_id, kind=TaskKind.BODY).update(
                wake_pending=True
            )
    return waiting


async def asend_event(execution_id: str, name: str, payload: Any = None, *, by: str = "") -> bool:
    return await sync_to_async(send_event)(execution_id, name, payload, by=by)
