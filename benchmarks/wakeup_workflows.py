"""The workflows of ``wakeup.py``: each records when its only step starts running.

Both return ``{"step": ..., "body": ..., "claim": ...}`` (epoch seconds): when the step
function was entered, when the body was entered in the run that reached the step, and
when the worker's claim statement started by the database clock (the same clock on one
machine). The step is what is measured; the other two split the latency.
"""

from __future__ import annotations

import time
from typing import Any

import django_zart as zart
from django_zart.context import current


@zart.step("wakeup-stamp")
def stamp() -> float:
    return time.time()


def _claimed_at() -> float | None:
    # Internal, for the breakdown only: the claim's database time (``now()`` of the
    # claim statement, which runs in its own transaction).
    ctx = current.get()
    return None if ctx is None else ctx.claim.db_now.timestamp()


@zart.workflow("bench-wakeup-start")
def wake_on_start(data: Any) -> dict[str, float | None]:
    body = time.time()
    return {"step": stamp(), "body": body, "claim": _claimed_at()}


@zart.workflow("bench-wakeup-event")
def wake_on_event(data: Any) -> dict[str, float | None]:
    body = time.time()  # the run that gets past the wait is the one that returns
    zart.wait_for_event("go")
    return {"step": stamp(), "body": body, "claim": _claimed_at()}
