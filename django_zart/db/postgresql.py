"""PostgreSQL: each hot-path write is one statement, judged by the database clock.

A claim is one ``UPDATE ... RETURNING`` over a ``SELECT ... FOR UPDATE SKIP LOCKED``
built by the ORM; finishing, suspending and heartbeating are one statement each; a
checkpoint is one fenced ``INSERT``. Lease expiry compares with ``now()`` on the server,
so clock skew between worker machines cannot hand work out early.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection, transaction

from ..context import LeaseLost
from ..models import Task
from ..states import RUN_STATUS_FOR
from .base import Store
from .types import Checkpoint, Claim

_CLAIM = """
WITH claimed AS (
    UPDATE zart_tasks AS t
       SET held_by = %%s,
           lease_until = now() + make_interval(secs => %%s),
           claimed_at = now(),
           recoveries = t.recoveries + (t.held_by IS NOT NULL)::int,
           wake_pending = false
     WHERE t.id IN (%s)
 RETURNING t.id, t.execution_id, t.recoveries, t.kind, t.step_id, t.payload
), started AS (
    UPDATE zart_executions AS e
       SET status = 'RUNNING', started_at = COALESCE(e.started_at, now()), updated_at = now()
      FROM claimed c
     WHERE e.id = c.execution_id AND c.kind = 'BODY'
 RETURNING e.id, e.started_at = now() AS fresh
)
SELECT c.id, e.id, e.workflow, e.input, r.id, e.run_index, e.replay_base, e.deadline_at,
       COALESCE(s.fresh, false), c.recoveries, now(), c.kind, c.payload,
       st.id, st.position, st.name, st.status, st.attempts, st.wake_at,
       CASE WHEN e.wake_parent THEN e.parent_id END, r.reason
  FROM claimed c
  JOIN zart_executions e ON e.id = c.execution_id
  LEFT JOIN started s ON s.id = c.execution_id AND c.kind = 'BODY'
  JOIN zart_execution_runs r ON r.execution_id = e.id AND r.index = e.run_index
  LEFT JOIN zart_steps st ON st.id = c.step_id
"""

_SUSPEND = """
WITH t AS (
    UPDATE zart_tasks
       SET held_by = NULL, lease_until = NULL, wake_pending = false,
           run_after = CASE WHEN wake_pending THEN now() ELSE %s::timestamptz END
     WHERE id = %s AND held_by = %s
 RETURNING execution_id
)
UPDATE zart_executions AS e SET status = 'SUSPENDED', updated_at = now()
  FROM t WHERE e.id = t.execution_id
"""

_FINISH = """
WITH t AS (
    DELETE FROM zart_tasks WHERE id = %s AND held_by = %s RETURNING execution_id
), b AS (
    DELETE FROM zart_tasks WHERE execution_id IN (SELECT execution_id FROM t)
       AND kind = 'BRANCH'
), r AS (
    UPDATE zart_execution_runs SET status = %s, finished_at = now(), error = %s::jsonb
     WHERE id = %s AND EXISTS (SELECT 1 FROM t)
)
UPDATE zart_executions AS e
   SET status = %s, output = %s::jsonb, error = %s::jsonb, finished_at = now(),
       updated_at = now()
  FROM t WHERE e.id = t.execution_id
"""


NOTIFY_CHANNEL = "zart_due"


class PostgresStore(Store):
    json_placeholder = "%s::jsonb"
    share_lock = " FOR SHARE"

    def _token(self, token: uuid.UUID) -> Any:
        return token  # psycopg adapts UUIDs to the uuid column

    def claim(self, *, queues: list[str], limit: int, lease: float) -> list[Claim]:
        token = uuid.uuid4()
        select_sql, select_params = _claimable_sql(tuple(queues), limit)
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM % select_sql, (token, lease, *select_params))
            rows = cursor.fetchall()
        return [
            Claim(
                task_id=row[0],
                token=token,
                execution_id=row[1],
                workflow=row[2],
                input=_json(row[3]),
                run_id=row[4],
                run_index=row[5],
                replay_base=row[6],
                deadline_at=row[7],
                fresh=row[8],
                recoveries=row[9],
                db_now=row[10],
                kind=row[11],
                payload=_json(row[12]),
                branch=None if row[13] is None else tuple(row[13:19]),
                parent_id=row[19],
                run_reason=row[20],
            )
            for row in rows
        ]

    def suspend(
        self, claim: Claim, wake_at: datetime | None, checkpoint: Checkpoint | None = None
    ) -> None:
        with transaction.atomic():
            if checkpoint is not None:
                self.record(claim, checkpoint)
            with connection.cursor() as cursor:
                cursor.execute(_SUSPEND, [wake_at, claim.task_id, claim.token])
                if cursor.rowcount != 1:
                    raise LeaseLost()

    def finish(self, claim: Claim, *, status: str, output: str | None, error: str | None) -> None:
        if claim.parent_id is not None:  # rare: the ORM path also wakes the parent
            super().finish(claim, status=status, output=output, error=error)
            return
        run_status = RUN_STATUS_FOR[status]
        with connection.cursor() as cursor:
            cursor.execute(
                _FINISH,
                [
                    claim.task_id,
                    claim.token,
                    run_status,
                    error,
                    claim.run_id,
                    status,
                    output,
                    error,
                ],
            )
            if cursor.rowcount != 1:
                raise LeaseLost()

    def notify(self, queue: str) -> None:
        """Wake idle workers of ``queue`` when the current transaction commits."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, queue])

    def next_due_in(self, *, queues: list[str]) -> float | None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT EXTRACT(EPOCH FROM min(run_after) - now()) FROM zart_tasks"
                " WHERE queue = ANY(%s) AND held_by IS NULL AND run_after IS NOT NULL",
                [queues],
            )
            row = cursor.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def heartbeat(self, worker_id: str, tokens: list[uuid.UUID], lease: float) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "WITH t AS (UPDATE zart_tasks SET lease_until = now() + make_interval(secs => %s)"
                " WHERE held_by = ANY(%s)) UPDATE zart_workers SET heartbeat_at = now()"
                " WHERE id = %s",
                [lease, tokens, worker_id],
            )

    def release(self, tokens: list[uuid.UUID], task_ids: list[int]) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE zart_tasks SET held_by = NULL, lease_until = NULL, run_after = now()"
                " WHERE id = ANY(%s) AND held_by = ANY(%s)",
                [task_ids, tokens],
            )
            return int(cursor.rowcount)


@cache
def _claimable_sql(queues: tuple[str, ...], limit: int) -> tuple[str, tuple[Any, ...]]:
    """The ORM's ``SELECT ... FOR UPDATE SKIP LOCKED`` of claimable task ids."""
    queryset = (
        Task.objects.claimable(queues=list(queues))
        .select_for_update(skip_locked=True)
        .values("pk")[:limit]
    )
    with transaction.atomic():  # the compiler refuses FOR UPDATE in autocommit
        sql, params = queryset.query.get_compiler(connection=connection).as_sql()
    return sql, tuple(params)


def _json(value: object) -> object:
    """Django's backend hands jsonb to raw cursors as text; JSONField would parse it."""
    return json.loads(value) if isinstance(value, str | bytes) else value
