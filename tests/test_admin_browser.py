"""The admin in a real browser: what staff see and do, end to end, with in-process workers.

Chromium (Debian's package) through Playwright, against pytest-django's live server on the
transactional test database; see tests/browser.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.utils import timezone

import django_zart as zart
from django_zart.models import Execution
from django_zart.states import ExecutionStatus

from .factories import ExecutionFactory, TaskFactory, WorkerFactory

if TYPE_CHECKING:
    from playwright.sync_api import Page

LogIn = Callable[..., None]
Shot = Callable[..., None]

pytest_plugins = ["tests.browser"]
PASSWORD = "browser-pw"  # tests.browser.PASSWORD
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def superuser(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("dana", "dana@example.com", PASSWORD)


@pytest.fixture
def failed_checkout(drain: Callable[..., None]) -> str:
    """A ``checkout`` execution that failed for good: its card network was down."""
    execution_id = zart.start("checkout", {"amount": 41}, execution_id="order-1001")
    drain(execution_id)
    assert Execution.objects.get(pk=execution_id).status == ExecutionStatus.FAILED
    return execution_id


def change_url(execution_id: str) -> str:
    return "/admin/django_zart/execution/%s/change/" % quote(execution_id)


def test_log_in_filter_the_list_and_read_a_failed_execution(
    page: Page,
    log_in: LogIn,
    screenshot: Shot,
    superuser: Any,
    failed_checkout: str,
    run_worker: Callable[..., int],
) -> None:
    # Executions in several states, run by a real worker: done, asleep, waiting, paused.
    zart.start("arith", {"a": 1, "b": 2}, execution_id="sum-1")
    zart.start("sleeper", {"seconds": 3600}, execution_id="reminder-12")
    zart.start("approval", {}, execution_id="expense-7")
    zart.start("ops", {"order": 5}, execution_id="order-1002")
    zart.pause(execution_id="order-1002", reason="card provider down", by="admin:dana")
    run_worker()
    zart.start("arith", {"a": 5, "b": 8}, execution_id="sum-2")
    log_in("dana")

    page.goto("/admin/django_zart/execution/")
    screenshot("executions-list.png")
    assert page.locator("#result_list tbody tr").count() == 6
    where = {
        execution_id: page.locator("#result_list tbody tr", has_text=execution_id).inner_text()
        for execution_id in ("expense-7", "reminder-12", "order-1002", "order-1001")
    }
    assert "waiting for event approved" in where["expense-7"]
    assert "sleeping until" in where["reminder-12"]
    assert "paused by rule" in where["order-1002"]
    assert "charge-once" in where["order-1001"]

    page.locator("#changelist-filter").get_by_role("link", name="Failed").first.click()
    page.wait_for_url(re.compile(r"status__exact=FAILED"))
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "order-1001" in rows.first.inner_text()

    rows.first.get_by_role("link", name="order-1001").click()
    page.wait_for_url(re.compile(re.escape(change_url(failed_checkout))))
    text = page.locator("#content").inner_text()
    assert "card network down, the first time only" in text
    assert "ConnectionError" in text
    timeline = page.locator(".zart-timeline-module")
    assert "charge-once" in timeline.inner_text()


def test_overview_and_workers(
    page: Page, log_in: LogIn, screenshot: Shot, superuser: Any, failed_checkout: str
) -> None:
    now = timezone.now()
    for hour in range(20):  # a day's traffic, for the chart
        finished = now - timedelta(hours=hour, minutes=7)
        ExecutionFactory.create_batch(
            2 + (hour * 7) % 5, completed=True, workflow="signup", finished_at=finished
        )
        if hour % 4 == 1:
            ExecutionFactory(failed=True, workflow="billing", finished_at=finished)
    TaskFactory(execution=ExecutionFactory(id="waiting-7", workflow="billing"))
    WorkerFactory(hostname="box-1", queues=["default", "mail"], pid=4242)
    log_in("dana")

    page.goto("/admin/django_zart/")
    page.get_by_role("link", name="Workflows overview").click()
    page.wait_for_url("**/overview/")
    assert page.locator("svg.zart-chart rect.zart-completed").count() == 24
    counts = page.locator(".zart-counts").inner_text()
    assert re.search(r"6\s+Failed", counts), counts
    assert "waiting-7" in page.locator("#zart-oldest-due").inner_text()
    screenshot("overview.png")

    page.get_by_role("link", name=re.compile("live worker")).click()
    table = page.locator("#result_list").inner_text()
    assert "box-1" in table and "4242" in table and "s ago" in table


def test_a_user_without_permissions_sees_no_action(
    page: Page, log_in: LogIn, django_user_model: Any, failed_checkout: str
) -> None:
    viewer = django_user_model.objects.create_user("lee", password=PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_execution"))
    log_in("lee")

    page.goto("/admin/django_zart/execution/")
    assert page.locator("#result_list tbody tr").count() == 1
    assert page.locator("select[name=action]").count() == 0
    assert page.locator(".object-tools a").count() == 0
    assert page.get_by_role("link", name="Start an execution").count() == 0

    page.goto(change_url(failed_checkout))
    assert "card network down" in page.locator("#content").inner_text()
    content = page.locator("#content")
    # History is a read-only page; nothing else on the page acts.
    tools = content.locator(".object-tools a, button, input[type=submit]").all_inner_texts()
    assert [text.strip() for text in tools if text.strip().lower() != "history"] == []
    assert content.locator(".zart-actions a").count() == 0
    page.goto("/admin/django_zart/execution/start/")
    assert "403" in page.title() or "Forbidden" in page.content()


def test_retry_a_failed_execution_from_the_list_and_watch_it_complete(
    page: Page,
    log_in: LogIn,
    screenshot: Shot,
    superuser: Any,
    failed_checkout: str,
    drain: Callable[..., None],
) -> None:
    ExecutionFactory(completed=True, workflow="signup")
    log_in("dana")
    page.goto("/admin/django_zart/execution/?status__exact=FAILED")
    row = page.locator("#result_list tbody tr", has_text="order-1001")
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "retry_failed")
    page.click("button[name=index]")
    assert "Retry failed executions" in page.locator("#content").inner_text()
    page.get_by_role("button", name=re.compile("Yes, I.m sure")).or_(
        page.locator("input[type=submit][value^='Yes']")
    ).click()
    assert "Retried 1 execution" in page.locator(".messagelist").inner_text()

    drain(failed_checkout)

    page.goto(change_url(failed_checkout))
    text = page.locator("#content").inner_text()
    assert Execution.objects.get(pk=failed_checkout).status == ExecutionStatus.COMPLETED
    assert "COMPLETED" in text.upper()
    assert "charged 42" in text
    assert "admin:dana" in text  # the retry's run records who asked
    screenshot("execution-page.png", until=".zart-timeline-module")


def test_send_an_event_from_the_form(
    page: Page,
    log_in: LogIn,
    superuser: Any,
    run_worker: Callable[..., int],
    drain: Callable[..., None],
) -> None:
    execution_id = zart.start("approval", {}, execution_id="expense-7")
    run_worker()
    assert Execution.objects.get(pk=execution_id).status == ExecutionStatus.SUSPENDED
    log_in("dana")

    page.goto(change_url(execution_id))
    blocker = page.locator(".zart-blocker").inner_text()
    assert "Why isn't it running?" in blocker
    assert "Waiting for event approved since" in blocker
    page.get_by_role("link", name="Send event…").click()
    page.fill("input[name=name]", "approved")
    page.fill("textarea[name=payload]", '{"by": dana}')
    page.get_by_role("button", name="Send").or_(page.locator("input[type=submit]")).first.click()
    # Checked in the page before it is sent; nothing reached the server.
    assert "Not valid JSON" in page.locator(".zart-json-error").inner_text()
    page.fill("textarea[name=payload]", '{"by": "dana"}')
    page.get_by_role("button", name="Send").or_(page.locator("input[type=submit]")).first.click()
    page.wait_for_url(re.compile(re.escape(change_url(execution_id))))
    assert "Sent event approved to expense-7" in page.locator(".messagelist").inner_text()

    drain(execution_id)

    assert Execution.objects.get(pk=execution_id).output == {"approved": True, "by": "dana"}


def test_start_an_execution(
    page: Page, log_in: LogIn, superuser: Any, drain: Callable[..., None]
) -> None:
    log_in("dana")
    page.goto("/admin/django_zart/execution/")
    page.get_by_role("link", name="Start an execution").click()
    page.select_option("select[name=workflow]", "arith")
    page.fill("input[name=execution_id]", "sum-42")
    page.fill("textarea[name=input]", '{"a": 2, "b": 3}')
    page.get_by_role("button", name="Start").or_(page.locator("input[type=submit]")).first.click()
    page.wait_for_url(re.compile(re.escape(change_url("sum-42"))))
    assert "Started sum-42, an execution of arith." in page.locator(".messagelist").inner_text()

    drain("sum-42")

    page.reload()
    assert Execution.objects.get(pk="sum-42").output == {"sum": 115}
    assert "115" in page.locator("#content").inner_text()


def test_pause_a_workflow_see_the_rule_and_resume_it(
    page: Page, log_in: LogIn, superuser: Any, run_worker: Callable[..., int]
) -> None:
    execution_id = zart.start("approval", {}, execution_id="expense-8")
    run_worker()
    log_in("dana")

    page.goto(change_url(execution_id))
    page.get_by_role("link", name="Pause…").click()
    page.get_by_label(re.compile("every execution of workflow approval")).check()
    page.fill("input[name=reason]", "approvals frozen for the audit")
    page.locator("form.zart-action input[type=submit], form.zart-action button").first.click()
    page.wait_for_url(re.compile(re.escape(change_url(execution_id))))
    assert "Paused by" in page.locator(".messagelist").inner_text()

    page.goto("/admin/django_zart/pauserule/?state=active")
    row = page.locator("#result_list tbody tr").first
    assert "workflow approval" in row.inner_text()
    assert "approvals frozen for the audit" in row.inner_text()
    assert "admin:dana" in row.inner_text()

    page.goto(change_url(execution_id))
    page.get_by_role("link", name="Resume…").click()
    page.locator("form.zart-action input[type=submit], form.zart-action button").first.click()
    page.wait_for_url(re.compile(re.escape(change_url(execution_id))))
    assert "Resumed" in page.locator(".messagelist").inner_text()

    page.goto("/admin/django_zart/pauserule/?state=ended")
    ended = page.locator("#result_list tbody tr").first.inner_text()
    assert "ended" in ended and "resumed" in ended and "by admin:dana" in ended
