"""``@zart.step(atomic=True)``: the body's writes commit if and only if its checkpoint does.

The crashes (a worker SIGKILLed inside the transaction, on either side of the
checkpoint's write) are in test_faults_processes.py; the chaos run counts them at scale.
"""

from collections.abc import Callable

import pytest

import django_zart as zart
from django_zart.errors import ZartError
from django_zart.models import Step, StepAttempt
from tests.models import SideEffect

pytestmark = pytest.mark.django_db(transaction=True)
Drain = Callable[..., None]


def effects(execution_id: str) -> list[str]:
    return sorted(
        SideEffect.objects.filter(execution_id=execution_id).values_list("step", flat=True)
    )


def test_the_body_and_its_checkpoint_commit_together(drain: Drain) -> None:
    zart.start("fault-atomic", None, execution_id="a")
    drain("a")
    assert zart.status("a").output == ["one", "two"]
    assert effects("a") == ["one", "two"]
    assert Step.objects.filter(execution_id="a", status="COMPLETED").count() == 2


def test_a_failed_attempts_writes_are_rolled_back(drain: Drain) -> None:
    zart.start("atomic-flaky-wf", {"failures": 2}, execution_id="f")
    drain("f")
    assert zart.status("f").output == 3
    assert effects("f") == ["flaky-3"]  # the two failed attempts wrote nothing
    step = Step.objects.get(execution_id="f", name="atomic-flaky")
    assert step.attempts == 3
    assert list(
        StepAttempt.objects.filter(step=step).order_by("number").values_list("status", flat=True)
    ) == ["FAILED", "FAILED", "SUCCEEDED"]


def test_a_step_that_fails_for_good_leaves_no_write(drain: Drain) -> None:
    zart.start("atomic-flaky-wf", {"failures": 9}, execution_id="g")
    drain("g")
    assert zart.status("g").output == "gave up"
    assert effects("g") == []
    assert Step.objects.get(execution_id="g", name="atomic-flaky").status == "FAILED"


def test_a_result_that_cannot_be_stored_rolls_the_body_back(drain: Drain) -> None:
    zart.start("atomic-bad-result-wf", None, execution_id="b")
    drain("b")
    assert zart.status("b").output == "not stored"
    assert effects("b") == []
    failed = Step.objects.get(execution_id="b", name="atomic-bad-result")
    assert failed.status == "FAILED" and "SerializationError" in failed.error["type"]


def test_atomic_branches_each_commit_with_their_outcome(drain: Drain) -> None:
    """Atomic steps fanned out are not batched: each outcome is its own transaction."""
    zart.start("atomic-many", {"n": 40}, execution_id="m")
    drain("m")
    assert zart.status("m").output == ["item-%d" % i for i in range(40)]
    assert effects("m") == sorted("item-%d" % i for i in range(40))


def test_an_async_or_timed_atomic_step_is_refused_when_declared() -> None:
    with pytest.raises(ZartError, match="async and atomic"):

        @zart.step("atomic-async", atomic=True)
        async def atomic_async() -> None: ...

    with pytest.raises(ZartError, match="atomic and has a timeout"):

        @zart.step("atomic-timed", atomic=True, timeout="1s")
        def atomic_timed() -> None: ...


def test_a_simulated_crash_after_an_atomic_step_leaves_its_write_undone() -> None:
    """``zart.testing``'s ``crash_after`` stops the execution between the step's side
    effect and its checkpoint: inside the atomic step's transaction, so its write goes
    too, and the rerun writes it once."""
    from django_zart import testing

    result = testing.run("fault-atomic", None, execution_id="c", crash_after="atomic-effect")
    assert result.status == "COMPLETED" and len(result.crashes) >= 1
    assert effects("c") == ["one", "two"]
