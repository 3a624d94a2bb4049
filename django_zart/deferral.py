"""Work a worker has no code for: left to a worker that has it, never failed.

During a rolling deploy old and new workers serve the same queues, so an old worker can
claim an execution of a workflow only the new code declares, or a branch of a step it has
not got. Failing it would lose work that the next worker could run; it is given back
instead, due again after ``UNKNOWN_CODE_DELAY``. Code removed for good leaves its
executions waiting, logged at every pass and shown as blocked in the admin, until an
operator cancels them or deploys the code again.
"""

from __future__ import annotations

import logging

from .db.base import Store
from .db.types import Claim

logger = logging.getLogger(__name__)

UNKNOWN_CODE_DELAY = 10.0
"""Seconds before such work is due again: long enough not to spin, short enough that a
worker with the new code soon takes it."""


def defer_unknown(claim: Claim, store: Store, what: str, name: str) -> None:
    """Give the claim back, due again later; ``what`` is "workflow" or "step"."""
    store.defer(claim, UNKNOWN_CODE_DELAY)
    logger.warning(
        "No %s named %r in this worker's code: execution=%s left for a worker that has "
        "it, due again in %g s",
        what,
        name,
        claim.execution_id,
        UNKNOWN_CODE_DELAY,
    )
