"""Durable workflows for Django: checkpointed steps on the database you already have.

Use it as ``import django_zart as zart``. Everything public is listed in ``__all__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .context import WorkflowInfo, context
from .decorators import step, workflow
from .errors import (
    ExecutionAlreadyExists,
    ExecutionCancelled,
    ExecutionFailed,
    ExecutionNotFound,
    ExecutionTimedOut,
    NonDeterminismError,
    NotInWorkflow,
    PayloadTooLarge,
    SerializationError,
    StepFailed,
    UnknownWorkflow,
    WaitTimeout,
    WorkerCrashLoop,
    ZartError,
)
from .retry import Retry
from .states import ExecutionStatus, RunStatus, StepStatus

if TYPE_CHECKING:
    from .client import (
        astart,
        astart_and_wait,
        astatus,
        await_completion,
        await_execution,
        start,
        start_and_wait,
        status,
        wait,
        wait_completion,
    )

__version__ = "0.1.0"

_CLIENT = {
    "astart",
    "astart_and_wait",
    "astatus",
    "await_completion",
    "await_execution",
    "start",
    "start_and_wait",
    "status",
    "wait",
    "wait_completion",
}


def __getattr__(name: str) -> Any:
    # The client imports the models, which must wait until the app registry is ready.
    if name in _CLIENT:
        from . import client

        return getattr(client, name)
    raise AttributeError("module 'django_zart' has no attribute %r" % name)


__all__ = [
    "ExecutionAlreadyExists",
    "ExecutionCancelled",
    "ExecutionFailed",
    "ExecutionNotFound",
    "ExecutionStatus",
    "ExecutionTimedOut",
    "NonDeterminismError",
    "NotInWorkflow",
    "PayloadTooLarge",
    "Retry",
    "RunStatus",
    "SerializationError",
    "StepFailed",
    "StepStatus",
    "UnknownWorkflow",
    "WaitTimeout",
    "WorkerCrashLoop",
    "WorkflowInfo",
    "ZartError",
    "astart",
    "astart_and_wait",
    "astatus",
    "await_completion",
    "await_execution",
    "context",
    "start",
    "start_and_wait",
    "status",
    "step",
    "wait",
    "wait_completion",
    "workflow",
]
