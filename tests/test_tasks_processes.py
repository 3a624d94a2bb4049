"""Tasks of Django's Tasks framework on real worker processes: a worker process knows the
tasks' workflow without importing any task first, and a task whose worker is killed
mid-call runs again on another."""

from collections.abc import Callable

import pytest

from tests.conftest import WorkerProcess
from tests.models import SideEffect
from tests.tasks import framework, hang_the_first_time
from tests.test_worker_processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
Start = Callable[..., WorkerProcess]


def test_a_task_whose_worker_is_killed_runs_on_another(worker_process: Start) -> None:
    result = hang_the_first_time.enqueue("killed")
    first = worker_process("--orphan-timeout", "2", "--poll-interval", "0.05")
    wait_for(lambda: SideEffect.objects.filter(step="killed").exists(), 20, "the task to run")
    result.refresh()
    assert result.status == framework.TaskResultStatus.RUNNING and result.attempts == 1
    first.kill()
    second = worker_process("--orphan-timeout", "2", "--poll-interval", "0.05")

    def finished() -> bool:
        result.refresh()
        return result.is_finished

    wait_for(finished, 30, "the task to finish on the second worker")
    assert result.status == framework.TaskResultStatus.SUCCESSFUL
    assert result.return_value == second.pid
    ran_in = list(SideEffect.objects.order_by("pk").values_list("pid", flat=True))
    assert ran_in == [first.pid, second.pid]  # at least once: the killed call ran again
    assert result.attempts == 1 and result.errors == []  # that call was never recorded
    assert second.terminate() == 0
