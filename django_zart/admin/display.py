"""What every admin page of django-zart shares: read-only bases and how stored JSON shows.

Stored JSON is shown pretty-printed and escaped inside ``<pre>``, and cut at a size a
page can carry. Changelists do not read the JSON columns at all, so a page of executions
costs the same whether their payloads are tiny or a megabyte each.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

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
