from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ZartConfig(AppConfig):
    name = "django_zart"
    verbose_name = _("Durable workflows")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from . import checks  # noqa: F401  (registers the system checks)
        from .conf import DEFAULTS, validate
        from .registry import autodiscover

        raw = getattr(settings, "ZART", {})
        modules = (
            raw.get("WORKFLOW_MODULES", DEFAULTS["WORKFLOW_MODULES"]) if not validate(raw) else ()
        )
        autodiscover(tuple(modules))
