"""The HTTP endpoint that delivers events from webhooks and other services.

Authenticated by a bearer token from ``ZART["EVENT_TOKENS"]``; with no token configured
it refuses every request. Errors are JSON: ``{"error": "<code>", "detail": "..."}``.
"""

from __future__ import annotations

import hmac
import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .conf import get_settings
from .errors import ExecutionFinished, ExecutionNotFound, SerializationError
from .events import send_event


def _error(status: int, code: str, detail: str) -> JsonResponse:
    response = JsonResponse({"error": code, "detail": detail}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="django-zart"'
    return response


def _authenticate(request: HttpRequest) -> JsonResponse | None:
    tokens = get_settings().event_tokens
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _error(401, "unauthorized", "Send 'Authorization: Bearer <token>'.")
    # Compare with every configured token, in constant time, so timing tells nothing.
    matched = False
    for known in tokens:
        matched |= hmac.compare_digest(token.strip().encode(), known.encode())
    if not matched:
        return _error(403, "forbidden", "This token may not send events.")
    return None


@csrf_exempt
@require_POST
def send_event_view(request: HttpRequest, execution_id: str, name: str) -> JsonResponse:
    refused = _authenticate(request)
    if refused is not None:
        return refused
    limit = get_settings().max_payload_bytes
    length = request.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > limit:
        return _error(413, "payload_too_large", "The body is larger than %d bytes." % limit)
    body = request.body
    if len(body) > limit:
        return _error(413, "payload_too_large", "The body is larger than %d bytes." % limit)
    try:
        payload = json.loads(body) if body.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _error(400, "invalid_json", "The body is not valid JSON: %s" % exc)
    try:
        woke = send_event(execution_id, name, payload)
    except ExecutionNotFound as exc:
        return _error(404, "not_found", str(exc))
    except ExecutionFinished as exc:
        return _error(409, "finished", str(exc))
    except SerializationError as exc:
        return _error(413 if "MAX_PAYLOAD_BYTES" in str(exc) else 400, "invalid_payload", str(exc))
    return JsonResponse({"execution_id": execution_id, "event": name, "waiting": woke}, status=202)
