"""Registered workflows, looked up by name by the client and the worker alike."""

from __future__ import annotations

import asyncio
import functools
import importlib
from collections.abc import Callable
from typing import Any

from django.utils.module_loading import autodiscover_modules

from .clashes import Clashes, origin
from .errors import InvalidArgument, UnknownWorkflow
from .names import MAX_QUEUE_LENGTH, check_name, check_priority


class Workflow:
    """A registered workflow; calling it outside a worker calls the plain function."""

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        name: str,
        timeout: float | None,
        max_retries: int,
        queue: str,
        on_failure: Callable[[Any, dict[str, Any]], Any] | None = None,
        priority: int = 0,
        concurrency: int | None = None,
        concurrency_key: Callable[[Any], Any] | None = None,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise InvalidArgument("max_retries must be an int, not %r." % (max_retries,))
        if not 0 <= max_retries <= 1000:
            raise InvalidArgument("max_retries must be from 0 to 1000, not %d." % max_retries)
        self.fn = fn
        self.name = check_name(name, "A workflow name")
        self.timeout = timeout
        self.max_retries = max_retries
        self.queue = check_name(queue, "The queue of workflow %r" % name, limit=MAX_QUEUE_LENGTH)
        self.on_failure = on_failure
        self.priority = check_priority(priority, "The priority of workflow %r" % name)
        if concurrency is not None and (
            isinstance(concurrency, bool)
            or not isinstance(concurrency, int)
            or not 1 <= concurrency <= 1_000_000
        ):
            raise InvalidArgument(
                "The concurrency of workflow %r must be an int from 1 to 1,000,000, not %r."
                % (name, concurrency)
            )
        if concurrency_key is not None and (concurrency is None or not callable(concurrency_key)):
            raise InvalidArgument(
                "The concurrency_key of workflow %r must be a function of the input, with "
                "concurrency=N the limit per key." % name
            )
        self.concurrency = concurrency
        self.concurrency_key = concurrency_key
        self.is_async = asyncio.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, input: Any = None) -> Any:
        return self.fn(input)

    def __repr__(self) -> str:
        return "<Workflow %s>" % self.name


_workflows: dict[str, Workflow] = {}
clashes = Clashes("workflow")
"""Workflow names registered by several functions (see ``django_zart.clashes``)."""


def register(workflow: Workflow) -> bool:
    """Register ``workflow`` under its name; False if another function holds the name.

    The same function registered again (its module imported again) replaces itself.
    """
    existing = _workflows.get(workflow.name)
    if existing is not None and origin(existing.fn) != origin(workflow.fn):
        clashes.add(workflow.name, origin(existing.fn), origin(workflow.fn))
        return False
    _workflows[workflow.name] = workflow
    return True


def get_workflow(name: str | Workflow) -> Workflow:
    """The workflow of this name; ``ZartError`` if two functions claim it."""
    if isinstance(name, Workflow):
        clashes.refuse(name.name)
        return name
    try:
        workflow = _workflows[name]
    except (KeyError, TypeError):  # TypeError: an unhashable "name"
        raise UnknownWorkflow(name) from None
    clashes.refuse(name)
    return workflow


def workflow_names() -> list[str]:
    """The names of the workflows registered in this process, sorted."""
    return sorted(_workflows)


def autodiscover(extra_modules: tuple[str, ...] = ()) -> None:
    """Import ``workflows`` of every installed app, then the configured extra modules."""
    autodiscover_modules("workflows")
    for module in extra_modules:
        importlib.import_module(module)


def limited_workflows() -> list[Workflow]:
    """The workflows of this process with a concurrency limit."""
    return [workflow for workflow in _workflows.values() if workflow.concurrency is not None]


def has_limits() -> bool:
    """Whether a workflow of this process has a concurrency limit."""
    return bool(limited_workflows())
