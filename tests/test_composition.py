"""Parallel branches, loops and step names, error policies (in-process worker)."""

from collections.abc import Callable

import pytest

import django_zart as zart
from django_zart.models import Step, StepAttempt, Task
from tests.models import SideEffect

pytestmark = pytest.mark.django_db(transaction=True)
Drain = Callable[..., None]


def test_fan_out_and_in(drain: Drain) -> None:
    zart.start("fan-out", {"n": 20}, execution_id="fan")
    drain("fan")
    assert zart.wait_completion("fan", 1) == {"sum": sum(i * i for i in range(20)), "pair": [3, 7]}
    branches = Step.objects.filter(execution_id="fan", kind="BRANCH")
    assert branches.count() == 22 and set(branches.values_list("status", flat=True)) == {
        "COMPLETED"
    }
    assert branches.get(position="square#14").attempts == 2  # 13 failed once, retried
    assert Step.objects.filter(execution_id="fan", kind="GROUP", status="COMPLETED").count() == 2
    assert not Task.objects.exists()
    # Each branch body ran once (13 twice: the retry).
    assert SideEffect.objects.filter(execution_id="fan").count() == 21


@pytest.mark.postgres
def test_quick_branches_run_and_are_recorded_in_batches(drain: Drain) -> None:
    zart.start("wide", {"n": 60}, execution_id="batched")
    drain("batched")
    output = zart.wait_completion("batched", 1)
    assert output["n"] == 60 and output["ordered"]
    runs = SideEffect.objects.filter(execution_id="batched", step__startswith="branch-")
    assert runs.count() == 60 and runs.values("step").distinct().count() == 60
    branches = Step.objects.filter(execution_id="batched", kind="BRANCH")
    assert set(branches.values_list("status", flat=True)) == {"COMPLETED"}
    # A batch's outcomes are written by one statement, with one time: fewer times than
    # branches means threads took their siblings instead of a claim each.
    assert branches.values("updated_at").distinct().count() < 60
    group = Step.objects.get(execution_id="batched", kind="GROUP")
    assert group.status == "COMPLETED" and group.result["remaining"] == 0
    assert not Task.objects.exists()


def test_branch_failures_keep_their_type(drain: Drain) -> None:
    zart.start("charges", {"amounts": [10, 500, 20]}, execution_id="ch")
    drain("ch")
    assert zart.wait_completion("ch", 1) == {
        "results": ["charged 10", "declined: amount 500 over the limit", "charged 20"],
        "raised": "PaymentDeclined",
    }


def test_a_loop_gets_one_checkpoint_per_iteration(drain: Drain) -> None:
    zart.start("loop", {"n": 50}, execution_id="loop")
    drain("loop")
    assert zart.wait_completion("loop", 1) == sum(range(50))
    positions = list(Step.objects.filter(execution_id="loop").values_list("position", flat=True))
    assert positions[:3] == ["process", "process#2", "process#3"] and len(positions) == 50


def test_templated_and_explicit_names_survive_reordering(
    drain: Drain, run_worker: Callable
) -> None:
    from tests.models import Flag  # noqa: F401  (module import keeps flags registered)

    zart.start("named", {"items": [[1, "a"], [2, "b"]], "tag": "x"}, execution_id="nm")
    run_worker()  # ...suspends on wait-once's retry delay
    # The replay sees the same items in another order: found by name, not by position.
    from django_zart.models import Execution

    Execution.objects.filter(pk="nm").update(input={"items": [[2, "b"], [1, "a"]], "tag": "x"})
    drain("nm")
    assert zart.wait_completion("nm", 1) == ["2:b", "1:a", 2]
    assert set(
        Step.objects.filter(execution_id="nm", kind="STEP").values_list("position", flat=True)
    ) == {"report-1", "report-2", "add-x", "wait-once"}


def test_the_same_explicit_name_twice_is_an_error(drain: Drain) -> None:
    zart.start("dup-names", None, execution_id="dup")
    drain("dup")
    with pytest.raises(zart.ExecutionFailed) as info:
        zart.wait_completion("dup", 1)
    assert info.value.error["type"] == "django_zart.errors.DuplicateStepName"
    assert "report-1" in info.value.error["message"]


def test_retry_on_and_give_up_on(drain: Drain) -> None:
    zart.start("policies", {}, execution_id="pol")
    drain("pol")
    assert zart.wait_completion("pol", 1) == {
        "value": "gave up",
        "conn": "gave up",
        "timeout": "gave up",
        "key": "gave up",
    }
    attempts = dict(Step.objects.filter(execution_id="pol").values_list("position", "attempts"))
    assert attempts == {"business": 1, "business#2": 4, "only-timeouts": 3, "only-timeouts#2": 1}
    failed = Step.objects.get(execution_id="pol", position="business")
    assert failed.error["type"] == "builtins.ValueError"


def test_step_timeouts(drain: Drain) -> None:
    zart.start("timeouts", None, execution_id="to")
    drain("to")
    output = zart.wait_completion("to", 1)
    assert output["sync"] == "fast enough"
    assert output["async"].startswith("timed out: Step 'slow-async' did not finish")
    sync = Step.objects.get(execution_id="to", position="slow-sync")
    first = StepAttempt.objects.get(step=sync, number=1)
    assert sync.attempts == 2 and first.error["type"] == "django_zart.errors.StepTimeout"


def test_asyncio_gather_runs_steps_concurrently_and_durably(drain: Drain) -> None:
    zart.start("gathered", None, execution_id="g")
    drain("g")
    names = ["async-inc-0", "async-inc-1", "async-inc-2"]
    assert zart.wait_completion("g", 1) == [[0, 2, 4], names, [22, 42]]
    positions = set(Step.objects.filter(execution_id="g").values_list("position", flat=True))
    assert {
        "async-inc-0",
        "async-inc-1",
        "async-inc-2",
        "async-inc-10",
        "async-inc-20",
    } <= positions
    assert Step.objects.filter(execution_id="g").count() == 10
