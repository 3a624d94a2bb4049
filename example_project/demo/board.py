"""The demo's live view: a progress bar per workflow, counts by status and the latest
events in plain words, read from the tables alone (as the admin would read them).

On a terminal it is redrawn in place a few times a second; written to a file or a pipe,
each event is one line as it happens, with the counts every few seconds, so that a log of
the demo reads as well as the screen did.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter, deque
from datetime import datetime
from typing import Any

from django_zart.models import Execution, Step, Task
from django_zart.states import TERMINAL
from example_project.examples.runner import Narrator, Output

from .mix import Mix

# What a suspended execution waits for, by the kind of its waiting step.
WAITING = {
    "SLEEP": "sleeping",
    "EVENT": "waiting for an event",
    "CHILD": "waiting for a child",
    "GROUP": "waiting for branches",
}
RETRY_DELAY = "in a retry delay"
ORPHANED = "held by the dead worker until its lease ends"
ORDER = ["PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "FAILED", "CANCELLED", "PAUSED"]
BAR = 24
EVENTS_SHOWN = 8
PLAIN_COUNTS_EVERY = 5.0


class Board:
    def __init__(self, mix: Mix, out: Output, *, live: bool, title: str) -> None:
        self.mix = mix
        self.out = out
        self.live = live
        self.title = title
        self.started = time.monotonic()
        self.events: deque[str] = deque(maxlen=EVENTS_SHOWN)
        self.narrator = Narrator(self._event, list(mix.started))
        self.rows: list[tuple[str, str, str]] = []
        self.statuses: Counter[str] = Counter()
        self.waiting: Counter[str] = Counter()
        self.killed_at: datetime | None = None
        self._orphaned: set[str] = set()
        self._drawn = 0
        self._counts_said = self.started
        self._glyphs = ("█", "░") if _speaks_unicode(out) else ("#", ".")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def note(self, text: str) -> None:
        """Something the demo itself did (a worker killed, an event sent): an event too."""
        self._event("  " + text)

    def refresh(self) -> bool:
        """Read the tables, show what changed; True once every execution is finished."""
        self.narrator.poll()
        executions = list(
            Execution.objects.filter(pk__in=self.narrator.ids).values_list(
                "pk", "workflow", "status"
            )
        )
        suspended = self._waiting_for([pk for pk, _, status in executions if status == "SUSPENDED"])
        self.statuses = Counter(status for _, _, status in executions)
        self.waiting = Counter(suspended.values())
        orphaned = self.orphaned()
        for execution_id in sorted(self._orphaned - orphaned):
            self.note("%s taken over by the new worker, from its last checkpoint" % execution_id)
        self._orphaned = orphaned
        self.rows = self._rows(executions, suspended, orphaned)
        finished = len(executions) == sum(self.mix.expected.values()) and all(
            status in TERMINAL for _, _, status in executions
        )
        self._show()
        return finished

    def _waiting_for(self, suspended: list[str]) -> dict[str, str]:
        """What each suspended execution waits for, in words, from one query of its
        waiting or retrying steps."""
        steps = Step.objects.filter(
            execution_id__in=suspended, status__in=["WAITING", "RETRYING"]
        ).values_list("execution_id", "kind", "status")
        said = dict.fromkeys(suspended, "suspended")
        for pk, kind, status in steps:
            if status == "RETRYING":
                said[pk] = RETRY_DELAY
            elif said[pk] != RETRY_DELAY and kind in WAITING:
                said[pk] = WAITING[kind]
        return said

    def orphaned(self) -> set[str]:
        """The executions a killed worker held, until a live one takes them over."""
        if self.killed_at is None:
            return set()
        return set(
            Task.objects.filter(
                execution_id__in=self.narrator.ids,
                held_by__isnull=False,
                claimed_at__lt=self.killed_at,
            ).values_list("execution_id", flat=True)
        )

    def final(self) -> list[str]:
        """The board without its events: what stays on screen after the run."""
        return self._progress()

    def _rows(
        self,
        executions: list[tuple[str, str, str]],
        suspended: dict[str, str],
        orphaned: set[str],
    ) -> list[tuple[str, str, str]]:
        by_workflow: dict[str, list[tuple[str, str]]] = {}
        for pk, workflow, status in executions:
            by_workflow.setdefault(workflow, []).append((pk, status))
        full, empty = self._glyphs
        rows = []
        for workflow, total in self.mix.expected.items():
            seen = by_workflow.get(workflow, [])
            done = sum(1 for _, status in seen if status in TERMINAL)
            filled = round(BAR * done / total)
            bar = full * filled + empty * (BAR - filled)
            details: Counter[str] = Counter()
            for pk, status in seen:
                if status == "SUSPENDED":
                    details[suspended[pk]] += 1
                elif status == "RUNNING" and pk in orphaned:
                    details[ORPHANED] += 1
                elif status != "COMPLETED":
                    details[status.lower()] += 1
            if len(seen) < total:
                details["not started yet"] += total - len(seen)
            said = ", ".join("%d %s" % (n, what) for what, n in details.items())
            rows.append((workflow, "%s %3d/%-3d" % (bar, done, total), said))
        return rows

    def _progress(self) -> list[str]:
        width = max(len(name) for name, _, _ in self.rows) if self.rows else 10
        children = {child for kind in self.mix.kinds for child in kind.children}
        lines = [
            (
                "  %s%-*s %s  %s"
                % (
                    "  " if name in children else "",
                    width - (2 if name in children else 0),
                    name,
                    bar,
                    said,
                )
            ).rstrip()
            for name, bar, said in self.rows
        ]
        counts = ", ".join(
            "%s %d" % (status.lower(), self.statuses[status])
            for status in ORDER
            if self.statuses[status]
        )
        if self.waiting:
            counts += " (%s)" % ", ".join("%d %s" % (n, what) for what, n in self.waiting.items())
        return [*lines, "", "  Executions: %s" % counts]

    def _event(self, line: str) -> None:
        text = "%5.1f s %s" % (self.elapsed, line)
        self.events.append(text)
        if not self.live:
            self.out.write(text + "\n")

    def _show(self) -> None:
        if not self.live:
            if time.monotonic() - self._counts_said >= PLAIN_COUNTS_EVERY:
                self._counts_said = time.monotonic()
                self.out.write("%5.1f s %s\n" % (self.elapsed, self._progress()[-1].strip()))
            self.out.flush()
            return
        size = shutil.get_terminal_size((100, 40))
        lines = ["%s  %.1f s" % (self.title, self.elapsed), "", *self._progress()]
        # A frame taller than the terminal could not be redrawn in place: fewer events.
        room = min(EVENTS_SHOWN, size.lines - len(lines) - 3)
        if room > 0:
            events = list(self.events)[-room:]
            lines += ["", "  Latest events:", *["  " + event for event in events]]
            lines += [""] * (room - len(events))
        lines = [line[: size.columns - 1] for line in lines]
        # Back to the top of the last frame, then over it: no scrolling, no flicker.
        up = "\x1b[%dF" % self._drawn if self._drawn else ""
        self.out.write(up + "".join("\x1b[2K%s\n" % line for line in lines))
        self.out.flush()
        self._drawn = len(lines)


def _speaks_unicode(out: Any) -> bool:
    encoding = getattr(getattr(out, "_out", out), "encoding", None) or "ascii"
    try:
        "█░".encode(encoding)
    except (LookupError, UnicodeEncodeError):
        return False
    return True
