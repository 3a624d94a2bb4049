"""Work a worker has no code for, as an old worker meets it during a rolling deploy: left
for a worker that has the code, never failed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

import django_zart as zart
from django_zart import engine, steps
from django_zart.db import get_store
from django_zart.deferral import UNKNOWN_CODE_DELAY
from django_zart.models import Execution, Run, Step, Task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("isolated_registry")]

Drain = Callable[..., None]


def _due_now(execution_id: str) -> None:
    """As if the delay had passed: a worker with the code may claim it now."""
    Task.objects.filter(execution_id=execution_id).update(run_after=timezone.now())


def test_a_workflow_only_newer_code_has_waits_for_a_worker_with_it(
    run_worker: Callable[..., int], drain: Drain, caplog: pytest.LogCaptureFixture
) -> None:
    zart.start("arith", {"a": 1, "b": 2}, execution_id="new")
    # Started by the new code of a web process; this worker runs the old code.
    Execution.objects.filter(pk="new").update(workflow="invoice-v2")

    with caplog.at_level(logging.WARNING, logger="django_zart"):
        before = timezone.now()
        run_worker()
    assert (
        "No workflow named 'invoice-v2' in this worker's code: execution=new left for a "
        "worker that has it, due again in 10 s"
    ) in caplog.text
    execution = Execution.objects.get(pk="new")
    assert execution.status == "PENDING" and execution.error is None
    task = Task.objects.get(execution_id="new")
    assert task.held_by is None and task.lease_until is None
    assert task.run_after >= before + timedelta(seconds=UNKNOWN_CODE_DELAY - 1)
    assert not Step.objects.filter(execution_id="new").exists()
    assert list(Run.objects.filter(execution_id="new").values_list("status", flat=True)) != [
        "FAILED"
    ]

    @zart.workflow("invoice-v2")  # the new code, deployed
    def invoice(data: dict) -> dict:
        return {"total": data["a"] + data["b"]}

    _due_now("new")
    drain("new")
    assert zart.wait_completion("new", 1) == {"total": 3}


def test_a_branch_whose_step_only_newer_code_has_waits_for_a_worker_with_it(
    run_worker: Callable[..., int],
    drain: Drain,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @zart.step("render-v2")
    def render(n: int) -> int:
        return n * 10

    @zart.workflow("fan-v2")
    def fan(data: dict) -> list[int]:
        return zart.map(render, data["numbers"])

    zart.start("fan-v2", {"numbers": [1, 2, 3]}, execution_id="fan")
    store = get_store()
    (claim,) = store.claim(queues=["default"], limit=1, lease=30)
    assert engine.execute(claim, store) == "suspended"  # its branches are scheduled
    step = steps._steps.pop("render-v2")  # a worker of the old code claims them

    with caplog.at_level(logging.WARNING, logger="django_zart"):
        run_worker()
    assert caplog.text.count("No step named 'render-v2' in this worker's code") == 3
    branches = Step.objects.filter(execution_id="fan", kind="BRANCH")
    assert sorted(branches.values_list("status", flat=True)) == ["SCHEDULED"] * 3
    assert Execution.objects.get(pk="fan").status == "SUSPENDED"

    monkeypatch.setitem(steps._steps, "render-v2", step)  # the new code, deployed
    _due_now("fan")
    drain("fan")
    assert zart.wait_completion("fan", 1) == [10, 20, 30]
