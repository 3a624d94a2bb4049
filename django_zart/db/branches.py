"""The store's writes for parallel branches: scheduling, outcomes, the body's wake-up."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ..models import Execution, Step, Task
from ..states import ExecutionStatus, StepKind, StepStatus, TaskKind
from .guard import store_operation
from .types import RECORD_COLUMNS, Checkpoint, Claim, LeaseLost, Record, loads_json, records


class BranchWrites:
    """Mixed into ``Store``; uses its fenced ``_upsert`` and wake-up helpers."""

    def _upsert(self, claim: Claim, point: Checkpoint) -> tuple[int, str]:
        raise NotImplementedError

    def _attempt_rows(self, step_id: int, point: Checkpoint) -> None:
        raise NotImplementedError

    def _release_task(self, claim: Claim, *, run_after: Any, paused_by: int | None = None) -> None:
        raise NotImplementedError

    def wake_body(self, execution_id: str) -> None:
        raise NotImplementedError

    def notify(self, queue: str) -> None:
        raise NotImplementedError

    @store_operation
    def schedule_branches(
        self, claim: Claim, points: list[Checkpoint], payloads: list[Any]
    ) -> list[int]:
        """Record branches and queue them for any worker, in one transaction."""
        with transaction.atomic():
            written = [self._upsert(claim, point) for point in points]
            if any(status == ExecutionStatus.CANCELLED for _, status in written):
                raise LeaseLost()  # cancelled: no branch is queued
            step_ids = [step_id for step_id, _ in written]
            queue = Execution.objects.values_list("queue", flat=True).get(pk=claim.execution_id)
            priority = Task.objects.values_list("priority", flat=True).get(pk=claim.task_id)
            Task.objects.bulk_create(
                Task(
                    execution_id=claim.execution_id,
                    kind=TaskKind.BRANCH,
                    queue=queue,
                    step_id=step_id,
                    payload=payload,
                    priority=priority,  # the body's: branches share their execution's
                )
                for step_id, payload in zip(step_ids, payloads, strict=True)
            )
            self.notify(queue)
        return step_ids

    def claim_siblings(self, claim: Claim, limit: int) -> list[Claim]:
        """More due branches of ``claim``'s step, for the same thread; none here: only the
        PostgreSQL store runs branches in batches."""
        return []

    def finish_branches(self, claim: Claim, outcomes: list[tuple[Claim, Checkpoint]]) -> None:
        """Record the outcomes of branches claimed by ``claim_siblings``."""
        for sibling, point in outcomes:
            if sibling.branch is not None:
                self.finish_branch(sibling, sibling.branch.step_id, point)

    @store_operation
    def branch_states(self, claim: Claim, positions: list[str]) -> list[Record]:
        """The current rows of these branches (other workers write them)."""
        rows = Step.objects.filter(run_id=claim.run_id, position__in=positions)
        return records(rows.values_list(*RECORD_COLUMNS))

    @store_operation
    def finish_branch(self, claim: Claim, step_id: int, point: Checkpoint) -> int:
        """Record a branch's outcome; the last branch of a waited group wakes the body.

        The body's task row is locked first, so branches finishing at the same instant
        take turns: exactly one of them sees the group complete and wakes the body.
        """
        with transaction.atomic():
            body = (
                Task.objects.select_for_update()
                .filter(execution_id=claim.execution_id, kind=TaskKind.BODY)
                .values_list("pk", flat=True)
                .first()
            )
            deleted, _ = Task.objects.filter(pk=claim.task_id, held_by=claim.token).delete()
            if not deleted:
                raise LeaseLost()
            Step.objects.filter(pk=step_id).update(
                status=point.status,
                result=loads_json(point.result),
                error=loads_json(point.error),
                attempts=point.attempts,
                wake_at=None,
                updated_at=point.at,
            )
            self._attempt_rows(step_id, point)
            if body is not None:
                self._wake_for_group(claim, body)
        return step_id

    def _wake_for_group(self, claim: Claim, body_id: int) -> None:
        group = (
            Step.objects.filter(run_id=claim.run_id, kind=StepKind.GROUP, status=StepStatus.WAITING)
            .values_list("pk", "result")
            .first()
        )
        if group is None:
            # The body has not suspended on a group (yet): if it runs, make its release
            # due at once so it looks again.
            Task.objects.filter(pk=body_id, held_by__isnull=False).update(wake_pending=True)
            return
        unfinished = (
            Step.objects.filter(
                run_id=claim.run_id, position__in=(group[1] or {}).get("positions", [])
            )
            .exclude(status__in=[StepStatus.COMPLETED, StepStatus.FAILED])
            .exists()
        )
        if unfinished:
            return
        Step.objects.filter(pk=group[0]).update(status=StepStatus.COMPLETED)
        self.wake_body(claim.execution_id)

    @store_operation
    def retry_branch(self, claim: Claim, step_id: int, point: Checkpoint) -> None:
        """Record a branch's failed attempt and release it until the retry is due."""
        with transaction.atomic():
            self._release_task(claim, run_after=point.wake_at)
            Step.objects.filter(pk=step_id).update(
                status=StepStatus.RETRYING,
                error=loads_json(point.error),
                attempts=point.attempts,
                wake_at=point.wake_at,
                updated_at=point.at,
            )
            self._attempt_rows(step_id, point)
