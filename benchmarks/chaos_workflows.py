"""The workflows of ``chaos.py``, and the outcome each is designed to have.

Every workflow's outcome is a pure function of its input (``designed``), so the checker
can compare each execution's final status and output with what it should be, whatever
was killed or restarted meanwhile. Failures are planned: a flaky step fails on the
attempts its input says (read from ``zart.context().attempt``), ``chaos-doomed`` always
ends FAILED, and no wait's outcome depends on timing (an event with a timeout is either
sent early, or deliberately only after the timeout was recorded).

Every step body first appends a row to the side-effect table (``record``), on a
connection of its own, so that the checker can count how often each step really ran and
whether one ever ran although its checkpoint was already there.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg

import django_zart as zart

SIDE_EFFECTS_DDL = """
CREATE TABLE chaos_side_effects (
    call_id uuid PRIMARY KEY,
    execution_id varchar(255) NOT NULL,
    run_index integer NOT NULL,
    position varchar(300) NOT NULL,
    step varchar(255) NOT NULL,
    attempt integer NOT NULL,
    pid integer NOT NULL,
    at timestamptz NOT NULL,
    checkpoint_existed boolean NOT NULL
);
CREATE INDEX chaos_side_effects_step ON chaos_side_effects (execution_id, run_index, position);
CREATE TABLE chaos_ledger (
    id bigserial PRIMARY KEY,
    execution_id varchar(255) NOT NULL,
    run_index integer NOT NULL,
    position varchar(300) NOT NULL,
    amount integer NOT NULL
);
CREATE INDEX chaos_ledger_step ON chaos_ledger (execution_id, run_index, position);
"""

# Written by the atomic step on the worker's own connection, in the step's transaction:
# one row per completed atomic step, whatever was killed meanwhile.
_CREDIT = """
INSERT INTO chaos_ledger (execution_id, run_index, position, amount)
VALUES (%s, %s, %s, %s)
"""

# One statement: the row and whether the step's COMPLETED checkpoint was already visible
# in a run this one replays (from the execution's replay base to the current run).
_RECORD = """
INSERT INTO chaos_side_effects
    (call_id, execution_id, run_index, position, step, attempt, pid, at, checkpoint_existed)
SELECT %(call)s::uuid, %(execution)s::text, %(run)s::int, %(position)s::text, %(step)s::text,
       %(attempt)s::int, %(pid)s::int, clock_timestamp(),
       EXISTS (SELECT 1 FROM zart_steps s JOIN zart_executions e ON e.id = s.execution_id
                WHERE s.execution_id = %(execution)s::text AND s.position = %(position)s::text
                  AND s.status = 'COMPLETED'
                  AND s.run_index BETWEEN e.replay_base AND %(run)s::int)
ON CONFLICT (call_id) DO NOTHING
"""

RECORD_PATIENCE = 120.0
"""Seconds a step keeps retrying its side-effect row through a server restart."""

FLAKY_RETRIES = 3
DOOMED_RETRIES = 1


class Flaky(Exception):
    """A planned failure of one attempt; the step's retry policy takes it from there."""


class DesignedFailure(Exception):
    """The failure ``chaos-doomed`` is designed to end with."""


# -- side effects --------------------------------------------------------------------

_local = threading.local()


def _conninfo() -> str:
    from django.db import connection
    from psycopg.conninfo import make_conninfo

    settings = connection.settings_dict
    params = {
        "host": settings.get("HOST"),
        "port": settings.get("PORT"),
        "user": settings.get("USER"),
        "password": settings.get("PASSWORD"),
    }
    return make_conninfo(
        dbname=settings["NAME"], connect_timeout="5", **{k: str(v) for k, v in params.items() if v}
    )


def record(step: str) -> None:
    """Append this attempt's side-effect row, on this thread's own connection.

    The connection is not the worker's: the row is committed at once, whatever happens to
    the step's checkpoint, and a dropped connection here is retried (the ``call_id`` makes
    a retry after a lost acknowledgement harmless) instead of failing the step, so that
    every failure the checker sees is the engine's, not the instrument's.
    """
    info = zart.context()
    params = {
        "call": uuid.uuid4(),
        "execution": info.execution_id,
        "run": info.run,
        "position": info.step,
        "step": step,
        "attempt": info.attempt,
        "pid": os.getpid(),
    }
    deadline = time.monotonic() + RECORD_PATIENCE
    while True:
        conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
        try:
            if conn is None or conn.closed:
                conn = _local.conn = psycopg.connect(_conninfo(), autocommit=True)
            conn.execute(_RECORD, params)
            return
        except psycopg.OperationalError:
            _local.conn = None
            if conn is not None:
                conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- steps ---------------------------------------------------------------------------


@zart.step("chaos-add")
def add(value: int, plus: int) -> int:
    record("chaos-add")
    return value + plus


def _flaky(step: str, value: int, fails: int) -> int:
    record(step)
    if zart.context().attempt <= fails:
        raise Flaky("planned failure of attempt %d of %d" % (zart.context().attempt, fails))
    return flaky_value(value, fails)


@zart.step("chaos-flaky-now", retry=zart.Retry.fixed(FLAKY_RETRIES, 0))
def flaky_now(value: int, fails: int) -> int:
    """Fails its first ``fails`` attempts; retried at once, in the same claim."""
    return _flaky("chaos-flaky-now", value, fails)


@zart.step("chaos-flaky-later", retry=zart.Retry.exponential(FLAKY_RETRIES, "200ms"))
def flaky_later(value: int, fails: int) -> int:
    """Fails its first ``fails`` attempts; each retry is a durable delay (a suspension)."""
    return _flaky("chaos-flaky-later", value, fails)


@zart.step("chaos-square", retry=zart.Retry.fixed(2, "100ms"))
def square(x: int) -> int:
    """A branch step: multiples of three fail their first attempt."""
    record("chaos-square")
    if x % 3 == 0 and zart.context().attempt == 1:
        raise Flaky("planned failure of the first attempt")
    return x * x


@zart.step("chaos-doomed-step", retry=zart.Retry.fixed(DOOMED_RETRIES, "100ms"))
def doomed_step(value: int) -> int:
    record("chaos-doomed-step")
    raise DesignedFailure("designed to fail, value %d" % value)


@zart.step("chaos-credit", atomic=True, retry=zart.Retry.fixed(FLAKY_RETRIES, 0))
def credit(amount: int, fails: int) -> int:
    """An exactly-once write: a ledger row in the step's transaction, committed with its
    checkpoint or not at all (planned failures come after the write and roll it back)."""
    from django.db import connection

    record("chaos-credit")
    info = zart.context()
    with connection.cursor() as cursor:
        cursor.execute(_CREDIT, [info.execution_id, info.run, info.step, amount])
    if info.attempt <= fails:
        raise Flaky("chaos-credit fails attempt %d after its write" % info.attempt)
    return amount


@zart.step("chaos-echo")
def echo(value: Any) -> Any:
    """Returns its argument: hostile values travel through a step's checkpoint."""
    record("chaos-echo")
    return value


# -- workflows -----------------------------------------------------------------------


def flaky_value(value: int, fails: int) -> int:
    return (value * 3 + fails + 1) % 1_000_003


def fails_for(n: int, i: int) -> int:
    return (n + i) % (FLAKY_RETRIES + 1)


@zart.workflow("chaos-retry")
def retrying(data: dict[str, Any]) -> int:
    value = data["n"]
    for i in range(6):
        step = flaky_now if i % 2 == 0 else flaky_later
        value = step(value, fails_for(data["n"], i))
    return int(value)


@zart.workflow("chaos-sleep")
def sleeping(data: dict[str, Any]) -> list[int]:
    first = add(data["n"], 1)
    zart.sleep("nap", 1 + data["n"] % 2)
    second = add(first, 2)
    zart.sleep("short-nap", "300ms")
    return [first, second, add(second, 3)]


LIMIT = 2
"""At most this many ``chaos-limited`` executions of one key run at once."""


@zart.workflow(
    "chaos-limited", concurrency=LIMIT, concurrency_key=lambda data: "k%d" % (data["n"] % 3)
)
def limited(data: dict[str, Any]) -> list[int]:
    """Limited per key, through kills and restarts: every one must still finish (a slot
    held by a killed worker frees when its lease ends), and a sleep frees its slot."""
    first = add(data["n"], 1)
    zart.sleep("limited-nap", "200ms")
    return [first, add(first, 1)]


@zart.workflow("chaos-events")
def events(data: dict[str, Any]) -> dict[str, Any]:
    first = add(data["n"], 1)
    zart.sleep("before-waits", 1)  # the "early" events arrive before the first wait
    go = [zart.wait_for_event("go")["token"], zart.wait_for_event("go")["token"]]
    extra = zart.wait_for_event("extra", timeout="60s")["token"]
    return {"go": go, "extra": extra, "last": add(first, 1)}


@zart.workflow("chaos-event-timeout")
def event_timeout(data: dict[str, Any]) -> dict[str, Any]:
    try:
        zart.wait_for_event("late", timeout=1 + data["n"] % 2)
        timed_out = False
    except zart.EventTimeout:
        timed_out = True
    escalated = add(data["n"], 5)
    late = zart.wait_for_event("late")["token"]  # sent only once the timeout is recorded
    return {"timed_out": timed_out, "escalated": escalated, "late": late}


@zart.workflow("chaos-parallel")
def parallel(data: dict[str, Any]) -> dict[str, Any]:
    n = data["n"]
    squares = zart.map(square, list(range(n, n + 4 + n % 5)))
    pair = zart.wait_all([zart.schedule(add, n, 10), zart.schedule(flaky_later, n, 1)])
    return {"squares": squares, "pair": pair, "total": add(sum(squares), sum(pair))}


@zart.workflow("chaos-loop")
def loop(data: dict[str, Any]) -> int:
    total = 0
    for i in range(loop_length(data["n"])):
        total = add(total, i)
    return total


@zart.workflow("chaos-parent")
def parent(data: dict[str, Any]) -> dict[str, Any]:
    first = zart.run_workflow("chaos-child", {"n": data["n"], "child": 1})
    second = zart.run_workflow("chaos-child", {"n": data["n"], "child": 2})
    return {"children": [first, second], "done": add(first + second, 1)}


@zart.workflow("chaos-child")
def child(data: dict[str, Any]) -> int:
    first = add(data["n"], data["child"])
    zart.sleep("child-nap", "500ms")
    return int(add(first, data["child"]))


@zart.workflow("chaos-atomic")
def atomic(data: dict[str, Any]) -> int:
    return sum(credit(i + 1, fails_for(data["n"], i)) for i in range(3))


@zart.workflow("chaos-doomed", max_retries=1)
def doomed(data: dict[str, Any]) -> None:
    value = add(add(data["n"], 1), 1)
    doomed_step(value)


@zart.workflow("chaos-hostile")
def hostile(data: dict[str, Any]) -> Any:
    """Values an attacker would send through a step and an output.

    Strings and dicts with string keys round-trip exactly, ``"$zart"`` keys, SQL and
    astral characters included. What PostgreSQL cannot store is refused at the one
    boundary, never crash-looped: a NUL in a step's result fails that step (the workflow
    catches it and goes on), a NUL in the output fails the execution once.
    """
    value = hostile_value(data)
    if data["variant"] == "nul-step":
        try:
            echo(value)
        except zart.StepFailed as failure:
            return {"refused": failure.error["type"]}
    if data["variant"] == "nul-output":
        parts = [add(data["n"], 1), add(data["n"], 2)]
        return {"joined": "\x00".join(str(p) for p in parts)}
    return {"echoed": echo(value)}


def loop_length(n: int) -> int:
    return 20 + n % 31


def hostile_value(data: dict[str, Any]) -> Any:
    n = data["n"]
    if data["variant"] == "nul-step":
        return "before\x00after-%d" % n
    return {
        "$zart": "dict",
        "value": {"$zart": "uuid"},
        "unicode": "é☃\U0001d11e\u200b%d" % n,
        "big": 2**70 + n,
        "nested": [[[[{"k": n}]]]],
        "quote": "'\"\\; DROP TABLE zart_steps; --",
    }


# -- the mix and the designed outcomes -----------------------------------------------

MIX: dict[str, float] = {
    "chaos-loop": 3,
    "chaos-retry": 2,
    "chaos-parallel": 2,
    "chaos-events": 2,
    "chaos-event-timeout": 1,
    "chaos-sleep": 1,
    "chaos-parent": 1,
    "chaos-doomed": 1,
    "chaos-hostile": 0.4,
    "chaos-atomic": 1,
    "chaos-limited": 1,
}
"""Relative share of each workflow among the started ones (children come on top)."""

HOSTILE_VARIANTS = ("nul-step", "nul-output", "tagged-keys")


def make_input(workflow: str, n: int) -> dict[str, Any]:
    data: dict[str, Any] = {"n": n}
    if workflow == "chaos-hostile":
        data["variant"] = HOSTILE_VARIANTS[n % len(HOSTILE_VARIANTS)]
    return data


@dataclass(frozen=True)
class PlannedEvent:
    """An event the driver sends: ``when`` is ``early`` (right after the start, before
    the workflow reaches its wait), ``random`` (a random moment of its run) or
    ``after-timeout`` (once the wait's timeout is recorded)."""

    name: str
    token: str
    when: str

    @property
    def payload(self) -> dict[str, str]:
        return {"token": self.token}


def token(n: int, name: str, k: int) -> str:
    return "%d/%s/%d" % (n, name, k)


def event_plan(workflow: str, data: dict[str, Any]) -> list[PlannedEvent]:
    """The events a driver must send to this execution, in order."""
    n = data["n"]
    if workflow == "chaos-events":
        extra = "early" if n % 4 == 0 else "random"
        return [
            PlannedEvent("go", token(n, "go", 1), "early"),
            PlannedEvent("go", token(n, "go", 2), "random"),
            PlannedEvent("extra", token(n, "extra", 1), extra),
        ]
    if workflow == "chaos-event-timeout":
        return [PlannedEvent("late", token(n, "late", 1), "after-timeout")]
    return []


@dataclass(frozen=True)
class Designed:
    """How an execution must end: status, and output or error type (and its cause)."""

    status: str
    output: Any = None
    error_type: str | None = None
    cause_type: str | None = None
    children: tuple[tuple[str, dict[str, Any]], ...] = field(default=())
    """``(id suffix, input)`` of the child executions it starts and waits for."""


def _retry(data: dict[str, Any]) -> Designed:
    value = data["n"]
    for i in range(6):
        value = flaky_value(value, fails_for(data["n"], i))
    return Designed("COMPLETED", value)


def _sleep(data: dict[str, Any]) -> Designed:
    n = data["n"]
    return Designed("COMPLETED", [n + 1, n + 3, n + 6])


def _events(data: dict[str, Any]) -> Designed:
    n = data["n"]
    go = [token(n, "go", 1), token(n, "go", 2)]
    return Designed("COMPLETED", {"go": go, "extra": token(n, "extra", 1), "last": n + 2})


def _event_timeout(data: dict[str, Any]) -> Designed:
    n = data["n"]
    return Designed(
        "COMPLETED", {"timed_out": True, "escalated": n + 5, "late": token(n, "late", 1)}
    )


def _parallel(data: dict[str, Any]) -> Designed:
    n = data["n"]
    squares = [x * x for x in range(n, n + 4 + n % 5)]
    pair = [n + 10, flaky_value(n, 1)]
    total = sum(squares) + sum(pair)
    return Designed("COMPLETED", {"squares": squares, "pair": pair, "total": total})


def _limited(data: dict[str, Any]) -> Designed:
    return Designed("COMPLETED", [data["n"] + 1, data["n"] + 2])


def _atomic(data: dict[str, Any]) -> Designed:
    return Designed("COMPLETED", 1 + 2 + 3)


def _loop(data: dict[str, Any]) -> Designed:
    length = loop_length(data["n"])
    return Designed("COMPLETED", length * (length - 1) // 2)


def _parent(data: dict[str, Any]) -> Designed:
    n = data["n"]
    kids = [n + 2 * c for c in (1, 2)]
    return Designed(
        "COMPLETED",
        {"children": kids, "done": sum(kids) + 1},
        # The ids README documents: the parent's id, "/", the call's position.
        children=(
            ("run_workflow:chaos-child", {"n": n, "child": 1}),
            ("run_workflow:chaos-child#2", {"n": n, "child": 2}),
        ),
    )


def _child(data: dict[str, Any]) -> Designed:
    return Designed("COMPLETED", data["n"] + 2 * data["child"])


def _doomed(data: dict[str, Any]) -> Designed:
    return Designed(
        "FAILED",
        error_type="django_zart.errors.StepFailed",
        cause_type="%s.DesignedFailure" % __name__,
    )


def _hostile(data: dict[str, Any]) -> Designed:
    if data["variant"] == "nul-step":
        return Designed("COMPLETED", {"refused": "django_zart.errors.SerializationError"})
    if data["variant"] == "nul-output":
        return Designed("FAILED", error_type="django_zart.errors.SerializationError")
    return Designed("COMPLETED", {"echoed": hostile_value(data)})


_DESIGNS = {
    "chaos-retry": _retry,
    "chaos-sleep": _sleep,
    "chaos-events": _events,
    "chaos-event-timeout": _event_timeout,
    "chaos-parallel": _parallel,
    "chaos-loop": _loop,
    "chaos-parent": _parent,
    "chaos-child": _child,
    "chaos-doomed": _doomed,
    "chaos-hostile": _hostile,
    "chaos-atomic": _atomic,
    "chaos-limited": _limited,
}


def designed(workflow: str, data: Any) -> Designed | None:
    """The designed outcome of an execution, or ``None`` for a workflow not of this mix."""
    design = _DESIGNS.get(workflow)
    return None if design is None or not isinstance(data, dict) else design(data)
