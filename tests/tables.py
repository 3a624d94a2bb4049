"""Every zart table's rows at a moment: a refused operation must leave them as they were."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django_zart.models import (
    Event,
    Execution,
    PauseRule,
    Run,
    Schedule,
    Step,
    StepAttempt,
    Task,
    Worker,
)

TABLES = (Execution, Run, Step, StepAttempt, Task, Event, Schedule, Worker, PauseRule)


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    return {
        model.__name__: sorted(tuple(str(v) for v in row) for row in model.objects.values_list())
        for model in TABLES
    }


@contextmanager
def unchanged_tables() -> Iterator[None]:
    """Whatever the block does, every zart table holds exactly what it held before."""
    before = snapshot()
    yield
    assert snapshot() == before
