"""The client API: start, idempotency, transactions, status and waiting."""

import threading
from collections.abc import Callable

import pytest
from django.db import connection, transaction
from django.test import override_settings

import django_zart as zart
from django_zart.models import Execution, Run, Task

pytestmark = pytest.mark.django_db(transaction=True)


def test_start_creates_execution_run_and_task() -> None:
    execution_id = zart.start("arith", {"a": 1, "b": 2}, execution_id="calc-1")
    assert execution_id == "calc-1"
    execution = zart.status("calc-1")
    assert execution.status == zart.ExecutionStatus.PENDING
    assert execution.input == {"a": 1, "b": 2}
    assert Run.objects.filter(execution=execution, index=1).exists()
    assert Task.objects.filter(execution=execution, held_by__isnull=True).count() == 1


def test_start_generates_an_id() -> None:
    from tests.workflows import arith

    first, second = zart.start(arith, {"a": 1, "b": 2}), zart.start(arith, {"a": 1, "b": 2})
    assert first != second and len(first) == 36


def test_unknown_workflow_is_refused_at_once() -> None:
    with pytest.raises(zart.UnknownWorkflow, match="no-such"):
        zart.start("no-such", {})
    assert not Execution.objects.exists()


def test_non_json_input_is_refused() -> None:
    with pytest.raises(zart.SerializationError, match=r"input of workflow 'arith'.*set|object"):
        zart.start("arith", {"a": object()})
    assert not Execution.objects.exists()


@override_settings(ZART={"MAX_PAYLOAD_BYTES": 100})
def test_oversized_input_is_refused() -> None:
    with pytest.raises(zart.PayloadTooLarge):
        zart.start("arith", {"a": "x" * 200})
    assert not Execution.objects.exists()


def test_duplicate_id_raises_with_the_existing_status(run_worker: Callable[..., int]) -> None:
    zart.start("arith", {"a": 1, "b": 2}, execution_id="dup")
    with pytest.raises(zart.ExecutionAlreadyExists) as info:
        zart.start("arith", {"a": 5, "b": 5}, execution_id="dup")
    assert info.value.status == "PENDING"
    run_worker()
    with pytest.raises(zart.ExecutionAlreadyExists) as info:
        zart.start("arith", {"a": 5, "b": 5}, execution_id="dup")
    assert info.value.status == "COMPLETED"
    # The finished execution was not re-run or changed.
    assert zart.wait_completion("dup", 1) == {"sum": 113}
    assert Run.objects.filter(execution_id="dup").count() == 1


def test_start_joins_the_callers_transaction() -> None:
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        zart.start("arith", {"a": 1, "b": 2}, execution_id="signup-rolled-back")
        raise Rollback
    assert not Execution.objects.filter(pk="signup-rolled-back").exists()
    assert not Task.objects.exists()
    with transaction.atomic():
        zart.start("arith", {"a": 1, "b": 2}, execution_id="signup-committed")
    assert Execution.objects.filter(pk="signup-committed").exists()


def test_duplicate_inside_an_atomic_block_leaves_the_block_usable() -> None:
    zart.start("arith", {"a": 1, "b": 2}, execution_id="in-block")
    with transaction.atomic():
        with pytest.raises(zart.ExecutionAlreadyExists):
            zart.start("arith", {"a": 1, "b": 2}, execution_id="in-block")
        zart.start("arith", {"a": 1, "b": 2}, execution_id="in-block-2")
    assert Execution.objects.count() == 2


def test_unknown_ids() -> None:
    with pytest.raises(zart.ExecutionNotFound):
        zart.status("nope")
    with pytest.raises(zart.ExecutionNotFound):
        zart.wait_completion("nope", 1)
    with pytest.raises(zart.ExecutionNotFound):
        zart.wait("nope", 1)


def test_wait_times_out_with_the_status() -> None:
    zart.start("arith", {"a": 1, "b": 2}, execution_id="never-run")
    with pytest.raises(zart.WaitTimeout) as info:
        zart.wait("never-run", 0.1)
    assert isinstance(info.value, TimeoutError) and info.value.status == "PENDING"


def test_bad_execution_id() -> None:
    with pytest.raises(ValueError):
        zart.start("arith", {}, execution_id="")
    with pytest.raises(ValueError):
        zart.start("arith", {}, execution_id="x" * 300)


@pytest.mark.postgres
def test_twenty_concurrent_starts_with_one_id_make_one_execution() -> None:
    barrier = threading.Barrier(20)
    results: list[object] = []
    lock = threading.Lock()

    def start() -> None:
        barrier.wait()
        try:
            outcome: object = zart.start("arith", {"a": 1, "b": 2}, execution_id="same-id")
        except zart.ExecutionAlreadyExists as exc:
            outcome = exc
        finally:
            connection.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=start) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("same-id") == 1
    assert sum(isinstance(r, zart.ExecutionAlreadyExists) for r in results) == 19
    assert Execution.objects.filter(pk="same-id").count() == 1
    assert Task.objects.filter(execution_id="same-id").count() == 1


def test_async_twins(run_worker: Callable[..., int]) -> None:
    import asyncio

    async def go() -> object:
        execution_id = await zart.astart("arith", {"a": 2, "b": 2})
        assert (await zart.astatus(execution_id)).status == "PENDING"
        await asyncio.get_running_loop().run_in_executor(None, _burst)
        output = await zart.await_completion(execution_id, 5)
        return output

    def _burst() -> None:
        run_worker()
        connection.close()

    assert asyncio.run(go()) == {"sum": 114}
