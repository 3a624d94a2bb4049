"""One view per URL, dispatching on the method, with the checks every endpoint shares.

The order is the same everywhere: the method (405 with ``Allow``), then the caller (401,
403), then the handler, whose ``ApiError`` or engine error becomes a JSON answer. The
views are CSRF-exempt for Django's middleware because a token call needs no CSRF token;
``auth`` runs the CSRF check itself on session calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..errors import ZartError
from .auth import Access, Caller, authenticate
from .errors import ApiError, error_response, from_engine

Handler = Callable[..., HttpResponse]
"""``handler(request, caller, **url_kwargs)``; ``caller`` is ``None`` on open endpoints."""


@dataclass(frozen=True, slots=True)
class Method:
    handler: Handler
    access: Access | None
    """``None``: open to anyone (health checks, the API description)."""


def endpoint(**methods: Method) -> Callable[..., HttpResponse]:
    """A view answering the given methods (``GET=Method(...)``, ``POST=...``)."""
    allow = ", ".join(sorted(methods))

    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        method = methods.get(request.method or "")
        if method is None:
            return error_response(
                405,
                "method_not_allowed",
                "Use %s here, not %s." % (" or ".join(sorted(methods)), request.method),
                allow=allow,
            )
        try:
            caller: Caller | None = None
            if method.access is not None:
                caller = authenticate(request, method.access)
            return method.handler(request, caller, **kwargs)
        except ApiError as refusal:
            return refusal.response()
        except ZartError as exc:
            mapped = from_engine(exc)
            if mapped is None:
                raise
            return mapped.response()

    view.allowed_methods = tuple(sorted(methods))  # type: ignore[attr-defined]
    view.methods = methods  # type: ignore[attr-defined]  # read by the OpenAPI agreement test
    return view


@csrf_exempt
def unknown_path(request: HttpRequest, path: str = "") -> HttpResponse:
    """Whatever matched no route under the prefix: a JSON 404, not Django's HTML page."""
    return error_response(404, "not_found", "No endpoint is at %r." % request.path[:300])
