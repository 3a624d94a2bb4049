from __future__ import annotations

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
