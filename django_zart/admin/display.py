"""What every admin page of django-zart shares: read-only bases and how stored JSON shows.

Stored JSON is shown pretty-printed and escaped inside ``<pre>``, and cut at a size a
page can carry. Values under keys named by ``ZART["REDACT_KEYS"]`` are masked first, at
any depth, so no admin page that shows JSON through ``json_html`` shows a password.
Changelists do not read the JSON columns at all, so a page of executions costs the same
whether their payloads are tiny or a megabyte each.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.db.models import JSONField, Model, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..conf import get_settings

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


REDACTED = "••••••"
"""What a value under a redacted key shows instead."""


def is_redacted(key: str) -> bool:
    """Whether ``key`` contains one of ``ZART["REDACT_KEYS"]``, ignoring case."""
    lowered = key.lower()
    return any(word.lower() in lowered for word in get_settings().redact_keys)


def redact(value: Any) -> Any:
    """``value`` with every value under a redacted key, at any depth, replaced by a mask."""
    if isinstance(value, dict):
        return {
            key: REDACTED if isinstance(key, str) and is_redacted(key) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def json_html(
    value: Any, *, limit: int, empty: str, collapsible: bool = False, expanded: bool = True
) -> str:
    """``value`` as indented JSON in ``<pre>``, redacted, escaped, and cut at ``limit``.

    ``collapsible`` wraps it in ``<details>`` (open unless ``expanded=False``) whose summary
    says what it holds, so a long document can be folded away without any script.
    """
    if value is None:
        return empty
    text = json.dumps(redact(value), indent=2, ensure_ascii=False)
    pre = format_html("<pre>{}</pre>", cut_head(text, limit))
    if not collapsible:
        return pre
    return format_html(
        '<details class="zart-json"{}><summary>{}</summary>{}</details>',
        " open" if expanded else "",
        json_summary(value),
        pre,
    )


def json_summary(value: Any) -> str:
    """A few words on what a JSON value is: "object, 3 keys", "list, 10 items", "string"."""
    if isinstance(value, dict):
        return ngettext("object, %d key", "object, %d keys", len(value)) % len(value)
    if isinstance(value, list):
        return ngettext("list, %d item", "list, %d items", len(value)) % len(value)
    return str(_("string") if isinstance(value, str) else _("value"))


def error_html(
    error: Any, *, limit: int, empty: str, collapsible: bool = False, expanded: bool = True
) -> str:
    """A stored error: its fields as JSON, then its traceback as text.

    Inside JSON a traceback is one long string full of ``\\n``; shown on its own it reads
    like the traceback it is. ``collapsible`` folds the traceback into ``<details>``.
    """
    if not isinstance(error, dict) or not isinstance(error.get("traceback"), str):
        return json_html(
            error, limit=limit, empty=empty, collapsible=collapsible, expanded=expanded
        )
    fields = {key: value for key, value in error.items() if key != "traceback"}
    traceback = format_html(
        '<pre class="zart-traceback">{}</pre>', cut_tail(error["traceback"], limit)
    )
    if collapsible:
        traceback = format_html(
            '<details class="zart-json"{}><summary>{}</summary>{}</details>',
            " open" if expanded else "",
            _("traceback"),
            traceback,
        )
    return format_html("{}{}", json_html(fields, limit=limit, empty=empty), traceback)


def shown(
    field: str,
    description: StrOrPromise,
    *,
    limit: int,
    error: bool = False,
    collapsible: bool = False,
) -> Any:
    """An admin display method showing a stored JSON ``field`` (an error: with traceback),
    redacted; ``collapsible`` folds it into ``<details>``."""
    render = error_html if error else json_html

    @admin.display(description=description)
    def show(self: Any, obj: Model) -> str:
        return render(
            getattr(obj, field),
            limit=limit,
            empty=self.get_empty_value_display(),
            collapsible=collapsible,
        )

    return show


def _redacted_display(model_admin: Any, field: JSONField[Any, Any]) -> Any:
    """A display for a JSON column an admin leaves to Django's default display, which
    would show it unredacted."""

    def show(obj: Model) -> str:
        return json_html(
            getattr(obj, field.attname),
            limit=PAGE_LIMIT,
            empty=model_admin.get_empty_value_display(),
        )

    show.short_description = field.verbose_name  # type: ignore[attr-defined]
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

    def __init__(self, model: type[Model], admin_site: admin.AdminSite) -> None:
        super().__init__(model, admin_site)
        # A JSON column shown as is goes through json_html instead: redacted, indented.
        self.redacted_fields: dict[str, str] = {}
        for field in model._meta.concrete_fields:
            if isinstance(field, JSONField):
                name = "%s_redacted" % field.name
                setattr(self, name, _redacted_display(self, field))
                self.redacted_fields[field.name] = name

    def _redacted(self, names: Any) -> list[Any]:
        kept: list[Any] = []
        for name in names:
            name = self.redacted_fields.get(name, name) if isinstance(name, str) else name
            if name not in kept:
                kept.append(name)
        return kept

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> list[Any]:
        return self._redacted(super().get_fields(request, obj))

    def get_fieldsets(self, request: HttpRequest, obj: Model | None = None) -> list[Any]:
        return [
            (name, {**options, "fields": self._redacted(options.get("fields", ()))})
            for name, options in super().get_fieldsets(request, obj)
        ]

    # A filtered list would otherwise count the whole table a second time.
    show_full_result_count = False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LeanChangeList

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        return [*(field.name for field in self.opts.concrete_fields), *self.readonly_fields]

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
