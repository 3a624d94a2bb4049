"""A queue's rate limit, held across worker processes racing for its work."""

import itertools
import time
from collections.abc import Callable

import pytest

import django_zart as zart
from tests.conftest import WorkerProcess
from tests.test_rates import start_times

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
Start = Callable[..., WorkerProcess]


def test_three_racing_workers_share_one_rate(worker_process: Start) -> None:
    env = {"ZART_TEST_QUEUE_RATE": "10/s"}
    workers = [worker_process("--concurrency", "4", env=env) for _ in range(3)]
    time.sleep(1)
    ids = zart.start_many("arith", [{"a": i, "b": 1} for i in range(12)], queue="emails")
    for execution_id in ids:
        assert zart.wait(execution_id, 30).status == "COMPLETED"
    for worker in workers:
        assert worker.terminate() == 0
    times = start_times(ids)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    # One token every 100 ms, for three workers together (a little less: clocks round).
    assert min(gaps) >= 0.08, gaps
    assert (times[-1] - times[0]).total_seconds() >= 1.0
