"""Workflows the tests run, in a real worker (thread or process)."""

import os
import time
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import django_zart as zart

from .models import Flag, SideEffect


def mark(step: str) -> None:
    SideEffect.objects.create(execution_id=zart.context().execution_id, step=step, pid=os.getpid())


def count(step: str) -> int:
    return SideEffect.objects.filter(execution_id=zart.context().execution_id, step=step).count()


@zart.step("add")
def add(a: int, b: int) -> int:
    return a + b


@zart.workflow("arith")
def arith(data: dict) -> dict:
    x = add(data["a"], data["b"])
    y = add(x, 10)
    z = add(y, 100)
    return {"sum": z}


@zart.step("record")
def record(name: str) -> str:
    mark(name)
    if name == "step-3" and count(name) == 1:
        # First time only: hold the worker here so the test can SIGKILL it mid-step.
        time.sleep(60)
    return name.upper()


@zart.workflow("five-steps")
def five_steps(data: dict) -> list:
    return [record("step-%d" % i) for i in range(1, 6)]


@zart.step("flaky", retry=zart.Retry.fixed(3, "1s"))
def flaky(failures: int) -> str:
    mark("flaky")
    if count("flaky") <= failures:
        raise RuntimeError("attempt %d failed" % count("flaky"))
    return "ok after %d" % count("flaky")


@zart.workflow("flaky-wf")
def flaky_wf(data: dict) -> str:
    return flaky(data["failures"])


@zart.step("types")
def types_step() -> dict:
    return {
        "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "amount": Decimal("12.50"),
        "id": UUID("12345678-1234-5678-1234-567812345678"),
        "pair": (1, 2),
        "floats": [1e16, 1.5e300, 1e-7, 2.0],
    }


@zart.workflow("types-wf")
def types_wf(data: None) -> dict:
    value = types_step()
    assert isinstance(value["when"], datetime) and isinstance(value["amount"], Decimal)
    return value


@zart.step("bad-result")
def bad_result() -> object:
    return object()


@zart.workflow("bad-result-wf")
def bad_result_wf(data: None) -> None:
    bad_result()


@zart.step("a")
def step_a() -> str:
    return "a"


@zart.step("b")
def step_b() -> str:
    return "b"


@zart.step("wait-once", retry=zart.Retry.fixed(1, "300ms"))
def wait_once() -> str:
    mark("wait-once")
    if count("wait-once") == 1:
        raise RuntimeError("first attempt fails, so the body is replayed later")
    return "done"


@zart.workflow("changing")
def changing(data: None) -> str:
    """Calls step 'a' or 'b' first, as the flag says: the replay sees the other one."""
    first = step_a() if Flag.objects.get(name="first").value == "a" else step_b()
    return first + wait_once()


@zart.workflow("body-retry", max_retries=2)
def body_retry(data: None) -> str:
    value = step_a()
    mark("body")
    if count("body") < 3:
        raise ValueError("body fails on runs 1 and 2")
    return value + str(zart.context().run)


@zart.workflow("slow", timeout="1s")
def slow(data: None) -> str:
    step_a()
    time.sleep(1.2)
    return step_b()


@zart.step("async-double")
async def async_double(x: int) -> int:
    return x * 2


@zart.workflow("async-wf")
async def async_wf(data: dict) -> int:
    x = await async_double(data["x"])
    return await async_double(x)


@zart.workflow("context-wf")
def context_wf(data: None) -> dict:
    info = zart.context()
    return {"id": info.execution_id, "workflow": info.workflow, "run": info.run}


@zart.step("three")
def three(i: int) -> int:
    return i


@zart.workflow("three-steps")
def three_steps(data: dict) -> int:
    n = data["n"]
    return three(n) + three(n + 1) + three(n + 2)


@zart.step("sleepy")
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


@zart.workflow("sleepy-wf")
def sleepy_wf(data: dict) -> str:
    return sleepy(data["seconds"])


@zart.workflow("sleeper")
def sleeper(data: dict) -> str:
    zart.sleep("nap", data["seconds"])
    return step_a()


@zart.workflow("sleep-until")
def sleep_until_wf(data: dict) -> str:
    from django.utils.dateparse import parse_datetime

    zart.sleep_until("alarm", parse_datetime(data["when"]))
    return "rang"


@zart.workflow("approval")
def approval(data: dict) -> dict:
    try:
        decision = zart.wait_for_event("approved", timeout=data.get("timeout"))
    except zart.EventTimeout:
        return {"approved": False, "by": None}
    return {"approved": True, "by": decision["by"]}


@zart.workflow("two-events")
def two_events(data: None) -> list:
    first = zart.wait_for_event("x")
    second = zart.wait_for_event("x")
    return [first, second]


@zart.workflow("event-after-sleep")
def event_after_sleep(data: dict) -> object:
    zart.sleep("first", data["seconds"])
    return zart.wait_for_event("go")


def _random_with_mark() -> float:
    import random

    mark("capture")
    return random.random()


@zart.workflow("captures")
def captures(data: None) -> dict:
    when = zart.now("started")
    value = zart.capture("dice", _random_with_mark)
    wait_once()  # fails once: the body is replayed, the captures are not re-evaluated
    return {"when": when, "value": value, "again": zart.capture("dice-2", lambda: value)}


@zart.workflow("async-approval")
async def async_approval(data: dict) -> object:
    await zart.sleep("pause", data["seconds"])
    payload = await zart.wait_for_event("ok")
    doubled = await async_double(payload["n"])
    return {"n": doubled, "at": (await zart.now("end")).year > 2000}


@zart.workflow("step-or-sleep")
def step_or_sleep(data: None) -> str:
    """Calls step 'a' or sleeps as 'a', as the flag says: a kind change on replay."""
    if Flag.objects.get(name="kind").value == "step":
        step_a()
    else:
        zart.sleep("a", 0)
    return wait_once()


# -- parallel branches, loops and names ------------------------------------------------


@zart.step("square", retry=zart.Retry.fixed(2, 0))
def square(x: int) -> int:
    mark("square-%d" % x)
    if x == 13 and count("square-13") == 1:
        raise RuntimeError("unlucky once")  # retried at once, in the branch's worker
    return x * x


@zart.workflow("fan-out")
def fan_out(data: dict) -> dict:
    squares = zart.map(square, range(data["n"]))
    first = zart.schedule(add, 1, 2)
    second = zart.schedule(add, 3, 4)
    return {"sum": sum(squares), "pair": zart.wait_all([first, second])}


class PaymentDeclined(Exception):
    pass


@zart.step("charge")
def charge(amount: int) -> str:
    if amount > 100:
        raise PaymentDeclined("amount %d over the limit" % amount)
    return "charged %d" % amount


@zart.workflow("charges")
def charges(data: dict) -> dict:
    handles = [zart.schedule(charge, a) for a in data["amounts"]]
    results = zart.wait_all(handles, return_exceptions=True)
    shown = [r if isinstance(r, str) else "declined: %s" % r.cause for r in results]
    try:
        zart.wait_all(handles)
    except PaymentDeclined as exc:  # the StepFailed is also the original type
        return {"results": shown, "raised": type(exc.cause).__name__}
    return {"results": shown, "raised": None}


@zart.step("process")
def process(item: int) -> int:
    mark("process-%d" % item)
    return item


@zart.workflow("loop")
def loop(data: dict) -> int:
    total = 0
    for i in range(data["n"]):
        total += process(i)
        if data.get("slow"):
            time.sleep(data["slow"])
    return total


@zart.step("report-{index}")
def report(index: int, title: str) -> str:
    return "%d:%s" % (index, title)


@zart.workflow("named")
def named(data: dict) -> list:
    out = [report(i, t) for i, t in data["items"]]
    out.append(add.with_id("add-%s" % data["tag"])(1, 1))
    wait_once()  # forces a replay in which the items may come in another order
    return out


@zart.workflow("dup-names")
def dup_names(data: None) -> None:
    report(1, "a")
    report(1, "b")


@zart.step("business", retry=zart.Retry.fixed(3, 0), give_up_on=(ValueError,))
def business(kind: str) -> str:
    mark("business")
    if kind == "value":
        raise ValueError("bad input: not retried")
    raise ConnectionError("transient")


@zart.step("only-timeouts", retry=zart.Retry.fixed(2, 0), retry_on=(TimeoutError,))
def only_timeouts(kind: str) -> str:
    mark("only-timeouts")
    raise (TimeoutError if kind == "timeout" else KeyError)("boom")


@zart.workflow("policies")
def policies(data: dict) -> dict:
    out = {}
    for kind in ("value", "conn"):
        out[kind] = zart.step_or(lambda kind=kind: business(kind), "gave up")
    for kind in ("timeout", "key"):
        out[kind] = zart.step_or(lambda kind=kind: only_timeouts(kind), "gave up")
    return out


@zart.step("slow-sync", timeout="300ms", retry=zart.Retry.fixed(1, 0))
def slow_sync(seconds: float) -> str:
    mark("slow-sync")
    time.sleep(seconds if count("slow-sync") == 1 else 0)
    return "fast enough"


@zart.step("slow-async", timeout="300ms")
async def slow_async(seconds: float) -> str:
    import asyncio

    await asyncio.sleep(seconds)
    return "never"


@zart.workflow("timeouts")
def timeouts(data: None) -> dict:
    first = slow_sync(2)
    try:
        slow_async(2)
    except zart.StepFailed as exc:
        assert isinstance(exc.cause, zart.StepTimeout)
        second = "timed out: %s" % exc.cause
    return {"sync": first, "async": second}


@zart.step("branch-work")
def branch_work(i: int) -> dict:
    mark("branch-%d" % i)
    time.sleep(0.01)
    return {"i": i, "pid": os.getpid()}


@zart.workflow("wide")
def wide(data: dict) -> dict:
    mark("body-start")  # outside any step: counts the body's runs
    results = zart.map(branch_work, range(data["n"]))
    mark("body-after-wait")
    return {
        "n": len(results),
        "pids": sorted({r["pid"] for r in results}),
        "ordered": [r["i"] for r in results] == list(range(data["n"])),
    }


# -- child workflows and failure handlers -----------------------------------------------


@zart.workflow("child-square")
def child_square(data: dict) -> int:
    mark("child-ran")
    if data.get("fail"):
        raise ValueError("child refuses %d" % data["x"])
    if data.get("wait"):
        zart.wait_for_event("never")
    return add(data["x"] * data["x"], 0)


@zart.workflow("parent")
def parent(data: dict) -> dict:
    squared = zart.run_workflow("child-square", {"x": data["x"]})
    try:
        zart.run_workflow(
            child_square,
            {"x": 2, "fail": True},
            execution_id="%s-bad" % zart.context().execution_id,
        )
    except zart.ExecutionFailed as exc:
        failure = exc.error["message"]
    fire = zart.start_workflow("child-square", {"x": 3})
    return {"squared": squared, "failure": failure, "fired": fire}


@zart.workflow("waiting-parent")
def waiting_parent(data: None) -> str:
    try:
        zart.run_workflow(
            "child-square",
            {"x": 1, "wait": True},
            execution_id="%s-child" % zart.context().execution_id,
        )
    except zart.ExecutionCancelled:
        return "child was cancelled"
    return "child finished"


@zart.step("refund", retry=zart.Retry.fixed(1, "200ms"))
def refund(order: str) -> str:
    mark("refund")
    if count("refund") == 1:
        raise ConnectionError("refund API down once: retried, durably, inside the handler")
    return "refunded %s" % order


def undo_order(data: dict, error: dict) -> None:
    refund(data["order"])
    mark("compensated: %s" % error["type"])


@zart.workflow("order", on_failure=undo_order, max_retries=1)
def order(data: dict) -> None:
    add(1, 1)
    mark("order-body")
    raise ValueError("payment provider down")


# -- recurring ---------------------------------------------------------------------------


@zart.workflow("long-tick")
def long_tick(data: dict) -> str:
    time.sleep(data.get("seconds", 0))
    return "done"


@zart.step("async-inc-{x}")
async def async_inc(x: int) -> dict:
    import asyncio

    await asyncio.sleep(0.01 * (5 - x))  # finish in reverse order
    info = zart.context()
    return {"x": x + 1, "step": info.step}


@zart.workflow("gathered")
async def gathered(data: None) -> list:
    import asyncio

    async def part(x: int) -> int:
        first = await async_inc(x)
        second = await async_double(first["x"])  # reached in completion order
        return second

    plain = await asyncio.gather(*(async_double(x) for x in range(3)))
    named = await asyncio.gather(*(async_inc(x) for x in range(3)))
    parts = await asyncio.gather(*(part(x) for x in (10, 20)))
    return [plain, [n["step"] for n in named], parts]


# -- hardening: faults, outages, bad values ------------------------------------------


@zart.step("effect")
def effect(name: str) -> str:
    mark(name)
    return name


@zart.workflow("fault-step")
def fault_step(data: None) -> list:
    return [effect("one"), effect("two")]


@zart.workflow("fault-sleep")
def fault_sleep(data: None) -> str:
    zart.sleep("nap", "300ms")
    return effect("after-nap")


@zart.workflow("fault-event")
def fault_event(data: None) -> object:
    payload = zart.wait_for_event("go")
    return [payload, effect("after-event")]


@zart.workflow("fault-branch")
def fault_branch(data: None) -> list:
    return zart.map(effect, ["left", "right"])


@zart.workflow("fault-child")
def fault_child(data: None) -> object:
    return zart.run_workflow("fault-step", None)


@zart.step("hold")
def hold(seconds: float) -> str:
    """Runs ``seconds`` the first time (per execution), at once after that."""
    mark("hold")
    if count("hold") == 1:
        time.sleep(seconds)
    return "held"


@zart.workflow("held")
def held(data: dict) -> list:
    return [hold(data["seconds"]), effect("after-hold")]


@zart.step("long")
def long_step(seconds: float) -> str:
    mark("long")
    time.sleep(seconds)
    return "long"


@zart.workflow("long-then-more")
def long_then_more(data: dict) -> list:
    return [long_step(data["seconds"]), effect("after-long")]


@zart.step("nul-result")
def nul_result() -> str:
    return "a\x00b"


@zart.workflow("nul-step")
def nul_step(data: None) -> str:
    mark("nul-body")
    try:
        return nul_result()
    except zart.StepFailed as failure:
        return "caught: %s" % failure.error["type"]


@zart.workflow("nul-output")
def nul_output(data: None) -> str:
    mark("nul-output-body")
    return "bad \x00 output"


@zart.workflow("nul-error")
def nul_error(data: None) -> None:
    mark("nul-error-body")
    raise ValueError("broken \x00 value \ud800 here")


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


@zart.workflow("unprintable-error")
def unprintable_error(data: None) -> None:
    raise Unprintable()


@zart.step("arg-echo")
def arg_echo(value: str) -> str:
    return value


@zart.workflow("arguments-change")
def arguments_change(data: None) -> str:
    flag = Flag.objects.filter(name="argument").values_list("value", flat=True).first()
    first = arg_echo(flag or "original")  # read outside a step: not deterministic
    zart.sleep("pause", "50ms")
    return first


@zart.step("fetch")
async def fetch(key: str) -> str:
    import asyncio

    # The first run of "a" is slow, so "b" reaches its next step first; a replay returns
    # both at once, in call order.
    await asyncio.sleep(0.3 if key == "a" else 0)
    return "fetched-%s" % key


@zart.step("transform")
async def transform(value: str) -> str:
    return value.upper()


@zart.workflow("pipelines")
async def pipelines(data: None) -> list:
    import asyncio

    async def pipeline(key: str) -> str:
        return await transform(await fetch(key))

    results = await asyncio.gather(pipeline("a"), pipeline("b"))
    await zart.sleep("then-replay", "50ms")
    return results


@zart.step("timed-out", timeout="200ms")
def timed_out(seconds: float) -> str:
    time.sleep(seconds)
    return "late"


@zart.workflow("abandons")
def abandons(data: dict) -> str:
    try:
        return timed_out(data["seconds"])
    except zart.StepFailed as failure:
        return failure.error["type"]


@zart.workflow("now-after-queue")
def now_after_queue(data: None) -> str:
    return zart.now("seen").isoformat()


# -- operations over HTTP -------------------------------------------------------------


@zart.step("charge-once")
def charge_once(amount: int) -> str:
    mark("charge-once")
    if count("charge-once") == 1:
        raise ConnectionError("card network down, the first time only")
    return "charged %d" % amount


@zart.workflow("checkout")
def checkout(data: dict) -> dict:
    """Fails for good at its first run (``charge-once`` has no retries); fine once retried."""
    total = add(data["amount"], 1)
    return {"receipt": charge_once(total), "total": total}


# -- operations: restart, rerun, retry-step, pause ---------------------------------------


def _operated(name: str) -> str:
    mark(name)
    if Flag.objects.filter(name="fail-%s" % name).exists():
        raise RuntimeError("%s is told to fail" % name)
    return name.upper()


@zart.step("ops-prepare")
def ops_prepare() -> str:
    return _operated("ops-prepare")


@zart.step("ops-charge")
def ops_charge() -> str:
    return _operated("ops-charge")


@zart.step("ops-ship")
def ops_ship() -> str:
    return _operated("ops-ship")


@zart.workflow("ops")
def ops(data: dict) -> dict:
    done = [ops_prepare(), ops_charge(), ops_ship()]
    return {"done": done, "input": data}


@zart.workflow("ops-sleep")
def ops_sleep(data: dict) -> str:
    ops_prepare()
    zart.sleep("nap", data["seconds"])
    return ops_ship()


@zart.step("tick")
def tick(seconds: float) -> str:
    mark("tick")
    time.sleep(seconds)
    return "tick"


@zart.workflow("ticks")
def ticks(data: dict) -> int:
    return len([tick(data["seconds"]) for _ in range(data["steps"])])


@zart.step("ops-part")
def ops_part(i: int) -> int:
    mark("part-%d" % i)
    if i == 1 and Flag.objects.filter(name="fail-ops-part").exists():
        raise RuntimeError("part 1 is told to fail")
    return i * 10


@zart.workflow("ops-fan")
def ops_fan(data: dict) -> list:
    parts = zart.map(ops_part, range(3))
    return [*parts, ops_ship()]


@zart.step("atomic-effect", atomic=True)
def atomic_effect(name: str) -> str:
    """Its side effect is a row in the worker's own database: atomic with its checkpoint."""
    mark(name)
    return name


@zart.workflow("fault-atomic")
def fault_atomic(data: None) -> list:
    return [atomic_effect("one"), atomic_effect("two")]


@zart.workflow("fault-atomic-branch")
def fault_atomic_branch(data: None) -> list:
    return zart.map(atomic_effect, ["left", "right"])


@zart.step("atomic-flaky", atomic=True, retry=zart.Retry.fixed(3, 0))
def atomic_flaky(failures: int) -> int:
    """Writes, then fails its first ``failures`` attempts: their writes must not stay."""
    attempt = zart.context().attempt
    mark("flaky-%d" % attempt)
    if attempt <= failures:
        raise ValueError("attempt %d fails after its write" % attempt)
    return attempt


@zart.workflow("atomic-flaky-wf")
def atomic_flaky_wf(data: dict) -> object:
    return zart.step_or(lambda: atomic_flaky(data["failures"]), "gave up")


@zart.step("atomic-bad-result", atomic=True)
def atomic_bad_result() -> object:
    mark("bad")
    return object()


@zart.workflow("atomic-bad-result-wf")
def atomic_bad_result_wf(data: None) -> object:
    return zart.step_or(atomic_bad_result, "not stored")


@zart.workflow("atomic-many")
def atomic_many(data: dict) -> list:
    return zart.map(atomic_effect, ["item-%d" % i for i in range(data["n"])])


@zart.workflow("signalled")
def signalled(data: dict) -> dict:
    first = add(1, 2)
    zart.sleep("pause", data.get("sleep", 0))
    second = zart.step_or(lambda: flaky_forever(), "fallback")
    return {"first": first, "second": second}


@zart.step("flaky-forever")
def flaky_forever() -> str:
    raise RuntimeError("never works")


@zart.step("limited-work")
def limited_work(seconds: float) -> str:
    """Marks its start and its end: the tests count how many ran at once."""
    mark("start")
    time.sleep(seconds)
    mark("end")
    return "done"


@zart.workflow("limited", concurrency=3)
def limited(data: dict) -> str:
    return limited_work(data.get("seconds", 0.2))


@zart.workflow("per-user", concurrency=1, concurrency_key=lambda data: data["user"])
def per_user(data: dict) -> str:
    return limited_work(data.get("seconds", 0.2))


@zart.workflow("limited-sleeper", concurrency=1)
def limited_sleeper(data: dict) -> list:
    first = limited_work(0.05)
    zart.sleep("nap", data.get("nap", "300ms"))  # holds no slot meanwhile
    return [first, limited_work.with_id("after-nap")(0.05)]
