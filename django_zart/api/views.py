"""The endpoints on executions, events, pause rules and counts.

Each handler reads and checks its input, calls one operation of the Python API with
``by=`` naming the caller, and shows the result. State changes happen only in those
operations: a handler never writes a row itself, so the HTTP API refuses exactly what
the Python API and the command line refuse, with the engine's error mapped to a status
by ``errors.ENGINE_ERRORS``.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from django.db import connection
from django.db.models import Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.utils.dateparse import parse_datetime

import django_zart as zart

from .. import records
from ..conf import get_settings
from ..models import Execution
from ..names import MAX_ID_LENGTH, MAX_QUEUE_LENGTH, check_name
from ..states import TERMINAL, ExecutionStatus
from .auth import Caller
from .bodies import field, only, read_json, read_object, required
from .errors import ApiError
from .representations import ok

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

MAX_WAIT = 60.0
"""Longest a ``wait`` request is held, in seconds; a client waits again for longer."""

ENVELOPE_BYTES = 64 * 1024
"""What a start or restart body may hold besides its input, whose own limit is
``MAX_PAYLOAD_BYTES`` once encoded."""

SMALL_BODY_BYTES = 64 * 1024
"""The largest body of the endpoints that take no stored value."""

MAX_RULE_ID = 2**63 - 1


# -- executions ---------------------------------------------------------------------


def list_executions(request: HttpRequest, caller: Caller) -> HttpResponse:
    """Executions, newest first, a page at a time; ``next_cursor`` fetches the next."""
    query = request.GET
    statuses = _listed(query.getlist("status"))
    unknown = sorted(set(statuses) - set(ExecutionStatus.values))
    if unknown:
        raise ApiError(
            400,
            "invalid_argument",
            "Unknown status %s; known: %s."
            % (", ".join(repr(s[:50]) for s in unknown[:5]), ", ".join(ExecutionStatus.values)),
        )
    workflows = [check_name(w, "workflow") for w in _listed(query.getlist("workflow"))]
    queues = [
        check_name(q, "queue", limit=MAX_QUEUE_LENGTH) for q in _listed(query.getlist("queue"))
    ]
    limit = _limit(query.get("limit"))
    found = zart.executions(
        status=statuses or None, workflow=workflows or None, queue=queues or None
    ).order_by("-created_at", "-pk")
    cursor = query.get("cursor")
    if cursor:
        created_at, last_id = _read_cursor(cursor)
        # The last row's own timestamp, as the database stores it (SQLite keeps text of
        # another precision than a parameter would have); the cursor's copy if it is gone.
        last = Coalesce(
            Subquery(Execution.objects.filter(pk=last_id).values("created_at")[:1]),
            Value(created_at),
        )
        found = found.filter(Q(created_at__lt=last) | Q(created_at=last, pk__lt=last_id))
    page = list(found[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return ok(
        {
            "executions": [records.summary(e) for e in page],
            "next_cursor": _cursor(page[-1]) if more else None,
        }
    )


def _listed(values: list[str]) -> list[str]:
    """Repeated parameters and comma-separated lists alike: ``?status=A&status=B,C``."""
    return [item for value in values for item in value.split(",") if item]


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    digits = value.isascii() and value.isdigit() and len(value) <= len(str(MAX_LIMIT))
    if not digits or not 1 <= int(value) <= MAX_LIMIT:
        raise ApiError(
            400, "invalid_argument", "limit must be an integer from 1 to %d." % MAX_LIMIT
        )
    return int(value)


def _cursor(execution: Execution) -> str:
    raw = json.dumps([execution.created_at.isoformat(), execution.pk]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_cursor(cursor: str) -> tuple[Any, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, last_id = json.loads(raw)
        created_at = parse_datetime(created)
        check_name(last_id, "cursor", limit=MAX_ID_LENGTH)
    except (ValueError, TypeError, binascii.Error):
        created_at = None
    if created_at is None:
        raise ApiError(400, "invalid_argument", "cursor is not one this API handed out.")
    return created_at, last_id


def start_execution(request: HttpRequest, caller: Caller) -> HttpResponse:
    """Start an execution: 201 with it, or 200 with the existing one (``if_exists``)."""
    body = read_object(request, get_settings().max_payload_bytes + ENVELOPE_BYTES)
    only(body, "workflow", "input", "execution_id", "queue", "if_exists", "priority")
    workflow = required(body, "workflow", str)
    execution_id = field(body, "execution_id", str)
    if_exists = field(body, "if_exists", str) or "raise"
    existed = (
        if_exists == "return"
        and execution_id is not None
        and Execution.objects.filter(
            pk=check_name(execution_id, "execution_id", limit=MAX_ID_LENGTH)
        ).exists()
    )
    started = zart.start(
        workflow,
        body.get("input"),
        execution_id=execution_id,
        queue=field(body, "queue", str),
        if_exists=if_exists,
        by=caller.by,
        priority=field(body, "priority", int),
    )
    return ok(_detail(started), status=200 if existed else 201)


def show_execution(request: HttpRequest, caller: Caller, execution_id: str) -> HttpResponse:
    check_name(execution_id, "execution_id", limit=MAX_ID_LENGTH)
    return ok(_detail(execution_id))


def wait_execution(request: HttpRequest, caller: Caller, execution_id: str) -> HttpResponse:
    """Answer once the execution finished, or when the timeout is up (``finished: false``).

    It reads the status between short sleeps, in autocommit, and closes its database
    connection while it sleeps once the sleeps get long: a long poll holds no
    transaction, and does not keep a connection for the whole wait.
    """
    check_name(execution_id, "execution_id", limit=MAX_ID_LENGTH)
    timeout = _timeout(request.GET.get("timeout"))
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        status = Execution.objects.filter(pk=execution_id).values_list("status", flat=True).first()
        if status is None:
            raise zart.ExecutionNotFound(execution_id)
        remaining = deadline - time.monotonic()
        if status in TERMINAL or remaining <= 0:
            break
        delay = min(delay * 2, 1.0)
        if delay >= 0.5 and not connection.in_atomic_block:
            connection.close()
        time.sleep(min(delay, remaining))
    return ok(_detail(execution_id))


def _timeout(value: str | None) -> float:
    if value is None:
        return MAX_WAIT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT:  # NaN fails this too
        raise ApiError(
            400, "invalid_argument", "timeout must be a number of seconds from 0 to %g." % MAX_WAIT
        )
    return min(seconds, MAX_WAIT)


def cancel_execution(request: HttpRequest, caller: Caller, execution_id: str) -> HttpResponse:
    body = read_object(request, SMALL_BODY_BYTES)
    only(body, "reason")
    zart.cancel(execution_id, reason=field(body, "reason", str) or "", by=caller.by)
    return ok(_detail(execution_id))


def restart_execution(request: HttpRequest, caller: Caller, execution_id: str) -> HttpResponse:
    body = read_object(request, get_settings().max_payload_bytes + ENVELOPE_BYTES)
    only(body, "input")
    if "input" in body:
        zart.restart(execution_id, input=body["input"], by=caller.by)
    else:
        zart.restart(execution_id, by=caller.by)
    return ok(_detail(execution_id))


def rerun_execution(request: HttpRequest, caller: Caller, execution_id: str) -> HttpResponse:
    body = read_object(request, SMALL_BODY_BYTES)
    only(body, "steps", "from_step")
    steps = field(body, "steps", list)
    from_step = field(body, "from_step", str)
    if (steps is None) == (from_step is None):
        raise ApiError(400, "invalid_argument", "Give either 'steps' or 'from_step'.")
    if steps is not None and not all(isinstance(s, str) for s in steps):
        raise ApiError(400, "invalid_argument", "'steps' must be an array of step names.")
    zart.rerun(execution_id, steps=steps, from_step=from_step, by=caller.by)
    return ok(_detail(execution_id))


def retry_step(request: HttpRequest, caller: Caller, execution_id: str) -> HttpResponse:
    body = read_object(request, SMALL_BODY_BYTES)
    only(body, "step")
    zart.retry_step(execution_id, required(body, "step", str), by=caller.by)
    return ok(_detail(execution_id))


def send_event(request: HttpRequest, caller: Caller, execution_id: str, name: str) -> HttpResponse:
    """Store event ``name`` for the execution, with the JSON body as its payload (202).

    An empty body is a null payload. The body's declared length is checked before a
    byte of it is read.
    """
    payload = read_json(request, get_settings().max_payload_bytes)
    waiting = zart.send_event(execution_id, name, payload, by=caller.by)
    return ok({"execution_id": execution_id, "event": name, "waiting": waiting}, status=202)


# -- pause rules and counts -----------------------------------------------------------


def list_pause_rules(request: HttpRequest, caller: Caller) -> HttpResponse:
    """Active rules, or every rule with ``?active=false``; newest first."""
    active = request.GET.get("active", "true")
    if active not in ("true", "false"):
        raise ApiError(400, "invalid_argument", "active must be true or false.")
    rules = zart.pause_rules(active=active == "true")[:MAX_LIMIT]
    return ok({"pause_rules": [records.pause_rule(rule) for rule in rules]})


def create_pause_rule(request: HttpRequest, caller: Caller) -> HttpResponse:
    body = read_object(request, SMALL_BODY_BYTES)
    only(body, "execution_id", "workflow", "step", "reason", "expires_at")
    expires_at = body.get("expires_at")
    if isinstance(expires_at, str) and parse_datetime(expires_at) is not None:
        expires_at = parse_datetime(expires_at)
    elif expires_at is not None and (
        isinstance(expires_at, bool) or not isinstance(expires_at, str | int | float)
    ):
        raise ApiError(
            400,
            "invalid_argument",
            "'expires_at' must be an ISO 8601 date and time, a duration such as "
            '"2h", or seconds.',
        )
    rule = zart.pause(
        execution_id=field(body, "execution_id", str),
        workflow=field(body, "workflow", str),
        step=field(body, "step", str),
        reason=field(body, "reason", str) or "",
        expires_at=expires_at,
        by=caller.by,
    )
    return ok(records.pause_rule(rule), status=201)


def resume_pause_rule(request: HttpRequest, caller: Caller, rule_id: int) -> HttpResponse:
    """Ending a rule is resuming the work it held."""
    if rule_id > MAX_RULE_ID:
        raise ApiError(404, "rule_not_found", "No pause rule with id %d exists." % rule_id)
    return ok(records.pause_rule(zart.resume(rule_id, by=caller.by)))


def stats(request: HttpRequest, caller: Caller) -> HttpResponse:
    return ok(zart.stats())


def _detail(execution_id: str) -> dict[str, Any]:
    """The execution with its runs and steps; ``ExecutionNotFound`` answers 404."""
    return records.execution_detail(zart.status(execution_id))
