"""Factories for the tables of django-zart.

They write rows directly, the way the engine leaves them, so tests of the admin, the
queries and the commands can set up any state without running a workflow. Tests of
behaviour should start workflows through the client instead.

Rows of one execution hang together through its run: build the run first and hand it to
the steps, e.g. ``run = RunFactory(execution=execution)`` then
``StepFactory.create_batch(3, run=run)``; each step takes its execution and run index
from the run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import factory
from django.utils import timezone

from django_zart.models import Event, Execution, PauseRule, Run, Step, StepAttempt, Task, Worker
from django_zart.states import (
    AttemptStatus,
    ExecutionStatus,
    RunStatus,
    StepKind,
    StepStatus,
    TaskKind,
)


def error_dict(
    message: str = "card declined", exc_type: str = "builtins.ValueError"
) -> dict[str, Any]:
    """An error in the stored shape of ``serialization.describe_exception``."""
    name = exc_type.rsplit(".", 1)[-1]
    return {
        "type": exc_type,
        "message": message,
        "traceback": (
            "Traceback (most recent call last):\n"
            '  File "/app/workflows.py", line 12, in charge\n'
            f"    raise {name}({message!r})\n"
            f"{name}: {message}\n"
        ),
    }


class ExecutionFactory(factory.django.DjangoModelFactory):
    """A pending execution; ``completed=True`` or ``failed=True`` for finished ones."""

    class Meta:
        model = Execution

    class Params:
        completed = factory.Trait(
            status=ExecutionStatus.COMPLETED,
            output={"ok": True},
            started_at=factory.LazyFunction(timezone.now),
            finished_at=factory.LazyFunction(timezone.now),
        )
        failed = factory.Trait(
            status=ExecutionStatus.FAILED,
            error=factory.LazyFunction(error_dict),
            started_at=factory.LazyFunction(timezone.now),
            finished_at=factory.LazyFunction(timezone.now),
        )

    id = factory.Sequence(lambda n: f"execution-{n}")
    workflow = "onboarding"
    queue = "default"
    status = ExecutionStatus.PENDING
    input = factory.Sequence(lambda n: {"email": f"user-{n}@example.com"})


class RunFactory(factory.django.DjangoModelFactory):
    """The execution's current run (``index`` follows ``execution.run_index``)."""

    class Meta:
        model = Run

    execution = factory.SubFactory(ExecutionFactory)
    index = factory.SelfAttribute("execution.run_index")
    status = RunStatus.RUNNING


class StepFactory(factory.django.DjangoModelFactory):
    """A completed step of ``run``; its execution and run index come from the run."""

    class Meta:
        model = Step

    run = factory.SubFactory(RunFactory)
    execution = factory.SelfAttribute("run.execution")
    run_index = factory.SelfAttribute("run.index")
    sequence = factory.Sequence(lambda n: n + 1)
    name = factory.Sequence(lambda n: f"step-{n}")
    position = factory.SelfAttribute("name")
    kind = StepKind.STEP
    status = StepStatus.COMPLETED
    result = factory.Sequence(lambda n: {"value": n})
    created_at = factory.LazyFunction(timezone.now)
    updated_at = factory.SelfAttribute("created_at")


class StepAttemptFactory(factory.django.DjangoModelFactory):
    """A failed attempt, numbered after the step's existing attempts."""

    class Meta:
        model = StepAttempt

    step = factory.SubFactory(StepFactory)
    number = factory.LazyAttribute(lambda o: o.step.attempt_set.count() + 1)
    status = AttemptStatus.FAILED
    error = factory.LazyFunction(error_dict)
    finished_at = factory.LazyFunction(timezone.now)


class TaskFactory(factory.django.DjangoModelFactory):
    """An unclaimed body task, due now, on its execution's queue."""

    class Meta:
        model = Task

    execution = factory.SubFactory(ExecutionFactory)
    kind = TaskKind.BODY
    queue = factory.SelfAttribute("execution.queue")


class EventFactory(factory.django.DjangoModelFactory):
    """An event sent to an execution, not yet consumed."""

    class Meta:
        model = Event

    execution = factory.SubFactory(ExecutionFactory)
    name = "approved"
    payload = factory.LazyFunction(lambda: {"by": "dana"})


class WorkerFactory(factory.django.DjangoModelFactory):
    """A live worker; ``dead_for=timedelta(...)`` for one that stopped heartbeating."""

    class Meta:
        model = Worker

    class Params:
        dead_for = None

    id = factory.Sequence(lambda n: f"worker-{n}")
    hostname = "localhost"
    pid = factory.Sequence(lambda n: 10_000 + n)
    queues = factory.LazyFunction(lambda: ["default"])
    concurrency = 4
    heartbeat_at = factory.LazyAttribute(lambda o: timezone.now() - (o.dead_for or timedelta()))
    expires_at = factory.LazyAttribute(lambda o: o.heartbeat_at + timedelta(seconds=30))


class PauseRuleFactory(factory.django.DjangoModelFactory):
    """An active pause rule on one workflow."""

    class Meta:
        model = PauseRule

    workflow = "onboarding"
    reason = "card processor outage"
    created_by = "admin:dana"
