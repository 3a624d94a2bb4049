"""The HTTP API: each endpoint's answer, and each refusal with its status and no change.

Calls go through Django's test client with a bearer token unless a test is about
sessions. Rows come from factories where the state is all that matters, and from real
workflows run by a worker where an operation must find a history it can work on (those
tests commit, so the worker's threads see the rows).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import DatabaseError
from django.http import HttpResponse
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

import django_zart as zart
from django_zart.api import health
from django_zart.models import Event, Execution, Run, Step, Task
from django_zart.states import ExecutionStatus, StepStatus

from .factories import ExecutionFactory, RunFactory, StepAttemptFactory, StepFactory

pytestmark = pytest.mark.django_db

API = "/zart/"
ALL = "all-scopes-0123456789"
READER = "read-only-0123456789"
TOKENS = {ALL: ["read", "write", "events"], READER: ["read"]}


@pytest.fixture(autouse=True)
def tokens(settings: Any) -> None:
    settings.ZART = {**settings.ZART, "API_TOKENS": TOKENS, "EVENT_TOKENS": ["hook"]}


def call(
    client: Client,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = ALL,
    raw: bytes | None = None,
) -> HttpResponse:
    headers = {"Authorization": "Bearer %s" % token} if token is not None else {}
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    response = client.generic(
        method, API + path, data, content_type="application/json", headers=headers
    )
    return response  # type: ignore[return-value]


def answer(response: HttpResponse, status: int) -> Any:
    assert response.status_code == status, response.content[:1000]
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)


def refused(response: HttpResponse, status: int, error: str) -> str:
    body = answer(response, status)
    assert set(body) == {"error", "detail"} and body["error"] == error, body
    return str(body["detail"])


def token_by(token: str) -> str:
    return "http:token:%s" % hashlib.sha256(token.encode()).hexdigest()[:8]


# -- authentication -------------------------------------------------------------------


def test_no_token_is_401(client: Client) -> None:
    response = call(client, "GET", "executions", token=None)
    assert "Bearer" in refused(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == 'Bearer realm="django-zart"'


def test_unknown_token_is_401(client: Client) -> None:
    response = call(client, "GET", "executions", token=ALL + "x")
    refused(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_read_only_token_cannot_write(client: Client) -> None:
    response = call(client, "POST", "executions", {"workflow": "arith"}, token=READER)
    assert "'write'" in refused(response, 403, "forbidden")
    assert not Execution.objects.exists()
    assert answer(call(client, "GET", "executions", token=READER), 200)["executions"] == []


def test_event_token_only_sends_events(client: Client) -> None:
    ExecutionFactory(id="e1")
    refused(call(client, "GET", "executions/e1", token="hook"), 403, "forbidden")
    assert (
        call(client, "POST", "executions/e1/events/go", {"ok": 1}, token="hook").status_code == 202
    )
    assert call(client, "POST", "executions/e1/events/go", token=READER).status_code == 403
    sent_by = Event.objects.get(execution_id="e1").sent_by
    assert sent_by == "http:token:%s" % hashlib.sha256(b"hook").hexdigest()[:8]


def test_staff_session_needs_the_permission(client: Client) -> None:
    user = User.objects.create_user("dana", password="pw", is_staff=True)
    client.force_login(user)
    assert "view_execution" in refused(call(client, "GET", "stats", token=None), 403, "forbidden")
    user.user_permissions.add(Permission.objects.get(codename="view_execution"))
    client.force_login(User.objects.get(pk=user.pk))
    assert "executions" in answer(call(client, "GET", "stats", token=None), 200)


def test_session_of_a_non_staff_user_is_403(client: Client) -> None:
    client.force_login(User.objects.create_user("eve", password="pw"))
    assert "staff" in refused(call(client, "GET", "stats", token=None), 403, "forbidden")


def test_session_post_needs_the_csrf_token(admin_user: User) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    body = {"workflow": "arith", "input": {"a": 1, "b": 2}}
    assert "CSRF" in refused(
        call(browser, "POST", "executions", body, token=None), 403, "csrf_failed"
    )
    assert not Execution.objects.exists()
    csrf = "k" * 32  # a CSRF secret: the cookie, and the header proving the page read it
    browser.cookies["csrftoken"] = csrf
    response = browser.post(
        API + "executions",
        json.dumps(body),
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )
    started = answer(response, 201)
    assert Run.objects.get(execution_id=started["id"]).triggered_by == "http:user:admin"


def test_admin_session_reads_without_csrf(admin_client: Client) -> None:
    ExecutionFactory(id="seen")
    assert answer(call(admin_client, "GET", "executions/seen", token=None), 200)["id"] == "seen"


# -- routing ---------------------------------------------------------------------------


def test_wrong_method_is_405_with_allow(client: Client) -> None:
    response = call(client, "PUT", "executions")
    assert "GET or POST" in refused(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET, POST"


def test_unknown_path_is_a_json_404(client: Client) -> None:
    refused(call(client, "GET", "nothing/here"), 404, "not_found")
    refused(call(client, "GET", "executions/"), 404, "not_found")
    refused(call(client, "DELETE", "pause-rules/abc"), 404, "not_found")


# -- executions ------------------------------------------------------------------------


def test_start_answers_201_with_the_execution(client: Client) -> None:
    body = {"workflow": "arith", "input": {"a": 1, "b": 2}, "execution_id": "s1", "queue": "q"}
    started = answer(call(client, "POST", "executions", body), 201)
    assert started["id"] == "s1" and started["status"] == "PENDING" and started["queue"] == "q"
    assert started["input"] == {"a": 1, "b": 2} and started["finished"] is False
    assert Run.objects.get(execution_id="s1").triggered_by == token_by(ALL)


def test_start_with_a_priority(client: Client) -> None:
    body = {"workflow": "arith", "input": {"a": 1, "b": 2}, "execution_id": "p", "priority": 9}
    answer(call(client, "POST", "executions", body), 201)
    assert Task.objects.get(execution_id="p").priority == -9  # claimed before priority 0


def test_start_if_exists(client: Client) -> None:
    body = {"workflow": "arith", "input": {"a": 1, "b": 2}, "execution_id": "s2"}
    answer(call(client, "POST", "executions", body), 201)
    assert "s2" in refused(call(client, "POST", "executions", body), 409, "already_exists")
    again = answer(call(client, "POST", "executions", {**body, "if_exists": "return"}), 200)
    assert again["id"] == "s2"
    other = {**body, "workflow": "approval", "if_exists": "return"}
    refused(call(client, "POST", "executions", other), 409, "already_exists")
    assert Execution.objects.count() == 1


@pytest.mark.parametrize(
    ("raw", "error", "says"),
    [
        pytest.param(b"{nope", "invalid_json", "not valid JSON", id="syntax"),
        pytest.param(b"\xff", "invalid_json", "not UTF-8", id="latin-1"),
        pytest.param(b"[1]", "invalid_json", "JSON object", id="array"),
        pytest.param(b"{}", "invalid_argument", "'workflow'", id="no-workflow"),
        pytest.param(b'{"workflow": 1}', "invalid_argument", "a string", id="workflow-int"),
        pytest.param(b'{"workflow": "arith", "inptu": 1}', "invalid_argument", "inptu", id="typo"),
        pytest.param(b'{"workflow": "nope"}', "unknown_workflow", "nope", id="unknown"),
        pytest.param(
            b'{"workflow": "arith", "input": "\\u0000"}', "invalid_payload", "NUL", id="nul"
        ),
        pytest.param(
            b'{"workflow": "arith", "if_exists": "maybe"}', "invalid_argument", "if_exists", id="if"
        ),
        pytest.param(
            b'{"workflow": "arith", "priority": 1e9}', "invalid_argument", "priority", id="prio"
        ),
        pytest.param(
            b'{"workflow": "arith", "priority": 2000000}', "invalid_argument", "priority", id="big"
        ),
    ],
)
def test_start_with_bad_input_is_400(client: Client, raw: bytes, error: str, says: str) -> None:
    assert says in refused(call(client, "POST", "executions", raw=raw), 400, error)
    assert not Execution.objects.exists()


def test_start_with_too_large_input_is_413(client: Client, settings: Any) -> None:
    settings.ZART = {**settings.ZART, "MAX_PAYLOAD_BYTES": 100}
    body = {"workflow": "arith", "input": "x" * 200}
    refused(call(client, "POST", "executions", body), 413, "payload_too_large")
    assert not Execution.objects.exists()


def test_list_filters_and_pages_newest_first(client: Client) -> None:
    for i in range(5):
        ExecutionFactory(id="l%d" % i, workflow="wf-a" if i % 2 else "wf-b")
    ExecutionFactory(id="done", completed=True, workflow="wf-a")
    page = answer(call(client, "GET", "executions?limit=2"), 200)
    seen = [e["id"] for e in page["executions"]]
    for _ in range(5):
        if not page["next_cursor"]:
            break
        page = answer(call(client, "GET", "executions?limit=2&cursor=" + page["next_cursor"]), 200)
        seen += [e["id"] for e in page["executions"]]
    assert page["next_cursor"] is None
    newest_first = Execution.objects.order_by("-created_at", "-pk").values_list("pk", flat=True)
    assert seen == list(newest_first)
    found = answer(call(client, "GET", "executions?workflow=wf-a&status=PENDING,COMPLETED"), 200)
    assert sorted(e["id"] for e in found["executions"]) == ["done", "l1", "l3"]
    found = answer(call(client, "GET", "executions?status=COMPLETED&queue=default"), 200)
    assert [e["id"] for e in found["executions"]] == ["done"]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "limit=x",
        "limit=" + "9" * 5000,
        "status=DONE",
        "cursor=abc",
        "workflow=%00",
    ],
)
def test_list_with_bad_parameters_is_400(client: Client, query: str) -> None:
    refused(call(client, "GET", "executions?" + query), 400, "invalid_argument")


def test_execution_shows_runs_steps_attempts_and_decoded_values(client: Client) -> None:
    execution = ExecutionFactory(
        id="orders/7", failed=True, input={"$zart": "decimal", "value": "12.50"}
    )
    step = StepFactory(
        run=RunFactory(execution=execution),
        name="charge",
        position="charge",
        status=StepStatus.FAILED,
        result={"$zart": "set", "value": [1]},
        attempts=2,
    )
    StepAttemptFactory.create_batch(2, step=step)
    shown = answer(call(client, "GET", "executions/orders/7"), 200)
    assert shown["input"] == "12.50" and shown["status"] == "FAILED" and shown["finished"]
    assert shown["error"]["message"] == "card declined"
    assert [r["index"] for r in shown["runs"]] == [1]
    (step_shown,) = shown["steps"]
    assert step_shown["name"] == "charge" and step_shown["result"] == [1]
    assert [a["number"] for a in step_shown["attempt_history"]] == [1, 2]


def test_unknown_execution_is_404(client: Client) -> None:
    assert "nope" in refused(call(client, "GET", "executions/nope"), 404, "not_found")
    refused(call(client, "GET", "executions/a%00b"), 400, "invalid_argument")


@pytest.mark.django_db(transaction=True)
def test_wait(client: Client, drain: Callable[..., None]) -> None:
    zart.start("arith", {"a": 1, "b": 2}, execution_id="w1")
    waited = answer(call(client, "GET", "executions/w1/wait?timeout=0"), 200)
    assert waited["finished"] is False and waited["status"] == "PENDING"
    drain("w1")
    waited = answer(call(client, "GET", "executions/w1/wait?timeout=5"), 200)
    assert waited["finished"] is True and waited["output"] == {"sum": 113}
    refused(call(client, "GET", "executions/nope/wait?timeout=1"), 404, "not_found")
    for bad in ("-1", "61", "nan", "x"):
        refused(call(client, "GET", "executions/w1/wait?timeout=" + bad), 400, "invalid_argument")


# -- operations ------------------------------------------------------------------------


def test_cancel(client: Client) -> None:
    zart.start("approval", {}, execution_id="c1")
    cancelled = answer(call(client, "POST", "executions/c1/cancel", {"reason": "no longer"}), 200)
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["error"]["message"] == "no longer"
    assert cancelled["error"]["by"] == token_by(ALL)


def test_cancel_a_finished_execution_is_409(client: Client) -> None:
    ExecutionFactory(id="c2", completed=True)
    before = list(Execution.objects.values())
    refused(call(client, "POST", "executions/c2/cancel"), 409, "finished")
    assert list(Execution.objects.values()) == before
    refused(call(client, "POST", "executions/nope/cancel"), 404, "not_found")
    refused(call(client, "POST", "executions/c2/cancel", {"why": 1}), 400, "invalid_argument")


@pytest.mark.django_db(transaction=True)
def test_restart(client: Client, drain: Callable[..., None]) -> None:
    zart.start("arith", {"a": 1, "b": 2}, execution_id="r1")
    refused(call(client, "POST", "executions/r1/restart"), 409, "not_finished")
    drain("r1")
    restarted = answer(
        call(client, "POST", "executions/r1/restart", {"input": {"a": 2, "b": 2}}), 200
    )
    assert restarted["run_index"] == 2 and restarted["input"] == {"a": 2, "b": 2}
    run = Run.objects.get(execution_id="r1", index=2)
    assert (run.reason, run.triggered_by) == ("RESTART", token_by(ALL))
    drain("r1")
    assert zart.status("r1").status == ExecutionStatus.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_rerun(client: Client, drain: Callable[..., None]) -> None:
    zart.start("arith", {"a": 1, "b": 2}, execution_id="rr1")
    drain("rr1")
    before = Step.objects.count()
    refused(
        call(client, "POST", "executions/rr1/rerun", {"steps": ["nope"]}), 404, "step_not_found"
    )
    refused(call(client, "POST", "executions/rr1/rerun", {}), 400, "invalid_argument")
    both = {"steps": ["add"], "from_step": "add"}
    refused(call(client, "POST", "executions/rr1/rerun", both), 400, "invalid_argument")
    assert Step.objects.count() == before and zart.status("rr1").run_index == 1
    rerun = answer(call(client, "POST", "executions/rr1/rerun", {"from_step": "add#2"}), 200)
    assert rerun["run_index"] == 2
    drain("rr1")
    assert zart.status("rr1").status == ExecutionStatus.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_retry_step(client: Client, drain: Callable[..., None]) -> None:
    zart.start("checkout", {"amount": 5}, execution_id="rs1")
    drain("rs1")
    assert zart.status("rs1").status == ExecutionStatus.FAILED
    before = list(Step.objects.values())
    url = "executions/rs1/retry-step"
    refused(call(client, "POST", url, {"step": "nope"}), 404, "step_not_found")
    response = call(client, "POST", url, {"step": "add"})
    assert "not a failure" in refused(response, 409, "step_not_failed")
    refused(call(client, "POST", url, {}), 400, "invalid_argument")
    assert list(Step.objects.values()) == before and zart.status("rs1").run_index == 1
    retried = answer(call(client, "POST", url, {"step": "charge-once"}), 200)
    assert retried["run_index"] == 2 and retried["runs"][-1]["reason"] == "RETRY_STEP"
    drain("rs1")
    assert zart.wait_completion("rs1", 1) == {"receipt": "charged 6", "total": 6}


@pytest.mark.django_db(transaction=True)
def test_retry_a_step_of_a_completed_execution_is_409(
    client: Client, drain: Callable[..., None]
) -> None:
    zart.start("arith", {"a": 1, "b": 2}, execution_id="rs2")
    drain("rs2")
    before = list(Step.objects.values())
    response = call(client, "POST", "executions/rs2/retry-step", {"step": "add"})
    assert "COMPLETED, not FAILED" in refused(response, 409, "step_not_failed")
    assert list(Step.objects.values()) == before


# -- pause rules, counts -----------------------------------------------------------------


def test_pause_rules(client: Client) -> None:
    rule = answer(
        call(
            client,
            "POST",
            "pause-rules",
            {"workflow": "arith", "reason": "fix", "expires_at": "2h"},
        ),
        201,
    )
    assert rule["workflow"] == "arith" and rule["active"] and rule["created_by"] == token_by(ALL)
    listed = answer(call(client, "GET", "pause-rules"), 200)["pause_rules"]
    assert [r["id"] for r in listed] == [rule["id"]]
    ended = answer(call(client, "DELETE", "pause-rules/%d" % rule["id"]), 200)
    assert not ended["active"] and ended["end_reason"] == "resumed"
    assert answer(call(client, "GET", "pause-rules"), 200)["pause_rules"] == []
    assert len(answer(call(client, "GET", "pause-rules?active=false"), 200)["pause_rules"]) == 1
    refused(call(client, "DELETE", "pause-rules/%d" % rule["id"]), 409, "refused")


def test_pause_rule_refusals(client: Client) -> None:
    refused(call(client, "DELETE", "pause-rules/999"), 404, "rule_not_found")
    refused(call(client, "DELETE", "pause-rules/" + "9" * 30), 404, "rule_not_found")
    refused(call(client, "POST", "pause-rules", {}), 400, "invalid_argument")
    refused(
        call(client, "POST", "pause-rules", {"step": "x", "expires_at": True}),
        400,
        "invalid_argument",
    )
    refused(call(client, "GET", "pause-rules?active=maybe"), 400, "invalid_argument")
    refused(call(client, "POST", "pause-rules", {"workflow": "a"}, token=READER), 403, "forbidden")


def test_stats(client: Client) -> None:
    ExecutionFactory(workflow="wf", completed=True)
    counts = answer(call(client, "GET", "stats"), 200)
    assert counts["executions"]["by_status"]["COMPLETED"] == 1
    assert counts["executions"]["by_workflow"] == {"wf": {"COMPLETED": 1}}


def test_metrics_parse_as_prometheus_text(client: Client) -> None:
    zart.start("arith", {"a": 1, "b": 2}, execution_id='m"1')
    ExecutionFactory(workflow='odd "name"\\', failed=True)
    response = call(client, "GET", "metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    assert all(name.startswith("zart_") for name in families)
    assert {f.type for f in families.values()} == {"gauge"}
    by_status = {s.labels["status"]: s.value for s in families["zart_executions"].samples}
    assert by_status["PENDING"] == 1 and by_status["FAILED"] == 1 and by_status["COMPLETED"] == 0
    by_workflow = {
        (s.labels["workflow"], s.labels["status"]): s.value
        for s in families["zart_workflow_executions"].samples
    }
    assert by_workflow == {("arith", "PENDING"): 1, ('odd "name"\\', "FAILED"): 1}
    depth = {
        s.labels["state"]: s.value
        for s in families["zart_queue_tasks"].samples
        if s.labels["queue"] == "default"
    }
    assert depth["due"] == 1
    assert "zart_queue_oldest_due_age_seconds" in families
    assert "zart_workers" in families and "zart_pause_rules_active" in families
    assert "zart_steps_completed" in families
    refused(call(client, "GET", "metrics", token=None), 401, "unauthorized")


# -- health ------------------------------------------------------------------------------


def test_healthz_and_readyz_are_open(client: Client) -> None:
    assert answer(client.get(API + "healthz"), 200) == {"status": "ok"}
    assert answer(client.get(API + "readyz"), 200) == {"status": "ok"}


def test_readyz_is_503_with_migrations_unapplied(client: Client, monkeypatch: Any) -> None:
    monkeypatch.setattr(health, "unapplied_migrations", lambda: ["0099_future"])
    detail = refused(client.get(API + "readyz"), 503, "not_ready")
    assert "0099" not in detail


def test_readyz_is_503_when_the_database_fails(client: Client, monkeypatch: Any) -> None:
    def broken() -> list[str]:
        raise DatabaseError("connection refused by host db.internal")

    monkeypatch.setattr(health, "unapplied_migrations", broken)
    assert "db.internal" not in refused(client.get(API + "readyz"), 503, "not_ready")
