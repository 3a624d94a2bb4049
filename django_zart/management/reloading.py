"""``runzartworker --reload``: a fresh worker process whenever the code changes.

Django's autoreloader does the watching, as for ``runserver``: the command runs again in a
child process, which watches the files of every module it imported and exits with code 3
when one changes; the parent then starts a new child. ``autoreload.run_with_reloader``
itself is not used, because of how it stops: on a change or SIGTERM the child exits with
the thread that runs the command, a daemon, killed mid-step; and on SIGTERM or Ctrl-C the
parent's ``subprocess.run`` kills the child with SIGKILL (after a quarter of a second for
Ctrl-C). A worker holds work, so here:

- the child stops its worker as on SIGTERM before it exits for a change: running work
  gets the shutdown timeout to finish, the rest is released to other workers;
- signals reach the child's ``StopOnSignal`` as they would a plain worker's;
- the parent passes SIGTERM (from ``kill``, a process manager, ``docker stop``) on to the
  child and waits for it, so one SIGTERM stops the worker cleanly and ends both. Ctrl-C
  reaches both through the terminal, so the parent leaves SIGINT to the child;
- a child that fails (a syntax error just saved) is started again on the next change, as
  ``runserver`` does, instead of ending the parent.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from types import FrameType
from typing import Any

from django.utils import autoreload

from ..worker import Worker
from .stopping import StopOnSignal

logger = logging.getLogger("django_zart.worker")

RELOAD_EXIT_CODE = 3
"""The exit code of a child that saw a change (Django's ``trigger_reload``)."""


def in_reloaded_child() -> bool:
    """Whether this process is the child that runs the worker."""
    return os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true"


def run_reloaded_worker(worker: Worker) -> None:
    """In the child: run ``worker`` on a thread while this one watches the code.

    Returns once the worker stopped on a signal; raises ``SystemExit(3)`` after it stopped
    for a change; raises what the worker raised if it failed.
    """
    reloader = autoreload.get_reloader()
    finished = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            failure.append(exc)
        finally:
            finished.set()
            reloader.stop()  # the watching ends too, within a second

    changed: list[str] = []

    def note(sender: object, file_path: os.PathLike[str] | str, **kwargs: object) -> None:
        changed.append(str(file_path))  # another receiver may still call the reload off

    stopping = StopOnSignal(worker.request_stop)
    stopping.install()
    autoreload.file_changed.connect(note)
    logger.info("Watching for file changes with %s", type(reloader).__name__)
    try:
        autoreload.start_django(reloader, run)
    except SystemExit:  # a change: Django's reloader exits with code 3
        logger.info(
            "%s changed: stopping the worker, then starting a new one",
            changed[-1] if changed else "A file",
        )
        worker.request_stop()
        finished.wait()
        raise
    finally:
        autoreload.file_changed.disconnect(note)
        stopping.restore()
    if failure:
        raise failure[0]


class Restarter:
    """In the parent: start the child again after each change, until a signal or an end."""

    def __init__(self) -> None:
        self._child: int | None = None
        self._stopping = False
        self._received = 0  # SIGTERMs, each passed on to the child once
        self._passed = 0
        self._previous: dict[int, Any] = {}

    def run(self) -> int:
        """Run children until one ends for another reason than a change; its exit code."""
        self._install()
        try:
            while True:
                code = self._run_child()
                if self._stopping:  # the child stopped its worker, for the change or not
                    return 0 if code == RELOAD_EXIT_CODE else code
                if code == 0:
                    return code
                if code == RELOAD_EXIT_CODE:
                    continue
                logger.error("The worker exited with code %d; it starts again on a change", code)
                if not self._wait_for_change():
                    return code
        finally:
            self._restore()

    def _run_child(self) -> int:
        environ = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true"}
        arguments = autoreload.get_child_arguments()  # this command's own command line
        child = subprocess.Popen(arguments, env=environ, close_fds=False)  # noqa: S603
        self._child = child.pid
        self._pass_on()  # a SIGTERM that came before the child's pid was known
        try:
            code = child.wait()
        finally:
            self._child = None
        return 128 - code if code < 0 else code  # killed by a signal: as a shell says

    def _wait_for_change(self) -> bool:
        """Wait for a change to a watched file; False if a signal ended the wait."""
        reloader = autoreload.get_reloader()
        changed: list[str] = []

        def note(sender: object, file_path: os.PathLike[str] | str, **kwargs: object) -> bool:
            changed.append(str(file_path))
            return True  # noted: Django's reloader must not exit this process

        autoreload.file_changed.connect(note)
        try:
            ticks = reloader.tick()
            while not changed and not self._stopping:
                next(ticks)
        finally:
            autoreload.file_changed.disconnect(note)
            reloader.stop()
        return bool(changed) and not self._stopping

    def _install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """Pass SIGTERM on to the child; SIGINT came to it from the terminal already.

        Flags and a system call, nothing that takes a lock (see ``stopping``).
        """
        self._stopping = True
        if signum == signal.SIGTERM:
            self._received += 1
            self._pass_on()

    def _pass_on(self) -> None:
        """Send the child each SIGTERM not sent yet: a second one ends it at once."""
        child = self._child
        while child is not None and self._passed < self._received:
            self._passed += 1
            os.kill(child, signal.SIGTERM)
