"""Who is calling, and whether they may: bearer tokens with scopes, or a staff session.

A request with an ``Authorization`` header is a token call: the token is looked up in
``ZART["API_TOKENS"]`` (token -> scopes) and ``ZART["EVENT_TOKENS"]`` (tokens with the
``events`` scope only), comparing it with every configured token in constant time, so
response times tell nothing about how close a guess was. A request without one is a
session call, allowed to an active staff user holding the endpoint's Django permission.
A session rides on a cookie the browser sends by itself, so a session call that changes
state must pass Django's CSRF check; a token call cannot be forged that way and is
exempt from it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from ..conf import get_settings
from .errors import ApiError

READ = "read"
WRITE = "write"
EVENTS = "events"
SCOPES = (READ, WRITE, EVENTS)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


@dataclass(frozen=True, slots=True)
class Access:
    """What an operation needs: a token's scope, or a session user's permission."""

    scope: str
    permission: str
    """Codename in the ``django_zart`` app, e.g. ``"view_execution"``."""
    unknown_token: int = 401
    """Status for a token that is not configured. The event endpoint answered 403 for it
    before the rest of the API existed, and webhook senders rely on that."""


@dataclass(frozen=True, slots=True)
class Caller:
    by: str
    """Who asked, as the operations record it: ``http:user:<username>`` or
    ``http:token:<first 8 hex digits of the token's SHA-256>``."""


def authenticate(request: HttpRequest, access: Access) -> Caller:
    """The caller, or ``ApiError`` 401 (who?) or 403 (not allowed)."""
    if "Authorization" in request.headers:
        return _token_caller(request, access)
    return _session_caller(request, access)


def _token_caller(request: HttpRequest, access: Access) -> Caller:
    scheme, _, token = request.headers["Authorization"].partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "Send 'Authorization: Bearer <token>'.")
    scopes = token_scopes(token)
    if scopes is None:
        if access.unknown_token == 403:
            raise ApiError(403, "forbidden", "This token may not %s." % _WHAT[access.scope])
        raise ApiError(401, "unauthorized", "This token is not configured (ZART['API_TOKENS']).")
    if access.scope not in scopes:
        raise ApiError(
            403,
            "forbidden",
            "This token may not %s: that needs the %r scope." % (_WHAT[access.scope], access.scope),
        )
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    return Caller(by="http:token:%s" % digest[:8])


_WHAT = {READ: "read", WRITE: "change executions or pause rules", EVENTS: "send events"}


def token_scopes(token: str) -> frozenset[str] | None:
    """The scopes of ``token``, or ``None`` if it is not configured.

    Every configured token is compared, with no early exit. The token is compared as
    bytes, encoded so that any string a server or a test hands over compares instead of
    raising.
    """
    given = token.encode("utf-8", "surrogatepass")
    settings = get_settings()
    found = False
    scopes: set[str] = set()
    for known, granted in settings.api_tokens.items():
        if hmac.compare_digest(given, known.encode()):
            found = True
            scopes |= granted
    for known in settings.event_tokens:
        if hmac.compare_digest(given, known.encode()):
            found = True
            scopes.add(EVENTS)
    return frozenset(scopes) if found else None


def _session_caller(request: HttpRequest, access: Access) -> Caller:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        raise ApiError(
            401,
            "unauthorized",
            "Send 'Authorization: Bearer <token>', or log in as a staff user.",
        )
    if not (user.is_active and user.is_staff):
        raise ApiError(403, "forbidden", "Only active staff users may call the API with a session.")
    permission = "django_zart.%s" % access.permission
    if not user.has_perm(permission):
        raise ApiError(403, "forbidden", "This needs the permission %r." % permission)
    if request.method not in SAFE_METHODS:
        _check_csrf(request)
    return Caller(by="http:user:%s" % user.get_username())


def _check_csrf(request: HttpRequest) -> None:
    """Django's own CSRF check (origin, referer, token), run on session calls only."""
    check = CsrfViewMiddleware(_unused)
    check.process_request(request)
    if check.process_view(request, _unused, (), {}) is not None:
        raise ApiError(
            403,
            "csrf_failed",
            "CSRF check failed. A session call that changes state must send the CSRF "
            "token (the csrftoken cookie's value) in the X-CSRFToken header.",
        )


def _unused(request: HttpRequest) -> HttpResponse:
    """Stands for the view in the CSRF check, which only looks at its attributes."""
    raise AssertionError("not called")
