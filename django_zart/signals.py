"""Signals of an execution's life, sent once per change of state, after it is committed.

Receivers hear of a change only once it is durable: each signal is sent from
``transaction.on_commit`` (at once in autocommit; when the enclosing transaction commits
otherwise, as for an atomic step), and never for what a replay finds already done. A
worker that dies between the commit and the send loses that one signal: they are for
reactions (metrics, notifications, cache invalidation), not for bookkeeping that must
not miss anything; that belongs in a step.

The sender is the registered ``Workflow`` (``@receiver(execution_finished,
sender=my_workflow)``), or ``None`` for an execution whose workflow this process does
not know. A receiver that raises is logged with its traceback and does not disturb the
worker, nor the other receivers.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal

from .errors import UnknownWorkflow

logger = logging.getLogger(__name__)

execution_started = Signal()
"""A new execution began its first run. Arguments: ``execution_id``, ``workflow``
(the name), ``input``."""

step_completed = Signal()
"""A step (or a parallel branch) completed and its result is checkpointed. Arguments:
``execution_id``, ``workflow``, ``step`` (its position, e.g. ``"charge#2"``), ``name``
(the step's name), ``attempt`` and ``result``."""

step_failed = Signal()
"""A step failed for good (its retries, if any, are spent) and the failure is
checkpointed. Arguments: ``execution_id``, ``workflow``, ``step``, ``name``, ``attempt``
and ``error`` (a dict: ``type``, ``message``, ``traceback``)."""

execution_finished = Signal()
"""An execution ended: ``status`` is ``"COMPLETED"``, ``"FAILED"`` or ``"CANCELLED"``.
Arguments: ``execution_id``, ``workflow``, ``status``, ``output`` and ``error``."""


def send_on_commit(signal: Signal, workflow: str, **kwargs: Any) -> None:
    """Send ``signal`` once the current transaction commits (at once outside one)."""
    if not signal.has_listeners():
        return  # the common case costs one lookup
    transaction.on_commit(lambda: send_now(signal, workflow, **kwargs))


def send_now(signal: Signal, workflow: str, **kwargs: Any) -> None:
    """Send ``signal`` to every receiver; log the ones that raise."""
    from .registry import get_workflow

    try:
        sender: object = get_workflow(workflow)
    except UnknownWorkflow:
        sender = None
    for receiver, result in signal.send_robust(sender, workflow=workflow, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "Signal receiver %r failed execution=%s workflow=%s; the worker goes on",
                receiver,
                kwargs.get("execution_id"),
                workflow,
                exc_info=result,
            )
