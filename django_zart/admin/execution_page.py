"""The page of one execution: its data, why it is not running, the timeline of its
current run, its runs, steps, events, and its work items with their claims and leases.

``ExecutionPageMixin`` is the change page part of ``ExecutionAdmin``. The page costs a
constant number of queries whatever the number of steps.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..models import Event, Execution, Run, Step, StepAttempt, Task
from . import timeline, whereabouts
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
        "took",
        "error_html",
    )
    readonly_fields = fields
    ordering = ("index",)

    error_html = shown("error", _("error"), limit=ROW_LIMIT, error=True, collapsible=True)

    @admin.display(description=_("took"))
    def took(self, obj: Run) -> str:
        if obj.finished_at is None:
            return self.get_empty_value_display()
        return timeline.duration(obj.finished_at - obj.created_at)


STEP_ROWS = 200
"""Step rows listed under an execution at most: the latest run's first, by sequence. (The
timeline above them shows up to ``timeline.BAR_LIMIT`` steps of the current run.)"""


class LatestStepsFormSet(BaseInlineFormSet):  # type: ignore[type-arg]  # generic only in the stubs
    """The inline's steps, cut at ``STEP_ROWS``: a loop of 100,000 steps still opens."""

    def get_queryset(self) -> Any:
        if not hasattr(self, "_capped"):
            self._capped = super().get_queryset()[:STEP_ROWS]
        return self._capped


class StepInline(ReadOnlyInline):
    """Steps of every run, the current run first; the Steps list holds them all."""

    model = Step
    formset = LatestStepsFormSet
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
    ordering = ("-run_index", "sequence")
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
    fields = ("name", "payload_html", "sent_at", "sent_by", "consumed_at", "consumed_by")
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
    change_form_template = "admin/django_zart/execution/change_form.html"

    input_html = shown("input", _("input"), limit=PAGE_LIMIT, collapsible=True)
    output_html = shown("output", _("output"), limit=PAGE_LIMIT, collapsible=True)
    error_html = shown("error", _("error"), limit=PAGE_LIMIT, error=True, collapsible=True)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if isinstance(obj, Execution):
            steps = inline_rows(context, Step)
            capped = steps is not None and len(steps) >= STEP_ROWS
            context["steps_capped"] = capped
            context["step_rows"] = STEP_ROWS
            context["steps_list_url"] = "%s?%s" % (
                reverse(self.admin_site.name + ":django_zart_step_changelist"),
                urlencode({"execution__id__exact": obj.pk}),
            )
            context.update(
                self.page_context(
                    obj,
                    # A cut list may lack steps of the current run: then it reads its own.
                    steps=None if capped else steps,
                    runs=inline_rows(context, Run),
                )
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def page_context(
        self,
        execution: Execution,
        *,
        steps: list[Step] | None = None,
        runs: list[Run] | None = None,
    ) -> dict[str, Any]:
        """The action buttons, the blocker, the work items and the timeline, for the page's
        template."""
        empty = self.get_empty_value_display()
        unfinished = not execution.is_finished
        actions = getattr(self, "actions_html", None)
        buttons = actions(execution) if actions else ""
        return {
            "actions_html": "" if buttons == empty else buttons,
            "unfinished": unfinished,
            "blocker": whereabouts.blocker(execution) if unfinished else "",
            **work_context(execution, self.admin_site.name),
            **timeline.context(execution, self.admin_site.name, empty, steps=steps, runs=runs),
        }


def inline_rows(context: dict[str, Any], model: type[Any]) -> list[Any] | None:
    """The rows an inline of ``model`` on this page shows, read once for the inline and
    the timeline both; ``None`` when the page has no such inline."""
    for inline in context.get("inline_admin_formsets", ()):
        if inline.formset.model is model:
            return list(inline.formset.get_queryset())
    return None


def work_context(execution: Execution, site_name: str) -> dict[str, Any]:
    """The execution's work items (its body and its branches): their claims and leases.

    A task records a claim token, not a worker; the blocker sentence names the worker
    whose lease matches.
    """
    if execution.is_finished:
        return {"tasks": []}
    tasks = (
        Task.objects.filter(execution=execution)
        .select_related("paused_by")
        .defer("payload")
        .order_by("kind", "pk")
    )
    now = timezone.now()
    rows = [
        {
            "task": task,
            "held": task.held_by is not None and task.lease_until is not None,
            "lease_left": timeline.duration(task.lease_until - now)
            if task.lease_until and task.lease_until > now
            else "",
            "lease_expired": bool(task.lease_until and task.lease_until <= now),
            "paused_url": reverse(
                site_name + ":django_zart_pauserule_change", args=(task.paused_by_id,)
            )
            if task.paused_by_id
            else "",
        }
        for task in tasks
    ]
    return {"tasks": rows}
