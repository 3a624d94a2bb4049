"""The store: every write a worker makes for claimed work, fenced by claim tokens.

This is the one interface between the runtime and the database. Its operations:

* starting: ``create_executions`` inserts new executions with their first run and task;
* claiming: ``claim`` due tasks, ``drop`` a claimed task whose execution has already
  finished;
* replaying: ``load_checkpoints``, ``execution_error``, ``execution_state``;
* checkpoints: ``record`` one durable call's outcome, ``consume_event``, and the branch
  writes of ``BranchWrites``;
* leaving an execution: ``suspend``, ``finish``, ``rerun``, ``release``;
* waking: ``wake_body``, ``notify``, ``next_due_in``, ``now``;
* liveness: ``heartbeat``, ``register_worker``, ``unregister_worker``, ``prune_workers``.

Every write for claimed work names the task and the claim token it was claimed with; a
write that matches no row means another worker took the work over (its lease expired)
or the execution was cancelled, and raises ``LeaseLost`` so the stale worker stops
without touching anything. Every status change goes through ``transitions``.

This implementation uses short ORM transactions and this process's clock: it is the
one for SQLite, where one machine has one clock. ``PostgresStore`` replaces the
operations every execution pays for with single statements judged by the database
clock; everything else is shared.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    F,
    Max,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Now
from django.utils import timezone

from ..conf import Rate
from ..models import (
    Event,
    Execution,
    PauseRule,
    QueueRate,
    Run,
    Step,
    StepAttempt,
    Task,
    Worker,
)
from ..states import (
    RUN_STATUS_FOR,
    TERMINAL,
    ExecutionStatus,
    RunReason,
    RunStatus,
    StepStatus,
    TaskKind,
)
from .branches import BranchWrites
from .guard import store_operation
from .transitions import end_run, transition
from .types import (
    RECORD_COLUMNS,
    Checkpoint,
    Claim,
    LeaseLost,
    NewExecution,
    Record,
    WorkerHolder,
    claim_from_row,
    loads_json,
    records,
)


class Store(BranchWrites):
    json_placeholder = "%s"
    share_lock = ""

    # -- starting --------------------------------------------------------------------

    CREATE_BATCH = 500
    """Rows per statement: SQLite allows 32,766 parameters in one statement."""

    def create_executions(self, new: list[NewExecution]) -> list[str]:
        """Insert the executions whose ids are free, with their first run and their body's
        task, and wake their queues' workers; return the ids inserted.

        One transaction (a savepoint inside the caller's). An id taken meanwhile by
        another process is found on a second look.
        """
        for _ in range(3):
            try:
                with transaction.atomic():
                    return self._insert_new(new)
            except IntegrityError:
                continue  # inserted by another process since the look: look again
        raise IntegrityError("Could not insert %d new executions." % len(new))

    def _insert_new(self, new: list[NewExecution]) -> list[str]:
        taken: set[str] = set()
        for start in range(0, len(new), self.CREATE_BATCH):
            ids = [n.id for n in new[start : start + self.CREATE_BATCH]]
            taken.update(Execution.objects.filter(pk__in=ids).values_list("pk", flat=True))
        fresh = [n for n in new if n.id not in taken]
        now = self.now()
        Execution.objects.bulk_create(
            [
                Execution(
                    id=n.id,
                    workflow=n.workflow,
                    queue=n.queue,
                    status=ExecutionStatus.PENDING
                    if n.paused_by is None
                    else ExecutionStatus.PAUSED,
                    input=loads_json(n.input_json),
                    deadline_at=None if n.timeout is None else now + timedelta(seconds=n.timeout),
                    parent_id=n.parent_id,
                    wake_parent=n.wake_parent,
                )
                for n in fresh
            ],
            batch_size=self.CREATE_BATCH,
        )
        Run.objects.bulk_create(
            [
                Run(execution_id=n.id, index=1, reason=n.reason, triggered_by=n.triggered_by)
                for n in fresh
            ],
            batch_size=self.CREATE_BATCH,
        )
        Task.objects.bulk_create(
            [
                Task(
                    execution_id=n.id,
                    queue=n.queue,
                    paused_by_id=n.paused_by,
                    priority=-n.priority,
                    limit_key=n.limit_key,
                    limit_max=n.limit_max,
                )
                for n in fresh
            ],
            batch_size=self.CREATE_BATCH,
        )
        for queue in sorted({n.queue for n in fresh if n.paused_by is None}):
            self.notify(queue)
        return [n.id for n in fresh]

    # -- claiming --------------------------------------------------------------------

    @store_operation
    def claim(self, *, queues: list[str], limit: int, lease: float) -> list[Claim]:
        """Take up to ``limit`` due tasks of ``queues`` under one new token.

        Taking over a task whose lease ran out counts a recovery: the worker claims only
        for its idle threads, so a task it held was running when it died. Tasks under a
        concurrency limit are left to ``claim_limited``.
        """
        token = uuid.uuid4()
        now = timezone.now()
        with transaction.atomic():
            rows = self._take(
                Task.objects.claimable(queues=queues).unlimited(), limit, token, lease, now
            )
        origin = time.monotonic()
        return [claim_from_row(row, token=token, clock_origin=origin, lease=lease) for row in rows]

    def _take(
        self, tasks: Any, limit: int, token: uuid.UUID, lease: float, now: datetime
    ) -> list[dict[str, Any]]:
        """Claim up to ``limit`` of ``tasks`` in the caller's transaction; their rows."""
        found: list[dict[str, Any]] = [
            dict(row)
            for row in tasks.select_for_update(skip_locked=True).values(
                "pk",
                "execution_id",
                "held_by",
                "recoveries",
                "kind",
                "step_id",
                "payload",
                "limit_key",
            )[:limit]
        ]
        claimed = []
        for task in found:
            # Conditional on what was read: without a row lock (SQLite), a concurrent
            # claimer that got there first makes the UPDATE match nothing.
            crashed = int(task["held_by"] is not None)
            if Task.objects.filter(pk=task["pk"], held_by=task["held_by"]).update(
                held_by=token,
                wake_pending=False,
                lease_until=now + timedelta(seconds=lease),
                claimed_at=now,
                recoveries=F("recoveries") + crashed,
            ):
                task["recoveries"] += crashed
                claimed.append(task)
        return self._claimed_rows(claimed, now) if claimed else []

    CANDIDATES_PER_SLOT = 4
    """Limited tasks looked at per free thread: those of full keys are set aside."""

    @store_operation
    def claim_limited(self, *, queues: list[str], limit: int, lease: float) -> list[Claim]:
        """Take up to ``limit`` due tasks under concurrency limits, without exceeding any.

        The due candidates are locked, then their keys (``_lock_limit_keys``: one
        claimer per key at a time), then the running tasks of those keys are counted with
        what any earlier claimer committed. Candidates of a full key wait for a slot
        (``blocked``, not due, out of every poll) until ``free_slots`` wakes them.
        """
        token = uuid.uuid4()
        with transaction.atomic():
            candidates = [
                (pk, str(key), most or 1)
                for pk, key, most in Task.objects.claimable(queues=queues)
                .filter(limit_key__isnull=False)
                .select_for_update(skip_locked=True)
                .values_list("pk", "limit_key", "limit_max")[: limit * self.CANDIDATES_PER_SLOT]
            ]
            if not candidates:
                return []
            keys = sorted({key for _, key, _ in candidates})
            self._lock_limit_keys(keys)
            now = self.now()  # after the locks: the database's clock, on PostgreSQL
            running = self._running(keys, now)
            chosen: list[int] = []
            full: list[int] = []
            for pk, key, most in candidates:
                if running.get(key, 0) >= most:
                    full.append(pk)
                elif len(chosen) < limit:
                    chosen.append(pk)
                    running[key] = running.get(key, 0) + 1
            if full:
                Task.objects.filter(pk__in=full).update(blocked=True, run_after=None)
            rows = self._take(Task.objects.filter(pk__in=chosen), limit, token, lease, now)
        origin = time.monotonic()
        return [claim_from_row(row, token=token, clock_origin=origin, lease=lease) for row in rows]

    def _running(self, keys: list[str], now: datetime) -> dict[str, int]:
        """How many tasks of each key are held under a live lease."""
        held = (
            Task.objects.filter(limit_key__in=keys, held_by__isnull=False, lease_until__gt=now)
            .values("limit_key")
            .annotate(n=Count("pk"))
        )
        return {str(row["limit_key"]): row["n"] for row in held}

    def _lock_limit_keys(self, keys: list[str]) -> None:
        """Serialize claimers of these keys; SQLite's IMMEDIATE transactions already do."""

    @store_operation
    def free_slots(self, keys: list[str] | None = None) -> int:
        """Make due as many waiting tasks of ``keys`` (``None``: every key) as their keys
        have free slots, and wake their queues' workers; return how many.

        Called when a limited task is released (by the worker that held it) and every
        second (for a slot freed by a lease that ran out, or a cancel). What is due
        already, unclaimed, counts as taken, so a slot wakes one waiting task, not all.
        """
        with transaction.atomic():
            blocked = Task.objects.filter(blocked=True)
            if keys is not None:
                blocked = blocked.filter(limit_key__in=keys)
            maxima = {
                str(row["limit_key"]): row["most"]
                for row in blocked.values("limit_key").annotate(most=Max("limit_max"))
            }
            if not maxima:
                return 0
            now = self.now()
            taken = self._running(list(maxima), now)
            due = Task.objects.filter(
                limit_key__in=list(maxima), blocked=False, held_by__isnull=True, run_after__lte=now
            )
            for row in due.values("limit_key").annotate(n=Count("pk")):
                key = str(row["limit_key"])
                taken[key] = taken.get(key, 0) + row["n"]
            woken: list[int] = []
            for key, most in maxima.items():
                free = (most or 1) - taken.get(key, 0)
                if free > 0:
                    waiting = Task.objects.filter(blocked=True, limit_key=key)
                    woken.extend(
                        waiting.order_by("priority", "created_at", "pk").values_list(
                            "pk", flat=True
                        )[:free]
                    )
            if not woken:
                return 0
            Task.objects.filter(pk__in=woken).update(blocked=False, run_after=now)
            queues = Task.objects.filter(pk__in=woken).values_list("queue", flat=True)
            for queue in sorted(set(queues)):
                self.notify(queue)
        return len(woken)

    @store_operation
    def claim_rated(
        self, *, queue: str, rate: Rate, limit: int, lease: float
    ) -> tuple[list[Claim], float | None]:
        """Take up to ``limit`` due tasks of a rate-limited ``queue``, one token each.

        The queue's bucket row is locked for the claim's transaction, so workers draw on
        it one at a time. Returns the claims, and the seconds until the next token when
        the bucket is empty (``None`` when tokens are left): until then the worker does
        not look at the queue again, unless woken.
        """
        token = uuid.uuid4()
        with transaction.atomic():
            now = self.now()
            QueueRate.objects.bulk_create(
                [QueueRate(queue=queue, tokens=rate.burst, updated_at=now)], ignore_conflicts=True
            )
            bucket = QueueRate.objects.select_for_update().get(pk=queue)
            earned = max((now - bucket.updated_at).total_seconds(), 0.0) * rate.per_second
            tokens = min(float(rate.burst), bucket.tokens + earned)
            rows = []
            if tokens >= 1:
                tasks = Task.objects.claimable(queues=[queue]).unlimited()
                rows = self._take(tasks, min(limit, int(tokens)), token, lease, now)
            tokens -= len(rows)
            QueueRate.objects.filter(pk=queue).update(
                tokens=tokens, updated_at=max(now, bucket.updated_at)
            )
        origin = time.monotonic()
        claims = [
            claim_from_row(row, token=token, clock_origin=origin, lease=lease) for row in rows
        ]
        return claims, None if tokens >= 1 else (1 - tokens) / rate.per_second

    def has_limited_work(self) -> bool:
        """Whether any task is under a concurrency limit (a worker then claims them too)."""
        return Task.objects.filter(limit_key__isnull=False).exists()

    def _claimed_rows(self, tasks: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
        """The claimed tasks' rows, named as the PostgreSQL claim statement names them;
        their bodies' executions marked as running."""
        ids = [t["execution_id"] for t in tasks]
        executions = {
            row["pk"]: dict(row)
            for row in Execution.objects.filter(pk__in=ids).values(
                "pk",
                "status",
                "workflow",
                "input",
                "run_index",
                "replay_base",
                "deadline_at",
                "parent_id",
                "wake_parent",
                "started_at",
            )
        }
        bodies = [t["execution_id"] for t in tasks if t["kind"] == TaskKind.BODY]
        Execution.objects.filter(pk__in=bodies, started_at__isnull=True).update(started_at=now)
        transition(bodies, ExecutionStatus.RUNNING)
        runs = {
            execution_id: (pk, reason)
            for execution_id, pk, reason in Run.objects.filter(execution_id__in=ids)
            .filter(index=F("execution__run_index"))
            .values_list("execution_id", "pk", "reason")
        }
        steps: dict[int, dict[str, Any]] = {
            row["pk"]: dict(row)
            for row in Step.objects.filter(
                pk__in=[t["step_id"] for t in tasks if t["step_id"]]
            ).values("pk", "position", "name", "status", "attempts")
        }
        rows = []
        for task in tasks:
            execution = executions[task["execution_id"]]
            run_id, run_reason = runs.get(task["execution_id"], (None, None))
            step = steps.get(task["step_id"], {})
            rows.append(
                {
                    "task_id": task["pk"],
                    "execution_id": task["execution_id"],
                    "status": execution["status"],
                    "workflow": execution["workflow"],
                    "input": execution["input"],
                    "run_id": run_id,
                    "run_index": execution["run_index"],
                    "run_reason": run_reason,
                    "replay_base": execution["replay_base"],
                    "deadline_at": execution["deadline_at"],
                    "fresh": execution["started_at"] is None,
                    "recoveries": task["recoveries"],
                    "db_now": now,
                    "kind": task["kind"],
                    "payload": task["payload"],
                    "step_id": task["step_id"],
                    "position": step.get("position"),
                    "name": step.get("name"),
                    "step_status": step.get("status"),
                    "attempts": step.get("attempts"),
                    "parent_id": execution["parent_id"] if execution["wake_parent"] else None,
                    "limit_key": task.get("limit_key"),
                }
            )
        return rows

    @store_operation
    def drop(self, claim: Claim) -> None:
        """Delete a claimed task whose execution has already finished."""
        Task.objects.filter(
            pk=claim.task_id, held_by=claim.token, execution__status__in=TERMINAL
        ).delete()

    # -- replay ----------------------------------------------------------------------

    @store_operation
    def execution_error(self, execution_id: str) -> dict[str, Any] | None:
        error: dict[str, Any] | None = Execution.objects.values_list("error", flat=True).get(
            pk=execution_id
        )
        return error

    @store_operation
    def execution_state(self, execution_id: str) -> tuple[str, int, str] | None:
        """The execution's status, current run index and that run's reason, if it exists."""
        current = Run.objects.filter(execution_id=OuterRef("pk"), index=OuterRef("run_index"))
        row = Execution.objects.filter(pk=execution_id).values_list(
            "status", "run_index", Subquery(current.values("reason")[:1])
        )
        return row.first()

    @store_operation
    def load_checkpoints(self, claim: Claim) -> list[Record]:
        """All checkpoints the current run replays, in one query."""
        if claim.fresh:
            return []
        return records(
            Step.objects.filter(execution_id=claim.execution_id, run_index__gte=claim.replay_base)
            .filter(Q(run_id=claim.run_id) | Q(status=StepStatus.COMPLETED))
            .order_by("run_index")
            .values_list(*RECORD_COLUMNS)
        )

    # -- checkpoints -----------------------------------------------------------------

    @cached_property
    def _upsert_sql(self) -> str:
        """The fenced checkpoint INSERT, built once per store from two class constants.

        It returns the execution's status too: a cancel lets the step in flight be
        checkpointed, and the worker learns of it here, without a query of its own.
        """
        return (
            "INSERT INTO zart_steps (run_id, execution_id, run_index, sequence, position, "  # noqa: S608
            "name, kind, status, result, error, attempts, wake_at, call_hash, created_at, "
            "updated_at) "
            "SELECT %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %s, %s, %%s, %%s, %%s, %%s, %%s "
            "WHERE EXISTS (SELECT 1 FROM zart_tasks WHERE id = %%s AND held_by = %%s%s) "
            "ON CONFLICT (run_id, position) DO UPDATE SET status = excluded.status, "
            "result = excluded.result, error = excluded.error, attempts = excluded.attempts, "
            "wake_at = excluded.wake_at, updated_at = excluded.updated_at "
            "RETURNING id, (SELECT e.status FROM zart_executions e "
            "WHERE e.id = zart_steps.execution_id)"
            % (self.json_placeholder, self.json_placeholder, self.share_lock)
        )

    @store_operation
    def record(self, claim: Claim, point: Checkpoint) -> int:
        """Write one checkpoint (one statement, one commit when there are no attempts).

        Raises ``LeaseLost`` once it is written if the execution was cancelled: the step
        in flight is kept, and nothing after it runs.
        """
        if point.attempt_rows:
            with transaction.atomic():
                step_id, status = self._upsert(claim, point)
                self._attempt_rows(step_id, point)
        else:
            step_id, status = self._upsert(claim, point)
        if status == ExecutionStatus.CANCELLED:
            raise LeaseLost()
        return step_id

    def _upsert(self, claim: Claim, point: Checkpoint) -> tuple[int, str]:
        ops = connection.ops
        at = ops.adapt_datetimefield_value(point.at)
        params = [
            claim.run_id,
            claim.execution_id,
            claim.run_index,
            point.sequence,
            point.position,
            point.name,
            point.kind,
            point.status,
            point.result,
            point.error,
            point.attempts,
            ops.adapt_datetimefield_value(point.wake_at),
            point.call_hash,
            at,
            at,
            claim.task_id,
            self._token(claim.token),
        ]
        with self._cursor() as cursor:
            cursor.execute(self._upsert_sql, params)
            row = cursor.fetchone()
        if row is None:
            raise LeaseLost()
        return int(row[0]), row[1]

    def _attempt_rows(self, step_id: int, point: Checkpoint) -> None:
        if not point.attempt_rows:
            return  # the common case: first attempt succeeded
        StepAttempt.objects.bulk_create(
            StepAttempt(
                step_id=step_id,
                number=number,
                status=status,
                error=loads_json(error),
                finished_at=point.at,
            )
            for number, status, error in point.attempt_rows
        )

    @store_operation
    def consume_event(self, claim: Claim, point: Checkpoint, name: str) -> tuple[int, Any] | None:
        """Take the oldest unconsumed event ``name`` and checkpoint it at ``point``.

        Returns ``(step id, stored payload)``, or ``None`` when no such event is
        waiting. Fenced like every checkpoint: a stale worker consumes nothing.
        """
        with transaction.atomic():
            event = (
                Event.objects.unconsumed()
                .filter(execution_id=claim.execution_id, name=name)
                .order_by("pk")
                .select_for_update()
                .values_list("pk", "payload")
                .first()
            )
            if event is None:
                return None
            step_id, _ = self._upsert(claim, replace(point, result=json.dumps(event[1])))
            Event.objects.filter(pk=event[0]).update(consumed_at=point.at, consumed_by=step_id)
        return step_id, event[1]

    # -- leaving the execution -------------------------------------------------------

    def _fence(self, claim: Claim) -> None:
        """Lock the claimed task, or raise ``LeaseLost`` if this claim no longer holds it.

        Called first in a transaction: the lock keeps a takeover out until it commits.
        """
        held = (
            Task.objects.select_for_update()
            .filter(pk=claim.task_id, held_by=claim.token)
            .values_list("pk", flat=True)
        )
        if held.first() is None:
            raise LeaseLost()

    @store_operation
    def suspend(
        self, claim: Claim, wake_at: datetime | None, checkpoint: Checkpoint | None = None
    ) -> None:
        """Release the execution until ``wake_at`` (``None``: until an event wakes it).

        ``checkpoint`` is written in the same transaction. An event that arrived while this
        worker held the execution set ``wake_pending``: then the task is due at once, so
        that wake-up is not lost.
        """
        with transaction.atomic():
            self._fence(claim)
            if checkpoint is not None:
                self.record(claim, checkpoint)
            if not transition(claim.execution_id, ExecutionStatus.SUSPENDED):
                raise LeaseLost()
            due = Value(wake_at, output_field=DateTimeField())
            self._release_task(
                claim, run_after=Case(When(wake_pending=True, then=Now()), default=due)
            )

    @store_operation
    def finish(self, claim: Claim, *, status: str, output: str | None, error: str | None) -> None:
        """Complete or fail the execution and drop its tasks, if this claim still holds it."""
        with transaction.atomic():
            self._fence(claim)
            moved = transition(
                claim.execution_id,
                status,
                output=loads_json(output),
                error=loads_json(error),
                finished_at=Now(),
            )
            if not moved:
                raise LeaseLost()
            # Branches nobody waited for end with their execution.
            Task.objects.filter(execution_id=claim.execution_id).delete()
            end_run(claim.run_id, RUN_STATUS_FOR[status], loads_json(error))
            if claim.parent_id is not None:
                self.wake_body(claim.parent_id)

    @store_operation
    def rerun(self, claim: Claim, *, error: str, reason: str = RunReason.RETRY) -> int:
        """Fail the current run and start the next one at once.

        A ``RETRY`` run (workflow ``max_retries``) replays the completed steps of the
        earlier runs; a ``COMPENSATION`` run (``on_failure``) starts from a clean slate
        and keeps the failure it handles as the execution's error.
        """
        index = claim.run_index + 1
        changes: dict[str, Any] = {"run_index": index}
        if reason == RunReason.COMPENSATION:
            changes.update(replay_base=index, error=loads_json(error))
        with transaction.atomic():
            self._fence(claim)
            if not transition(claim.execution_id, ExecutionStatus.PENDING, **changes):
                raise LeaseLost()
            self._release_task(claim, run_after=Now())
            end_run(claim.run_id, RunStatus.FAILED, loads_json(error))
            Run.objects.create(execution_id=claim.execution_id, index=index, reason=reason)
            queue = Task.objects.filter(pk=claim.task_id).values_list("queue", flat=True)
            self.notify(queue.get())
        return index

    @store_operation
    def pause(self, claim: Claim, rule_id: int) -> bool:
        """Hold the claimed body or branch under an active pause rule, due when it ends.

        ``False`` (nothing written) if the rule has ended meanwhile.
        """
        with transaction.atomic():
            self._fence(claim)
            if not PauseRule.objects.active().filter(pk=rule_id).exists():
                return False
            if claim.kind == TaskKind.BODY and not transition(
                claim.execution_id, ExecutionStatus.PAUSED
            ):
                raise LeaseLost()
            self._release_task(claim, run_after=Now(), paused_by=rule_id)
        return True

    @store_operation
    def defer(self, claim: Claim, delay: float) -> None:
        """Give back a claim whose workflow or step this worker has no code for, due again
        in ``delay`` seconds, for a worker that has it: during a rolling deploy, old and
        new code serve the same queues."""
        with transaction.atomic():
            self._fence(claim)
            if claim.kind == TaskKind.BODY and not transition(
                claim.execution_id, ExecutionStatus.PENDING
            ):
                raise LeaseLost()
            self._release_task(claim, run_after=Now() + timedelta(seconds=delay))

    def _release_task(self, claim: Claim, *, run_after: Any, paused_by: int | None = None) -> None:
        released = Task.objects.filter(pk=claim.task_id, held_by=claim.token).update(
            held_by=None,
            lease_until=None,
            run_after=run_after,
            wake_pending=False,
            paused_by=paused_by,
        )
        if not released:
            raise LeaseLost()

    @store_operation
    def release(self, tokens: list[uuid.UUID], task_ids: list[int] | None) -> int:
        """Give back tasks a stopping worker still holds, due now, without a recovery;
        wake the workers of their queues.

        ``task_ids=None``: everything the tokens hold, with the branches threads took in
        batches (``claim_siblings``); a stopping worker gives back all of it. Tokens are
        shared by the claims of one claim statement: otherwise, name the tasks.
        """
        with transaction.atomic():
            held = Task.objects.filter(held_by__in=tokens)
            if task_ids is not None:
                held = held.filter(pk__in=task_ids)
            bodies = list(held.filter(kind=TaskKind.BODY).values_list("execution_id", flat=True))
            queues = set(held.values_list("queue", flat=True))
            released = held.update(held_by=None, lease_until=None, run_after=Now())
            transition(bodies, ExecutionStatus.PENDING)
            for queue in sorted(queues):
                self.notify(queue)  # due now: the other workers need not wait for a poll
        return released

    # -- events and wake-ups -----------------------------------------------------------

    def wake_body(self, execution_id: str) -> None:
        """Make an execution's body due now (or as soon as its worker releases it)."""
        body = Task.objects.filter(execution_id=execution_id, kind=TaskKind.BODY)
        body.update(
            wake_pending=True,
            run_after=Case(When(held_by__isnull=True, then=Now()), default=F("run_after")),
        )
        queue = body.values_list("queue", flat=True).first()
        if queue is not None:
            self.notify(queue)

    def notify(self, queue: str) -> None:
        """Wake idle workers of ``queue``; only PostgreSQL can."""

    @store_operation
    def next_due_in(self, *, queues: list[str]) -> float | None:
        """Seconds until the earliest released task of ``queues`` is due, if any."""
        run_after = (
            Task.objects.filter(
                queue__in=queues,
                held_by__isnull=True,
                run_after__isnull=False,
                paused_by__isnull=True,
            )
            .order_by("run_after")
            .values_list("run_after", flat=True)
            .first()
        )
        if run_after is None:
            return None
        return (run_after - self.now()).total_seconds()

    def now(self) -> datetime:
        """The clock durable times are judged by (on one machine, its own)."""
        return timezone.now()

    # -- liveness --------------------------------------------------------------------

    @store_operation
    def heartbeat(
        self, worker_id: str, tokens: list[uuid.UUID], lease: float, abandoned: int = 0
    ) -> bool:
        """Extend the leases of ``tokens`` and the worker's own; False if its row is gone."""
        now = self.now()
        until = now + timedelta(seconds=lease)
        if tokens:
            Task.objects.filter(held_by__in=tokens).update(lease_until=until)
        return bool(
            Worker.objects.filter(pk=worker_id).update(
                heartbeat_at=now, expires_at=until, abandoned_threads=abandoned
            )
        )

    @store_operation
    def register_worker(
        self, worker: Worker, lease: float, *, replace_live: bool = False
    ) -> WorkerHolder | None:
        """Insert the worker's row, taking over the row of a dead worker of the same id.

        Returns ``None``, or the holder when a worker whose lease has not ended has the id
        (taken over all the same with ``replace_live``, for a holder known to be dead).
        """
        now = self.now()
        with transaction.atomic():
            existing = (
                Worker.objects.select_for_update()
                .filter(pk=worker.pk)
                .values_list("hostname", "pid", "heartbeat_at", "expires_at")
                .first()
            )
            if existing is not None and existing[3] > now and not replace_live:
                return WorkerHolder(
                    hostname=existing[0],
                    pid=existing[1],
                    heartbeat_age=(now - existing[2]).total_seconds(),
                    expires_in=(existing[3] - now).total_seconds(),
                )
            Worker.objects.filter(pk=worker.pk).delete()
            worker.heartbeat_at = worker.started_at = now
            worker.expires_at = now + timedelta(seconds=lease)
            worker.save(force_insert=True)
        return None

    @store_operation
    def unregister_worker(self, worker_id: str) -> None:
        Worker.objects.filter(pk=worker_id).delete()

    @store_operation
    def prune_workers(self, older_than: float) -> int:
        """Delete the rows of workers dead for longer than ``older_than`` seconds."""
        cutoff = self.now() - timedelta(seconds=older_than)
        deleted, _ = Worker.objects.filter(expires_at__lt=cutoff).delete()
        return deleted

    def _cursor(self) -> Any:
        """The cursor of the store's own statements (prepared where the backend can)."""
        return connection.cursor()

    def _token(self, token: uuid.UUID) -> Any:
        """A claim token as a query parameter: SQLite stores UUIDs as 32 hex digits."""
        return token.hex
