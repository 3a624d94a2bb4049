"""``manage.py zart <subcommand>``: operate on executions from the shell.

Each subcommand calls one function of the Python API, as ``cli:<os user>``, and prints
its answer: a table for people, ``--json`` for scripts. The exit status is what a script
branches on: 0 done; 1 refused by the engine (unknown id, finished, nothing to retry, a
wait that timed out), with the reason as one line on stderr; 2 a usage error, which
argparse reports with the usage (bad JSON in ``--data`` and a bad duration included).
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.management.color import Style, no_style

import django_zart as zart

from ... import records
from ...errors import ZartError
from ...models import Execution
from .. import text
from ..arguments import SAME_INPUT, add_subcommands


def caller() -> str:
    """Who asked, as the runs and pause rules record it."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name: no USER, LOGNAME or passwd entry (a container)
        user = ""
    return "cli:%s" % user if user else "cli"


class Command(BaseCommand):
    help = "Operate on django-zart executions: start, inspect, cancel, retry, pause, prune."

    def add_arguments(self, parser: CommandParser) -> None:
        self.parsers = add_subcommands(parser)

    def execute(self, *args: Any, **options: Any) -> str | None:
        # Django colours when sys.stdout is a terminal; output sent elsewhere (a file, a
        # StringIO of call_command) gets none either, unless --force-color asks for it.
        output = options.get("stdout") or self.stdout
        if not options.get("force_color") and not output.isatty():
            self.style = no_style()
        return super().execute(*args, **options)

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["subcommand"]
        self.by = caller()
        try:
            getattr(self, "do_" + name.replace("-", "_"))(**options)
        except ZartError as exc:
            raise CommandError(" ".join(str(exc).split())) from None

    def usage_error(self, subcommand: str, message: str) -> NoReturn:
        """Exit 2 with the usage from the shell (argparse), a CommandError from code."""
        self.parsers[subcommand].error(message)
        raise AssertionError("unreachable")

    def say(self, lines: list[str]) -> None:
        for line in lines:
            self.stdout.write(line)

    def print_json(self, data: Any) -> None:
        self.stdout.write(records.dumps(data))

    def show(self, as_json: bool, data: Any, render: Callable[[Any, Style], list[str]]) -> None:
        if as_json:
            self.print_json(data)
        else:
            self.say(render(data, self.style))

    # -- subcommands ----------------------------------------------------------------------

    def do_start(
        self,
        *,
        workflow: str,
        data: Any,
        execution_id: str | None,
        queue: str | None,
        if_exists: str,
        wait: timedelta | None,
        **options: Any,
    ) -> None:
        execution_id = zart.start(
            workflow, data, execution_id=execution_id, queue=queue, if_exists=if_exists, by=self.by
        )
        self.stdout.write(execution_id)
        self.stdout.flush()
        if wait is not None:
            self.say(text.summary(records.execution(zart.wait(execution_id, wait)), self.style))

    def do_status(self, *, execution_id: str, as_json: bool, **options: Any) -> None:
        record = records.execution_detail(zart.status(execution_id))
        self.show(as_json, record, text.detail)

    def do_list(
        self,
        *,
        status: list[str] | None,
        workflow: list[str] | None,
        limit: int,
        as_json: bool,
        **options: Any,
    ) -> None:
        rows = zart.executions(status=status, workflow=workflow)
        found = [records.execution(row) for row in rows[: limit + 1]]
        more = len(found) > limit
        found = found[:limit]
        if as_json:
            self.print_json(found)
        elif not found:
            self.stdout.write("No executions.")
        else:
            self.say(text.execution_list(found, self.style))
            if more:
                self.stdout.write("(the newest %d shown; --limit for more)" % limit)

    def do_wait(
        self, *, execution_id: str, timeout: timedelta, as_json: bool, **options: Any
    ) -> None:
        record = records.execution(zart.wait(execution_id, timeout))
        self.show(as_json, record, text.summary)

    def do_send_event(self, *, execution_id: str, name: str, data: Any, **options: Any) -> None:
        woke = zart.send_event(execution_id, name, data, by=self.by)
        self.stdout.write(
            "Event %r sent to %s: %s."
            % (
                name,
                execution_id,
                "it was waiting and is due now" if woke else "kept for its next wait of that name",
            )
        )

    def do_cancel(self, *, execution_id: str, reason: str, **options: Any) -> None:
        zart.cancel(execution_id, reason=reason, by=self.by)
        # A step a worker is running finishes and is checkpointed; nothing after it runs.
        self.stdout.write(self.style.SUCCESS("Cancelled %s." % execution_id))

    def do_restart(self, *, execution_id: str, data: Any, **options: Any) -> None:
        given = {} if data is SAME_INPUT else {"input": data}
        execution = zart.restart(execution_id, by=self.by, **given)
        self.new_run(execution, "Restarted %s from scratch" % execution_id)

    def do_rerun(
        self, *, execution_id: str, steps: list[str] | None, from_step: str | None, **options: Any
    ) -> None:
        execution = zart.rerun(execution_id, steps=steps, from_step=from_step, by=self.by)
        if from_step:
            what = "from step %r" % from_step
        else:
            names = steps or []
            what = "%s %s" % ("step" if len(names) == 1 else "steps", ", ".join(map(repr, names)))
        self.new_run(execution, "Rerunning %s of %s" % (what, execution_id))

    def do_retry_step(self, *, execution_id: str, step: str, **options: Any) -> None:
        execution = zart.retry_step(execution_id, step, by=self.by)
        self.new_run(execution, "Retrying step %r of %s" % (step, execution_id))

    def new_run(self, execution: Execution, what: str) -> None:
        self.stdout.write(
            self.style.SUCCESS(
                "%s: run %d, status %s." % (what, execution.run_index, execution.status)
            )
        )

    def do_pause(
        self,
        *,
        execution_id: str | None,
        workflow: str | None,
        step: str | None,
        reason: str,
        expires: timedelta | None,
        **options: Any,
    ) -> None:
        if not (execution_id or workflow or step):
            self.usage_error("pause", "name what to pause: --execution, --workflow or --step")
        rule = records.pause_rule(
            zart.pause(
                execution_id=execution_id,
                workflow=workflow,
                step=step,
                reason=reason,
                expires_at=expires,
                by=self.by,
            )
        )
        until = " until %s" % text.when(rule["expires_at"]) if rule["expires_at"] else ""
        self.stdout.write(
            self.style.SUCCESS(
                "Pause rule %d holds %s%s." % (rule["id"], text.rule_scope(rule), until)
            )
        )

    def do_resume(self, *, rule_id: int, **options: Any) -> None:
        zart.resume(rule_id, by=self.by)
        self.stdout.write("Pause rule %d ended; the work it held goes on." % rule_id)

    def do_pause_list(self, *, ended: bool, as_json: bool, **options: Any) -> None:
        rules = [records.pause_rule(rule) for rule in zart.pause_rules(active=not ended)]
        if as_json:
            self.print_json(rules)
        elif not rules:
            self.stdout.write("No pause rules." if ended else "No active pause rules.")
        else:
            self.say(text.pause_rules(rules, self.style, ended=ended))

    def do_stats(self, *, as_json: bool, **options: Any) -> None:
        data = zart.stats()
        self.show(as_json, data, text.stats)

    def do_prune(
        self,
        *,
        older_than: timedelta | None,
        statuses: list[str] | None,
        dry_run: bool,
        **options: Any,
    ) -> None:
        count = zart.prune(older_than=older_than, statuses=statuses, dry_run=dry_run)
        noun = "execution" if count == 1 else "executions"
        if dry_run:
            self.stdout.write("Would delete %d finished %s (dry run)." % (count, noun))
        else:
            self.stdout.write("Deleted %d finished %s." % (count, noun))
