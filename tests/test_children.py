"""Child workflows and cancellation (in-process worker)."""

from collections.abc import Callable

import pytest

import django_zart as zart
from django_zart.models import Execution, Task
from tests.models import SideEffect

pytestmark = pytest.mark.django_db(transaction=True)
Drain = Callable[..., None]


def test_run_workflow_returns_the_childs_output_or_raises_its_failure(drain: Drain) -> None:
    zart.start("parent", {"x": 7}, execution_id="p")
    drain("p", "p/run_workflow:child-square", "p-bad")
    output = zart.wait_completion("p", 5)
    assert output["squared"] == 49
    assert output["failure"] == "child refuses 2"
    assert output["fired"] == "p/start_workflow:child-square"
    child = Execution.objects.get(pk="p/run_workflow:child-square")
    assert child.parent_id == "p" and child.status == "COMPLETED"
    drain(output["fired"])
    # Replays did not start any child twice.
    assert SideEffect.objects.filter(step="child-ran").count() == 3


def test_cancelling_a_parent_cancels_its_children(run_worker: Callable[..., int]) -> None:
    zart.start("waiting-parent", None, execution_id="wp")
    run_worker()
    run_worker()
    assert zart.status("wp-child").status == "SUSPENDED"
    assert zart.cancel("wp", reason="changed my mind").status == "CANCELLED"
    assert zart.status("wp").status == "CANCELLED"
    assert zart.status("wp-child").status == "CANCELLED"
    assert not Task.objects.exists()
    with pytest.raises(zart.ExecutionCancelled):
        zart.wait_completion("wp", 1)
    with pytest.raises(zart.ExecutionFinished, match="cannot be cancelled"):
        zart.cancel("wp")
    with pytest.raises(zart.ExecutionNotFound):
        zart.cancel("nope")


def test_a_cancelled_child_raises_in_its_waiting_parent(
    drain: Drain, run_worker: Callable[..., int]
) -> None:
    zart.start("waiting-parent", None, execution_id="wp2")
    run_worker()
    run_worker()
    zart.cancel("wp2-child")
    drain("wp2")
    assert zart.wait_completion("wp2", 1) == "child was cancelled"


def test_on_failure_runs_once_durably_then_the_execution_fails(drain: Drain) -> None:
    from django_zart.models import Run

    zart.start("order", {"order": "A-1"}, execution_id="o")
    drain("o")
    with pytest.raises(zart.ExecutionFailed) as info:
        zart.wait_completion("o", 1)
    error = info.value.error
    assert error["type"] == "builtins.ValueError" and error["compensation"] == "completed"
    marks = list(SideEffect.objects.filter(execution_id="o").values_list("step", flat=True))
    assert marks == [
        "order-body",
        "order-body",
        "refund",
        "refund",
        "compensated: builtins.ValueError",
    ]
    reasons = list(Run.objects.filter(execution_id="o").values_list("reason", flat=True))
    assert reasons == ["INITIAL", "RETRY", "COMPENSATION"]
