"""JSON encoding of inputs, step results, outputs and errors.

Values are stored as JSON, and a workflow must see the same value whether a step just ran
or its result was replayed from the database. So the engine always hands back the decoded
copy of what it stored, and the types below round-trip exactly:

* JSON types: ``dict`` (string keys), ``list``, ``str``, ``int``, finite ``float``,
  ``bool`` and ``None``;
* ``datetime``, ``date``, ``time``, ``timedelta``, ``Decimal``, ``UUID``, ``tuple``,
  ``set`` and ``frozenset``, stored as ``{"$zart": "<type>", "value": ...}``.

Anything else raises ``SerializationError`` naming what was being stored and the type.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime, parse_duration, parse_time
from django.utils.duration import duration_iso_string

from .errors import PayloadTooLarge, SerializationError

TAG = "$zart"

_ENCODERS: list[tuple[type, str, Callable[[Any], Any]]] = [
    (datetime.datetime, "datetime", lambda v: v.isoformat()),
    (datetime.date, "date", lambda v: v.isoformat()),
    (datetime.time, "time", lambda v: v.isoformat()),
    (datetime.timedelta, "timedelta", duration_iso_string),
    (decimal.Decimal, "decimal", str),
    (uuid.UUID, "uuid", str),
]

_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": parse_datetime,
    "date": parse_date,
    "time": parse_time,
    "timedelta": parse_duration,
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
}


def encode(value: Any, what: str) -> Any:
    """Return the JSON-ready form of ``value``; ``what`` names it in errors."""
    return _encode(value, what, "value")


def _encode(value: Any, what: str, path: str) -> Any:  # noqa: C901 - one branch per type
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(what, "%s is %r, which JSON cannot hold." % (path, value))
        return value
    if isinstance(value, list):
        return [_encode(v, what, "%s[%d]" % (path, i)) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    what,
                    "%s has a key of type %s; JSON objects only have string keys."
                    % (path, type(key).__name__),
                )
            out[key] = _encode(item, what, "%s[%r]" % (path, key))
        return {TAG: "dict", "value": out} if TAG in out else out
    if isinstance(value, tuple | set | frozenset):
        kind = type(value).__name__ if type(value) in (tuple, set, frozenset) else None
        if kind is not None:
            items = sorted(value, key=repr) if kind != "tuple" else value
            return {TAG: kind, "value": [_encode(v, what, path + "[]") for v in items]}
    for cls, tag, encoder in _ENCODERS:
        if isinstance(value, cls):
            if isinstance(value, decimal.Decimal) and not value.is_finite():
                break
            return {TAG: tag, "value": encoder(value)}
    raise SerializationError(
        what,
        "%s is of type %s.%s, which is not JSON-serializable. Return JSON types, "
        "datetimes, decimals or UUIDs (see the README), or convert it first."
        % (path, type(value).__module__, type(value).__qualname__),
    )


def decode(value: Any) -> Any:
    """Inverse of ``encode``."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        tag = value.get(TAG)
        if tag is None:
            return {k: decode(v) for k, v in value.items()}
        inner = value["value"]
        if tag == "dict":
            return {k: decode(v) for k, v in inner.items()}
        if tag == "tuple":
            return tuple(decode(v) for v in inner)
        if tag == "set":
            return {decode(v) for v in inner}
        if tag == "frozenset":
            return frozenset(decode(v) for v in inner)
        return _DECODERS[tag](inner)
    return value


def dumps(encoded: Any, what: str, limit: int) -> str:
    """Serialize an encoded value, enforcing the payload size limit."""
    text = json.dumps(encoded, separators=(",", ":"), allow_nan=False)
    size = len(text.encode())
    if size > limit:
        raise PayloadTooLarge(what, size, limit)
    return text


ERROR_LIMIT = 10 * 1024 * 1024
"""Errors are stored whatever MAX_PAYLOAD_BYTES says: losing why something failed is worse."""


def error_text(exc: BaseException) -> str:
    """The stored form of an error, as JSON text."""
    return dumps(describe_exception(exc), "an error", ERROR_LIMIT)


def describe_exception(exc: BaseException) -> dict[str, Any]:
    """The stored form of an error: dotted type, message and traceback."""
    cls = type(exc)
    error: dict[str, Any] = {
        "type": "%s.%s" % (cls.__module__, cls.__qualname__),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
    for attr in ("step", "attempts"):
        if hasattr(exc, attr):
            error[attr] = getattr(exc, attr)
    cause = getattr(exc, "error", None)
    if isinstance(cause, dict) and "type" in cause:
        error["cause"] = {k: cause[k] for k in ("type", "message") if k in cause}
    return error
