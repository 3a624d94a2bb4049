"""The signals of an execution's life: once per change of state, after it is committed."""

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.dispatch import Signal

import django_zart as zart
from django_zart import signals
from django_zart.models import Step
from django_zart.registry import get_workflow

pytestmark = pytest.mark.django_db(transaction=True)
Drain = Callable[..., None]

ALL = {
    "execution_started": signals.execution_started,
    "step_completed": signals.step_completed,
    "step_failed": signals.step_failed,
    "execution_finished": signals.execution_finished,
}


class Heard:
    """What the receivers heard, from whichever worker thread sent it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[str, Any, dict[str, Any]]] = []

    def receiver(self, name: str) -> Callable[..., None]:
        def receive(sender: Any, **kwargs: Any) -> None:
            kwargs.pop("signal")
            with self.lock:
                self.items.append((name, sender, kwargs))

        return receive

    def names(self, execution_id: str) -> list[str]:
        return [n for n, _, kw in self.items if kw["execution_id"] == execution_id]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [kw for n, _, kw in self.items if n == name]


@pytest.fixture
def heard() -> Iterator[Heard]:
    heard = Heard()
    receivers = [(signal, heard.receiver(name)) for name, signal in ALL.items()]
    for signal, receive in receivers:
        signal.connect(receive, weak=False)
    yield heard
    for signal, receive in receivers:
        signal.disconnect(receive)


def test_each_change_of_state_is_heard_once_and_replays_are_silent(
    heard: Heard, drain: Drain
) -> None:
    # The sleep suspends the execution: the second pass replays "add" without a signal.
    zart.start("signalled", {"sleep": "200ms"}, execution_id="s")
    drain("s")
    assert heard.names("s") == [
        "execution_started",
        "step_completed",
        "step_failed",
        "execution_finished",
    ]
    (started,) = heard.of("execution_started")
    assert started == {"execution_id": "s", "workflow": "signalled", "input": {"sleep": "200ms"}}
    (add,) = heard.of("step_completed")
    assert add == {
        "execution_id": "s",
        "workflow": "signalled",
        "step": "add",
        "name": "add",
        "attempt": 1,
        "result": 3,
    }
    (failed,) = heard.of("step_failed")
    assert failed["step"] == "flaky-forever" and failed["error"]["type"] == "builtins.RuntimeError"
    (finished,) = heard.of("execution_finished")
    assert finished["status"] == "COMPLETED"
    assert finished["output"] == {"first": 3, "second": "fallback"}
    assert finished["error"] is None
    sender = heard.items[0][1]
    assert sender is get_workflow("signalled")  # so receivers can filter by workflow


def test_a_failed_execution_and_a_cancel_are_finished(
    heard: Heard, drain: Drain, run_worker: Callable[..., int]
) -> None:
    zart.start("bad-result-wf", None, execution_id="bad")
    drain("bad")
    zart.start("approval", {"amount": 1}, execution_id="waiting")
    run_worker()  # it waits for its event: suspended
    zart.cancel("waiting", reason="no longer needed")
    finished = {kw["execution_id"]: kw for kw in heard.of("execution_finished")}
    assert finished["bad"]["status"] == "FAILED" and finished["bad"]["error"]["type"]
    assert finished["waiting"]["status"] == "CANCELLED"
    assert finished["waiting"]["error"]["message"] == "no longer needed"


def test_atomic_steps_are_heard_after_their_commit(drain: Drain) -> None:
    seen: list[bool] = []

    def receive(sender: Any, execution_id: str, step: str, **kwargs: Any) -> None:
        # From the receiver's own view of the database: the checkpoint is there.
        seen.append(
            Step.objects.filter(
                execution_id=execution_id, position=step, status="COMPLETED"
            ).exists()
        )

    signals.step_completed.connect(receive, weak=False)
    try:
        zart.start("fault-atomic", None, execution_id="at")
        drain("at")
    finally:
        signals.step_completed.disconnect(receive)
    assert seen == [True, True]


def test_branches_are_heard_once_each_batched_or_not(heard: Heard, drain: Drain) -> None:
    zart.start("fan-out", {"n": 60}, execution_id="fan")
    drain("fan")
    squares = [kw["step"] for kw in heard.of("step_completed") if kw["name"] == "square"]
    assert len(squares) == len(set(squares)) == 60  # square(13) failed once: retried, not failed
    assert heard.of("step_failed") == []


def test_a_receiver_that_raises_does_not_disturb_the_worker(
    heard: Heard, drain: Drain, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.step_completed.connect(broken, weak=False)
    try:
        zart.start("arith", {"a": 1, "b": 2}, execution_id="r")
        drain("r")
    finally:
        signals.step_completed.disconnect(broken)
    assert zart.status("r").output == {"sum": 113}
    assert len([kw for kw in heard.of("step_completed") if kw["execution_id"] == "r"]) == 3
    assert "Signal receiver" in caplog.text and "receiver bug" in caplog.text


def test_a_signal_without_receivers_costs_nothing() -> None:
    lonely = Signal()
    signals.send_on_commit(lonely, "arith", execution_id="x")  # no receiver, no error
