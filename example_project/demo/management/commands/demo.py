"""``manage.py demo``: a few dozen executions of the examples on a real worker, shown live,
with the worker killed half-way to show that nothing is lost."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone

import django_zart as zart
from django_zart.models import Execution
from example_project.examples.runner import (
    MANAGE,
    WorkerProcess,
    describe_error,
    short,
    signals_as_interrupt,
)

from ...board import Board
from ...mix import Mix, build

DEMO_USER = "demo"
CONCURRENCY = "8"


class Command(BaseCommand):
    help = (
        "Run a few dozen executions of the examples on a worker process, show their progress"
        " live, kill the worker half-way and start another, then show their outputs and how"
        " to open the admin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--keep-running",
            action="store_true",
            help="Afterwards, leave the worker and the admin (runserver) up until Ctrl-C.",
        )
        parser.add_argument(
            "--port", type=int, default=8000, help="runserver's port for --keep-running."
        )
        parser.add_argument(
            "--no-crash", action="store_true", help="Do not kill the worker half-way."
        )
        parser.add_argument(
            "--fast",
            action="store_true",
            help="Sleep and wait for fractions of a second instead of seconds (for tests).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        fast = options["fast"]
        mix = build(fast=fast)
        login = _demo_user()
        worker = WorkerProcess(
            "--concurrency", CONCURRENCY, "--orphan-timeout", "2" if fast else "5"
        )
        self.server: subprocess.Popen[bytes] | None = None
        done = False
        with signals_as_interrupt():
            try:
                worker.start()
                self._say(
                    "Started a worker (pid %d): python manage.py runzartworker --concurrency %s"
                    % (worker.pid, CONCURRENCY)
                )
                mix.start(uuid.uuid4().hex[:6])
                self._say(
                    "Started %d executions on %s; their children start as they run:"
                    % (len(mix.started), _database())
                )
                for kind in mix.kinds:
                    self._say("  %2d %-22s %s" % (len(kind.inputs), kind.workflow, kind.what))
                self._say()
                board = Board(mix, self.stdout, live=self.stdout.isatty(), title="")
                self._run(board, mix, worker, fast=fast, crash=not options["no_crash"])
                done = True
                self._outputs(mix, board.narrator.ids)
                self._how_to_explore(login, options["port"], options["keep_running"])
                if options["keep_running"]:
                    self._stay(worker, self._serve(options["port"]))
            except KeyboardInterrupt:
                if done:
                    self._say("\nStopping.")
                else:
                    self._say(
                        "\nInterrupted. What ran is checkpointed: the next worker goes on from"
                        " there (python manage.py runzartworker)."
                    )
            finally:
                server = self.server
                if server is not None and server.poll() is None:
                    server.terminate()
                    server.wait(10)
                    self._say("Stopped runserver.")
                code = worker.stop()
                self._say("Stopped the worker (exit code %s)." % code)

    def _say(self, text: str = "") -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def _run(
        self, board: Board, mix: Mix, worker: WorkerProcess, *, fast: bool, crash: bool
    ) -> None:
        """Show the board until every execution finished; meanwhile send the expense
        decisions when they are due, and kill the worker once, mid-work."""
        deadline = 20 if fast else 45
        crash_at = 0.2 if fast else 2.5
        decisions = sorted(mix.decisions, key=lambda decision: decision.after)
        board.title = self._title(mix, worker)
        while not board.refresh():
            if decisions and decisions[0].after <= board.elapsed:
                decision = decisions.pop(0)
                execution_id = mix.ids["expense-request"][decision.index]
                try:
                    zart.send_event(execution_id, "decision", decision.payload)
                except zart.ExecutionFinished:
                    board.note("%s had finished: the decision came too late" % execution_id)
                else:
                    board.note(
                        "the demo sent %s the event 'decision': %s"
                        % (execution_id, short(decision.payload))
                    )
            if crash and board.elapsed >= crash_at and board.statuses["RUNNING"]:
                crash = False
                dead = worker.pid
                worker.kill()
                board.killed_at = timezone.now()
                board.note(
                    "the demo killed the worker (pid %d) with SIGKILL, as a crash would, while"
                    " it ran %d execution(s)" % (dead, len(board.orphaned()))
                )
                worker.start()
                board.title = self._title(mix, worker)
                board.note(
                    "a new worker (pid %d) takes them over when the dead one's leases end,"
                    " from their last checkpoint: no completed step runs again" % worker.pid
                )
            code = worker.exit_status()
            if code is not None:
                board.note(
                    "the worker (pid %d) stopped (exit code %d); starting another"
                    % (worker.pid, code)
                )
                worker.start()
                board.title = self._title(mix, worker)
            if board.elapsed > deadline:
                raise CommandError(
                    "The demo's executions did not all finish in %d s; the worker's log"
                    " may say why (python manage.py runzartworker -v 2)." % deadline
                )
            time.sleep(0.05 if fast else 0.2)
        if board.live:
            self._say()
        else:
            self._say(
                "\nAll %d executions finished in %.1f s:\n"
                % (len(board.narrator.ids), board.elapsed)
            )
            for line in board.final():
                self._say(line)
        self._say()

    def _title(self, mix: Mix, worker: WorkerProcess) -> str:
        return "django-zart demo: %d executions, worker pid %d, %s" % (
            sum(mix.expected.values()),
            worker.pid,
            _database(),
        )

    def _outputs(self, mix: Mix, ids: list[str]) -> None:
        self._say("Outputs (one per workflow, and every failure):")
        executions = Execution.objects.filter(pk__in=ids).order_by("created_at", "pk")
        by_workflow: dict[str, list[Execution]] = {}
        for execution in executions:
            by_workflow.setdefault(execution.workflow, []).append(execution)
        for workflow in mix.expected:
            shown = 0
            for execution in by_workflow.get(workflow, []):
                if execution.status == "COMPLETED" and not shown:
                    shown += 1
                    self._say(
                        "  %-20s %s -> %s" % (workflow, execution.pk, short(execution.output, 80))
                    )
                elif execution.status == "FAILED":
                    error = execution.error or {}
                    handler = error.get("compensation")
                    after = (
                        "" if handler is None else "; its failure handler %s" % short(handler, 40)
                    )
                    self._say(
                        "  %-20s %s failed: %s%s"
                        % (workflow, execution.pk, describe_error(error), after)
                    )
        self._say()

    def _how_to_explore(self, login: str, port: int, keep_running: bool) -> None:
        python = _python()
        url = "http://127.0.0.1:%d/admin/django_zart/execution/" % port
        if keep_running:
            self._say("The admin shows each execution, its steps, retries, inputs and outputs.")
        else:
            self._say(
                "The admin shows each execution, its steps, retries, inputs and outputs:\n"
                "  %s manage.py runserver %d, then open %s\n"
                "  (or bash scripts/demo --keep-running, which leaves a worker and the admin up)"
                % (python, port, url)
            )
        self._say("  %s" % login)
        if connection.vendor == "sqlite":
            self._say(
                "The same against PostgreSQL:\n"
                "  DATABASE_URL=postgres://USER@HOST:5432/DATABASE bash scripts/demo"
            )

    def _serve(self, port: int) -> subprocess.Popen[bytes]:
        log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        server = subprocess.Popen(
            [sys.executable, str(MANAGE), "runserver", "127.0.0.1:%d" % port, "--noreload"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.server = server
        deadline = time.monotonic() + 20
        while not _listening(port):
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                server.wait(10)
                log.seek(0)
                raise CommandError(
                    "runserver did not start on port %d:\n%s"
                    % (port, log.read().decode(errors="replace")[-2000:])
                )
            time.sleep(0.1)
        self._say(
            "\nThe admin runs at http://127.0.0.1:%d/admin/ and the worker goes on: start,"
            " retry, cancel or send events from there. Ctrl-C stops both." % port
        )
        return server

    def _stay(self, worker: WorkerProcess, server: subprocess.Popen[bytes]) -> None:
        while server.poll() is None:
            if worker.exit_status() is not None:
                self._say(
                    "The worker stopped (exit code %s); starting another." % worker.exit_status()
                )
                worker.start()
            time.sleep(0.5)
        self._say("runserver stopped (exit code %s)." % server.returncode)


def _demo_user() -> str:
    """A superuser to log in to the admin with, made on the first run."""
    User = get_user_model()
    user = User.objects.filter(username=DEMO_USER).first()
    if user is None:
        User.objects.create_superuser(DEMO_USER, "demo@example.com", DEMO_USER)
        return "Log in as %s, password %s (a superuser the demo made)." % (DEMO_USER, DEMO_USER)
    if user.is_superuser and user.check_password(DEMO_USER):
        return "Log in as %s, password %s." % (DEMO_USER, DEMO_USER)
    return (
        "Log in with a superuser of yours (python manage.py createsuperuser): the user %s"
        " exists with another password." % DEMO_USER
    )


def _database() -> str:
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        path = os.path.relpath(str(settings["NAME"]))
        return "SQLite (%s)" % (path if not path.startswith("..") else settings["NAME"])
    host = settings.get("HOST") or "the local socket"
    return "%s (database %s on %s)" % (connection.display_name, settings["NAME"], host)


def _python() -> str:
    """How to call this Python from where the demo was started."""
    path = os.path.relpath(sys.executable)
    return path if not path.startswith("..") else sys.executable


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0
