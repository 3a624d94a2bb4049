"""``manage.py zart <subcommand>``: operate on executions from the shell."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...errors import ZartError
from ...events import send_event


class Command(BaseCommand):
    help = "Operate on django-zart executions."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="subcommand", required=True, metavar="subcommand")
        send = commands.add_parser("send-event", help="Send an event to an execution.")
        send.add_argument("execution_id")
        send.add_argument("name")
        send.add_argument("--data", default="null", help="The payload, as JSON (default null).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["subcommand"] == "send-event":
            self.send_event(options["execution_id"], options["name"], options["data"])

    def send_event(self, execution_id: str, name: str, data: str) -> None:
        try:
            payload = json.loads(data)
        except json.JSONDecodeError as exc:
            raise CommandError("--data is not valid JSON: %s" % exc) from None
        try:
            woke = send_event(execution_id, name, payload)
        except ZartError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            "Event %r sent to %s: %s."
            % (
                name,
                execution_id,
                "it was waiting and is due now" if woke else "kept for its next wait of that name",
            )
        )
