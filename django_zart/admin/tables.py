"""The admin of the other tables: steps, the work queue, workers, events, pause rules and
schedules. Read-only: state changes belong to the engine and the Python API.

The overview page hangs off the workers' admin (``WorkerAdmin.get_urls``), so it works on
any admin site that registers django-zart's admins, without a site of its own.
"""

from __future__ import annotations

from collections import Counter
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Model, QuerySet
from django.db.models.functions import Now
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from ..models import Event, Overview, PauseRule, Schedule, Step, Task, Worker
from . import overview
from .display import PAGE_LIMIT, ReadOnlyAdmin, execution_column, shown
from .execution_page import StepAttemptInline


def age_text(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``moment`` was, in the largest whole unit: "3 s ago", "2 min ago"."""
    if moment is None:
        return "-"
    seconds = ((now or timezone.now()) - moment).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 120:
        text = "%d s" % seconds
    elif seconds < 2 * 3600:
        text = "%d min" % (seconds // 60)
    elif seconds < 2 * 86400:
        text = "%d h" % (seconds // 3600)
    else:
        text = "%d days" % (seconds // 86400)
    return ("in %s" % text) if ahead else ("%s ago" % text)


class OverviewLinkMixin(ReadOnlyAdmin):
    """A changelist with a link to the overview page above it."""

    change_list_template = "admin/django_zart/overview/change_list.html"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {}), "zart_overview_url": overview_url(self, request)}
        return super().changelist_view(request, context)


def overview_url(model_admin: admin.ModelAdmin[Any], request: HttpRequest) -> str | None:
    """The overview's address, for a user allowed to see it."""
    if not request.user.has_perm("django_zart.view_execution"):
        return None
    return reverse(model_admin.admin_site.name + ":django_zart_overview")


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


_held_by_queue: ContextVar[Counter[str] | None] = ContextVar("zart_held_by_queue", default=None)


@admin.register(Worker)
class WorkerAdmin(OverviewLinkMixin):
    """Live workers and recently dead ones (kept ``ZART["WORKER_RETENTION"]``).

    A claimed task records a claim token, not a worker id, so what one worker holds is not
    stored. The list shows, per queue a live worker serves, how many tasks a live lease
    holds there (shared by the workers of that queue), and the threads it abandoned.
    """

    list_display = (
        "id",
        "alive",
        "hostname",
        "pid",
        "queue_names",
        "concurrency",
        "heartbeat_age",
        "holds",
        "abandoned_threads",
        "started_at",
    )
    list_filter = (AliveFilter,)
    search_fields = ("=id", "hostname")
    ordering = ("-expires_at",)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.overview_view)
        return [path("overview/", view, name="django_zart_overview"), *super().get_urls()]

    def overview_view(self, request: HttpRequest) -> TemplateResponse:
        return overview.overview_view(request, self.admin_site)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        rows = (
            Task.objects.order_by()
            .filter(held_by__isnull=False, lease_until__gte=Now())
            .values_list("queue")
            .annotate(n=Count("pk"))
        )
        token = _held_by_queue.set(Counter(dict(rows)))
        try:
            response = super().changelist_view(request, extra_context)
            if isinstance(response, TemplateResponse):
                response.render()
            return response
        finally:
            _held_by_queue.reset(token)

    @admin.display(description=_("alive"), boolean=True, ordering="expires_at")
    def alive(self, obj: Worker) -> bool:
        return obj.is_alive

    @admin.display(description=_("queues"))
    def queue_names(self, obj: Worker) -> str:
        return ", ".join(map(str, obj.queues)) if isinstance(obj.queues, list) else "-"

    @admin.display(description=_("last heartbeat"), ordering="heartbeat_at")
    def heartbeat_age(self, obj: Worker) -> str:
        return format_html(
            '<span title="{}">{}</span>', obj.heartbeat_at, age_text(obj.heartbeat_at)
        )

    @admin.display(description=_("held tasks in its queues"))
    def holds(self, obj: Worker) -> str:
        held = _held_by_queue.get()
        if not obj.is_alive or held is None:
            return "-"
        queues = obj.queues if isinstance(obj.queues, list) else []
        return ", ".join("%s: %d" % (queue, held[queue]) for queue in queues) or "-"


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


class ActiveRuleFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("active", _("Active")), ("ended", _("Ended"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "active":
            return queryset.filter(ended_at__isnull=True)
        if self.value() == "ended":
            return queryset.filter(ended_at__isnull=False)
        return queryset


@admin.register(PauseRule)
class PauseRuleAdmin(OverviewLinkMixin):
    """Pause rules, active and ended: what each matches, who set and ended it, its expiry."""

    list_display = (
        "id",
        "state",
        "matches",
        "reason",
        "created_by",
        "created_at",
        "expires_at",
        "ended",
    )
    list_filter = (ActiveRuleFilter, "end_reason", "workflow")
    search_fields = ("=execution_id", "workflow", "step", "reason")

    @admin.display(description=_("state"), ordering="ended_at")
    def state(self, obj: PauseRule) -> str:
        if obj.ended_at is not None:
            return str(_("ended"))
        if obj.expires_at is not None and obj.expires_at <= timezone.now():
            return str(_("expired, ending at the next sweep"))
        return str(_("active"))

    @admin.display(description=_("matches"))
    def matches(self, obj: PauseRule) -> str:
        parts = []
        if obj.execution_id:
            parts.append(format_html("execution {}", self.execution_link(obj.execution_id)))
        if obj.workflow:
            parts.append(format_html("workflow <code>{}</code>", obj.workflow))
        if obj.step:
            parts.append(format_html("steps <code>{}</code>", obj.step))
        return format_html_join(", ", "{}", ((part,) for part in parts)) if parts else "-"

    @admin.display(description=_("ended"), ordering="ended_at")
    def ended(self, obj: PauseRule) -> str:
        if obj.ended_at is None:
            return "-"
        return format_html(
            '<span title="{}">{}, {}{}</span>',
            obj.ended_at,
            obj.end_reason or _("ended"),
            age_text(obj.ended_at),
            ", by %s" % obj.ended_by if obj.ended_by else "",
        )


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
        "next_tick_in",
        "occurrence",
        "last_execution_id",
        "declared",
    )
    list_filter = ("overlap", "declared", "workflow")
    search_fields = ("=name", "workflow")

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.has_perm("django_zart.delete_schedule")

    @admin.display(description=_("next tick in"), ordering="next_tick_at")
    def next_tick_in(self, obj: Schedule) -> str:
        return age_text(obj.next_tick_at)


@admin.register(Overview)
class OverviewAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # generic only in the stubs
    """Puts the overview page in the admin index, for whoever may read executions."""

    def get_model_perms(self, request: HttpRequest) -> dict[str, bool]:
        return {"view": self.has_view_permission(request)}

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.has_perm("django_zart.view_execution")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse(self.admin_site.name + ":django_zart_overview"))
