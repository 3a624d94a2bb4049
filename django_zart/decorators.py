"""``@zart.workflow`` and ``@zart.step``: usable bare or with arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, overload

from .durations import Duration, to_seconds
from .recurrence import Declaration, declared
from .registry import Workflow, register
from .retry import Retry
from .steps import Step


def _default_name(fn: Callable[..., Any]) -> str:
    return "%s.%s" % (fn.__module__, fn.__qualname__)


@overload
def workflow(name: Callable[..., Any], /) -> Workflow: ...
@overload
def workflow(
    name: str | None = None,
    /,
    *,
    timeout: Duration | None = None,
    max_retries: int = 0,
    queue: str = "default",
    on_failure: Callable[[Any, dict[str, Any]], Any] | None = None,
    schedule: str | None = None,
    every: Duration | None = None,
    schedule_options: dict[str, Any] | None = None,
    priority: int = 0,
    concurrency: int | None = None,
    concurrency_key: Callable[[Any], Any] | None = None,
) -> Callable[[Callable[..., Any]], Workflow]: ...


def workflow(
    name: str | Callable[..., Any] | None = None,
    /,
    *,
    timeout: Duration | None = None,
    max_retries: int = 0,
    queue: str = "default",
    on_failure: Callable[[Any, dict[str, Any]], Any] | None = None,
    schedule: str | None = None,
    every: Duration | None = None,
    schedule_options: dict[str, Any] | None = None,
    priority: int = 0,
    concurrency: int | None = None,
    concurrency_key: Callable[[Any], Any] | None = None,
) -> Workflow | Callable[[Callable[..., Any]], Workflow]:
    """Register a function taking one input as a durable workflow.

    ``name`` defaults to the function's dotted path; it is what ``zart.start`` takes and
    what is stored, so keep it stable once executions exist. ``timeout`` fails an
    execution still unfinished that long after its start; ``max_retries`` reruns the body
    after it raised (completed steps stay done). ``on_failure(input, error)`` runs once
    when the execution fails for good (retries exhausted, timeout, non-determinism); it is
    durable like a workflow body (its steps are checkpointed), and the execution ends
    ``FAILED`` with the original error once it returns.

    ``schedule`` (cron, e.g. ``"*/5 * * * *"``) or ``every`` (e.g. ``"10m"``) makes it
    recurring; ``schedule_options`` passes ``timezone``, ``input``, ``overlap``,
    ``catch_up`` and ``execution_id`` as for ``zart.schedule_recurring``. An invalid cron
    is refused here, at import.

    ``priority`` (from -1,000,000 to 1,000,000, default 0) orders the claims of due work
    within a queue: higher first; ``zart.start(..., priority=...)`` overrides it per
    execution, and an execution's parallel branches share it.

    ``concurrency=N`` runs at most N executions of the workflow at once, across all
    workers; with ``concurrency_key`` (a function of the input, e.g. ``lambda data:
    data["user_id"]``) at most N per key. The others wait, without polling, and start as
    soon as a slot frees. Sleeping and waiting executions hold no slot.
    """
    seconds = None if timeout is None else to_seconds(timeout)

    def decorate(fn: Callable[..., Any]) -> Workflow:
        wf = Workflow(
            fn,
            name=name if isinstance(name, str) else _default_name(fn),
            timeout=seconds,
            max_retries=max_retries,
            queue=queue,
            on_failure=on_failure,
            priority=priority,
            concurrency=concurrency,
            concurrency_key=concurrency_key,
        )
        declaration = None
        if schedule is not None or every is not None:
            # Checked before registering: an invalid schedule leaves nothing behind.
            declaration = Declaration.of(
                wf.name, wf.name, cron=schedule, every=every, **(schedule_options or {})
            )
        # A clashing function declares no schedule: the name's holder would run on it.
        if register(wf) and declaration is not None:
            declared[wf.name] = declaration
        return wf

    if callable(name):
        return decorate(name)
    return decorate


@overload
def step(name: Callable[..., Any], /) -> Step: ...
@overload
def step(
    name: str | None = None,
    /,
    *,
    retry: Retry | None = None,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    give_up_on: tuple[type[BaseException], ...] = (),
    timeout: Duration | None = None,
    atomic: bool = False,
) -> Callable[[Callable[..., Any]], Step]: ...


def step(
    name: str | Callable[..., Any] | None = None,
    /,
    *,
    retry: Retry | None = None,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    give_up_on: tuple[type[BaseException], ...] = (),
    timeout: Duration | None = None,
    atomic: bool = False,
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Make a function a checkpointed step: inside a workflow, it runs once per position.

    ``name`` may be a template over the arguments (``"process-report-{index}"``) for a
    stable, unique-per-run name. ``retry`` (a ``zart.Retry``) says how failed attempts are
    retried; only exceptions in ``retry_on`` and not in ``give_up_on`` are retried, others
    fail the step at once. ``timeout`` fails an attempt that runs longer with
    ``zart.StepTimeout`` (async steps are cancelled; a sync step's thread goes on, and its
    late result is discarded).

    ``atomic=True`` runs the step's body in ``transaction.atomic()`` together with the
    write of its checkpoint: its database writes (on the default database) commit if and
    only if the checkpoint does, so they happen exactly once, even when the worker dies
    in the middle. What leaves the database (an HTTP call, an email) is not covered.
    """
    seconds = None if timeout is None else to_seconds(timeout)
    retry_on = tuple(retry_on)
    give_up_on = tuple(give_up_on)

    def decorate(fn: Callable[..., Any]) -> Step:
        return Step(
            fn,
            name=name if isinstance(name, str) else _default_name(fn),
            retry=retry,
            retry_on=retry_on,
            give_up_on=give_up_on,
            timeout=seconds,
            atomic=atomic,
        )

    if callable(name):
        return decorate(name)
    return decorate
