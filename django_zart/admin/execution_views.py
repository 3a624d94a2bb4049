"""The pages behind the execution page's buttons, and the page that starts an execution.

Each is a confirmation form; a valid one calls the Python API once and comes back to
the execution with a message. ``ExecutionViewsMixin`` adds them to ``ExecutionAdmin``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _

from .. import client, events, operations, pauses
from ..errors import (
    ExecutionAlreadyExists,
    InvalidArgument,
    SerializationError,
    ZartError,
)
from ..models import Execution
from .execution_actions import (
    ExecutionActionsMixin,
    by,
    failed_steps,
    matching_rules,
    run_steps,
    step_label,
)
from .forms import (
    CancelForm,
    PauseForm,
    RerunForm,
    ResumeForm,
    RetryStepForm,
    SendEventForm,
    StartForm,
)


class ExecutionViewsMixin(ExecutionActionsMixin):
    # -- views -------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        def wrap(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            return self.admin_site.admin_view(view)

        prefix = "django_zart_execution_"
        mine = [
            path("start/", wrap(self.start_view), name=prefix + "start"),
            *(
                path("<path:object_id>/%s/" % slug, wrap(view), name=prefix + name)
                for slug, name, view in [
                    ("rerun", "rerun", self.rerun_view),
                    ("retry-step", "retry", self.retry_step_view),
                    ("restart", "restart", self.restart_view),
                    ("send-event", "send_event", self.send_event_view),
                    ("pause", "pause", self.pause_view),
                    ("resume", "resume", self.resume_view),
                    ("cancel", "cancel", self.cancel_view),
                ]
            ),
        ]
        return [*mine, *super().get_urls()]

    def execution_form(
        self,
        request: HttpRequest,
        object_id: str,
        *,
        action: str,
        title: str,
        explain: str,
        make_form: Callable[[Execution, dict[str, Any] | None], Form],
        operate: Callable[[Execution, dict[str, Any]], str],
        submit: str,
        empty: str = "",
    ) -> HttpResponse:
        """A confirmation page with a form for one execution, and the operation once sent.

        ``operate`` returns the success message; a ``ZartError`` from it is a refusal,
        shown as a warning on the execution's page, except bad input, which the form shows.
        """
        self.require(request, action)
        execution = self.get_object(request, unquote(object_id))
        if execution is None:
            self.message_user(
                request,
                _("No execution with id %(id)r exists.") % {"id": unquote(object_id)},
                messages.WARNING,
            )
            return HttpResponseRedirect(
                reverse("%s:django_zart_execution_changelist" % self.admin_site.name)
            )
        if not self.has_view_permission(request, execution):
            raise PermissionDenied
        form = make_form(execution, request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                message = operate(execution, form.cleaned_data)
            except (InvalidArgument, SerializationError) as exc:
                form.add_error(None, str(exc))
            except ZartError as exc:
                self.message_user(request, str(exc), messages.WARNING)
                return HttpResponseRedirect(self.change_url(execution.pk))
            else:
                self.message_user(request, message, messages.SUCCESS)
                return HttpResponseRedirect(self.change_url(execution.pk))
        return self.render_form(
            request,
            form,
            title=title,
            explain=explain,
            submit=submit,
            execution=execution,
            empty=empty,
        )

    def render_form(
        self,
        request: HttpRequest,
        form: Form,
        *,
        title: str,
        explain: str,
        submit: str,
        execution: Execution | None = None,
        empty: str = "",
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "explain": explain,
            "submit": submit,
            "form": form,
            "opts": self.opts,
            "execution": execution,
            "empty": empty,
            "back_url": self.change_url(execution.pk)
            if execution is not None
            else reverse("%s:django_zart_execution_changelist" % self.admin_site.name),
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/django_zart/actions/form.html", context)

    def rerun_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def make(execution: Execution, data: dict[str, Any] | None) -> Form:
            steps = [(step.position, step_label(step)) for step in run_steps(execution)]
            return RerunForm(data, steps=steps)

        def operate(execution: Execution, data: dict[str, Any]) -> str:
            if data["how"] == "from":
                operations.rerun(execution.pk, from_step=data["from_step"], by=by(request))
                return _("Rerunning %(id)s from step %(step)s.") % {
                    "id": execution.pk,
                    "step": data["from_step"],
                }
            operations.rerun(execution.pk, steps=data["steps"], by=by(request))
            return _("Rerunning steps %(steps)s of %(id)s.") % {
                "id": execution.pk,
                "steps": ", ".join(data["steps"]),
            }

        return self.execution_form(
            request,
            object_id,
            action="rerun",
            title=_("Rerun steps"),
            explain=_(
                "A new run executes the chosen steps again and replays every other step "
                "from its checkpoint. The execution must have finished."
            ),
            make_form=make,
            operate=operate,
            submit=_("Rerun"),
        )

    def retry_step_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def make(execution: Execution, data: dict[str, Any] | None) -> Form:
            steps = [(step.position, step_label(step)) for step in failed_steps(execution)]
            return RetryStepForm(data, steps=steps)

        def operate(execution: Execution, data: dict[str, Any]) -> str:
            operations.retry_step(execution.pk, data["step"], by=by(request))
            return _("Retrying step %(step)s of %(id)s in a new run.") % {
                "id": execution.pk,
                "step": data["step"],
            }

        return self.execution_form(
            request,
            object_id,
            action="retry",
            title=_("Retry a failed step"),
            explain=_(
                "The step gets a fresh set of attempts in a new run, which replays every "
                "other checkpoint of the failed run and goes on from there."
            ),
            make_form=make,
            operate=operate,
            submit=_("Retry"),
            empty=_("No step of the execution's last run failed for good."),
        )

    def restart_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def operate(execution: Execution, data: dict[str, Any]) -> str:
            self.restart_one(request, execution)
            return _("Restarted %(id)s from scratch in a new run.") % {"id": execution.pk}

        return self.execution_form(
            request,
            object_id,
            action="restart",
            title=_("Restart the execution"),
            explain=_(
                "A new run executes the workflow from scratch with the same input; earlier "
                "runs stay as history."
            ),
            make_form=lambda execution, data: Form(data),
            operate=operate,
            submit=_("Restart"),
        )

    def send_event_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def operate(execution: Execution, data: dict[str, Any]) -> str:
            woke = events.send_event(execution.pk, data["name"], data["payload"], by=by(request))
            if woke:
                return _("Sent event %(name)s to %(id)s; it was waiting for it.") % {
                    "name": data["name"],
                    "id": execution.pk,
                }
            return _("Sent event %(name)s to %(id)s; it is kept for a later wait.") % {
                "name": data["name"],
                "id": execution.pk,
            }

        return self.execution_form(
            request,
            object_id,
            action="send_event",
            title=_("Send an event"),
            explain=_(
                "The event wakes the execution if it waits for an event of this name; "
                "otherwise it is kept for its next wait of that name."
            ),
            make_form=lambda execution, data: SendEventForm(data),
            operate=operate,
            submit=_("Send"),
        )

    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def make(execution: Execution, data: dict[str, Any] | None) -> Form:
            return PauseForm(data, execution_id=execution.pk, workflow=execution.workflow)

        def operate(execution: Execution, data: dict[str, Any]) -> str:
            target = (
                {"execution_id": execution.pk}
                if data["what"] == "execution"
                else {"workflow": execution.workflow}
            )
            rule = pauses.pause(**target, reason=data["reason"], by=by(request))
            return _("Paused by %(rule)s.") % {"rule": rule}

        return self.execution_form(
            request,
            object_id,
            action="pause",
            title=_("Pause"),
            explain=_(
                "A pause rule stops dispatching the work it matches until it is resumed. "
                "A step running now finishes; the execution is held at its next step."
            ),
            make_form=make,
            operate=operate,
            submit=_("Pause"),
        )

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def make(execution: Execution, data: dict[str, Any] | None) -> Form:
            rules = [(str(rule.pk), str(rule)) for rule in matching_rules(execution)]
            return ResumeForm(data, rules=rules)

        def operate(execution: Execution, data: dict[str, Any]) -> str:
            ended = [pauses.resume(int(rule), by=by(request)) for rule in data["rules"]]
            return _("Resumed: %(rules)s.") % {"rules": "; ".join(str(rule) for rule in ended)}

        return self.execution_form(
            request,
            object_id,
            action="pause",
            title=_("Resume"),
            explain=_(
                "Ending a pause rule makes what it held due again, as it was: a sleeping "
                "execution goes back to its sleep, a waiting one to its wait."
            ),
            make_form=make,
            operate=operate,
            submit=_("Resume"),
            empty=_("No active pause rule holds this execution."),
        )

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def operate(execution: Execution, data: dict[str, Any]) -> str:
            self.cancel_one(request, execution, reason=data["reason"])
            return _("Cancelled %(id)s.") % {"id": execution.pk}

        return self.execution_form(
            request,
            object_id,
            action="cancel",
            title=_("Cancel the execution"),
            explain=_(
                "Its queued branches and unfinished children are cancelled too; a step "
                "running now finishes and nothing after it runs."
            ),
            make_form=lambda execution, data: CancelForm(data),
            operate=operate,
            submit=_("Cancel the execution"),
        )

    def start_view(self, request: HttpRequest) -> HttpResponse:
        self.require(request, "start")
        form = StartForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            existed = bool(data["execution_id"]) and (
                Execution.objects.filter(pk=data["execution_id"]).exists()
            )
            try:
                execution_id = client.start(
                    data["workflow"],
                    data["input"],
                    execution_id=data["execution_id"] or None,
                    if_exists=data["if_exists"],
                    by=by(request),
                )
            except ExecutionAlreadyExists as exc:
                self.message_user(request, str(exc), messages.WARNING)
            except (InvalidArgument, SerializationError) as exc:
                form.add_error(None, str(exc))
            except ZartError as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                done = (
                    _("%(id)s already exists, an execution of %(workflow)s; nothing started.")
                    if existed
                    else _("Started %(id)s, an execution of %(workflow)s.")
                )
                self.message_user(
                    request,
                    done % {"id": execution_id, "workflow": data["workflow"]},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(self.change_url(execution_id))
        return self.render_form(
            request,
            form,
            title=_("Start an execution"),
            explain=_("The execution is queued at once; a worker serving its queue runs it."),
            submit=_("Start"),
        )
