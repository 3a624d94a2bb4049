"""Branches and loops across real worker processes on PostgreSQL."""

import time
from collections.abc import Callable

import pytest
from django.db.models import Count

import django_zart as zart
from django_zart.branches import BATCH_SIZE
from django_zart.models import Step, Task
from tests.conftest import WorkerProcess, direct_and_pgbouncer
from tests.models import SideEffect
from tests.test_worker_processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
Start = Callable[..., WorkerProcess]


@direct_and_pgbouncer
def test_two_hundred_branches_on_three_workers_wake_the_body_once(
    worker_process: Start,
) -> None:
    started = time.monotonic()
    zart.start("wide", {"n": 200}, execution_id="wide")
    workers = [worker_process("--concurrency", "4") for _ in range(3)]
    output = zart.wait_completion("wide", 60)
    elapsed = time.monotonic() - started
    for worker in workers:
        assert worker.terminate() == 0
    assert output["n"] == 200 and output["ordered"]
    assert len(output["pids"]) >= 2  # the branches really ran in several workers
    per_branch = (
        SideEffect.objects.filter(execution_id="wide", step__startswith="branch-")
        .values("step")
        .annotate(n=Count("id"))
    )
    assert per_branch.count() == 200 and {row["n"] for row in per_branch} == {1}
    # The body ran past wait_all exactly once. Its runs: the first, at most one early look
    # (branches that finished before it suspended), and the one wake by the last branch.
    assert SideEffect.objects.filter(step="body-after-wait").count() == 1
    body_runs = SideEffect.objects.filter(execution_id="wide", step="body-start").count()
    assert 2 <= body_runs <= 3
    group = Step.objects.get(execution_id="wide", kind="GROUP")
    assert group.status == "COMPLETED"
    assert not Task.objects.exists()
    print(
        "\n200 branches on 3 workers: %.2fs (%.0f steps/s), body runs %d"
        % (elapsed, 200 / elapsed, body_runs)
    )


def test_many_small_fan_outs_racing_their_bodies_all_complete(worker_process: Start) -> None:
    """Branches finish while their bodies suspend on the group: each group's count of
    unfinished branches must come out exact, or a body would wait forever."""
    ids = zart.start_many("fan-out", [{"n": 6}] * 60)
    workers = [worker_process("--concurrency", "4", "--poll-interval", "0.05") for _ in range(3)]
    outputs = [zart.wait_completion(execution_id, 60) for execution_id in ids]
    for worker in workers:
        assert worker.terminate() == 0
    assert outputs == [{"sum": 55, "pair": [3, 7]}] * 60
    groups = Step.objects.filter(kind="GROUP")
    assert groups.count() == 120 and set(groups.values_list("status", flat=True)) == {"COMPLETED"}
    assert not Task.objects.exists()


def test_sigterm_during_batches_of_branches_gives_them_all_back(worker_process: Start) -> None:
    zart.start("wide", {"n": 1200}, execution_id="wide")
    first = worker_process("--shutdown-timeout", "0", "--poll-interval", "0.05")
    wait_for(
        lambda: SideEffect.objects.filter(step__startswith="branch-").count() > 300,
        30,
        "branches to run",
    )
    assert first.terminate() == 0
    assert not Task.objects.filter(held_by__isnull=False).exists()  # nothing left held
    second = worker_process("--poll-interval", "0.05")
    output = zart.wait_completion("wide", 90)
    assert second.terminate() == 0
    assert output["n"] == 1200 and output["ordered"]
    ran = SideEffect.objects.filter(step__startswith="branch-").values("step").distinct()
    assert ran.count() == 1200
    assert Step.objects.get(execution_id="wide", kind="GROUP").status == "COMPLETED"


@direct_and_pgbouncer
def test_a_crash_while_branches_run_loses_nothing(worker_process: Start) -> None:
    zart.start("wide", {"n": 100}, execution_id="wide-crash")
    doomed = worker_process("--concurrency", "4", "--orphan-timeout", "2")
    wait_for(
        lambda: SideEffect.objects.filter(step__startswith="branch-").count() >= 20,
        30,
        "some branches to run",
    )
    doomed.kill()
    done_before = set(
        Step.objects.filter(
            execution_id="wide-crash", kind="BRANCH", status="COMPLETED"
        ).values_list("position", flat=True)
    )
    worker_process("--concurrency", "4", "--orphan-timeout", "2")
    assert zart.wait_completion("wide-crash", 60)["n"] == 100
    ran = (
        SideEffect.objects.filter(execution_id="wide-crash", step__startswith="branch-")
        .values("step")
        .annotate(n=Count("id"))
    )
    assert ran.count() == 100
    # A branch that finished before the crash never ran again; one in flight may have.
    finished_steps = {
        "branch-%s" % (int(p.split("#")[1]) - 1 if "#" in p else 0) for p in done_before
    }
    assert all(row["n"] == 1 for row in ran if row["step"] in finished_steps)
    # The rest ran once, or again if it was in flight: in a thread's hands, or run in a
    # batch whose outcomes were not recorded yet (branches.BATCH_SIZE per thread).
    assert sum(row["n"] for row in ran) <= 100 + 4 * (1 + BATCH_SIZE)


@pytest.mark.slow
def test_a_thousand_iterations_survive_a_sigkill(worker_process: Start) -> None:
    zart.start("loop", {"n": 1000, "slow": 0.002}, execution_id="long-loop")
    started = time.monotonic()
    doomed = worker_process("--orphan-timeout", "2")
    wait_for(
        lambda: SideEffect.objects.filter(execution_id="long-loop").count() >= 400,
        60,
        "the loop to pass 400",
    )
    doomed.kill()
    worker_process("--orphan-timeout", "2")
    assert zart.wait_completion("long-loop", 120) == sum(range(1000))
    elapsed = time.monotonic() - started
    ran = SideEffect.objects.filter(execution_id="long-loop").values("step").annotate(n=Count("id"))
    counts = [row["n"] for row in ran]
    assert len(counts) == 1000
    assert counts.count(1) >= 999 and max(counts) <= 2  # only the one in flight re-ran
    assert Step.objects.filter(execution_id="long-loop").count() == 1000
    print(
        "\n1000-iteration loop with a SIGKILL: %.2fs (%.0f steps/s, incl. 2s takeover)"
        % (elapsed, 1000 / elapsed)
    )


@direct_and_pgbouncer
def test_children_failure_handlers_and_cancel_across_processes(worker_process: Start) -> None:
    workers = [worker_process("--concurrency", "2") for _ in range(2)]
    zart.start("parent", {"x": 9}, execution_id="pp")
    zart.start("order", {"order": "B-2"}, execution_id="oo")
    zart.start("waiting-parent", None, execution_id="ww")
    assert zart.wait_completion("pp", 30)["squared"] == 81
    with pytest.raises(zart.ExecutionFailed) as info:
        zart.wait_completion("oo", 30)
    assert info.value.error["compensation"] == "completed"
    wait_for(lambda: zart.status("ww-child").status == "SUSPENDED", 30, "the waiting child")
    assert zart.cancel("ww").status == "CANCELLED"
    assert zart.status("ww-child").status == "CANCELLED"
    for worker in workers:
        assert worker.terminate() == 0
    assert not Task.objects.exclude(execution__status="PENDING").exists()
