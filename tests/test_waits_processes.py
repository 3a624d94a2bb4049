"""Sleeping and waiting executions with real worker processes on PostgreSQL."""

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db.models import Count, F, Max

import django_zart as zart
from django_zart.models import Event, Execution, Step, Task
from tests.conftest import WorkerProcess, direct_and_pgbouncer
from tests.test_worker_processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
Start = Callable[..., WorkerProcess]


def cpu_seconds(pid: int) -> float:
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def threads(pid: int) -> int:
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


@pytest.mark.slow
def test_a_thousand_sleepers_hold_no_thread_and_no_cpu(worker_process: Start) -> None:
    for i in range(1000):
        zart.start("sleeper", {"seconds": 600}, execution_id="long-%04d" % i)
    worker = worker_process("--concurrency", "4")
    wait_for(
        lambda: (
            Step.objects.filter(kind="SLEEP").count() == 1000 and not Task.objects.held().exists()
        ),
        60,
        "all 1000 asleep",
    )
    time.sleep(0.2)
    before, started = cpu_seconds(worker.pid), time.monotonic()
    time.sleep(1.5)
    cpu_share = (cpu_seconds(worker.pid) - before) / (time.monotonic() - started)
    thread_count = threads(worker.pid)
    assert worker.terminate() == 0
    print("\n1000 asleep: %d worker threads, CPU %.1f%%" % (thread_count, cpu_share * 100))
    assert thread_count <= 10  # main, 4 runners, heartbeat, listener (+ interpreter's own)
    assert cpu_share < 0.05  # a poll every interval, nothing per sleeper


@pytest.mark.slow
def test_five_hundred_two_second_sleepers_wake_on_time(worker_process: Start) -> None:
    for i in range(500):
        zart.start("sleeper", {"seconds": 2}, execution_id="nap-%04d" % i)
    worker = worker_process("--concurrency", "4")
    wait_for(
        lambda: Execution.objects.filter(status="COMPLETED").count() == 500,
        60,
        "all 500 completed",
    )
    late = [
        (finished - woke).total_seconds()
        for finished, woke in Step.objects.filter(kind="SLEEP")
        .annotate(finished=F("execution__finished_at"))
        .values_list("finished", "wake_at")
    ]
    assert worker.terminate() == 0
    print(
        "\n500 two-second sleepers finished after their due time: p50 %.3fs, max %.3fs"
        % (statistics.median(late), max(late))
    )
    assert min(late) >= 0  # nobody woke early
    # "Within a few seconds of their due time": they come due over the second or two it
    # took to put them to sleep, and one worker of concurrency 4 drains them in order.
    # (A thousand took up to 6 s to drain on a two-core machine shared with the server.)
    assert max(late) < 5.0


@direct_and_pgbouncer
def test_sigkill_while_sleeping_and_waiting_loses_nothing(worker_process: Start) -> None:
    for i in range(50):
        zart.start("sleeper", {"seconds": 1.5}, execution_id="s-%02d" % i)
        zart.start("approval", {}, execution_id="w-%02d" % i)
    first = worker_process("--orphan-timeout", "2")
    wait_for(
        lambda: Step.objects.filter(status="WAITING").count() == 100, 30, "100 sleeping or waiting"
    )
    for i in range(25):  # while the worker lives: delivered and (maybe) consumed
        zart.send_event("w-%02d" % i, "approved", {"by": "early-%d" % i})
    first.kill()  # perhaps in the middle of consuming some of them
    for i in range(25, 50):  # while no worker runs: kept
        zart.send_event("w-%02d" % i, "approved", {"by": "late-%d" % i})
    worker_process("--orphan-timeout", "2")
    wait_for(
        lambda: Execution.objects.filter(status="COMPLETED").count() == 100, 60, "all 100 completed"
    )
    outputs = dict(Execution.objects.filter(pk__startswith="w-").values_list("pk", "output"))
    assert outputs == {
        "w-%02d" % i: {"approved": True, "by": "%s-%d" % ("early" if i < 25 else "late", i)}
        for i in range(50)
    }
    assert not Event.objects.unconsumed().exists()
    per_step = Event.objects.values("consumed_by").annotate(n=Count("id"))
    assert per_step.aggregate(m=Max("n"))["m"] == 1 and per_step.count() == 50
    assert Step.objects.filter(kind="EVENT", status="COMPLETED").count() == 50
    assert not Task.objects.exists()


@direct_and_pgbouncer
def test_notify_and_due_times_wake_a_worker_that_polls_rarely(worker_process: Start) -> None:
    worker = worker_process("--poll-interval", "60")
    time.sleep(1.5)  # the worker is up and idle, its next poll a minute away
    started = time.monotonic()
    zart.start("arith", {"a": 1, "b": 2}, execution_id="notified")
    assert zart.wait_completion("notified", 10) == {"sum": 113}
    assert time.monotonic() - started < 5  # NOTIFY, not the poll, brought it
    zart.start("approval", {}, execution_id="evented")
    wait_for(lambda: zart.status("evented").status == "SUSPENDED", 10, "the wait")
    started = time.monotonic()
    zart.send_event("evented", "approved", {"by": "x"})
    assert zart.wait_completion("evented", 10)["by"] == "x"
    assert time.monotonic() - started < 5
    zart.start("sleeper", {"seconds": 1}, execution_id="due")
    assert zart.wait_completion("due", 10) == "a"  # woken at its due time, not by a poll
    step = Step.objects.get(execution_id="due", kind="SLEEP")
    assert (zart.status("due").finished_at - step.wake_at).total_seconds() < 2
    assert worker.terminate() == 0


def test_without_listen_the_worker_polls(worker_process: Start) -> None:
    worker = worker_process("--poll-interval", "0.5", "--no-listen")
    zart.start("arith", {"a": 1, "b": 2}, execution_id="polled")
    assert zart.wait_completion("polled", 10) == {"sum": 113}
    assert worker.terminate() == 0
