"""Rows as the API shows them.

Stored values (inputs, results, outputs, event payloads) are shown decoded, as the
workflow sees them, then written as plain JSON: a ``datetime`` becomes its ISO 8601
string, a ``Decimal`` or ``UUID`` a string, a ``set`` or ``tuple`` an array. Errors are
shown as stored (``type``, ``message``, ``traceback``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import JsonResponse

from .. import serialization
from ..errors import ExecutionNotFound
from ..models import Execution, PauseRule, Run, Step, StepAttempt


class ApiJSONEncoder(DjangoJSONEncoder):
    """Django's encoder (dates, times, durations, decimals, UUIDs) plus sets."""

    def default(self, o: Any) -> Any:
        if isinstance(o, set | frozenset):
            return list(o)
        return super().default(o)


def ok(data: Any, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, encoder=ApiJSONEncoder, safe=False)


def execution_summary(execution: Execution) -> dict[str, Any]:
    """An execution without its values, runs and steps: what a listing shows."""
    return {
        "id": execution.pk,
        "workflow": execution.workflow,
        "queue": execution.queue,
        "status": execution.status,
        "run_index": execution.run_index,
        "parent_id": execution.parent_id,
        "created_at": execution.created_at,
        "started_at": execution.started_at,
        "finished_at": execution.finished_at,
        "updated_at": execution.updated_at,
    }


def execution_detail(execution_id: str) -> dict[str, Any]:
    """The execution with its values, every run and every step with its attempts."""
    execution = Execution.objects.filter(pk=execution_id).first()
    if execution is None:
        raise ExecutionNotFound(execution_id)
    runs = Run.objects.filter(execution_id=execution_id).order_by("index")
    steps = Step.objects.filter(execution_id=execution_id).order_by("run_index", "sequence")
    attempts: dict[int, list[StepAttempt]] = defaultdict(list)
    for attempt in StepAttempt.objects.filter(step__execution_id=execution_id).order_by(
        "step_id", "number"
    ):
        attempts[attempt.step_id].append(attempt)
    return {
        **execution_summary(execution),
        "input": serialization.decode(execution.input),
        "output": serialization.decode(execution.output),
        "error": execution.error,
        "deadline_at": execution.deadline_at,
        "finished": execution.is_finished,
        "runs": [_run(run) for run in runs],
        "steps": [_step(step, attempts[step.pk]) for step in steps],
    }


def _run(run: Run) -> dict[str, Any]:
    return {
        "index": run.index,
        "reason": run.reason,
        "status": run.status,
        "triggered_by": run.triggered_by,
        "error": run.error,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
    }


def _step(step: Step, attempts: list[StepAttempt]) -> dict[str, Any]:
    return {
        "run_index": step.run_index,
        "sequence": step.sequence,
        "position": step.position,
        "name": step.name,
        "kind": step.kind,
        "status": step.status,
        "result": serialization.decode(step.result),
        "error": step.error,
        "attempts": step.attempts,
        "wake_at": step.wake_at,
        "created_at": step.created_at,
        "updated_at": step.updated_at,
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


def pause_rule(rule: PauseRule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "execution_id": rule.execution_id,
        "workflow": rule.workflow,
        "step": rule.step,
        "reason": rule.reason,
        "created_by": rule.created_by,
        "created_at": rule.created_at,
        "expires_at": rule.expires_at,
        "ended_at": rule.ended_at,
        "ended_by": rule.ended_by,
        "end_reason": rule.end_reason,
        "active": rule.is_active,
    }
