"""Workflow and step names claimed by two functions.

A name is what executions and checkpoints store, so one name for two functions would
have whichever registered first run in place of the other. Raising at import would stop
Django before the system checks could say so, after the first clash and with a
traceback; instead the first function keeps the name, the clash is remembered, the checks
report every one (``django_zart.E004``, ``E005``), a worker refuses to start, and looking
the name up raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .errors import ZartError


def origin(fn: Callable[..., Any]) -> str:
    """The dotted path of a function, which names it in a clash."""
    return "%s.%s" % (fn.__module__, fn.__qualname__)


class Clashes:
    """The names of one registry (``kind``: "workflow" or "step") used by several functions."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._origins: dict[str, list[str]] = {}

    def add(self, name: str, holder: str, other: str) -> None:
        """Remember that ``other`` asked for ``name``, which ``holder`` has."""
        origins = self._origins.setdefault(name, [holder])
        if other not in origins:
            origins.append(other)

    def __bool__(self) -> bool:
        return bool(self._origins)

    def __iter__(self) -> Iterator[tuple[str, tuple[str, ...]]]:
        """The clashing names, sorted, each with its functions in registration order."""
        return iter(sorted((name, tuple(paths)) for name, paths in self._origins.items()))

    def message(self, name: str) -> str:
        paths = self._origins[name]
        return "%s name %r is used by %s and %s; %s names must be unique." % (
            self.kind.capitalize(),
            name,
            ", ".join(paths[:-1]),
            paths[-1],
            self.kind,
        )

    def refuse(self, name: str) -> None:
        """Raise ``ZartError`` if ``name`` belongs to more than one function."""
        if name in self._origins:
            raise ZartError(self.message(name))

    def refuse_any(self) -> None:
        """Raise ``ZartError`` for the first clash, if there is one."""
        for name, _paths in self:
            raise ZartError(self.message(name))
