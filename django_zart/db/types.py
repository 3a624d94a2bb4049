"""What the runtime and the store pass each other: frozen values and control signals.

Nothing here imports the models or the runtime, so both sides can import it. The three
exceptions derive from ``BaseException``: they travel through user code (a step call
writes a checkpoint inside the workflow body), and a workflow's ``except Exception:``
must not swallow them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class LeaseLost(BaseException):
    """The claim no longer holds its task: taken over after its lease ran out, or
    cancelled. The worker stops without writing anything more."""


class DatabaseUnavailable(BaseException):
    """The database connection broke or the server is not reachable.

    Nothing about the execution is wrong: the worker drops the connection, waits, and
    replays the claim from its checkpoints on a fresh one.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__("%s: %s" % (type(cause).__name__, cause))
        self.cause = cause


class StoreRefused(BaseException):
    """The database refused a write for the data in it (out-of-range or invalid values).

    Retrying cannot help: the runtime fails the step or the execution with the reason.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__("%s: %s" % (type(cause).__name__, cause))
        self.cause = cause


@dataclass(frozen=True, slots=True, kw_only=True)
class NewExecution:
    """An execution to insert with its first run and its body's task."""

    id: str
    workflow: str
    queue: str
    input_json: str | None
    """The encoded input as JSON text, or ``None`` for no input."""
    timeout: float | None
    """Seconds from now (the database's now) to the deadline."""
    parent_id: str | None = None
    wake_parent: bool = False
    paused_by: int | None = None
    reason: str
    triggered_by: str = ""
    priority: int = 0
    """Higher is claimed first; stored negated, as the claim's ascending sort key."""
    limit_key: str | None = None
    """Its concurrency key, if its workflow has a limit; ``limit_max`` is that limit."""
    limit_max: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerHolder:
    """The live-looking worker that holds a worker id another worker asked for."""

    hostname: str
    pid: int
    heartbeat_age: float
    """Seconds since its last heartbeat."""
    expires_in: float
    """Seconds until its lease ends, unless it heartbeats again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchRow:
    """The step row a parallel branch runs and records into."""

    step_id: int
    position: str
    name: str
    status: str
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """A task a worker holds, with what it needs to run the execution's body or branch."""

    task_id: int
    token: uuid.UUID
    execution_id: str
    status: str
    """The execution's status before the claim: a finished one has nothing to run."""
    workflow: str
    input: Any
    run_id: int
    run_index: int
    run_reason: str
    replay_base: int
    deadline_at: datetime | None
    fresh: bool
    """The body never ran before: no checkpoints to load."""
    recoveries: int
    db_now: datetime
    """The database clock when the claim was taken ..."""
    clock_origin: float
    """... and ``time.monotonic()`` at that moment: durable times advance from there."""
    kind: str = "BODY"
    lease: float = 0.0
    """Seconds the claim's lease lasts from its last heartbeat."""
    payload: Any = None
    """A branch's encoded ``[args, kwargs]``."""
    branch: BranchRow | None = None
    parent_id: str | None = None
    """The parent execution waiting for this one (``run_workflow``), woken when it ends."""
    unreadable: str | None = None
    """Why the claimed row could not be read; such a claim is failed, not run."""
    limit_key: str | None = None
    """The concurrency key whose slot it holds (a limited workflow's body)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A durable call's outcome to write: ``result`` and ``error`` are JSON text."""

    sequence: int
    position: str
    name: str
    kind: str
    status: str
    result: str | None = None
    error: str | None = None
    attempts: int = 1
    wake_at: datetime | None = None
    at: datetime
    call_hash: str = ""
    """A digest of the call's arguments: a replay pairing it with another call is caught."""
    attempt_rows: tuple[tuple[int, str, str | None], ...] = ()
    """``(number, status, error JSON)`` rows for zart_step_attempts."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """A checkpoint of the current run, as loaded or just written."""

    step_id: int
    sequence: int
    position: str
    name: str
    kind: str
    status: str
    result: Any
    error: dict[str, Any] | None
    attempts: int
    wake_at: datetime | None
    call_hash: str = ""


RECORD_COLUMNS = (
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
    "call_hash",
)
"""The ``zart_steps`` columns a ``Record`` is made of, in its field order."""


def records(rows: Iterable[Sequence[Any]]) -> list[Record]:
    """``Record``s from ``values_list(*RECORD_COLUMNS)`` rows."""
    return [Record(**dict(zip(Record.__dataclass_fields__, row, strict=True))) for row in rows]


def claim_from_row(
    row: Mapping[str, Any],
    *,
    token: uuid.UUID,
    clock_origin: float,
    lease: float = 0.0,
    decode: Callable[[Any], Any] = lambda value: value,
) -> Claim:
    """A ``Claim`` from a claimed row, read by column name (both stores name them alike).

    A row that cannot be read (its current run missing, JSON that Python cannot parse)
    becomes a claim to fail, so that one bad row never fails the others claimed with it.
    ``decode`` turns the stored JSON columns into values.
    """
    common: dict[str, Any] = {
        "task_id": row["task_id"],
        "token": token,
        "execution_id": row["execution_id"],
        "status": row["status"],
        "workflow": row["workflow"],
        "run_index": row["run_index"],
        "replay_base": row["replay_base"],
        "recoveries": row["recoveries"],
        "db_now": row["db_now"],
        "clock_origin": clock_origin,
        "kind": row["kind"],
        "lease": lease,
        "limit_key": row.get("limit_key"),
    }
    try:
        if row["run_id"] is None:
            raise ValueError("the execution's current run %d is missing" % row["run_index"])
        return Claim(
            **common,
            input=decode(row["input"]),
            payload=decode(row["payload"]),
            run_id=row["run_id"],
            run_reason=row["run_reason"],
            deadline_at=row["deadline_at"],
            fresh=row["fresh"],
            parent_id=row["parent_id"],
            branch=None
            if row["step_id"] is None
            else BranchRow(
                step_id=row["step_id"],
                position=row["position"],
                name=row["name"],
                status=row["step_status"],
                attempts=row["attempts"],
            ),
        )
    except (ValueError, TypeError) as exc:
        return Claim(
            **common,
            input=None,
            run_id=row["run_id"] or 0,
            run_reason=row["run_reason"] or "",
            deadline_at=None,
            fresh=False,
            unreadable="%s: %s" % (type(exc).__name__, exc),
        )


def loads_json(text: str | None) -> Any:
    """Checkpoints carry JSON text; the ORM's JSONField wants the value."""
    return None if text is None else json.loads(text)
