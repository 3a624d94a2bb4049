"""Status changes of executions and runs, each guarded by the state machine.

Every write of ``Execution.status`` in the ORM goes through ``transition``: it moves only
executions whose current status allows the target (``states.allowed_from``), in the same
``UPDATE``, and says how many moved, so a caller that expected a move and got none rolls
its transaction back instead of leaving half a change. The PostgreSQL store's statements
pass the same ``allowed_from`` list as a parameter.
"""

from __future__ import annotations

from typing import Any

from django.db.models.functions import Now

from ..models import Execution, Run
from ..states import RunStatus, allowed_from


def transition(
    execution_ids: str | list[str], to: str, *, reopen: bool = False, **changes: Any
) -> int:
    """Move the executions to status ``to`` where allowed; return how many moved.

    ``reopen`` allows the edges out of a final status, for a new run an operator asked for.
    """
    ids = [execution_ids] if isinstance(execution_ids, str) else execution_ids
    sources = allowed_from(to, reopen=reopen)
    return Execution.objects.filter(pk__in=ids, status__in=sources).update(
        status=to, updated_at=Now(), **changes
    )


def end_run(run_id: int, status: str, error: Any = None) -> int:
    """End a run that is still running; a run ends once."""
    return Run.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        status=status, finished_at=Now(), error=error
    )
