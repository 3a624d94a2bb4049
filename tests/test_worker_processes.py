"""Real worker processes on PostgreSQL: crashes, concurrency, signals and fencing."""

import time
from collections.abc import Callable

import pytest
from django.db.models import Count

import django_zart as zart
from django_zart.models import Execution, Step, Task
from django_zart.models import Worker as WorkerRow
from tests.conftest import WorkerProcess, direct_and_pgbouncer
from tests.models import SideEffect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
Start = Callable[..., WorkerProcess]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


@direct_and_pgbouncer
def test_sigkill_during_step_3_resumes_on_another_worker(worker_process: Start) -> None:
    zart.start("five-steps", {}, execution_id="crash")
    first = worker_process("--orphan-timeout", "2", "--poll-interval", "0.05")
    wait_for(
        lambda: SideEffect.objects.filter(execution_id="crash", step="step-3").exists(),
        20,
        "step 3 to start",
    )
    first.kill()
    killed_at = time.monotonic()
    assert Task.objects.get(execution_id="crash").held_by is not None  # the lease is left
    second = worker_process("--orphan-timeout", "2", "--poll-interval", "0.05")
    output = zart.wait_completion("crash", 30)
    taken_over_after = time.monotonic() - killed_at
    assert output == ["STEP-1", "STEP-2", "STEP-3", "STEP-4", "STEP-5"]
    runs = dict(
        SideEffect.objects.filter(execution_id="crash")
        .values_list("step")
        .annotate(n=Count("id"))
        .values_list("step", "n")
    )
    # Steps 1 and 2 were checkpointed before the crash: they ran exactly once. Step 3 was
    # in flight: it ran again (at-least-once), in the second worker.
    assert runs == {"step-1": 1, "step-2": 1, "step-3": 2, "step-4": 1, "step-5": 1}
    pids = set(SideEffect.objects.filter(execution_id="crash").values_list("pid", flat=True))
    assert pids == {first.pid, second.pid}
    assert taken_over_after >= 1.5  # not before the lease (judged by PostgreSQL) expired
    assert second.terminate() == 0


@direct_and_pgbouncer
@pytest.mark.slow
def test_four_workers_five_hundred_workflows_each_once(worker_process: Start) -> None:
    for i in range(500):
        zart.start("three-steps", {"n": i}, execution_id="many-%03d" % i)
    started = time.monotonic()
    workers = [worker_process("--poll-interval", "0.05") for _ in range(4)]
    wait_for(
        lambda: Execution.objects.filter(status="COMPLETED").count() == 500,
        120,
        "500 completed executions",
    )
    elapsed = time.monotonic() - started
    for worker in workers:
        assert worker.terminate() == 0
    outputs = dict(Execution.objects.values_list("pk", "output"))
    assert all(outputs["many-%03d" % i] == 3 * i + 3 for i in range(500))
    assert Step.objects.count() == 1500
    assert Step.objects.filter(attempts=1).count() == 1500
    assert not Task.objects.exists()
    assert not WorkerRow.objects.exists()  # each worker deregistered on SIGTERM
    logs = "".join(w.output() for w in workers)
    assert "Lease lost" not in logs and "Traceback" not in logs
    print("4 workers x 500 three-step workflows: %.2fs" % elapsed)


def test_sigterm_lets_running_work_finish_then_exits_0(worker_process: Start) -> None:
    zart.start("sleepy-wf", {"seconds": 1}, execution_id="drain")
    worker = worker_process("--shutdown-timeout", "5", "-v", "1")
    wait_for(lambda: zart.status("drain").status == "RUNNING", 20, "the execution to run")
    time.sleep(0.2)
    assert worker.terminate() == 0
    assert zart.status("drain").status == "COMPLETED"
    assert "Received SIGTERM" in worker.output()


@direct_and_pgbouncer
def test_sigterm_releases_work_still_running_after_the_shutdown_timeout(
    worker_process: Start,
) -> None:
    zart.start("sleepy-wf", {"seconds": 3}, execution_id="release")
    worker = worker_process("--shutdown-timeout", "0.2")
    wait_for(lambda: zart.status("release").status == "RUNNING", 20, "the execution to run")
    assert worker.terminate() == 0
    task = Task.objects.get(execution_id="release")
    assert task.held_by is None and task.recoveries == 0  # released, not orphaned
    worker_process()
    assert zart.wait_completion("release", 20) == "slept"


@direct_and_pgbouncer
def test_a_paused_worker_cannot_write_after_its_lease_is_taken_over(
    worker_process: Start,
) -> None:
    """SIGSTOP a worker mid-step past its lease; its late checkpoint is refused."""
    import os
    import signal

    zart.start("sleepy-wf", {"seconds": 2}, execution_id="fenced")
    paused = worker_process("--orphan-timeout", "1", "-v", "1")
    wait_for(lambda: zart.status("fenced").status == "RUNNING", 20, "the execution to run")
    os.kill(paused.pid, signal.SIGSTOP)
    time.sleep(1.5)  # the lease (1s, not renewed while stopped) expires
    other = worker_process("--orphan-timeout", "1")
    wait_for(
        lambda: Task.objects.filter(execution_id="fenced", recoveries=1).exists(),
        20,
        "the takeover",
    )
    os.kill(paused.pid, signal.SIGCONT)
    assert zart.wait_completion("fenced", 20) == "slept"
    time.sleep(2.5)  # the paused worker's step returns and tries to write
    assert Step.objects.filter(execution_id="fenced").count() == 1
    assert paused.terminate() == 0 and other.terminate() == 0
    assert "Lease lost execution=fenced" in paused.output()


def _commits() -> int:
    """Transactions committed in the test database so far (read-only ones too)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def _idle_commits_per_second(worker: WorkerProcess, seconds: float = 6) -> float:
    wait_for(
        lambda: WorkerRow.objects.filter(pid=worker.pid).exists(), 20, "the worker to register"
    )
    time.sleep(2)  # past its start, with its statistics flushed once
    before, began = _commits(), time.monotonic()
    time.sleep(seconds)
    return (_commits() - before) / (time.monotonic() - began)


def test_an_idle_worker_polls_once_a_second_while_notifications_come(
    worker_process: Start,
) -> None:
    """With LISTEN up, ``--poll-interval 0.05`` is a fallback it need not take: new work
    is announced; without it, it polls twenty times a second."""
    listening = worker_process("--poll-interval", "0.05")
    rate = _idle_commits_per_second(listening)
    began = time.monotonic()
    zart.start("arith", {"a": 1, "b": 1}, execution_id="announced")
    assert zart.wait_completion("announced", 10) == {"sum": 112}
    assert time.monotonic() - began < 0.9  # woken by the notification, not the poll
    assert listening.terminate() == 0
    polling = worker_process("--poll-interval", "0.05", "--no-listen")
    polling_rate = _idle_commits_per_second(polling)
    assert polling.terminate() == 0
    # The count is the database's, and other sessions of the run flush their statistics
    # late, in bursts: what is compared is the order of magnitude. The listening worker's
    # second holds its poll and the once-a-second sweeps (schedules, pauses, limits).
    assert polling_rate > 20 and rate < polling_rate / 4, (rate, polling_rate)
