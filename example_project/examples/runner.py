"""What the examples share: a worker process to run them, and a narrator that follows
executions in the database and says in plain words what happens to them.

The narrator reads only the tables (``Execution``, ``Run``, ``Step``, ``StepAttempt``), so
it tells the same story whether the worker is a process of its own, a thread of this
one, or a machine elsewhere.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO, TypeVar

from django.db import connections
from django.utils import timezone

from django_zart.models import Execution, Run, Step, StepAttempt
from django_zart.models import Worker as ZartWorker
from django_zart.serialization import decode
from django_zart.states import TERMINAL

T = TypeVar("T")

MANAGE = Path(__file__).resolve().parents[2] / "manage.py"


class WorkerProcess:
    """A ``runzartworker`` process of the example project, in a session of its own so that
    a Ctrl-C in the terminal reaches the example first, which then stops the worker once
    (a second signal would make the worker exit at once, as a crash would)."""

    def __init__(self, *options: str) -> None:
        self.options = options or ("--orphan-timeout", "5")
        self.log: TextIO | None = None
        self.process: subprocess.Popen[str] | None = None
        self.pid = 0

    def start(self) -> int:
        """Start the worker (again, if the last one is gone); its pid."""
        if self.log is not None:
            self.log.close()
        # A file, not a pipe: nobody reads the worker's log while it runs.
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(MANAGE),
                "runzartworker",
                "--poll-interval",
                "0.1",
                "-v",
                "0",
                *self.options,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.pid = self.process.pid
        self._wait_until_registered(self.process, self.log)
        return self.pid

    @staticmethod
    def _wait_until_registered(
        process: subprocess.Popen[str], log: TextIO, timeout: float = 60
    ) -> None:
        """Return once the worker has registered, so its signal handlers are in place."""
        deadline = time.monotonic() + timeout
        registered = ZartWorker.objects.filter(pid=process.pid, hostname=socket.gethostname())
        while not registered.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError("The worker did not start:\n%s" % log.read()[-5000:])
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no release, no goodbye; its leases run out."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def exit_status(self) -> int | None:
        """None while it runs, else its exit code (negative: the signal that ended it)."""
        return None if self.process is None else self.process.poll()

    def stop(self) -> int | None:
        """SIGTERM, then its exit code; SIGKILL if it has not stopped in 30 s."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self.log is not None:
            self.log.close()
        return process.returncode


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """A SIGTERM, or a SIGHUP from a closed terminal, ends the command as Ctrl-C does, so
    that it stops the processes it started all the same."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        number: signal.signal(number, _interrupt) for number in (signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def short(value: Any, limit: int = 90) -> str:
    """A stored value as one line of JSON, cut to ``limit`` characters."""
    text = json.dumps(decode(value), default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def seconds_until(moment: datetime | None) -> str:
    if moment is None:
        return "?"
    return "%.1f s" % max(0.0, (moment - timezone.now()).total_seconds())


def describe_error(error: dict[str, Any] | None) -> str:
    if not error:
        return "no error recorded"
    kind = str(error.get("type", "?")).rsplit(".", 1)[-1]
    return "%s: %s" % (kind, error.get("message", ""))


@dataclass
class Narrator:
    """Prints what changes in the executions it follows (and in their children)."""

    say: Callable[[str], None]
    ids: list[str]
    _steps: dict[int, tuple[str, int]] = field(default_factory=dict)
    _executions: dict[str, tuple[str, int]] = field(default_factory=dict)
    _lines: list[tuple[datetime, int, str]] = field(default_factory=list)
    _moment: datetime | None = None

    def poll(self) -> bool:
        """Print what changed since the last call, in the order it happened; True once
        every execution finished."""
        children = Execution.objects.filter(parent_id__in=self.ids).exclude(pk__in=self.ids)
        self.ids.extend(children.values_list("pk", flat=True))
        executions = {e.pk: e for e in Execution.objects.filter(pk__in=self.ids)}
        for execution_id in self.ids:
            if execution_id not in self._executions:
                self._executions[execution_id] = ("", executions[execution_id].run_index)
                self._moment = executions[execution_id].created_at
                self._tell_started(executions[execution_id])
        steps = Step.objects.filter(execution_id__in=self.ids).order_by("updated_at", "pk")
        for step in steps:
            seen = (step.status, step.attempts)
            if self._steps.get(step.pk) != seen:
                self._steps[step.pk] = seen
                self._moment = step.updated_at
                self._tell_step(step)
        for execution_id in self.ids:
            execution = executions[execution_id]
            seen = (execution.status, execution.run_index)
            if self._executions[execution_id] != seen:
                before = self._executions[execution_id]
                self._executions[execution_id] = seen
                self._moment = execution.finished_at or execution.updated_at
                self._tell_execution(execution, before)
        for _, _, line in sorted(self._lines):
            self.say(line)
        self._lines.clear()
        return all(e.status in TERMINAL for e in executions.values())

    def _line(self, execution_id: str, text: str) -> None:
        moment = self._moment or timezone.now()
        self._lines.append((moment, len(self._lines), "  %-14s %s" % (execution_id, text)))

    def _tell_step(self, step: Step) -> None:  # noqa: C901 - one story per kind of step
        where, name, kind, status = step.execution_id, step.position, step.kind, step.status
        if kind == "STEP" and status == "COMPLETED":
            tries = "" if step.attempts == 1 else " on attempt %d" % step.attempts
            self._line(where, "step %s done%s -> %s" % (name, tries, short(step.result)))
        elif kind in ("STEP", "BRANCH") and status == "RETRYING":
            last = StepAttempt.objects.filter(step=step).order_by("-number").first()
            self._line(
                where,
                "step %s failed (attempt %d, %s), retrying in %s"
                % (
                    name,
                    step.attempts,
                    describe_error(last.error if last else None),
                    seconds_until(step.wake_at),
                ),
            )
        elif kind in ("STEP", "BRANCH") and status == "FAILED":
            self._line(
                where,
                "step %s failed for good after %d attempt(s): %s"
                % (name, step.attempts, describe_error(step.error)),
            )
        elif kind == "SLEEP" and status == "WAITING":
            self._line(where, "sleeping (%s) for %s, durably" % (name, seconds_until(step.wake_at)))
        elif kind == "SLEEP" and status == "COMPLETED":
            self._line(where, "woke up from %s" % name)
        elif kind == "EVENT" and status == "WAITING":
            limit = "" if step.wake_at is None else ", at most %s" % seconds_until(step.wake_at)
            self._line(where, "waiting for event %r%s" % (step.name, limit))
        elif kind == "EVENT" and status == "COMPLETED":
            self._line(where, "received event %r: %s" % (step.name, short(step.result)))
        elif kind == "EVENT" and status == "FAILED":
            self._line(where, "no event %r came in time" % step.name)
        elif kind == "BRANCH" and status == "SCHEDULED":
            self._line(where, "branch %s scheduled" % name)
        elif kind == "BRANCH" and status == "COMPLETED":
            tries = "" if step.attempts == 1 else " on attempt %d" % step.attempts
            self._line(where, "branch %s done%s -> %s" % (name, tries, short(step.result)))
        elif kind == "GROUP" and status == "WAITING":
            self._line(where, "waiting for its parallel branches")
        elif kind == "GROUP" and status == "COMPLETED":
            self._line(where, "all branches done")
        elif kind == "CHILD" and status == "WAITING":
            self._line(where, "waiting for its child workflow (%s)" % name)
        elif kind == "CHILD" and status == "COMPLETED":
            child = decode(step.result) or {}
            if "output" in child:
                self._line(where, "child %s finished -> %s" % (child["id"], short(child["output"])))
            else:
                self._line(where, "started child %s, not waiting for it" % child.get("id"))
        elif kind == "CAPTURE" and status == "COMPLETED":
            self._line(where, "recorded %s -> %s" % (name, short(step.result)))

    def _tell_started(self, execution: Execution) -> None:
        parent = "" if execution.parent_id is None else ", a child of %s" % execution.parent_id
        self._line(execution.pk, "started: workflow %r%s" % (execution.workflow, parent))

    def _tell_execution(self, execution: Execution, before: tuple[str, int]) -> None:
        where, status = execution.pk, execution.status
        if before[1] != execution.run_index:
            run = Run.objects.filter(execution=execution, index=execution.run_index).first()
            if run is not None and run.reason == "COMPENSATION":
                self._line(where, "failed; running its failure handler (on_failure)")
            elif run is not None:
                self._line(where, "new run (%s)" % run.get_reason_display().lower())
        if status == "COMPLETED":
            self._line(where, "completed -> %s" % short(execution.output, 200))
        elif status == "FAILED":
            error = execution.error or {}
            handler = error.get("compensation")
            after = "" if handler is None else " (failure handler: %s)" % short(handler, 60)
            self._line(where, "failed: %s%s" % (describe_error(error), after))
        elif status == "CANCELLED":
            self._line(where, "cancelled")


class Output(Protocol):
    """Where an example speaks: a command's ``self.stdout``, a file, a ``StringIO``."""

    def write(self, text: str) -> Any: ...

    def flush(self) -> Any: ...


class Example:
    """What an example's ``run()`` gets: how fast to go, a voice, and the worker."""

    def __init__(
        self,
        out: Output,
        *,
        fast: bool,
        worker: WorkerProcess | None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.out = out
        self.fast = fast
        self.worker = worker
        self.options = options or {}

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def duration(self, normal: float, fast: float) -> float:
        """Seconds to sleep or wait: long enough to watch, or short enough for a test."""
        return fast if self.fast else normal

    def follow(self, *ids: str, timeout: float = 120) -> dict[str, Execution]:
        """Tell what happens to the executions until they all finish; their final rows."""
        narrator = Narrator(self.say, list(ids))
        deadline = time.monotonic() + timeout
        while not narrator.poll():
            self._keep_worker()
            if time.monotonic() > deadline:
                raise TimeoutError("The executions did not finish in %d s." % timeout)
            time.sleep(0.05)
        return {e.pk: e for e in Execution.objects.filter(pk__in=narrator.ids)}

    def in_background(self, fn: Callable[[], T]) -> Future[T]:
        """Call ``fn`` on a thread of its own (as a web request would), while this one
        tells the story."""
        future: Future[T] = Future()

        def target() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                connections.close_all()

        threading.Thread(target=target, daemon=True).start()
        return future

    def eventually(self, fn: Callable[[], T | None], timeout: float = 30) -> T:
        """What ``fn`` returns once it returns something."""
        deadline = time.monotonic() + timeout
        while (value := fn()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("Gave up waiting after %d s." % timeout)
            time.sleep(0.05)
        return value

    def _keep_worker(self) -> None:
        """A worker that died (killed, say, to show that nothing is lost) is replaced."""
        worker = self.worker
        if worker is None:
            return
        code = worker.exit_status()
        if code is None:
            return
        how = "killed by signal %d" % -code if code < 0 else "exit code %d" % code
        self.say("The worker (pid %d) is gone (%s)." % (worker.pid, how))
        self.say(
            "Started another worker (pid %d): it picks up where the other left off."
            % worker.start()
        )


def new_id(prefix: str) -> str:
    """An execution id of its own for each run of an example: ``sleep-1a2b3c``."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:6])
