"""Every public exception of django-zart.

::

    ZartError
     ├── InvalidArgument (also a ValueError)
     ├── UnknownWorkflow
     ├── ExecutionAlreadyExists
     ├── ExecutionNotFound
     ├── StepNotFound
     ├── PauseRuleNotFound
     ├── ExecutionFailed
     ├── ExecutionCancelled
     ├── OperationRefused
     │    ├── ExecutionFinished
     │    ├── ExecutionNotFinished
     │    └── StepNotFailed
     ├── WaitTimeout (also a TimeoutError)
     ├── NotInWorkflow
     ├── SerializationError
     │    └── PayloadTooLarge
     ├── StepFailed
     ├── StepTimeout (also a TimeoutError)
     ├── DuplicateStepName
     ├── NonDeterminismError
     ├── EventTimeout (also a TimeoutError)
     ├── ExecutionTimedOut
     ├── WorkerCrashLoop
     └── WorkerIdInUse

Errors carry the ids involved as attributes and say what to do in their message, so a
traceback in a log is enough to act on.
"""

from __future__ import annotations

from typing import Any


class ZartError(Exception):
    """Base class of every error raised by django-zart."""


class InvalidArgument(ZartError, ValueError):
    """An argument cannot be used or stored: an empty or overlong name, a NUL character,
    a duration out of range. The message names the argument and what is wrong."""


class UnknownWorkflow(ZartError):
    """No workflow of this name is registered in this process."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            "No workflow named %r is registered. Define it with @zart.workflow in a "
            "workflows.py module of an installed app, or list its module in "
            'ZART["WORKFLOW_MODULES"].' % (name,)
        )


class ExecutionAlreadyExists(ZartError):
    """An execution with this id exists already; starting it again would run it twice."""

    def __init__(self, execution_id: str, status: str, workflow: str = "") -> None:
        self.execution_id = execution_id
        self.status = status
        self.workflow = workflow
        super().__init__(
            "Execution %r already exists (status %s). Execution ids are idempotency keys: "
            "use zart.status() to read it, or pick another id for a new run."
            % (execution_id, status)
        )


class ExecutionNotFound(ZartError):
    """No execution has this id."""

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__("No execution with id %r exists." % execution_id)


class ExecutionFailed(ZartError):
    """The execution finished with an error; ``error`` holds what was stored."""

    def __init__(self, execution_id: str, error: dict[str, Any] | None) -> None:
        self.execution_id = execution_id
        self.error = error or {}
        super().__init__(
            "Execution %r failed: %s: %s"
            % (execution_id, self.error.get("type", "?"), self.error.get("message", ""))
        )


class ExecutionCancelled(ZartError):
    """The execution was cancelled before it could finish."""

    def __init__(self, execution_id: str, error: dict[str, Any] | None = None) -> None:
        self.execution_id = execution_id
        self.error = error or {}
        super().__init__("Execution %r was cancelled." % execution_id)


class StepNotFound(ZartError):
    """The execution has no step of this name or position to rerun or retry."""

    def __init__(self, execution_id: str, step: str, known: list[str] | None = None) -> None:
        self.execution_id = execution_id
        self.step = step
        hint = ""
        if known:
            shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
            hint = " Its steps: %s." % shown
        super().__init__("Execution %r has no step %r.%s" % (execution_id, step, hint))


class PauseRuleNotFound(ZartError):
    """No pause rule has this id."""

    def __init__(self, rule_id: object) -> None:
        self.rule_id = rule_id
        super().__init__("No pause rule with id %r exists." % (rule_id,))


class OperationRefused(ZartError):
    """The execution's state does not allow the operation; nothing was changed.

    The message says why and what would work instead.
    """


class ExecutionFinished(OperationRefused):
    """The execution has finished: it takes no events and cannot be cancelled."""

    def __init__(self, execution_id: str, status: str, action: str = "take events") -> None:
        self.execution_id = execution_id
        self.status = status
        self.action = action
        super().__init__(
            "Execution %r has finished (status %s); it cannot %s." % (execution_id, status, action)
        )


class ExecutionNotFinished(OperationRefused):
    """A new run (restart, rerun, retry-step) needs a finished execution."""

    def __init__(self, execution_id: str, status: str, action: str) -> None:
        self.execution_id = execution_id
        self.status = status
        self.action = action
        super().__init__(
            "Execution %r is %s; only a finished execution can %s. Cancel it first, or "
            "wait for it to finish." % (execution_id, status, action)
        )


class StepNotFailed(OperationRefused):
    """``retry_step`` asked for a step that did not fail for good."""

    def __init__(self, execution_id: str, step: str, detail: str) -> None:
        self.execution_id = execution_id
        self.step = step
        super().__init__("Cannot retry step %r of execution %r: %s" % (step, execution_id, detail))


class EventTimeout(ZartError, TimeoutError):
    """``wait_for_event`` reached its timeout first; the workflow may catch it and go on."""

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__("No event %r arrived within %ss." % (name, timeout))


class WaitTimeout(ZartError, TimeoutError):
    """The execution did not finish within the time the caller was willing to wait."""

    def __init__(self, execution_id: str, timeout: float, status: str) -> None:
        self.execution_id = execution_id
        self.timeout = timeout
        self.status = status
        super().__init__(
            "Execution %r did not finish within %ss (status %s). It goes on; wait again "
            "or read zart.status()." % (execution_id, timeout, status)
        )


class NotInWorkflow(ZartError):
    """An in-workflow function was called outside of a running workflow."""

    def __init__(self, function: str) -> None:
        self.function = function
        super().__init__("zart.%s() can only be called while a worker runs a workflow." % function)


class SerializationError(ZartError):
    """A value that must be stored is not JSON-serializable (see the README's list)."""

    def __init__(self, what: str, detail: str) -> None:
        self.what = what
        self.detail = detail
        super().__init__("Cannot store %s: %s" % (what, detail))


class PayloadTooLarge(SerializationError):
    """A value is larger than ``ZART["MAX_PAYLOAD_BYTES"]`` once encoded."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            what,
            '%d bytes encoded, more than ZART["MAX_PAYLOAD_BYTES"] = %d. Store large data '
            "elsewhere and pass a reference." % (size, limit),
        )


class StepFailed(ZartError):
    """A step failed on its last allowed attempt; raised inside the workflow.

    ``error`` is the stored failure (type, message, traceback) and ``cause`` the original
    exception, rebuilt from it when its type can be imported. The raised exception is also
    an instance of that type, so ``except PaymentDeclined:`` works, on replay too.
    """

    cause: BaseException | None = None

    def __init__(self, step: str, attempts: int, error: dict[str, Any]) -> None:
        self.step = step
        self.attempts = attempts
        self.error = error
        self.message = "Step %r failed after %d attempt%s: %s: %s" % (
            step,
            attempts,
            "" if attempts == 1 else "s",
            error.get("type", "?"),
            error.get("message", ""),
        )
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class StepTimeout(ZartError, TimeoutError):
    """An attempt of a step ran longer than its ``timeout``; retried like any failure."""

    def __init__(self, step: str, timeout: float) -> None:
        self.step = step
        self.timeout = timeout
        super().__init__("Step %r did not finish within %ss." % (step, timeout))


class DuplicateStepName(ZartError):
    """Two durable calls of one run produced the same explicit name."""

    def __init__(self, execution_id: str, name: str) -> None:
        self.execution_id = execution_id
        self.name = name
        super().__init__(
            "Execution %r reached the explicitly named step %r twice in one run. Explicit "
            "names (templates, with_id) must be unique per run; they are not a cache."
            % (execution_id, name)
        )


class NonDeterminismError(ZartError):
    """A replay reached a recorded position with another durable call than was recorded."""

    def __init__(self, execution_id: str, position: int, recorded: str, reached: str) -> None:
        self.execution_id = execution_id
        self.position = position
        self.recorded = recorded
        self.reached = reached
        super().__init__(
            "Execution %r is not deterministic: at position %d the history records %s but "
            "the code now calls %s. Keep durable calls in the same order, or give changed "
            "steps new names." % (execution_id, position, recorded, reached)
        )


class ExecutionTimedOut(ZartError):
    """The execution ran past the deadline set by its workflow's ``timeout``."""

    def __init__(self, execution_id: str, timeout: float) -> None:
        self.execution_id = execution_id
        self.timeout = timeout
        super().__init__(
            "Execution %r exceeded its workflow timeout of %ss." % (execution_id, timeout)
        )


class WorkerCrashLoop(ZartError):
    """The execution's workers died too many times while running it."""

    def __init__(self, execution_id: str, recoveries: int) -> None:
        self.execution_id = execution_id
        self.recoveries = recoveries
        super().__init__(
            "Execution %r was taken over from a dead worker %d times; it is failed instead "
            'of crash-looping (ZART["MAX_RECOVERIES"]).' % (execution_id, recoveries)
        )


class WorkerIdInUse(ZartError):
    """A live worker already runs under this worker id."""

    def __init__(self, worker_id: str, seconds_ago: float) -> None:
        self.worker_id = worker_id
        super().__init__(
            "Worker id %r is in use by a live worker (last heartbeat %.1fs ago). Pick another "
            "--worker-id, or stop that worker; a dead worker's id is free once its lease ends."
            % (worker_id, seconds_ago)
        )
