"""Events from outside: the HTTP endpoint and ``manage.py zart send-event``."""

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

import django_zart as zart
from django_zart.models import Event

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/zart/executions/%s/events/%s"
TOKENS = {"EVENT_TOKENS": ["s3cret", "other-service"], "MAX_PAYLOAD_BYTES": 200}


def post(
    client: Client,
    execution_id: str,
    name: str,
    body: object = None,
    *,
    token: str | None = "s3cret",
    raw: bytes | None = None,
) -> tuple[int, dict]:
    headers = {"Authorization": "Bearer %s" % token} if token is not None else {}
    data = raw if raw is not None else json.dumps(body).encode()
    response = client.post(
        URL % (execution_id, name), data=data, content_type="application/json", headers=headers
    )
    return response.status_code, response.json()


@pytest.fixture
def tokens(settings: Any) -> None:
    settings.ZART = TOKENS


@pytest.mark.usefixtures("tokens")
class TestHttp:
    def test_delivers_with_a_valid_token(self, client: Client) -> None:
        zart.start("approval", {}, execution_id="h1")
        status, body = post(client, "h1", "approved", {"by": "web"})
        assert status == 202 and body == {
            "execution_id": "h1",
            "event": "approved",
            "waiting": False,
        }
        assert Event.objects.get(execution_id="h1").payload == {"by": "web"}
        status, _ = post(client, "h1", "approved", {"by": "svc"}, token="other-service")
        assert status == 202

    def test_ids_with_slashes(self, client: Client) -> None:
        zart.start("approval", {}, execution_id="orders/42")
        assert post(client, "orders/42", "approved", {"by": "x"})[0] == 202

    def test_missing_or_malformed_auth_is_401(self, client: Client) -> None:
        zart.start("approval", {}, execution_id="h2")
        status, body = post(client, "h2", "approved", {}, token=None)
        assert status == 401 and body["error"] == "unauthorized"
        response = client.post(
            URL % ("h2", "approved"),
            data="{}",
            content_type="application/json",
            headers={"Authorization": "Basic abc"},
        )
        assert response.status_code == 401 and "Bearer" in response["WWW-Authenticate"]

    def test_wrong_token_is_403(self, client: Client) -> None:
        zart.start("approval", {}, execution_id="h3")
        status, body = post(client, "h3", "approved", {}, token="s3cret-not")
        assert status == 403 and body["error"] == "forbidden"
        assert not Event.objects.exists()

    def test_unknown_execution_is_404(self, client: Client) -> None:
        assert post(client, "missing", "approved", {})[0] == 404

    def test_finished_execution_is_409(self, client: Client, drain: Callable[..., None]) -> None:
        zart.start("arith", {"a": 1, "b": 1}, execution_id="h4")
        drain("h4")
        status, body = post(client, "h4", "approved", {})
        assert status == 409 and body["error"] == "finished"

    def test_oversized_body_is_413(self, client: Client) -> None:
        zart.start("approval", {}, execution_id="h5")
        status, body = post(client, "h5", "approved", {"blob": "x" * 300})
        assert status == 413 and body["error"] == "payload_too_large"
        assert not Event.objects.exists()

    def test_invalid_json_is_400(self, client: Client) -> None:
        zart.start("approval", {}, execution_id="h6")
        status, body = post(client, "h6", "approved", raw=b"{nope")
        assert status == 400 and body["error"] == "invalid_json"

    def test_only_post(self, client: Client) -> None:
        assert client.get(URL % ("x", "y")).status_code == 405


def test_no_configured_token_refuses_everything(client: Client) -> None:
    zart.start("approval", {}, execution_id="closed")
    assert post(client, "closed", "approved", {}, token="anything")[0] == 403
    assert post(client, "closed", "approved", {}, token="")[0] == 401
    assert not Event.objects.exists()


class TestCommand:
    def test_send_event(self, capsys: pytest.CaptureFixture[str]) -> None:
        zart.start("approval", {}, execution_id="c1")
        call_command("zart", "send-event", "c1", "approved", "--data", '{"by": "cli"}')
        assert "kept for its next wait" in capsys.readouterr().out
        assert Event.objects.get(execution_id="c1").payload == {"by": "cli"}

    def test_errors(self) -> None:
        with pytest.raises(CommandError, match="No execution"):
            call_command("zart", "send-event", "nope", "approved")
        zart.start("approval", {}, execution_id="c2")
        with pytest.raises(CommandError, match="not valid JSON"):
            call_command("zart", "send-event", "c2", "approved", "--data", "{x")
