"""Probes for a load balancer or an orchestrator: is the process up, can it serve.

Both are open, so they tell nothing but yes or no: no version, no database error text
(that goes to the log). Both run outside ``ATOMIC_REQUESTS``, which would open a
transaction, and so a connection, before the view runs: ``healthz`` must answer while
the database is down, and ``readyz`` must answer 503 then, not fail with a 500.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, connection
from django.db.migrations.loader import MigrationLoader
from django.http import HttpRequest, HttpResponse

from .auth import Caller
from .errors import error_response
from .representations import ok

logger = logging.getLogger(__name__)

APP = "django_zart"


def healthz(request: HttpRequest, caller: Caller | None) -> HttpResponse:
    """The process is up and answers requests."""
    return ok({"status": "ok"})


def readyz(request: HttpRequest, caller: Caller | None) -> HttpResponse:
    """The database answers and every migration of django_zart is applied."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        missing = unapplied_migrations()
    except DatabaseError:
        logger.warning("Readiness check failed: the database cannot be reached", exc_info=True)
        connection.close_if_unusable_or_obsolete()
        return error_response(503, "not_ready", "The database cannot be reached.")
    if missing:
        return error_response(503, "not_ready", "Migrations of django_zart are not applied.")
    return ok({"status": "ok"})


def unapplied_migrations() -> list[str]:
    """Names of django_zart's migrations on disk that the database has not applied."""
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    plan = [
        node
        for leaf in loader.graph.leaf_nodes(APP)
        for node in loader.graph.forwards_plan(leaf)
        if node[0] == APP
    ]
    return sorted({name for app, name in plan if (app, name) not in loader.applied_migrations})
