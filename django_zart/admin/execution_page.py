"""The page of one execution: its data, runs, steps and events.

``ExecutionPageMixin`` is the change page part of ``ExecutionAdmin``.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from ..models import Event, Run, Step, StepAttempt
from .display import PAGE_LIMIT, ROW_LIMIT, ReadOnlyAdmin, ReadOnlyInline, shown


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


class ExecutionPageMixin(ReadOnlyAdmin):
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
