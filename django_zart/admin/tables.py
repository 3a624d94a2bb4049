"""The admin of the other tables: steps, the work queue, workers, events, pause rules and
schedules. Read-only: state changes belong to the engine and the Python API."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.db.models.functions import Now
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from ..models import Event, PauseRule, Schedule, Step, Task, Worker
from .display import PAGE_LIMIT, ReadOnlyAdmin, execution_column, shown
from .execution_page import StepAttemptInline


@admin.register(Step)
class StepAdmin(ReadOnlyAdmin):
    list_display = (
        "__str__",
        "execution_html",
        "run_index",
        "sequence",
        "position",
        "kind",
        "status",
        "attempts",
        "wake_at",
        "updated_at",
    )
    list_filter = ("status", "kind")
    list_defer = ("result", "error")
    search_fields = ("=execution__id", "position", "name")
    ordering = ("-pk",)
    fieldsets = (
        (None, {"fields": ("execution", "run", "run_index", "sequence", "position", "name")}),
        (_("State"), {"fields": ("kind", "status", "attempts", "wake_at")}),
        (_("Times"), {"fields": ("created_at", "updated_at")}),
        (_("Data"), {"fields": ("result_html", "error_html")}),
    )
    readonly_fields = ("result_html", "error_html")
    inlines = (StepAttemptInline,)

    execution_html = execution_column
    result_html = shown("result", _("result"), limit=PAGE_LIMIT)
    error_html = shown("error", _("error"), limit=PAGE_LIMIT, error=True)


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "execution_html",
        "kind",
        "queue",
        "priority",
        "run_after",
        "held_by",
        "lease_until",
        "recoveries",
        "paused_by",
        "created_at",
    )
    list_filter = ("kind", "queue")
    search_fields = ("=execution__id",)

    execution_html = execution_column


class AliveFilter(admin.SimpleListFilter):
    title = _("alive")
    parameter_name = "alive"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Alive")), ("no", _("Dead"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(expires_at__gt=Now())
        if self.value() == "no":
            return queryset.filter(expires_at__lte=Now())
        return queryset


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdmin):
    """Live workers and recently dead ones (kept ``ZART["WORKER_RETENTION"]``)."""

    list_display = (
        "id",
        "alive",
        "hostname",
        "pid",
        "queues",
        "concurrency",
        "abandoned_threads",
        "started_at",
        "heartbeat_at",
        "expires_at",
    )
    list_filter = (AliveFilter,)
    search_fields = ("=id", "hostname")

    @admin.display(description=_("alive"), boolean=True, ordering="expires_at")
    def alive(self, obj: Worker) -> bool:
        return obj.is_alive


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("id", "execution_html", "name", "sent_at", "consumed_at")
    list_filter = ("name",)
    list_defer = ("payload",)
    search_fields = ("=execution__id", "name")
    ordering = ("-pk",)
    fields = (
        "execution",
        "name",
        "payload_html",
        "sent_at",
        "sent_by",
        "consumed_at",
        "consumed_by",
    )
    readonly_fields = ("payload_html",)

    execution_html = execution_column
    payload_html = shown("payload", _("payload"), limit=PAGE_LIMIT)


@admin.register(PauseRule)
class PauseRuleAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "execution_id",
        "workflow",
        "step",
        "reason",
        "created_by",
        "created_at",
        "expires_at",
        "ended_at",
        "end_reason",
    )
    list_filter = ("end_reason", "workflow")
    search_fields = ("=execution_id", "workflow", "step", "reason")


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyAdmin):
    """Schedules are written by code (``schedule_recurring``, declarations); staff may
    delete one to stop it. A schedule declared in code comes back at the next worker
    start, so remove those from the code."""

    list_display = (
        "name",
        "workflow",
        "cron",
        "every",
        "timezone",
        "overlap",
        "next_tick_at",
        "occurrence",
        "last_execution_id",
        "declared",
    )
    list_filter = ("overlap", "declared", "workflow")
    search_fields = ("=name", "workflow")

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.has_perm("django_zart.delete_schedule")
