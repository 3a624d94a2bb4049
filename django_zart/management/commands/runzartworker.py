"""``manage.py runzartworker``: parse options, install signal handlers, run a Worker.

With ``--reload`` this process only starts and restarts a child process that runs the
worker (see ``django_zart.management.reloading``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...conf import DEFAULTS, check_value, get_settings
from ...errors import ZartError
from ...worker import Worker, WorkerOptions
from ..reloading import Restarter, in_reloaded_child, run_reloaded_worker
from ..stopping import StopOnSignal


def _checked(key: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: the value converted, then held to the range of setting ``key``."""

    def parse(value: str) -> Any:
        try:
            return check_value(key, convert(value), label="the value")
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = key.lower()  # argparse names the type in its message
    return parse


def _current(key: str) -> str:
    """The value setting ``key`` has in this project, for ``--help``."""
    try:
        value = getattr(get_settings(), key.lower())
    except ImproperlyConfigured:  # the system checks say why
        value = DEFAULTS[key]
    if isinstance(value, tuple | list):
        return ",".join(value)
    return "%g" % value if isinstance(value, float) else str(value)


def _number_or_text(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % value) from None


class Command(BaseCommand):
    help = "Run a django-zart worker: claim due workflow executions and run them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            help='Queue to take work from; repeat for several (default: ZART["QUEUES"], '
            "here %s)." % _current("QUEUES"),
        )
        for option, key, convert, what in (
            ("--concurrency", "MAX_CONCURRENT_TASKS", _integer, "Executions run at once"),
            ("--max-tasks-per-poll", "MAX_TASKS_PER_POLL", _integer, "Most claimed per poll"),
            (
                "--poll-interval",
                "POLL_INTERVAL",
                _number_or_text,
                'Wait between polls when idle, e.g. 0.2 or "200ms"',
            ),
            (
                "--orphan-timeout",
                "ORPHAN_TIMEOUT",
                _number_or_text,
                "Lease length: work of a dead worker is taken over after it",
            ),
            (
                "--shutdown-timeout",
                "SHUTDOWN_TIMEOUT",
                _number_or_text,
                "On SIGTERM/SIGINT, time running work gets to finish",
            ),
        ):
            parser.add_argument(
                option,
                type=_checked(key, convert),
                help='%s (default: ZART["%s"], here %s).' % (what, key, _current(key)),
            )
        parser.add_argument(
            "--burst", action="store_true", help="Exit once nothing is due and nothing runs."
        )
        parser.add_argument(
            "--no-listen",
            action="store_false",
            dest="listen",
            help="Do not LISTEN for due work on PostgreSQL; only poll.",
        )
        parser.add_argument(
            "--reload",
            action="store_true",
            help="Restart the worker when a Python file changes, as runserver does "
            "(for development): running work finishes or is released first.",
        )
        parser.add_argument(
            "--worker-id",
            help="Name shown in the admin, up to 100 characters (default: host-pid-random). "
            "A dead worker's id can be used again once its lease has run out.",
        )

    def execute(self, *args: Any, **options: Any) -> Any:
        if options.get("reload") and not in_reloaded_child():
            options["skip_checks"] = True  # the child runs them, on the code it runs
        return super().execute(*args, **options)

    def handle(self, *args: Any, **options: Any) -> None:
        self._configure_logging(options["verbosity"])
        try:
            worker_options = WorkerOptions.from_settings(
                queues=options["queues"],
                concurrency=options["concurrency"],
                max_tasks_per_poll=options["max_tasks_per_poll"],
                poll_interval=options["poll_interval"],
                orphan_timeout=options["orphan_timeout"],
                shutdown_timeout=options["shutdown_timeout"],
                burst=options["burst"],
                listen=options["listen"],
                worker_id=options["worker_id"],
            )
        except ZartError as exc:
            raise CommandError(str(exc)) from None
        if not options["reload"]:
            self._run(Worker(worker_options))
        elif in_reloaded_child():
            try:
                run_reloaded_worker(Worker(worker_options))
            except ZartError as exc:
                raise CommandError(str(exc)) from None
        else:
            code = Restarter().run()
            if code:
                sys.exit(code)

    def _run(self, worker: Worker) -> None:
        stopping = None
        if threading.current_thread() is threading.main_thread():
            stopping = StopOnSignal(worker.request_stop)
            stopping.install()
        try:
            worker.run()
        except ZartError as exc:
            raise CommandError(str(exc)) from None
        finally:
            if stopping is not None:
                stopping.restore()

    def _configure_logging(self, verbosity: int) -> None:
        logger = logging.getLogger("django_zart")
        level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
        logger.setLevel(level)
        if not logger.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger.addHandler(handler)
