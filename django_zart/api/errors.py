"""Error answers of the HTTP API, and the engine's errors mapped to them.

Every refusal is JSON, ``{"error": "<code>", "detail": "..."}``, with a status a client
can act on: a caller retries on a 5xx and gives up on a 4xx, so bad input must never end
in a 500. The engine's refusals are told apart by their types, never by their messages:
``ENGINE_ERRORS`` is looked up along the raised type's MRO, so a subclass gets its own
code where it has one and its base's otherwise.
"""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse

from .. import errors


class ApiError(Exception):
    """An error answer. Checks raise it, so a view reads as the steps it takes."""

    def __init__(self, status: int, code: str, detail: str, *, allow: str = "") -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.allow = allow

    def response(self) -> HttpResponse:
        return error_response(self.status, self.code, self.detail, allow=self.allow)


def error_response(status: int, code: str, detail: str, *, allow: str = "") -> HttpResponse:
    response = JsonResponse({"error": code, "detail": detail}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="django-zart"'
    if allow:
        response["Allow"] = allow
    return response


ENGINE_ERRORS: dict[type[errors.ZartError], tuple[int, str]] = {
    errors.InvalidArgument: (400, "invalid_argument"),
    errors.UnknownWorkflow: (400, "unknown_workflow"),
    errors.SerializationError: (400, "invalid_payload"),
    errors.PayloadTooLarge: (413, "payload_too_large"),
    errors.ExecutionNotFound: (404, "not_found"),
    errors.StepNotFound: (404, "step_not_found"),
    errors.PauseRuleNotFound: (404, "rule_not_found"),
    errors.OperationRefused: (409, "refused"),
    errors.ExecutionFinished: (409, "finished"),
    errors.ExecutionNotFinished: (409, "not_finished"),
    errors.StepNotFailed: (409, "step_not_failed"),
    errors.ExecutionAlreadyExists: (409, "already_exists"),
}
"""Status and code of each engine error a request can cause; the rest are server errors."""


def from_engine(exc: errors.ZartError) -> ApiError | None:
    """The answer for an engine error, or ``None`` when no request should cause it."""
    for cls in type(exc).__mro__:
        if cls in ENGINE_ERRORS:
            status, code = ENGINE_ERRORS[cls]
            return ApiError(status, code, str(exc))
    return None


def not_found(detail: str = "Nothing is here.") -> ApiError:
    return ApiError(404, "not_found", detail)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", "The body is larger than %d bytes." % limit)
