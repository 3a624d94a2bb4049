"""PostgreSQL: what every execution pays for is one statement, judged by the database clock.

The statements live in ``postgresql.sql``, by name. They replace the generic store's
operations that each execution runs once or more (claim, suspend, finish, the
checkpoint's placeholders) and the worker's periodic ones (heartbeat, next due time):
the generic versions cost three to six round trips in a transaction each, and judge
leases by the worker's clock. Everything else is the generic store's. Lease expiry is
compared with ``now()`` on the server, so clock skew between machines cannot hand work
out early.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from django.db import connection, transaction

from ..models import Task
from ..states import RUN_STATUS_FOR, ExecutionStatus, StepKind, StepStatus, allowed_from
from .base import Store
from .cursors import store_cursor
from .guard import store_operation
from .types import BranchRow, Checkpoint, Claim, LeaseLost, NewExecution, claim_from_row

NOTIFY_CHANNEL = "zart_due"


def _load_queries() -> dict[str, str]:
    """The named statements of ``postgresql.sql``, without their comment lines."""
    text = (Path(__file__).with_name("postgresql.sql")).read_text()
    queries = {}
    for block in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        queries[name.strip()] = "\n".join(lines).strip().replace("{channel}", NOTIFY_CHANNEL)
    return queries


QUERIES = _load_queries()


class PostgresStore(Store):
    json_placeholder = "%s::jsonb"
    CREATE_BATCH = 1000
    share_lock = " FOR SHARE"
    _claim_columns: tuple[str, ...] | None = None

    def _token(self, token: uuid.UUID) -> Any:
        return token  # psycopg adapts UUIDs to the uuid column

    def _cursor(self) -> Any:
        return store_cursor()

    def _row(self, name: str, params: Any) -> tuple[Any, ...]:
        """Run a named statement of one row; that row."""
        with self._cursor() as cursor:
            cursor.execute(QUERIES[name], params)
            return tuple(cursor.fetchone())

    def _execute(self, name: str, params: Any) -> Any:
        """Run a named statement; the first value of its one row, or its row count."""
        with self._cursor() as cursor:
            cursor.execute(QUERIES[name], params)
            if cursor.description is None:
                return cursor.rowcount
            return cursor.fetchone()[0]

    def create_executions(self, new: list[NewExecution]) -> list[str]:
        """One statement per batch: a ``start()`` in autocommit is one round trip."""
        created: list[str] = []
        for start in range(0, len(new), self.CREATE_BATCH):
            batch = new[start : start + self.CREATE_BATCH]
            created.extend(
                self._execute(
                    "create_executions",
                    {
                        "ids": [n.id for n in batch],
                        "workflows": [n.workflow for n in batch],
                        "queues": [n.queue for n in batch],
                        "inputs": [n.input_json for n in batch],
                        "timeouts": [n.timeout for n in batch],
                        "parents": [n.parent_id for n in batch],
                        "wake_parents": [n.wake_parent for n in batch],
                        "paused_by": [n.paused_by for n in batch],
                        "reasons": [n.reason for n in batch],
                        "triggered_by": [n.triggered_by for n in batch],
                        "priorities": [n.priority for n in batch],
                        "limit_keys": [n.limit_key for n in batch],
                        "limit_maxes": [n.limit_max for n in batch],
                    },
                )
            )
        return created

    @store_operation
    def claim(self, *, queues: list[str], limit: int, lease: float) -> list[Claim]:
        token = uuid.uuid4()
        sql, select_params = _claim_sql(tuple(queues), limit)
        params = (token, lease, *select_params, allowed_from(ExecutionStatus.RUNNING))
        with self._cursor() as cursor:
            cursor.execute(sql, params)
            if self._claim_columns is None:
                # Kept from the first claim: building a cursor's description for every
                # claim costs more than the rest of reading its rows.
                self._claim_columns = tuple(column.name for column in cursor.description)
            columns = self._claim_columns
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        origin = time.monotonic()
        return [
            claim_from_row(row, token=token, clock_origin=origin, lease=lease, decode=_json)
            for row in rows
        ]

    @store_operation
    def suspend(
        self, claim: Claim, wake_at: datetime | None, checkpoint: Checkpoint | None = None
    ) -> None:
        params = {
            "task": claim.task_id,
            "token": claim.token,
            "wake_at": wake_at,
            "allowed": allowed_from(ExecutionStatus.SUSPENDED),
        }
        if checkpoint is None:
            if not self._execute("suspend", params):
                raise LeaseLost()
            return
        with transaction.atomic():
            self.record(claim, checkpoint)
            if not self._execute("suspend", params):
                raise LeaseLost()  # rolls the checkpoint back
            if checkpoint.kind == StepKind.GROUP and checkpoint.status == StepStatus.WAITING:
                self._execute("count_group", {"run": claim.run_id, "position": checkpoint.position})

    @store_operation
    def schedule_branches(
        self, claim: Claim, points: list[Checkpoint], payloads: list[Any]
    ) -> list[int]:
        """Record branches and queue them for any worker: one statement for all of them."""
        status, step_ids, _ = self._row(
            "schedule_branches",
            {
                "task": claim.task_id,
                "token": claim.token,
                "run": claim.run_id,
                "execution": claim.execution_id,
                "run_index": claim.run_index,
                "at": points[0].at,
                "sequences": [p.sequence for p in points],
                "positions": [p.position for p in points],
                "names": [p.name for p in points],
                "hashes": [p.call_hash for p in points],
                "payloads": [None if v is None else json.dumps(v) for v in payloads],
            },
        )
        if status is None or status == ExecutionStatus.CANCELLED:
            raise LeaseLost()  # taken over, or cancelled: no branch is queued
        return list(step_ids)

    @store_operation
    def finish_branch(self, claim: Claim, step_id: int, point: Checkpoint) -> int:
        """Record a branch's outcome: one round trip, whatever the size of its group."""
        self._finish_branches(claim, [(claim, step_id, point)])
        return step_id

    @store_operation
    def claim_siblings(self, claim: Claim, limit: int) -> list[Claim]:
        """More due branches of the same step as ``claim``'s, under its token and lease."""
        branch = claim.branch
        if branch is None:
            return []
        with self._cursor() as cursor:
            cursor.execute(
                QUERIES["claim_siblings"],
                {
                    "token": claim.token,
                    "lease": claim.lease,
                    "execution": claim.execution_id,
                    "run": claim.run_id,
                    "name": branch.name,
                    "limit": limit,
                },
            )
            rows = cursor.fetchall()
        return [
            replace(
                claim,
                task_id=task_id,
                payload=_json(payload),
                recoveries=0,
                branch=BranchRow(
                    step_id=step_id, position=position, name=name, status=status, attempts=attempts
                ),
            )
            for task_id, payload, step_id, position, name, status, attempts in rows
        ]

    @store_operation
    def finish_branches(self, claim: Claim, outcomes: list[tuple[Claim, Checkpoint]]) -> None:
        """Record a batch's outcomes in one statement."""
        self._finish_branches(
            claim,
            [
                (sibling, sibling.branch.step_id, point)
                for sibling, point in outcomes
                if sibling.branch
            ],
        )

    def _finish_branches(self, claim: Claim, done: list[tuple[Claim, int, Checkpoint]]) -> None:
        """The body's task is locked first, by a statement of its own: the outcomes'
        statement then sees every branch that finished before (a new snapshot), which the
        group's count relies on (see ``finish_branches`` in postgresql.sql)."""
        if not done:
            return
        params = {
            "tasks": [branch.task_id for branch, _, _ in done],
            "token": claim.token,
            "run": claim.run_id,
            "execution": claim.execution_id,
            "at": max(point.at for _, _, point in done),
            "steps": [step_id for _, step_id, _ in done],
            "statuses": [point.status for _, _, point in done],
            "results": [point.result for _, _, point in done],
            "errors": [point.error for _, _, point in done],
            "attempts": [point.attempts for _, _, point in done],
        }
        single = len(done) == 1 and not done[0][2].attempt_rows
        # One outcome and nothing else to write: one simple query, its own transaction.
        with nullcontext() if single else transaction.atomic():
            deleted, uncounted, _ = self._locked_row("lock_body", "finish_branches", params)
            if deleted != len(done):
                raise LeaseLost()  # rolls a batch back: its tasks are no longer all ours
            for _, step_id, point in done:
                self._attempt_rows(step_id, point)
        if uncounted:  # a group written before groups kept a count
            with transaction.atomic():
                body = self._execute("lock_body", {"execution": claim.execution_id})
                self._wake_for_group(claim, body)

    def _locked_row(self, lock: str, name: str, params: dict[str, Any]) -> tuple[Any, ...]:
        """Statement ``lock``, then statement ``name`` (with a new snapshot), in one
        transaction: sent together as one simple query where Django binds parameters on
        the client (its default), in two round trips inside a transaction otherwise."""
        with connection.cursor() as cursor:
            if isinstance(cursor.cursor, psycopg.ClientCursor):
                cursor.execute("%s;\n%s" % (QUERIES[lock], QUERIES[name]), params)
                cursor.nextset()
                return tuple(cursor.fetchone())
        with transaction.atomic():
            self._execute(lock, params)
            return self._row(name, params)

    @store_operation
    def finish(self, claim: Claim, *, status: str, output: str | None, error: str | None) -> None:
        moved = self._execute(
            "finish",
            {
                "task": claim.task_id,
                "token": claim.token,
                "status": status,
                "output": output,
                "error": error,
                "allowed": allowed_from(status),
                "run_status": RUN_STATUS_FOR[status],
                "run": claim.run_id,
            },
        )
        if not moved:
            raise LeaseLost()

    def _lock_limit_keys(self, keys: list[str]) -> None:
        """One claimer of limited work per key at a time: until this transaction ends,
        a second one waits here, and then counts what the first one claimed."""
        self._execute("lock_limit_keys", {"keys": keys})

    def notify(self, queue: str) -> None:
        """Wake idle workers of ``queue`` when the current transaction commits."""
        self._execute("notify", {"queue": queue})

    @store_operation
    def next_due_in(self, *, queues: list[str]) -> float | None:
        seconds = self._execute("next_due_in", {"queues": queues})
        return None if seconds is None else float(seconds)

    def now(self) -> datetime:
        now: datetime = self._execute("now", None)
        return now

    @store_operation
    def heartbeat(
        self, worker_id: str, tokens: list[uuid.UUID], lease: float, abandoned: int = 0
    ) -> bool:
        updated = self._execute(
            "heartbeat",
            {"lease": lease, "tokens": tokens, "worker": worker_id, "abandoned": abandoned},
        )
        return bool(updated)


@cache
def _claim_sql(queues: tuple[str, ...], limit: int) -> tuple[str, tuple[Any, ...]]:
    """The claim statement around the ORM's ``SELECT ... FOR UPDATE SKIP LOCKED``."""
    queryset = (
        Task.objects.claimable(queues=list(queues))
        .unlimited()
        .select_for_update(skip_locked=True)
        .values_list("id")[:limit]
    )
    with transaction.atomic():  # the compiler refuses FOR UPDATE in autocommit
        sql, params = queryset.query.get_compiler(connection=connection).as_sql()
    return QUERIES["claim"].replace("{claimable}", sql), tuple(params)


def _json(value: object) -> object:
    """Django's backend hands jsonb to raw cursors as text; JSONField would parse it."""
    return json.loads(value) if isinstance(value, str | bytes) else value
