"""Step failures as the workflow sees them: ``StepFailed`` that is also its cause's type.

A failure is stored as JSON (type, message, traceback) and must behave the same whether
the step just failed or the failure is replayed: so both paths build the exception raised
into the workflow from the stored form.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

from .errors import StepFailed


def rebuild_cause(error: dict[str, Any]) -> BaseException | None:
    """The original exception, when its type imports and takes a message."""
    cls = _import_type(error.get("type", ""))
    if cls is None:
        return None
    message = error.get("message", "")
    with contextlib.suppress(Exception):  # a constructor that refuses a lone message
        return cls(message)
    try:  # a constructor wanting other arguments: the instance, without its __init__
        cause = cls.__new__(cls)
        cause.args = (message,)
        return cause
    except Exception:
        return None


def step_failed(step: str, attempts: int, error: dict[str, Any]) -> StepFailed:
    cause = rebuild_cause(error)
    cls = _combined(type(cause)) if cause is not None else StepFailed
    try:
        failure = cls(step, attempts, error)
    except Exception:
        failure = StepFailed(step, attempts, error)
    failure.cause = cause
    return failure


def _import_type(path: str) -> type[BaseException] | None:
    module_name, _, qualname = path.rpartition(".")
    if not module_name:
        return None
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception:
        # A qualname with dots (Outer.Inner) makes the module part too long: walk up.
        module_name, _, first = module_name.rpartition(".")
        if not module_name:
            return None
        try:
            obj = importlib.import_module(module_name)
        except Exception:
            return None
        qualname = first + "." + qualname
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return obj
    return None


_combined_types: dict[type[BaseException], type[StepFailed]] = {}


def _combined(cause: type[BaseException]) -> type[StepFailed]:
    """A ``StepFailed`` subclass that is also ``cause``, or ``StepFailed`` if they clash."""
    cls = _combined_types.get(cause)
    if cls is not None:
        return cls
    cls = StepFailed
    if not issubclass(cause, StepFailed) and issubclass(cause, Exception):
        try:
            cls = type("StepFailed", (StepFailed, cause), {"__module__": StepFailed.__module__})
            cls.__qualname__ = StepFailed.__qualname__
        except TypeError:  # incompatible instance layouts (e.g. OSError subclasses)
            cls = StepFailed
    _combined_types[cause] = cls
    return cls
