"""Durable workflows for Django: checkpointed steps on the database you already have.

Use it as ``import django_zart as zart``. Everything public is listed in ``__all__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .context import WorkflowInfo, context
from .cron import CronError
from .decorators import step, workflow
from .errors import (
    DuplicateStepName,
    EventTimeout,
    ExecutionAlreadyExists,
    ExecutionCancelled,
    ExecutionFailed,
    ExecutionFinished,
    ExecutionNotFinished,
    ExecutionNotFound,
    ExecutionTimedOut,
    InvalidArgument,
    NonDeterminismError,
    NotInWorkflow,
    OperationRefused,
    PauseRuleNotFound,
    PayloadTooLarge,
    SerializationError,
    StepFailed,
    StepNotFailed,
    StepNotFound,
    StepTimeout,
    UnknownWorkflow,
    WaitTimeout,
    WorkerCrashLoop,
    WorkerIdInUse,
    ZartError,
)
from .parallel import Handle, map, schedule, wait_all
from .retry import Retry
from .states import ExecutionStatus, OverlapPolicy, RunStatus, StepStatus
from .steps import step_or
from .waits import capture, now, sleep, sleep_until, wait_for_event

if TYPE_CHECKING:
    from . import testing as testing
    from .children import run_workflow, start_workflow
    from .client import (
        astart,
        astart_and_wait,
        astart_many,
        astatus,
        await_completion,
        await_execution,
        start,
        start_and_wait,
        start_many,
        status,
        wait,
        wait_completion,
    )
    from .events import asend_event, send_event
    from .operations import acancel, cancel, rerun, restart, retry_step
    from .overview import executions, stats
    from .pauses import pause, pause_rules, resume
    from .retention import prune
    from .schedules import schedule_recurring, unschedule

__version__ = "0.1.0"

_CLIENT = {
    "astart",
    "astart_and_wait",
    "astart_many",
    "astatus",
    "await_completion",
    "await_execution",
    "start",
    "start_and_wait",
    "start_many",
    "status",
    "wait",
    "wait_completion",
}


_LAZY = {
    **dict.fromkeys(_CLIENT, "client"),
    "run_workflow": "children",
    "start_workflow": "children",
    "asend_event": "events",
    "send_event": "events",
    "acancel": "operations",
    "cancel": "operations",
    "rerun": "operations",
    "restart": "operations",
    "retry_step": "operations",
    "executions": "overview",
    "stats": "overview",
    "pause": "pauses",
    "pause_rules": "pauses",
    "resume": "pauses",
    "prune": "retention",
    "schedule_recurring": "schedules",
    "unschedule": "schedules",
}
"""Names whose modules import the models: loaded on first use, once the app registry is
ready, so that ``import django_zart`` works in settings and app modules."""


_SUBMODULES = {"testing"}
"""Submodules reachable as attributes (``zart.testing.run``), imported on first use for the
same reason."""


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module 'django_zart' has no attribute %r" % name)
    return getattr(importlib.import_module("." + module, __name__), name)


__all__ = [
    "CronError",
    "DuplicateStepName",
    "EventTimeout",
    "ExecutionAlreadyExists",
    "ExecutionCancelled",
    "ExecutionFailed",
    "ExecutionFinished",
    "ExecutionNotFinished",
    "ExecutionNotFound",
    "ExecutionStatus",
    "ExecutionTimedOut",
    "Handle",
    "InvalidArgument",
    "NonDeterminismError",
    "NotInWorkflow",
    "OperationRefused",
    "OverlapPolicy",
    "PauseRuleNotFound",
    "PayloadTooLarge",
    "Retry",
    "RunStatus",
    "SerializationError",
    "StepFailed",
    "StepNotFailed",
    "StepNotFound",
    "StepStatus",
    "StepTimeout",
    "UnknownWorkflow",
    "WaitTimeout",
    "WorkerCrashLoop",
    "WorkerIdInUse",
    "WorkflowInfo",
    "ZartError",
    "acancel",
    "asend_event",
    "astart",
    "astart_and_wait",
    "astart_many",
    "astatus",
    "await_completion",
    "await_execution",
    "cancel",
    "capture",
    "context",
    "executions",
    "map",
    "now",
    "pause",
    "pause_rules",
    "prune",
    "rerun",
    "restart",
    "resume",
    "retry_step",
    "run_workflow",
    "schedule",
    "schedule_recurring",
    "send_event",
    "sleep",
    "sleep_until",
    "start",
    "start_and_wait",
    "start_many",
    "start_workflow",
    "stats",
    "status",
    "step",
    "step_or",
    "unschedule",
    "wait",
    "wait_all",
    "wait_completion",
    "wait_for_event",
    "workflow",
]
