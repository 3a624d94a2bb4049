"""``manage.py zart_example <name>``: run one example against a real worker, and tell it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...catalog import NAMES, load
from ...runner import Example, WorkerProcess, signals_as_interrupt


class Command(BaseCommand):
    help = "Run one of the examples of example_project/examples/ and tell what happens."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", choices=NAMES, help="The example to run.")
        parser.add_argument(
            "--no-worker",
            action="store_true",
            help="Start no worker: one runs elsewhere (python manage.py runzartworker).",
        )
        parser.add_argument(
            "--fast",
            action="store_true",
            help="Sleep and wait for fractions of a second instead of seconds (for tests).",
        )
        parser.add_argument(
            "--offline",
            action="store_true",
            help="brewery: ask a local server that replays recorded answers, not the APIs.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        module = load(options["name"])
        self.stdout.write(
            "Example %r. %s" % (options["name"], " ".join((module.__doc__ or "").split()))
        )
        worker = None if options["no_worker"] else WorkerProcess()
        example = Example(self.stdout, fast=options["fast"], worker=worker, options=options)
        with signals_as_interrupt():
            try:
                if worker is None:
                    example.say("No worker started: one must run (python manage.py runzartworker).")
                else:
                    example.say("Started a worker (pid %d)." % worker.start())
                module.run(example)
            except KeyboardInterrupt:
                example.say("Interrupted. What ran is checkpointed: a worker goes on from there.")
            finally:
                if worker is not None:
                    code = worker.stop()
                    example.say("Stopped the worker (exit code %s)." % code)
