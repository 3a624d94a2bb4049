"""The human output of ``manage.py zart``: aligned tables and short summaries.

Drawn from the records of ``records`` so a table never says more or less than ``--json``.
Columns are measured on the plain text and coloured afterwards: escape codes take no
room on screen, so padding a coloured cell would misalign the columns after it. Long
values are cut to one line; ``--json`` has them whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.management.color import Style
from django.utils import timezone

from ..records import dumps

VALUE_WIDTH = 60
"""Characters of a value shown in a table cell or a summary line."""


@dataclass(frozen=True, slots=True)
class Cell:
    """Table text to colour once it is padded."""

    text: str
    paint: Callable[[str], str]


def status(style: Style, value: str) -> Cell:
    """A status, coloured by how it ended (or that it is held)."""
    paint = {
        "COMPLETED": style.SUCCESS,
        "SUCCEEDED": style.SUCCESS,
        "FAILED": style.ERROR,
        "CANCELLED": style.WARNING,
        "PAUSED": style.WARNING,
        "RETRYING": style.WARNING,
    }.get(value)
    return Cell(value, paint) if paint is not None else Cell(value, str)


def when(value: datetime | None) -> str:
    """A datetime in ISO 8601, in the current time zone, to the second."""
    if value is None:
        return "-"
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.isoformat(timespec="seconds")


def shorten(text: str, width: int = VALUE_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def value(data: Any, width: int = VALUE_WIDTH) -> str:
    """A decoded value as one line of JSON, cut at ``width``."""
    return shorten(dumps(data, indent=None), width)


def error(data: dict[str, Any] | None, width: int = VALUE_WIDTH) -> str:
    """A stored error as ``Type: message``, the type without its module."""
    if not data:
        return "-"
    kind = str(data.get("type", "?")).rsplit(".", 1)[-1]
    return shorten("%s: %s" % (kind, data.get("message", "")), width)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str | Cell]],
    style: Style,
    *,
    right: Iterable[int] = (),
) -> list[str]:
    """Lines of a table whose columns are as wide as their widest cell; the columns in
    ``right`` (numbers) are aligned right."""
    cells = [[c if isinstance(c, Cell) else Cell(c, str) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell.text))
    right = set(right)

    def line(row: Sequence[Cell]) -> str:
        parts = []
        for i, cell in enumerate(row):
            last = i == len(row) - 1
            if i in right:
                text = cell.text.rjust(widths[i])
            else:
                text = cell.text if last else cell.text.ljust(widths[i])
            parts.append(cell.paint(text))
        return "  ".join(parts)

    heading = line([Cell(h, style.MIGRATE_LABEL) for h in headers])
    return [heading, *(line(row) for row in cells)]


def fields(pairs: Sequence[tuple[str, str | Cell]], style: Style) -> list[str]:
    """``Label  value`` lines, the values aligned."""
    width = max(len(label) for label, _ in pairs)
    lines = []
    for label, cell in pairs:
        text = cell.paint(cell.text) if isinstance(cell, Cell) else cell
        lines.append("%s  %s" % (style.MIGRATE_LABEL(label.ljust(width)), text))
    return lines


def heading(style: Style, title: str) -> str:
    return style.MIGRATE_HEADING(title)


# -- screens ---------------------------------------------------------------------------


def summary(record: dict[str, Any], style: Style) -> list[str]:
    """The execution in a few lines: what ``wait`` and ``start --wait`` print."""
    pairs: list[tuple[str, str | Cell]] = [
        ("Execution", record["id"]),
        ("Workflow", record["workflow"]),
        ("Status", status(style, record["status"])),
        ("Run", str(record["run_index"])),
        ("Finished", when(record["finished_at"])),
    ]
    if record["status"] == "COMPLETED":
        pairs.append(("Output", value(record["output"], 200)))
    elif record["error"]:
        pairs.append(("Error", error(record["error"], 200)))
    return fields(pairs, style)


def detail(record: dict[str, Any], style: Style) -> list[str]:
    """The execution, its runs, and its steps with their attempts: ``status``."""
    pairs: list[tuple[str, str | Cell]] = [
        ("Execution", record["id"]),
        ("Workflow", record["workflow"]),
        ("Queue", record["queue"]),
        ("Status", status(style, record["status"])),
        ("Run", str(record["run_index"])),
        ("Parent", record["parent_id"] or "-"),
        ("Created", when(record["created_at"])),
        ("Started", when(record["started_at"])),
        ("Finished", when(record["finished_at"])),
        ("Deadline", when(record["deadline_at"])),
        ("Input", value(record["input"], 200)),
        ("Output", value(record["output"], 200) if record["status"] == "COMPLETED" else "-"),
        ("Error", error(record["error"], 200)),
    ]
    lines = fields(pairs, style)
    lines += ["", heading(style, "Runs")]
    lines += table(
        ["RUN", "REASON", "BY", "STATUS", "CREATED", "FINISHED", "ERROR"],
        (
            [
                str(run["index"]),
                run["reason"],
                run["triggered_by"] or "-",
                status(style, run["status"]),
                when(run["created_at"]),
                when(run["finished_at"]),
                error(run["error"]),
            ]
            for run in record["runs"]
        ),
        style,
        right=[0],
    )
    lines += ["", heading(style, "Steps")]
    if not record["steps"]:
        return [*lines, "No steps yet."]
    return lines + table(
        ["RUN", "#", "STEP", "KIND", "STATUS", "ATTEMPTS", "UPDATED", "RESULT OR ERROR"],
        _step_rows(record["steps"], style),
        style,
        right=[0, 1, 5],
    )


def _step_rows(steps: list[dict[str, Any]], style: Style) -> Iterable[list[str | Cell]]:
    for step in steps:
        outcome = error(step["error"]) if step["error"] else value(step["result"])
        yield [
            str(step["run_index"]),
            str(step["sequence"]),
            shorten(step["position"], 40),
            step["kind"],
            status(style, step["status"]),
            str(step["attempts"]),
            when(step["updated_at"]),
            outcome,
        ]
        for attempt in step["attempt_history"]:
            yield [
                "",
                "",
                "  attempt %d" % attempt["number"],
                "",
                status(style, attempt["status"]),
                "",
                when(attempt["finished_at"]),
                error(attempt["error"]) if attempt["error"] else "",
            ]


def execution_list(records: list[dict[str, Any]], style: Style) -> list[str]:
    return table(
        ["ID", "WORKFLOW", "STATUS", "QUEUE", "RUN", "CREATED", "FINISHED"],
        (
            [
                r["id"],
                r["workflow"],
                status(style, r["status"]),
                r["queue"],
                str(r["run_index"]),
                when(r["created_at"]),
                when(r["finished_at"]),
            ]
            for r in records
        ),
        style,
        right=[4],
    )


def rule_scope(rule: dict[str, Any]) -> str:
    """What a pause rule holds, e.g. ``workflow=checkout step=charge-*``."""
    parts = [
        "%s=%s" % (key, rule[name])
        for key, name in (("execution", "execution_id"), ("workflow", "workflow"), ("step", "step"))
        if rule[name]
    ]
    return " ".join(parts) or "-"


def pause_rules(records: list[dict[str, Any]], style: Style, *, ended: bool) -> list[str]:
    """The rules; with ``ended``, also when and why each ended."""
    headers = ["ID", "HOLDS", "REASON", "BY", "CREATED", "EXPIRES"]
    if ended:
        headers += ["ENDED", "HOW"]
    rows = []
    for rule in records:
        row: list[str | Cell] = [
            str(rule["id"]),
            rule_scope(rule),
            shorten(rule["reason"], 40) or "-",
            rule["created_by"] or "-",
            when(rule["created_at"]),
            when(rule["expires_at"]),
        ]
        if ended:
            how = rule["end_reason"] or "-"
            if rule["ended_by"]:
                how = "%s by %s" % (how, rule["ended_by"])
            row += [when(rule["ended_at"]), how]
        rows.append(row)
    return table(headers, rows, style, right=[0])


def stats(data: dict[str, Any], style: Style) -> list[str]:
    """``zart.stats()``: executions by status and by workflow, queues, workers, rules."""
    executions = data["executions"]
    by_status = executions["by_status"]
    lines = [heading(style, "Executions: %d" % executions["total"])]
    lines += table(
        ["STATUS", "COUNT"],
        ([status(style, name), str(count)] for name, count in by_status.items()),
        style,
        right=[1],
    )
    if executions["by_workflow"]:
        names = list(by_status)
        lines += ["", heading(style, "By workflow")]
        lines += table(
            ["WORKFLOW", *names],
            (
                [workflow, *(str(counts.get(name, 0)) for name in names)]
                for workflow, counts in sorted(executions["by_workflow"].items())
            ),
            style,
            right=range(1, len(names) + 1),
        )
    lines += ["", heading(style, "Queues")]
    if data["queues"]:
        lines += table(
            ["QUEUE", "DUE", "RUNNING", "WAITING", "PAUSED", "OLDEST DUE"],
            (
                [
                    queue,
                    str(q["due"]),
                    str(q["running"]),
                    str(q["waiting"]),
                    str(q["paused"]),
                    "-" if q["oldest_due_age"] is None else "%.0fs" % q["oldest_due_age"],
                ]
                for queue, q in sorted(data["queues"].items())
            ),
            style,
            right=range(1, 6),
        )
    else:
        lines.append("No queued work.")
    lines += [
        "",
        *fields(
            [
                ("Steps completed", str(data["steps"]["completed"])),
                (
                    "Workers",
                    "%d alive, %d dead" % (data["workers"]["alive"], data["workers"]["dead"]),
                ),
                ("Pause rules", "%d active" % data["pause_rules"]["active"]),
            ],
            style,
        ),
    ]
    return lines
