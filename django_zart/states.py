"""Statuses of executions, runs, steps and attempts, and the allowed transitions.

Kept free of model imports so the public API can export the enums.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import pgettext_lazy


class ExecutionStatus(models.TextChoices):
    PENDING = "PENDING", pgettext_lazy("Execution", "Pending")
    """Started, not yet claimed by a worker."""
    RUNNING = "RUNNING", pgettext_lazy("Execution", "Running")
    """A worker holds it and runs its body."""
    SUSPENDED = "SUSPENDED", pgettext_lazy("Execution", "Suspended")
    """Waiting for a due time (a retry delay, a sleep) or an event; no worker holds it."""
    COMPLETED = "COMPLETED", pgettext_lazy("Execution", "Completed")
    """The workflow returned; ``output`` holds its result."""
    FAILED = "FAILED", pgettext_lazy("Execution", "Failed")
    """The workflow raised after its retries; ``error`` holds why."""
    CANCELLED = "CANCELLED", pgettext_lazy("Execution", "Cancelled")
    """Stopped on request before it finished."""
    PAUSED = "PAUSED", pgettext_lazy("Execution", "Paused")
    """A pause rule holds it: no worker runs it until the rule is resumed or expires."""


TERMINAL: frozenset[str] = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)

TRANSITIONS: dict[str, frozenset[str]] = {
    ExecutionStatus.PENDING: frozenset(
        {
            ExecutionStatus.RUNNING,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
            ExecutionStatus.PAUSED,
        }
    ),
    ExecutionStatus.RUNNING: frozenset(
        {
            ExecutionStatus.RUNNING,
            ExecutionStatus.SUSPENDED,
            ExecutionStatus.PENDING,
            ExecutionStatus.COMPLETED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
            ExecutionStatus.PAUSED,
        }
    ),
    ExecutionStatus.SUSPENDED: frozenset(
        {
            ExecutionStatus.RUNNING,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
            ExecutionStatus.PAUSED,
        }
    ),
    ExecutionStatus.PAUSED: frozenset(
        {ExecutionStatus.PENDING, ExecutionStatus.SUSPENDED, ExecutionStatus.CANCELLED}
    ),
    ExecutionStatus.COMPLETED: frozenset(),
    ExecutionStatus.FAILED: frozenset(),
    ExecutionStatus.CANCELLED: frozenset(),
}
"""Which status may follow which, for the workers and for cancel and pause. Every status
change is made by ``db.transitions`` (or a statement of the PostgreSQL store) with the
source statuses of its target, computed by ``allowed_from``, in the same statement: a
change that does not follow an edge here writes nothing.

A finished execution leaves its final status only by an operator's new run (restart,
rerun, retry-step), which asks for it explicitly (``reopen``): no worker path can bring a
finished execution back to life."""

REOPEN: dict[str, frozenset[str]] = {ExecutionStatus.PENDING: TERMINAL}
"""The edges only a new run may take: from a final status back to ``PENDING``."""


def allowed_from(target: str, *, reopen: bool = False) -> list[str]:
    """The statuses an execution may be in to move to ``target``, sorted.

    ``reopen`` adds the edges of ``REOPEN``, for a new run of a finished execution.
    """
    sources = {source for source, targets in TRANSITIONS.items() if target in targets}
    if reopen:
        sources |= REOPEN.get(target, frozenset())
    return sorted(sources)


class RunStatus(models.TextChoices):
    RUNNING = "RUNNING", pgettext_lazy("Run", "Running")
    """The current run of its execution."""
    COMPLETED = "COMPLETED", pgettext_lazy("Run", "Completed")
    FAILED = "FAILED", pgettext_lazy("Run", "Failed")
    CANCELLED = "CANCELLED", pgettext_lazy("Run", "Cancelled")


RUN_STATUS_FOR: dict[str, str] = {
    ExecutionStatus.COMPLETED: RunStatus.COMPLETED,
    ExecutionStatus.FAILED: RunStatus.FAILED,
    ExecutionStatus.CANCELLED: RunStatus.CANCELLED,
}
"""The status the current run ends with when its execution finishes."""


class RunReason(models.TextChoices):
    INITIAL = "INITIAL", pgettext_lazy("Run", "Initial")
    """The first run, created by ``start``."""
    RETRY = "RETRY", pgettext_lazy("Run", "Workflow retry")
    """A rerun after the body raised, under the workflow's ``max_retries``."""
    COMPENSATION = "COMPENSATION", pgettext_lazy("Run", "Failure handler")
    """The workflow's ``on_failure`` handler, run once after the execution failed."""
    SCHEDULE = "SCHEDULE", pgettext_lazy("Run", "Schedule")
    """The first run, started by a recurring schedule's tick."""
    RESTART = "RESTART", pgettext_lazy("Run", "Restart")
    """``restart``: from scratch, replaying nothing."""
    RERUN = "RERUN", pgettext_lazy("Run", "Rerun")
    """``rerun``: every checkpoint kept but the chosen steps (and, from a step, those after)."""
    RETRY_STEP = "RETRY_STEP", pgettext_lazy("Run", "Step retry")
    """``retry_step``: the failed run's checkpoints kept, the failed step tried afresh."""


class StepKind(models.TextChoices):
    STEP = "STEP", pgettext_lazy("Step", "Step")
    SLEEP = "SLEEP", pgettext_lazy("Step", "Sleep")
    EVENT = "EVENT", pgettext_lazy("Step", "Wait for event")
    CAPTURE = "CAPTURE", pgettext_lazy("Step", "Captured value")
    BRANCH = "BRANCH", pgettext_lazy("Step", "Parallel branch")
    GROUP = "GROUP", pgettext_lazy("Step", "Wait for branches")
    CHILD = "CHILD", pgettext_lazy("Step", "Child workflow")


class StepStatus(models.TextChoices):
    COMPLETED = "COMPLETED", pgettext_lazy("Step", "Completed")
    """Its result is checkpointed and replayed; it never runs again."""
    FAILED = "FAILED", pgettext_lazy("Step", "Failed")
    """Its last allowed attempt failed; the failure is replayed."""
    RETRYING = "RETRYING", pgettext_lazy("Step", "Retrying")
    """An attempt failed; the next one is due at ``wake_at``."""
    SCHEDULED = "SCHEDULED", pgettext_lazy("Step", "Scheduled")
    """A parallel branch or child workflow started and not finished yet."""
    WAITING = "WAITING", pgettext_lazy("Step", "Waiting")
    """A sleep until ``wake_at``, or a wait for an event (until ``wake_at`` if it has a
    timeout)."""


class AttemptStatus(models.TextChoices):
    SUCCEEDED = "SUCCEEDED", pgettext_lazy("Attempt", "Succeeded")
    FAILED = "FAILED", pgettext_lazy("Attempt", "Failed")


class TaskKind(models.TextChoices):
    BODY = "BODY", pgettext_lazy("Task", "Workflow body")
    BRANCH = "BRANCH", pgettext_lazy("Task", "Parallel branch")


class OverlapPolicy(models.TextChoices):
    SKIP = "SKIP", pgettext_lazy("Schedule", "Skip the tick while the previous one runs")
    CANCEL = "CANCEL", pgettext_lazy("Schedule", "Cancel the previous one and start anew")
    ALLOW = "ALLOW", pgettext_lazy("Schedule", "Always start")
