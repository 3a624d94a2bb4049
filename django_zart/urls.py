"""Include under a prefix of your choice: ``path("zart/", include("django_zart.urls"))``.

Execution ids may contain slashes, so the routes that end in an action come before the
one for the execution itself. Whatever matches no route gets a JSON 404.
"""

from django.db import transaction
from django.urls import URLPattern, path, re_path

from .api import health, metrics, views
from .api.auth import EVENTS, READ, WRITE, Access
from .api.openapi import openapi_view
from .api.routing import Handler, Method, endpoint, unknown_path

app_name = "django_zart"


def _read(handler: Handler) -> Method:
    return Method(handler, Access(READ, "view_execution"))


def _write(handler: Handler, permission: str) -> Method:
    return Method(handler, Access(WRITE, permission))


def _action(name: str, handler: Handler, permission: str) -> URLPattern:
    return path(
        "executions/<path:execution_id>/%s" % name,
        endpoint(POST=_write(handler, permission)),
        name="execution-%s" % name,
    )


urlpatterns = [
    path(
        "executions",
        endpoint(
            GET=_read(views.list_executions),
            POST=_write(views.start_execution, "start_execution"),
        ),
        name="executions",
    ),
    path(
        "executions/<path:execution_id>/events/<str:name>",
        endpoint(POST=Method(views.send_event, Access(EVENTS, "send_event", unknown_token=403))),
        name="send-event",
    ),
    path(
        "executions/<path:execution_id>/wait",
        # A long poll: no transaction around it, even with ATOMIC_REQUESTS.
        transaction.non_atomic_requests(endpoint(GET=_read(views.wait_execution))),
        name="execution-wait",
    ),
    _action("cancel", views.cancel_execution, "cancel_execution"),
    _action("restart", views.restart_execution, "restart_execution"),
    _action("rerun", views.rerun_execution, "rerun_execution"),
    _action("retry-step", views.retry_step, "retry_execution"),
    path(
        "executions/<path:execution_id>",
        endpoint(GET=_read(views.show_execution)),
        name="execution",
    ),
    path(
        "pause-rules",
        endpoint(
            GET=_read(views.list_pause_rules),
            POST=_write(views.create_pause_rule, "pause_execution"),
        ),
        name="pause-rules",
    ),
    path(
        "pause-rules/<int:rule_id>",
        endpoint(DELETE=_write(views.resume_pause_rule, "pause_execution")),
        name="pause-rule",
    ),
    path("stats", endpoint(GET=_read(views.stats)), name="stats"),
    path("metrics", endpoint(GET=_read(metrics.metrics)), name="metrics"),
    path(
        "healthz",
        transaction.non_atomic_requests(endpoint(GET=Method(health.healthz, None))),
        name="healthz",
    ),
    path(
        "readyz",
        transaction.non_atomic_requests(endpoint(GET=Method(health.readyz, None))),
        name="readyz",
    ),
    path("openapi.json", endpoint(GET=Method(openapi_view, None)), name="openapi"),
    re_path(r"^(?P<path>.*)$", unknown_path, name="unknown"),
]
