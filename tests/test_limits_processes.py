"""Concurrency limits held across worker processes racing for the same work."""

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.db import connection
from django.db.models.functions import Now

import django_zart as zart
from django_zart.models import Task
from tests.conftest import WorkerProcess
from tests.models import SideEffect
from tests.test_limits import peak

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
Start = Callable[..., WorkerProcess]


class HeldSampler:
    """Samples, every 10 ms on its own connection, how many limited tasks are held under a
    live lease: the parallelism the database itself sees."""

    def __init__(self) -> None:
        self.highest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.01):
                held = Task.objects.filter(
                    limit_key__isnull=False, held_by__isnull=False, lease_until__gt=Now()
                ).count()
                self.highest = max(self.highest, held)
        finally:
            connection.close()

    def __enter__(self) -> "HeldSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def sampler() -> Iterator[HeldSampler]:
    with HeldSampler() as held:
        yield held


def test_four_racing_workers_never_run_more_than_the_limit(
    worker_process: Start, sampler: HeldSampler
) -> None:
    workers = [worker_process("--concurrency", "4") for _ in range(4)]
    time.sleep(1)  # all four up and polling: they race for every slot
    began = time.monotonic()
    ids = zart.start_many("limited", [{"seconds": 0.2}] * 30)
    for execution_id in ids:
        assert zart.wait_completion(execution_id, 60) == "done"
    elapsed = time.monotonic() - began
    for worker in workers:
        assert worker.terminate() == 0
    print("limited: peak %d, held at most %d, %.2fs" % (peak(ids), sampler.highest, elapsed))
    assert peak(ids) == 3 and sampler.highest == 3
    # 30 executions of 0.2 s, 3 at a time: 2 s of work. A freed slot is taken at once (a
    # notification), not at the next poll; the bound leaves room for a slow machine.
    assert elapsed < 8, elapsed


def test_a_killed_workers_slots_stay_taken_until_its_leases_end(
    worker_process: Start, sampler: HeldSampler
) -> None:
    doomed = worker_process("--concurrency", "4", "--orphan-timeout", "2")
    ids = zart.start_many("limited", [{"seconds": 1.5}] * 6)
    deadline = time.monotonic() + 20
    started = SideEffect.objects.filter(execution_id__in=ids, step="start")
    while started.count() < 3:
        assert time.monotonic() < deadline, "the first three did not start"
        time.sleep(0.02)
    doomed.kill()
    survivor = worker_process("--concurrency", "4", "--orphan-timeout", "2")
    for execution_id in ids:
        assert zart.wait_completion(execution_id, 60) == "done"
    assert survivor.terminate() == 0
    assert sampler.highest == 3  # the dead worker's three held their slots to the end
    starts = SideEffect.objects.filter(execution_id__in=ids, step="start").count()
    assert starts == 9  # the three the dead worker ran, once more each
