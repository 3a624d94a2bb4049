"""Bad input through every entry point: a typed error that says what is wrong, and nothing
stored or changed. (The HTTP endpoint's cases are in test_bad_input_http.py.)"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

import django_zart as zart
from django_zart.checks import check_settings
from django_zart.models import Execution
from django_zart.registry import _workflows
from tests.factories import ExecutionFactory
from tests.tables import snapshot, unchanged_tables

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def unchanged() -> Iterator[None]:
    """Whatever the test does, every zart table holds exactly what it held before."""
    with unchanged_tables():
        yield


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def deep_dict(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"k": value}
    return value


# -- start ---------------------------------------------------------------------------


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (object(), "value\\['x'\\] is of type builtins.object"),
        ("a\x00b", "a NUL character at index 1"),
        ({"ke\x00y": 1}, "a key of value contains a NUL character"),
        ("\ud800", "a lone surrogate \\(U\\+D800\\)"),
        ({"x": "ok\udfff"}, "lone surrogate \\(U\\+DFFF\\)"),
        (10**5000, "integer of more than 4000 digits"),
        (-(10**5000), "integer of more than 4000 digits"),
        (deep(10_000), "nested more than 200 levels deep"),
        (deep_dict(10_000), "nested more than 200 levels deep"),
        (math.nan, "nan, which JSON cannot hold"),
        ({"x": math.inf}, "inf, which JSON cannot hold"),
        (Decimal("NaN"), "not JSON-serializable"),
    ],
    ids=[
        "object",
        "nul",
        "nul-key",
        "surrogate",
        "surrogate-nested",
        "huge-int",
        "huge-negative-int",
        "deep-list",
        "deep-dict",
        "nan",
        "inf",
        "decimal-nan",
    ],
)
def test_start_refuses_input_the_database_cannot_store(value: Any, message: str) -> None:
    payload = value if isinstance(value, dict) else {"x": value}
    with pytest.raises(zart.SerializationError, match="input of workflow 'arith'.*" + message):
        zart.start("arith", payload)


@pytest.mark.usefixtures("unchanged")
def test_start_refuses_an_oversized_input() -> None:
    with (
        override_settings(ZART={"MAX_PAYLOAD_BYTES": 100}),
        pytest.raises(zart.PayloadTooLarge, match='more than ZART\\["MAX_PAYLOAD_BYTES"\\] = 100'),
    ):
        zart.start("arith", {"x": "y" * 200})


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("execution_id", "message"),
    [
        ("", "execution_id must not be empty"),
        ("   ", "execution_id must not be empty"),
        ("run\x00one", "execution_id contains a NUL character at index 3"),
        ("run\ud800", "execution_id contains a lone surrogate"),
        ("x" * 256, "execution_id is longer than 255 characters"),
        (5, "execution_id must be a string, not int"),
    ],
    ids=["empty", "blank", "nul", "surrogate", "too-long", "int"],
)
def test_start_refuses_a_bad_execution_id(execution_id: Any, message: str) -> None:
    with pytest.raises(zart.InvalidArgument, match=message):
        zart.start("arith", {"a": 1, "b": 2}, execution_id=execution_id)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("queue", "message"),
    [
        (5, "queue must be a string, not int"),
        ("q\x00", "queue contains a NUL character"),
        ("q" * 101, "queue is longer than 100 characters"),
    ],
    ids=["int", "nul", "too-long"],
)
def test_start_refuses_a_bad_queue(queue: Any, message: str) -> None:
    with pytest.raises(zart.InvalidArgument, match=message):
        zart.start("arith", {"a": 1, "b": 2}, queue=queue)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("name", ["no-such-workflow", {"a": 1}, None], ids=["str", "dict", "none"])
def test_start_refuses_an_unknown_workflow(name: Any) -> None:
    with pytest.raises(zart.UnknownWorkflow, match=r"No workflow named .* is registered"):
        zart.start(name, {})


def test_start_refuses_a_duplicate_id_and_keeps_the_first() -> None:
    zart.start("arith", {"a": 1, "b": 2}, execution_id="dup")
    before = snapshot()
    with pytest.raises(
        zart.ExecutionAlreadyExists, match="'dup' already exists \\(status PENDING\\)"
    ):
        zart.start("arith", {"a": 9, "b": 9}, execution_id="dup")
    assert snapshot() == before
    assert Execution.objects.get(pk="dup").input == {"a": 1, "b": 2}


# -- send_event ----------------------------------------------------------------------


@pytest.fixture
def waiting() -> str:
    return ExecutionFactory(id="waiting", workflow="approval").pk


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "event name must not be empty"),
        ("ok\x00", "event name contains a NUL character at index 2"),
        ("\udc80", "event name contains a lone surrogate"),
        ("n" * 201, "event name is longer than 200 characters"),
        (7, "event name must be a string, not int"),
    ],
    ids=["empty", "nul", "surrogate", "too-long", "int"],
)
def test_send_event_refuses_a_bad_name(waiting: str, name: Any, message: str) -> None:
    before = snapshot()
    with pytest.raises(zart.InvalidArgument, match=message):
        zart.send_event(waiting, name, {"ok": True})
    assert snapshot() == before


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"by": "a\x00"}, "NUL character"),
        ({"by": "\ud83d"}, "lone surrogate"),
        ({"n": 10**5000}, "more than 4000 digits"),
        (deep(10_000), "nested more than 200 levels"),
        ({1: "x"}, "key of type int"),
    ],
    ids=["nul", "surrogate", "huge-int", "deep", "int-key"],
)
def test_send_event_refuses_a_payload_the_database_cannot_store(
    waiting: str, payload: Any, message: str
) -> None:
    before = snapshot()
    with pytest.raises(zart.SerializationError, match="payload of event 'approved'.*" + message):
        zart.send_event(waiting, "approved", payload)
    assert snapshot() == before


def test_send_event_refuses_an_oversized_payload(waiting: str) -> None:
    before = snapshot()
    with (
        override_settings(ZART={"MAX_PAYLOAD_BYTES": 50}),
        pytest.raises(zart.PayloadTooLarge, match="payload of event 'approved'"),
    ):
        zart.send_event(waiting, "approved", "x" * 100)
    assert snapshot() == before


@pytest.mark.usefixtures("unchanged")
def test_send_event_to_an_unknown_execution() -> None:
    with pytest.raises(zart.ExecutionNotFound, match="No execution with id 'ghost' exists"):
        zart.send_event("ghost", "approved")


@pytest.mark.usefixtures("unchanged")
def test_send_event_to_a_bad_execution_id() -> None:
    with pytest.raises(zart.InvalidArgument, match="execution_id contains a NUL character"):
        zart.send_event("gh\x00st", "approved")


def test_send_event_to_a_finished_execution_stores_nothing() -> None:
    ExecutionFactory(id="done", workflow="approval", completed=True)
    before = snapshot()
    with pytest.raises(zart.ExecutionFinished, match="'done' has finished \\(status COMPLETED\\)"):
        zart.send_event("done", "approved", {"by": "x"})
    assert snapshot() == before


# -- reading, waiting, cancelling ----------------------------------------------------


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: zart.status("a\x00"), zart.InvalidArgument, "NUL character"),
        (lambda: zart.status("ghost"), zart.ExecutionNotFound, "'ghost'"),
        (lambda: zart.cancel("ghost"), zart.ExecutionNotFound, "'ghost'"),
        (lambda: zart.cancel("x" * 300), zart.InvalidArgument, "longer than 255"),
        (lambda: zart.wait_completion("ghost", "soon"), zart.InvalidArgument, "Invalid duration"),
        (lambda: zart.wait_completion("ghost", -1), zart.InvalidArgument, "not negative"),
        (lambda: zart.sleep("nap", "forever"), zart.InvalidArgument, "Invalid duration"),
        (lambda: zart.sleep("nap", 1e12), zart.InvalidArgument, "100 years"),
        (lambda: zart.sleep_until("nap", object()), zart.InvalidArgument, "aware datetime"),
        (lambda: zart.wait_for_event("e", timeout=math.nan), zart.InvalidArgument, "finite"),
    ],
    ids=[
        "status-nul",
        "status-unknown",
        "cancel-unknown",
        "cancel-too-long",
        "wait-bad-timeout",
        "wait-negative-timeout",
        "sleep-bad-duration",
        "sleep-too-long",
        "sleep-until-not-a-datetime",
        "event-nan-timeout",
    ],
)
def test_calls_refuse_bad_arguments(call: Callable[[], Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()


# -- declarations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"timeout": 1e12}, zart.InvalidArgument, "longer than the longest django-zart stores"),
        ({"timeout": -1}, zart.InvalidArgument, "not negative"),
        ({"timeout": math.inf}, zart.InvalidArgument, "finite"),
        ({"max_retries": -1}, zart.InvalidArgument, "max_retries must be from 0 to 1000"),
        ({"max_retries": True}, zart.InvalidArgument, "max_retries must be an int"),
        ({"queue": 5}, zart.InvalidArgument, "queue of workflow .* must be a string"),
        ({"schedule": "61 * * * *"}, zart.CronError, "out of range for the minute"),
        ({"every": "1h", "schedule_options": {"overlap": "sometimes"}}, zart.ZartError, "overlap"),
        ({"every": "1h", "schedule_options": {"execution_id": "same"}}, zart.ZartError, "{tick}"),
    ],
    ids=[
        "timeout-too-long",
        "timeout-negative",
        "timeout-inf",
        "retries-negative",
        "retries-bool",
        "queue-int",
        "bad-cron",
        "bad-overlap",
        "bad-template",
    ],
)
def test_a_bad_workflow_declaration_is_refused_and_not_registered(
    options: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):

        @zart.workflow("bad-declaration", **options)
        def bad(data: None) -> None:
            return None

    assert "bad-declaration" not in _workflows


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("w\x00", "contains a NUL character"),
        ("w" * 201, "is longer than 200"),
        ("", "must not be empty"),
    ],
    ids=["nul", "too-long", "empty"],
)
def test_bad_workflow_and_step_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(zart.InvalidArgument, match="A workflow name " + message):
        zart.workflow(name)(lambda data: data)
    with pytest.raises(zart.InvalidArgument, match="A step name " + message):
        zart.step(name)(lambda: None)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: zart.Retry.fixed(-1, "1s"), "cannot be negative"),
        (lambda: zart.Retry.fixed(1.5, "1s"), "must be an int"),
        (lambda: zart.Retry(attempts=1, backoff=0), "backoff must be between 1 and 100"),
        (lambda: zart.Retry.exponential(3, "2s", max_delay="never"), "Invalid duration"),
    ],
    ids=["negative", "float", "backoff", "bad-max-delay"],
)
def test_bad_retry_policies_are_refused(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(zart.InvalidArgument, match=message):
        make()


@pytest.mark.usefixtures("unchanged")
def test_schedule_recurring_refuses_a_bad_template_and_stores_nothing() -> None:
    with pytest.raises(zart.ZartError, match="must contain \\{tick\\} or \\{occurrence\\}"):
        zart.schedule_recurring("nightly", "arith", {}, every="1h", execution_id="same-id")


# -- settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zart_setting", "message"),
    [
        ({"QUEUES": None}, 'ZART\\["QUEUES"\\] must be a list of non-empty strings'),
        ({"QUEUES": []}, 'ZART\\["QUEUES"\\] must name at least one'),
        ({"QUEUES": ["a\x00"]}, "queue name in .* contains a NUL character"),
        ({"ORPHAN_TIMEOUT": 1e15}, "longer than the longest django-zart stores"),
        ({"ORPHAN_TIMEOUT": 0.1}, 'ZART\\["ORPHAN_TIMEOUT"\\] must be between 0.5 and 86400'),
        ({"POLL_INTERVAL": 0}, 'ZART\\["POLL_INTERVAL"\\] must be between 0.01 and 3600'),
        ({"MAX_CONCURRENT_TASKS": 100_000}, "must be an integer from 1 to 1000, not 100000"),
        ({"MAX_PAYLOAD_BYTES": 10**12}, 'ZART\\["MAX_PAYLOAD_BYTES"\\] must be an integer'),
        ({"MAX_RECOVERIES": -1}, 'ZART\\["MAX_RECOVERIES"\\] must be an integer from 0'),
        ({"LISTEN_DATABASE": "nope"}, "'nope', which is not an alias in DATABASES"),
        ({"FAULT_POINTS": ["boom"]}, "unknown fault point 'boom'"),
        ({"EVENT_TOKENS": [1]}, 'ZART\\["EVENT_TOKENS"\\] must be a list of non-empty strings'),
        ({"WORKER_RETENTION": "a while"}, "Invalid duration 'a while'"),
        ({"API_TOKENS": ["t"]}, 'ZART\\["API_TOKENS"\\] must be a dict of token to scopes'),
        ({"API_TOKENS": {"short": ["read"]}}, "at least 16 characters"),
        ({"API_TOKENS": {"x" * 20: ["admin"]}}, "non-empty list of read, write, events"),
        ({"API_TOKENS": {"x" * 20: []}}, "non-empty list of read, write, events"),
        ({"RETENTION": {"RUNNING": "1d"}}, "'RUNNING' is not a final status"),
        ({"RETENTION": {"COMPLETED": "1s"}}, "must be between 60"),
        ({"RETENTION": ["30d"]}, "must be a dict of final status to duration"),
        ({"TYPO": 1}, "Unknown key 'TYPO' in ZART"),
        ([], "ZART must be a dict, not list"),
    ],
    ids=[
        "queues-none",
        "queues-empty",
        "queue-nul",
        "orphan-huge",
        "orphan-tiny",
        "poll-zero",
        "concurrency-huge",
        "payload-huge",
        "recoveries-negative",
        "listen-alias",
        "fault-point",
        "tokens",
        "worker-retention",
        "api-tokens-list",
        "api-token-short",
        "api-scope-unknown",
        "api-scopes-empty",
        "retention-unfinished",
        "retention-short",
        "retention-list",
        "unknown-key",
        "not-a-dict",
    ],
)
def test_bad_settings_are_system_check_errors(zart_setting: Any, message: str) -> None:
    with override_settings(ZART=zart_setting):
        messages = [m.msg for m in check_settings()]
    assert any(re.search(message, m) for m in messages), messages


# -- the command line ----------------------------------------------------------------


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "100000"], "must be an integer from 1 to 1000, not 100000"),
        (["--concurrency", "many"], "'many' is not an integer"),
        (["--poll-interval", "0"], "must be between 0.01 and 3600"),
        (["--orphan-timeout", "1e15"], "longer than the longest django-zart stores"),
        (["--shutdown-timeout", "-1"], "not negative"),
        (["--worker-id", "w" * 101], "worker id is longer than 100 characters"),
        (["--queue", "q" * 101], "longer than 100 characters"),
    ],
    ids=[
        "concurrency-huge",
        "concurrency-text",
        "poll-zero",
        "orphan-huge",
        "shutdown-negative",
        "worker-id",
        "queue",
    ],
)
def test_runzartworker_refuses_bad_options_and_leaves_no_worker_row(
    args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("runzartworker", "--burst", *args, verbosity=0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["waiting", "approved", "--data", "{nope"], "argument --data: not valid JSON"),
        (["waiting", "appr\x00ved"], "event name contains a NUL character"),
        (["waiting", "approved", "--data", '"\\u0000"'], "NUL character"),
        (["ghost", "approved"], "No execution with id 'ghost' exists"),
    ],
    ids=["bad-json", "nul-name", "nul-payload", "unknown"],
)
def test_zart_send_event_command_refuses_bad_input(
    waiting: str, args: list[str], message: str
) -> None:
    before = snapshot()
    with pytest.raises(CommandError, match=message):
        call_command("zart", "send-event", *args)
    assert snapshot() == before
