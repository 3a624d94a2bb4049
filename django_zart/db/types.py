"""What the engine and the store pass each other; free of model imports."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass
class Claim:
    """A task a worker holds, with what it needs to run the execution's body."""

    task_id: int
    token: uuid.UUID
    execution_id: str
    workflow: str
    input: Any
    run_id: int
    run_index: int
    replay_base: int
    deadline_at: datetime | None
    fresh: bool
    recoveries: int
    db_now: datetime
    timeout: float | None = None
    kind: str = "BODY"
    payload: Any = None
    """A branch's encoded ``[args, kwargs]``."""
    branch: tuple[int, str, str, str, int, datetime | None] | None = None
    """A branch's step row: ``(id, position, name, status, attempts, wake_at)``."""
    run_reason: str = "INITIAL"
    parent_id: str | None = None
    """The parent execution waiting for this one (``run_workflow``), woken when it ends."""


@dataclass
class Checkpoint:
    """A step outcome to write: ``result`` and ``error`` are JSON text or ``None``."""

    sequence: int
    position: str
    name: str
    kind: str
    status: str
    result: str | None
    error: str | None
    attempts: int
    wake_at: datetime | None
    at: datetime
    attempt_rows: tuple[tuple[int, str, str | None], ...] = ()
    """``(number, status, error JSON)`` rows for zart_step_attempts."""


def loads_json(text: str | None) -> Any:
    """Checkpoints carry JSON text; the ORM's JSONField wants the value."""
    return None if text is None else json.loads(text)
