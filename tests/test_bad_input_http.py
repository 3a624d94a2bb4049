"""Bad input at the HTTP event endpoint.

Whatever a client sends, it gets a JSON error with a status it can act on and a detail
that says what is wrong, never a 500 or an HTML page, and nothing is stored: no event row,
no change to the execution or its tasks.
"""

from __future__ import annotations

import io
import json
from typing import Any, cast

import pytest
from django.http import HttpResponse
from django.test import Client
from django.test.client import FakePayload

import django_zart as zart
from django_zart.models import Event, Execution, Task

URL = "/zart/executions/%s/events/%s"
ID = "bad-input"
LIMIT = 32 * 1024


@pytest.fixture(autouse=True)
def _endpoint(settings: Any) -> None:
    settings.ZART = {**settings.ZART, "EVENT_TOKENS": ["s3cret"], "MAX_PAYLOAD_BYTES": LIMIT}


@pytest.fixture
def execution() -> tuple[Any, ...]:
    """An execution waiting to be run, and its state before the request."""
    zart.start("approval", {}, execution_id=ID)
    return state()


def state() -> tuple[Any, ...]:
    return (
        list(Execution.objects.filter(pk=ID).values()),
        list(Task.objects.filter(execution_id=ID).order_by("pk").values()),
        Event.objects.count(),
    )


def send(
    client: Client,
    body: bytes = b"",
    *,
    method: str = "POST",
    execution_id: str = ID,
    name: str = "approved",
    auth: str | None = "Bearer s3cret",
    stream: object = None,
    **headers: str,
) -> HttpResponse:
    """A request as a server hands it to Django: with no body, no Content-Length.

    ``stream`` stands in for the body the server reads from (``wsgi.input``), for the
    cases where it differs from what the headers declare.
    """
    environ: dict[str, Any] = dict(headers)
    if auth is not None:
        environ["HTTP_AUTHORIZATION"] = auth
    if stream is not None:
        environ["wsgi.input"] = stream
    url = URL % (execution_id, name)
    response = client.generic(method, url, body, content_type="application/json", **environ)
    # The view answers with a JsonResponse, whose content the checks below read.
    return cast(HttpResponse, response)


def refused(response: HttpResponse, status: int, error: str) -> str:
    """Check a JSON error answer; return its detail."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"error", "detail"} and body["error"] == error, body
    assert isinstance(body["detail"], str) and len(body["detail"]) > 10
    return str(body["detail"])


@pytest.mark.django_db
def test_chunked_body_is_411(client: Client, execution: tuple[Any, ...]) -> None:
    # A WSGI server hands over the de-chunked body with no CONTENT_LENGTH.
    response = send(client, stream=FakePayload(b'{"by": "x"}'), HTTP_TRANSFER_ENCODING="chunked")
    detail = refused(response, 411, "length_required")
    assert "Content-Length" in detail
    assert state() == execution


@pytest.mark.django_db
def test_chunked_body_with_a_content_length_is_411(
    client: Client, execution: tuple[Any, ...]
) -> None:
    # Both headers: Transfer-Encoding wins in HTTP/1.1, so the length cannot be trusted.
    response = send(client, b'{"by": "x"}', HTTP_TRANSFER_ENCODING="chunked")
    assert "Transfer-Encoding" in refused(response, 411, "length_required")
    assert state() == execution


@pytest.mark.django_db
def test_empty_post_without_length_is_a_null_event(client: Client, execution: Any) -> None:
    response = send(client)
    assert response.status_code == 202
    assert json.loads(response.content) == {
        "execution_id": ID,
        "event": "approved",
        "waiting": False,
    }
    assert Event.objects.get(execution_id=ID).payload is None


@pytest.mark.django_db
@pytest.mark.parametrize("length", ["abc", "-1", "1_0", "0x10", "\xb2"])
def test_malformed_content_length_is_400(
    client: Client, execution: tuple[Any, ...], length: str
) -> None:
    detail = refused(send(client, b"{}", CONTENT_LENGTH=length), 400, "invalid_content_length")
    assert "Content-Length" in detail
    assert state() == execution


@pytest.mark.django_db
@pytest.mark.parametrize("length", [str(LIMIT + 1), "9" * 5000], ids=["limit+1", "5000-digits"])
def test_content_length_over_the_limit_is_413_before_reading(
    client: Client, execution: tuple[Any, ...], length: str
) -> None:
    stream = io.BytesIO(b"{}")
    response = send(client, CONTENT_LENGTH=length, stream=stream)
    assert "%d bytes" % LIMIT in refused(response, 413, "payload_too_large")
    assert stream.tell() == 0
    assert state() == execution


@pytest.mark.django_db
def test_understated_content_length_reads_no_further(
    client: Client, execution: tuple[Any, ...]
) -> None:
    # A body over the limit whose Content-Length claims 10 bytes: only 10 are read.
    stream = io.BytesIO(json.dumps({"blob": "x" * 2 * LIMIT}).encode())
    response = send(client, CONTENT_LENGTH="10", stream=stream)
    assert "not valid JSON" in refused(response, 400, "invalid_json")
    assert stream.tell() == 10
    assert state() == execution


@pytest.mark.django_db
def test_body_over_django_upload_limit_is_413(
    client: Client, execution: tuple[Any, ...], settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = send(client, json.dumps({"blob": "x" * 200}).encode())
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in refused(response, 413, "payload_too_large")
    assert state() == execution


@pytest.mark.django_db
def test_unreadable_body_is_400(client: Client, execution: tuple[Any, ...]) -> None:
    class Disconnected(io.RawIOBase):
        def readinto(self, buffer: Any) -> int:
            raise ConnectionResetError("client went away")

    response = send(client, CONTENT_LENGTH="10", stream=Disconnected())
    assert "could not be read" in refused(response, 400, "unreadable_body")
    assert state() == execution


@pytest.mark.django_db
def test_payload_within_the_limit_as_utf8_is_accepted(
    client: Client, execution: tuple[Any, ...]
) -> None:
    """The limit counts the bytes stored: an "é" is two of them, not the six of "\u00e9"."""
    body = json.dumps("é" * (LIMIT // 3), ensure_ascii=False).encode()
    assert len(body) <= LIMIT
    assert send(client, body).status_code == 202


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param(b'"\xff"', "not UTF-8", id="latin-1"),
        pytest.param(b'"\xed\xa0\x80"', "not UTF-8", id="utf8-encoded-surrogate"),
        pytest.param('{"by": "x"}'.encode("utf-16"), "not UTF-8", id="utf-16"),
        pytest.param(b'"a\x00b"', "not valid JSON", id="raw-nul"),
        pytest.param(b"{nope", "not valid JSON", id="syntax"),
    ],
)
def test_body_that_is_not_utf8_json_is_400(
    client: Client, execution: tuple[Any, ...], body: bytes, says: str
) -> None:
    assert says in refused(send(client, body), 400, "invalid_json")
    assert state() == execution


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param(b'{"by": "a\\u0000b"}', "NUL", id="nul-in-value"),
        pytest.param(b'{"a\\u0000": 1}', "NUL", id="nul-in-key"),
        pytest.param(b'"\\ud800"', "surrogate", id="lone-high-surrogate"),
        pytest.param(b'["ok", "\\udfff"]', "surrogate", id="lone-low-surrogate"),
        # More digits or nesting than Python's json reads, then more than can be stored.
        pytest.param(b"1" + b"0" * 5000, "digits", id="5001-digits"),
        pytest.param(b"-1" + b"0" * 4100, "digits", id="4101-digits"),
        pytest.param(b"[" * 10_000 + b"]" * 10_000, "deep", id="10000-deep"),
        pytest.param(b'{"a": ' * 300 + b"1" + b"}" * 300, "deep", id="300-deep"),
        pytest.param(b"1e999", "inf", id="infinite-float"),
        pytest.param(b"[NaN]", "nan", id="nan"),
    ],
)
def test_unstorable_payload_is_400(
    client: Client, execution: tuple[Any, ...], body: bytes, says: str
) -> None:
    assert says in refused(send(client, body), 400, "invalid_payload")
    assert state() == execution


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("execution_id", "name", "says"),
    [
        pytest.param(ID, "appr%00oved", "NUL", id="nul-in-name"),
        pytest.param("bad%00input", "approved", "NUL", id="nul-in-id"),
        pytest.param(ID, "x" * 201, "longer than 200", id="name-too-long"),
        pytest.param("x" * 256, "approved", "longer than 255", id="id-too-long"),
        pytest.param(ID, "%20", "empty", id="blank-name"),
    ],
)
def test_unstorable_id_or_name_is_400(
    client: Client, execution: tuple[Any, ...], execution_id: str, name: str, says: str
) -> None:
    response = send(client, b"{}", execution_id=execution_id, name=name)
    assert says in refused(response, 400, "invalid_argument")
    assert state() == execution


@pytest.mark.django_db
def test_longest_id_and_name_are_stored_or_not_found(client: Client) -> None:
    longest = "i" * 255
    assert "No execution" in refused(send(client, execution_id=longest), 404, "not_found")
    zart.start("approval", {}, execution_id=longest)
    response = send(client, b"{}", execution_id=longest, name="n" * 200)
    assert response.status_code == 202
    assert Event.objects.get(execution_id=longest).name == "n" * 200


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_405(client: Client, execution: tuple[Any, ...], method: str) -> None:
    response = send(client, b"{}", method=method)
    assert "POST" in refused(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"
    assert state() == execution


@pytest.mark.django_db
@pytest.mark.parametrize(
    "auth",
    [None, "Bearer", "Bearer    ", "Basic czNjcmV0", "Bearer\ts3cret", "s3cret"],
)
def test_missing_or_malformed_authorization_is_401(
    client: Client, execution: tuple[Any, ...], auth: str | None
) -> None:
    response = send(client, b"{}", auth=auth)
    assert "Bearer" in refused(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == 'Bearer realm="django-zart"'
    assert state() == execution


@pytest.mark.django_db
@pytest.mark.parametrize(
    "auth",
    [
        "Bearer s3cret extra",
        "Bearer s3cret, Bearer s3cret",  # a duplicated header, as servers join them
        "Bearer s3cr\xe9t",  # Latin-1, as WSGI decodes header bytes
        "Bearer s3cret\x00",
        "Bearer \ud800",
        pytest.param("Bearer " + "s" * 10_000, id="Bearer s*10000"),
    ],
)
def test_odd_tokens_are_403(client: Client, execution: tuple[Any, ...], auth: str) -> None:
    assert "token" in refused(send(client, b"{}", auth=auth), 403, "forbidden")
    assert state() == execution
