"""The counts of ``zart.stats()`` in Prometheus' text exposition format (version 0.0.4).

Every family is a gauge: the counts are read from the tables when scraped, and rows
deleted by retention make them go down. Executions by status are written for every
status, zeros included, so a query for failed executions finds a 0, not nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse

import django_zart as zart

from .auth import Caller

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics(request: HttpRequest, caller: Caller) -> HttpResponse:
    return HttpResponse(render(zart.stats()), content_type=CONTENT_TYPE)


def render(stats: dict[str, Any]) -> str:
    return "".join(line + "\n" for line in _lines(stats))


def _lines(stats: dict[str, Any]) -> Iterator[str]:
    executions = stats["executions"]
    yield from _family(
        "zart_executions",
        "Executions by status.",
        [({"status": s}, n) for s, n in sorted(executions["by_status"].items())],
    )
    yield from _family(
        "zart_workflow_executions",
        "Executions by workflow and status (statuses with none are left out).",
        [
            ({"workflow": workflow, "status": status}, n)
            for workflow, counts in sorted(executions["by_workflow"].items())
            for status, n in sorted(counts.items())
        ],
    )
    yield from _family(
        "zart_steps_completed",
        "Completed step checkpoints in the table.",
        [({}, stats["steps"]["completed"])],
    )
    queues = sorted(stats["queues"].items())
    yield from _family(
        "zart_queue_tasks",
        "Tasks in the work queue by state: due (unclaimed), running, waiting, paused.",
        [
            ({"queue": queue, "state": state}, counts[state])
            for queue, counts in queues
            for state in ("due", "running", "waiting", "paused")
        ],
    )
    yield from _family(
        "zart_queue_oldest_due_age_seconds",
        "How long the oldest due task of a queue has waited for a worker (0: none due).",
        [({"queue": queue}, counts["oldest_due_age"] or 0) for queue, counts in queues],
    )
    yield from _family(
        "zart_workers",
        "Workers by liveness: alive (heartbeating within their lease) or dead.",
        [({"state": state}, stats["workers"][state]) for state in ("alive", "dead")],
    )
    yield from _family(
        "zart_pause_rules_active",
        "Pause rules in force.",
        [({}, stats["pause_rules"]["active"])],
    )


def _family(
    name: str, help_text: str, samples: list[tuple[dict[str, str], float]]
) -> Iterator[str]:
    yield "# HELP %s %s" % (name, help_text)
    yield "# TYPE %s gauge" % name
    for labels, value in samples:
        yield "%s%s %s" % (name, _labels(labels), _number(value))


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{%s}" % ",".join('%s="%s"' % (k, _escape(v)) for k, v in labels.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))
