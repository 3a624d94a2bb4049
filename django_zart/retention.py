"""Deleting finished executions, with their runs, steps, attempts and events.

In batches of a few hundred executions, one short transaction each, so that a prune of
millions of rows never holds a lock for long or one huge transaction; the batches are
claimed ``SKIP LOCKED``, so workers pruning at once share the work instead of waiting
on each other. Rows are deleted table by table with one statement each, children
first: no row is loaded into Python.

``ZART["RETENTION"]`` (final status to age, e.g. ``{"COMPLETED": "30d"}``) is applied
by the workers about once a minute; ``manage.py zart prune`` applies it, or an age
given on the command line, at once.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q, QuerySet

from .conf import get_settings
from .db import get_store
from .durations import Duration, to_seconds
from .errors import InvalidArgument
from .models import Event, Execution, Run, Step, StepAttempt, Task
from .states import TERMINAL

logger = logging.getLogger(__name__)

BATCH_SIZE = 500


def prune(
    *,
    older_than: Duration | None = None,
    statuses: list[str] | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    max_batches: int | None = None,
) -> int:
    """Delete finished executions that finished longer ago than their retention.

    ``older_than`` applies one age to ``statuses`` (default: every final status);
    without it, ``ZART["RETENTION"]`` gives the age per status and statuses it does not
    name are kept. Returns how many executions were deleted (``dry_run``: would be).
    """
    condition = _condition(older_than, statuses)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgument("batch_size must be a positive integer, not %r." % (batch_size,))
    if condition is None:
        return 0
    finished = Execution.objects.filter(condition)
    if dry_run:
        return finished.count()
    deleted = batches = 0
    while max_batches is None or batches < max_batches:
        count = _delete_batch(finished, batch_size)
        if not count:
            break
        deleted += count
        batches += 1
    if deleted:
        logger.info("Deleted %d finished execution(s) past their retention", deleted)
    return deleted


def prune_due() -> int:
    """A worker's periodic pass: a few batches of ``ZART["RETENTION"]``, if it is set."""
    if not get_settings().retention:
        return 0
    return prune(max_batches=4)


def _condition(older_than: Duration | None, statuses: list[str] | None) -> Q | None:
    chosen = sorted(TERMINAL) if statuses is None else list(statuses)
    unknown = [status for status in chosen if status not in TERMINAL]
    if unknown or not chosen:
        raise InvalidArgument(
            "Only finished executions are pruned: statuses must be among %s, not %r."
            % (", ".join(sorted(TERMINAL)), statuses)
        )
    now = get_store().now()
    if older_than is not None:
        seconds = to_seconds(older_than)
        return Q(status__in=chosen, finished_at__lt=now - timedelta(seconds=seconds))
    retention = get_settings().retention
    if not retention and statuses is None:
        raise InvalidArgument(
            'Give an age (older_than, --older-than), or set ZART["RETENTION"], e.g. '
            '{"COMPLETED": "30d"}.'
        )
    condition = Q(pk__in=[])
    kept = False
    for status in chosen:
        if status in retention:
            cutoff = now - timedelta(seconds=retention[status])
            condition |= Q(status=status, finished_at__lt=cutoff)
            kept = True
    return condition if kept else None


def _delete_batch(finished: QuerySet[Execution], batch_size: int) -> int:
    with transaction.atomic():
        ids = list(
            finished.order_by("finished_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return 0
        steps = Step.objects.filter(execution_id__in=ids).values("pk")
        _delete(StepAttempt.objects.filter(step_id__in=steps))
        _delete(Event.objects.filter(execution_id__in=ids))
        _delete(Task.objects.filter(execution_id__in=ids))
        _delete(Step.objects.filter(execution_id__in=ids))
        _delete(Run.objects.filter(execution_id__in=ids))
        Execution.objects.filter(parent_id__in=ids).update(parent=None)
        _delete(Execution.objects.filter(pk__in=ids))
    return len(ids)


def _delete(rows: QuerySet[Any]) -> None:
    """One DELETE statement, without loading the rows (no signals, no cascade walk)."""
    rows._raw_delete(connection.alias)
