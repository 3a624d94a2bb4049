"""The OpenAPI 3.1 description of the HTTP API, built from the table ``OPERATIONS``.

One row per endpoint and method says what it takes, what it answers and who may call it;
the document's parameters, bodies, error answers and security requirements are derived
from the rows, so each is written once. ``tests/test_openapi.py`` checks that every
route of ``urls.py`` is described here with the same methods, that the document is
valid, and runs schemathesis against the live API with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from .. import __version__
from ..names import MAX_PRIORITY
from ..states import ExecutionStatus, RunReason, RunStatus, StepKind, StepStatus
from . import views
from .auth import EVENTS, READ, WRITE, Caller
from .representations import ok

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": "#/components/schemas/%s" % name}


def obj(required: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


STRING = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}
ANY: dict[str, Any] = {}
"""A JSON value of any type (an input, a result, an output)."""
ERROR_VALUE = nullable(obj(type=STRING, message=STRING, traceback=STRING))
EXECUTION_ID = {"type": "string", "minLength": 1, "maxLength": 255}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: str
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    method: str
    path: str
    summary: str
    scope: str | None
    """The token scope it needs; ``None``: open."""
    permission: str = ""
    answer: tuple[int, str, dict[str, Any] | None] = (200, "OK.", None)
    """Status, description and schema of the success answer."""
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None
    errors: tuple[int, ...] = ()
    """Error statuses besides the ones every secured endpoint has (401, 403)."""
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


ID_PARAM = Param(
    "execution_id", "path", EXECUTION_ID, "The execution id (may contain slashes).", True
)
BODY_ERRORS = (400, 411, 413)

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": obj(
        ("error", "detail"),
        error={"type": "string", "description": "A stable code, e.g. `not_found`, `refused`."},
        detail={"type": "string", "description": "What is wrong, for a human."},
    ),
    "Status": obj(("status",), status={"const": "ok"}),
    "ExecutionSummary": obj(
        ("id", "workflow", "queue", "status", "run_index", "created_at"),
        id=STRING,
        workflow=STRING,
        queue=STRING,
        status={"enum": list(ExecutionStatus.values)},
        run_index={"type": "integer"},
        parent_id=nullable(STRING),
        created_at=TIME,
        started_at=nullable(TIME),
        finished_at=nullable(TIME),
        updated_at=TIME,
    ),
    "Attempt": obj(number={"type": "integer"}, status=STRING, error=ERROR_VALUE, finished_at=TIME),
    "Step": obj(
        run_index={"type": "integer"},
        sequence={"type": "integer"},
        position={"type": "string", "description": "The step's key, e.g. `charge-card#2`."},
        name=STRING,
        kind={"enum": list(StepKind.values)},
        status={"enum": list(StepStatus.values)},
        result=ANY,
        error=ERROR_VALUE,
        attempts={"type": "integer"},
        wake_at=nullable(TIME),
        created_at=TIME,
        updated_at=TIME,
        attempt_history={"type": "array", "items": ref("Attempt")},
    ),
    "Run": obj(
        index={"type": "integer"},
        reason={"enum": list(RunReason.values)},
        status={"enum": list(RunStatus.values)},
        triggered_by=STRING,
        error=ERROR_VALUE,
        created_at=TIME,
        finished_at=nullable(TIME),
    ),
    "Execution": {
        "allOf": [
            ref("ExecutionSummary"),
            obj(
                input=ANY,
                output=ANY,
                error=ERROR_VALUE,
                deadline_at=nullable(TIME),
                finished={"type": "boolean"},
                runs={"type": "array", "items": ref("Run")},
                steps={"type": "array", "items": ref("Step")},
            ),
        ]
    },
    "ExecutionPage": obj(
        ("executions", "next_cursor"),
        executions={"type": "array", "items": ref("ExecutionSummary")},
        next_cursor=nullable(STRING),
    ),
    "PauseRule": obj(
        id={"type": "integer"},
        execution_id=STRING,
        workflow=STRING,
        step=STRING,
        reason=STRING,
        created_by=STRING,
        created_at=TIME,
        expires_at=nullable(TIME),
        ended_at=nullable(TIME),
        ended_by=STRING,
        end_reason=STRING,
        active={"type": "boolean"},
    ),
    "Stats": {"type": "object", "description": "See `zart.stats()` in the README."},
}


def body(*required: str, **properties: Any) -> dict[str, Any]:
    return {**obj(required, **properties), "additionalProperties": False}


def action(
    path: str, summary: str, permission: str, request: dict[str, Any], text: str
) -> Operation:
    return Operation(
        method="post",
        path="/executions/{execution_id}/%s" % path,
        summary=summary,
        scope=WRITE,
        permission=permission,
        answer=(200, "The execution as it is now.", ref("Execution")),
        params=(ID_PARAM,),
        body=request,
        errors=(*BODY_ERRORS, 404, 409),
        text=text,
    )


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="get",
        path="/executions",
        summary="List executions, newest first",
        scope=READ,
        permission="view_execution",
        answer=(200, "A page of executions.", ref("ExecutionPage")),
        params=(
            Param("status", "query", STRING, "Statuses, repeated or comma-separated."),
            Param("workflow", "query", STRING, "Workflow names, repeated or comma-separated."),
            Param("queue", "query", STRING, "Queue names, repeated or comma-separated."),
            Param(
                "limit",
                "query",
                {"type": "integer", "minimum": 1, "maximum": views.MAX_LIMIT},
                "Page size (default %d)." % views.DEFAULT_LIMIT,
            ),
            Param("cursor", "query", STRING, "The `next_cursor` of the previous page."),
        ),
        errors=(400,),
    ),
    Operation(
        method="post",
        path="/executions",
        summary="Start an execution",
        scope=WRITE,
        permission="start_execution",
        answer=(201, "Started.", ref("Execution")),
        body=body(
            "workflow",
            workflow=STRING,
            input=ANY,
            execution_id=EXECUTION_ID,
            queue=STRING,
            if_exists={"enum": ["raise", "return"]},
            priority={"type": "integer", "minimum": -MAX_PRIORITY, "maximum": MAX_PRIORITY},
        ),
        errors=(*BODY_ERRORS, 409),
        extra={"200": "An execution with this id existed (`if_exists: return`)."},
        text="The execution id is the idempotency key: an existing one is 409 "
        "`already_exists`, or 200 with it when `if_exists` is `return` and its workflow is "
        "the same.",
    ),
    Operation(
        method="get",
        path="/executions/{execution_id}",
        summary="An execution with its runs, steps and attempts",
        scope=READ,
        permission="view_execution",
        answer=(200, "The execution.", ref("Execution")),
        params=(ID_PARAM,),
        errors=(400, 404),
    ),
    Operation(
        method="get",
        path="/executions/{execution_id}/wait",
        summary="Wait for an execution to finish (long poll)",
        scope=READ,
        permission="view_execution",
        answer=(200, "The execution; `finished` says whether it has.", ref("Execution")),
        params=(
            ID_PARAM,
            Param(
                "timeout",
                "query",
                {"type": "number", "minimum": 0, "maximum": views.MAX_WAIT},
                "Seconds to wait at most (default and most: %g)." % views.MAX_WAIT,
            ),
        ),
        errors=(400, 404),
    ),
    action(
        "cancel",
        "Cancel an execution",
        "cancel_execution",
        body(reason=STRING),
        "A finished execution is 409 `finished`.",
    ),
    action(
        "restart",
        "Restart an execution from scratch in a new run",
        "restart_execution",
        body(input=ANY),
        "Same input unless one is given. An unfinished execution is 409 `not_finished`.",
    ),
    action(
        "rerun",
        "Rerun chosen steps in a new run, keeping the other checkpoints",
        "rerun_execution",
        {
            "oneOf": [
                body("steps", steps={"type": "array", "items": STRING, "minItems": 1}),
                body("from_step", from_step=STRING),
            ]
        },
        "A step is named by its name (every occurrence) or its position (`charge-card#2`). "
        "An unknown step is 404 `step_not_found`.",
    ),
    action(
        "retry-step",
        "Give a step that failed for good a fresh set of attempts",
        "retry_execution",
        body("step", step=STRING),
        "A step that did not fail is 409 `step_not_failed`.",
    ),
    Operation(
        method="post",
        path="/executions/{execution_id}/events/{name}",
        summary="Send an event to an execution",
        scope=EVENTS,
        permission="send_event",
        answer=(
            202,
            "Stored.",
            obj(execution_id=STRING, event=STRING, waiting={"type": "boolean"}),
        ),
        params=(
            ID_PARAM,
            Param("name", "path", {"type": "string", "minLength": 1}, "The event name.", True),
        ),
        body=ANY,
        errors=(*BODY_ERRORS, 404, 409),
        text="The body (any JSON value; empty: null) is the payload. Tokens of "
        '`ZART["EVENT_TOKENS"]` may call it too; an unknown token is 403 here.',
    ),
    Operation(
        method="get",
        path="/pause-rules",
        summary="List pause rules, newest first",
        scope=READ,
        permission="view_execution",
        answer=(200, "The rules.", obj(pause_rules={"type": "array", "items": ref("PauseRule")})),
        params=(Param("active", "query", {"enum": ["true", "false"]}, "false: every rule."),),
        errors=(400,),
    ),
    Operation(
        method="post",
        path="/pause-rules",
        summary="Pause matching work",
        scope=WRITE,
        permission="pause_execution",
        answer=(201, "The rule.", ref("PauseRule")),
        body=body(
            execution_id=STRING,
            workflow=STRING,
            step={"type": "string", "description": "A glob of step names."},
            reason=STRING,
            expires_at={
                "anyOf": [TIME, STRING, {"type": "number"}],
                "description": 'A date and time, a duration ("2h") or seconds from now.',
            },
        ),
        errors=(*BODY_ERRORS, 404),
        text="At least one of `execution_id`, `workflow`, `step`.",
    ),
    Operation(
        method="delete",
        path="/pause-rules/{rule_id}",
        summary="Resume: end a pause rule",
        scope=WRITE,
        permission="pause_execution",
        answer=(200, "The ended rule.", ref("PauseRule")),
        params=(Param("rule_id", "path", {"type": "integer", "minimum": 0}, "The rule.", True),),
        errors=(404, 409),
        text="An unknown rule is 404 `rule_not_found`, an ended one 409 `refused`.",
    ),
    Operation(
        method="get",
        path="/stats",
        summary="Counts by status, workflow and queue; workers; pause rules",
        scope=READ,
        permission="view_execution",
        answer=(200, "The counts.", ref("Stats")),
    ),
    Operation(
        method="get",
        path="/metrics",
        summary="The counts in Prometheus' text format",
        scope=READ,
        permission="view_execution",
        answer=(200, "Metrics, prefixed zart_.", None),
    ),
    Operation(
        method="get",
        path="/healthz",
        summary="The process is up",
        scope=None,
        answer=(200, "Up.", ref("Status")),
    ),
    Operation(
        method="get",
        path="/readyz",
        summary="The database answers and the migrations are applied",
        scope=None,
        answer=(200, "Ready.", ref("Status")),
        errors=(503,),
    ),
    Operation(
        method="get",
        path="/openapi.json",
        summary="This document",
        scope=None,
        answer=(200, "The OpenAPI document.", {"type": "object"}),
    ),
)

ERROR_TEXT = {
    400: "Bad input: a body that is not JSON, a missing or wrong field, an unknown workflow.",
    401: "No token, or one that is not configured; no session.",
    403: "The token lacks the scope, the user the permission, or the CSRF check failed.",
    404: "No such execution, step or rule.",
    405: "Another method is expected (see `Allow`).",
    409: "The state does not allow it (`finished`, `not_finished`, `step_not_failed`, ...).",
    411: "A body sent with Transfer-Encoding: send Content-Length.",
    413: "The body or the stored value is too large.",
    503: "Not ready.",
}


def document(prefix: str = "") -> dict[str, Any]:
    """The OpenAPI document for the API mounted at ``prefix`` (e.g. ``/zart``)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "django-zart",
            "version": __version__,
            "description": "Durable workflows: executions, events, pause rules, counts.",
        },
        "servers": [{"url": prefix or "/"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                str(status): {"description": text, "content": {JSON: {"schema": ref("Error")}}}
                for status, text in ERROR_TEXT.items()
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": 'A token of ZART["API_TOKENS"], with its scopes.',
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": settings.SESSION_COOKIE_NAME,
                    "description": "A staff user's session, with the Django permission; "
                    "calls that change state send the CSRF token in X-CSRFToken.",
                },
            },
        },
    }


def _operation(op: Operation) -> dict[str, Any]:
    status, description, schema = op.answer
    content = {JSON: {"schema": schema}} if schema is not None else {"text/plain": {}}
    responses: dict[str, Any] = {str(status): {"description": description, "content": content}}
    for extra_status, text in op.extra.items():
        responses[extra_status] = {"description": text, "content": content}
    errors = set(op.errors) | ({401, 403} if op.scope else set())
    for error in sorted(errors):
        responses[str(error)] = {"$ref": "#/components/responses/%d" % error}
    result: dict[str, Any] = {
        "summary": op.summary,
        "operationId": _operation_id(op),
        "responses": responses,
    }
    description = op.text
    if op.scope is not None:
        description += "\n\nToken scope `%s`, or a session with `django_zart.%s`." % (
            op.scope,
            op.permission,
        )
        result["security"] = [{"bearer": []}, {"session": []}]
    else:
        result["security"] = []
    if description.strip():
        result["description"] = description.strip()
    if op.params:
        result["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required,
                "schema": p.schema,
                "description": p.description,
            }
            for p in op.params
        ]
    if op.body is not None:
        result["requestBody"] = {"required": False, "content": {JSON: {"schema": op.body}}}
    return result


def _operation_id(op: Operation) -> str:
    words = op.path.replace("{", "").replace("}", "").replace(".", "-").replace("-", "_")
    return op.method + "_".join(words.split("/"))


def openapi_view(request: HttpRequest, caller: Caller | None) -> HttpResponse:
    prefix = request.path[: -len("/openapi.json")]
    return ok(document(prefix))
