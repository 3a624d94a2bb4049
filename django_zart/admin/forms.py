"""The forms of the admin's actions: what staff type in before an operation runs.

The forms only check what they are given (a choice from the list shown, JSON that
parses); the operation itself checks the state and refuses what it does not allow.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from .. import registry


class JSONText(forms.CharField):
    """A textarea holding a JSON document; cleaned to the value it encodes.

    An empty box is ``null``. The widget carries ``data-zart-json`` so the page's script
    can point at a syntax error before the form is sent; the server checks again.
    """

    widget = forms.Textarea(
        attrs={"rows": 8, "cols": 60, "class": "vLargeTextField", "data-zart-json": "1"}
    )

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", True)
        super().__init__(**kwargs)

    def clean(self, value: Any) -> Any:
        text = super().clean(value)
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(
                _("Not valid JSON: %(error)s"), code="json", params={"error": exc}
            ) from None


def set_choices(form: forms.Form, name: str, choices: list[tuple[str, str]]) -> None:
    field = form.fields[name]
    if not isinstance(field, forms.ChoiceField):
        raise TypeError("%s is not a choice field" % name)
    field.choices = choices


def workflow_choices() -> list[tuple[str, str]]:
    """The workflows registered in this process, by name."""
    return [(name, name) for name in registry.workflow_names()]


class StartForm(forms.Form):
    workflow = forms.ChoiceField(label=_("Workflow"))
    execution_id = forms.CharField(
        label=_("Execution id"),
        required=False,
        max_length=255,
        help_text=_("Optional; a new UUID when empty. The id is the idempotency key."),
    )
    input = JSONText(label=_("Input (JSON)"))
    if_exists = forms.ChoiceField(
        label=_("If an execution with this id exists"),
        choices=[
            ("raise", _("refuse to start")),
            ("return", _("open the existing one (same workflow only)")),
        ],
        initial="raise",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        set_choices(self, "workflow", workflow_choices())


class SendEventForm(forms.Form):
    name = forms.CharField(label=_("Event name"), max_length=255)
    payload = JSONText(label=_("Payload (JSON)"))


class CancelForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"),
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Stored with the execution's error; optional."),
    )


class RerunForm(forms.Form):
    """Rerun chosen steps, or a step and everything after it."""

    how = forms.ChoiceField(
        label=_("Rerun"),
        choices=[
            ("steps", _("the steps ticked below")),
            ("from", _("from the step chosen below, and every step after it")),
        ],
        widget=forms.RadioSelect,
        initial="steps",
    )
    steps = forms.MultipleChoiceField(
        label=_("Steps"), required=False, widget=forms.CheckboxSelectMultiple
    )
    from_step = forms.ChoiceField(label=_("From step"), required=False)

    def __init__(self, *args: Any, steps: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        set_choices(self, "steps", steps)
        set_choices(self, "from_step", [("", "---------"), *steps])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("how") == "steps" and not data.get("steps"):
            self.add_error("steps", _("Tick at least one step."))
        if data.get("how") == "from" and not data.get("from_step"):
            self.add_error("from_step", _("Choose the step to rerun from."))
        return data


class RetryStepForm(forms.Form):
    step = forms.ChoiceField(label=_("Failed step"), widget=forms.RadioSelect)

    def __init__(self, *args: Any, steps: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        set_choices(self, "step", steps)
        if len(steps) == 1:
            self.fields["step"].initial = steps[0][0]


class PauseForm(forms.Form):
    what = forms.ChoiceField(label=_("Pause"), widget=forms.RadioSelect, initial="execution")
    reason = forms.CharField(label=_("Reason"), required=False, max_length=1000)

    def __init__(self, *args: Any, execution_id: str, workflow: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        set_choices(
            self,
            "what",
            [
                ("execution", _("this execution (%s)") % execution_id),
                ("workflow", _("every execution of workflow %s") % workflow),
            ],
        )


class ResumeForm(forms.Form):
    rules = forms.MultipleChoiceField(
        label=_("Pause rules to end"), widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args: Any, rules: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        set_choices(self, "rules", rules)
        self.fields["rules"].initial = [value for value, label in rules]
