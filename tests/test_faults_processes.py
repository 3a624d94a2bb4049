"""Crashes at the worst moments, placed exactly with fault points, for every kind of
durable call: between a call's side effect and its checkpoint's commit, and between a
checkpoint and the next claim. Each execution ends as designed; what was checkpointed
never runs again, and what was not runs again once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db.models import Count

import django_zart as zart
from django_zart.models import Event, Execution, Step
from django_zart.models import Worker as WorkerRow
from tests.conftest import WorkerProcess
from tests.models import SideEffect
from tests.test_worker_processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
Start = Callable[..., WorkerProcess]

EXPECTED = {
    "fault-step": ["one", "two"],
    "fault-sleep": "after-nap",
    "fault-event": [{"go": True}, "after-event"],
    "fault-branch": ["left", "right"],
    "fault-child": ["one", "two"],
    "fault-atomic": ["one", "two"],
    "fault-atomic-branch": ["left", "right"],
}


def side_effects(execution_ids: list[str]) -> dict[str, int]:
    rows = (
        SideEffect.objects.filter(execution_id__in=execution_ids)
        .values_list("step")
        .annotate(n=Count("id"))
    )
    return dict(rows.values_list("step", "n"))


@pytest.mark.parametrize(
    ("workflow", "point", "rerun"),
    [
        ("fault-step", "before-checkpoint:step", "one"),
        ("fault-step", "after-checkpoint:step", None),
        ("fault-step", "after-finish", None),
        ("fault-sleep", "before-checkpoint:sleep", None),
        ("fault-sleep", "after-checkpoint:sleep", None),
        ("fault-event", "before-checkpoint:event", None),
        ("fault-event", "after-checkpoint:event", None),
        ("fault-branch", "before-checkpoint:branch", None),
        ("fault-branch", "after-checkpoint:branch", None),
        ("fault-branch", "before-checkpoint:step", "left"),  # a branch's step outcome
        ("fault-child", "before-checkpoint:child", None),
        ("fault-child", "after-checkpoint:child", None),
        # An atomic step's write commits with its checkpoint or not at all: killed on
        # either side of the checkpoint's write, inside the transaction, it runs once.
        ("fault-atomic", "before-checkpoint:step", None),
        ("fault-atomic", "after-checkpoint:step", None),
        ("fault-atomic-branch", "before-checkpoint:step", None),
        ("fault-atomic-branch", "after-checkpoint:step", None),
    ],
)
def test_a_crash_at_a_fault_point_loses_nothing(
    worker_process: Start, workflow: str, point: str, rerun: str | None
) -> None:
    zart.start(workflow, None, execution_id="f")
    if workflow == "fault-event":
        zart.send_event("f", "go", {"go": True})  # kept for the wait
    doomed = worker_process(
        "--orphan-timeout", "1", "--concurrency", "1", env={"ZART_TEST_FAULT_POINTS": point}
    )
    assert doomed.process.wait(30) == -9, doomed.output()  # it died at the point, SIGKILLed
    survivor = worker_process("--orphan-timeout", "1")
    assert zart.wait_completion("f", 30) == EXPECTED[workflow]
    wait_for(lambda: WorkerRow.objects.filter(pid=survivor.pid).exists(), 20, "the worker")
    assert survivor.terminate() == 0
    children = list(Execution.objects.filter(parent_id="f").values_list("pk", flat=True))
    effects = side_effects(["f", *children])
    for name, count in effects.items():
        # A call whose side effect happened before the crash but whose checkpoint did not
        # commit runs again, once; everything else ran exactly once.
        again = name == rerun
        assert count == (2 if again else 1), (point, effects)
    assert Event.objects.filter(execution_id="f", consumed_at__isnull=True).count() == 0
    assert Step.objects.filter(execution_id="f", status="FAILED").count() == 0
    assert "Traceback" not in survivor.output()
