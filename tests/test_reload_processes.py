"""``runzartworker --reload`` as a real process: a change to a workflow module starts a new
worker once the old one has stopped cleanly, and SIGTERM ends it all."""

import importlib
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import django_zart as zart
from django_zart.models import Execution, Step, Task
from django_zart.models import Worker as WorkerRow
from tests.conftest import WorkerProcess

pytestmark = [pytest.mark.django_db(transaction=True)]
Start = Callable[..., WorkerProcess]

MODULE = '''"""A workflow module the reload test edits."""
import django_zart as zart


@zart.workflow("{name}")
def probe(data):
    return {version}
'''


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, proc: WorkerProcess
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(
        "timed out after %ss waiting for %s; the log:\n%s" % (timeout, what, proc.output())
    )


def edit_until(
    source: Path, text: str, done: Callable[[], object], what: str, proc: WorkerProcess
) -> None:
    """Write ``text`` to ``source`` until ``done()``: the worker's watcher may not have looked
    at the file yet when it is first written, so each write moves its time a second on."""
    stamp = time.time()
    deadline = time.monotonic() + 30
    while not done():
        assert time.monotonic() < deadline, "timed out waiting for %s:\n%s" % (what, proc.output())
        stamp += 1
        source.write_text(text)
        os.utime(source, (stamp, stamp))
        time.sleep(0.3)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.usefixtures("isolated_registry")
def test_a_change_restarts_the_worker_after_it_stopped_cleanly(
    worker_process: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "zart_reload_%s" % uuid.uuid4().hex[:8]
    source = tmp_path / ("%s.py" % name)
    source.write_text(MODULE.format(name=name, version=1))
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    proc = worker_process(
        "--reload",
        "--poll-interval",
        "0.05",
        "--shutdown-timeout",
        "20",
        modules=name,
        env={"PYTHONPATH": path},
    )
    wait_for(WorkerRow.objects.exists, 30, "the first worker", proc)
    first = WorkerRow.objects.get()
    assert first.pid != proc.pid  # a child runs the worker; the command's process watches it
    execution_id = zart.start("sleepy-wf", {"seconds": 4})
    wait_for(
        lambda: Task.objects.filter(execution_id=execution_id, held_by__isnull=False).exists(),
        20,
        "the first worker to run the execution",
        proc,
    )

    edit_until(
        source,
        MODULE.format(name=name, version=2),
        lambda: "changed: stopping the worker" in proc.output(),
        "the change to be noticed",
        proc,
    )
    # The step was still running when the worker began to stop, and it finishes there.
    assert Execution.objects.get(pk=execution_id).status == "RUNNING"

    wait_for(lambda: WorkerRow.objects.exclude(pk=first.pk).exists(), 60, "a new worker", proc)
    second = WorkerRow.objects.get()  # the old row went when its worker stopped
    assert second.pk != first.pk and second.pid not in (first.pid, proc.pid)
    assert gone(first.pid)
    assert zart.wait_completion(execution_id, 10) == "slept"
    step = Step.objects.get(execution_id=execution_id, name="sleepy")
    assert step.attempts == 1  # finished by the old worker, not released and run again
    assert "Worker stopped id=%s processed=1" % first.pk in proc.output()
    # The new worker runs the new code.
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module(name)
    assert zart.wait_completion(zart.start(name), 10) == 2

    assert proc.terminate() == 0
    assert not WorkerRow.objects.exists()
    assert gone(second.pid)
    output = proc.output()
    assert output.count("Worker starting") == 2
    assert output.count("Worker stopped") == 2
    assert "released" not in output


def test_a_worker_that_fails_on_a_change_starts_again_on_the_next(
    worker_process: Start, tmp_path: Path
) -> None:
    name = "zart_reload_%s" % uuid.uuid4().hex[:8]
    source = tmp_path / ("%s.py" % name)
    source.write_text(MODULE.format(name=name, version=1))
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    proc = worker_process("--reload", modules=name, env={"PYTHONPATH": path})
    wait_for(WorkerRow.objects.exists, 30, "the first worker", proc)
    first = WorkerRow.objects.get()

    edit_until(  # saved with a syntax error
        source,
        MODULE.format(name=name, version="("),
        lambda: "it starts again on a change" in proc.output(),
        "the new worker to fail",
        proc,
    )
    assert "SyntaxError" in proc.output()
    assert not WorkerRow.objects.exists() and gone(first.pid)
    assert proc.process.poll() is None  # the command waits for the fix

    edit_until(
        source,
        MODULE.format(name=name, version=2),
        WorkerRow.objects.exists,
        "a worker on the fixed module",
        proc,
    )
    second = WorkerRow.objects.get()
    assert second.pid != first.pid
    assert proc.terminate() == 0
    assert not WorkerRow.objects.exists() and gone(second.pid)
