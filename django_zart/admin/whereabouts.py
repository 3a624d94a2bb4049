"""Where an execution is now, and why it is not running: told in one sentence.

``where_now`` serves the list (a page of executions at once, in a constant number of
queries); ``blocker`` serves the page of one unfinished execution.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import Execution


def where_now(executions: Sequence[Execution]) -> dict[str, str]:
    """Execution id to a short phrase: "step charge-card, attempt 2/4, next try 14:05:10"."""
    return {}


def blocker(execution: Execution) -> str:
    """Why an unfinished execution is not running now; empty when it runs or finished."""
    return ""
