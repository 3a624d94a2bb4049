"""Run one claimed parallel branch: attempts under its step's policy, outcome recorded.

The branch reuses the step call machinery; its context writes outcomes through
``Store.finish_branch`` (which may wake the body) instead of a body checkpoint, and a
retry delay releases the branch's own task.
"""

from __future__ import annotations

import logging
from typing import Any

from . import serialization
from .conf import get_settings
from .context import ExecutionContext, Record, Suspend, current
from .db.base import Store
from .db.types import Checkpoint, Claim
from .errors import StepFailed, WorkerCrashLoop, ZartError
from .states import StepKind, StepStatus
from .steps import Attempt, get_step

logger = logging.getLogger(__name__)


class BranchContext(ExecutionContext):
    """The context of a branch: its outcome is the branch's record, not a new row."""

    def write(self, point: Checkpoint, value: Any = None) -> Record:
        step_id = self.store.finish_branch(self.claim, point)
        return self.remember_point(step_id, point, value)


def execute_branch(claim: Claim, store: Store) -> str:
    assert claim.branch is not None
    step_id, position, name, status, attempts, _ = claim.branch
    ctx = BranchContext(claim=claim, store=store, loaded=[])
    attempt = Attempt(0, position, attempts + 1 if status == StepStatus.RETRYING else 1, ())
    try:
        step = get_step(name)
        if claim.recoveries and claim.recoveries >= get_settings().max_recoveries:
            raise WorkerCrashLoop(claim.execution_id, claim.recoveries)
    except ZartError as exc:
        ctx.write(
            ctx.checkpoint(
                0,
                position,
                name,
                StepKind.BRANCH,
                StepStatus.FAILED,
                error=serialization.error_text(exc),
                attempts=attempt.number,
            )
        )
        return "failed"
    args, kwargs = serialization.decode(claim.payload)
    token = current.set(ctx)
    try:
        step.attempts(ctx, attempt, tuple(args), kwargs)
    except StepFailed:
        return "failed"
    except Suspend as suspend:
        assert suspend.checkpoint is not None
        store.retry_branch(claim, suspend.checkpoint)
        return "suspended"
    finally:
        current.reset(token)
    return "completed"
