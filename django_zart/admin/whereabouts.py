"""Where an execution is now, and why it is not running: told in one sentence.

``where_now`` serves the list (a page of executions at once, in a constant number of
queries); ``blocker`` serves the page of one unfinished execution.

Both read what the engine left behind: the latest step row of the current run (a retry
back-off, a sleep, a wait for an event, for branches or for a child), the execution's body
task (paused, held, due when), and the worker rows. A claim token does not name its
worker; a worker's heartbeat extends its own lease and its tasks' leases to the same
instant, so a task whose lease ends when a worker's does is that worker's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import (
    Case,
    Count,
    F,
    IntegerField,
    JSONField,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.fields.json import KT
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .. import registry, steps
from ..errors import UnknownWorkflow, ZartError
from ..models import Execution, PauseRule, Step, Task, Worker
from ..states import ExecutionStatus, StepKind, StepStatus, TaskKind


@dataclass(frozen=True)
class Where:
    """What ``where_now`` read about one execution."""

    step: dict[str, Any] | None
    task: dict[str, Any] | None
    branches: tuple[int, int] | None
    failure: tuple[str | None, str | None] = (None, None)
    """Of a failed execution whose current run has no failed step (its failure handler's
    run, say): the step that failed it, and how its failure handler ended."""


def _latest_steps(executions: Sequence[Execution]) -> dict[str, dict[str, Any]]:
    """The latest step row of each execution's current run, in one query.

    A failed execution shows its failed step, even when a later row (the group of a
    failed branch) follows it.
    """
    latest = (
        Step.objects.filter(execution_id=OuterRef("pk"), run_index=OuterRef("run_index"))
        .order_by("-sequence")
        .values("pk")[:1]
    )
    failed_first = (
        Step.objects.filter(execution_id=OuterRef("pk"), run_index=OuterRef("run_index"))
        .annotate(
            first=Case(
                When(status=StepStatus.FAILED, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        .order_by("first", "-sequence")
        .values("pk")[:1]
    )
    chosen = Case(
        When(status=ExecutionStatus.FAILED, then=Subquery(failed_first)),
        default=Subquery(latest),
    )
    wanted = Execution.objects.filter(pk__in=[e.pk for e in executions]).annotate(step=chosen)
    # A result is read only where it says what is awaited (a group's branches, a child's
    # id): the result of an ordinary step may be large, and a page shows none of them.
    awaited = Case(
        When(kind__in=[StepKind.GROUP, StepKind.CHILD], then=F("result")),
        default=Value(None),
        output_field=JSONField(),
    )
    rows = (
        Step.objects.filter(pk__in=wanted.values("step"))
        .annotate(awaited=awaited)
        .values(
            "id",
            "execution_id",
            "run_id",
            "name",
            "position",
            "kind",
            "status",
            "attempts",
            "wake_at",
            "created_at",
            "updated_at",
            "awaited",
        )
    )
    return {row["execution_id"]: dict(row) for row in rows}


def _body_tasks(execution_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The body task of each execution, with its pause rule and the worker holding it."""
    holder = Worker.objects.filter(expires_at=OuterRef("lease_until")).values("pk")[:1]
    rows = (
        Task.objects.filter(execution_id__in=execution_ids, kind=TaskKind.BODY)
        .annotate(worker=Subquery(holder))
        .values(
            "execution_id",
            "queue",
            "run_after",
            "held_by",
            "lease_until",
            "claimed_at",
            "paused_by_id",
            "worker",
            "blocked",
            "limit_key",
            "limit_max",
        )
    )
    return {row["execution_id"]: dict(row) for row in rows}


def _group_positions(step: dict[str, Any] | None) -> list[str]:
    if step is None or step["kind"] != StepKind.GROUP or step["status"] != StepStatus.WAITING:
        return []
    result = step["awaited"]
    positions = result.get("positions") if isinstance(result, dict) else None
    return [p for p in positions if isinstance(p, str)] if isinstance(positions, list) else []


def _branch_counts(steps_by_execution: dict[str, dict[str, Any]]) -> dict[int, tuple[int, int]]:
    """Run id to (done, total) branches of its waiting group, in one query."""
    groups = {
        step["run_id"]: positions
        for step in steps_by_execution.values()
        if (positions := _group_positions(step))
    }
    if not groups:
        return {}
    match = Q()
    for run_id, positions in groups.items():
        match |= Q(run_id=run_id, position__in=positions)
    done = {
        row["run_id"]: row["done"]
        for row in Step.objects.filter(match, kind=StepKind.BRANCH)
        .values("run_id")
        .annotate(done=Count("pk", filter=Q(status=StepStatus.COMPLETED)))
        .order_by()
    }
    return {run_id: (done.get(run_id, 0), len(positions)) for run_id, positions in groups.items()}


def _failures(execution_ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
    """The failed step and the failure handler's end ("completed", or its error), read out
    of the stored errors (the error itself, traceback and all, stays in the database)."""
    rows = Execution.objects.filter(pk__in=execution_ids).values_list(
        "pk", KT("error__step"), KT("error__compensation")
    )
    return {pk: (step, handler) for pk, step, handler in rows}


def gather(executions: Sequence[Execution]) -> dict[str, Where]:
    """What the phrases of a page of executions need, in at most four queries."""
    unfinished = [e.pk for e in executions if not e.is_finished]
    latest = _latest_steps(executions) if executions else {}
    tasks = _body_tasks(unfinished) if unfinished else {}
    branches = _branch_counts(latest)
    unexplained = [
        e.pk
        for e in executions
        if e.status == ExecutionStatus.FAILED
        and latest.get(e.pk, {}).get("status") != StepStatus.FAILED
    ]
    failures = _failures(unexplained) if unexplained else {}
    return {
        e.pk: Where(
            step=latest.get(e.pk),
            task=tasks.get(e.pk),
            branches=branches.get(latest[e.pk]["run_id"]) if e.pk in latest else None,
            failure=failures.get(e.pk, (None, None)),
        )
        for e in executions
    }


# -- phrases ---------------------------------------------------------------------------


def _time(moment: datetime, *, seconds: bool = False) -> str:
    """A time of day in the current time zone, with its date when it is not today."""
    # With USE_TZ = False the database hands back naive local times: shown as they are.
    local = moment if timezone.is_naive(moment) else timezone.localtime(moment)
    today = timezone.localdate() if timezone.is_aware(moment) else timezone.now().date()
    shown = local.strftime("%H:%M:%S" if seconds else "%H:%M")
    if local.date() != today:
        shown = "%s %s" % (local.strftime("%Y-%m-%d"), shown)
    return shown


def _max_attempts(name: str) -> int | None:
    """Tries a step gets in all, if it is registered in this process."""
    try:
        step = steps.get_step(name)
    except ZartError:
        return None
    return step.retry.attempts + 1


def _attempt(step: dict[str, Any]) -> str:
    number = step["attempts"] + 1
    most = _max_attempts(step["name"])
    return "%d/%d" % (number, most) if most else str(number)


def _waiting_phrase(step: dict[str, Any], branches: tuple[int, int] | None) -> str:
    """What a suspended execution waits for, from its latest step; "" if nothing."""
    kind, status = step["kind"], step["status"]
    if status == StepStatus.RETRYING:
        phrase = _("step %(step)s, attempt %(attempt)s") % {
            "step": step["position"],
            "attempt": _attempt(step),
        }
        if step["wake_at"] is not None:
            phrase += _(", next try %(time)s") % {"time": _time(step["wake_at"], seconds=True)}
        return phrase
    if kind == StepKind.SLEEP and status == StepStatus.WAITING:
        return _("sleeping until %(time)s") % {"time": _time(step["wake_at"])}
    if kind == StepKind.EVENT and status == StepStatus.WAITING:
        phrase = _("waiting for event %(name)s since %(time)s") % {
            "name": step["name"],
            "time": _time(step["created_at"]),
        }
        if step["wake_at"] is not None:
            phrase += _(", until %(time)s") % {"time": _time(step["wake_at"])}
        return phrase
    if kind == StepKind.GROUP and status == StepStatus.WAITING and branches is not None:
        done, total = branches
        return ngettext(
            "%(done)d of %(total)d branch done", "%(done)d of %(total)d branches done", total
        ) % {"done": done, "total": total}
    if kind == StepKind.CHILD and status == StepStatus.SCHEDULED:
        result = step["awaited"]
        child = result.get("id") if isinstance(result, dict) else None
        return _("waiting for child execution %(id)s") % {"id": child or step["position"]}
    return ""


def _finished_phrase(execution: Execution, where: Where) -> str:
    step = where.step
    if execution.status == ExecutionStatus.COMPLETED:
        return _("completed")
    if execution.status == ExecutionStatus.FAILED:
        if step is not None and step["status"] == StepStatus.FAILED:
            return _("failed at step %(step)s") % {"step": step["position"]}
        failed_step, handler = where.failure
        if failed_step:
            said = _("failed at step %(step)s") % {"step": failed_step}
        else:
            said = _("failed outside its steps")
        if handler == "completed":
            said += _("; its failure handler completed")
        elif handler:  # the handler's own error
            said += _("; its failure handler failed too")
        return said
    if step is not None:
        return _("cancelled after step %(step)s") % {"step": step["position"]}
    return _("cancelled before its first step")


def phrase(execution: Execution, where: Where) -> str:
    """The short phrase of the list's "where it is now" column."""
    if execution.is_finished:
        return _finished_phrase(execution, where)
    task, step = where.task, where.step
    if task is not None and task["paused_by_id"] is not None:
        return _("paused by rule %(rule)d") % {"rule": task["paused_by_id"]}
    if execution.status == ExecutionStatus.PAUSED:
        return _("paused")
    if task is not None and task["blocked"]:
        return _("waiting for a slot of %(key)s (%(limit)d at once)") % {
            "key": task["limit_key"],
            "limit": task["limit_max"] or 1,
        }
    now = timezone.now()
    if task is not None and task["held_by"] is not None:
        if (task["lease_until"] or now) <= now:
            return _("held by a worker whose lease ran out; up for takeover")
        on = _(" on worker %(worker)s") % {"worker": task["worker"]} if task["worker"] else ""
        if step is not None and step["status"] == StepStatus.RETRYING:
            doing = _("running step %(step)s, attempt %(attempt)s") % {
                "step": step["position"],
                "attempt": _attempt(step),
            }
            return doing + on
        doing = _("running") + on
        if step is not None:
            doing += _(", after step %(step)s") % {"step": step["position"]}
        return doing
    waiting = _waiting_phrase(step, where.branches) if step is not None else ""
    if waiting:
        return waiting
    if task is not None and task["run_after"] is not None and task["run_after"] > now:
        return _("due at %(time)s") % {"time": _time(task["run_after"], seconds=True)}
    if step is None:
        return _("queued")
    return _("queued, after step %(step)s") % {"step": step["position"]}


def where_now(executions: Sequence[Execution]) -> dict[str, str]:
    """Execution id to a short phrase: "step charge-card, attempt 2/4, next try 14:05:10".

    At most three queries whatever the number of executions: the latest step rows, the
    body tasks, and the branch counts of waiting groups.
    """
    gathered = gather(executions)
    return {e.pk: phrase(e, gathered[e.pk]) for e in executions}


# -- the blocker of one execution ------------------------------------------------------


def _age(moment: datetime, now: datetime) -> int:
    return max(0, round((now - moment).total_seconds()))


def _held_sentence(task: dict[str, Any], now: datetime) -> str:
    worker = Worker.objects.filter(pk=task["worker"]).first() if task["worker"] else None
    if (task["lease_until"] or now) <= now:
        return _(
            "The worker that claimed it at %(claimed)s stopped renewing its lease at "
            "%(until)s; a live worker serving queue %(queue)s takes it over at its next claim."
        ) % {
            "claimed": _time(task["claimed_at"] or now, seconds=True),
            "until": _time(task["lease_until"] or now, seconds=True),
            "queue": task["queue"],
        }
    if worker is None:
        return _(
            "It is running: a worker claimed it at %(claimed)s and holds it until "
            "%(until)s (its worker row has not renewed the lease yet)."
        ) % {
            "claimed": _time(task["claimed_at"] or now, seconds=True),
            "until": _time(task["lease_until"], seconds=True),
        }
    return _(
        "It is running: held by worker %(worker)s (%(host)s, pid %(pid)d), whose heartbeat "
        "is %(age)d s old."
    ) % {
        "worker": worker.pk,
        "host": worker.hostname,
        "pid": worker.pid,
        "age": _age(worker.heartbeat_at, now),
    }


def _waiting_sentence(step: dict[str, Any], branches: tuple[int, int] | None) -> str:
    kind, status = step["kind"], step["status"]
    if status == StepStatus.RETRYING and step["wake_at"] is not None:
        return _("Retry back-off until %(time)s: step %(step)s failed; attempt %(attempt)s.") % {
            "time": _time(step["wake_at"], seconds=True),
            "step": step["position"],
            "attempt": _attempt(step),
        }
    if kind == StepKind.SLEEP and status == StepStatus.WAITING:
        return _("Sleeping until %(time)s.") % {"time": _time(step["wake_at"], seconds=True)}
    if kind == StepKind.EVENT and status == StepStatus.WAITING:
        if step["wake_at"] is None:
            return _("Waiting for event %(name)s since %(since)s, without a timeout.") % {
                "name": step["name"],
                "since": _time(step["created_at"], seconds=True),
            }
        return _("Waiting for event %(name)s since %(since)s, until %(until)s.") % {
            "name": step["name"],
            "since": _time(step["created_at"], seconds=True),
            "until": _time(step["wake_at"], seconds=True),
        }
    if kind == StepKind.GROUP and status == StepStatus.WAITING and branches is not None:
        done, total = branches
        return ngettext(
            "Waiting for its parallel branches: %(done)d of %(total)d done.",
            "Waiting for its parallel branches: %(done)d of %(total)d done.",
            total,
        ) % {"done": done, "total": total}
    if kind == StepKind.CHILD and status == StepStatus.SCHEDULED:
        result = step["awaited"]
        child = result.get("id") if isinstance(result, dict) else step["position"]
        return _("Waiting for child execution %(id)s to finish.") % {"id": child}
    return ""


def _due_sentence(execution: Execution, task: dict[str, Any] | None, now: datetime) -> str:
    queue = task["queue"] if task is not None else execution.queue
    live = [
        worker
        for worker in Worker.objects.filter(expires_at__gt=now)
        if isinstance(worker.queues, list) and queue in worker.queues
    ]
    if not live:
        return _("No live worker serves queue %(queue)s.") % {"queue": queue}
    try:
        registry.get_workflow(execution.workflow)
    except UnknownWorkflow:
        return _(
            "Workflow %(workflow)s is not registered in this process; if the workers' code "
            "does not register it either, none of them can run it."
        ) % {"workflow": execution.workflow}
    except ZartError as exc:  # two functions claim the name
        return str(exc)
    if task is None:
        return _("It has no task to run: nothing will pick it up until an operator acts.")
    since = task["run_after"] or now
    return ngettext(
        "Due since %(since)s and waiting for a free worker (%(count)d live worker serves "
        "queue %(queue)s).",
        "Due since %(since)s and waiting for a free worker (%(count)d live workers serve "
        "queue %(queue)s).",
        len(live),
    ) % {"since": _time(since, seconds=True), "count": len(live), "queue": queue}


def blocker(execution: Execution) -> str:
    """Why an unfinished execution is not running now, in one sentence; "" once finished.

    When it is running, the sentence says who holds it and how fresh that worker's
    heartbeat is.
    """
    if execution.is_finished:
        return ""
    where = gather([execution])[execution.pk]
    task, step = where.task, where.step
    now = timezone.now()
    if task is not None and task["paused_by_id"] is not None:
        rule = PauseRule.objects.filter(pk=task["paused_by_id"]).first()
        sentence = _("Paused by rule %(rule)d") % {"rule": task["paused_by_id"]}
        if rule is not None and rule.reason:
            sentence += _(" (%(reason)s)") % {"reason": rule.reason}
        if rule is not None and rule.expires_at is not None:
            sentence += _(", until %(time)s") % {"time": _time(rule.expires_at, seconds=True)}
        return sentence + _(": no worker runs it until the rule is resumed or expires.")
    if task is not None and task["held_by"] is not None:
        return _held_sentence(task, now)
    if task is not None and task["blocked"]:
        return _(
            "Waiting for a concurrency slot of %(key)s (%(limit)d at once): it starts as soon "
            "as one of those running ends, sleeps or waits."
        ) % {"limit": task["limit_max"] or 1, "key": task["limit_key"]}
    if step is not None:
        waiting = _waiting_sentence(step, where.branches)
        if waiting:
            return waiting
    if task is not None and task["run_after"] is not None and task["run_after"] > now:
        return _("Due at %(time)s.") % {"time": _time(task["run_after"], seconds=True)}
    if task is not None and task["run_after"] is None:
        return _("Waiting to be woken (by an event or a child), with nothing due.")
    return _due_sentence(execution, task, now)
