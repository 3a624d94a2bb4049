"""The operations, in process with real workers: cancel, restart, rerun, retry-step,
pause rules, idempotent start, the overview and retention; each happy path, and each
refusal leaving every table as it was."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

import django_zart as zart
from django_zart.models import Execution, PauseRule, Run, Step, Task
from tests.factories import ExecutionFactory, RunFactory, StepFactory
from tests.models import Flag, SideEffect
from tests.tables import unchanged_tables

pytestmark = pytest.mark.django_db(transaction=True)

Drain = Callable[..., None]
RunWorker = Callable[..., int]


def ran(execution_id: str, step: str) -> int:
    return SideEffect.objects.filter(execution_id=execution_id, step=step).count()


def runs(execution_id: str) -> list[tuple[int, str, str, str]]:
    return list(
        Run.objects.filter(execution_id=execution_id)
        .order_by("index")
        .values_list("index", "reason", "status", "triggered_by")
    )


@pytest.fixture
def completed(drain: Drain) -> str:
    zart.start("ops", {"n": 1}, execution_id="done", by="alice")
    drain("done")
    return "done"


@pytest.fixture
def failed(drain: Drain) -> str:
    Flag.objects.create(name="fail-ops-charge", value="1")
    zart.start("ops", {"n": 1}, execution_id="broke")
    drain("broke")
    assert zart.status("broke").status == "FAILED"
    return "broke"


# -- cancel ---------------------------------------------------------------------------


def test_cancel_a_pending_execution_records_why_and_who() -> None:
    zart.start("ops", {}, execution_id="c1")
    execution = zart.cancel("c1", reason="duplicate order", by="cli:ops")
    assert execution.status == "CANCELLED"
    assert execution.error["message"] == "duplicate order"
    assert execution.error["by"] == "cli:ops"
    assert not Task.objects.filter(execution_id="c1").exists()
    assert runs("c1") == [(1, "INITIAL", "CANCELLED", "")]


def test_cancel_a_finished_execution_is_refused_and_changes_nothing(completed: str) -> None:
    with unchanged_tables(), pytest.raises(zart.ExecutionFinished, match="COMPLETED"):
        zart.cancel(completed)
    with unchanged_tables(), pytest.raises(zart.ExecutionNotFound):
        zart.cancel("ghost")


def test_cancel_a_sleeping_execution(run_worker: RunWorker) -> None:
    zart.start("ops-sleep", {"seconds": 3600}, execution_id="nap")
    run_worker()
    assert zart.status("nap").status == "SUSPENDED"
    zart.cancel("nap")
    assert zart.status("nap").status == "CANCELLED"
    assert not Task.objects.exists()


# -- restart --------------------------------------------------------------------------


def test_restart_runs_every_step_again_and_keeps_the_history(completed: str, drain: Drain) -> None:
    first_steps = list(Step.objects.filter(run_index=1).values_list("pk", flat=True))
    execution = zart.restart(completed, by="bob")
    assert execution.status == "PENDING"
    assert execution.run_index == 2
    assert execution.output is None
    drain(completed)
    assert zart.wait_completion(completed, 1)["done"] == ["OPS-PREPARE", "OPS-CHARGE", "OPS-SHIP"]
    assert [ran(completed, s) for s in ("ops-prepare", "ops-charge", "ops-ship")] == [2, 2, 2]
    assert runs(completed) == [
        (1, "INITIAL", "COMPLETED", "alice"),
        (2, "RESTART", "COMPLETED", "bob"),
    ]
    assert list(Step.objects.filter(run_index=1).values_list("pk", flat=True)) == first_steps


def test_restart_with_a_new_input(completed: str, drain: Drain) -> None:
    zart.restart(completed, input={"n": 2})
    drain(completed)
    assert zart.wait_completion(completed, 1)["input"] == {"n": 2}


def test_restart_refuses_an_unfinished_execution_and_bad_input() -> None:
    zart.start("ops", {}, execution_id="busy")
    with unchanged_tables():
        with pytest.raises(zart.ExecutionNotFinished, match="PENDING"):
            zart.restart("busy")
        with pytest.raises(zart.SerializationError):
            zart.restart("busy", input=object())
        with pytest.raises(zart.ExecutionNotFound):
            zart.restart("ghost")


def test_restart_of_a_cancelled_execution(drain: Drain) -> None:
    zart.start("ops", {}, execution_id="again")
    zart.cancel("again")
    zart.restart("again")
    drain("again")
    assert zart.status("again").status == "COMPLETED"
    assert [r[1] for r in runs("again")] == ["INITIAL", "RESTART"]


# -- rerun ----------------------------------------------------------------------------


def test_rerun_chosen_steps_replays_the_others(completed: str, drain: Drain) -> None:
    zart.rerun(completed, steps=["ops-charge"], by="carol")
    drain(completed)
    assert [ran(completed, s) for s in ("ops-prepare", "ops-charge", "ops-ship")] == [1, 2, 1]
    assert runs(completed)[-1] == (2, "RERUN", "COMPLETED", "carol")
    assert zart.status(completed).run_index == 2


def test_rerun_from_a_step_runs_it_and_everything_after(completed: str, drain: Drain) -> None:
    zart.rerun(completed, from_step="ops-charge")
    drain(completed)
    assert [ran(completed, s) for s in ("ops-prepare", "ops-charge", "ops-ship")] == [1, 2, 2]
    # A second rerun works from what the first one left.
    zart.rerun(completed, steps=["ops-prepare"])
    drain(completed)
    assert [ran(completed, s) for s in ("ops-prepare", "ops-charge", "ops-ship")] == [2, 2, 2]


def test_rerun_refusals_change_nothing(completed: str) -> None:
    with unchanged_tables():
        with pytest.raises(zart.StepNotFound, match="ops-prepare"):
            zart.rerun(completed, steps=["no-such-step"])
        with pytest.raises(zart.StepNotFound):
            zart.rerun(completed, from_step="no-such-step")
        with pytest.raises(zart.InvalidArgument, match="either"):
            zart.rerun(completed)
        with pytest.raises(zart.InvalidArgument, match="either"):
            zart.rerun(completed, steps=["ops-ship"], from_step="ops-ship")
        with pytest.raises(zart.InvalidArgument, match="list"):
            zart.rerun(completed, steps="ops-ship")
        with pytest.raises(zart.InvalidArgument, match="at least one"):
            zart.rerun(completed, steps=[])
        with pytest.raises(zart.InvalidArgument, match="NUL"):
            zart.rerun(completed, steps=["a\x00"])


# -- retry a step ---------------------------------------------------------------------


def test_retry_step_resumes_a_failed_execution_from_its_failed_step(
    failed: str, drain: Drain
) -> None:
    Flag.objects.filter(name="fail-ops-charge").delete()
    execution = zart.retry_step(failed, "ops-charge", by="dave")
    assert execution.status == "PENDING"
    assert execution.error is None
    drain(failed)
    assert zart.status(failed).status == "COMPLETED"
    assert [ran(failed, s) for s in ("ops-prepare", "ops-charge", "ops-ship")] == [1, 2, 1]
    assert runs(failed) == [(1, "INITIAL", "FAILED", ""), (2, "RETRY_STEP", "COMPLETED", "dave")]


def test_retry_step_refusals_change_nothing(completed: str, failed: str) -> None:
    with unchanged_tables():
        with pytest.raises(zart.StepNotFailed, match="COMPLETED"):
            zart.retry_step(failed, "ops-prepare")
        with pytest.raises(zart.StepNotFound):
            zart.retry_step(failed, "no-such-step")
        with pytest.raises(zart.StepNotFound, match="ops-charge, ops-prepare"):
            zart.retry_step(failed, "ops-ship")  # never reached
        with pytest.raises(zart.StepNotFailed, match="not FAILED"):
            zart.retry_step(completed, "ops-charge")
        with pytest.raises(zart.StepNotFailed, match="not FAILED"):
            zart.retry_step(completed, "ops-ship")
        with pytest.raises(zart.ExecutionNotFound):
            zart.retry_step("ghost", "ops-charge")


def test_retry_step_refuses_an_unfinished_execution() -> None:
    zart.start("ops", {}, execution_id="busy")
    with unchanged_tables(), pytest.raises(zart.ExecutionNotFinished):
        zart.retry_step("busy", "ops-charge")


def test_a_failed_body_after_a_compensation_resumes_its_body(drain: Drain) -> None:
    """``order`` fails, retries once, then runs its on_failure handler: retry_step of its
    ``add`` step is refused (it completed), and a restart runs the body again."""
    zart.start("order", {"order": "o-1"}, execution_id="comp")
    drain("comp")
    assert [r[1] for r in runs("comp")] == ["INITIAL", "RETRY", "COMPENSATION"]
    with pytest.raises(zart.StepNotFailed):
        zart.retry_step("comp", "add")


# -- pause rules ----------------------------------------------------------------------


def test_pausing_a_workflow_holds_queued_work_and_resuming_loses_nothing(
    run_worker: RunWorker, drain: Drain
) -> None:
    zart.start("ops", {}, execution_id="before")
    rule = zart.pause(workflow="ops", reason="payments down", by="erin")
    zart.start("ops", {}, execution_id="after")
    assert zart.status("before").status == "PAUSED"
    assert zart.status("after").status == "PAUSED"
    assert list(zart.pause_rules()) == [rule]
    run_worker()
    assert not SideEffect.objects.exists()
    assert zart.stats()["queues"]["default"]["paused"] == 2
    resumed = zart.resume(rule.pk, by="erin")
    assert resumed.end_reason == "resumed"
    assert resumed.ended_by == "erin"
    assert not zart.pause_rules().exists()
    drain("before", "after")
    assert ran("before", "ops-ship") == ran("after", "ops-ship") == 1


def test_pausing_a_step_lets_the_execution_run_up_to_it(
    run_worker: RunWorker, drain: Drain
) -> None:
    rule = zart.pause(step="ops-ch*")
    zart.start("ops", {}, execution_id="upto")
    run_worker()
    assert zart.status("upto").status == "PAUSED"
    assert Task.objects.get(execution_id="upto").paused_by_id == rule.pk
    assert [ran("upto", s) for s in ("ops-prepare", "ops-charge", "ops-ship")] == [1, 0, 0]
    zart.resume(rule.pk)
    drain("upto")
    assert [ran("upto", s) for s in ("ops-prepare", "ops-charge", "ops-ship")] == [1, 1, 1]


def test_a_paused_sleeper_goes_back_to_its_sleep(run_worker: RunWorker) -> None:
    zart.start("ops-sleep", {"seconds": 3600}, execution_id="nap")
    run_worker()
    wake = Task.objects.get(execution_id="nap").run_after
    rule = zart.pause(execution_id="nap")
    assert zart.status("nap").status == "PAUSED"
    zart.resume(rule.pk)
    assert zart.status("nap").status == "SUSPENDED"
    assert Task.objects.get(execution_id="nap").run_after == wake


def test_a_rule_ends_by_itself_when_it_expires(run_worker: RunWorker, drain: Drain) -> None:
    rule = zart.pause(execution_id="soon", expires_at=timedelta(seconds=0.5))
    zart.start("ops", {}, execution_id="soon")
    assert zart.status("soon").status == "PAUSED"
    time.sleep(0.6)
    drain("soon")  # a worker's sweep ends the rule
    rule.refresh_from_db()
    assert rule.end_reason == "expired"
    assert rule.ended_by == "expiry"


def test_two_rules_hold_until_both_end(run_worker: RunWorker, drain: Drain) -> None:
    zart.start("ops", {}, execution_id="both")
    first = zart.pause(execution_id="both")
    second = zart.pause(workflow="ops")
    zart.resume(first.pk)
    assert zart.status("both").status == "PAUSED"
    zart.resume(second.pk)
    drain("both")


def test_cancel_a_paused_execution() -> None:
    zart.pause(workflow="ops")
    zart.start("ops", {}, execution_id="held")
    assert zart.cancel("held").status == "CANCELLED"


def test_pause_refusals_change_nothing() -> None:
    rule = zart.pause(workflow="ops")
    zart.resume(rule.pk)
    with unchanged_tables():
        with pytest.raises(zart.PauseRuleNotFound):
            zart.resume(10**6)
        with pytest.raises(zart.PauseRuleNotFound):
            zart.resume(10**30)
        with pytest.raises(zart.OperationRefused, match="already ended"):
            zart.resume(rule.pk)
        with pytest.raises(zart.InvalidArgument, match="integer"):
            zart.resume("1")  # type: ignore[arg-type]
        with pytest.raises(zart.InvalidArgument, match="needs"):
            zart.pause()
        with pytest.raises(zart.InvalidArgument, match="NUL"):
            zart.pause(workflow="a\x00")
        with pytest.raises(zart.InvalidArgument, match="aware"):
            zart.pause(workflow="ops", expires_at=timezone.now().replace(tzinfo=None))
        with pytest.raises(zart.InvalidArgument):
            zart.pause(workflow="ops", expires_at="forever")


# -- start, the overview ----------------------------------------------------------------


def test_start_if_exists_return_gives_the_existing_id() -> None:
    assert zart.start("ops", {}, execution_id="once") == "once"
    with unchanged_tables():
        assert zart.start("ops", {"other": 1}, execution_id="once", if_exists="return") == "once"
        with pytest.raises(zart.ExecutionAlreadyExists):
            zart.start("ops", {}, execution_id="once")
        with pytest.raises(zart.ExecutionAlreadyExists):  # another workflow: not the same
            zart.start("arith", {}, execution_id="once", if_exists="return")
        with pytest.raises(zart.InvalidArgument, match="if_exists"):
            zart.start("ops", {}, execution_id="twice", if_exists="ignore")


def test_executions_and_stats() -> None:
    done = ExecutionFactory(completed=True, workflow="ops")
    ExecutionFactory.create_batch(2, workflow="ops")
    ExecutionFactory(failed=True, workflow="arith")
    assert zart.executions(status="COMPLETED").get() == done
    assert zart.executions(workflow=["ops"]).count() == 3
    assert zart.executions(status=["PENDING", "FAILED"]).count() == 3
    with pytest.raises(zart.InvalidArgument, match="Unknown status"):
        zart.executions(status="DONE")
    stats = zart.stats()
    assert stats["executions"]["total"] == 4
    assert stats["executions"]["by_status"]["PENDING"] == 2
    assert stats["executions"]["by_status"]["PAUSED"] == 0
    assert stats["executions"]["by_workflow"]["arith"] == {"FAILED": 1}
    assert stats["workers"] == {"alive": 0, "dead": 0}


def test_stats_of_the_queue(completed: str) -> None:
    zart.start("ops", {}, execution_id="due")
    queue = zart.stats()["queues"]["default"]
    assert queue["due"] == 1
    assert queue["running"] == queue["paused"] == 0
    assert queue["oldest_due_age"] >= 0


# -- retention ------------------------------------------------------------------------


def test_prune_deletes_old_finished_executions_with_everything_they_own() -> None:
    old = ExecutionFactory(completed=True, finished_at=timezone.now() - timedelta(days=40))
    StepFactory.create_batch(3, run=RunFactory(execution=old))
    recent = ExecutionFactory(completed=True)
    running = ExecutionFactory(status="RUNNING")
    child = ExecutionFactory(parent=old)
    assert zart.prune(older_than="30d", dry_run=True) == 1
    assert Execution.objects.count() == 4
    assert zart.prune(older_than="30d") == 1
    assert not Execution.objects.filter(pk=old.pk).exists()
    assert not Step.objects.exists()
    assert not Run.objects.filter(execution_id=old.pk).exists()
    assert set(Execution.objects.values_list("pk", flat=True)) == {
        recent.pk,
        running.pk,
        child.pk,
    }
    child.refresh_from_db()
    assert child.parent_id is None


def test_prune_by_the_retention_setting() -> None:
    ExecutionFactory(completed=True, finished_at=timezone.now() - timedelta(days=10))
    failed = ExecutionFactory(failed=True, finished_at=timezone.now() - timedelta(days=10))
    with pytest.raises(zart.InvalidArgument, match="RETENTION"):
        zart.prune()
    with override_settings(ZART={"RETENTION": {"COMPLETED": "7d"}}):
        assert zart.prune() == 1
    assert list(Execution.objects.values_list("pk", flat=True)) == [failed.pk]


def test_prune_refuses_unfinished_statuses() -> None:
    with unchanged_tables(), pytest.raises(zart.InvalidArgument, match="finished"):
        zart.prune(older_than="1d", statuses=["RUNNING"])


def test_a_pause_rule_is_a_row_the_admin_can_show() -> None:
    rule = zart.pause(workflow="ops", step="ops-*", reason="r")
    assert str(rule) == "Pause rule %d: workflow ops, steps ops-*" % rule.pk
    assert rule.is_active
    assert PauseRule.objects.active().get() == rule


def test_workers_apply_the_retention_setting_in_small_passes() -> None:
    from django_zart.retention import prune_due

    ExecutionFactory.create_batch(3, completed=True, finished_at=timezone.now() - timedelta(days=2))
    assert prune_due() == 0  # no RETENTION: nothing is ever deleted behind anyone's back
    with override_settings(ZART={"RETENTION": {"COMPLETED": "1d"}}):
        assert prune_due() == 3
    assert not Execution.objects.exists()


def test_a_restart_takes_the_work_from_a_worker_still_running_the_cancelled_run(
    drain: Drain, caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelled while running, then restarted before its worker's next write: that
    worker's next write is refused, so the old run cannot finish the new one."""
    from django_zart import engine
    from django_zart.db import get_store

    zart.start("ops", {}, execution_id="stale")
    store = get_store()
    (claim,) = store.claim(queues=["default"], limit=1, lease=30)
    zart.cancel("stale")
    zart.restart("stale")
    with caplog.at_level(logging.INFO, logger="django_zart"):
        assert engine.execute(claim, store) == "lease-lost"
    assert "an operator asked for a new run (RESTART)" in caplog.text
    assert "Lease lost" not in caplog.text
    assert not Step.objects.filter(run_index=1).exists()
    drain("stale")
    assert zart.status("stale").status == "COMPLETED"
    assert [r[1:3] for r in runs("stale")] == [("INITIAL", "CANCELLED"), ("RESTART", "COMPLETED")]


def test_an_event_records_who_sent_it(run_worker: RunWorker) -> None:
    from django_zart.models import Event

    zart.start("approval", {}, execution_id="ask")
    run_worker()
    zart.send_event("ask", "approved", {"by": "ann"}, by="http:user:ann")
    assert Event.objects.get(execution_id="ask").sent_by == "http:user:ann"
    with unchanged_tables(), pytest.raises(zart.InvalidArgument, match="by must be a string"):
        zart.send_event("ask", "approved", by=None)  # type: ignore[arg-type]


def test_retry_and_rerun_of_parallel_branches(drain: Drain) -> None:
    """A failed branch is retried alone (its finished siblings are replayed); a rerun of
    the branch step schedules every branch again and waits for them again."""
    Flag.objects.create(name="fail-ops-part", value="1")
    zart.start("ops-fan", {}, execution_id="fan")
    drain("fan")
    assert zart.status("fan").status == "FAILED"
    Flag.objects.all().delete()
    zart.retry_step("fan", "ops-part#2")
    drain("fan")
    assert zart.wait_completion("fan", 1) == [0, 10, 20, "OPS-SHIP"]
    assert [ran("fan", "part-%d" % i) for i in range(3)] == [1, 2, 1]
    assert ran("fan", "ops-ship") == 1
    zart.rerun("fan", steps=["ops-part"])
    drain("fan")
    assert zart.wait_completion("fan", 1) == [0, 10, 20, "OPS-SHIP"]
    assert [ran("fan", "part-%d" % i) for i in range(3)] == [2, 3, 2]
    assert ran("fan", "ops-ship") == 1
