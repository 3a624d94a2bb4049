"""System checks: a bad ``ZART`` setting or a risky database is reported at startup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.db import connections

from .conf import validate


@register()
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    return [
        Error(problem, hint="See the README's settings table.", id="django_zart.E001")
        for problem in validate(getattr(settings, "ZART", {}))
    ]


@register("database")
def check_database(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    connection = connections["default"]
    if connection.vendor == "postgresql":
        return []
    if connection.vendor == "sqlite":
        options = connection.settings_dict.get("OPTIONS", {})
        if options.get("transaction_mode") not in ("IMMEDIATE", "EXCLUSIVE"):
            return [
                Warning(
                    "SQLite without transaction_mode IMMEDIATE: concurrent writers (a worker "
                    "and a web process) can fail with 'database is locked'.",
                    hint='Set DATABASES["default"]["OPTIONS"] = {"transaction_mode": '
                    '"IMMEDIATE", "timeout": 20}, or use PostgreSQL for several workers.',
                    id="django_zart.W001",
                )
            ]
        return []
    return [
        Warning(
            "django-zart is tested on PostgreSQL and SQLite, not on %s." % connection.vendor,
            id="django_zart.W002",
        )
    ]
