"""The list of executions.

``ExecutionListMixin`` is the changelist part of ``ExecutionAdmin``: a status badge, where
each execution is now (``whereabouts.where_now``, once per page), counts by status above
the list, and filters and a search that stay cheap on large tables.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, TextField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from ..models import Execution, Run, Step
from ..names import TASKS_WORKFLOW
from ..states import ExecutionStatus, RunReason, StepStatus
from .display import LeanChangeList, ReadOnlyAdmin
from .whereabouts import where_now

STATUS_PARAMETER = "status__exact"
RESULT_COUNT_ATTRIBUTE = "_zart_result_count"


class ExecutionChangeList(LeanChangeList):
    """Computes the "where it is now" phrases and the counts by status once per page."""

    status_counts: list[dict[str, Any]]

    def get_results(self, request: HttpRequest) -> None:
        counts = self._counts(request)
        chosen = self.params.get(STATUS_PARAMETER)
        # The counts by status tell the paginator how many rows match: no COUNT(*) of its own.
        if not any(key.startswith("status") and key != STATUS_PARAMETER for key in self.params):
            total = counts.get(chosen, 0) if chosen is not None else sum(counts.values())
            setattr(request, RESULT_COUNT_ATTRIBUTE, total)
        super().get_results(request)
        phrases = where_now(list(self.result_list))
        tasks = task_paths(list(self.result_list))
        for execution in self.result_list:
            execution.where_now = phrases.get(execution.pk, "")
            execution.task_path = tasks.get(execution.pk)
        self.status_counts = self._status_links(counts, chosen)

    def _counts(self, request: HttpRequest) -> dict[str, int]:
        """Executions by status under every filter but the status one: a grouped query."""
        unfiltered = self.get_queryset(request, exclude_parameters=[STATUS_PARAMETER])
        rows = unfiltered.order_by().values_list("status").annotate(count=Count("pk"))
        return dict(rows.order_by())

    def _status_links(self, counts: dict[str, int], chosen: str | None) -> list[dict[str, Any]]:
        """Each status with its count, and a link that filters the list by it."""
        return [
            {
                "status": status,
                "label": label,
                "count": counts.get(status, 0),
                "url": self.get_query_string({STATUS_PARAMETER: status}, ["p"]),
                "selected": chosen == status,
            }
            for status, label in ExecutionStatus.choices
        ]


def task_paths(executions: list[Execution]) -> dict[str, str]:
    """The task each execution of Django's Tasks framework runs (``django_zart.tasks``),
    by execution id: one query for the page, none for a page without tasks. The input
    itself stays deferred; only the path is read out of it."""
    ids = [e.pk for e in executions if e.workflow == TASKS_WORKFLOW]
    if not ids:
        return {}
    rows = (
        Execution.objects.filter(pk__in=ids)
        .annotate(task_path=KT("input__task"))
        .values_list("pk", "task_path")
    )
    return {pk: path for pk, path in rows if isinstance(path, str)}


class FailedStepsFilter(admin.SimpleListFilter):
    title = _("failed steps")
    parameter_name = "failed_steps"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Has a failed step")), ("no", _("No failed step"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        failed = Exists(Step.objects.filter(execution_id=OuterRef("pk"), status=StepStatus.FAILED))
        if self.value() == "yes":
            return queryset.filter(failed)
        if self.value() == "no":
            return queryset.filter(~failed)
        return queryset


class TriggerFilter(admin.SimpleListFilter):
    """Why the current run started: the first start, a schedule, a retry, a restart..."""

    title = _("trigger (current run)")
    parameter_name = "trigger"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return list(RunReason.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() not in RunReason.values:
            return queryset
        current = Run.objects.filter(
            execution_id=OuterRef("pk"), index=OuterRef("run_index"), reason=self.value()
        )
        return queryset.filter(Exists(current))


def duration_text(delta: timedelta) -> str:
    """A duration to read at a glance: 850 ms, 12.5 s, 4 min 10 s, 3 h 5 min, 2 d 4 h."""
    seconds = delta.total_seconds()
    if seconds < 1:
        return "%d ms" % max(0, round(seconds * 1000))
    if seconds < 60:
        return "%.1f s" % seconds
    whole = int(seconds)
    if whole < 3600:
        return "%d min %d s" % divmod(whole, 60)
    if whole < 86400:
        return "%d h %d min" % (whole // 3600, whole % 3600 // 60)
    return "%d d %d h" % (whole // 86400, whole % 86400 // 3600)


class ExecutionListMixin(ReadOnlyAdmin):
    list_display = (
        "id",
        "workflow_label",
        "status_badge",
        "where",
        "run_count",
        "created_at",
        "duration",
    )
    list_filter = ("status", "workflow", "queue", FailedStepsFilter, TriggerFilter)
    list_defer = ("input", "output", "error")
    search_fields = ("=id",)
    search_help_text = _("An execution id, a workflow name, or text in the input or output.")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ExecutionChangeList

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator[Any]:
        paginator = super().get_paginator(
            request, queryset, per_page, orphans, allow_empty_first_page
        )
        known = getattr(request, RESULT_COUNT_ATTRIBUTE, None)
        if known is not None:
            paginator.__dict__["count"] = known  # ``count`` is a cached property
        return paginator

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """Executions by id (whole or part), workflow name, or text in the input or output.

        A term that is an execution's whole id finds that execution alone, through the
        primary key: the text search reads every row, an id lookup one.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        by_id = queryset.filter(pk=term)
        if by_id.exists():
            return by_id, False
        found = queryset.annotate(
            input_text=Cast("input", TextField()), output_text=Cast("output", TextField())
        ).filter(
            Q(pk=term)
            | Q(pk__contains=term)
            | Q(workflow__icontains=term)
            | Q(input_text__icontains=term)
            | Q(output_text__icontains=term)
        )
        return found, False

    @admin.display(description=_("workflow"), ordering="workflow")
    def workflow_label(self, obj: Execution) -> str:
        """The workflow, or for a task of Django's Tasks framework the task it runs."""
        path = getattr(obj, "task_path", None)
        if path is None:
            return obj.workflow
        return format_html('{} <span class="quiet">({})</span>', path, _("task"))

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Execution) -> str:
        return format_html(
            '<span class="zart-badge zart-badge-{}">{}</span>',
            obj.status.lower(),
            obj.get_status_display(),
        )

    @admin.display(description=_("where it is now"))
    def where(self, obj: Execution) -> str:
        return getattr(obj, "where_now", "")

    # Not ``runs``: the changelist would sort that column by the reverse relation of that
    # name, a join that lists an execution once per run.
    @admin.display(description=_("runs"), ordering="run_index")
    def run_count(self, obj: Execution) -> int:
        return obj.run_index

    @admin.display(description=_("duration"))
    def duration(self, obj: Execution) -> str:
        if obj.started_at is None:
            return self.get_empty_value_display()
        if obj.finished_at is not None:
            return duration_text(obj.finished_at - obj.started_at)
        return _("%(duration)s so far") % {
            "duration": duration_text(timezone.now() - obj.started_at)
        }
