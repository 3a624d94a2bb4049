"""Named fault points: places where a test makes a worker die as if it were SIGKILLed.

The crash-safety promises are about what happens between two writes: a step's side
effect done but its checkpoint not committed, a checkpoint committed but the next claim
not taken. ``ZART["FAULT_POINTS"]`` (for tests only, empty by default) names the points
at which a worker kills itself with SIGKILL, so a test can put the crash exactly there
for every kind of durable call, instead of hoping a timed kill lands in the window.

Point names are ``before-checkpoint:<kind>``, ``after-checkpoint:<kind>`` (kinds:
``step``, ``sleep``, ``event``, ``branch``, ``child``, ``group``) and ``after-finish``
(``conf.FAULT_POINTS``).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from .conf import get_settings


def point(name: str) -> None:
    """Die here, at once and without cleanup, if the settings name this point."""
    if name in get_settings().fault_points:
        os.kill(os.getpid(), signal.SIGKILL)


def around_checkpoint(kind: str) -> AbstractContextManager[None]:
    """The fault points on either side of writing one checkpoint of ``kind``."""
    if not get_settings().fault_points:
        return _NONE  # the production path: no generator, no lookups
    return _around(kind.lower())


_NONE: AbstractContextManager[None] = nullcontext()


@contextmanager
def _around(kind: str) -> Iterator[None]:
    point("before-checkpoint:%s" % kind)
    yield
    point("after-checkpoint:%s" % kind)
