"""Reading many executions at once: the filtered lists and the counts that the command
line, the HTTP API, the metrics and the admin show.

Counts are grouped in the database, one query per table; times are judged by the
database clock, like everything durable.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Min, Q
from django.db.models.functions import Now

from .db import get_store
from .errors import InvalidArgument
from .models import Execution, ExecutionQuerySet, PauseRule, Step, Task, Worker
from .states import ExecutionStatus, StepStatus


def executions(
    *,
    status: str | list[str] | None = None,
    workflow: str | list[str] | None = None,
    queue: str | list[str] | None = None,
    parent: str | None = None,
) -> ExecutionQuerySet:
    """Executions, newest first, filtered by status, workflow, queue or parent.

    A QuerySet: slice it, filter it further, count it.
    """
    found = Execution.objects.all()
    if status is not None:
        statuses = _strings(status, "status")
        unknown = sorted(set(statuses) - set(ExecutionStatus.values))
        if unknown:
            raise InvalidArgument(
                "Unknown status %s; known: %s."
                % (", ".join(map(repr, unknown)), ", ".join(ExecutionStatus.values))
            )
        found = found.filter(status__in=statuses)
    if workflow is not None:
        found = found.filter(workflow__in=_strings(workflow, "workflow"))
    if queue is not None:
        found = found.filter(queue__in=_strings(queue, "queue"))
    if parent is not None:
        found = found.filter(parent_id=parent)
    return found.order_by("-created_at", "-pk")


def stats() -> dict[str, Any]:
    """Counts for a dashboard or a health probe, ready for JSON.

    ``queues`` counts the work queue: ``due`` tasks no worker holds yet (and how long
    the oldest has been due), ``running`` ones a live lease holds, ``waiting`` ones due
    later or on an event, ``paused`` ones a pause rule holds.
    """
    by_status = dict.fromkeys(ExecutionStatus.values, 0)
    by_workflow: dict[str, dict[str, int]] = {}
    rows = Execution.objects.order_by().values_list("workflow", "status").annotate(n=Count("pk"))
    for workflow, status, count in rows:
        by_status[status] = by_status.get(status, 0) + count
        by_workflow.setdefault(workflow, {})[status] = count
    now = get_store().now()
    unpaused = Q(paused_by__isnull=True)
    due = unpaused & Q(held_by__isnull=True, run_after__lte=Now())
    queues: dict[str, dict[str, Any]] = {}
    task_rows = (
        Task.objects.order_by()
        .values("queue")
        .annotate(
            due=Count("pk", filter=due),
            running=Count("pk", filter=unpaused & Q(lease_until__gte=Now())),
            waiting=Count(
                "pk",
                filter=unpaused
                & Q(held_by__isnull=True)
                & (Q(run_after__gt=Now()) | Q(run_after__isnull=True)),
            ),
            paused=Count("pk", filter=Q(paused_by__isnull=False)),
            oldest_due=Min("run_after", filter=due),
        )
    )
    for row in task_rows:
        oldest = row["oldest_due"]
        queues[row["queue"]] = {
            "due": row["due"],
            "running": row["running"],
            "waiting": row["waiting"],
            "paused": row["paused"],
            "oldest_due_age": None if oldest is None else max((now - oldest).total_seconds(), 0),
        }
    workers = Worker.objects.aggregate(
        alive=Count("pk", filter=Q(expires_at__gt=Now())),
        dead=Count("pk", filter=Q(expires_at__lte=Now())),
    )
    return {
        "executions": {
            "total": sum(by_status.values()),
            "by_status": by_status,
            "by_workflow": by_workflow,
        },
        "queues": queues,
        "steps": {"completed": Step.objects.filter(status=StepStatus.COMPLETED).count()},
        "workers": workers,
        "pause_rules": {"active": PauseRule.objects.active().count()},
    }


def _strings(value: Any, what: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise InvalidArgument("%s must be a string or a list of strings, not %r." % (what, value))
    return list(values)
