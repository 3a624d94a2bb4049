"""The executions list says where each execution is, filters, searches and counts cheaply;
``blocker`` says in one sentence why an unfinished execution is not running."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

import django_zart as zart
from django_zart.admin.whereabouts import blocker, where_now
from django_zart.models import Execution
from django_zart.states import ExecutionStatus, RunReason, StepKind, StepStatus

from . import workflows  # noqa: F401  # registers "arith"
from .factories import (
    ExecutionFactory,
    PauseRuleFactory,
    RunFactory,
    StepFactory,
    TaskFactory,
    WorkerFactory,
)

pytestmark = pytest.mark.django_db

LIST_URL = "admin:django_zart_execution_changelist"


@zart.step("list-charge-card", retry=zart.Retry.fixed(3, "10s"))
def charge_card() -> None:
    """Registered so that the list can tell how many tries it gets (four)."""


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def at(moment: datetime, *, seconds: bool = False) -> str:
    """A time as the list shows it: the time of day, with the date when not today."""
    local = timezone.localtime(moment)
    text = local.strftime("%H:%M:%S" if seconds else "%H:%M")
    if local.date() != timezone.localdate():
        text = "%s %s" % (local.strftime("%Y-%m-%d"), text)
    return text


def suspended(**kwargs: Any) -> Execution:
    execution: Execution = ExecutionFactory(
        status=ExecutionStatus.SUSPENDED, started_at=timezone.now(), **kwargs
    )
    return execution


def retrying(name: str = "list-charge-card", **kwargs: Any) -> tuple[Execution, datetime]:
    execution = suspended(**kwargs)
    wake_at = timezone.now() + timedelta(minutes=3)
    run = RunFactory(execution=execution)
    StepFactory(run=run, name="reserve-stock")
    StepFactory(
        run=run, name=name, status=StepStatus.RETRYING, attempts=1, wake_at=wake_at, result=None
    )
    TaskFactory(execution=execution, run_after=wake_at)
    return execution, wake_at


def sleeping() -> tuple[Execution, datetime]:
    execution = suspended()
    wake_at = timezone.now() + timedelta(hours=2)
    StepFactory(
        run=RunFactory(execution=execution),
        name="sleep",
        kind=StepKind.SLEEP,
        status=StepStatus.WAITING,
        wake_at=wake_at,
        result=None,
    )
    TaskFactory(execution=execution, run_after=wake_at)
    return execution, wake_at


def waiting_for_event(timeout: datetime | None = None) -> tuple[Execution, datetime]:
    execution = suspended()
    since = timezone.now() - timedelta(minutes=5)
    StepFactory(
        run=RunFactory(execution=execution),
        name="approved",
        position="approved",
        kind=StepKind.EVENT,
        status=StepStatus.WAITING,
        wake_at=timeout,
        created_at=since,
        result=None,
    )
    TaskFactory(execution=execution, run_after=timeout)
    return execution, since


def waiting_for_branches(done: int = 3, total: int = 10) -> Execution:
    execution = suspended()
    run = RunFactory(execution=execution)
    positions = []
    for n in range(total):
        branch = StepFactory(
            run=run,
            name="resize",
            position="resize#%d" % n,
            kind=StepKind.BRANCH,
            status=StepStatus.COMPLETED if n < done else StepStatus.SCHEDULED,
        )
        positions.append(branch.position)
    StepFactory(
        run=run,
        name="wait_all",
        position="wait_all",
        kind=StepKind.GROUP,
        status=StepStatus.WAITING,
        result={"positions": positions},
    )
    TaskFactory(execution=execution, run_after=None)
    return execution


def paused(reason: str = "card processor outage") -> tuple[Execution, int]:
    execution: Execution = ExecutionFactory(status=ExecutionStatus.PAUSED)
    rule = PauseRuleFactory(workflow=execution.workflow, reason=reason)
    TaskFactory(execution=execution, paused_by=rule)
    return execution, rule.pk


def held(*, heartbeat_age: float = 7, lease_left: float = 20) -> tuple[Execution, str]:
    """A running execution whose task a live worker holds (its lease ends with the worker's)."""
    now = timezone.now()
    worker = WorkerFactory(
        heartbeat_at=now - timedelta(seconds=heartbeat_age),
        expires_at=now + timedelta(seconds=lease_left),
    )
    execution: Execution = ExecutionFactory(status=ExecutionStatus.RUNNING, started_at=now)
    StepFactory(run=RunFactory(execution=execution), name="reserve-stock")
    TaskFactory(
        execution=execution,
        held_by=uuid.uuid4(),
        claimed_at=now - timedelta(seconds=30),
        lease_until=worker.expires_at,
    )
    return execution, worker.pk


def failed_at(name: str = "charge-card") -> Execution:
    execution: Execution = ExecutionFactory(failed=True)
    run = RunFactory(execution=execution, status="FAILED")
    StepFactory(run=run, name="reserve-stock")
    StepFactory(run=run, name=name, status=StepStatus.FAILED, result=None)
    return execution


def fresh(execution: Execution) -> Execution:
    return Execution.objects.get(pk=execution.pk)


# -- where it is now -------------------------------------------------------------------


def test_where_now_tells_retries_sleeps_and_waits() -> None:
    retry, next_try = retrying()
    unknown_step, unknown_next_try = retrying(name="not-registered-anywhere")
    sleep, wake_at = sleeping()
    event, since = waiting_for_event()
    timeout = timezone.now() + timedelta(hours=1)
    event_with_timeout, since_2 = waiting_for_event(timeout)
    group = waiting_for_branches(done=3, total=10)

    phrases = where_now([fresh(e) for e in (retry, unknown_step, sleep, event, group)])
    phrases |= where_now([fresh(event_with_timeout)])

    assert phrases[retry.pk] == (
        "step list-charge-card, attempt 2/4, next try %s" % at(next_try, seconds=True)
    )
    # A step this process does not know: its number of tries is unknown.
    assert phrases[unknown_step.pk] == (
        "step not-registered-anywhere, attempt 2, next try %s" % at(unknown_next_try, seconds=True)
    )
    assert phrases[sleep.pk] == "sleeping until %s" % at(wake_at)
    assert phrases[event.pk] == "waiting for event approved since %s" % at(since)
    assert phrases[event_with_timeout.pk] == (
        "waiting for event approved since %s, until %s" % (at(since_2), at(timeout))
    )
    assert phrases[group.pk] == "3 of 10 branches done"


def test_where_now_tells_pauses_workers_queues_and_ends() -> None:
    pause, rule = paused()
    running, worker = held()
    queued = ExecutionFactory()
    TaskFactory(execution=queued)
    failed = failed_at("charge-card")
    completed = ExecutionFactory(completed=True)
    cancelled = ExecutionFactory(status=ExecutionStatus.CANCELLED)

    phrases = where_now([fresh(e) for e in (pause, running, queued, failed, completed, cancelled)])

    assert phrases[pause.pk] == "paused by rule %d" % rule
    assert phrases[running.pk] == "running on worker %s, after step reserve-stock" % worker
    assert phrases[queued.pk] == "queued"
    assert phrases[failed.pk] == "failed at step charge-card"
    assert phrases[completed.pk] == "completed"
    assert phrases[cancelled.pk] == "cancelled before its first step"


def test_where_now_names_the_failed_step_of_an_earlier_run_and_the_handler() -> None:
    """The failure handler runs as a run of its own: the step that failed the execution
    is in the run before, and the stored error names it."""

    def handled(outcome: object) -> Execution:
        execution: Execution = ExecutionFactory(
            failed=True,
            run_index=2,
            error={"type": "StepFailed", "step": "book-courier", "compensation": outcome},
        )
        first = RunFactory(execution=execution, index=1, status="FAILED")
        StepFactory(run=first, name="book-courier", status=StepStatus.FAILED, result=None)
        handler = RunFactory(execution=execution, index=2, reason=RunReason.COMPENSATION)
        StepFactory(run=handler, name="release-stock")
        return execution

    undone = handled("completed")
    not_undone = handled({"type": "ValueError", "message": "no stock row"})
    plain = ExecutionFactory(failed=True, error={"type": "ValueError"})

    phrases = where_now([fresh(e) for e in (undone, not_undone, plain)])

    assert phrases[undone.pk] == ("failed at step book-courier; its failure handler completed")
    assert phrases[not_undone.pk] == ("failed at step book-courier; its failure handler failed too")
    assert phrases[plain.pk] == "failed outside its steps"


def test_where_now_and_blocker_name_the_awaited_child() -> None:
    parent = suspended()
    StepFactory(
        run=RunFactory(execution=parent),
        name="child",
        position="report",
        kind=StepKind.CHILD,
        status=StepStatus.SCHEDULED,
        result={"id": "report-of-7"},
    )
    TaskFactory(execution=parent, run_after=None)

    assert where_now([fresh(parent)]) == {parent.pk: "waiting for child execution report-of-7"}
    assert blocker(fresh(parent)) == "Waiting for child execution report-of-7 to finish."


def test_where_now_reads_results_of_waits_only() -> None:
    """Only a group's or a child's result is read; any other step's may be large."""
    executions = [fresh(failed_at()), fresh(ExecutionFactory(completed=True))]

    with CaptureQueriesContext(connection) as captured:
        where_now(executions)

    step_query = next(q["sql"] for q in captured.captured_queries if "zart_steps" in q["sql"])
    assert '"zart_steps"."result" AS' not in step_query
    assert "CASE WHEN" in step_query


def test_where_now_reads_the_current_run_only() -> None:
    """A failed first run's step is history once a retry started a second run."""
    execution = suspended(run_index=2)
    old = RunFactory(execution=execution, index=1, status="FAILED")
    StepFactory(run=old, name="charge-card", status=StepStatus.FAILED)
    StepFactory(run=RunFactory(execution=execution, index=2), name="reserve-stock")
    TaskFactory(execution=execution)

    assert where_now([fresh(execution)]) == {execution.pk: "queued, after step reserve-stock"}


def test_where_now_costs_the_same_for_a_page_of_any_size(
    django_assert_num_queries: Callable[..., Any],
) -> None:
    def every_state() -> list[Execution]:
        return [
            retrying()[0],
            sleeping()[0],
            waiting_for_event()[0],
            waiting_for_branches(),
            paused()[0],
            held()[0],
            failed_at(),
        ]

    small = [fresh(e) for e in every_state()]
    large = [fresh(e) for _ in range(4) for e in every_state()]

    with django_assert_num_queries(3):
        where_now(small)
    with django_assert_num_queries(3):
        phrases = where_now(large)
    assert len(phrases) == len(large) and all(phrases.values())


# -- blockers --------------------------------------------------------------------------


def test_blocker_of_waits_and_retries() -> None:
    retry, next_try = retrying()
    sleep, wake_at = sleeping()
    event, since = waiting_for_event()
    timeout = timezone.now() + timedelta(hours=1)
    event_with_timeout, since_2 = waiting_for_event(timeout)
    group = waiting_for_branches(done=2, total=5)

    assert blocker(fresh(retry)) == (
        "Retry back-off until %s: step list-charge-card failed; attempt 2/4."
        % at(next_try, seconds=True)
    )
    assert blocker(fresh(sleep)) == "Sleeping until %s." % at(wake_at, seconds=True)
    assert blocker(fresh(event)) == (
        "Waiting for event approved since %s, without a timeout." % at(since, seconds=True)
    )
    assert blocker(fresh(event_with_timeout)) == (
        "Waiting for event approved since %s, until %s."
        % (at(since_2, seconds=True), at(timeout, seconds=True))
    )
    assert blocker(fresh(group)) == "Waiting for its parallel branches: 2 of 5 done."


def test_blocker_of_a_paused_execution_names_the_rule_and_its_reason() -> None:
    execution, rule = paused(reason="card processor outage")

    assert blocker(fresh(execution)) == (
        "Paused by rule %d (card processor outage): no worker runs it until the rule is "
        "resumed or expires." % rule
    )


def test_blocker_of_a_held_execution_names_the_worker_and_its_heartbeat() -> None:
    execution, worker = held(heartbeat_age=7)

    sentence = blocker(fresh(execution))

    assert sentence.startswith("It is running: held by worker %s (localhost, pid " % worker)
    assert sentence.endswith("whose heartbeat is 7 s old.")


def test_blocker_of_a_task_whose_lease_ran_out() -> None:
    execution, _ = held(heartbeat_age=60, lease_left=-30)

    sentence = blocker(fresh(execution))

    assert "stopped renewing its lease" in sentence
    assert "a live worker serving queue default takes it over" in sentence


def test_blocker_when_no_live_worker_serves_the_queue() -> None:
    execution = ExecutionFactory(workflow="arith", queue="mail")
    TaskFactory(execution=execution)
    WorkerFactory(queues=["default"])
    WorkerFactory(queues=["mail"], dead_for=timedelta(minutes=5))

    assert blocker(fresh(execution)) == "No live worker serves queue mail."


def test_blocker_when_the_workflow_is_not_registered_here() -> None:
    execution = ExecutionFactory(workflow="no-such-workflow")
    TaskFactory(execution=execution)
    WorkerFactory(queues=["default"])

    assert blocker(fresh(execution)) == (
        "Workflow no-such-workflow is not registered in this process; if the workers' code "
        "does not register it either, none of them can run it."
    )


def test_blocker_of_due_work_waiting_for_a_free_worker() -> None:
    execution = ExecutionFactory(workflow="arith")
    due = timezone.now() - timedelta(seconds=40)
    TaskFactory(execution=execution, run_after=due)
    WorkerFactory.create_batch(2, queues=["default", "mail"])

    assert blocker(fresh(execution)) == (
        "Due since %s and waiting for a free worker (2 live workers serve queue default)."
        % at(due, seconds=True)
    )


def test_blocker_of_a_finished_execution_is_empty() -> None:
    assert blocker(fresh(failed_at())) == ""
    assert blocker(fresh(ExecutionFactory(completed=True))) == ""


# -- the changelist --------------------------------------------------------------------


def listing(client: Client, **params: Any) -> str:
    response = client.get(reverse(LIST_URL), params)
    assert response.status_code == 200
    return response.text


def listed(text: str, *ids: str) -> set[str]:
    """Which of ``ids`` are rows of the listing."""
    return {i for i in ids if '<th class="field-id"><a href="' in text and ">%s</a>" % i in text}


def test_changelist_shows_badge_phrase_runs_and_duration(admin_client: Client) -> None:
    _, next_try = retrying(id="pay-42")
    start = timezone.now() - timedelta(minutes=4, seconds=10)
    ExecutionFactory(id="done-7", completed=True, started_at=start, finished_at=timezone.now())

    text = listing(admin_client)

    assert '<span class="zart-badge zart-badge-suspended">Suspended</span>' in text
    assert "step list-charge-card, attempt 2/4, next try %s" % at(next_try, seconds=True) in text
    assert "4 min 10 s" in text
    assert "django_zart/list.css" in text


def test_changelist_filters(admin_client: Client) -> None:
    failed = failed_at()
    Execution.objects.filter(pk=failed.pk).update(workflow="billing", queue="mail")
    other = ExecutionFactory(id="plain")
    rerun = ExecutionFactory(id="rerun-1", run_index=2)
    RunFactory(execution=rerun, index=1)
    RunFactory(execution=rerun, index=2, reason=RunReason.RERUN)
    scheduled = ExecutionFactory(id="tick-1")
    RunFactory(execution=scheduled, reason=RunReason.SCHEDULE)
    ids = (failed.pk, other.pk, rerun.pk, scheduled.pk)

    assert listed(listing(admin_client, status__exact="FAILED"), *ids) == {failed.pk}
    assert listed(listing(admin_client, workflow="billing"), *ids) == {failed.pk}
    assert listed(listing(admin_client, queue="mail"), *ids) == {failed.pk}
    assert listed(listing(admin_client, failed_steps="yes"), *ids) == {failed.pk}
    assert failed.pk not in listed(listing(admin_client, failed_steps="no"), *ids)
    assert listed(listing(admin_client, trigger="RERUN"), *ids) == {rerun.pk}
    assert listed(listing(admin_client, trigger="SCHEDULE"), *ids) == {scheduled.pk}


def test_changelist_searches_ids_and_json_text(admin_client: Client) -> None:
    ExecutionFactory(id="order-1001", input={"customer": "Zoë Quartz"})
    ExecutionFactory(id="order-1002", output={"invoice": "INV-77"}, completed=True)
    ExecutionFactory(id="order-10021", input={"customer": "someone else"})
    ids = ("order-1001", "order-1002", "order-10021")

    # A whole id finds that execution alone, even when it is part of another id.
    assert listed(listing(admin_client, q="order-1002"), *ids) == {"order-1002"}
    assert listed(listing(admin_client, q="order-100"), *ids) == set(ids)
    assert listed(listing(admin_client, q="quartz"), *ids) == {"order-1001"}
    assert listed(listing(admin_client, q="inv-77"), *ids) == {"order-1002"}
    assert listed(listing(admin_client, q="nothing like it"), *ids) == set()


def test_changelist_sorted_by_every_column_lists_each_execution_once(
    admin_client: Client,
) -> None:
    """An execution with several runs is one row, whichever column sorts the list."""
    rerun = ExecutionFactory(id="rerun-3", run_index=3)
    for index in (1, 2, 3):
        RunFactory(execution=rerun, index=index)
    ExecutionFactory(id="once")
    for column in range(1, 8):
        for order in (str(column), "-%d" % column):
            text = listing(admin_client, o=order)
            rows = re.findall(r'<th class="field-id"><a href="[^"]*">([^<]+)</a>', text)
            assert sorted(rows) == ["once", "rerun-3"], order


def test_changelist_counts_by_status_link_to_the_filter(admin_client: Client) -> None:
    failed_at()
    failed_at()
    ExecutionFactory(completed=True, workflow="billing")
    ExecutionFactory(failed=True, workflow="billing")

    text = listing(admin_client)
    billing = listing(admin_client, workflow="billing")

    assert 'Failed <span class="zart-count">3</span>' in text
    assert 'Completed <span class="zart-count">1</span>' in text
    assert 'Pending <span class="zart-count">0</span>' in text
    assert 'href="?status__exact=FAILED"' in text
    # Counts follow the other filters, and their links keep them.
    assert 'Failed <span class="zart-count">1</span>' in billing
    assert "status__exact=FAILED" in billing and "workflow=billing" in billing
    failed_only = listing(admin_client, status__exact="FAILED")
    assert '<li class="selected">' in failed_only
    assert "3 executions" in failed_only


def test_changelist_queries_do_not_grow_with_the_page(admin_client: Client) -> None:
    def every_state() -> None:
        retrying()
        sleeping()
        waiting_for_event()
        waiting_for_branches()
        paused()
        held()
        failed_at()

    def queries() -> list[str]:
        url = reverse(LIST_URL)
        admin_client.get(url)  # the session and user lookups settle
        with CaptureQueriesContext(connection) as captured:
            response = admin_client.get(url)
        assert response.status_code == 200
        return [query["sql"] for query in captured.captured_queries]

    every_state()
    small = queries()
    for _ in range(3):
        every_state()
    large = queries()

    assert len(large) == len(small)
    assert not any('"input"' in sql or '"output"' in sql for sql in large)


def test_changelist_links_to_the_start_page_when_permitted(
    admin_client: Client, client: Client, django_user_model: Any
) -> None:
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_execution"))
    client.force_login(viewer)
    start = reverse("admin:django_zart_execution_start")

    assert 'href="%s"' % start in listing(admin_client)
    assert 'href="%s"' % start not in listing(client)


def test_where_now_and_blocker_tell_an_execution_waiting_for_a_slot() -> None:
    waiting = ExecutionFactory()
    TaskFactory(
        execution=waiting, blocked=True, run_after=None, limit_key="sync-account/7", limit_max=1
    )
    assert where_now([fresh(waiting)]) == {
        waiting.pk: "waiting for a slot of sync-account/7 (1 at once)"
    }
    assert blocker(fresh(waiting)).startswith(
        "Waiting for a concurrency slot of sync-account/7 (1 at once): it starts as soon"
    )
