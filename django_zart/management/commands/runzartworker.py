"""``manage.py runzartworker``: parse options, install signal handlers, run a Worker."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...durations import to_seconds
from ...worker import Worker, WorkerOptions


def _duration(value: str) -> float:
    try:
        return to_seconds(float(value) if value.replace(".", "", 1).isdigit() else value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % value) from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1, not %d" % number)
    return number


class Command(BaseCommand):
    help = "Run a django-zart worker: claim due workflow executions and run them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            help='Queue to take work from; repeat for several (default: ZART["QUEUES"]).',
        )
        parser.add_argument(
            "--concurrency",
            type=_positive_int,
            help='Executions run at once (default: ZART["MAX_CONCURRENT_TASKS"], 4).',
        )
        parser.add_argument(
            "--max-tasks-per-poll",
            type=_positive_int,
            help='Most executions claimed per poll (default: ZART["MAX_TASKS_PER_POLL"]).',
        )
        parser.add_argument(
            "--poll-interval",
            type=_duration,
            help='Wait between polls when idle, e.g. 0.2 or "200ms" (default 0.2s).',
        )
        parser.add_argument(
            "--orphan-timeout",
            type=_duration,
            help="Lease length: work of a dead worker is taken over after it (default 30s).",
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=_duration,
            help="On SIGTERM/SIGINT, time running work gets to finish (default 5s).",
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
        parser.add_argument("--worker-id", help="Name shown in the admin (default host-pid).")

    def handle(self, *args: Any, **options: Any) -> None:
        self._configure_logging(options["verbosity"])
        if options["orphan_timeout"] is not None and options["orphan_timeout"] <= 0:
            raise CommandError("--orphan-timeout must be more than zero.")
        worker = Worker(
            WorkerOptions.from_settings(
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
        )
        previous = self._install_signals(worker)
        try:
            worker.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _install_signals(self, worker: Worker) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        stopping = False

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            if stopping:  # a second signal: stop now
                sys.exit(1)
            stopping = True
            logging.getLogger("django_zart.worker").info(
                "Received %s: finishing running work, then exiting", signal.Signals(signum).name
            )
            worker.request_stop()

        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
        return previous

    def _configure_logging(self, verbosity: int) -> None:
        logger = logging.getLogger("django_zart")
        level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
        logger.setLevel(level)
        if not logger.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger.addHandler(handler)
