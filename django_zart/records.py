"""Executions, runs, steps and pause rules as plain data: what the HTTP API answers,
what ``manage.py zart --json`` prints and what its tables are drawn from.

One shape everywhere, so a script reads the API and the command line alike, and a table
never says more or less than ``--json``. Stored values are decoded here: a ``Decimal``
input reads as its digits and a ``set`` as a list instead of as the ``{"$zart": ...}``
tags the engine stores them with, which are a storage detail and no part of what a
client reads. Errors are shown as stored (``type``, ``message``, ``traceback``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from .models import Execution, PauseRule, Run, Step, StepAttempt
from .serialization import decode


class Encoder(DjangoJSONEncoder):
    """Django's encoder (datetimes as ISO 8601, decimals and UUIDs as text), plus the sets
    a decoded value may hold, which JSON only has as lists."""

    def default(self, o: Any) -> Any:
        if isinstance(o, set | frozenset):
            return sorted(o, key=repr)
        return super().default(o)


def dumps(data: Any, *, indent: int | None = 2) -> str:
    """JSON text of a record (``indent=None``: on one line, for a table cell)."""
    separators = None if indent is not None else (",", ":")
    return json.dumps(data, cls=Encoder, indent=indent, separators=separators, ensure_ascii=False)


def summary(row: Execution) -> dict[str, Any]:
    """An execution without its values: what a listing of many shows."""
    return {
        "id": row.pk,
        "workflow": row.workflow,
        "queue": row.queue,
        "status": row.status,
        "run_index": row.run_index,
        "parent_id": row.parent_id,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "updated_at": row.updated_at,
    }


def execution(row: Execution) -> dict[str, Any]:
    """An execution with its input, output and error."""
    return {
        **summary(row),
        "finished": row.is_finished,
        "input": decode(row.input),
        "output": decode(row.output),
        "error": row.error,
        "deadline_at": row.deadline_at,
    }


def execution_detail(row: Execution) -> dict[str, Any]:
    """The execution with every run, and every step of every run with its attempts."""
    attempts: dict[int, list[StepAttempt]] = defaultdict(list)
    for attempt in StepAttempt.objects.filter(step__execution_id=row.pk).order_by("number"):
        attempts[attempt.step_id].append(attempt)
    steps = Step.objects.filter(execution_id=row.pk).order_by("run_index", "sequence", "pk")
    return {
        **execution(row),
        "runs": [run(r) for r in Run.objects.filter(execution_id=row.pk).order_by("index")],
        "steps": [step(s, attempts[s.pk]) for s in steps],
    }


def run(row: Run) -> dict[str, Any]:
    return {
        "index": row.index,
        "reason": row.reason,
        "triggered_by": row.triggered_by,
        "status": row.status,
        "error": row.error,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
    }


def step(row: Step, attempts: list[StepAttempt]) -> dict[str, Any]:
    """A step; ``attempt_history`` lists its attempts when it needed more than one (a
    step that succeeded at once has none: ``attempts`` is then 1).

    The keys are those of the HTTP API's step, so a script reads either alike.
    """
    return {
        "run_index": row.run_index,
        "sequence": row.sequence,
        "position": row.position,
        "name": row.name,
        "kind": row.kind,
        "status": row.status,
        "attempts": row.attempts,
        "result": decode(row.result),
        "error": row.error,
        "wake_at": row.wake_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "attempt_history": [
            {
                "number": attempt.number,
                "status": attempt.status,
                "error": attempt.error,
                "finished_at": attempt.finished_at,
            }
            for attempt in attempts
        ],
    }


def pause_rule(row: PauseRule) -> dict[str, Any]:
    return {
        "id": row.pk,
        "execution_id": row.execution_id,
        "workflow": row.workflow,
        "step": row.step,
        "reason": row.reason,
        "active": row.is_active,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "ended_at": row.ended_at,
        "ended_by": row.ended_by,
        "end_reason": row.end_reason,
    }
