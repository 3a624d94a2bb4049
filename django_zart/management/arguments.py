"""The grammar of ``manage.py zart``: its subcommands, their options, and the types
that turn option text into values.

Kept apart from the command, which only acts on parsed options, so the whole interface
reads in one place. What a person can mistype is refused here, by argparse, which prints
the usage and exits 2 from a shell: bad JSON, a bad duration, an unknown status. What
only the engine can judge (an unknown id, a step that did not fail) is left to it.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from django.core.management.base import CommandParser

from ..durations import to_seconds
from ..errors import InvalidArgument
from ..states import TERMINAL, ExecutionStatus


def json_value(value: str) -> Any:
    """An argparse type: ``--data`` parsed as JSON."""
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError("not valid JSON: %s" % exc) from None


def duration(value: str) -> timedelta:
    """An argparse type: ``30``, ``"90s"``, ``"30m"``, ``"2h"``, ``"30d"``."""
    number: float | str
    try:
        number = float(value)
    except ValueError:
        number = value
    try:
        return timedelta(seconds=to_seconds(number))
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


SAME_INPUT: Any = object()
"""``restart`` without ``--data``: ``--data null`` restarts with no input."""


def status_name(value: str) -> str:
    """An argparse type: a status in any case (``--status failed``)."""
    return value.upper()


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1, not %r" % value)
    return number


def add_subcommands(parser: CommandParser) -> dict[str, CommandParser]:
    """Add the subcommands to the command's parser; return their parsers by name."""
    commands = parser.add_subparsers(dest="subcommand", required=True, metavar="subcommand")
    parsers: dict[str, CommandParser] = {}

    def add(name: str, help: str) -> CommandParser:
        sub: CommandParser = commands.add_parser(name, help=help, description=help)
        # Django's own options belong before the subcommand; accept them after it too,
        # where people type them (``manage.py zart list --settings prod``). SUPPRESS:
        # absent, they leave the value given before the subcommand, or Django's default.
        for flag in ("--no-color", "--force-color", "--traceback", "--skip-checks"):
            sub.add_argument(
                flag, action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
            )
        for flag in ("--settings", "--pythonpath"):
            sub.add_argument(flag, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument(
            "-v",
            "--verbosity",
            type=int,
            choices=[0, 1, 2, 3],
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )
        parsers[name] = sub
        return sub

    def json_flag(sub: CommandParser) -> None:
        sub.add_argument(
            "--json", action="store_true", dest="as_json", help="Print JSON for scripts."
        )

    sub = add("start", "Start an execution and print its id.")
    sub.add_argument("workflow")
    sub.add_argument("--data", type=json_value, help="The input, as JSON (default null).")
    sub.add_argument("--id", dest="execution_id", help="The execution id (default a UUID).")
    sub.add_argument("--queue", help="The queue (default the workflow's).")
    sub.add_argument(
        "--if-exists",
        choices=["raise", "return"],
        default="raise",
        help="An execution of this id exists: refuse (raise, the default), or print its "
        "id if it runs the same workflow (return).",
    )
    sub.add_argument(
        "--wait", type=duration, metavar="SECONDS", help="Wait this long for it to finish."
    )

    sub = add("status", "Show an execution, its runs and its steps with their attempts.")
    sub.add_argument("execution_id")
    json_flag(sub)

    sub = add("list", "List executions, newest first.")
    sub.add_argument(
        "--status",
        action="append",
        type=status_name,
        choices=ExecutionStatus.values,
        help="Only this status; repeat for several.",
    )
    sub.add_argument("--workflow", action="append", help="Only this workflow; repeat for several.")
    sub.add_argument(
        "--limit", type=positive_int, default=50, help="Show at most this many (default: 50)."
    )
    json_flag(sub)

    sub = add("wait", "Wait for an execution to finish and show its outcome.")
    sub.add_argument("execution_id")
    sub.add_argument("--timeout", type=duration, required=True, metavar="SECONDS")
    json_flag(sub)

    sub = add("send-event", "Send an event to an execution.")
    sub.add_argument("execution_id")
    sub.add_argument("name")
    sub.add_argument("--data", type=json_value, help="The payload, as JSON (default null).")

    sub = add("cancel", "Cancel an unfinished execution and its unfinished children.")
    sub.add_argument("execution_id")
    sub.add_argument("--reason", default="", help="Stored as the cancellation's message.")

    sub = add("restart", "Run a finished execution again from scratch, in a new run.")
    sub.add_argument("execution_id")
    sub.add_argument(
        "--data",
        type=json_value,
        default=SAME_INPUT,
        help="A new input, as JSON (default: the same input).",
    )

    sub = add("rerun", "Run chosen steps of a finished execution again, in a new run.")
    sub.add_argument("execution_id")
    which = sub.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--step",
        action="append",
        dest="steps",
        metavar="NAME",
        help="A step to run again: its name (every occurrence) or its position key "
        '("charge-card#2"); repeat for several.',
    )
    which.add_argument(
        "--from-step", metavar="NAME", help="Run this step and every step after it again."
    )

    sub = add("retry-step", "Give a step that failed for good a fresh set of attempts.")
    sub.add_argument("execution_id")
    sub.add_argument("step", help='Its name, or its position key ("charge-card#2").')

    sub = add("pause", "Stop dispatching matching work until it is resumed.")
    sub.add_argument("--execution", dest="execution_id", metavar="ID")
    sub.add_argument("--workflow")
    sub.add_argument("--step", metavar="GLOB", help='A step name pattern, e.g. "charge-*".')
    sub.add_argument("--reason", default="")
    sub.add_argument(
        "--expires",
        type=duration,
        metavar="DURATION",
        help='Resume by itself after, e.g. "2h".',
    )

    sub = add("resume", "End a pause rule; the work it held goes on.")
    sub.add_argument("rule_id", type=int)

    sub = add("pause-list", "List the active pause rules.")
    sub.add_argument("--all", action="store_true", dest="ended", help="Also the ended ones.")
    json_flag(sub)

    sub = add("stats", "Counts by status and workflow, queue depths, workers.")
    json_flag(sub)

    sub = add("prune", "Delete finished executions with their runs, steps and events.")
    sub.add_argument(
        "--older-than",
        type=duration,
        metavar="DURATION",
        help='Finished longer ago than this, e.g. "30d" (default: ZART["RETENTION"] per '
        "status; statuses without a retention are kept).",
    )
    sub.add_argument(
        "--status",
        dest="statuses",
        action="extend",
        nargs="+",
        type=status_name,
        choices=sorted(TERMINAL),
        help="Only these statuses.",
    )
    sub.add_argument(
        "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
    )
    return parsers
