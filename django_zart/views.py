"""The HTTP endpoint that delivers events from webhooks and other services.

Authenticated by a bearer token from ``ZART["EVENT_TOKENS"]``; with no token configured
it refuses every request. Whatever a client sends, the answer is JSON: 202 with what was
stored, or ``{"error": "<code>", "detail": "..."}`` with a status the client can act on.
A webhook sender retries on a 5xx and gives up on a 4xx, so a bad request must never end
in a 500: the checks below refuse what the request framing or the JSON reader cannot
take, and the engine's refusals are told apart by their types, never by their messages.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse, UnreadablePostError
from django.views.decorators.csrf import csrf_exempt

from .conf import get_settings
from .errors import (
    ExecutionFinished,
    ExecutionNotFound,
    InvalidArgument,
    PayloadTooLarge,
    SerializationError,
)
from .events import send_event


class _Refusal(Exception):
    """An error answer. The checks raise it, so the view reads as the steps it takes."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail

    def response(self) -> JsonResponse:
        response = JsonResponse({"error": self.code, "detail": self.detail}, status=self.status)
        if self.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="django-zart"'
        elif self.status == 405:
            response["Allow"] = "POST"
        return response


@csrf_exempt
def send_event_view(request: HttpRequest, execution_id: str, name: str) -> JsonResponse:
    """Store event ``name`` for the execution, with the JSON body as its payload.

    An empty body is a null payload. The method and the token are checked before the body
    is read, and the body's declared length before a byte of it is.
    """
    try:
        _check_method(request)
        _authenticate(request)
        payload = _read_payload(request, get_settings().max_payload_bytes)
        waiting = _send(execution_id, name, payload)
    except _Refusal as refusal:
        return refusal.response()
    return JsonResponse(
        {"execution_id": execution_id, "event": name, "waiting": waiting}, status=202
    )


def _check_method(request: HttpRequest) -> None:
    if request.method != "POST":
        raise _Refusal(405, "method_not_allowed", "Send events with POST, not %s." % request.method)


def _authenticate(request: HttpRequest) -> None:
    """401 without a bearer token, 403 for a token that is not configured.

    The token is compared with every configured one in constant time, so response times
    tell nothing about how close a guess was. It is compared as bytes, encoded so that
    any string a server or a test hands over compares instead of raising.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _Refusal(401, "unauthorized", "Send 'Authorization: Bearer <token>'.")
    given = token.encode("utf-8", "surrogatepass")
    matched = False
    for known in get_settings().event_tokens:
        matched |= hmac.compare_digest(given, known.encode())
    if not matched:
        raise _Refusal(403, "forbidden", "This token may not send events.")


def _read_payload(request: HttpRequest, limit: int) -> Any:
    _check_length(request, limit)
    body = _read_body(request, limit)
    return _parse(body) if body.strip() else None


def _check_length(request: HttpRequest, limit: int) -> None:
    """Refuse a body whose length is not declared as a number of bytes, or is too large.

    Under WSGI a body is read up to its Content-Length. A chunked body has none, so it
    would read as empty and store a null payload the client never sent: 411. A length
    Django cannot parse would fail inside ``request.body``.
    """
    if request.headers.get("Transfer-Encoding"):
        raise _Refusal(
            411,
            "length_required",
            "Send the body with a Content-Length header; a body sent with "
            "Transfer-Encoding cannot be read here.",
        )
    declared = request.headers.get("Content-Length") or ""
    if not declared:
        return
    if not (declared.isascii() and declared.isdigit()):
        raise _Refusal(
            400,
            "invalid_content_length",
            "Content-Length must be a number of bytes, not %r." % declared[:50],
        )
    digits = declared.lstrip("0") or "0"
    # Compared by length first: int() refuses strings of more than 4,300 digits.
    if len(digits) > len(str(limit)) or int(digits) > limit:
        raise _too_large(limit)


def _read_body(request: HttpRequest, limit: int) -> bytes:
    try:
        body = request.body
    except RequestDataTooBig:
        raise _Refusal(
            413,
            "payload_too_large",
            "The body is larger than this site accepts (DATA_UPLOAD_MAX_MEMORY_SIZE).",
        ) from None
    except UnreadablePostError as exc:
        raise _Refusal(
            400, "unreadable_body", "The body could not be read to its end: %s" % exc
        ) from exc
    if len(body) > limit:
        raise _too_large(limit)
    return body


def _too_large(limit: int) -> _Refusal:
    return _Refusal(413, "payload_too_large", "The body is larger than %d bytes." % limit)


def _parse(body: bytes) -> Any:
    """The JSON value of ``body``, which must be UTF-8 (RFC 8259).

    ``json.loads`` of bytes would also take UTF-16 and UTF-32. It raises
    ``RecursionError`` for nesting deeper than Python reads; what it reads but the
    database cannot store (deep nesting, long integers, NUL) the engine refuses.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refusal(
            400,
            "invalid_json",
            "The body is not UTF-8: byte 0x%02x at offset %d." % (body[exc.start], exc.start),
        ) from None
    try:
        return json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise _Refusal(400, "invalid_json", "The body is not valid JSON: %s" % exc) from None
    except RecursionError:
        raise _Refusal(
            400, "invalid_payload", "The body is nested too deeply to be read."
        ) from None


def _parse_int(text: str) -> int:
    """A JSON integer; one longer than Python converts (4,300 digits) is refused."""
    try:
        return int(text)
    except ValueError:
        raise _Refusal(
            400,
            "invalid_payload",
            "The body holds an integer of %d digits, too long to be read." % len(text.lstrip("-")),
        ) from None


def _send(execution_id: str, name: str, payload: Any) -> bool:
    """``send_event``, with each refusal of the engine mapped by its type."""
    try:
        return send_event(execution_id, name, payload)
    except InvalidArgument as exc:
        raise _Refusal(400, "invalid_argument", str(exc)) from exc
    except ExecutionNotFound as exc:
        raise _Refusal(404, "not_found", str(exc)) from exc
    except ExecutionFinished as exc:
        raise _Refusal(409, "finished", str(exc)) from exc
    except PayloadTooLarge as exc:
        raise _Refusal(413, "payload_too_large", str(exc)) from exc
    except SerializationError as exc:
        raise _Refusal(400, "invalid_payload", str(exc)) from exc
