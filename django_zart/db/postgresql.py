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
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from django.db import connection, transaction

from ..models import Task
from ..states import RUN_STATUS_FOR, ExecutionStatus, allowed_from
from .base import Store
from .guard import store_operation
from .types import Checkpoint, Claim, LeaseLost, claim_from_row

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
    share_lock = " FOR SHARE"
    _claim_columns: tuple[str, ...] | None = None

    def _token(self, token: uuid.UUID) -> Any:
        return token  # psycopg adapts UUIDs to the uuid column

    def _execute(self, name: str, params: Any) -> Any:
        """Run a named statement; the first value of its one row, or its row count."""
        with connection.cursor() as cursor:
            cursor.execute(QUERIES[name], params)
            if cursor.description is None:
                return cursor.rowcount
            return cursor.fetchone()[0]

    @store_operation
    def claim(self, *, queues: list[str], limit: int, lease: float) -> list[Claim]:
        token = uuid.uuid4()
        sql, select_params = _claim_sql(tuple(queues), limit)
        params = (token, lease, *select_params, allowed_from(ExecutionStatus.RUNNING))
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if self._claim_columns is None:
                # Kept from the first claim: building a cursor's description for every
                # claim costs more than the rest of reading its rows.
                self._claim_columns = tuple(column.name for column in cursor.description)
            columns = self._claim_columns
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        origin = time.monotonic()
        return [claim_from_row(row, token=token, clock_origin=origin, decode=_json) for row in rows]

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
        .select_for_update(skip_locked=True)
        .values_list("id")[:limit]
    )
    with transaction.atomic():  # the compiler refuses FOR UPDATE in autocommit
        sql, params = queryset.query.get_compiler(connection=connection).as_sql()
    return QUERIES["claim"].replace("{claimable}", sql), tuple(params)


def _json(value: object) -> object:
    """Django's backend hands jsonb to raw cursors as text; JSONField would parse it."""
    return json.loads(value) if isinstance(value, str | bytes) else value
