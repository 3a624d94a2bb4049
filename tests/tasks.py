"""Tasks of Django's Tasks framework, for tests/test_tasks_backend.py.

Most are the examples of Django's documentation of the framework. The framework is
``django.tasks`` on Django 6 and the ``django_tasks`` backport before.
"""

import importlib
import os
import time
from typing import Any

import django
from django.core.mail import send_mail

from tests.models import SideEffect

FRAMEWORK = "django.tasks" if django.VERSION >= (6,) else "django_tasks"
framework = importlib.import_module(FRAMEWORK)
exceptions = importlib.import_module(FRAMEWORK + ".exceptions")
task = framework.task
# The backport named it InvalidTaskError before it took Django's name.
InvalidTask = getattr(exceptions, "InvalidTask", None) or exceptions.InvalidTaskError
TaskResultDoesNotExist = exceptions.TaskResultDoesNotExist
TaskResultMismatch = exceptions.TaskResultMismatch


@task
def email_users(emails: list[str], subject: str, message: str) -> int:
    return send_mail(subject=subject, message=message, from_email=None, recipient_list=emails)


@task(priority=2, queue_name="emails")
def email_users_later(emails: list[str], subject: str, message: str) -> int:
    return send_mail(subject=subject, message=message, from_email=None, recipient_list=emails)


@task(takes_context=True)
def email_users_with_context(context: Any, emails: list[str], subject: str, message: str) -> dict:
    sent = send_mail(subject=subject, message=message, from_email=None, recipient_list=emails)
    return {"sent": sent, "attempt": context.attempt, "id": context.task_result.id}


@task
def calculate_meaning_of_life() -> int:
    return 42


@task
def double_dictionary(key: Any) -> dict:
    return {key: key * 2}


@task
def divide(a: int, b: int) -> float:
    return a / b


@task
async def add(a: int, b: int) -> int:
    return a + b


@task
async def arecord(label: str) -> int:
    """An async task using the async ORM, on the worker thread's connection."""
    row = await SideEffect.objects.acreate(execution_id="tasks", step=label)
    return row.pk


@task
def record(label: str) -> str:
    """Leaves a row per run: the rows' order is the order the tasks ran in."""
    SideEffect.objects.create(execution_id="tasks", step=label)
    return label


@task(backend="retrying", takes_context=True)
def attempts_seen(context: Any, failures: int) -> list[int]:
    """Fails its first ``failures`` attempts; returns the attempt numbers it was given."""
    SideEffect.objects.create(execution_id=context.task_result.id, step=str(context.attempt))
    if context.attempt <= failures:
        raise ConnectionError("attempt %d failed" % context.attempt)
    seen = SideEffect.objects.filter(execution_id=context.task_result.id).order_by("pk")
    return [int(row.step) for row in seen]


@task
def hang_the_first_time(label: str) -> int:
    """Hangs its first run, so that a test can kill that run's worker; returns its pid."""
    SideEffect.objects.create(execution_id="tasks", step=label, pid=os.getpid())
    if SideEffect.objects.filter(step=label).count() == 1:
        time.sleep(60)
    return os.getpid()


def not_a_task() -> None:
    """A plain function: the tasks' workflow must refuse to call it."""
    SideEffect.objects.create(execution_id="tasks", step="not-a-task")
