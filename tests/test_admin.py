"""The admin shows every table read-only, escapes stored values and lists cheaply."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_zart.admin import cut_head, cut_tail
from django_zart.models import Event, Execution, Step, Task, Worker
from django_zart.states import AttemptStatus, ExecutionStatus, StepStatus

from .factories import (
    EventFactory,
    ExecutionFactory,
    RunFactory,
    StepAttemptFactory,
    StepFactory,
    TaskFactory,
    WorkerFactory,
    error_dict,
)

pytestmark = pytest.mark.django_db

MODELS = [Execution, Step, Task, Worker, Event]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """``admin_client`` hashes a password per test; the default hasher is slow on purpose."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def admin_url(model: type[Any], view: str, *args: Any) -> str:
    return reverse(
        f"admin:django_zart_{model._meta.model_name}_{view}",
        args=[quote(arg) for arg in args],
    )


def make_rows() -> dict[type[Any], tuple[Any, str]]:
    """A row of each admin's model, with a text its pages must show."""
    execution = ExecutionFactory(id="signup/user 42", failed=True, queue="mail")
    step = StepFactory(run=RunFactory(execution=execution), position="send-email")
    return {
        Execution: (execution, "signup/user 42"),
        Step: (step, "send-email"),
        Task: (TaskFactory(execution=execution), "signup/user 42"),
        Worker: (WorkerFactory(hostname="box-7"), "box-7"),
        Event: (EventFactory(execution=execution, name="approved-by-dana"), "approved-by-dana"),
    }


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelist_and_change_page(admin_client: Client, model: type[Any]) -> None:
    obj, text = make_rows()[model]

    listing = admin_client.get(admin_url(model, "changelist"))
    page = admin_client.get(admin_url(model, "change", obj.pk))

    assert listing.status_code == 200
    assert page.status_code == 200
    assert text in listing.text
    assert text in page.text


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_rows_cannot_be_added_changed_or_deleted(admin_client: Client, model: type[Any]) -> None:
    obj, _ = make_rows()[model]
    before = model.objects.count()

    listing = admin_client.get(admin_url(model, "changelist"))
    page = admin_client.get(admin_url(model, "change", obj.pk))

    assert admin_client.get(admin_url(model, "add")).status_code == 403
    assert admin_client.get(admin_url(model, "delete", obj.pk)).status_code == 403
    assert admin_client.post(admin_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert admin_client.post(admin_url(model, "change", obj.pk), {}).status_code == 403
    assert admin_url(model, "add") not in listing.text
    # Executions have actions (each through the Python API), but never delete_selected.
    assert 'value="delete_selected"' not in listing.text
    if model is not Execution:
        assert 'name="action"' not in listing.text
    assert 'name="_save"' not in page.text
    assert model.objects.count() == before


def test_execution_page_shows_data_runs_and_steps(admin_client: Client) -> None:
    execution = ExecutionFactory(
        failed=True,
        input={"email": "alice@example.com", "at": {"$zart": "datetime", "value": "2025-01-02"}},
        error=error_dict("card declined", "billing.CardDeclined"),
    )
    run = RunFactory(execution=execution, status="FAILED", error=error_dict("run broke"))
    first = StepFactory(run=run, position="send-email", result={"sent": True})
    StepFactory(
        run=run,
        position="charge",
        status=StepStatus.FAILED,
        result=None,
        error=error_dict("no funds"),
        attempts=3,
    )

    page = admin_client.get(admin_url(Execution, "change", execution.pk)).text

    assert "alice@example.com" in page
    assert "&quot;$zart&quot;: &quot;datetime&quot;" in page
    assert "billing.CardDeclined" in page
    assert "Traceback (most recent call last):" in page
    assert "CardDeclined: card declined\n</pre>" in page
    assert "run broke" in page
    assert "send-email" in page and "charge" in page and "no funds" in page
    assert "&quot;sent&quot;: true" in page
    assert admin_url(Step, "change", first.pk) in page


def test_step_page_shows_attempts(admin_client: Client) -> None:
    step = StepFactory(position="charge", status=StepStatus.COMPLETED, attempts=3)
    for message in ("timeout", "connection reset"):
        StepAttemptFactory(step=step, error=error_dict(message))
    StepAttemptFactory(step=step, status=AttemptStatus.SUCCEEDED, error=None)

    page = admin_client.get(admin_url(Step, "change", step.pk)).text

    assert "timeout" in page and "connection reset" in page
    assert page.count("Traceback (most recent call last):") == 2
    assert page.count('<td class="field-number">') == 3
    assert admin_url(Execution, "change", step.execution_id) in page


def test_stored_html_is_escaped(admin_client: Client) -> None:
    script = "<script>alert(1)</script>"
    execution = ExecutionFactory(
        id="<b>id</b>", workflow="<i>wf</i>", input={"html": script}, error=error_dict(script)
    )
    step = StepFactory(run=RunFactory(execution=execution), position=script, result=script)
    StepAttemptFactory(step=step, error=error_dict(script))

    pages = [
        admin_client.get(admin_url(Execution, "changelist")).text,
        admin_client.get(admin_url(Execution, "change", execution.pk)).text,
        admin_client.get(admin_url(Step, "changelist")).text,
        admin_client.get(admin_url(Step, "change", step.pk)).text,
    ]

    for page in pages:
        assert script not in page
        assert "<b>id</b>" not in page
        assert "<i>wf</i>" not in page
        assert "&lt;script&gt;" in page or "&lt;b&gt;id&lt;/b&gt;" in page


def test_huge_values_are_cut(admin_client: Client) -> None:
    execution = ExecutionFactory(
        input={"rows": ["x" * 100] * 5_000},
        error=error_dict("boom") | {"traceback": "frame\n" * 50_000 + "ValueError: boom\n"},
    )

    response = admin_client.get(admin_url(Execution, "change", execution.pk))

    assert response.status_code == 200
    assert "more characters)" in response.text
    assert "earlier characters) …" in response.text
    assert "ValueError: boom" in response.text
    assert len(response.content) < 200_000


def test_cutting_keeps_the_useful_end() -> None:
    assert cut_head("abc", 3) == "abc"
    assert cut_head("abcdef", 3) == "abc\n… (3 more characters)"
    assert cut_tail("abcdef", 2) == "(4 earlier characters) …\nef"
    assert cut_tail("abcdef", 5) == "(1 earlier character) …\nbcdef"


def test_execution_changelist_filters_and_searches(admin_client: Client) -> None:
    ExecutionFactory(id="wanted", workflow="billing", status=ExecutionStatus.FAILED)
    ExecutionFactory(id="other", workflow="onboarding")
    url = admin_url(Execution, "changelist")

    by_status = admin_client.get(url, {"status__exact": "FAILED"}).text
    by_id = admin_client.get(url, {"q": "wanted"}).text
    by_workflow = admin_client.get(url, {"q": "onboard"}).text

    assert ">wanted<" in by_status and ">other<" not in by_status
    assert ">wanted<" in by_id and ">other<" not in by_id
    assert ">other<" in by_workflow and ">wanted<" not in by_workflow


def count_queries(fetch: Callable[[], Any]) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        fetch()
    return [query["sql"] for query in captured.captured_queries]


def test_execution_changelist_queries_are_bounded(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    ExecutionFactory.create_batch(50, input={"big": "x" * 10_000})
    url = admin_url(Execution, "changelist")
    admin_client.get(url)  # the session and user lookups settle

    with django_assert_max_num_queries(10):
        response = admin_client.get(url)
    queries = count_queries(lambda: admin_client.get(url))

    assert response.status_code == 200
    assert response.text.count('<th class="field-id">') == 50
    assert not any('"input"' in sql or '"output"' in sql for sql in queries)


def test_execution_page_queries_do_not_grow_with_steps(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    run = RunFactory()
    for step in StepFactory.create_batch(30, run=run, error=error_dict()):
        StepAttemptFactory(step=step)
    url = admin_url(Execution, "change", run.execution_id)

    # Session and user, the execution, its runs, steps, events and tasks, the blocker's
    # lookups and the pause rules behind the buttons: the same for 3 steps or 3,000.
    with django_assert_max_num_queries(13):
        response = admin_client.get(url)

    assert response.text.count('<td class="field-position">') == 30


def test_step_changelist_queries_are_bounded(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    for _ in range(5):
        StepFactory.create_batch(10, run=RunFactory())
    url = admin_url(Step, "changelist")

    # Session and user, the execution, its runs, steps, events and tasks, the blocker's
    # lookups and the pause rules behind the buttons: the same for 3 steps or 3,000.
    with django_assert_max_num_queries(13):
        response = admin_client.get(url)

    assert response.text.count('<td class="field-execution_html">') == 50


def test_schedules_are_listed_and_deletable(admin_client: Client) -> None:
    from django.utils import timezone

    from django_zart.models import Schedule

    Schedule.objects.create(
        name="nightly-<b>", workflow="reports", cron="0 2 * * *", next_tick_at=timezone.now()
    )
    listing = admin_client.get(admin_url(Schedule, "changelist"))
    assert listing.status_code == 200 and "nightly-&lt;b&gt;" in listing.text
    assert admin_client.get(admin_url(Schedule, "add")).status_code == 403
    response = admin_client.post(admin_url(Schedule, "delete", "nightly-<b>"), {"post": "yes"})
    assert response.status_code == 302 and not Schedule.objects.exists()
