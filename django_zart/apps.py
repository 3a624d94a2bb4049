from __future__ import annotations

import importlib
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from .conf import DEFAULTS, validate
from .registry import autodiscover


class ZartConfig(AppConfig):
    name = "django_zart"
    verbose_name = _("Durable workflows")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)

        # An invalid ZART is reported by the checks; the extra modules wait for a valid one.
        raw = getattr(settings, "ZART", {})
        modules = () if validate(raw) else raw.get("WORKFLOW_MODULES", DEFAULTS["WORKFLOW_MODULES"])
        autodiscover(tuple(modules))
        if uses_tasks_backend(getattr(settings, "TASKS", None)):
            # Registers the workflow that runs the tasks: a worker must know it before it
            # claims one, whether or not its process ever imported a task.
            importlib.import_module("django_zart.tasks")


def uses_tasks_backend(tasks: Any) -> bool:
    """Whether Django's ``TASKS`` setting names a backend of ``django_zart.tasks``."""
    if not isinstance(tasks, dict):
        return False
    return any(
        isinstance(config, dict) and str(config.get("BACKEND", "")).startswith("django_zart.tasks.")
        for config in tasks.values()
    )
