"""The store: claims, checkpoints, suspensions and finishes, fenced by claim tokens.

Every write for claimed work names the task and the claim token it was claimed with; a
write that matches no row means another worker took the work over (the lease expired),
and raises ``LeaseLost`` so the stale worker stops without touching anything.

This generic implementation uses short ORM transactions and the worker's clock; it is
meant for SQLite, where one machine has one clock. ``PostgresStore`` replaces the hot
paths with single statements judged by the database clock.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, DateTimeField, F, Q, Value, When
from django.db.models.functions import Now
from django.utils import timezone

from ..context import LeaseLost, Record
from ..models import Event, Execution, Run, Step, StepAttempt, Task, Worker
from ..states import (
    RUN_STATUS_FOR,
    ExecutionStatus,
    RunReason,
    RunStatus,
    StepStatus,
    TaskKind,
)
from .branches import BranchWrites
from .types import Checkpoint, Claim, loads_json


class Store(BranchWrites):
    json_placeholder = "%s"
    share_lock = ""

    # -- claiming --------------------------------------------------------------------

    def claim(self, *, queues: list[str], limit: int, lease: float) -> list[Claim]:
        token = uuid.uuid4()
        now = timezone.now()
        with transaction.atomic():
            tasks = list(
                Task.objects.claimable(queues=queues)
                .select_for_update(skip_locked=True)
                .values_list(
                    "pk", "execution_id", "held_by", "recoveries", "kind", "step_id", "payload"
                )[:limit]
            )
            # Conditional on what was read: without a row lock (SQLite), a concurrent
            # claimer that got there first makes the UPDATE match nothing.
            tasks = [
                task
                for task in tasks
                if Task.objects.filter(pk=task[0], held_by=task[2]).update(
                    held_by=token,
                    wake_pending=False,
                    lease_until=now + timedelta(seconds=lease),
                    claimed_at=now,
                    recoveries=task[3] + (task[2] is not None),
                )
            ]
            if not tasks:
                return []
            ids = [t[1] for t in tasks]
            bodies = [t[1] for t in tasks if t[4] == TaskKind.BODY]
            fresh = set(
                Execution.objects.filter(pk__in=bodies, started_at__isnull=True).values_list(
                    "pk", flat=True
                )
            )
            Execution.objects.filter(pk__in=bodies, started_at__isnull=True).update(started_at=now)
            Execution.objects.filter(pk__in=bodies).update(
                status=ExecutionStatus.RUNNING, updated_at=now
            )
            rows = {
                e.pk: e
                for e in Execution.objects.filter(pk__in=ids).only(
                    "workflow",
                    "input",
                    "run_index",
                    "replay_base",
                    "deadline_at",
                    "parent_id",
                    "wake_parent",
                )
            }
            runs = {
                execution_id: (pk, reason)
                for execution_id, pk, reason in Run.objects.filter(execution_id__in=ids)
                .filter(index=F("execution__run_index"))
                .values_list("execution_id", "pk", "reason")
            }
            steps = {
                row[0]: row
                for row in Step.objects.filter(pk__in=[t[5] for t in tasks if t[5]]).values_list(
                    "pk", "position", "name", "status", "attempts", "wake_at"
                )
            }
        return [
            Claim(
                task_id=pk,
                token=token,
                execution_id=execution_id,
                workflow=rows[execution_id].workflow,
                input=rows[execution_id].input,
                run_id=runs[execution_id][0],
                run_reason=runs[execution_id][1],
                run_index=rows[execution_id].run_index,
                replay_base=rows[execution_id].replay_base,
                deadline_at=rows[execution_id].deadline_at,
                fresh=execution_id in fresh,
                recoveries=recoveries + (held_by is not None),
                db_now=now,
                kind=kind,
                payload=payload,
                branch=steps.get(step_id) if step_id else None,
                parent_id=rows[execution_id].parent_id if rows[execution_id].wake_parent else None,
            )
            for pk, execution_id, held_by, recoveries, kind, step_id, payload in tasks
        ]

    # -- replay ----------------------------------------------------------------------

    def execution_error(self, execution_id: str) -> dict[str, Any] | None:
        error: dict[str, Any] | None = Execution.objects.values_list("error", flat=True).get(
            pk=execution_id
        )
        return error

    def load_checkpoints(self, claim: Claim) -> list[Record]:
        """All checkpoints the current run replays, in one query."""
        if claim.fresh:
            return []
        rows = (
            Step.objects.filter(execution_id=claim.execution_id, run_index__gte=claim.replay_base)
            .filter(Q(run_id=claim.run_id) | Q(status=StepStatus.COMPLETED))
            .order_by("run_index")
            .values_list(
                "pk",
                "sequence",
                "position",
                "name",
                "kind",
                "status",
                "result",
                "error",
                "attempts",
                "wake_at",
            )
        )
        return [Record(*row) for row in rows]

    # -- checkpoints -----------------------------------------------------------------

    @cached_property
    def _upsert_sql(self) -> str:
        j = self.json_placeholder
        return (
            "INSERT INTO zart_steps (run_id, execution_id, run_index, sequence, position, "
            "name, kind, status, result, error, attempts, wake_at, created_at, updated_at) "
            "SELECT %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %s, %s, %%s, %%s, %%s, %%s "
            "WHERE EXISTS (SELECT 1 FROM zart_tasks WHERE id = %%s AND held_by = %%s%s) "
            "ON CONFLICT (run_id, position) DO UPDATE SET status = excluded.status, "
            "result = excluded.result, error = excluded.error, attempts = excluded.attempts, "
            "wake_at = excluded.wake_at, updated_at = excluded.updated_at RETURNING id"
            % (j, j, self.share_lock)
        )

    def record(self, claim: Claim, point: Checkpoint) -> int:
        """Write one checkpoint (one statement, one commit when there are no attempts)."""
        if point.attempt_rows:
            with transaction.atomic():
                step_id = self._upsert(claim, point)
                self._attempt_rows(step_id, point)
                return step_id
        return self._upsert(claim, point)

    def _upsert(self, claim: Claim, point: Checkpoint) -> int:
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
            at,
            at,
            claim.task_id,
            self._token(claim.token),
        ]
        with connection.cursor() as cursor:
            cursor.execute(self._upsert_sql, params)
            row = cursor.fetchone()
        if row is None:
            raise LeaseLost()
        return int(row[0])

    # -- leaving the execution -------------------------------------------------------

    def suspend(
        self, claim: Claim, wake_at: datetime | None, checkpoint: Checkpoint | None = None
    ) -> None:
        """Release the execution until ``wake_at`` (``None``: until an event wakes it).

        ``checkpoint`` is written in the same transaction. An event that arrived while this
        worker held the execution set ``wake_pending``: then the task is due at once, so
        that wake-up is not lost.
        """
        with transaction.atomic():
            if checkpoint is not None:
                self.record(claim, checkpoint)
            due = Value(wake_at, output_field=DateTimeField())
            self._release_task(
                claim, run_after=Case(When(wake_pending=True, then=Now()), default=due)
            )
            Execution.objects.filter(pk=claim.execution_id).update(
                status=ExecutionStatus.SUSPENDED, updated_at=timezone.now()
            )

    def finish(self, claim: Claim, *, status: str, output: str | None, error: str | None) -> None:
        """Complete or fail the execution and drop its task, if this claim still holds it."""
        now = timezone.now()
        run_status = RUN_STATUS_FOR[status]
        with transaction.atomic():
            deleted, _ = Task.objects.filter(pk=claim.task_id, held_by=claim.token).delete()
            if not deleted:
                raise LeaseLost()
            # Branches nobody waited for end with their execution.
            Task.objects.filter(execution_id=claim.execution_id, kind=TaskKind.BRANCH).delete()
            Run.objects.filter(pk=claim.run_id).update(
                status=run_status, finished_at=now, error=loads_json(error)
            )
            Execution.objects.filter(pk=claim.execution_id).update(
                status=status,
                output=loads_json(output),
                error=loads_json(error),
                finished_at=now,
                updated_at=now,
            )
            if claim.parent_id is not None:
                self.wake_body(claim.parent_id)

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

    def rerun(self, claim: Claim, *, error: str, reason: str = RunReason.RETRY) -> int:
        """Fail the current run and start the next one at once.

        A ``RETRY`` run (workflow ``max_retries``) replays the completed steps of the
        earlier runs; a ``COMPENSATION`` run (``on_failure``) starts from a clean slate
        and keeps the failure it handles as the execution's error.
        """
        now = timezone.now()
        with transaction.atomic():
            self._release_task(claim, run_after=now)
            Run.objects.filter(pk=claim.run_id).update(
                status=RunStatus.FAILED, finished_at=now, error=loads_json(error)
            )
            index = claim.run_index + 1
            Run.objects.create(execution_id=claim.execution_id, index=index, reason=reason)
            changes: dict[str, Any] = {}
            if reason == RunReason.COMPENSATION:
                changes = {"replay_base": index, "error": loads_json(error)}
            Execution.objects.filter(pk=claim.execution_id).update(
                run_index=index, status=ExecutionStatus.PENDING, updated_at=now, **changes
            )
            queue = Task.objects.filter(pk=claim.task_id).values_list("queue", flat=True)
            self.notify(queue.get())
        return index

    def _release_task(self, claim: Claim, *, run_after: Any) -> None:
        released = Task.objects.filter(pk=claim.task_id, held_by=claim.token).update(
            held_by=None, lease_until=None, run_after=run_after, wake_pending=False
        )
        if not released:
            raise LeaseLost()

    def release(self, tokens: list[uuid.UUID], task_ids: list[int]) -> int:
        """Give back tasks a stopping worker still holds, due now, without a recovery."""
        return Task.objects.filter(pk__in=task_ids, held_by__in=tokens).update(
            held_by=None, lease_until=None, run_after=timezone.now()
        )

    def _attempt_rows(self, step_id: int, point: Checkpoint) -> None:
        StepAttempt.objects.bulk_create(
            StepAttempt(
                step_id=step_id,
                number=number,
                status=status,
                error=None if error is None else loads_json(error),
                finished_at=point.at,
            )
            for number, status, error in point.attempt_rows
        )

    # -- events and wake-ups -----------------------------------------------------------

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
                .values_list("pk", "payload")
                .first()
            )
            if event is None:
                return None
            point.result = json.dumps(event[1])
            step_id = self._upsert(claim, point)
            Event.objects.filter(pk=event[0]).update(consumed_at=point.at, consumed_by=step_id)
        return step_id, event[1]

    def notify(self, queue: str) -> None:
        """Wake idle workers of ``queue``; only PostgreSQL can."""

    def next_due_in(self, *, queues: list[str]) -> float | None:
        """Seconds until the earliest released task of ``queues`` is due, if any."""
        run_after = (
            Task.objects.filter(queue__in=queues, held_by__isnull=True, run_after__isnull=False)
            .order_by("run_after")
            .values_list("run_after", flat=True)
            .first()
        )
        if run_after is None:
            return None
        return (run_after - timezone.now()).total_seconds()

    # -- liveness --------------------------------------------------------------------

    def heartbeat(self, worker_id: str, tokens: list[uuid.UUID], lease: float) -> None:
        now = timezone.now()
        if tokens:
            Task.objects.filter(held_by__in=tokens).update(
                lease_until=now + timedelta(seconds=lease)
            )
        Worker.objects.filter(pk=worker_id).update(heartbeat_at=now)

    def register_worker(self, worker: Worker) -> None:
        worker.save(force_insert=True)

    def unregister_worker(self, worker_id: str) -> None:
        Worker.objects.filter(pk=worker_id).delete()

    def _token(self, token: uuid.UUID) -> Any:
        """A claim token as a query parameter: SQLite stores UUIDs as 32 hex digits."""
        return token.hex
