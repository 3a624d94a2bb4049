"""The tables of django-zart and their QuerySets.

Every state change goes through ``django_zart.client`` or ``django_zart.db``; nothing
else writes ``status``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models
from django.db.models.functions import Now
from django.utils import timezone as django_timezone
from django.utils.translation import gettext_lazy as _

from .states import (
    TERMINAL,
    AttemptStatus,
    ExecutionStatus,
    OverlapPolicy,
    RunReason,
    RunStatus,
    StepKind,
    StepStatus,
    TaskKind,
)


class ExecutionQuerySet(models.QuerySet["Execution"]):
    def finished(self) -> ExecutionQuerySet:
        return self.filter(status__in=TERMINAL)

    def unfinished(self) -> ExecutionQuerySet:
        return self.exclude(status__in=TERMINAL)


class Execution(models.Model):
    id = models.CharField(_("execution id"), primary_key=True, max_length=255)
    workflow = models.CharField(_("workflow"), max_length=255)
    queue = models.CharField(_("queue"), max_length=100, default="default")
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=ExecutionStatus.choices,
        default=ExecutionStatus.PENDING,
    )
    input = models.JSONField(_("input"), null=True, blank=True)
    output = models.JSONField(_("output"), null=True, blank=True)
    error = models.JSONField(_("error"), null=True, blank=True)
    run_index = models.PositiveIntegerField(_("current run"), default=1)
    replay_base = models.PositiveIntegerField(
        _("replay base"),
        default=1,
        help_text=_("Completed steps of runs from this index on are replayed."),
    )
    deadline_at = models.DateTimeField(_("deadline"), null=True, blank=True)
    parent = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="children",
        verbose_name=_("parent execution"),
    )
    wake_parent = models.BooleanField(
        _("wakes its parent"),
        default=False,
        help_text=_("The parent waits for this child (run_workflow) and is woken when it ends."),
    )
    created_at = models.DateTimeField(_("created"), db_default=Now(), db_index=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated"), db_default=Now())

    objects = ExecutionQuerySet.as_manager()

    if TYPE_CHECKING:
        runs: models.Manager[Run]
        steps: models.Manager[Step]

    class Meta:
        db_table = "zart_executions"
        verbose_name = _("execution")
        verbose_name_plural = _("executions")
        ordering = ["-created_at"]
        # Plain b-tree indexes (no LIKE twins): every status change rewrites each index.
        indexes = [
            models.Index(fields=["workflow", "status"], name="zart_execution_workflow"),
            # Counts by status, and retention's search for old finished executions.
            models.Index(fields=["status", "finished_at"], name="zart_execution_finished"),
        ]
        permissions = [
            ("start_execution", _("Can start executions")),
            ("cancel_execution", _("Can cancel executions")),
            ("restart_execution", _("Can restart executions")),
            ("rerun_execution", _("Can rerun steps of executions")),
            ("retry_execution", _("Can retry the failed step of executions")),
            ("send_event", _("Can send events to executions")),
            ("pause_execution", _("Can pause and resume work")),
        ]

    def __str__(self) -> str:
        return "%s (%s, %s)" % (self.id, self.workflow, self.status)

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL


class Overview(Execution):
    """No table of its own: the overview page's entry in the admin index."""

    class Meta:
        proxy = True
        verbose_name = _("overview")
        verbose_name_plural = _("overview")
        default_permissions = ()


class Run(models.Model):
    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="runs", verbose_name=_("execution")
    )
    index = models.PositiveIntegerField(_("index"))
    reason = models.CharField(
        _("reason"), max_length=16, choices=RunReason.choices, default=RunReason.INITIAL
    )
    status = models.CharField(
        _("status"), max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING
    )
    triggered_by = models.CharField(
        _("triggered by"),
        max_length=200,
        blank=True,
        default="",
        db_default="",
        help_text=_("Who asked for this run: a user, a token, the command line, a schedule."),
    )
    error = models.JSONField(_("error"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), db_default=Now())
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        db_table = "zart_execution_runs"
        verbose_name = _("run")
        verbose_name_plural = _("runs")
        ordering = ["execution_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "index"], name="zart_run_unique_index")
        ]

    def __str__(self) -> str:
        return "%s run %d" % (self.execution_id, self.index)


class Step(models.Model):
    # No FK indexes: zart_step_unique_position and zart_step_replay lead with these
    # columns, and every checkpoint INSERT pays for each index.
    run = models.ForeignKey(
        Run,
        on_delete=models.CASCADE,
        related_name="steps",
        verbose_name=_("run"),
        db_index=False,
    )
    execution = models.ForeignKey(
        Execution,
        on_delete=models.CASCADE,
        related_name="steps",
        verbose_name=_("execution"),
        db_index=False,
    )
    run_index = models.PositiveIntegerField(_("run index"))
    sequence = models.PositiveIntegerField(_("sequence"))
    position = models.CharField(_("position key"), max_length=300)
    name = models.CharField(_("name"), max_length=255)
    kind = models.CharField(_("kind"), max_length=16, choices=StepKind.choices)
    status = models.CharField(_("status"), max_length=16, choices=StepStatus.choices)
    result = models.JSONField(_("result"), null=True, blank=True)
    error = models.JSONField(_("error"), null=True, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=1)
    wake_at = models.DateTimeField(_("wake at"), null=True, blank=True)
    call_hash = models.CharField(
        _("arguments digest"),
        max_length=16,
        blank=True,
        default="",
        db_default="",
        help_text=_("A replay that calls this step with other arguments is not deterministic."),
    )
    created_at = models.DateTimeField(_("created"))
    updated_at = models.DateTimeField(_("updated"))

    if TYPE_CHECKING:
        attempt_set: models.Manager[StepAttempt]

    class Meta:
        db_table = "zart_steps"
        verbose_name = _("step")
        verbose_name_plural = _("steps")
        ordering = ["execution_id", "run_index", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="zart_step_unique_position")
        ]
        indexes = [
            models.Index(fields=["execution", "run_index"], name="zart_step_replay"),
            # The admin's "has failed steps" filter; only failed rows pay for it.
            models.Index(
                fields=["execution"],
                condition=models.Q(status=StepStatus.FAILED),
                name="zart_step_failed",
            ),
        ]

    def __str__(self) -> str:
        return "%s: %s (%s)" % (self.execution_id, self.position, self.status)


class StepAttempt(models.Model):
    """One attempt of a step that needed more than one; a first-try success has none."""

    step = models.ForeignKey(
        Step, on_delete=models.CASCADE, related_name="attempt_set", verbose_name=_("step")
    )
    number = models.PositiveIntegerField(_("number"))
    status = models.CharField(_("status"), max_length=16, choices=AttemptStatus.choices)
    error = models.JSONField(_("error"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"))

    class Meta:
        db_table = "zart_step_attempts"
        verbose_name = _("step attempt")
        verbose_name_plural = _("step attempts")
        ordering = ["step_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["step", "number"], name="zart_attempt_unique_number")
        ]

    def __str__(self) -> str:
        return "%s attempt %d (%s)" % (self.step, self.number, self.status)


class TaskQuerySet(models.QuerySet["Task"]):
    def claimable(self, *, queues: list[str]) -> TaskQuerySet:
        """Due work that nobody holds, or whose holder's lease ran out (DB clock)."""
        return (
            self.filter(queue__in=queues, run_after__lte=Now(), paused_by__isnull=True)
            .filter(models.Q(held_by__isnull=True) | models.Q(lease_until__lt=Now()))
            .order_by("priority", "run_after")
        )

    def unlimited(self) -> TaskQuerySet:
        """Tasks no concurrency limit applies to: the claim of limited ones counts first."""
        return self.filter(limit_key__isnull=True)

    def held(self) -> TaskQuerySet:
        return self.filter(held_by__isnull=False)


class Task(models.Model):
    """A unit of work a worker can claim; deleted once its execution finishes."""

    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="tasks", verbose_name=_("execution")
    )
    kind = models.CharField(
        _("kind"), max_length=16, choices=TaskKind.choices, default=TaskKind.BODY
    )
    queue = models.CharField(_("queue"), max_length=100, default="default")
    step = models.ForeignKey(
        "Step",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("branch step"),
        help_text=_("For a parallel branch: the step row it runs and records into."),
    )
    payload = models.JSONField(
        _("arguments"), null=True, blank=True, help_text=_("A branch's encoded arguments.")
    )
    priority = models.IntegerField(_("priority"), default=0)
    run_after = models.DateTimeField(_("run after"), null=True, blank=True, db_default=Now())
    held_by = models.UUIDField(_("claim token"), null=True, blank=True)
    lease_until = models.DateTimeField(_("lease until"), null=True, blank=True)
    claimed_at = models.DateTimeField(_("claimed"), null=True, blank=True)
    wake_pending = models.BooleanField(
        _("wake pending"),
        default=False,
        help_text=_("An event arrived while a worker held it: due again as soon as released."),
    )
    recoveries = models.PositiveIntegerField(
        _("recoveries"),
        default=0,
        help_text=_("How often it was taken over from a worker whose lease expired."),
    )
    paused_by = models.ForeignKey(
        "PauseRule",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        verbose_name=_("paused by"),
        help_text=_("The pause rule that holds it: no worker claims it until the rule ends."),
    )
    limit_key = models.CharField(  # noqa: DJ001 - NULL is "no limit", left out of the indexes
        _("concurrency key"),
        max_length=255,
        null=True,
        blank=True,
        help_text=_(
            "For a workflow with a concurrency limit: the workflow and its key. No more than "
            "the limit of the tasks of one key are held at once."
        ),
    )
    limit_max = models.PositiveIntegerField(_("concurrency limit"), null=True, blank=True)
    blocked = models.BooleanField(
        _("waiting for a slot"),
        default=False,
        db_default=False,
        help_text=_("Its concurrency key was full: due again once a slot frees."),
    )
    created_at = models.DateTimeField(_("created"), db_default=Now())

    objects = TaskQuerySet.as_manager()

    class Meta:
        db_table = "zart_tasks"
        verbose_name = _("task")
        verbose_name_plural = _("tasks")
        ordering = ["priority", "run_after"]
        indexes = [
            models.Index(
                fields=["queue", "priority", "run_after"],
                condition=models.Q(run_after__isnull=False, paused_by__isnull=True),
                name="zart_task_due",
            ),
            # Only paused tasks are in it: resuming a rule finds them, and an unpaused
            # task (nearly all of them) costs this index nothing.
            models.Index(
                fields=["paused_by"],
                condition=models.Q(paused_by__isnull=False),
                name="zart_task_paused",
            ),
            # The tasks under a concurrency limit (the claim of limited work counts the
            # running ones of a key; an idle worker asks whether there are any), and those
            # waiting for a slot; tasks without a limit are in neither.
            models.Index(
                fields=["limit_key"],
                condition=models.Q(limit_key__isnull=False),
                name="zart_task_limited",
            ),
            models.Index(
                fields=["limit_key"],
                condition=models.Q(blocked=True),
                name="zart_task_limit_blocked",
            ),
        ]

    def __str__(self) -> str:
        return "%s task of %s" % (self.kind, self.execution_id)


class EventQuerySet(models.QuerySet["Event"]):
    def unconsumed(self) -> EventQuerySet:
        return self.filter(consumed_at__isnull=True)


class Event(models.Model):
    """An event sent to an execution; the k-th wait for a name consumes the k-th event."""

    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="events", verbose_name=_("execution")
    )
    name = models.CharField(_("name"), max_length=255)
    payload = models.JSONField(_("payload"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent"), db_default=Now())
    sent_by = models.CharField(
        _("sent by"),
        max_length=200,
        blank=True,
        default="",
        db_default="",
        help_text=_("Who sent it: a user, a token, the command line."),
    )
    consumed_at = models.DateTimeField(_("consumed"), null=True, blank=True)
    consumed_by = models.ForeignKey(
        Step,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("consumed by"),
    )

    objects = EventQuerySet.as_manager()

    class Meta:
        db_table = "zart_events"
        verbose_name = _("event")
        verbose_name_plural = _("events")
        ordering = ["execution_id", "id"]
        indexes = [
            models.Index(
                fields=["execution", "name", "id"],
                condition=models.Q(consumed_at__isnull=True),
                name="zart_event_unconsumed",
            )
        ]

    def __str__(self) -> str:
        return "%s to %s" % (self.name, self.execution_id)


class Schedule(models.Model):
    """A recurring workflow: an execution per tick, started by whichever worker is up."""

    name = models.CharField(_("name"), primary_key=True, max_length=200)
    workflow = models.CharField(_("workflow"), max_length=255)
    input = models.JSONField(_("input"), null=True, blank=True)
    cron = models.CharField(_("cron"), max_length=100, blank=True)
    every = models.FloatField(_("every (seconds)"), null=True, blank=True)
    timezone = models.CharField(_("time zone"), max_length=64, default="UTC")
    overlap = models.CharField(
        _("overlap"), max_length=8, choices=OverlapPolicy.choices, default=OverlapPolicy.SKIP
    )
    catch_up = models.FloatField(
        _("catch-up window (seconds)"),
        default=3600,
        help_text=_("Ticks missed by less than this (a worker outage) still run."),
    )
    execution_id = models.CharField(
        _("execution id template"), max_length=200, default="{schedule}-{tick}"
    )
    next_tick_at = models.DateTimeField(_("next tick"))
    occurrence = models.PositiveIntegerField(_("ticks started"), default=0)
    last_execution_id = models.CharField(_("last execution"), max_length=255, blank=True)
    declared = models.BooleanField(
        _("declared in code"),
        default=False,
        help_text=_("Kept in step with a @zart.workflow(schedule=...) at every worker start."),
    )
    created_at = models.DateTimeField(_("created"), db_default=Now())
    updated_at = models.DateTimeField(_("updated"), db_default=Now())

    class Meta:
        db_table = "zart_schedules"
        verbose_name = _("schedule")
        verbose_name_plural = _("schedules")
        ordering = ["name"]
        indexes = [models.Index(fields=["next_tick_at"], name="zart_schedule_due")]

    def __str__(self) -> str:
        return "%s (%s)" % (self.name, self.cron or "every %ss" % self.every)


class PauseRuleQuerySet(models.QuerySet["PauseRule"]):
    def active(self) -> PauseRuleQuerySet:
        """Rules not ended; one past its ``expires_at`` is ended by the next worker sweep."""
        return self.filter(ended_at__isnull=True)


class PauseRule(models.Model):
    """Stops dispatching matching work: an execution, a workflow, steps by a glob.

    A rule with a step glob lets its executions run until they reach a matching step;
    a rule without one holds every matching execution at once. Ending a rule (``resume``
    or its expiry) makes the held work due again; nothing of it is lost.
    """

    execution_id = models.CharField(_("execution id"), max_length=255, blank=True)
    workflow = models.CharField(_("workflow"), max_length=255, blank=True)
    step = models.CharField(
        _("step"), max_length=255, blank=True, help_text=_("A glob of step names, e.g. charge-*.")
    )
    reason = models.TextField(_("reason"), blank=True)
    created_by = models.CharField(_("created by"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created"), db_default=Now())
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    ended_by = models.CharField(_("ended by"), max_length=200, blank=True)
    end_reason = models.CharField(
        _("how it ended"), max_length=16, blank=True, help_text=_("resumed or expired")
    )

    objects = PauseRuleQuerySet.as_manager()

    class Meta:
        db_table = "zart_pause_rules"
        verbose_name = _("pause rule")
        verbose_name_plural = _("pause rules")
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["expires_at"],
                condition=models.Q(ended_at__isnull=True),
                name="zart_pause_rule_active",
            )
        ]

    def __str__(self) -> str:
        parts = [
            "execution %s" % self.execution_id if self.execution_id else "",
            "workflow %s" % self.workflow if self.workflow else "",
            "steps %s" % self.step if self.step else "",
        ]
        return "Pause rule %s: %s" % (self.pk, ", ".join(p for p in parts if p))

    @property
    def is_active(self) -> bool:
        return self.ended_at is None and (
            self.expires_at is None or self.expires_at > django_timezone.now()
        )


class Worker(models.Model):
    id = models.CharField(_("worker id"), primary_key=True, max_length=100)
    hostname = models.CharField(_("hostname"), max_length=255)
    pid = models.PositiveIntegerField(_("pid"))
    queues = models.JSONField(_("queues"), default=list)
    concurrency = models.PositiveIntegerField(_("concurrency"))
    started_at = models.DateTimeField(_("started"), db_default=Now())
    heartbeat_at = models.DateTimeField(_("last heartbeat"), db_default=Now())
    expires_at = models.DateTimeField(
        _("alive until"),
        db_default=Now(),
        help_text=_("Its last heartbeat plus its lease: past this, the worker is dead."),
    )
    abandoned_threads = models.PositiveIntegerField(
        _("abandoned step threads"),
        default=0,
        help_text=_("Threads of sync steps still running past their timeout."),
    )

    class Meta:
        db_table = "zart_workers"
        verbose_name = _("worker")
        verbose_name_plural = _("workers")
        ordering = ["started_at"]

    def __str__(self) -> str:
        return self.id

    @property
    def is_alive(self) -> bool:
        """Heartbeating within its lease (by the clock of the process asking)."""
        return self.expires_at > django_timezone.now()


class QueueRate(models.Model):
    """The token bucket of a rate-limited queue, shared by every worker.

    A claimer locks the row, adds what the time since ``updated_at`` earned (the rate,
    up to the burst), takes one token per task it claims and writes the rest back, all in
    its claim's transaction: workers on any number of machines draw on one bucket.
    """

    queue = models.CharField(_("queue"), max_length=100, primary_key=True)
    tokens = models.FloatField(_("tokens"))
    updated_at = models.DateTimeField(_("updated"))

    class Meta:
        db_table = "zart_queue_rates"
        verbose_name = _("queue rate")
        verbose_name_plural = _("queue rates")

    def __str__(self) -> str:
        return "%s: %.2f tokens" % (self.queue, self.tokens)
