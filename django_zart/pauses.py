"""Pause rules: stop dispatching matching work until the rule is resumed or expires.

A rule names an execution, a workflow, a glob of step names, or a combination. A rule
without a step glob holds its executions as a whole: their queued tasks are marked with
the rule at once (``Task.paused_by``, which the claim skips) and their status reads
``PAUSED``. A rule with a step glob lets its executions run until one reaches a matching
step, and holds it there, before the step's attempt.

Work a worker is running when a rule is made is held at its next step: workers read the
active rules at most ``REFRESH`` seconds old (one cheap query a second, none per step),
and confirm a match against the database before they hold anything, so a rule that
ended meanwhile never holds work. Ending a rule makes what it held due again, exactly as
it was: a sleeping execution goes back to its sleep, a waiting one to its wait.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from .context import Pause
from .db.guard import store_operation
from .db.transitions import transition
from .db.types import DatabaseUnavailable
from .durations import Duration, to_seconds
from .errors import InvalidArgument, OperationRefused, PauseRuleNotFound
from .models import Execution, PauseRule, Task
from .names import MAX_ID_LENGTH, MAX_NAME_LENGTH, check_name
from .serialization import text_argument
from .states import ExecutionStatus, TaskKind

if TYPE_CHECKING:
    from .context import ExecutionContext

logger = logging.getLogger(__name__)

REFRESH = 1.0
"""Seconds a process trusts its copy of the active rules."""


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    execution_id: str
    workflow: str
    step: str

    def matches(self, execution_id: str, workflow: str, step: str | None) -> bool:
        """Whether the rule holds this execution (``step=None``) or this step of it."""
        if self.execution_id and self.execution_id != execution_id:
            return False
        if self.workflow and self.workflow != workflow:
            return False
        if not self.step:
            return True
        return step is not None and fnmatch.fnmatchcase(step, self.step)


class _Cache:
    def __init__(self) -> None:
        self.rules: tuple[Rule, ...] = ()
        self.loaded_at = float("-inf")
        self.lock = threading.Lock()

    def get(self) -> tuple[Rule, ...]:
        if time.monotonic() - self.loaded_at < REFRESH:
            return self.rules
        with self.lock:
            if time.monotonic() - self.loaded_at >= REFRESH:
                self.rules = _load()
                self.loaded_at = time.monotonic()
        return self.rules

    def invalidate(self) -> None:
        self.loaded_at = float("-inf")


@store_operation
def _load() -> tuple[Rule, ...]:
    """The active rules; an outage is the worker's ``DatabaseUnavailable``, waited out."""
    rows = PauseRule.objects.active().values_list("pk", "execution_id", "workflow", "step")
    return tuple(Rule(*row) for row in rows)


_cache = _Cache()


def matching(execution_id: str, workflow: str, step: str | None = None) -> int | None:
    """The id of an active rule (as last read) that holds this execution or step."""
    for rule in _cache.get():
        if rule.matches(execution_id, workflow, step):
            return rule.id
    return None


def check_step(ctx: ExecutionContext, step: str) -> None:
    """Raise ``Pause`` if an active rule holds ``step`` of the running execution."""
    rule_id = matching(ctx.claim.execution_id, ctx.claim.workflow, step)
    if rule_id is None:
        return
    if PauseRule.objects.active().filter(pk=rule_id).exists():
        raise Pause(rule_id)
    _cache.invalidate()  # ended since it was read


def invalidate() -> None:
    _cache.invalidate()


# -- the operations ------------------------------------------------------------------


def pause(
    *,
    execution_id: str | None = None,
    workflow: str | None = None,
    step: str | None = None,
    reason: str = "",
    expires_at: datetime | Duration | None = None,
    by: str = "",
) -> PauseRule:
    """Stop dispatching matching work until ``resume(rule.pk)`` or ``expires_at``.

    ``step`` is a glob of step names (``charge-*``); ``expires_at`` a time or a duration
    from now. At least one of ``execution_id``, ``workflow`` and ``step`` is needed: a
    rule matching everything would be a switch, not a rule.
    """
    if execution_id is not None:
        check_name(execution_id, "execution_id", limit=MAX_ID_LENGTH)
    if workflow is not None:
        check_name(workflow, "workflow", limit=MAX_NAME_LENGTH)
    if step is not None:
        check_name(step, "step", limit=MAX_NAME_LENGTH)
    if not (execution_id or workflow or step):
        raise InvalidArgument("A pause rule needs an execution_id, a workflow or a step glob.")
    rule = PauseRule(
        execution_id=execution_id or "",
        workflow=workflow or "",
        step=step or "",
        reason=text_argument(reason, "reason"),
        created_by=text_argument(by, "by", 200),
        expires_at=_expiry(expires_at),
    )
    with transaction.atomic():
        rule.save(force_insert=True)
        held = _hold(Rule(rule.pk, rule.execution_id, rule.workflow, rule.step))
    _cache.invalidate()
    logger.info("Pause rule %s created by=%s holds=%d: %s", rule.pk, by or "-", held, rule)
    return rule


def resume(rule_id: int, *, by: str = "") -> PauseRule:
    """End a pause rule; what it held is due again at once (or at its own time)."""
    if isinstance(rule_id, bool) or not isinstance(rule_id, int):
        raise InvalidArgument("rule_id must be an integer, not %r." % (rule_id,))
    if not -(2**63) <= rule_id < 2**63:
        raise PauseRuleNotFound(rule_id)
    rule = _end(rule_id, by=by, how="resumed")
    released = release_held(rule_id)
    _cache.invalidate()
    logger.info("Pause rule %s resumed by=%s released=%d", rule_id, by or "-", released)
    return rule


def pause_rules(*, active: bool = True) -> QuerySet[PauseRule]:
    """The active rules (``active=False``: every rule, ended ones too), newest first."""
    rules = PauseRule.objects.all()
    return rules.active() if active else rules


def sweep() -> int:
    """End rules past their expiry, and release work still held by ended rules.

    Run by every worker about once a second; also the repair for a resume interrupted
    between ending its rule and releasing the work.
    """
    expired = list(
        PauseRule.objects.active().filter(expires_at__lte=Now()).values_list("pk", flat=True)
    )
    for rule_id in expired:
        try:
            _end(rule_id, by="expiry", how="expired")
        except OperationRefused:  # another worker ended it first
            continue
        logger.info("Pause rule %s expired", rule_id)
    orphans = list(
        Task.objects.filter(paused_by__isnull=False, paused_by__ended_at__isnull=False)
        .values_list("paused_by", flat=True)
        .distinct()
    )
    released = sum(release_held(rule_id) for rule_id in orphans if rule_id is not None)
    if expired or orphans:
        _cache.invalidate()
    return released


# -- holding and releasing -----------------------------------------------------------


def hold_new(execution_id: str, workflow: str) -> int | None:
    """The rule a new execution starts held by, as last read (no query per start).

    Called by ``start`` and the operations, outside a worker: an outage is the database's
    own error there, as for any query of the caller's.
    """
    try:
        return matching(execution_id, workflow)
    except DatabaseUnavailable as exc:
        raise exc.cause from None


def _hold(rule: Rule) -> int:
    """Mark the queued work the rule holds; return how many executions it holds now.

    Tasks first, then executions (the lock order of every writer). A task a live worker
    holds is left to it: that worker holds the execution at its next step.
    """
    executions = Execution.objects.unfinished().exclude(status=ExecutionStatus.PAUSED)
    if rule.execution_id:
        executions = executions.filter(pk=rule.execution_id)
    if rule.workflow:
        executions = executions.filter(workflow=rule.workflow)
    tasks = Task.objects.filter(
        execution__in=executions.values("pk"), paused_by__isnull=True
    ).filter(Q(held_by__isnull=True) | Q(lease_until__lt=Now()))
    if rule.step:
        # Only branches waiting to run a matching step: a body is held when it gets there.
        candidates = tasks.filter(kind=TaskKind.BRANCH).values_list("pk", "step__name")
        ids = [pk for pk, name in candidates if fnmatch.fnmatchcase(name or "", rule.step)]
        locked = list(Task.objects.select_for_update().filter(pk__in=ids).values_list("pk"))
        Task.objects.filter(pk__in=[row[0] for row in locked]).update(paused_by=rule.id)
        return 0
    locked_rows = list(
        tasks.select_for_update().order_by("pk").values_list("pk", "kind", "execution_id")
    )
    Task.objects.filter(pk__in=[pk for pk, _, _ in locked_rows]).update(
        paused_by=rule.id, held_by=None, lease_until=None
    )
    bodies = [execution for _, kind, execution in locked_rows if kind == TaskKind.BODY]
    return transition(bodies, ExecutionStatus.PAUSED)


def release_held(rule_id: int) -> int:
    """Let go of what an ended rule held; return how many tasks it released.

    A task another active rule also holds passes to that rule. A released body is due as
    it was: ``PENDING`` when its time has come, ``SUSPENDED`` while it sleeps or waits.
    """
    released = 0
    with transaction.atomic():
        held = list(
            Task.objects.select_for_update()
            .filter(paused_by=rule_id)
            .order_by("pk")
            .values_list("pk", "kind", "execution_id", "execution__workflow", "run_after")
        )
        now = timezone.now()
        for pk, kind, execution_id, workflow, run_after in held:
            other = PauseRule.objects.active().exclude(pk=rule_id)
            other = other.filter(
                Q(execution_id="") | Q(execution_id=execution_id),
                Q(workflow="") | Q(workflow=workflow),
                step="",
            )
            successor = other.values_list("pk", flat=True).first()
            Task.objects.filter(pk=pk).update(paused_by=successor)
            if successor is not None:
                continue
            released += 1
            if kind == TaskKind.BODY:
                due = run_after is not None and run_after <= now
                transition(
                    execution_id, ExecutionStatus.PENDING if due else ExecutionStatus.SUSPENDED
                )
    return released


def _end(rule_id: int, *, by: str, how: str) -> PauseRule:
    with transaction.atomic():
        rule = PauseRule.objects.select_for_update().filter(pk=rule_id).first()
        if rule is None:
            raise PauseRuleNotFound(rule_id)
        if rule.ended_at is not None:
            raise OperationRefused(
                "Pause rule %s has already ended (%s at %s)."
                % (rule_id, rule.end_reason or "ended", rule.ended_at.isoformat())
            )
        rule.ended_at = timezone.now()
        rule.ended_by = text_argument(by, "by", 200)
        rule.end_reason = how
        rule.save(update_fields=["ended_at", "ended_by", "end_reason"])
    return rule


def _expiry(value: datetime | Duration | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if timezone.is_naive(value):
            raise InvalidArgument("expires_at must be an aware datetime, not %r." % value)
        if value.year >= 9999:
            raise InvalidArgument("expires_at %r is out of range." % value)
        return value
    return timezone.now() + timedelta(seconds=to_seconds(value))
