"""The list of executions.

``ExecutionListMixin`` is the changelist part of ``ExecutionAdmin``.
"""

from __future__ import annotations

from .display import ReadOnlyAdmin


class ExecutionListMixin(ReadOnlyAdmin):
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
