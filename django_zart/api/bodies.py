"""Reading request bodies: framing, size, UTF-8 JSON, and the fields of an object.

Each check refuses what the request framing or the JSON reader cannot take before it
can turn into a 500: a body is refused by its declared length before a byte of it is
read, and what ``json`` reads but the database cannot store (deep nesting, long integers,
NUL characters) is left to the engine's one serialization boundary to refuse.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, UnreadablePostError

from .errors import ApiError, too_large

T = TypeVar("T")


def read_json(request: HttpRequest, limit: int) -> Any:
    """The JSON value of the body, or ``None`` for an empty one."""
    _check_length(request, limit)
    body = _read_body(request, limit)
    return _parse(body) if body.strip() else None


def read_object(request: HttpRequest, limit: int) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``."""
    value = read_json(request, limit)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(
            400, "invalid_json", "The body must be a JSON object, not %s." % _json_type(value)
        )
    return value


def required(body: dict[str, Any], name: str, kind: type[T]) -> T:
    """``body[name]``, which must be given, checked to be a ``kind``."""
    value = field(body, name, kind)
    if value is None:
        raise ApiError(400, "invalid_argument", "The body must give %r." % name)
    return value


def field(body: dict[str, Any], name: str, kind: type[T]) -> T | None:
    """``body[name]`` checked to be a ``kind``; ``None`` when absent (or null)."""
    value = body.get(name)
    if value is None:
        return None
    # bool is an int to Python, never to a client.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ApiError(
            400,
            "invalid_argument",
            "%r must be %s, not %s."
            % (name, _JSON_NAMES.get(kind, kind.__name__), _json_type(value)),
        )
    return value


def only(body: dict[str, Any], *names: str) -> None:
    """Refuse keys the endpoint does not know: a typo must not be silently ignored."""
    unknown = sorted(set(body) - set(names))
    if unknown:
        raise ApiError(
            400,
            "invalid_argument",
            "Unknown key%s %s; this endpoint takes %s."
            % (
                "" if len(unknown) == 1 else "s",
                ", ".join(repr(k) for k in unknown[:10]),
                ", ".join(repr(n) for n in names) or "no body",
            ),
        )


_JSON_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "an array",
    dict: "an object",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _check_length(request: HttpRequest, limit: int) -> None:
    """Refuse a body whose length is not declared as a number of bytes, or is too large.

    Under WSGI a body is read up to its Content-Length. A chunked body has none, so it
    would read as empty and stand for a body the client never sent: 411. A length
    Django cannot parse would fail inside ``request.body``.
    """
    if request.headers.get("Transfer-Encoding"):
        raise ApiError(
            411,
            "length_required",
            "Send the body with a Content-Length header; a body sent with "
            "Transfer-Encoding cannot be read here.",
        )
    declared = request.headers.get("Content-Length") or ""
    if not declared:
        return
    if not (declared.isascii() and declared.isdigit()):
        raise ApiError(
            400,
            "invalid_content_length",
            "Content-Length must be a number of bytes, not %r." % declared[:50],
        )
    digits = declared.lstrip("0") or "0"
    # Compared by length first: int() refuses strings of more than 4,300 digits.
    if len(digits) > len(str(limit)) or int(digits) > limit:
        raise too_large(limit)


def _read_body(request: HttpRequest, limit: int) -> bytes:
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(
            413,
            "payload_too_large",
            "The body is larger than this site accepts (DATA_UPLOAD_MAX_MEMORY_SIZE).",
        ) from None
    except UnreadablePostError as exc:
        raise ApiError(
            400, "unreadable_body", "The body could not be read to its end: %s" % exc
        ) from exc
    if len(body) > limit:
        raise too_large(limit)
    return body


def _parse(body: bytes) -> Any:
    """The JSON value of ``body``, which must be UTF-8 (RFC 8259).

    ``json.loads`` of bytes would also take UTF-16 and UTF-32. It raises
    ``RecursionError`` for nesting deeper than Python reads.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400,
            "invalid_json",
            "The body is not UTF-8: byte 0x%02x at offset %d." % (body[exc.start], exc.start),
        ) from None
    try:
        return json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", "The body is not valid JSON: %s" % exc) from None
    except RecursionError:
        raise ApiError(
            400, "invalid_payload", "The body is nested too deeply to be read."
        ) from None


def _parse_int(text: str) -> int:
    """A JSON integer; one longer than Python converts (4,300 digits) is refused."""
    try:
        return int(text)
    except ValueError:
        raise ApiError(
            400,
            "invalid_payload",
            "The body holds an integer of %d digits, too long to be read." % len(text.lstrip("-")),
        ) from None
