"""Run one claimed parallel branch: attempts under its step's policy, outcome recorded.

The branch reuses the step call machinery; its context writes outcomes through
``Store.finish_branch`` (which may wake the body) instead of a body checkpoint, and a
retry delay releases the branch's own task.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.dispatch import Signal

from . import faults, pauses, serialization, signals
from .conf import get_settings
from .context import ExecutionContext, Suspend, current
from .db.base import Store
from .db.types import BranchRow, Checkpoint, Claim, DatabaseUnavailable, LeaseLost, Record
from .deferral import defer_unknown
from .errors import StepFailed, WorkerCrashLoop, ZartError
from .states import StepKind, StepStatus
from .steps import Attempt, Call, get_step, is_registered

logger = logging.getLogger(__name__)


BATCH_AFTER = 0.05
"""A branch that ran faster than this (seconds) is one of many cheap ones, probably: its
thread takes more of the same step's due branches, instead of one claim each."""
BATCH_SIZE = 16
"""Branches claimed at a time by such a thread ..."""
BATCH_TIME = 0.25
"""... while its batch has run for less than this (seconds); their outcomes are then
recorded together, in one statement."""


@dataclass
class Batch:
    """The outcomes of a batch of branches, recorded together, and the signals that
    announce them once they are."""

    outcomes: list[tuple[Claim, Checkpoint]] = field(default_factory=list)
    announcements: list[tuple[Signal, str, dict[str, Any]]] = field(default_factory=list)


class BranchContext(ExecutionContext):
    """The context of a branch: its outcome is the branch's record, not a new row.

    In a batch, the outcome is kept in ``batch`` and written with the others.
    """

    def __init__(
        self,
        claim: Claim,
        store: Store,
        branch: BranchRow,
        batch: Batch | None = None,
    ) -> None:
        super().__init__(claim=claim, store=store, loaded=[])
        self.branch = branch
        self.batch = batch

    def announce(self, signal: Signal, **kwargs: Any) -> None:
        if self.batch is None:
            super().announce(signal, **kwargs)
        else:  # sent once the batch is recorded
            self.batch.announcements.append((signal, self.claim.execution_id, kwargs))

    def write(self, point: Checkpoint, value: Any = None) -> Record:
        if self.batch is not None:
            self.batch.outcomes.append((self.claim, point))
            return self.remember_point(self.branch.step_id, point, value)
        step_id = self.store.finish_branch(self.claim, self.branch.step_id, point)
        return self.remember_point(step_id, point, value)


def execute_branch(claim: Claim, store: Store) -> str:
    """Run the branch's next attempt(s); return the outcome's name for ``engine.Outcome``.

    A branch that finished quickly is followed, in the same thread, by a batch of its
    siblings (``run_batch``).
    """
    started = time.monotonic()
    outcome = _execute_one(claim, store, None)
    if outcome not in ("suspended", "deferred") and time.monotonic() - started < BATCH_AFTER:
        run_batch(claim, store, started)
    return outcome


def run_batch(claim: Claim, store: Store, started: float) -> None:
    """Claim and run due branches of the same step, then record their outcomes at once.

    A retry delay releases its branch's task at once, as for a single branch. If the
    batch cannot be recorded (the database went away, the execution was cancelled), its
    outcomes are dropped and its tasks, still held, go to another worker once their lease
    ends: each branch runs at least once, as always.
    """
    branch = claim.branch
    if branch is None or get_settings().fault_points:
        return  # fault points stand for single writes: tests that use them get those
    try:
        if get_step(branch.name).atomic:
            return  # an atomic step's outcome is written in its own transaction
    except ZartError:
        return
    batch = Batch()
    try:
        if pauses.matching(claim.execution_id, claim.workflow, branch.name):
            return
        while time.monotonic() - started < BATCH_TIME:
            siblings = store.claim_siblings(claim, BATCH_SIZE)
            for sibling in siblings:
                _execute_one(sibling, store, batch)
            if len(siblings) < BATCH_SIZE:
                break
        store.finish_branches(claim, batch.outcomes)
    except (DatabaseUnavailable, LeaseLost) as exc:
        logger.warning(
            "A batch of %d branches of execution=%s was not recorded (%s); they will run "
            "again once their lease ends",
            len(batch.outcomes),
            claim.execution_id,
            type(exc).__name__,
        )
        return
    for signal, execution_id, kwargs in batch.announcements:
        signals.send_on_commit(signal, claim.workflow, execution_id=execution_id, **kwargs)


def _execute_one(claim: Claim, store: Store, batch: Batch | None) -> str:
    branch = claim.branch
    if branch is None:
        raise ZartError(
            "Branch task %d of %r has no step row." % (claim.task_id, claim.execution_id)
        )
    if not is_registered(branch.name):
        defer_unknown(claim, store, "step", branch.name)
        return "deferred"
    ctx = BranchContext(claim, store, branch, batch)
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
