"""A backend for Django's Tasks framework: every ``@task`` runs as a durable execution.

``TASKS = {"default": {"BACKEND": "django_zart.tasks.ZartBackend"}}`` hands enqueued tasks
to ``runzartworker``. Each one becomes an execution of a single internal workflow whose
one step imports the task and calls it. A task thus gets what any step gets: a worker that
dies mid-call is replaced and the call runs again (at least once), failed attempts are
retried under the backend's ``RETRY`` policy, and every attempt is recorded. The result id
is the execution id, and results are read back from the execution and its step.

Django 6 has the framework built in (``django.tasks``); on Django 5.2 the ``django-tasks``
backport provides the same API as ``django_tasks``.

The models and the client are imported inside the functions that use them: the framework
creates a backend as soon as a module with a ``@task`` is imported, which may happen while
the app registry is still loading.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from . import serialization
from .context import context
from .decorators import workflow
from .errors import InvalidArgument
from .names import MAX_NAME_LENGTH, MAX_QUEUE_LENGTH, TASKS_WORKFLOW, check_name
from .retry import Retry
from .states import AttemptStatus, ExecutionStatus, StepKind, StepStatus, TaskKind
from .steps import Step

if TYPE_CHECKING:
    from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import DEFAULT_TASK_PRIORITY, TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    from .models import Execution
else:
    try:
        import django.tasks  # noqa: F401  (Django 6)
    except ImportError:
        try:
            import django_tasks  # noqa: F401  (the backport, for Django 5.2)
        except ImportError as exc:
            raise ImportError(
                "django_zart.tasks needs Django's Tasks framework: Django 6, or on Django "
                "5.2 the django-tasks backport (pip install 'django-zart[tasks]')."
            ) from exc
        from django_tasks import exceptions, task_backends
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import (
            DEFAULT_TASK_PRIORITY,
            Task,
            TaskContext,
            TaskError,
            TaskResult,
            TaskResultStatus,
        )
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json

        # The backport named it InvalidTaskError before it took Django's name.
        InvalidTask = getattr(exceptions, "InvalidTask", None) or exceptions.InvalidTaskError
        TaskResultDoesNotExist = exceptions.TaskResultDoesNotExist
    else:
        from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus, task_backends
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import DEFAULT_TASK_PRIORITY, TaskError
        from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued, task_finished, task_started
        from django.utils.json import normalize_json


OPTIONS = frozenset({"RETRY"})
"""What a ``ZartBackend`` takes in ``OPTIONS``."""

WORKER = "django-zart"
"""Each attempt's entry in ``TaskResult.worker_ids``: django-zart records every attempt,
not which worker made it, and ``attempts`` (and ``TaskContext.attempt``) count them."""

STATUSES = {
    ExecutionStatus.PENDING: TaskResultStatus.READY,
    ExecutionStatus.PAUSED: TaskResultStatus.READY,
    # Only a retry delay (or a pause rule's release before ``run_after``) suspends it:
    # ready to run again.
    ExecutionStatus.SUSPENDED: TaskResultStatus.READY,
    ExecutionStatus.RUNNING: TaskResultStatus.RUNNING,
    ExecutionStatus.COMPLETED: TaskResultStatus.SUCCESSFUL,
    ExecutionStatus.FAILED: TaskResultStatus.FAILED,
    ExecutionStatus.CANCELLED: TaskResultStatus.FAILED,
}
"""Execution statuses as the framework names them; a cancelled task has failed."""


class ZartBackend(BaseTaskBackend):
    """Tasks as durable executions, run by ``runzartworker`` on the database.

    ``QUEUES`` are django-zart queues: a task of queue ``emails`` runs on workers serving
    ``emails``. ``OPTIONS`` may hold ``RETRY``, a ``zart.Retry`` for failed attempts (by
    default the first failure is final, as with Django's own backends).
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        unknown = sorted(set(self.options) - OPTIONS)
        if unknown:
            raise ImproperlyConfigured(
                "TASKS[%r]['OPTIONS'] has unknown keys %s; ZartBackend takes %s."
                % (alias, ", ".join(map(repr, unknown)), ", ".join(sorted(OPTIONS)))
            )
        retry = self.options.get("RETRY", Retry.none())
        if not isinstance(retry, Retry):
            raise ImproperlyConfigured(
                "TASKS[%r]['OPTIONS']['RETRY'] must be a django_zart.Retry, not %r."
                % (alias, retry)
            )
        self.step = _step(alias, retry)

    def validate_task(self, task: Task[..., Any]) -> None:
        super().validate_task(task)
        try:
            check_name(task.queue_name, "The queue name", limit=MAX_QUEUE_LENGTH)
        except InvalidArgument as exc:
            raise InvalidTask(str(exc)) from None

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any, Any]:
        """Start the task's execution, in the caller's transaction if there is one.

        Arguments go through JSON and back first, so the task is called with what the
        framework promises (a tuple becomes a list) and a value JSON cannot hold is
        refused here, not when the task runs.
        """
        from .client import start

        self.validate_task(task)
        args = _through_json(normalize_json(list(args)))
        kwargs = _through_json(normalize_json(dict(kwargs)))
        data = {
            "task": task.module_path,
            "args": args,
            "kwargs": kwargs,
            "backend": self.alias,
            "priority": task.priority,
            "run_after": task.run_after,
        }
        by = "tasks:%s" % self.alias
        if task.priority == DEFAULT_TASK_PRIORITY and task.run_after is None:
            execution_id = start(run, data, queue=task.queue_name, by=by)
        else:
            with transaction.atomic():
                execution_id = start(run, data, queue=task.queue_name, by=by)
                _schedule(execution_id, task.priority, task.run_after)
        result: TaskResult[Any, Any] = TaskResult(
            task=task,
            id=execution_id,
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult[Any, Any]:
        return _load(_execution(result_id))

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        messages = list(super().check(**kwargs))
        for queue in sorted(self.queues, key=repr):
            try:
                check_name(queue, "Queue %r" % (queue,), limit=MAX_QUEUE_LENGTH)
            except InvalidArgument as exc:
                messages.append(
                    Error(
                        "TASKS[%r]['QUEUES']: %s" % (self.alias, exc),
                        hint="Queues of ZartBackend are django-zart queues.",
                        id="django_zart.E002",
                    )
                )
        return messages

    def gives_up(self, exc: Exception, attempt: int) -> bool:
        """Whether a failed attempt is the task's last (its step's policy says so)."""
        return not self.step.retries(exc) or attempt > self.step.retry.attempts


# -- the workflow and its step ---------------------------------------------------------


@workflow(TASKS_WORKFLOW)
def run(data: dict[str, Any]) -> Any:
    """Every task's execution: one step, named by the task's path, that calls the task."""
    backend = _backend(data["backend"])
    return backend.step.with_id(str(data["task"])[:MAX_NAME_LENGTH])(data["backend"])


def call(alias: str) -> Any:
    """One attempt at the task of the running execution, as the framework runs one: the
    signals around it, the context if the task takes it, the return value through JSON."""
    backend = _backend(alias)
    info = context()
    result = _load(_execution(info.execution_id), running=info.attempt)
    task = result.task
    task_started.send(type(backend), task_result=result)
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *result.args, **result.kwargs)
        else:
            value = task.call(*result.args, **result.kwargs)
        value = _through_json(normalize_json(value))
    except Exception as exc:
        if backend.gives_up(exc, info.attempt):
            _finish(result, TaskResultStatus.FAILED)
            result.errors.append(_task_error(serialization.describe_exception(exc)))
            # Sent while the exception is handled, as Django's backends do: receivers
            # (Django's own logs it) find it in sys.exc_info().
            task_finished.send(type(backend), task_result=result)
        raise
    _finish(result, TaskResultStatus.SUCCESSFUL, value)
    task_finished.send(type(backend), task_result=result)
    return value


_steps: dict[str, Step] = {}


def _step(alias: str, retry: Retry) -> Step:
    """The step of a backend's tasks. Named after the backend, so the admin finds its
    policy (``attempt 2/4``); made again only when the policy changed."""
    step = _steps.get(alias)
    if step is None or step.retry != retry:
        step = _steps[alias] = Step(call, name="task:%s" % alias, retry=retry)
    return step


def _backend(alias: str) -> ZartBackend:
    backend = task_backends[alias]
    if not isinstance(backend, ZartBackend):
        raise ImproperlyConfigured(
            "Task backend %r is a %s, not a ZartBackend: django-zart does not run its tasks."
            % (alias, type(backend).__name__)
        )
    return backend


# -- results ---------------------------------------------------------------------------


def _load(execution: Execution, *, running: int | None = None) -> TaskResult[Any, Any]:
    """The task result an execution stands for; ``running``: as seen by that attempt."""
    from .models import Step as StepRow

    data = _input(execution)
    step = (
        StepRow.objects.filter(
            execution_id=execution.pk, run_index=execution.run_index, kind=StepKind.STEP
        )
        .values("pk", "status", "attempts", "error")
        .first()
    )
    if running is not None:
        status = TaskResultStatus.RUNNING
        attempts = running
        errors = _errors(execution, step) if running > 1 else []
    else:
        status = STATUSES[ExecutionStatus(execution.status)]
        attempts = _attempts(execution, step)
        errors = _errors(execution, step)
    result: TaskResult[Any, Any] = TaskResult(
        task=_task(data, execution.queue),
        id=execution.pk,
        status=status,
        enqueued_at=execution.created_at,
        started_at=execution.started_at,
        finished_at=execution.finished_at,
        last_attempted_at=timezone.now() if running is not None else execution.started_at,
        args=data["args"],
        kwargs=data["kwargs"],
        backend=data["backend"],
        errors=errors,
        worker_ids=[WORKER] * attempts,
    )
    if execution.status == ExecutionStatus.COMPLETED:
        object.__setattr__(result, "_return_value", serialization.decode(execution.output))
    return result


def _execution(result_id: str) -> Execution:
    from .models import Execution

    try:
        check_name(result_id, "A task result id", limit=255)
    except InvalidArgument:
        raise TaskResultDoesNotExist(result_id) from None
    execution = Execution.objects.filter(pk=result_id, workflow=TASKS_WORKFLOW).first()
    if execution is None:
        raise TaskResultDoesNotExist(result_id)
    return execution


def _input(execution: Execution) -> dict[str, Any]:
    data = serialization.decode(execution.input)
    shape: dict[str, type | tuple[type, ...]] = {
        "task": str,
        "args": list,
        "kwargs": dict,
        "backend": str,
        "priority": int,
        "run_after": (datetime, type(None)),
    }
    if not isinstance(data, dict) or any(
        not isinstance(data.get(key), kind) for key, kind in shape.items()
    ):
        raise TaskResultDoesNotExist(
            "Execution %r of %s does not hold a task: its input is not one enqueue() wrote."
            % (execution.pk, TASKS_WORKFLOW)
        )
    return data


def _task(data: Mapping[str, Any], queue: str) -> Task[Any, Any]:
    """The enqueued task, as it was enqueued (``using()`` included).

    The path must name a ``Task``: whoever may start executions can make this workflow
    run a task, never an arbitrary function.
    """
    found = import_string(data["task"])
    if not isinstance(found, Task):
        raise ImproperlyConfigured("%r is not a task (a @task function)." % data["task"])
    return dataclasses.replace(
        found,
        priority=data["priority"],
        queue_name=queue,
        backend=data["backend"],
        run_after=data["run_after"],
    )


def _attempts(execution: Execution, step: Mapping[str, Any] | None) -> int:
    """Attempts made so far, the one in progress included."""
    made = 0 if step is None else int(step["attempts"])
    running = execution.status == ExecutionStatus.RUNNING
    if running and (step is None or step["status"] == StepStatus.RETRYING):
        made += 1
    return made


def _errors(execution: Execution, step: Mapping[str, Any] | None) -> list[TaskError]:
    """An error per failed attempt, then the execution's own if it failed elsewhere
    (cancelled, timed out, given up after crashes)."""
    from .models import StepAttempt

    errors: list[Any] = []
    if step is not None and (step["attempts"] > 1 or step["status"] == StepStatus.RETRYING):
        errors = list(
            StepAttempt.objects.filter(step_id=step["pk"], status=AttemptStatus.FAILED)
            .order_by("number")
            .values_list("error", flat=True)
        )
    elif step is not None and step["status"] == StepStatus.FAILED:
        errors = [step["error"]]
    failed = execution.status in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)
    if failed and execution.error and (step is None or step["status"] != StepStatus.FAILED):
        errors.append(execution.error)
    return [_task_error(error) for error in errors if isinstance(error, dict)]


def _task_error(error: dict[str, Any]) -> TaskError:
    """The framework's form of a stored error. One without a traceback (a cancellation)
    gets its one-line summary instead."""
    path = str(error.get("type") or "builtins.Exception")
    summary = "%s: %s" % (path, error.get("message", ""))
    return TaskError(exception_class_path=path, traceback=str(error.get("traceback") or summary))


def _finish(result: TaskResult[Any, Any], status: TaskResultStatus, value: Any = None) -> None:
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())
    object.__setattr__(result, "_return_value", value)


# -- enqueueing ------------------------------------------------------------------------


def _through_json(value: Any) -> Any:
    """What a JSON store gives back: dict keys become strings, as the framework warns."""
    return json.loads(json.dumps(value))


def _schedule(execution_id: str, priority: int, run_after: datetime | None) -> None:
    """Give the new execution's task its priority and due time, in its start's transaction.

    Workers claim lower ``priority`` values first and Django runs higher priorities first,
    hence the sign. The task row outlives suspensions (a retry delay), so both hold until
    the execution finishes; the execution stays ``PENDING`` (``READY``) until it is due.
    """
    from .models import Task as TaskRow

    changes: dict[str, Any] = {"priority": -priority}
    if run_after is not None:
        changes["run_after"] = run_after
    TaskRow.objects.filter(execution_id=execution_id, kind=TaskKind.BODY).update(**changes)
