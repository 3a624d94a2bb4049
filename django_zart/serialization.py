"""JSON encoding of inputs, step results, outputs and errors.

Values are stored as JSON, and a workflow must see the same value whether a step just ran
or its result was replayed from the database. So the engine always hands back the decoded
copy of what it stored, and the types below round-trip exactly:

* JSON types: ``dict`` (string keys), ``list``, ``str``, ``int``, finite ``float``,
  ``bool`` and ``None``;
* ``datetime``, ``date``, ``time``, ``timedelta``, ``Decimal``, ``UUID``, ``tuple``,
  ``set`` and ``frozenset``, stored as ``{"$zart": "<type>", "value": ...}``.

Anything else raises ``SerializationError`` naming what was being stored and the type.
So does what the database cannot store or read back: a NUL character or a lone
surrogate in a string, an integer of more than 4,000 digits, nesting deeper than 200
levels. This is the one boundary where values are refused, so every entry point
(``start``, ``send_event``, step results, outputs, branch arguments) refuses them alike.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import math
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime, parse_duration, parse_time
from django.utils.duration import duration_iso_string

from .errors import InvalidArgument, PayloadTooLarge, SerializationError
from .names import UNSTORABLE, unstorable

TAG = "$zart"

MAX_DEPTH = 200
"""Nesting levels of lists and dicts a stored value may have."""

MAX_INT_DIGITS = 4000
"""Digits of the largest integer stored; Python refuses to print much longer ones."""

_MAX_INT = 10**MAX_INT_DIGITS

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
    try:
        return _encode(value, 0)
    except _Refused as refused:
        path = "value" + "".join(reversed(refused.path))
        if len(path) > 200:
            path = "%s…%s" % (path[:100], path[-100:])
        raise SerializationError(what, refused.problem % path) from None


class _Refused(Exception):
    """Raised deep in a value; collects the path to it on the way out."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        """A message with ``%s`` where the path goes."""
        self.path: list[str] = []


def _encode(value: Any, depth: int) -> Any:  # noqa: C901 - one branch per type
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int):
        if not -_MAX_INT < value < _MAX_INT:
            raise _Refused("%%s is an integer of more than %d digits." % MAX_INT_DIGITS)
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused("%%s is %r, which JSON cannot hold." % value)
        text = repr(value)
        # PostgreSQL keeps 1e+16 as 10000000000000000, which reads back as an int.
        return {TAG: "float", "value": text} if "e" in text else float(value)
    if depth >= MAX_DEPTH and isinstance(value, list | dict | tuple | set | frozenset):
        raise _Refused("%%s is nested more than %d levels deep." % MAX_DEPTH)
    if isinstance(value, list):
        return _items(value, depth, "[%d]")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Refused(
                    "%%s has a key of type %s; JSON objects only have string keys."
                    % type(key).__name__
                )
            problem = unstorable(key)
            if problem is not None:
                raise _Refused(
                    "a key of %%s contains %s, which the database cannot store." % problem
                )
            try:
                out[key] = _encode(item, depth + 1)
            except _Refused as refused:
                refused.path.append("[%r]" % key[:50])
                raise
        return {TAG: "dict", "value": out} if TAG in out else out
    if type(value) in (tuple, set, frozenset):
        kind = type(value).__name__
        items = list(value) if kind == "tuple" else sorted(value, key=repr)
        return {TAG: kind, "value": _items(items, depth, "[%d]")}
    for cls, tag, encoder in _ENCODERS:
        if isinstance(value, cls):
            if isinstance(value, decimal.Decimal) and not value.is_finite():
                break
            return {TAG: tag, "value": encoder(value)}
    raise _Refused(
        "%%s is of type %s.%s, which is not JSON-serializable. Return JSON types, "
        "datetimes, decimals or UUIDs (see the README), or convert it first."
        % (type(value).__module__, type(value).__qualname__)
    )


def _items(values: list[Any], depth: int, step: str) -> list[Any]:
    out = []
    for index, item in enumerate(values):
        try:
            out.append(_encode(item, depth + 1))
        except _Refused as refused:
            refused.path.append(step % index)
            raise
    return out


def _text(value: str) -> str:
    problem = unstorable(value)
    if problem is not None:
        raise _Refused("%%s contains %s, which the database cannot store." % problem)
    return str(value)


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
        if tag == "float":
            return float(inner)
        return _DECODERS[tag](inner)
    return value


def dumps(encoded: Any, what: str, limit: int) -> str:
    """Serialize an encoded value, enforcing the payload size limit."""
    text = json.dumps(encoded, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    size = len(text.encode())
    if size > limit:
        raise PayloadTooLarge(what, size, limit)
    return text


def digest(value: Any) -> str:
    """A short, stable digest of a value (a call's arguments); ``""`` if it holds
    something that has no stable text, such as a model instance passed to a step.

    Only compared, never decoded: the C JSON encoder does the work, with the types of
    ``encode`` written as their text.
    """
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_digestable)
    except (TypeError, ValueError, RecursionError):
        return ""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def _digestable(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    for cls, tag, encoder in _ENCODERS:
        if isinstance(value, cls):
            return {TAG: tag, "value": encoder(value)}
    raise TypeError(type(value).__name__)


def refused(what: str, exc: BaseException) -> SerializationError:
    """The error for a value that passed the checks here but that the database refused."""
    return SerializationError(what, "the database refused it (%s)." % clean(str(exc))[:500])


ERROR_LIMIT = 1024 * 1024
"""Characters of an error's message and traceback kept: the ends of a traceback say the
most, so a longer one keeps its head and its tail."""


def clean(text: str) -> str:
    """``text`` with what the database cannot store made visible instead: a stored error
    must always be storable, or the failure it records would be lost."""
    return UNSTORABLE.sub(lambda m: "\\x00" if m.group() == "\x00" else "\ufffd", text)


def error_text(exc: BaseException) -> str:
    """The stored form of an error, as JSON text; always storable."""
    return error_json(describe_exception(exc))


def error_json(error: dict[str, Any]) -> str:
    """JSON text of an error made of cleaned parts (see ``describe_exception``)."""
    return json.dumps(error, separators=(",", ":"))


def describe_exception(exc: BaseException) -> dict[str, Any]:
    """The stored form of an error: dotted type, message and traceback."""
    cls = type(exc)
    error: dict[str, Any] = {
        "type": clean("%s.%s" % (cls.__module__, cls.__qualname__)),
        "message": _shorten(clean(_text_of(exc))),
        "traceback": _shorten(clean(_traceback_of(exc))),
    }
    for attr in ("step", "attempts"):
        value = getattr(exc, attr, None)
        if isinstance(value, str | int) and not isinstance(value, bool):
            error[attr] = clean(value) if isinstance(value, str) else value
    cause = getattr(exc, "error", None)
    if isinstance(cause, dict) and "type" in cause:
        error["cause"] = {
            k: clean(str(cause[k]))[:ERROR_LIMIT] for k in ("type", "message") if k in cause
        }
    return error


def _text_of(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as failure:
        return "<unprintable %s: str() raised %s>" % (type(exc).__name__, type(failure).__name__)


def _traceback_of(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except Exception as failure:
        return "<no traceback: formatting it raised %s>" % type(failure).__name__


def _shorten(text: str) -> str:
    if len(text) <= ERROR_LIMIT:
        return text
    half = ERROR_LIMIT // 2
    return "%s\n… (%d characters left out) …\n%s" % (
        text[:half],
        len(text) - 2 * half,
        text[-half:],
    )


def text_argument(value: Any, what: str, limit: int = 10_000) -> str:
    """A free-text argument (a reason, who asked) made storable: cleaned and cut."""
    if not isinstance(value, str):
        raise InvalidArgument("%s must be a string, not %r." % (what, value))
    return clean(value)[:limit]
