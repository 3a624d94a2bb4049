"""The OpenAPI document: valid, true to the routes, and the API behind it never answers 5xx.

The last test is schemathesis against a real server (pytest-django's ``live_server``):
it generates requests from the document, valid and invalid ones, with a token of every
scope, and fails on any server error. It is bounded to a few examples per operation so
it stays well under a minute.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error

from django_zart.api import views
from django_zart.api.openapi import document

TOKEN = "schemathesis-0123456789"


def test_document_is_valid_openapi_3_1() -> None:
    spec = document("/zart")
    assert spec["openapi"] == "3.1.0"
    validate(spec)


def test_document_is_served_open_with_the_prefix(client: Client) -> None:
    response = client.get("/zart/openapi.json")
    assert response.status_code == 200
    served = response.json()
    assert served["servers"] == [{"url": "/zart"}]
    assert served["paths"] == document("/zart")["paths"]


def described_routes() -> dict[str, set[str]]:
    """Every route of django_zart.urls as an OpenAPI path, with the methods it answers."""
    (zart,) = [
        r
        for r in get_resolver().url_patterns
        if isinstance(r, URLResolver) and r.namespace == "django_zart"
    ]
    routes: dict[str, set[str]] = {}
    for pattern in zart.url_patterns:
        assert isinstance(pattern, URLPattern)
        methods = getattr(pattern.callback, "allowed_methods", None)
        if methods is None:  # the catch-all 404
            continue
        route = str(pattern.pattern)
        for converter in ("path", "str", "int"):
            route = route.replace("<%s:" % converter, "{")
        routes["/" + route.replace(">", "}")] = {m.lower() for m in methods}
    return routes


def test_every_route_is_described_with_its_methods() -> None:
    paths = document()["paths"]
    assert {path: set(methods) for path, methods in paths.items()} == described_routes()


def test_every_operation_has_error_answers_as_json() -> None:
    spec = document()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            secured = operation["security"] != []
            statuses = set(operation["responses"])
            if secured:
                assert {"401", "403"} <= statuses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413"} <= statuses, (method, path)
    error = spec["components"]["responses"]["404"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}


@pytest.fixture
def api(live_server: Any, settings: Any, monkeypatch: Any) -> str:
    """The live API's base URL, with a token of every scope configured."""
    settings.ZART = {**settings.ZART, "API_TOKENS": {TOKEN: ["read", "write", "events"]}}
    # Long polls answer within a fraction of a second; a longer timeout is a 400.
    monkeypatch.setattr(views, "MAX_WAIT", 0.2)
    return str(live_server.url) + "/zart"


# Built at import, once Django is set up: schemathesis' lazy, fixture-built schemas
# do not run under pytest 9.
schema = schemathesis.openapi.from_dict(document("/zart"))


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_answers_no_server_error(case: Any, api: str) -> None:
    case.call_and_validate(
        base_url=api, headers={"Authorization": "Bearer %s" % TOKEN}, checks=[not_a_server_error]
    )


def test_the_document_states_the_access_each_route_checks() -> None:
    """Every operation's scope and permission in the document are the ones its route
    enforces: the description cannot drift from the code."""
    from django.urls import resolve

    from django_zart.api.openapi import OPERATIONS

    for operation in OPERATIONS:
        url = "/zart" + operation.path.format(execution_id="x", name="n", rule_id="1")
        methods = resolve(url).func.methods  # type: ignore[attr-defined]
        access = methods[operation.method.upper()].access
        if operation.scope is None:
            assert access is None, operation.path
            continue
        assert (access.scope, access.permission) == (operation.scope, operation.permission), (
            operation.method,
            operation.path,
        )
