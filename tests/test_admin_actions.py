"""The admin's actions on executions: each confirmed first, each done through the Python
API, refusals shown as warnings, and each behind its own permission."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import reverse

import django_zart as zart
from django_zart import pauses
from django_zart.admin.execution_actions import PERMISSIONS
from django_zart.models import Event, Execution, PauseRule, Run
from django_zart.states import StepStatus
from tests.factories import ExecutionFactory, RunFactory, StepFactory
from tests.models import Flag
from tests.tables import unchanged_tables

pytestmark = pytest.mark.django_db(transaction=True)

Drain = Callable[..., None]

CHANGELIST = "admin:django_zart_execution_changelist"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def view_url(view: str, execution_id: str) -> str:
    return reverse("admin:django_zart_execution_%s" % view, args=[quote(execution_id)])


def change_url(execution_id: str) -> str:
    return view_url("change", execution_id)


def staff(*codenames: str, name: str = "dana") -> User:
    """A staff user who may view executions, with only the given action permissions."""
    user = User.objects.create_user(name, password="pw", is_staff=True)
    wanted = ["view_execution", *codenames]
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_zart", codename__in=wanted)
    )
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def said(response: HttpResponse) -> list[tuple[str, str]]:
    """The messages the response left: (level tag, text)."""
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def act(client: Client, action: str, *ids: str, confirm: bool) -> HttpResponse:
    data: dict[str, Any] = {"action": action, "_selected_action": list(ids)}
    if confirm:
        data["post"] = "yes"
    else:
        data["index"] = "0"
    return client.post(reverse(CHANGELIST), data)


def runs(execution_id: str) -> list[tuple[int, str, str]]:
    return list(
        Run.objects.filter(execution_id=execution_id)
        .order_by("index")
        .values_list("index", "reason", "triggered_by")
    )


@pytest.fixture
def completed(drain: Drain) -> str:
    zart.start("ops", {"n": 1}, execution_id="done")
    drain("done")
    return "done"


@pytest.fixture
def failed(drain: Drain) -> str:
    Flag.objects.create(name="fail-ops-charge", value="1")
    zart.start("ops", {"n": 1}, execution_id="broke")
    drain("broke")
    assert zart.status("broke").status == "FAILED"
    return "broke"


def buttons(user: User, execution_id: str) -> str:
    """The action buttons the execution's page shows this user."""
    model_admin: Any = admin.site._registry[Execution]
    request = RequestFactory().get(change_url(execution_id))
    request.user = user
    return str(model_admin.actions_html(model_admin.get_object(request, quote(execution_id))))


# -- changelist actions -----------------------------------------------------------------


def test_cancel_action_confirms_then_cancels_and_reports_refusals(
    admin_client: Client, completed: str
) -> None:
    zart.start("ops", {}, execution_id="a")
    zart.start("ops", {}, execution_id="b")

    with unchanged_tables():
        page = act(admin_client, "cancel_selected", "a", "b", completed, confirm=False)
    assert page.status_code == 200
    assert "Cancel executions" in page.text
    assert 'name="post" value="yes"' in page.text
    for execution_id in ("a", "b", completed):
        assert 'value="%s"' % execution_id in page.text

    response = act(admin_client, "cancel_selected", "a", "b", completed, confirm=True)

    assert response.status_code == 302
    assert zart.status("a").status == zart.status("b").status == "CANCELLED"
    assert zart.status("a").error["by"] == "admin:admin"
    assert zart.status(completed).status == "COMPLETED"
    (success, a_id), (warning, refusal) = said(response)
    assert (success, warning) == ("success", "warning")
    assert "Cancelled 2 executions: a; b" in a_id
    assert refusal.startswith("1 refused: Execution 'done' has finished (status COMPLETED)")


def test_restart_action_restarts_finished_and_refuses_unfinished(
    admin_client: Client, completed: str, drain: Drain
) -> None:
    zart.start("ops", {}, execution_id="busy")

    response = act(admin_client, "restart_selected", completed, "busy", confirm=True)

    assert runs(completed)[-1] == (2, "RESTART", "admin:admin")
    assert runs("busy") == [(1, "INITIAL", "")]
    messages = dict(said(response))
    assert messages["success"] == "Restarted 1 execution: done"
    assert (
        "Execution 'busy' is PENDING; only a finished execution can be restarted"
        in (messages["warning"])
    )
    drain(completed)
    assert zart.status(completed).status == "COMPLETED"


def test_retry_failed_retries_the_one_failed_step(
    admin_client: Client, failed: str, drain: Drain
) -> None:
    zart.start("ops", {}, execution_id="busy")

    page = act(admin_client, "retry_failed", failed, "busy", confirm=False)
    assert "Retry failed executions" in page.text
    response = act(admin_client, "retry_failed", failed, "busy", confirm=True)

    assert runs(failed)[-1] == (2, "RETRY_STEP", "admin:admin")
    messages = dict(said(response))
    assert messages["success"] == "Retried 1 execution: broke (step ops-charge retried)"
    assert "'busy' is PENDING, not FAILED" in messages["warning"]
    Flag.objects.all().delete()
    drain(failed)
    assert zart.status(failed).status == "COMPLETED"


def test_retry_failed_restarts_when_several_steps_failed(admin_client: Client) -> None:
    execution = ExecutionFactory(id="twice", workflow="ops", failed=True)
    run = RunFactory(execution=execution, status="FAILED")
    StepFactory(run=run, name="ops-prepare", status=StepStatus.FAILED)
    StepFactory(run=run, name="ops-charge", status=StepStatus.FAILED)

    response = act(admin_client, "retry_failed", "twice", confirm=True)

    assert runs("twice")[-1][1:] == ("RESTART", "admin:admin")
    assert said(response) == [
        (
            "success",
            "Retried 1 execution: twice (restarted: its failed run has 2 failed steps)",
        )
    ]


def test_actions_listed_by_permission(admin_client: Client) -> None:
    ExecutionFactory()
    listing = reverse(CHANGELIST)

    everything = admin_client.get(listing).text
    canceller = client_for(staff("cancel_execution")).get(listing).text
    viewer = client_for(staff(name="vic")).get(listing).text

    for action in ("retry_failed", "cancel_selected", "restart_selected"):
        assert 'value="%s"' % action in everything
    assert 'value="delete_selected"' not in everything
    assert 'value="cancel_selected"' in canceller
    assert 'value="retry_failed"' not in canceller
    assert 'value="restart_selected"' not in canceller
    assert 'name="action"' not in viewer


def test_an_action_without_its_permission_changes_nothing(failed: str) -> None:
    zart.start("ops", {}, execution_id="busy")
    client = client_for(staff("cancel_execution"))

    with unchanged_tables():
        for action in ("retry_failed", "restart_selected"):
            act(client, action, failed, "busy", confirm=True)
            act(client, action, failed, "busy", confirm=False)


# -- one execution's pages --------------------------------------------------------------


def test_cancel_page_with_reason(admin_client: Client) -> None:
    zart.start("ops", {}, execution_id="c1")

    with unchanged_tables():
        page = admin_client.get(view_url("cancel", "c1"))
    assert page.status_code == 200
    assert "Cancel the execution" in page.text and 'name="reason"' in page.text

    response = admin_client.post(view_url("cancel", "c1"), {"reason": "duplicate order"})

    assert response.status_code == 302 and response["Location"] == change_url("c1")
    execution = zart.status("c1")
    assert execution.status == "CANCELLED"
    assert execution.error["message"] == "duplicate order"
    assert said(response) == [("success", "Cancelled c1.")]


def test_cancelling_a_finished_execution_is_a_warning(admin_client: Client, completed: str) -> None:
    with unchanged_tables():
        response = admin_client.post(view_url("cancel", completed), {"reason": ""})

    assert response.status_code == 302
    [(level, text)] = said(response)
    assert level == "warning" and "has finished (status COMPLETED)" in text


def test_rerun_chosen_steps_or_from_a_step(
    admin_client: Client, completed: str, drain: Drain
) -> None:
    page = admin_client.get(view_url("rerun", completed)).text
    for step in ("ops-prepare", "ops-charge", "ops-ship"):
        assert 'value="%s"' % step in page

    with unchanged_tables():
        refused = admin_client.post(view_url("rerun", completed), {"how": "steps"})
    assert "Tick at least one step." in refused.text

    response = admin_client.post(
        view_url("rerun", completed), {"how": "steps", "steps": ["ops-charge"]}
    )
    assert said(response) == [("success", "Rerunning steps ops-charge of done.")]
    assert runs(completed)[-1] == (2, "RERUN", "admin:admin")
    drain(completed)

    response = admin_client.post(
        view_url("rerun", completed), {"how": "from", "from_step": "ops-charge"}
    )
    assert said(response)[-1] == ("success", "Rerunning done from step ops-charge.")
    assert runs(completed)[-1] == (3, "RERUN", "admin:admin")
    drain(completed)
    assert zart.status(completed).status == "COMPLETED"


def test_rerun_of_an_unfinished_execution_is_refused(admin_client: Client) -> None:
    execution = ExecutionFactory(workflow="ops")
    StepFactory(run=RunFactory(execution=execution), name="ops-prepare")

    with unchanged_tables():
        response = admin_client.post(
            view_url("rerun", execution.pk), {"how": "steps", "steps": ["ops-prepare"]}
        )

    [(level, text)] = said(response)
    assert level == "warning" and "only a finished execution can be rerun" in text


def test_retry_step_page_offers_the_failed_steps(
    admin_client: Client, failed: str, drain: Drain
) -> None:
    page = admin_client.get(view_url("retry", failed)).text
    assert 'value="ops-charge"' in page
    assert 'value="ops-prepare"' not in page

    with unchanged_tables():
        forged = admin_client.post(view_url("retry", failed), {"step": "ops-prepare"})
    assert "Select a valid choice" in forged.text

    response = admin_client.post(view_url("retry", failed), {"step": "ops-charge"})
    assert said(response) == [("success", "Retrying step ops-charge of broke in a new run.")]
    Flag.objects.all().delete()
    drain(failed)
    assert zart.status(failed).status == "COMPLETED"


def test_retry_step_page_without_a_failed_step(admin_client: Client, completed: str) -> None:
    page = admin_client.get(view_url("retry", completed)).text
    assert "No step of the execution&#x27;s last run failed for good." in page


def test_restart_page(admin_client: Client, completed: str) -> None:
    assert "Restart the execution" in admin_client.get(view_url("restart", completed)).text

    response = admin_client.post(view_url("restart", completed))

    assert said(response) == [("success", "Restarted done from scratch in a new run.")]
    assert runs(completed)[-1] == (2, "RESTART", "admin:admin")


def test_send_event_checks_the_json_then_wakes_the_execution(
    admin_client: Client, run_worker: Callable[..., int], drain: Drain
) -> None:
    zart.start("approval", {}, execution_id="ask")
    run_worker()
    assert zart.status("ask").status == "SUSPENDED"
    page = admin_client.get(view_url("send_event", "ask")).text
    assert 'name="payload"' in page and "data-zart-json" in page

    with unchanged_tables():
        bad = admin_client.post(
            view_url("send_event", "ask"), {"name": "approved", "payload": '{"by": dana}'}
        )
    assert bad.status_code == 200
    assert "Not valid JSON: Expecting value: line 1 column 8" in bad.text

    response = admin_client.post(
        view_url("send_event", "ask"), {"name": "approved", "payload": '{"by": "dana"}'}
    )

    assert said(response) == [("success", "Sent event approved to ask; it was waiting for it.")]
    assert Event.objects.get(execution_id="ask").payload == {"by": "dana"}
    drain("ask")
    assert zart.status("ask").output == {"approved": True, "by": "dana"}


def test_send_event_to_a_finished_execution_is_a_warning(
    admin_client: Client, completed: str
) -> None:
    with unchanged_tables():
        response = admin_client.post(view_url("send_event", completed), {"name": "x"})
    [(level, text)] = said(response)
    assert level == "warning" and "it cannot take events" in text


def test_pause_and_resume_an_execution_or_its_workflow(admin_client: Client) -> None:
    zart.start("ops", {}, execution_id="p1")

    response = admin_client.post(view_url("pause", "p1"), {"what": "execution", "reason": "x"})
    rule = PauseRule.objects.get()
    assert (rule.execution_id, rule.workflow, rule.created_by) == ("p1", "", "admin:admin")
    assert said(response) == [("success", "Paused by %s." % rule)]
    assert zart.status("p1").status == "PAUSED"

    admin_client.post(view_url("pause", "p1"), {"what": "workflow"})
    by_workflow = PauseRule.objects.get(workflow="ops")
    page = admin_client.get(view_url("resume", "p1")).text
    assert 'value="%d"' % rule.pk in page and 'value="%d"' % by_workflow.pk in page

    response = admin_client.post(
        view_url("resume", "p1"), {"rules": [str(rule.pk), str(by_workflow.pk)]}
    )

    assert said(response) == [("success", "Resumed: %s; %s." % (rule, by_workflow))]
    assert not pauses.pause_rules().exists()
    assert zart.status("p1").status == "PENDING"


def test_resume_page_without_a_rule(admin_client: Client) -> None:
    zart.start("ops", {}, execution_id="p2")
    page = admin_client.get(view_url("resume", "p2")).text
    assert "No active pause rule holds this execution." in page


# -- starting an execution ----------------------------------------------------------------


def test_start_checks_the_json_then_starts(admin_client: Client) -> None:
    start = reverse("admin:django_zart_execution_start")
    page = admin_client.get(start).text
    assert '<option value="ops">ops</option>' in page

    with unchanged_tables():
        bad = admin_client.post(start, {"workflow": "ops", "input": "{'n': 1}"})
    assert bad.status_code == 200
    assert "Not valid JSON" in bad.text

    response = admin_client.post(
        start,
        {"workflow": "ops", "execution_id": "s1", "input": '{"n": 1}', "if_exists": "raise"},
    )

    assert response.status_code == 302 and response["Location"] == change_url("s1")
    assert said(response) == [("success", "Started s1, an execution of ops.")]
    assert zart.status("s1").input == {"n": 1}
    assert runs("s1") == [(1, "INITIAL", "admin:admin")]

    with unchanged_tables():
        again = admin_client.post(
            start, {"workflow": "ops", "execution_id": "s1", "if_exists": "raise"}
        )
    assert again.status_code == 200
    level, text = said(again)[-1]
    assert level == "warning" and "Execution 's1' already exists" in text

    same = admin_client.post(
        start, {"workflow": "ops", "execution_id": "s1", "if_exists": "return"}
    )
    assert same["Location"] == change_url("s1")
    assert said(same)[-1] == ("success", "s1 already exists, an execution of ops; nothing started.")


def test_start_generates_an_id(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:django_zart_execution_start"), {"workflow": "ops", "if_exists": "raise"}
    )
    execution = Execution.objects.get()
    assert response["Location"] == change_url(execution.pk)
    assert execution.input is None


def test_start_link_only_with_its_permission(admin_client: Client) -> None:
    model_admin: Any = admin.site._registry[Execution]
    request = RequestFactory().get("/")
    request.user = staff("start_execution")
    assert reverse("admin:django_zart_execution_start") in model_admin.start_link(request)
    request.user = staff(name="vic")
    assert model_admin.start_link(request) == ""


# -- permissions --------------------------------------------------------------------------


def test_buttons_follow_permissions_and_state(failed: str) -> None:
    zart.start("ops", {}, execution_id="busy")
    superuser = User.objects.create_superuser("root", password="pw")
    retrier = staff("retry_execution", "cancel_execution")

    assert view_url("retry", failed) in buttons(superuser, failed)
    assert view_url("rerun", failed) in buttons(superuser, failed)
    assert view_url("cancel", failed) not in buttons(superuser, failed)
    for view in ("cancel", "send_event", "pause"):
        assert view_url(view, "busy") in buttons(superuser, "busy")
    assert view_url("retry", "busy") not in buttons(superuser, "busy")

    assert view_url("retry", failed) in buttons(retrier, failed)
    assert view_url("rerun", failed) not in buttons(retrier, failed)
    assert view_url("restart", failed) not in buttons(retrier, failed)
    assert view_url("cancel", "busy") in buttons(retrier, "busy")
    assert view_url("pause", "busy") not in buttons(retrier, "busy")
    assert view_url("send_event", "busy") not in buttons(retrier, "busy")
    assert buttons(staff(name="vic"), "busy") == "-"


FORGED = [
    ("cancel", {"reason": "x"}),
    ("restart", {}),
    ("rerun", {"how": "steps", "steps": ["ops-prepare"]}),
    ("retry", {"step": "ops-charge"}),
    ("send_event", {"name": "approved", "payload": "{}"}),
    ("pause", {"what": "workflow"}),
    ("resume", {"rules": ["1"]}),
]


@pytest.mark.parametrize(("view", "data"), FORGED, ids=[view for view, _ in FORGED])
def test_a_forged_post_without_the_permission_is_refused(
    failed: str, view: str, data: dict[str, Any]
) -> None:
    zart.start("ops", {}, execution_id="busy")
    zart.pause(workflow="other")
    needed = PERMISSIONS["pause" if view == "resume" else view]
    others = [codename for codename in PERMISSIONS.values() if codename != needed]
    client = client_for(staff(*others))

    with unchanged_tables():
        for execution_id in (failed, "busy"):
            assert client.get(view_url(view, execution_id)).status_code == 403
            assert client.post(view_url(view, execution_id), data).status_code == 403


def test_start_without_the_permission_is_refused() -> None:
    client = client_for(staff(*(c for c in PERMISSIONS.values() if c != "start_execution")))
    start = reverse("admin:django_zart_execution_start")

    with unchanged_tables():
        assert client.get(start).status_code == 403
        assert client.post(start, {"workflow": "ops", "if_exists": "raise"}).status_code == 403


def test_a_permitted_user_acts_without_other_permissions(completed: str) -> None:
    client = client_for(staff("restart_execution"))

    response = client.post(view_url("restart", completed))

    assert response.status_code == 302
    assert runs(completed)[-1] == (2, "RESTART", "admin:dana")


def test_too_many_chosen_executions_are_refused_whole(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("django_zart.admin.execution_actions.MAX_SELECTED", 1)
    zart.start("ops", {}, execution_id="a")
    zart.start("ops", {}, execution_id="b")

    with unchanged_tables():
        response = act(admin_client, "cancel_selected", "a", "b", confirm=True)

    assert said(response) == [("warning", "Choose at most 1 executions at a time (2 chosen).")]
