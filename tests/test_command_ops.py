"""``manage.py zart <subcommand>``: the operations from the shell, their output and exit codes.

Most tests call the command in this process; ``run_cli`` runs ``manage.py zart`` as a real
process for what only a process shows: the exit status, stderr, and colour on a terminal.
"""

import json
import os
import pty
import subprocess
import sys
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

import django_zart as zart
from django_zart.management.commands.zart import caller
from django_zart.models import Event, Execution, PauseRule, Run, Step
from tests.conftest import ROOT
from tests.factories import (
    EventFactory,
    ExecutionFactory,
    RunFactory,
    StepAttemptFactory,
    StepFactory,
    error_dict,
)
from tests.models import Flag, SideEffect

pytestmark = pytest.mark.django_db(transaction=True)

BY = caller()


def zart_cmd(*args: str) -> str:
    """What ``manage.py zart <args>`` prints; a refusal raises CommandError."""
    out = StringIO()
    call_command("zart", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def cli_env() -> dict[str, str]:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings")
    env["ZART_TEST_DATABASE_NAME"] = connection.settings_dict["NAME"]
    env.pop("DJANGO_COLORS", None)
    return env


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "zart", *args],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def failed_execution(**kwargs: Any) -> Execution:
    """A failed execution whose step ``charge-card`` failed twice; the run ended failed."""
    execution = ExecutionFactory(failed=True, workflow="ops", **kwargs)
    run = RunFactory(execution=execution, status="FAILED", error=execution.error)
    StepFactory(run=run, name="validate", sequence=1)
    step = StepFactory(
        run=run,
        name="charge-card",
        sequence=2,
        status="FAILED",
        attempts=2,
        result=None,
        error=error_dict(),
    )
    StepAttemptFactory.create_batch(2, step=step)
    return execution


# -- start, status, list, wait -----------------------------------------------------------


def test_start_prints_only_the_id_and_records_who_started_it() -> None:
    out = zart_cmd("start", "arith", "--data", '{"a": 1, "b": 2}', "--id", "cli-1")
    assert out == "cli-1\n"
    execution = Execution.objects.get(pk="cli-1")
    assert (execution.workflow, execution.input, execution.status) == (
        "arith",
        {"a": 1, "b": 2},
        "PENDING",
    )
    assert Run.objects.get(execution=execution).triggered_by == BY


def test_start_without_an_id_prints_a_new_one_and_uses_the_queue() -> None:
    out = zart_cmd("start", "arith", "--data", '{"a": 1, "b": 2}', "--queue", "reports")
    assert Execution.objects.get(pk=out.strip()).queue == "reports"


def test_start_if_exists_return_gives_the_existing_id_and_raise_refuses() -> None:
    ExecutionFactory(id="twice", workflow="arith", completed=True)
    assert zart_cmd("start", "arith", "--id", "twice", "--if-exists", "return") == "twice\n"
    with pytest.raises(CommandError, match="already exists"):
        zart_cmd("start", "arith", "--id", "twice")
    assert Execution.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{not json"], "argument --data: not valid JSON"),
        (["--wait", "soon"], "argument --wait: Invalid duration 'soon'"),
        (["--if-exists", "ignore"], "argument --if-exists: invalid choice"),
    ],
)
def test_start_with_bad_arguments_is_a_usage_error(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        zart_cmd("start", "arith", *args)
    assert not Execution.objects.exists()


def test_start_of_an_unknown_workflow_is_refused() -> None:
    with pytest.raises(CommandError, match="No workflow named 'nope'"):
        zart_cmd("start", "nope")


def test_start_wait_runs_it_to_the_end(drain: Any) -> None:
    """No worker runs here: the wait times out after printing the id, then a worker
    finishes it and ``wait`` prints the outcome."""
    out = StringIO()
    with pytest.raises(CommandError, match=r"did not finish within 0\.2s"):
        call_command(
            "zart",
            "start",
            "arith",
            "--id",
            "w",
            "--data",
            '{"a":1,"b":1}',
            "--wait",
            "200ms",
            stdout=out,
        )
    assert out.getvalue() == "w\n"
    drain("w")
    shown = zart_cmd("wait", "w", "--timeout", "1")
    assert "Status     COMPLETED" in shown
    assert 'Output     {"sum":112}' in shown
    assert json.loads(zart_cmd("wait", "w", "--timeout", "1", "--json"))["output"] == {"sum": 112}


def test_status_json_has_the_execution_its_runs_and_its_steps_with_attempts() -> None:
    failed_execution(id="order-1", input={"amount": {"$zart": "decimal", "value": "9.50"}})
    data = json.loads(zart_cmd("status", "order-1", "--json"))
    assert set(data) == {
        "id",
        "workflow",
        "queue",
        "status",
        "finished",
        "run_index",
        "parent_id",
        "input",
        "output",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
        "deadline_at",
        "runs",
        "steps",
    }
    assert data["status"] == "FAILED"
    assert data["input"] == {"amount": "9.50"}  # decoded, then a decimal's JSON text
    assert data["error"]["message"] == "card declined"
    assert data["runs"] == [
        {
            "index": 1,
            "reason": "INITIAL",
            "triggered_by": "",
            "status": "FAILED",
            "error": data["error"],
            "created_at": data["runs"][0]["created_at"],
            "finished_at": None,
        }
    ]
    assert [s["name"] for s in data["steps"]] == ["validate", "charge-card"]
    charge = data["steps"][1]
    assert (charge["status"], charge["attempts"], charge["error"]["message"]) == (
        "FAILED",
        2,
        "card declined",
    )
    assert [(a["number"], a["status"]) for a in charge["attempt_history"]] == [
        (1, "FAILED"),
        (2, "FAILED"),
    ]
    assert data["steps"][0]["attempt_history"] == []
    assert datetime.fromisoformat(data["created_at"])  # ISO 8601


def test_status_table_shows_runs_steps_and_attempts_aligned() -> None:
    failed_execution(id="order-2")
    lines = zart_cmd("status", "order-2").splitlines()
    assert "Status     FAILED" in lines
    assert "Error      ValueError: card declined" in lines
    runs = lines.index("Runs")
    assert lines[runs + 1].split() == [
        "RUN",
        "REASON",
        "BY",
        "STATUS",
        "CREATED",
        "FINISHED",
        "ERROR",
    ]
    assert lines[runs + 2].split()[:4] == ["1", "INITIAL", "-", "FAILED"]
    steps = lines[lines.index("Steps") + 1 :]
    header, _validate, charge, first, second = steps
    assert header.split()[:3] == ["RUN", "#", "STEP"]
    assert charge.split()[2:6] == ["charge-card", "STEP", "FAILED", "2"]
    assert first.split()[:3] == ["attempt", "1", "FAILED"]
    assert second.split()[:3] == ["attempt", "2", "FAILED"]
    # Aligned: each column starts at the same place on every line.
    status_at = header.index("STATUS")
    assert {line[status_at : status_at + 6] for line in (charge, first, second)} == {"FAILED"}
    assert "\x1b[" not in "".join(lines)  # not a terminal: no colour


def test_status_of_an_unknown_id_is_refused() -> None:
    with pytest.raises(CommandError, match="No execution with id 'ghost' exists"):
        zart_cmd("status", "ghost")


def test_list_filters_by_status_and_workflow_and_limits() -> None:
    ExecutionFactory(id="a", workflow="onboarding", completed=True)
    ExecutionFactory(id="b", workflow="billing", failed=True)
    ExecutionFactory(id="c", workflow="billing")
    ExecutionFactory(id="d", workflow="billing", completed=True)

    def ids(*args: str) -> list[str]:
        return [r["id"] for r in json.loads(zart_cmd("list", "--json", *args))]

    assert sorted(ids()) == ["a", "b", "c", "d"]
    assert sorted(ids("--workflow", "billing")) == ["b", "c", "d"]
    assert sorted(ids("--status", "completed")) == ["a", "d"]
    assert sorted(ids("--status", "FAILED", "--status", "PENDING")) == ["b", "c"]
    assert ids("--workflow", "billing", "--status", "COMPLETED") == ["d"]
    assert len(ids("--limit", "2")) == 2

    table = zart_cmd("list", "--limit", "3").splitlines()
    assert table[0].split() == ["ID", "WORKFLOW", "STATUS", "QUEUE", "RUN", "CREATED", "FINISHED"]
    assert len(table) == 5 and table[-1] == "(the newest 3 shown; --limit for more)"
    assert zart_cmd("list", "--workflow", "nothing") == "No executions.\n"
    with pytest.raises(CommandError, match="argument --limit: must be a whole number of at"):
        zart_cmd("list", "--limit", "0")
    with pytest.raises(CommandError, match="invalid choice: 'DONE'"):
        zart_cmd("list", "--status", "done")


def test_wait_that_times_out_is_refused() -> None:
    ExecutionFactory(id="slowpoke")
    with pytest.raises(CommandError, match=r"did not finish within 0\.05s"):
        zart_cmd("wait", "slowpoke", "--timeout", "50ms")


# -- send-event, cancel ------------------------------------------------------------------


def test_send_event_stores_it_and_a_finished_execution_refuses() -> None:
    ExecutionFactory(id="open")
    out = zart_cmd("send-event", "open", "approved", "--data", '{"by": "dana"}')
    assert "kept for its next wait" in out
    assert Event.objects.get(execution_id="open").payload == {"by": "dana"}
    ExecutionFactory(id="closed", completed=True)
    with pytest.raises(CommandError, match="has finished"):
        zart_cmd("send-event", "closed", "approved")
    assert not Event.objects.filter(execution_id="closed").exists()


def test_cancel_a_pending_execution() -> None:
    zart.start("arith", {"a": 1, "b": 1}, execution_id="stop-me")
    out = zart_cmd("cancel", "stop-me", "--reason", "wrong customer")
    assert out == "Cancelled stop-me.\n"
    execution = Execution.objects.get(pk="stop-me")
    assert execution.status == "CANCELLED"
    assert execution.error["message"] == "wrong customer"


def test_cancel_a_finished_execution_is_refused_and_changes_nothing() -> None:
    execution = ExecutionFactory(id="done", completed=True)
    with pytest.raises(CommandError, match="'done' has finished"):
        zart_cmd("cancel", "done")
    execution.refresh_from_db()
    assert (execution.status, execution.error) == ("COMPLETED", None)


# -- restart, rerun, retry-step ----------------------------------------------------------


def test_retry_step_gives_a_failed_step_new_attempts(drain: Any) -> None:
    Flag.objects.create(name="fail-ops-charge", value="yes")
    zart.start("ops", {}, execution_id="stuck")
    drain("stuck")
    assert zart.status("stuck").status == "FAILED"
    Flag.objects.all().delete()
    out = zart_cmd("retry-step", "stuck", "ops-charge")
    assert out == "Retrying step 'ops-charge' of stuck: run 2, status PENDING.\n"
    drain("stuck")
    assert zart.wait_completion("stuck", 1)["done"] == ["OPS-PREPARE", "OPS-CHARGE", "OPS-SHIP"]
    run = Run.objects.get(execution_id="stuck", index=2)
    assert (run.reason, run.triggered_by) == ("RETRY_STEP", BY)


def test_restart_with_new_data_runs_from_scratch(drain: Any) -> None:
    zart.start("arith", {"a": 1, "b": 1}, execution_id="again")
    drain("again")
    out = zart_cmd("restart", "again", "--data", '{"a": 2, "b": 2}')
    assert out.startswith("Restarted again from scratch: run 2")
    drain("again")
    assert zart.wait_completion("again", 1) == {"sum": 114}
    run = Run.objects.get(execution_id="again", index=2)
    assert (run.reason, run.triggered_by) == ("RESTART", BY)
    assert zart_cmd("restart", "again").startswith("Restarted again from scratch: run 3")
    drain("again")
    assert zart.wait_completion("again", 1) == {"sum": 114}  # the input it was given last


def test_rerun_from_a_step_or_chosen_steps(drain: Any) -> None:
    zart.start("ops", {}, execution_id="twice")
    drain("twice")
    out = zart_cmd("rerun", "twice", "--from-step", "ops-charge")
    assert out == "Rerunning from step 'ops-charge' of twice: run 2, status PENDING.\n"
    drain("twice")
    run = Run.objects.get(execution_id="twice", index=2)
    assert (run.reason, run.triggered_by, run.status) == ("RERUN", BY, "COMPLETED")
    out = zart_cmd("rerun", "twice", "--step", "ops-prepare", "--step", "ops-ship")
    assert out.startswith("Rerunning steps 'ops-prepare', 'ops-ship' of twice: run 3")
    drain("twice")
    ran = SideEffect.objects.filter(execution_id="twice").values_list("step", flat=True)
    assert sorted(ran) == sorted(["ops-prepare"] * 2 + ["ops-charge"] * 2 + ["ops-ship"] * 3)


def test_retry_a_step_that_did_not_fail_is_refused_and_changes_nothing() -> None:
    execution = failed_execution(id="not-that-one")
    with pytest.raises(CommandError) as refused:
        zart_cmd("retry-step", "not-that-one", "validate")
    assert "validate" in str(refused.value)
    execution.refresh_from_db()
    assert (execution.status, execution.run_index) == ("FAILED", 1)
    assert Step.objects.filter(execution=execution, status="FAILED").count() == 1


def test_rerun_an_unknown_step_is_refused_and_changes_nothing() -> None:
    execution = failed_execution(id="rerun-me")
    with pytest.raises(CommandError, match="no-such-step"):
        zart_cmd("rerun", "rerun-me", "--step", "no-such-step")
    execution.refresh_from_db()
    assert execution.run_index == 1 and Run.objects.filter(execution=execution).count() == 1


def test_rerun_needs_exactly_one_of_step_and_from_step() -> None:
    failed_execution(id="which")
    with pytest.raises(CommandError, match="one of the arguments --step --from-step"):
        zart_cmd("rerun", "which")
    with pytest.raises(CommandError, match="not allowed with argument"):
        zart_cmd("rerun", "which", "--step", "a", "--from-step", "b")


# -- pause, resume, pause-list -----------------------------------------------------------


def test_pause_resume_and_pause_list() -> None:
    out = zart_cmd(
        "pause",
        "--workflow",
        "billing",
        "--step",
        "charge-*",
        "--reason",
        "PSP down",
        "--expires",
        "2h",
    )
    rule = PauseRule.objects.get()
    assert out.startswith("Pause rule %d holds workflow=billing step=charge-* until " % rule.pk)
    assert (rule.workflow, rule.step, rule.reason, rule.created_by) == (
        "billing",
        "charge-*",
        "PSP down",
        BY,
    )
    assert timedelta(minutes=119) < rule.expires_at - timezone.now() <= timedelta(hours=2)

    listed = json.loads(zart_cmd("pause-list", "--json"))
    assert [(r["id"], r["step"], r["active"]) for r in listed] == [(rule.pk, "charge-*", True)]
    table = zart_cmd("pause-list").splitlines()
    assert table[0].split() == ["ID", "HOLDS", "REASON", "BY", "CREATED", "EXPIRES"]
    assert "workflow=billing step=charge-*" in table[1]

    assert "ended" in zart_cmd("resume", str(rule.pk))
    rule.refresh_from_db()
    assert (rule.is_active, rule.ended_by) == (False, BY)
    with pytest.raises(CommandError, match="ended"):
        zart_cmd("resume", str(rule.pk))
    assert zart_cmd("pause-list") == "No active pause rules.\n"
    ended = zart_cmd("pause-list", "--all").splitlines()
    assert ended[0].split()[-2:] == ["ENDED", "HOW"]
    assert "resumed by %s" % BY in ended[1]


def test_a_paused_execution_is_listed_as_paused_until_resumed() -> None:
    zart.start("arith", {"a": 1, "b": 1}, execution_id="held")
    zart_cmd("pause", "--execution", "held")
    assert [r["id"] for r in json.loads(zart_cmd("list", "--status", "paused", "--json"))] == [
        "held"
    ]
    assert json.loads(zart_cmd("stats", "--json"))["pause_rules"] == {"active": 1}
    zart_cmd("resume", str(PauseRule.objects.get().pk))
    assert zart.status("held").status == "PENDING"


def test_pause_needs_something_to_hold() -> None:
    with pytest.raises(CommandError, match="name what to pause"):
        zart_cmd("pause", "--reason", "everything")
    with pytest.raises(CommandError, match="argument --expires: Invalid duration"):
        zart_cmd("pause", "--workflow", "billing", "--expires", "tomorrow")
    assert not PauseRule.objects.exists()


def test_resume_an_unknown_rule_is_refused() -> None:
    with pytest.raises(CommandError, match="424242"):
        zart_cmd("resume", "424242")


# -- stats, prune ------------------------------------------------------------------------


def test_stats() -> None:
    ExecutionFactory(workflow="billing", completed=True)
    ExecutionFactory(workflow="billing", failed=True)
    ExecutionFactory(workflow="onboarding")
    data = json.loads(zart_cmd("stats", "--json"))
    assert data["executions"]["total"] == 3
    assert data["executions"]["by_status"]["COMPLETED"] == 1
    assert data["executions"]["by_workflow"]["billing"] == {"COMPLETED": 1, "FAILED": 1}
    lines = zart_cmd("stats").splitlines()
    assert lines[0] == "Executions: 3"
    by_workflow = lines[lines.index("By workflow") + 1 :]
    assert by_workflow[0].split()[0] == "WORKFLOW"
    assert by_workflow[1].split()[0] == "billing"
    assert any(line.startswith("Workers ") for line in lines)


def test_prune_dry_run_counts_and_deletes_nothing() -> None:
    old = timezone.now() - timedelta(days=40)
    ExecutionFactory.create_batch(2, completed=True, finished_at=old)
    recent = ExecutionFactory(completed=True)
    pending = ExecutionFactory()
    EventFactory(execution=pending)
    out = zart_cmd("prune", "--older-than", "30d", "--dry-run")
    assert out == "Would delete 2 finished executions (dry run).\n"
    assert Execution.objects.count() == 4
    assert zart_cmd("prune", "--older-than", "30d") == "Deleted 2 finished executions.\n"
    assert set(Execution.objects.values_list("pk", flat=True)) == {recent.pk, pending.pk}


def test_prune_only_the_statuses_given() -> None:
    old = timezone.now() - timedelta(days=40)
    ExecutionFactory(id="ok", completed=True, finished_at=old)
    ExecutionFactory(id="ko", failed=True, finished_at=old)
    out = zart_cmd("prune", "--older-than", "30d", "--status", "failed")
    assert out == "Deleted 1 finished execution.\n"
    assert list(Execution.objects.values_list("pk", flat=True)) == ["ok"]
    with pytest.raises(CommandError, match="invalid choice: 'PENDING'"):
        zart_cmd("prune", "--status", "pending")


# -- who asked ---------------------------------------------------------------------------


def test_the_caller_is_the_os_user_or_just_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "dana")
    assert caller() == "cli:dana"

    def no_user() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr("getpass.getuser", no_user)
    assert caller() == "cli"


# -- a real process: exit codes, stderr, colour --------------------------------------------


def test_exit_0_with_plain_output_when_piped() -> None:
    failed_execution(id="piped")
    done = run_cli("status", "piped")
    assert done.returncode == 0, done.stderr
    assert "charge-card" in done.stdout
    assert "\x1b[" not in done.stdout and done.stderr == ""


def test_djangos_own_options_work_after_the_subcommand_too() -> None:
    failed_execution(id="after")
    done = run_cli("status", "after", "--settings", "tests.settings", "-v", "0", "--traceback")
    assert done.returncode == 0, done.stderr
    assert "charge-card" in done.stdout


def test_exit_1_for_a_refusal_with_one_line_on_stderr() -> None:
    ExecutionFactory(id="finished", completed=True)
    done = run_cli("cancel", "finished")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("CommandError: Execution 'finished' has finished")
    assert Execution.objects.get(pk="finished").status == "COMPLETED"
    unknown = run_cli("status", "ghost")
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "CommandError: No execution with id 'ghost' exists.\n",
    )


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["retry-step", "refused", "validate"], "Cannot retry step 'validate' of execution"),
        (["rerun", "refused", "--step", "nope"], "Execution 'refused' has no step 'nope'"),
        (["restart", "running"], "Execution 'running' is RUNNING"),
        (["resume", "9999"], "No pause rule with id 9999"),
        (["wait", "running", "--timeout", "0.1"], "Execution 'running' did not finish"),
        (["send-event", "refused", "approved"], "Execution 'refused' has finished"),
    ],
)
def test_exit_1_for_each_refusal(args: list[str], reason: str) -> None:
    failed_execution(id="refused")
    ExecutionFactory(id="running", workflow="ops", status="RUNNING")
    done = run_cli(*args)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("CommandError: " + reason), done.stderr
    assert done.stderr.count("\n") == 1
    assert Run.objects.filter(execution_id="refused").count() == 1


@pytest.mark.parametrize(
    "args",
    [
        ["start", "arith", "--data", "{oops"],
        ["wait", "x", "--timeout", "forever"],
        ["rerun", "x"],
        ["pause"],
        ["frobnicate"],
    ],
)
def test_exit_2_for_a_usage_error(args: list[str]) -> None:
    done = run_cli(*args)
    assert done.returncode == 2
    assert "usage: manage.py zart" in done.stderr and "Traceback" not in done.stderr
    assert not Execution.objects.exists()


def run_on_terminal(*args: str) -> bytes:
    """What ``manage.py zart <args>`` writes to a terminal (a pseudo-terminal)."""
    main, child = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "zart", *args],
            cwd=ROOT,
            env=cli_env(),
            stdout=child,
            stderr=subprocess.PIPE,
        )
        os.close(child)
        output = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # Linux: EIO once the process has exited
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(60) == 0
    finally:
        os.close(main)
    return output


def test_colour_on_a_terminal_only() -> None:
    failed_execution(id="tty")
    assert b"\x1b[" in run_on_terminal("status", "tty")  # FAILED in red, headings in colour
    assert b"\x1b[" not in run_on_terminal("status", "tty", "--no-color")
    assert "\x1b[" not in run_cli("status", "tty").stdout
    assert "\x1b[" in run_cli("status", "tty", "--force-color").stdout


def test_json_output_decodes_the_stored_types() -> None:
    ExecutionFactory(
        id="typed",
        completed=True,
        output={
            "tags": {"$zart": "set", "value": ["b", "a"]},
            "pair": {"$zart": "tuple", "value": [1, 2]},
            "at": {"$zart": "datetime", "value": "2025-03-01T12:00:00+00:00"},
        },
    )
    output = json.loads(zart_cmd("status", "typed", "--json"))["output"]
    assert output == {"tags": ["a", "b"], "pair": [1, 2], "at": "2025-03-01T12:00:00Z"}
