"""Django's Tasks framework on django-zart: tasks enqueued through Django's API run on a
real in-process worker, and their results are read back from the database.

Most tasks are the examples of Django's documentation (tests/tasks.py). The framework is
``django.tasks`` on Django 6 and the ``django_tasks`` backport on Django 5.2.
"""

import importlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

import django_zart as zart
from django_zart.db import get_store
from django_zart.models import Execution, Step, Task
from django_zart.names import TASKS_WORKFLOW
from django_zart.tasks import ZartBackend
from tests import workflows  # noqa: F401  (registers "arith")
from tests.models import SideEffect
from tests.tasks import (
    FRAMEWORK,
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultMismatch,
    add,
    arecord,
    attempts_seen,
    calculate_meaning_of_life,
    divide,
    double_dictionary,
    email_users,
    email_users_later,
    email_users_with_context,
    framework,
    record,
    task,
)

pytestmark = pytest.mark.django_db(transaction=True)
Drain = Callable[..., None]
RunWorker = Callable[..., int]
TaskResultStatus = framework.TaskResultStatus
signals = importlib.import_module(FRAMEWORK + ".signals")


def test_the_backend_says_what_it_supports() -> None:
    backend = framework.task_backends["default"]
    assert isinstance(backend, ZartBackend)
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority


def test_an_enqueued_task_runs_on_the_worker(drain: Drain) -> None:
    result = email_users.enqueue(
        emails=["user@example.com"], subject="You have a message", message="Hello there!"
    )
    assert result.status == TaskResultStatus.READY and not result.is_finished
    assert result.kwargs["emails"] == ["user@example.com"]
    with pytest.raises(ValueError, match="Task has not finished yet"):
        _ = result.return_value
    assert not mail.outbox  # nothing ran in this process's request

    drain(result.id)
    assert result.status == TaskResultStatus.READY  # a result does not update by itself
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.is_finished
    assert result.return_value == 1
    assert [m.subject for m in mail.outbox] == ["You have a message"]
    assert result.attempts == 1 and result.errors == []
    assert result.enqueued_at <= result.started_at <= result.finished_at
    # The result id is the execution's, an ordinary execution of the tasks' workflow.
    execution = zart.status(result.id)
    assert execution.workflow == TASKS_WORKFLOW and execution.status == "COMPLETED"
    assert Step.objects.get(execution=execution).position == "tests.tasks.email_users"


def test_get_result_from_the_task_or_the_backend(drain: Drain) -> None:
    result = calculate_meaning_of_life.enqueue()
    drain(result.id)
    found = calculate_meaning_of_life.get_result(result.id)
    assert found.status == TaskResultStatus.SUCCESSFUL and found.return_value == 42
    assert found.task.func is calculate_meaning_of_life.func and found.backend == "default"
    anyhow = framework.default_task_backend.get_result(result.id)
    assert anyhow.id == result.id and anyhow.return_value == 42
    with pytest.raises(TaskResultMismatch):
        divide.get_result(result.id)


def test_unknown_results_do_not_exist() -> None:
    backend = framework.task_backends["default"]
    for result_id in ("no-such-result", "", "\x00", "x" * 300):
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(result_id)
    workflow_id = zart.start("arith", {"a": 1, "b": 2})  # not a task's execution
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(workflow_id)


def test_the_async_api(drain: Drain) -> None:
    result = async_to_sync(add.aenqueue)(2, 3)  # an async task function, too
    assert result.status == TaskResultStatus.READY
    drain(result.id)
    found = async_to_sync(add.aget_result)(result.id)
    assert found.status == TaskResultStatus.SUCCESSFUL and found.return_value == 5
    async_to_sync(result.arefresh)()
    assert result.return_value == 5
    stored = arecord.enqueue("async")
    drain(stored.id)
    stored.refresh()
    assert stored.return_value == SideEffect.objects.get(step="async").pk


def test_a_failing_task_keeps_its_exception_and_traceback(drain: Drain) -> None:
    result = divide.enqueue(1, 0)
    drain(result.id)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    (error,) = result.errors
    assert error.exception_class is ZeroDivisionError
    assert error.exception_class_path == "builtins.ZeroDivisionError"
    assert "return a / b" in error.traceback
    assert "ZeroDivisionError: division by zero" in error.traceback
    assert result.attempts == 1  # failed for good at once, as with Django's own backends


def test_arguments_go_through_json_as_the_documentation_warns(drain: Drain) -> None:
    result = double_dictionary.enqueue((1, 2, 3))
    assert result.args == [[1, 2, 3]]
    drain(result.id)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert "TypeError: unhashable type: 'list'" in result.errors[0].traceback
    keyed = double_dictionary.enqueue({1: "one"})  # dict keys become strings
    assert keyed.args == [{"1": "one"}]


def test_what_json_cannot_hold_is_refused_at_enqueue() -> None:
    with pytest.raises(TypeError):
        double_dictionary.enqueue(datetime.now())
    assert not Execution.objects.exists()


def test_enqueue_joins_the_callers_transaction() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        calculate_meaning_of_life.enqueue()
        raise RuntimeError("rolled back")
    assert not Execution.objects.exists()


def test_a_task_that_takes_context(drain: Drain) -> None:
    result = email_users_with_context.enqueue(["a@example.com"], "Hi", "Hello")
    drain(result.id)
    result.refresh()
    assert result.return_value == {"sent": 1, "attempt": 1, "id": result.id}


def test_the_context_counts_the_attempts_of_a_retried_task(
    run_worker: RunWorker, drain: Drain
) -> None:
    """The "retrying" backend retries failed attempts (OPTIONS RETRY, tests/settings.py)."""
    result = attempts_seen.enqueue(failures=2)
    run_worker()  # the first attempt fails; the retry is due a second later
    result.refresh()
    assert result.status == TaskResultStatus.READY  # ready to be executed again
    assert result.attempts == 1
    assert [e.exception_class for e in result.errors] == [ConnectionError]
    drain(result.id)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == [1, 2, 3] and result.attempts == 3
    assert [e.exception_class for e in result.errors] == [ConnectionError, ConnectionError]
    assert "attempt 2 failed" in result.errors[1].traceback


def test_a_task_fails_once_its_retries_are_spent(drain: Drain) -> None:
    result = attempts_seen.enqueue(failures=10)
    drain(result.id)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.attempts == 3
    assert ["attempt %d failed" % n in e.traceback for n, e in enumerate(result.errors, 1)] == [
        True,
        True,
        True,
    ]


def test_run_after_defers_the_task(run_worker: RunWorker, drain: Drain) -> None:
    run_after = timezone.now() + timedelta(seconds=1.5)
    result = calculate_meaning_of_life.using(run_after=run_after).enqueue()
    assert result.task.run_after == run_after
    run_worker()  # nothing is due yet
    result.refresh()
    assert result.status == TaskResultStatus.READY and result.started_at is None
    assert Task.objects.get(execution_id=result.id).run_after == run_after
    drain(result.id)
    found = calculate_meaning_of_life.get_result(result.id)
    assert found.status == TaskResultStatus.SUCCESSFUL
    assert found.started_at >= run_after - timedelta(milliseconds=100)  # two clocks
    assert found.task.run_after == run_after  # the task as it was enqueued


def test_higher_priorities_run_first(run_worker: RunWorker) -> None:
    low = record.using(priority=-10).enqueue("low")
    normal = record.enqueue("normal")
    high = record.using(priority=50).enqueue("high")
    # Workers claim the lowest value first: Django's priority, negated.
    priorities = dict(Task.objects.values_list("execution_id", "priority"))
    assert priorities == {low.id: 10, normal.id: 0, high.id: -50}
    run_worker(concurrency=1)
    ran = list(SideEffect.objects.order_by("pk").values_list("step", flat=True))
    assert ran == ["high", "normal", "low"]
    assert record.get_result(high.id).task.priority == 50


def test_priorities_out_of_range_are_refused() -> None:
    for priority in (101, -101):
        with pytest.raises(InvalidTask, match="priority"):
            record.using(priority=priority)


def test_a_tasks_queue_is_a_django_zart_queue(run_worker: RunWorker) -> None:
    result = email_users_later.enqueue(["b@example.com"], "Later", "Hello")
    assert Execution.objects.get(pk=result.id).queue == "emails"
    run_worker()  # serves "default" only
    result.refresh()
    assert result.status == TaskResultStatus.READY
    run_worker(queues=["emails"])
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 1


def test_unknown_queues_are_refused() -> None:
    with pytest.raises(InvalidTask, match="Queue 'reports' is not valid for backend"):
        email_users.using(queue_name="reports")
    with pytest.raises(InvalidTask, match="Queue 'reports' is not valid for backend"):
        task(queue_name="reports")(double_dictionary.func)


def test_functions_not_at_module_level_are_refused() -> None:
    def local_function() -> None: ...

    with pytest.raises(InvalidTask, match="module level"):
        task(local_function)
    with pytest.raises(InvalidTask, match="module level"):
        task(lambda: None)


def test_a_worker_that_dies_mid_task_is_replaced(drain: Drain) -> None:
    result = calculate_meaning_of_life.enqueue()
    (_held,) = get_store().claim(queues=["default"], limit=1, lease=0.05)
    result.refresh()
    assert result.status == TaskResultStatus.RUNNING and result.attempts == 1
    time.sleep(0.15)  # its worker "died" holding it: its lease runs out
    drain(result.id)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42


def test_a_cancelled_task_has_failed(run_worker: RunWorker) -> None:
    result = calculate_meaning_of_life.using(run_after=timezone.now() + timedelta(hours=1))
    result = result.enqueue()
    zart.cancel(result.id, reason="not needed")
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    (error,) = result.errors
    assert error.exception_class is zart.ExecutionCancelled
    assert "not needed" in error.traceback


def test_the_workflow_runs_tasks_only(drain: Drain) -> None:
    """Whoever may start executions cannot make the tasks' workflow call any function."""
    data = {
        "task": "tests.tasks.not_a_task",
        "args": [],
        "kwargs": {},
        "backend": "default",
        "priority": 0,
        "run_after": None,
    }
    execution_id = zart.start(TASKS_WORKFLOW, data)
    drain(execution_id)
    assert zart.status(execution_id).status == "FAILED"
    step = Step.objects.get(execution_id=execution_id)
    assert "is not a task" in step.error["message"]
    assert not SideEffect.objects.exists()


@pytest.fixture
def sent() -> Iterator[list[tuple[str, str, str]]]:
    """The framework's signals as they are sent: (signal, result id, status)."""
    seen: list[tuple[str, str, str]] = []
    lock = threading.Lock()
    receivers = {}
    for name in ("task_enqueued", "task_started", "task_finished"):

        def receive(sender: Any, task_result: Any, _name: str = name, **kwargs: Any) -> None:
            with lock:
                seen.append((_name, task_result.id, str(task_result.status)))

        receivers[name] = receive
        getattr(signals, name).connect(receive, weak=False)
    yield seen
    for name, receive in receivers.items():
        getattr(signals, name).disconnect(receive)


def test_the_frameworks_signals_are_sent(drain: Drain, sent: list) -> None:
    done = calculate_meaning_of_life.enqueue()
    failed = divide.enqueue(1, 0)
    drain(done.id, failed.id)
    by_result = {
        result.id: [(name, status) for name, rid, status in sent if rid == result.id]
        for result in (done, failed)
    }
    assert by_result[done.id] == [
        ("task_enqueued", "READY"),
        ("task_started", "RUNNING"),
        ("task_finished", "SUCCESSFUL"),
    ]
    assert by_result[failed.id] == [
        ("task_enqueued", "READY"),
        ("task_started", "RUNNING"),
        ("task_finished", "FAILED"),
    ]


def test_the_admin_lists_task_results_by_their_task(drain: Drain, admin_client: Client) -> None:
    sent = email_users.enqueue(["c@example.com"], "Admin", "Hello")
    failed = divide.enqueue(1, 0)
    drain(sent.id, failed.id)
    zart.start("arith", {"a": 1, "b": 2})
    page = admin_client.get(reverse("admin:django_zart_execution_changelist")).text
    assert '<td class="field-workflow_label">arith</td>' in page
    assert 'tests.tasks.email_users <span class="quiet">(task)</span>' in page
    assert "failed at step tests.tasks.divide" in page  # the step is named by the task


def test_backend_options_and_queues_are_checked() -> None:
    backend = "django_zart.tasks.ZartBackend"
    with override_settings(
        TASKS={
            "default": {"BACKEND": backend},
            "typo": {"BACKEND": backend, "OPTIONS": {"RETRIES": 3}},
            "bad-retry": {"BACKEND": backend, "OPTIONS": {"RETRY": 3}},
            "bad-queues": {"BACKEND": backend, "QUEUES": ["default", "x" * 101]},
        }
    ):
        with pytest.raises(ImproperlyConfigured, match="unknown keys 'RETRIES'"):
            framework.task_backends["typo"]
        with pytest.raises(ImproperlyConfigured, match=r"must be a django_zart\.Retry"):
            framework.task_backends["bad-retry"]
        (error,) = framework.task_backends["bad-queues"].check()
        assert error.id == "django_zart.E002" and "longer than 100" in error.msg
        assert framework.task_backends["default"].check() == []
