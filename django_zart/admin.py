"""Read-only admin for executions, their runs and steps, the work queue and the workers.

The admin shows state and never changes it: transitions belong to the engine and the
client API, so that they live in one place. Nothing here adds, edits or deletes a row, and
actions such as retry or cancel, when they come, call that API instead of writing a status.

Stored JSON is shown as stored, pretty-printed and escaped inside ``<pre>``, and cut at a
size a page can carry. Changelists do not read the JSON columns at all, so a page of
executions costs the same whether their payloads are tiny or a megabyte each.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.db.models import Model, QuerySet
from django.db.models.functions import Now
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .models import Event, Execution, PauseRule, Run, Schedule, Step, StepAttempt, Task, Worker

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

PAGE_LIMIT = 20_000
"""Characters of one JSON value or traceback shown on a change page."""

ROW_LIMIT = 2_000
"""Characters of one JSON value or traceback shown in an inline row."""


def cut_head(text: str, limit: int) -> str:
    """Keep the start of ``text``: the top of a JSON document says what it is."""
    if len(text) <= limit:
        return text
    hidden = len(text) - limit
    note = ngettext("(%d more character)", "(%d more characters)", hidden) % hidden
    return text[:limit] + "\n… " + note


def cut_tail(text: str, limit: int) -> str:
    """Keep the end of ``text``: a traceback ends with the frame and the exception."""
    if len(text) <= limit:
        return text
    hidden = len(text) - limit
    note = ngettext("(%d earlier character)", "(%d earlier characters)", hidden) % hidden
    return note + " …\n" + text[-limit:]


def json_html(value: Any, *, limit: int, empty: str) -> str:
    """``value`` as indented JSON in ``<pre>``, escaped, and cut at ``limit`` characters."""
    if value is None:
        return empty
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return format_html("<pre>{}</pre>", cut_head(text, limit))


def error_html(error: Any, *, limit: int, empty: str) -> str:
    """A stored error: its fields as JSON, then its traceback as text.

    Inside JSON a traceback is one long string full of ``\\n``; shown on its own it reads
    like the traceback it is.
    """
    if not isinstance(error, dict) or not isinstance(error.get("traceback"), str):
        return json_html(error, limit=limit, empty=empty)
    fields = {key: value for key, value in error.items() if key != "traceback"}
    return format_html(
        "{}<pre>{}</pre>",
        json_html(fields, limit=limit, empty=empty),
        cut_tail(error["traceback"], limit),
    )


def shown(field: str, description: StrOrPromise, *, limit: int, error: bool = False) -> Any:
    """An admin display method showing a stored JSON ``field`` (an error: with traceback)."""
    render = error_html if error else json_html

    @admin.display(description=description)
    def show(self: Any, obj: Model) -> str:
        return render(getattr(obj, field), limit=limit, empty=self.get_empty_value_display())

    return show


@admin.display(description=_("execution"), ordering="execution_id")
def execution_column(self: Any, obj: Any) -> str:
    """A link to the row's execution, by id, without loading the execution."""
    return str(self.execution_link(obj.execution_id))


class LeanChangeList(ChangeList):
    """A changelist that does not read the admin's ``list_defer`` columns."""

    def get_queryset(
        self, request: HttpRequest, exclude_parameters: list[str | None] | None = None
    ) -> QuerySet[Any]:
        queryset = super().get_queryset(request, exclude_parameters)
        return queryset.defer(*getattr(self.model_admin, "list_defer", ()))


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # generic only in the stubs
    """Shows every field of a row and offers no way to add, change or delete one.

    Without the change permission Django opens the change page in its view-only mode:
    every field read-only and no Save button, while the view permission still lets staff in.
    """

    list_defer: tuple[str, ...] = ()
    """Columns the changelist leaves unread (large JSON it never shows)."""

    # A filtered list would otherwise count the whole table a second time.
    show_full_result_count = False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LeanChangeList

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        return [
            *(field.name for field in self.opts.concrete_fields),
            *self.readonly_fields,
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def execution_link(self, execution_id: str) -> str:
        view = self.admin_site.name + ":django_zart_execution_change"
        url = reverse(view, args=(quote(execution_id),))
        return format_html('<a href="{}">{}</a>', url, execution_id)


class ReadOnlyInline(admin.TabularInline):  # type: ignore[type-arg]  # generic only in the stubs
    """Rows of a child table, shown in full under their parent and never editable."""

    extra = 0
    max_num = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class RunInline(ReadOnlyInline):
    model = Run
    fields = (
        "index",
        "reason",
        "triggered_by",
        "status",
        "created_at",
        "finished_at",
        "error_html",
    )
    readonly_fields = fields
    ordering = ("index",)

    error_html = shown("error", _("error"), limit=ROW_LIMIT, error=True)


class StepInline(ReadOnlyInline):
    model = Step
    fields = (
        "run_index",
        "sequence",
        "position",
        "kind",
        "status",
        "attempts",
        "result_html",
        "error_html",
        "wake_at",
        "updated_at",
    )
    readonly_fields = fields
    ordering = ("run_index", "sequence")
    show_change_link = True

    result_html = shown("result", _("result"), limit=ROW_LIMIT)
    error_html = shown("error", _("error"), limit=ROW_LIMIT, error=True)


class StepAttemptInline(ReadOnlyInline):
    model = StepAttempt
    fields = ("number", "status", "error_html", "finished_at")
    readonly_fields = fields
    ordering = ("number",)

    error_html = shown("error", _("error"), limit=ROW_LIMIT, error=True)


class EventInline(ReadOnlyInline):
    model = Event
    fields = ("name", "payload_html", "sent_at", "consumed_at", "consumed_by")
    readonly_fields = fields
    ordering = ("pk",)

    payload_html = shown("payload", _("payload"), limit=ROW_LIMIT)


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "workflow",
        "status",
        "queue",
        "run_index",
        "created_at",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", "queue", "workflow")
    list_defer = ("input", "output", "error")
    search_fields = ("=id", "workflow")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    fieldsets = (
        (None, {"fields": ("id", "workflow", "status", "queue", "run_index", "replay_base")}),
        (
            _("Times"),
            {"fields": ("created_at", "started_at", "finished_at", "updated_at", "deadline_at")},
        ),
        (_("Data"), {"fields": ("input_html", "output_html", "error_html")}),
    )
    readonly_fields = ("input_html", "output_html", "error_html")
    inlines = (RunInline, StepInline, EventInline)

    input_html = shown("input", _("input"), limit=PAGE_LIMIT)
    output_html = shown("output", _("output"), limit=PAGE_LIMIT)
    error_html = shown("error", _("error"), limit=PAGE_LIMIT, error=True)


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
