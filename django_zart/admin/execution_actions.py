"""What staff can do to executions from the admin: every action calls the Python API.

``ExecutionActionsMixin`` is the actions part of ``ExecutionAdmin``.
"""

from __future__ import annotations

from .display import ReadOnlyAdmin


class ExecutionActionsMixin(ReadOnlyAdmin):
    pass
