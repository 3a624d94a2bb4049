"""The overview page: counts by status and workflow, the last 24 hours as a chart, and the
oldest due work.

It is served by ``WorkerAdmin.get_urls`` (``<admin>/django_zart/worker/overview/``) and
needs ``django_zart.view_execution``. Everything is read in a handful of grouped queries,
whatever the size of the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib.admin import AdminSite
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.db.models.functions import Now, TruncHour
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from ..db import get_store
from ..models import Execution, Task
from ..overview import stats
from ..states import ExecutionStatus

HOURS = 24
OLDEST_DUE_SHOWN = 20


@dataclass(frozen=True)
class Hour:
    start: datetime
    completed: int
    failed: int


def finished_per_hour(now: datetime, hours: int = HOURS) -> list[Hour]:
    """Executions completed and failed in each of the last ``hours`` hours, oldest first.

    One grouped query on ``finished_at``; hours without any are zero.
    """
    current = now.replace(minute=0, second=0, microsecond=0)
    first = current - timedelta(hours=hours - 1)
    rows = (
        Execution.objects.order_by()
        .filter(
            finished_at__gte=first,
            status__in=[ExecutionStatus.COMPLETED, ExecutionStatus.FAILED],
        )
        .annotate(hour=TruncHour("finished_at", tzinfo=UTC))
        .values_list("hour", "status")
        .annotate(n=Count("pk"))
    )
    counts: dict[tuple[datetime, str], int] = {}
    for hour, status, n in rows:
        if hour is None:
            continue
        key = (hour.astimezone(UTC).replace(tzinfo=UTC), status)
        counts[key] = counts.get(key, 0) + n
    result = []
    for index in range(hours):
        start = first + timedelta(hours=index)
        result.append(
            Hour(
                start,
                counts.get((start, ExecutionStatus.COMPLETED), 0),
                counts.get((start, ExecutionStatus.FAILED), 0),
            )
        )
    return result


def _num(value: float) -> str:
    return "%.1f" % value


def chart_svg(hours: list[Hour]) -> SafeString:
    """A bar chart: per hour, executions completed (left bar) and failed (right bar).

    Inline SVG drawn here, coloured by CSS classes so the admin's dark mode applies.
    """
    width, height, top, bottom, left = 720, 180, 16, 24, 36
    plot = height - top - bottom
    peak = max([1, *(max(h.completed, h.failed) for h in hours)])
    slot = (width - left) / max(len(hours), 1)
    bar = max(slot / 2 - 2, 1)
    parts: list[SafeString] = []
    for value in (0, peak):
        y = top + plot - plot * value / peak
        parts.append(
            format_html(
                '<line class="zart-grid" x1="{}" y1="{}" x2="{}" y2="{}"/>'
                '<text class="zart-axis" x="{}" y="{}" text-anchor="end">{}</text>',
                left,
                _num(y),
                width,
                _num(y),
                left - 6,
                _num(y + 4),
                value,
            )
        )
    for index, hour in enumerate(hours):
        x = left + index * slot + 1
        label = timezone.localtime(hour.start).strftime("%H:00")
        for offset, value, css, what in (
            (0.0, hour.completed, "zart-completed", _("completed")),
            (bar, hour.failed, "zart-failed", _("failed")),
        ):
            bar_height = plot * value / peak
            parts.append(
                format_html(
                    '<rect class="{}" x="{}" y="{}" width="{}" height="{}">'
                    "<title>{}: {} {}</title></rect>",
                    css,
                    _num(x + offset),
                    _num(top + plot - bar_height),
                    _num(bar),
                    _num(bar_height),
                    label,
                    value,
                    what,
                )
            )
        if index % 3 == 0:
            parts.append(
                format_html(
                    '<text class="zart-axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                    _num(x + bar),
                    height - 6,
                    label,
                )
            )
    return format_html(
        '<svg class="zart-chart" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>',
        width,
        height,
        _("Executions finished per hour over the last 24 hours"),
        format_html_join("", "{}", ((part,) for part in parts)),
    )


def oldest_due(limit: int = OLDEST_DUE_SHOWN) -> list[dict[str, Any]]:
    """Tasks due now that no worker holds and no rule pauses, the longest waiting first."""
    rows = (
        Task.objects.filter(held_by__isnull=True, paused_by__isnull=True, run_after__lte=Now())
        .order_by("run_after", "pk")
        .values("pk", "execution_id", "execution__workflow", "kind", "queue", "run_after")[:limit]
    )
    return [dict(row) for row in rows]


def waited_text(seconds: float) -> str:
    if seconds < 120:
        return format_html("{} s", int(seconds))
    if seconds < 7200:
        return format_html("{} min", int(seconds // 60))
    return format_html("{} h", int(seconds // 3600))


def overview_view(request: HttpRequest, admin_site: AdminSite) -> TemplateResponse:
    if not request.user.has_perm("django_zart.view_execution"):
        raise PermissionDenied
    now = get_store().now()
    counts = stats()
    changelist = reverse(admin_site.name + ":django_zart_execution_changelist")
    by_status = [
        {
            "status": status,
            "label": label,
            "count": counts["executions"]["by_status"].get(status, 0),
            "url": "%s?%s" % (changelist, urlencode({"status__exact": status})),
        }
        for status, label in ExecutionStatus.choices
    ]
    statuses = [status for status, _label in ExecutionStatus.choices]
    by_workflow = [
        {
            "workflow": workflow,
            "url": "%s?%s" % (changelist, urlencode({"workflow__exact": workflow})),
            "counts": [per_status.get(status, 0) for status in statuses],
            "total": sum(per_status.values()),
        }
        for workflow, per_status in sorted(counts["executions"]["by_workflow"].items())
    ]
    hours = finished_per_hour(now)
    due = oldest_due()
    for row in due:
        row["url"] = reverse(
            admin_site.name + ":django_zart_execution_change", args=(quote(row["execution_id"]),)
        )
        row["waiting"] = waited_text(max((now - row["run_after"]).total_seconds(), 0))
    context = {
        **admin_site.each_context(request),
        "title": _("Workflows overview"),
        "app_label": Execution._meta.app_label,
        "app_name": Execution._meta.app_config.verbose_name,
        "subtitle": None,
        "by_status": by_status,
        "status_labels": [label for _status, label in ExecutionStatus.choices],
        "by_workflow": by_workflow,
        "total": counts["executions"]["total"],
        "queues": sorted(counts["queues"].items()),
        "workers": counts["workers"],
        "active_pause_rules": counts["pause_rules"]["active"],
        "chart": chart_svg(hours),
        "completed_24h": sum(h.completed for h in hours),
        "failed_24h": sum(h.failed for h in hours),
        "oldest_due": due,
        "workers_url": reverse(admin_site.name + ":django_zart_worker_changelist"),
        "pause_rules_url": reverse(admin_site.name + ":django_zart_pauserule_changelist"),
        "executions_url": changelist,
    }
    request.current_app = admin_site.name
    return TemplateResponse(request, "admin/django_zart/overview/overview.html", context)
