"""``ExecutionAdmin``: its list, its page and its actions, each in a module of its own."""

from __future__ import annotations

from django.contrib import admin

from ..models import Execution
from .execution_list import ExecutionListMixin
from .execution_page import ExecutionPageMixin
from .execution_views import ExecutionViewsMixin


@admin.register(Execution)
class ExecutionAdmin(ExecutionViewsMixin, ExecutionListMixin, ExecutionPageMixin):
    """Executions: the list, the page of one, and the actions staff may take on them."""
