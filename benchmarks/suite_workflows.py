"""The workflows of ``suite.py`` (with ``add-one`` of ``workflows.py`` as their step)."""

from __future__ import annotations

from typing import Any

import django_zart as zart
from benchmarks.workflows import add_one


@zart.workflow("bench-chain")
def chain(data: dict[str, Any]) -> int:
    """``n`` sequential steps (W1 with n=3, W3 with n=200)."""
    value = data["i"]
    for _ in range(data["n"]):
        value = add_one(value)
    return value


@zart.workflow("bench-fanout")
def fanout(data: dict[str, Any]) -> int:
    """``n`` parallel branches of ``add-one``, gathered (W4)."""
    return sum(zart.map(add_one, range(data["n"])))


@zart.workflow("bench-nap")
def nap(data: Any) -> None:
    """Sleeps an hour (W5: what a worker spends on sleeping executions)."""
    zart.sleep("nap", 3600)
