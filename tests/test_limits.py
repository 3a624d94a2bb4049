"""Concurrency limits: never more than N executions of a workflow (or of a key) at once."""

from collections.abc import Callable

import pytest

import django_zart as zart
from django_zart.errors import InvalidArgument
from django_zart.models import Execution, Task
from tests.models import SideEffect

pytestmark = pytest.mark.django_db(transaction=True)
Drain = Callable[..., None]


def peak(execution_ids: list[str]) -> int:
    """The most executions between their "start" and "end" marks at any one moment."""
    marks = SideEffect.objects.filter(execution_id__in=execution_ids, step__in=["start", "end"])
    running = highest = 0
    for step in marks.order_by("created_at", "pk").values_list("step", flat=True):
        running += 1 if step == "start" else -1
        highest = max(highest, running)
    return highest


def test_no_more_than_the_limit_run_at_once(drain: Drain) -> None:
    ids = zart.start_many("limited", [{"seconds": 0.1}] * 9)
    drain(*ids, timeout=30)
    assert {zart.status(i).status for i in ids} == {"COMPLETED"}
    assert peak(ids) == 3  # the limit, reached: the worker has 4 threads
    assert not Task.objects.exists()


def test_a_key_limits_each_key_on_its_own(drain: Drain) -> None:
    alice = zart.start_many("per-user", [{"user": "alice", "seconds": 0.1}] * 3)
    bob = zart.start_many("per-user", [{"user": "bob", "seconds": 0.1}] * 3)
    drain(*alice, *bob, timeout=30)
    assert peak(alice) == 1 and peak(bob) == 1
    assert peak(alice + bob) == 2  # alice's and bob's ran side by side


def test_a_sleeping_execution_holds_no_slot(drain: Drain) -> None:
    ids = zart.start_many("limited-sleeper", [{"nap": "400ms"}, {"nap": "400ms"}])
    drain(*ids, timeout=30)
    marks = SideEffect.objects.filter(execution_id__in=ids, step="start").order_by("created_at")
    order = list(marks.values_list("execution_id", flat=True))
    # Both first steps ran before either second one: the first slept without its slot.
    assert sorted(order[:2]) == sorted(ids) and peak(ids) == 1


def test_waiting_work_is_not_polled_and_wakes_when_a_slot_frees(
    run_worker: Callable[..., int],
) -> None:
    zart.start("limited", {"seconds": 0.05}, execution_id="first")
    for i in range(5):
        zart.start("limited", {"seconds": 0.05}, execution_id="more-%d" % i)
    from django_zart.db import get_store

    store = get_store()
    claims = store.claim_limited(queues=["default"], limit=4, lease=30)
    assert len(claims) == 3  # the limit
    waiting = Task.objects.filter(blocked=True)
    assert waiting.count() == 3 and not waiting.filter(run_after__isnull=False).exists()
    assert store.next_due_in(queues=["default"]) is None  # nothing to poll for
    store.release([c.token for c in claims], None)
    assert store.free_slots() == 0  # the released three are due: they take the slots
    run_worker()
    assert Execution.objects.filter(status="COMPLETED").count() == 6


def test_a_bad_limit_or_key_is_refused() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(InvalidArgument, match="concurrency"):
            zart.workflow("bad-limit", concurrency=bad)(lambda data: None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="concurrency_key"):
        zart.workflow("key-without-limit", concurrency_key=lambda data: 1)(lambda data: None)
    with pytest.raises(InvalidArgument, match="failed on this input"):
        zart.start("per-user", {"no user": 1})
    with pytest.raises(InvalidArgument, match="a string or an int"):
        zart.start("per-user", {"user": [1, 2]})
    assert not Execution.objects.exists()


def test_a_long_key_is_stored_by_its_digest() -> None:
    zart.start("per-user", {"user": "x" * 1000}, execution_id="long")
    key = Task.objects.get(execution_id="long").limit_key
    assert key is not None and key.startswith("per-user/#") and len(key) < 255


def test_zart_testing_runs_a_limited_workflow() -> None:
    from django_zart import testing

    assert testing.run("limited", {"seconds": 0}).output == "done"
    assert testing.run("per-user", {"user": "ann", "seconds": 0}).output == "done"
