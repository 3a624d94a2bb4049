"""Starting in bulk, and what one start costs: statements, transactions, notifications."""

from collections.abc import Callable

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import django_zart as zart
from django_zart.models import Execution, PauseRule, Run, Task

pytestmark = pytest.mark.django_db(transaction=True)


def test_start_many_starts_one_execution_per_input(run_worker: Callable[..., int]) -> None:
    ids = zart.start_many("arith", [{"a": i, "b": 1} for i in range(5)])
    assert len(ids) == 5 and len(set(ids)) == 5
    assert Execution.objects.filter(pk__in=ids, status="PENDING").count() == 5
    assert Run.objects.filter(execution_id__in=ids, index=1, reason="INITIAL").count() == 5
    assert Task.objects.filter(execution_id__in=ids, held_by__isnull=True).count() == 5
    run_worker()
    outputs = [zart.wait_completion(i, 1)["sum"] for i in ids]
    assert outputs == [111 + i for i in range(5)]  # a + b + 109, in the order given


def test_start_many_keeps_the_given_ids_queue_and_caller() -> None:
    ids = zart.start_many(
        "arith", [{"a": 1, "b": 1}, None], execution_ids=["x-1", "x-2"], queue="bulk", by="cli"
    )
    assert ids == ["x-1", "x-2"]
    rows = Execution.objects.order_by("pk").values_list("pk", "queue", "input")
    assert list(rows) == [("x-1", "bulk", {"a": 1, "b": 1}), ("x-2", "bulk", None)]
    assert set(Run.objects.values_list("triggered_by", flat=True)) == {"cli"}
    assert set(Task.objects.values_list("queue", flat=True)) == {"bulk"}


def test_start_many_of_nothing_writes_nothing() -> None:
    with CaptureQueriesContext(connection) as queries:
        assert zart.start_many("arith", []) == []
    assert len(queries) == 0


def test_one_taken_id_starts_none_of_them() -> None:
    zart.start("arith", {"a": 0, "b": 0}, execution_id="taken")
    with pytest.raises(zart.ExecutionAlreadyExists) as info:
        zart.start_many("arith", [{"a": 1, "b": 1}] * 3, execution_ids=["new-1", "taken", "new-2"])
    assert info.value.execution_id == "taken" and info.value.status == "PENDING"
    assert list(Execution.objects.values_list("pk", flat=True)) == ["taken"]
    assert Run.objects.count() == 1 and Task.objects.count() == 1


def test_if_exists_return_starts_the_others_and_leaves_the_existing_alone() -> None:
    zart.start("arith", {"a": 0, "b": 0}, execution_id="taken")
    ids = zart.start_many(
        "arith", [{"a": 1, "b": 1}] * 2, execution_ids=["taken", "new"], if_exists="return"
    )
    assert ids == ["taken", "new"]
    assert Execution.objects.get(pk="taken").input == {"a": 0, "b": 0}
    assert Run.objects.filter(execution_id="taken").count() == 1


def test_if_exists_return_refuses_an_id_of_another_workflow() -> None:
    zart.start("three-steps", {"n": 1}, execution_id="other")
    with pytest.raises(zart.ExecutionAlreadyExists):
        zart.start_many("arith", [{}, {}], execution_ids=["fresh", "other"], if_exists="return")
    assert not Execution.objects.filter(pk="fresh").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"execution_ids": ["a"]}, "1 execution_ids for 2 inputs"),
        ({"execution_ids": ["a", "a"]}, "'a' twice"),
        ({"execution_ids": "ab"}, "not a string"),
        ({"execution_ids": ["ok", "bad\x00id"]}, "execution_id"),
        ({"if_exists": "skip"}, "if_exists"),
        ({"queue": ""}, "queue"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(kwargs: dict, message: str) -> None:
    with pytest.raises(zart.InvalidArgument, match=message):
        zart.start_many("arith", [{}, {}], **kwargs)
    assert not Execution.objects.exists()


def test_one_bad_input_starts_none_of_them() -> None:
    with pytest.raises(zart.SerializationError, match="input of workflow 'arith'"):
        zart.start_many("arith", [{"a": 1}, {"a": object()}])
    assert not Execution.objects.exists()


def test_start_many_inside_a_rolled_back_transaction_starts_nothing() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        zart.start_many("arith", [{}, {}])
        raise RuntimeError("the caller's transaction fails")
    assert not Execution.objects.exists() and not Task.objects.exists()


def test_more_than_a_batch_in_one_call() -> None:
    ids = zart.start_many("arith", [{"a": i, "b": 0} for i in range(1234)])
    assert Execution.objects.count() == Task.objects.count() == Run.objects.count() == 1234
    assert Execution.objects.get(pk=ids[1233]).input == {"a": 1233, "b": 0}


def test_a_paused_workflow_starts_paused() -> None:
    rule = zart.pause(workflow="arith", reason="maintenance")
    ids = zart.start_many("arith", [{}, {}])
    assert set(Execution.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"PAUSED"}
    assert set(Task.objects.values_list("paused_by", flat=True)) == {rule.pk}
    assert PauseRule.objects.count() == 1


def test_a_workflow_timeout_sets_each_deadline() -> None:
    ids = zart.start_many("slow", [{}, {}])
    deadlines = Execution.objects.filter(pk__in=ids).values_list("deadline_at", flat=True)
    assert all(deadline is not None for deadline in deadlines)


def test_astart_many() -> None:
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    # The async twin runs in asgiref's executor thread, whose connection an earlier test
    # may have seen terminated: start it on a fresh one.
    asyncio.run(sync_to_async(connections.close_all)())
    ids = asyncio.run(zart.astart_many("arith", [{"a": 1, "b": 1}], execution_ids=["async"]))
    assert ids == ["async"] and Execution.objects.filter(pk="async").exists()


@pytest.mark.postgres
def test_start_is_one_statement_and_start_many_one_transaction() -> None:
    zart.start("arith", {}, execution_id="first")  # reads the pause rules (once a second)
    with CaptureQueriesContext(connection) as queries:
        zart.start("arith", {"a": 1, "b": 2}, execution_id="one")
    assert len(queries) == 1, [q["sql"][:60] for q in queries]
    with CaptureQueriesContext(connection) as queries:
        zart.start_many("arith", [{"a": i, "b": 0} for i in range(100)])
    statements = [q["sql"] for q in queries if not q["sql"].startswith(("BEGIN", "COMMIT"))]
    assert len(statements) == 1


@pytest.mark.postgres
def test_a_taken_id_inside_the_callers_transaction_leaves_it_usable() -> None:
    zart.start("arith", {}, execution_id="taken")
    with transaction.atomic():
        with pytest.raises(zart.ExecutionAlreadyExists):
            zart.start("arith", {}, execution_id="taken")
        zart.start("arith", {}, execution_id="after")  # the transaction is not aborted
    assert Execution.objects.filter(pk="after").exists()
