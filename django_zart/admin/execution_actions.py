"""What staff can do to executions from the admin: every action calls the Python API.

``ExecutionActionsMixin`` holds the changelist actions (retry failed executions,
cancel, restart), the permissions and the buttons of the execution page; the pages
those buttons lead to are in ``execution_views``. Each action asks for confirmation
first, needs its own permission (``Execution.Meta.permissions``), and ends with a
message saying what happened. An operation the state does not allow (cancelling a
finished execution) is a refusal: a warning message, not an error page. Every call
says who asked, ``by="admin:<username>"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from .. import operations, pauses
from ..errors import (
    OperationRefused,
    ZartError,
)
from ..models import Execution, PauseRule, Run, Step
from ..states import TERMINAL, ExecutionStatus, RunReason, StepStatus
from .display import ReadOnlyAdmin

PERMISSIONS = {
    "start": "start_execution",
    "cancel": "cancel_execution",
    "restart": "restart_execution",
    "rerun": "rerun_execution",
    "retry": "retry_execution",
    "send_event": "send_event",
    "pause": "pause_execution",
}
"""Each action and the codename of the permission it needs, on ``Execution``."""

MAX_SELECTED = 1000
"""Executions one changelist action takes at a time; its confirmation lists them all."""

SHOWN = 20
"""Executions named in one message before "and N more"."""

_ALLOWED = "_zart_allowed_actions"
"""Where ``get_object`` leaves the actions this request may take, for ``actions_html``."""


def by(request: HttpRequest) -> str:
    return "admin:%s" % request.user.get_username()


def allowed(request: HttpRequest, action: str) -> bool:
    return request.user.has_perm("django_zart.%s" % PERMISSIONS[action])


def failed_run_index(execution: Execution) -> int:
    """The index of the run whose steps the execution's outcome comes from.

    A failure handler's run (``COMPENSATION``) is not it: the run before it is.
    """
    index = (
        Run.objects.filter(execution_id=execution.pk)
        .exclude(reason=RunReason.COMPENSATION)
        .order_by("-index")
        .values_list("index", flat=True)
        .first()
    )
    return execution.run_index if index is None else index


def run_steps(execution: Execution) -> QuerySet[Step]:
    return Step.objects.filter(
        execution_id=execution.pk, run_index=failed_run_index(execution)
    ).order_by("sequence", "created_at", "pk")


def step_label(step: Step) -> str:
    name = step.position if step.name == step.position else "%s (%s)" % (step.position, step.name)
    return "%s — %s" % (name, step.status)


def failed_steps(execution: Execution) -> list[Step]:
    """The steps of the failed run that failed for good: the ones ``retry_step`` takes."""
    return list(run_steps(execution).filter(status__in=[StepStatus.FAILED, StepStatus.RETRYING]))


def matching_rules(execution: Execution) -> list[PauseRule]:
    """The active pause rules that hold this execution or steps of it."""
    return [
        rule
        for rule in pauses.pause_rules().order_by("pk")
        if rule.execution_id in ("", execution.pk) and rule.workflow in ("", execution.workflow)
    ]


def listed(items: list[str]) -> str:
    """Up to ``SHOWN`` items joined, and how many more there are."""
    text = "; ".join(items[:SHOWN])
    if len(items) > SHOWN:
        text += " " + _("and %d more") % (len(items) - SHOWN)
    return text


class ExecutionActionsMixin(ReadOnlyAdmin):
    actions = ("retry_failed", "cancel_selected", "restart_selected")

    class Media:
        css: ClassVar[dict[str, tuple[str, ...]]] = {"all": ("django_zart/actions.css",)}
        js = ("django_zart/actions.js",)

    # -- permissions -------------------------------------------------------------------

    def has_start_permission(self, request: HttpRequest) -> bool:
        return allowed(request, "start")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return allowed(request, "cancel")

    def has_restart_permission(self, request: HttpRequest) -> bool:
        return allowed(request, "restart")

    def has_rerun_permission(self, request: HttpRequest) -> bool:
        return allowed(request, "rerun")

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return allowed(request, "retry")

    def has_send_event_permission(self, request: HttpRequest) -> bool:
        return allowed(request, "send_event")

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return allowed(request, "pause")

    def allowed_actions(self, request: HttpRequest) -> frozenset[str]:
        return frozenset(action for action in PERMISSIONS if allowed(request, action))

    def require(self, request: HttpRequest, action: str) -> None:
        if not allowed(request, action):
            raise PermissionDenied

    # -- changelist actions --------------------------------------------------------------

    @admin.action(
        description=gettext_lazy("Retry failed executions (a new run)"), permissions=["retry"]
    )
    def retry_failed(
        self, request: HttpRequest, queryset: QuerySet[Execution]
    ) -> HttpResponse | None:
        return self.bulk(
            request,
            queryset,
            action="retry_failed",
            title=_("Retry failed executions"),
            explain=_(
                "Each failed execution gets a new run. When its failed run has exactly one "
                "failed step, that step is retried and the run goes on from there; "
                "otherwise the execution is restarted from scratch."
            ),
            done=lambda n: ngettext(
                "Retried %(count)d execution: %(list)s",
                "Retried %(count)d executions: %(list)s",
                n,
            ),
            operate=self.retry_one,
        )

    @admin.action(description=gettext_lazy("Cancel"), permissions=["cancel"])
    def cancel_selected(
        self, request: HttpRequest, queryset: QuerySet[Execution]
    ) -> HttpResponse | None:
        return self.bulk(
            request,
            queryset,
            action="cancel_selected",
            title=_("Cancel executions"),
            explain=_(
                "Unfinished executions are cancelled with their queued branches and "
                "unfinished children; a running step finishes, nothing after it runs. "
                "Finished executions are left as they are."
            ),
            done=lambda n: ngettext(
                "Cancelled %(count)d execution: %(list)s",
                "Cancelled %(count)d executions: %(list)s",
                n,
            ),
            operate=lambda request, execution: self.cancel_one(request, execution),
        )

    @admin.action(description=gettext_lazy("Restart"), permissions=["restart"])
    def restart_selected(
        self, request: HttpRequest, queryset: QuerySet[Execution]
    ) -> HttpResponse | None:
        return self.bulk(
            request,
            queryset,
            action="restart_selected",
            title=_("Restart executions"),
            explain=_(
                "Finished executions run again from scratch with the same input, in a new "
                "run; earlier runs stay as history. Unfinished executions are left as "
                "they are."
            ),
            done=lambda n: ngettext(
                "Restarted %(count)d execution: %(list)s",
                "Restarted %(count)d executions: %(list)s",
                n,
            ),
            operate=self.restart_one,
        )

    def retry_one(self, request: HttpRequest, execution: Execution) -> str:
        if execution.status != ExecutionStatus.FAILED:
            raise OperationRefused(
                _("Execution %(id)r is %(status)s, not FAILED; there is nothing to retry.")
                % {"id": execution.pk, "status": execution.status}
            )
        failed = failed_steps(execution)
        if len(failed) == 1:
            operations.retry_step(execution.pk, failed[0].position, by=by(request))
            return _("%(id)s (step %(step)s retried)") % {
                "id": execution.pk,
                "step": failed[0].position,
            }
        operations.restart(execution.pk, by=by(request))
        return _("%(id)s (restarted: its failed run has %(count)d failed steps)") % {
            "id": execution.pk,
            "count": len(failed),
        }

    def cancel_one(self, request: HttpRequest, execution: Execution, reason: str = "") -> str:
        operations.cancel(execution.pk, reason=reason, by=by(request))
        return execution.pk

    def restart_one(self, request: HttpRequest, execution: Execution) -> str:
        operations.restart(execution.pk, by=by(request))
        return execution.pk

    def bulk(
        self,
        request: HttpRequest,
        queryset: QuerySet[Execution],
        *,
        action: str,
        title: str,
        explain: str,
        done: Callable[[int], str],
        operate: Callable[[HttpRequest, Execution], str],
    ) -> HttpResponse | None:
        """A confirmation page listing the chosen executions; once confirmed, the
        operation on each, and a message for those done and one for those refused."""
        count = queryset.count()
        if count > MAX_SELECTED:
            self.message_user(
                request,
                _("Choose at most %(max)d executions at a time (%(count)d chosen).")
                % {"max": MAX_SELECTED, "count": count},
                messages.WARNING,
            )
            return None
        chosen = list(
            queryset.only("id", "workflow", "status", "run_index").order_by("created_at", "pk")
        )
        if request.POST.get("post") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": title,
                "explain": explain,
                "opts": self.opts,
                "executions": chosen,
                "action": action,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "media": self.media,
            }
            request.current_app = self.admin_site.name
            return TemplateResponse(request, "admin/django_zart/actions/confirm.html", context)
        succeeded: list[str] = []
        refused: list[str] = []
        for execution in chosen:
            try:
                succeeded.append(operate(request, execution))
            except ZartError as exc:
                refused.append(str(exc))
        if succeeded:
            self.message_user(
                request,
                done(len(succeeded)) % {"count": len(succeeded), "list": listed(succeeded)},
                messages.SUCCESS,
            )
        if refused:
            self.message_user(
                request,
                _("%(count)d refused: %(list)s") % {"count": len(refused), "list": listed(refused)},
                messages.WARNING,
            )
        return None

    # -- buttons on the change page ----------------------------------------------------

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            setattr(obj, _ALLOWED, self.allowed_actions(request))
        return obj

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if "actions_html" not in fields:
            fields.append("actions_html")
        return fields

    def buttons(self, execution: Execution, permitted: frozenset[str]) -> list[tuple[str, str]]:
        """The actions this execution's state allows and the user may take: (label, url)."""
        finished = execution.status in TERMINAL
        shown: list[tuple[str, str, bool]] = [
            ("rerun", _("Rerun steps…"), finished),
            ("retry", _("Retry failed step…"), execution.status == ExecutionStatus.FAILED),
            ("restart", _("Restart…"), finished),
            ("send_event", _("Send event…"), not finished),
            ("pause", _("Pause…"), not finished),
            ("resume", _("Resume…"), bool(matching_rules(execution))),
            ("cancel", _("Cancel…"), not finished),
        ]
        result = []
        for view, label, fits in shown:
            permission = "pause" if view == "resume" else view
            if fits and permission in permitted:
                result.append((label, self.action_url(view, execution.pk)))
        return result

    @admin.display(description=gettext_lazy("actions"))
    def actions_html(self, obj: Execution) -> str:
        permitted: frozenset[str] = getattr(obj, _ALLOWED, frozenset())
        buttons = self.buttons(obj, permitted)
        if not buttons:
            return self.get_empty_value_display()
        return format_html(
            '<ul class="zart-actions">{}</ul>',
            format_html_join(
                "", '<li><a class="button" href="{}">{}</a></li>', ((u, t) for t, u in buttons)
            ),
        )

    def action_url(self, view: str, execution_id: str) -> str:
        name = "%s:django_zart_execution_%s" % (self.admin_site.name, view)
        return reverse(name, args=(quote(execution_id),))

    def change_url(self, execution_id: str) -> str:
        name = "%s:django_zart_execution_change" % self.admin_site.name
        return reverse(name, args=(quote(execution_id),))

    # -- the changelist's link to the start page -------------------------------------

    def start_url(self, request: HttpRequest) -> str | None:
        if not allowed(request, "start"):
            return None
        return reverse("%s:django_zart_execution_start" % self.admin_site.name)

    def start_link(self, request: HttpRequest) -> str:
        """A link to the start page for the changelist's object tools, if permitted."""
        url = self.start_url(request)
        if url is None:
            return ""
        return format_html('<a href="{}" class="addlink">{}</a>', url, _("Start an execution"))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {"start_execution_url": self.start_url(request), **(extra_context or {})}
        return super().changelist_view(request, extra)
