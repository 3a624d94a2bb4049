"""Priorities: within a queue, due work of a higher priority is claimed first."""

from collections.abc import Callable

import pytest

import django_zart as zart
from django_zart import engine
from django_zart.db import get_store
from django_zart.errors import InvalidArgument
from django_zart.models import Execution, Task

pytestmark = pytest.mark.django_db(transaction=True)


@zart.workflow("urgent-by-default", priority=50)
def urgent_by_default(data: dict) -> int:
    return int(data["n"])


def started_order(ids: list[str]) -> list[str]:
    rows = Execution.objects.filter(pk__in=ids).order_by("started_at", "pk")
    return list(rows.values_list("pk", flat=True))


def test_higher_priorities_are_claimed_first(run_worker: Callable[..., int]) -> None:
    zart.start("arith", {"a": 1, "b": 1}, execution_id="low", priority=-5)
    zart.start("arith", {"a": 1, "b": 1}, execution_id="plain")
    zart.start_many(
        "arith", [{"a": 1, "b": 1}] * 2, execution_ids=["high-1", "high-2"], priority=10
    )
    zart.start("urgent-by-default", {"n": 1}, execution_id="workflow-default")
    zart.start("urgent-by-default", {"n": 1}, execution_id="overridden", priority=0)
    run_worker(concurrency=1, max_tasks_per_poll=1)  # one claim at a time: a strict order
    order = started_order(["low", "plain", "high-1", "high-2", "workflow-default", "overridden"])
    assert order[:3] == ["workflow-default", "high-1", "high-2"]
    assert set(order[3:5]) == {"plain", "overridden"} and order[5] == "low"


def test_an_executions_branches_share_its_priority() -> None:
    zart.start("fan-out", {"n": 3}, execution_id="fan", priority=7)
    store = get_store()
    (claim,) = store.claim(queues=["default"], limit=1, lease=30)
    assert engine.execute(claim, store) == "suspended"  # its branches are queued
    branches = Task.objects.filter(execution_id="fan", kind="BRANCH")
    assert branches.count() == 3  # the map: its first group
    assert set(branches.values_list("priority", flat=True)) == {-7}  # stored as the sort key


@pytest.mark.parametrize("bad", [True, 1.5, "9", 1_000_001, -1_000_001])
def test_a_bad_priority_is_refused_before_anything_is_written(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="priority"):
        zart.start("arith", {"a": 1, "b": 1}, priority=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="priority"):
        zart.start_many("arith", [{"a": 1, "b": 1}], priority=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="priority"):
        zart.workflow("bad-priority", priority=bad)(lambda data: None)  # type: ignore[arg-type]
    assert not Execution.objects.exists()
