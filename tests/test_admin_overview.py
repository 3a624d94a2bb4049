"""The overview page, and the workers, pause rules and schedules lists."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_zart.admin.overview import finished_per_hour
from django_zart.admin.tables import age_text
from django_zart.models import PauseRule, Schedule
from django_zart.states import ExecutionStatus

from .factories import ExecutionFactory, TaskFactory, WorkerFactory

pytestmark = pytest.mark.django_db

OVERVIEW = "admin:django_zart_overview"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def staff(django_user_model: Any, name: str, *perms: str) -> Client:
    user = django_user_model.objects.create_user(name, password="pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def test_overview_counts_chart_and_oldest_due(admin_client: Client) -> None:
    now = timezone.now()
    ExecutionFactory.create_batch(3, completed=True, workflow="signup")
    ExecutionFactory(failed=True, workflow="signup", finished_at=now - timedelta(hours=2))
    ExecutionFactory(failed=True, workflow="billing", finished_at=now - timedelta(days=3))
    old = TaskFactory(
        execution=ExecutionFactory(id="late <one>", workflow="billing"),
        run_after=now - timedelta(minutes=5),
    )
    TaskFactory(run_after=now - timedelta(minutes=1))
    TaskFactory(run_after=now - timedelta(hours=1), held_by=uuid.uuid4())  # held: not shown
    TaskFactory(run_after=now + timedelta(hours=1))  # not due

    response = admin_client.get(reverse(OVERVIEW))

    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html
    assert 'class="zart-completed"' in html
    # One failure in the last 24 hours; the one three days old is outside the chart.
    assert response.context["completed_24h"] == 3
    assert response.context["failed_24h"] == 1
    by_status = {row["status"]: row["count"] for row in response.context["by_status"]}
    assert by_status[ExecutionStatus.FAILED] == 2
    assert by_status[ExecutionStatus.COMPLETED] == 3
    workflows = {row["workflow"]: row["total"] for row in response.context["by_workflow"]}
    assert workflows["signup"] == 4
    assert workflows["billing"] == 2
    due = response.context["oldest_due"]
    assert due[0]["pk"] == old.pk
    assert len(due) == 2
    assert "late &lt;one&gt;" in html and "late <one>" not in html
    assert reverse("admin:django_zart_execution_change", args=[quote("late <one>")]) in html


def test_overview_queries_do_not_grow_with_rows(admin_client: Client) -> None:
    ExecutionFactory.create_batch(2, completed=True)
    TaskFactory.create_batch(2)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(reverse(OVERVIEW))
    ExecutionFactory.create_batch(20, failed=True, workflow="other")
    TaskFactory.create_batch(20)
    with CaptureQueriesContext(connection) as many:
        assert admin_client.get(reverse(OVERVIEW)).status_code == 200
    assert len(many) == len(few)


def test_finished_per_hour_buckets_by_hour() -> None:
    now = timezone.now().replace(minute=30)
    ExecutionFactory(completed=True, finished_at=now)
    ExecutionFactory(completed=True, finished_at=now - timedelta(minutes=10))
    ExecutionFactory(failed=True, finished_at=now - timedelta(hours=5))
    ExecutionFactory(status=ExecutionStatus.CANCELLED, finished_at=now)

    hours = finished_per_hour(now)

    assert len(hours) == 24
    assert (hours[-1].completed, hours[-1].failed) == (2, 0)
    assert (hours[-6].completed, hours[-6].failed) == (0, 1)
    assert sum(h.completed + h.failed for h in hours) == 3


def test_overview_needs_view_execution(django_user_model: Any) -> None:
    client = staff(django_user_model, "ops", "view_worker")
    assert client.get(reverse(OVERVIEW)).status_code == 403
    listing = client.get(reverse("admin:django_zart_worker_changelist"))
    assert reverse(OVERVIEW) not in listing.content.decode()

    client = staff(django_user_model, "viewer", "view_execution")
    assert client.get(reverse(OVERVIEW)).status_code == 200


def test_overview_is_linked_from_the_app_index_and_the_lists(admin_client: Client) -> None:
    url = reverse(OVERVIEW)
    for view, kwargs in (
        ("admin:app_list", {"app_label": "django_zart"}),
        ("admin:django_zart_worker_changelist", {}),
        ("admin:django_zart_pauserule_changelist", {}),
    ):
        assert url in admin_client.get(reverse(view, kwargs=kwargs)).content.decode(), view


def test_workers_list_shows_heartbeat_age_and_held_tasks(admin_client: Client) -> None:
    WorkerFactory(
        hostname="box-1", queues=["default", "mail"], heartbeat_at=timezone.now(), pid=4242
    )
    WorkerFactory(hostname="box-2", dead_for=timedelta(minutes=10))
    lease = timezone.now() + timedelta(seconds=30)
    TaskFactory.create_batch(2, held_by=uuid.uuid4(), lease_until=lease)
    TaskFactory(execution=ExecutionFactory(queue="mail"), held_by=uuid.uuid4(), lease_until=lease)

    html = admin_client.get(reverse("admin:django_zart_worker_changelist")).content.decode()

    assert "box-1" in html and "4242" in html and "box-2" in html
    assert "default: 2, mail: 1" in html
    assert " s ago" in html and "10 min ago" in html


def test_pause_rules_list_shows_state_match_and_who(admin_client: Client) -> None:
    PauseRule.objects.create(workflow="billing", step="charge-*", created_by="admin:dana")
    PauseRule.objects.create(
        execution_id="x/1",
        created_by="cli",
        ended_at=timezone.now(),
        ended_by="admin:lee",
        end_reason="resumed",
    )
    url = reverse("admin:django_zart_pauserule_changelist")

    html = admin_client.get(url).content.decode()
    active = admin_client.get(url + "?state=active").content.decode()

    assert "workflow <code>billing</code>, steps <code>charge-*</code>" in html
    assert reverse("admin:django_zart_execution_change", args=[quote("x/1")]) in html
    assert "admin:dana" in html
    assert re.search(r"resumed, \d+ s ago, by admin:lee", html)
    assert "billing" in active and "x/1" not in active


def test_schedules_list_shows_next_tick(admin_client: Client) -> None:
    Schedule.objects.create(
        name="nightly",
        workflow="report",
        cron="0 3 * * *",
        next_tick_at=timezone.now() + timedelta(minutes=30),
    )
    html = admin_client.get(reverse("admin:django_zart_schedule_changelist")).content.decode()
    assert "nightly" in html
    assert "in 29 min" in html or "in 30 min" in html


def test_age_text() -> None:
    now = timezone.now()
    assert age_text(now - timedelta(seconds=3), now) == "3 s ago"
    assert age_text(now - timedelta(minutes=5), now) == "5 min ago"
    assert age_text(now - timedelta(hours=3), now) == "3 h ago"
    assert age_text(now + timedelta(days=3), now) == "in 3 days"
    assert age_text(None) == "-"


def test_the_admin_index_links_the_overview_for_readers_only(
    admin_client: Client, django_user_model: Any
) -> None:
    index = admin_client.get(reverse("admin:index"))
    entry = reverse("admin:django_zart_overview_changelist")
    assert entry in index.text
    response = admin_client.get(entry)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:django_zart_overview")

    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_worker"))
    client = Client()
    client.force_login(clerk)
    assert entry not in client.get(reverse("admin:index")).text
    assert client.get(entry).status_code == 403
