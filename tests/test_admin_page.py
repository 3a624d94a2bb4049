"""The execution page: timeline, runs, events, work items, redaction and auto-refresh."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_zart.admin import display, timeline
from django_zart.models import Event, Execution, PauseRule, Schedule, Step, Task
from django_zart.states import (
    AttemptStatus,
    ExecutionStatus,
    RunReason,
    RunStatus,
    StepKind,
    StepStatus,
    TaskKind,
)

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


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def admin_url(model: type[Any], view: str, *args: Any) -> str:
    return reverse(
        f"admin:django_zart_{model._meta.model_name}_{view}",
        args=[quote(arg) for arg in args],
    )


def page_of(client: Client, execution: Execution) -> str:
    response = client.get(admin_url(Execution, "change", execution.pk))
    assert response.status_code == 200
    return response.text


def bar_classes(page: str, step: Step) -> set[str]:
    """The classes of the timeline bar that links to ``step``."""
    match = re.search(r'<a class="([^"]*)" href="#step-%d"' % step.pk, page)
    assert match, "no bar for step %s" % step.position
    return set(match.group(1).split())


def build_run(execution: Execution, steps: int = 0) -> Any:
    """A run that started a minute ago, with ``steps`` completed steps a second apart."""
    start = timezone.now() - timedelta(minutes=1)
    run = RunFactory(execution=execution)
    run.created_at = start
    run.save(update_fields=["created_at"])
    for i in range(steps):
        at = start + timedelta(seconds=i + 1)
        StepFactory(run=run, sequence=i + 1, name=f"s-{i}", created_at=at)
    return run


def test_timeline_bars_are_coloured_hatched_stacked_and_linked(admin_client: Client) -> None:
    execution = ExecutionFactory(status=ExecutionStatus.SUSPENDED)
    run = build_run(execution)
    t0 = run.created_at
    done = StepFactory(run=run, sequence=1, name="fetch", created_at=t0 + timedelta(seconds=1))
    retried = StepFactory(
        run=run,
        sequence=2,
        name="charge",
        attempts=3,
        created_at=t0 + timedelta(seconds=2),
        updated_at=t0 + timedelta(seconds=9),
    )
    for number, status in enumerate([AttemptStatus.FAILED] * 2 + [AttemptStatus.SUCCEEDED], 1):
        StepAttemptFactory(
            step=retried,
            number=number,
            status=status,
            error=error_dict("timeout") if status == AttemptStatus.FAILED else None,
            finished_at=t0 + timedelta(seconds=3 * number),
        )
    failed = StepFactory(
        run=run,
        sequence=3,
        name="notify",
        status=StepStatus.FAILED,
        result=None,
        error=error_dict("smtp down"),
    )
    sleep = StepFactory(
        run=run,
        sequence=4,
        name="cool-off",
        kind=StepKind.SLEEP,
        status=StepStatus.COMPLETED,
        result=None,
    )
    branches = [
        StepFactory(
            run=run,
            sequence=5 + i,
            name=f"ship#{i}",
            kind=StepKind.BRANCH,
            status=StepStatus.SCHEDULED if i else StepStatus.COMPLETED,
        )
        for i in range(2)
    ]
    group = StepFactory(
        run=run,
        sequence=7,
        name="wait_all",
        kind=StepKind.GROUP,
        status=StepStatus.COMPLETED,
        result={"positions": [b.position for b in branches]},
    )
    child = StepFactory(
        run=run,
        sequence=8,
        name="invoice",
        kind=StepKind.CHILD,
        status=StepStatus.SCHEDULED,
        result={"id": "invoice/7"},
    )
    wait = StepFactory(
        run=run,
        sequence=9,
        name="approval",
        kind=StepKind.EVENT,
        status=StepStatus.WAITING,
        result=None,
        wake_at=timezone.now() + timedelta(hours=1),
    )
    retrying = StepFactory(
        run=run,
        sequence=10,
        name="poll",
        status=StepStatus.RETRYING,
        attempts=1,
        result=None,
        wake_at=timezone.now() + timedelta(seconds=30),
    )
    StepAttemptFactory(step=retrying, number=1)

    page = page_of(admin_client, execution)

    assert {"zt-bar", "zt-completed", "zt-kind-step"} <= bar_classes(page, done)
    assert "zt-failed" in bar_classes(page, failed)
    assert {"zt-waiting", "zt-hatched", "zt-kind-event"} <= bar_classes(page, wait)
    assert {"zt-completed", "zt-hatched", "zt-kind-sleep"} <= bar_classes(page, sleep)
    assert "zt-hatched" not in bar_classes(page, done)
    assert "zt-scheduled" in bar_classes(page, child)
    assert "zt-retrying" in bar_classes(page, retrying)
    # Retries are segments of their bar: two failed attempts, one that succeeded.
    bar = page.split('href="#step-%d"' % retried.pk, 2)[2].split("</a>", 1)[0]
    assert bar.count('class="zt-seg zt-failed"') == 2
    assert bar.count('class="zt-seg zt-completed"') == 1
    retry_bar = page.split('href="#step-%d"' % retrying.pk, 2)[2].split("</a>", 1)[0]
    assert 'class="zt-seg zt-backoff"' in retry_bar
    # The branches are stacked under their wait_all, after it.
    stack = page.split('href="#step-%d"' % group.pk, 1)[1].split('<div class="zt-stack">', 1)[1]
    stack = stack.split("</div></div></div>", 1)[0] + "</div></div>"
    for branch in branches:
        assert 'href="#step-%d"' % branch.pk in stack
    assert page.count('<div class="zt-row zt-branch">') == 2
    # The child links to its execution's page; each bar to its step's block below.
    assert 'href="%s"' % admin_url(Execution, "change", "invoice/7") in page
    for step in (done, retried, failed, sleep, *branches, group, child, wait, retrying):
        assert 'id="step-%d"' % step.pk in page
    assert page.count('<details class="zt-step"') == 10
    assert "smtp down" in page


def test_a_bar_opens_a_block_with_result_and_attempts(admin_client: Client) -> None:
    execution = ExecutionFactory(completed=True)
    run = build_run(execution)
    step = StepFactory(run=run, name="charge", attempts=2, result={"receipt": "r-991"})
    StepAttemptFactory(step=step, number=1, error=error_dict("gateway timeout"))
    StepAttemptFactory(step=step, number=2, status=AttemptStatus.SUCCEEDED, error=None)

    page = page_of(admin_client, execution)
    block = page.split('<details class="zt-step" id="step-%d">' % step.pk, 1)[1]
    block = block.split("</details>\n", 1)[0]

    assert "&quot;receipt&quot;: &quot;r-991&quot;" in block
    assert "gateway timeout" in block
    assert block.count("<tr><td>") == 2
    assert admin_url(Step, "change", step.pk) in block


def test_more_steps_than_the_limit_are_cut_with_a_note(
    admin_client: Client, monkeypatch: Any
) -> None:
    monkeypatch.setattr(timeline, "BAR_LIMIT", 5)
    execution = ExecutionFactory(completed=True)
    build_run(execution, steps=7)

    page = page_of(admin_client, execution)

    assert page.count('<details class="zt-step"') == 5
    assert "More than 5 steps: only the first 5 are drawn." in page


def test_start_of_a_step_is_derived_from_the_step_before() -> None:
    execution = ExecutionFactory(completed=True)
    run = build_run(execution)
    t0 = run.created_at
    first = StepFactory(run=run, sequence=1, created_at=t0 + timedelta(seconds=10))
    second = StepFactory(run=run, sequence=2, created_at=t0 + timedelta(seconds=30))
    sleep = StepFactory(
        run=run,
        sequence=3,
        kind=StepKind.SLEEP,
        created_at=t0 + timedelta(seconds=31),
        updated_at=t0 + timedelta(seconds=50),
    )

    bars = {bar.step.pk: bar for bar in timeline.load(execution).bars}

    assert bars[first.pk].start == t0
    assert bars[second.pk].start == first.updated_at
    assert (bars[sleep.pk].start, bars[sleep.pk].end) == (sleep.created_at, sleep.updated_at)


def test_runs_history_shows_reason_trigger_status_and_error(admin_client: Client) -> None:
    execution = ExecutionFactory(status=ExecutionStatus.PENDING, run_index=3)
    RunFactory(
        execution=execution,
        index=1,
        reason=RunReason.INITIAL,
        status=RunStatus.FAILED,
        triggered_by="schedule:nightly",
        error=error_dict("first run broke"),
        finished_at=timezone.now(),
    )
    RunFactory(
        execution=execution,
        index=2,
        reason=RunReason.COMPENSATION,
        status=RunStatus.COMPLETED,
        triggered_by="engine",
        finished_at=timezone.now(),
    )
    RunFactory(execution=execution, index=3, reason=RunReason.RETRY_STEP, triggered_by="admin:dana")

    page = page_of(admin_client, execution)

    for text in (
        "schedule:nightly",
        "admin:dana",
        "Failure handler",
        "Step retry",
        "first run broke",
        "Initial",
    ):
        assert text in page
    assert page.count('<td class="field-took">') == 3
    assert "run 3 (Step retry) · by admin:dana</h2>" in page
    assert "No steps in this run yet." in page


def test_events_show_who_sent_them(admin_client: Client) -> None:
    execution = ExecutionFactory(status=ExecutionStatus.SUSPENDED)
    EventFactory(execution=execution, name="approved", sent_by="token:ops-bot")

    page = page_of(admin_client, execution)

    assert "token:ops-bot" in page
    assert '<td class="field-sent_by">' in page


def test_work_items_show_their_lease_and_the_holder(admin_client: Client) -> None:
    execution = ExecutionFactory(status=ExecutionStatus.RUNNING, queue="mail")
    token = uuid.uuid4()
    lease_until = timezone.now() + timedelta(seconds=25)
    rule = PauseRule.objects.create(workflow="onboarding", step="charge-*")
    TaskFactory(
        execution=execution,
        held_by=token,
        claimed_at=timezone.now() - timedelta(seconds=5),
        lease_until=lease_until,
        recoveries=2,
    )
    TaskFactory(execution=execution, kind=TaskKind.BRANCH, paused_by=rule)
    WorkerFactory(id="mailer-1", queues=["mail"], expires_at=lease_until)

    page = page_of(admin_client, execution)
    work = page.split('<table class="zart-work">', 1)[1].split("</table>", 1)[0]

    assert str(token) in work
    assert " left)" in work
    assert "<td>2</td>" in work
    assert "Parallel branch" in work and "not held" in work
    assert admin_url(PauseRule, "change", rule.pk) in work
    assert "mailer-1" in page.split('<p class="zart-blocker">', 1)[1].split("</p>", 1)[0]


def test_blocker_line_shows_only_when_there_is_one(admin_client: Client, monkeypatch: Any) -> None:
    from django_zart.admin import whereabouts

    execution = ExecutionFactory(status=ExecutionStatus.SUSPENDED)
    monkeypatch.setattr(whereabouts, "blocker", lambda e: "")
    assert "Why isn't it running?" not in page_of(admin_client, execution)

    monkeypatch.setattr(whereabouts, "blocker", lambda e: "sleeping until <14:05>")
    page = page_of(admin_client, execution)

    assert "Why isn't it running?</strong> sleeping until &lt;14:05&gt;" in page
    finished = ExecutionFactory(completed=True)
    assert "sleeping until" not in page_of(admin_client, finished)


def test_blocker_of_the_real_execution_is_shown(admin_client: Client) -> None:
    execution = ExecutionFactory(status=ExecutionStatus.SUSPENDED, queue="nobody-serves")

    page = page_of(admin_client, execution)

    assert '<p class="zart-blocker"><strong>' in page
    assert "nobody-serves" in page.split('<p class="zart-blocker">', 1)[1].split("</p>", 1)[0]


def test_refresh_toggle_only_while_unfinished(admin_client: Client) -> None:
    unfinished = ExecutionFactory(status=ExecutionStatus.RUNNING)
    finished = ExecutionFactory(failed=True)

    assert 'id="zart-refresh"' in page_of(admin_client, unfinished)
    assert 'id="zart-refresh"' not in page_of(admin_client, finished)
    assert "django_zart/page.js" in page_of(admin_client, unfinished)


def test_input_output_and_error_are_collapsible(admin_client: Client) -> None:
    execution = ExecutionFactory(failed=True, input={"a": 1, "b": [1, 2]}, output={"x": 1})

    page = page_of(admin_client, execution)

    assert '<details class="zart-json" open><summary>object, 2 keys</summary><pre>' in page
    assert "<summary>traceback</summary>" in page
    assert "ValueError: card declined\n</pre>" in page


SECRET = "hunter2-do-not-show"


def secretive(value: str = SECRET) -> dict[str, Any]:
    return {
        "user": "dana",
        "Password": value,
        "nested": [{"stripe_API_KEY": value, "ok": {"refresh_token": value}}],
        "headers": {"Authorization": "Bearer " + value},
    }


def test_redacted_keys_are_masked_on_the_execution_page(admin_client: Client) -> None:
    execution = ExecutionFactory(
        failed=True, input=secretive(), output=secretive(), error=error_dict() | secretive()
    )
    run = build_run(execution)
    step = StepFactory(run=run, result=secretive(), attempts=2)
    StepAttemptFactory(step=step, error=error_dict() | secretive())
    EventFactory(execution=execution, payload=secretive())

    page = page_of(admin_client, execution)

    assert SECRET not in page
    assert display.REDACTED in page
    assert "dana" in page


def test_redacted_keys_are_masked_on_step_event_and_other_pages(admin_client: Client) -> None:
    execution = ExecutionFactory(input=secretive())
    step = StepFactory(run=RunFactory(execution=execution), result=secretive(), attempts=2)
    StepAttemptFactory(step=step, error=error_dict() | secretive())
    event = EventFactory(execution=execution, payload=secretive())
    task = TaskFactory(execution=execution, payload=secretive())
    Schedule.objects.create(
        name="nightly",
        workflow="reports",
        every=60,
        input=secretive(),
        next_tick_at=timezone.now(),
    )

    pages = {
        "step": admin_client.get(admin_url(Step, "change", step.pk)).text,
        "event": admin_client.get(admin_url(Event, "change", event.pk)).text,
        "task": admin_client.get(admin_url(Task, "change", task.pk)).text,
        "schedule": admin_client.get(admin_url(Schedule, "change", "nightly")).text,
    }

    for name, page in pages.items():
        assert SECRET not in page, name
        assert display.REDACTED in page, name


def test_redact_keys_setting_is_honoured(settings: Any) -> None:
    settings.ZART = {"REDACT_KEYS": ["ssn"]}

    shown = display.redact({"SSN_number": 1, "password": "p", "list": [{"ssn": 2}]})

    assert shown == {
        "SSN_number": display.REDACTED,
        "password": "p",
        "list": [{"ssn": display.REDACTED}],
    }


def make_execution(steps: int) -> Execution:
    """An unfinished execution with ``steps`` steps of every kind, some retried, and a held
    task, events and runs."""
    execution = ExecutionFactory(status=ExecutionStatus.RUNNING, run_index=2)
    RunFactory(execution=execution, index=1, status=RunStatus.FAILED)
    run = build_run(execution)
    kinds = [StepKind.STEP, StepKind.SLEEP, StepKind.EVENT, StepKind.BRANCH, StepKind.CHILD]
    for i in range(steps):
        step = StepFactory(
            run=run,
            sequence=i + 1,
            name=f"s-{i}",
            kind=kinds[i % 5],
            attempts=2,
            result={"id": f"child-{i}"},
        )
        StepAttemptFactory(step=step, number=1)
        StepAttemptFactory(step=step, number=2, status=AttemptStatus.SUCCEEDED, error=None)
    EventFactory.create_batch(3, execution=execution)
    TaskFactory(
        execution=execution,
        held_by=uuid.uuid4(),
        lease_until=timezone.now() + timedelta(seconds=30),
    )
    WorkerFactory()
    return execution


def test_page_queries_do_not_grow_with_steps(admin_client: Client) -> None:
    small, large = make_execution(5), make_execution(50)
    page_of(admin_client, small)  # the session and user lookups settle

    counts = []
    for execution in (small, large):
        with CaptureQueriesContext(connection) as captured:
            page = page_of(admin_client, execution)
        counts.append(len(captured.captured_queries))
        assert page.count('<details class="zt-step"') in (5, 50)

    assert counts[0] == counts[1]
    assert counts[0] <= 12


def test_action_buttons_are_on_the_page(admin_client: Client) -> None:
    unfinished = ExecutionFactory(status=ExecutionStatus.SUSPENDED)
    failed = ExecutionFactory(failed=True)

    assert '<div class="zart-page-actions"><ul class="zart-actions">' in page_of(
        admin_client, unfinished
    )
    page = page_of(admin_client, failed)
    assert "Retry failed step…" in page and "Cancel…" not in page


def test_steps_replayed_from_earlier_runs_are_named(admin_client: Client) -> None:
    execution = ExecutionFactory(status=ExecutionStatus.RUNNING, run_index=2, replay_base=1)
    first = RunFactory(execution=execution, index=1, status=RunStatus.FAILED)
    kept = StepFactory(run=first, name="fetch-profile")
    StepFactory(run=first, name="charge", status=StepStatus.FAILED, result=None)
    second = RunFactory(execution=execution, index=2, reason=RunReason.RETRY_STEP)
    StepFactory(run=second, name="charge")

    page = page_of(admin_client, execution)
    line = page.split('<p class="zt-replayed">', 1)[1].split("</p>", 1)[0]

    assert "fetch-profile</a> (run 1)" in line
    assert admin_url(Step, "change", kept.pk) in line
    assert "charge" not in line


def test_step_rows_are_capped_current_run_first(admin_client: Client, monkeypatch: Any) -> None:
    from django_zart.admin import execution_page

    monkeypatch.setattr(execution_page, "STEP_ROWS", 4)
    execution = ExecutionFactory(completed=True, run_index=2)
    StepFactory.create_batch(3, run=RunFactory(execution=execution, index=1))
    build_run(execution, steps=3)

    page = page_of(admin_client, execution)

    run_indexes = re.findall(r'<td class="field-run_index">\s*<p>(\d+)</p>', page)
    assert run_indexes == ["2", "2", "2", "1"]
    assert "The steps below are the first 4 only" in page
    steps_url = admin_url(Step, "changelist") + "?execution__id__exact=" + execution.pk
    assert steps_url in page
    listing = admin_client.get(steps_url)
    assert listing.status_code == 200
    assert listing.text.count('<td class="field-execution_html">') == 6
    assert page.count('<details class="zt-step"') == 3


def test_timeline_reads_its_own_steps_when_the_list_is_cut(
    admin_client: Client, monkeypatch: Any
) -> None:
    from django_zart.admin import execution_page

    monkeypatch.setattr(execution_page, "STEP_ROWS", 4)
    execution = ExecutionFactory(completed=True)
    build_run(execution, steps=6)

    page = page_of(admin_client, execution)

    assert page.count('<td class="field-position">') == 4
    assert page.count('<details class="zt-step"') == 6


def test_timeline_without_time_zones(admin_client: Client, settings: Any) -> None:
    settings.USE_TZ = False
    execution = ExecutionFactory(status=ExecutionStatus.RUNNING)
    run = build_run(execution)
    step = StepFactory(run=run, attempts=2)
    StepAttemptFactory(step=step, number=1)

    page = page_of(admin_client, execution)

    assert 'class="zt-seg zt-failed"' in page


def test_axis_shows_the_start_then_offsets() -> None:
    start = timezone.now()
    line = timeline.Timeline(
        run=None, bars=[], steps=[], start=start, end=start + timedelta(seconds=4), more=False
    )

    axis = timeline.axis_html(line)

    assert timeline.clock(start) in axis
    assert '<span class="zt-tick" style="left:50%">+2.0 s</span>' in axis
    assert '<span class="zt-tick" style="left:100%">+4.0 s</span>' in axis
    assert timeline.duration(timedelta(milliseconds=250)) == "250 ms"
    assert timeline.duration(timedelta(minutes=3, seconds=5)) == "3 min 5 s"
