"""Run one claimed parallel branch: attempts under its step's policy, outcome recorded.

The branch reuses the step call machinery; its context writes outcomes through
``Store.finish_branch`` (which may wake the body) instead of a body checkpoint, and a
retry delay releases the branch's own task.
"""

from __future__ import annotations

import logging
from typing import Any

from . import faults, serialization
from .conf import get_settings
from .context import ExecutionContext, Suspend, current
from .db.base import Store
from .db.types import BranchRow, Checkpoint, Claim, Record
from .errors import StepFailed, WorkerCrashLoop, ZartError
from .states import StepKind, StepStatus
from .steps import Attempt, Call, get_step

logger = logging.getLogger(__name__)


class BranchContext(ExecutionContext):
    """The context of a branch: its outcome is the branch's record, not a new row."""

    def __init__(self, claim: Claim, store: Store, branch: BranchRow) -> None:
        super().__init__(claim=claim, store=store, loaded=[])
        self.branch = branch

    def write(self, point: Checkpoint, value: Any = None) -> Record:
        step_id = self.store.finish_branch(self.claim, self.branch.step_id, point)
        return self.remember_point(step_id, point, value)


def execute_branch(claim: Claim, store: Store) -> str:
    """Run the branch's next attempt(s); return the outcome's name for ``engine.Outcome``."""
    branch = claim.branch
    if branch is None:
        raise ZartError(
            "Branch task %d of %r has no step row." % (claim.task_id, claim.execution_id)
        )
    ctx = BranchContext(claim, store, branch)
    number = branch.attempts + 1 if branch.status == StepStatus.RETRYING else 1
    attempt = Attempt(Call(0, branch.position, ""), number)
    try:
        step = get_step(branch.name)
        if claim.recoveries and claim.recoveries >= get_settings().max_recoveries:
            raise WorkerCrashLoop(claim.execution_id, claim.recoveries)
    except ZartError as exc:
        error = serialization.error_text(exc)
        failure = ctx.checkpoint(
            0,
            branch.position,
            branch.name,
            StepKind.BRANCH,
            StepStatus.FAILED,
            error=error,
            attempts=attempt.number,
        )
        ctx.write(failure)
        return "failed"
    args, kwargs = serialization.decode(claim.payload)
    token = current.set(ctx)
    try:
        step.attempts(ctx, attempt, tuple(args), kwargs)
    except StepFailed:
        return "failed"
    except Suspend as suspend:
        if suspend.checkpoint is None:
            raise ZartError("A branch attempt suspended without a checkpoint.") from None
        with faults.around_checkpoint(StepKind.STEP):  # the outcome of the branch's step
            store.retry_branch(claim, branch.step_id, suspend.checkpoint)
        return "suspended"
    finally:
        current.reset(token)
    return "completed"
