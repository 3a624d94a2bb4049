"""The timeline of an execution's current run: one bar per step on a time axis.

Rendered on the server as HTML and CSS (``page.css``), every stored value escaped. Bars
are coloured by the step's status; retries are segments of their step's bar; sleeps and
event waits are hatched; the branches of a ``wait_all`` are stacked under it; a child
workflow links to its execution. Each bar links to an anchored block below it that
holds the step's result, error and attempts.

A step's start is not stored, so it is derived (see ``step_start``); its end is its
``updated_at``, or now while it is still unfinished.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from ..models import Execution, Run, Step, StepAttempt
from ..states import AttemptStatus, StepKind, StepStatus
from .display import ROW_LIMIT, error_html, json_html

BAR_LIMIT = 500
"""Bars drawn at most; a run with more steps says that only the first ones are drawn."""

UNFINISHED = frozenset({StepStatus.RETRYING, StepStatus.SCHEDULED, StepStatus.WAITING})
HATCHED = frozenset({StepKind.SLEEP, StepKind.EVENT})

ATTEMPTS = "zart_attempts"


def attempts_of(step: Step) -> list[StepAttempt]:
    """The attempts ``load`` fetched for ``step``, by number."""
    attempts: list[StepAttempt] = getattr(step, ATTEMPTS, [])
    return attempts


@dataclass
class Segment:
    start: datetime
    end: datetime
    css: str
    title: str


@dataclass
class Bar:
    step: Step
    start: datetime
    end: datetime
    segments: list[Segment] = field(default_factory=list)
    branches: list[Bar] = field(default_factory=list)


@dataclass
class Timeline:
    run: Run | None
    bars: list[Bar]
    steps: list[Step]
    start: datetime
    end: datetime
    more: bool
    """More steps than ``BAR_LIMIT``: the rest are left out."""
    replayed: list[Step] = field(default_factory=list)
    """Completed steps of earlier runs the current run replays instead of running them
    (known only when the page hands the timeline every step of the execution)."""


def load(
    execution: Execution,
    *,
    now: datetime | None = None,
    steps: Sequence[Step] | None = None,
    runs: Sequence[Run] | None = None,
) -> Timeline:
    """The current run's steps and their attempts.

    ``steps`` and ``runs`` are rows the page has already read (its inlines read every step
    and run of the execution); without them they are read here. Either way the timeline
    costs at most two queries, whatever the number of steps, and none of its own when the
    rows are given and no step needed a second attempt.
    """
    now = now or timezone.now()
    if steps is None:
        current = list(
            Step.objects.filter(execution=execution, run_index=execution.run_index).order_by(
                "sequence"
            )[: BAR_LIMIT + 1]
        )
    else:
        current = sorted(
            (s for s in steps if s.run_index == execution.run_index), key=lambda s: s.sequence
        )
    if runs is None:
        run = Run.objects.filter(execution=execution, index=execution.run_index).first()
    else:
        run = next((r for r in runs if r.index == execution.run_index), None)
    more = len(current) > BAR_LIMIT
    current = current[:BAR_LIMIT]
    attach_attempts(current)
    origin = run.created_at if run else (execution.started_at or execution.created_at)
    if current:
        origin = min(origin, *(s.created_at for s in current))
    bars = build_bars(current, origin=origin, now=now, running=not execution.is_finished)
    flat = [*bars, *(branch for bar in bars for branch in bar.branches)]
    end = max([origin, *(bar.end for bar in flat)])
    if not execution.is_finished:
        end = max(end, now)
    elif execution.finished_at:
        end = max(end, execution.finished_at)
    return Timeline(
        run=run,
        bars=bars,
        steps=current,
        start=origin,
        end=end,
        more=more,
        replayed=replayed(execution, steps, current) if steps is not None else [],
    )


def replayed(execution: Execution, steps: Sequence[Step], current: Sequence[Step]) -> list[Step]:
    """The completed steps of runs from ``replay_base`` on that the current run has no row
    of: it replays their checkpoints (the latest run's, position by position)."""
    own = {s.position for s in current}
    latest: dict[str, Step] = {}
    for step in steps:
        if (
            execution.replay_base <= step.run_index < execution.run_index
            and step.status == StepStatus.COMPLETED
            and step.position not in own
        ):
            kept = latest.get(step.position)
            if kept is None or kept.run_index < step.run_index:
                latest[step.position] = step
    return sorted(latest.values(), key=lambda s: (s.run_index, s.sequence))


def attach_attempts(steps: Sequence[Step]) -> None:
    """Fetch the attempts of ``steps`` in one query, onto each step (``attempts_of``).

    Only a step that needed more than one attempt, or is waiting to retry its first, has
    attempt rows; when no step is such, nothing is asked of the database.
    """
    wanted = [s.pk for s in steps if s.attempts > 1 or s.status == StepStatus.RETRYING]
    by_step: dict[int, list[StepAttempt]] = defaultdict(list)
    if wanted:
        for attempt in StepAttempt.objects.filter(step_id__in=wanted).order_by("number"):
            by_step[attempt.step_id].append(attempt)
    for step in steps:
        setattr(step, ATTEMPTS, by_step.get(step.pk, []))


def step_start(step: Step, previous_end: datetime) -> datetime:
    """When ``step`` began, derived: no row stores it.

    A sleep, an event wait, a branch, a ``wait_all`` and a child are written when they
    begin, so their ``created_at`` is their start. A plain step is written once it has an
    outcome, so it is taken to begin where the step before it in the run ended (the run's
    start for the first), and no later than its first attempt's end.
    """
    if step.kind != StepKind.STEP:
        return step.created_at
    start = min(previous_end, step.created_at)
    attempts = attempts_of(step)
    if attempts:
        start = min(start, attempts[0].finished_at)
    return start


def step_end(step: Step, *, now: datetime, running: bool) -> datetime:
    if step.status in UNFINISHED and running:
        return max(now, step.updated_at)
    return step.updated_at


def build_bars(
    steps: Sequence[Step], *, origin: datetime, now: datetime, running: bool
) -> list[Bar]:
    """Bars in sequence order, the branches of a ``wait_all`` moved under it."""
    previous_end = origin
    by_position: dict[str, Bar] = {}
    bars: list[Bar] = []
    for step in steps:
        start = step_start(step, previous_end)
        end = max(start, step_end(step, now=now, running=running))
        bar = Bar(step=step, start=start, end=end, segments=segments(step, start, end))
        by_position[step.position] = bar
        bars.append(bar)
        if step.kind != StepKind.BRANCH:
            previous_end = max(previous_end, end)
    stacked: set[int] = set()
    for bar in bars:
        if bar.step.kind != StepKind.GROUP or not isinstance(bar.step.result, dict):
            continue
        for position in bar.step.result.get("positions") or ():
            branch = by_position.get(position) if isinstance(position, str) else None
            if branch is not None and branch.step.kind == StepKind.BRANCH:
                bar.branches.append(branch)
                stacked.add(id(branch))
    return [bar for bar in bars if id(bar) not in stacked]


def segments(step: Step, start: datetime, end: datetime) -> list[Segment]:
    """A step's retries: one segment per recorded attempt, then the back-off or the last
    try. A step that needed a single attempt has no attempt rows and one plain bar."""
    attempts = attempts_of(step)
    if not attempts:
        return []
    parts: list[Segment] = []
    begin = start
    for attempt in attempts:
        finish = max(begin, attempt.finished_at)
        failed = attempt.status == AttemptStatus.FAILED
        title = _("attempt %(number)d %(status)s at %(at)s") % {
            "number": attempt.number,
            "status": attempt.get_status_display(),
            "at": clock(attempt.finished_at),
        }
        parts.append(Segment(begin, finish, "zt-failed" if failed else "zt-completed", title))
        begin = finish
    if step.status == StepStatus.RETRYING:
        title = _("back-off, next try at %s") % clock(step.wake_at) if step.wake_at else ""
        parts.append(Segment(begin, max(begin, end), "zt-backoff", title))
    elif end > begin and attempts[-1].status == AttemptStatus.FAILED:
        parts.append(Segment(begin, end, "zt-%s" % step.status.lower(), _("last attempt")))
    return parts


def local(moment: datetime) -> datetime:
    """``moment`` in the current time zone (as stored, when ``USE_TZ`` is off)."""
    return timezone.localtime(moment) if timezone.is_aware(moment) else moment


def clock(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return local(moment).strftime("%H:%M:%S")


def duration(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 1:
        return "%d ms" % (seconds * 1000)
    if seconds < 120:
        return "%.1f s" % seconds
    if seconds < 7200:
        return "%d min %d s" % divmod(int(seconds), 60)
    return "%d h %d min" % (seconds // 3600, seconds % 3600 // 60)


def percent(moment: datetime, timeline: Timeline) -> float:
    span = (timeline.end - timeline.start).total_seconds() or 1.0
    return max(0.0, min(100.0, (moment - timeline.start).total_seconds() / span * 100))


def child_link(step: Step, site_name: str) -> str:
    """A link to the execution a CHILD step started (its result holds the child's id)."""
    if step.kind != StepKind.CHILD or not isinstance(step.result, dict):
        return ""
    child_id = step.result.get("id")
    if not isinstance(child_id, str) or not child_id:
        return ""
    url = reverse(site_name + ":django_zart_execution_change", args=(quote(child_id),))
    return format_html(
        ' <a class="zt-child" href="{}" title="{}">→ {}</a>', url, _("child execution"), child_id
    )


def bar_html(bar: Bar, timeline: Timeline, site_name: str, *, branch: bool = False) -> str:
    step = bar.step
    left = percent(bar.start, timeline)
    width = max(0.0, percent(bar.end, timeline) - left)
    classes = ["zt-bar", "zt-%s" % step.status.lower(), "zt-kind-%s" % step.kind.lower()]
    if step.kind in HATCHED:
        classes.append("zt-hatched")
    span = (bar.end - bar.start).total_seconds()
    parts = format_html_join(
        "",
        '<span class="zt-seg {}" style="width:{}%" title="{}"></span>',
        (
            (
                seg.css,
                "%.3f"
                % (
                    (seg.end - seg.start).total_seconds() / span * 100
                    if span
                    else 100 / len(bar.segments)
                ),
                seg.title,
            )
            for seg in bar.segments
        ),
    )
    title = "%s · %s · %s · %s → %s (%s)" % (
        step.position,
        step.get_kind_display(),
        step.get_status_display(),
        clock(bar.start),
        clock(bar.end),
        duration(bar.end - bar.start),
    )
    if step.wake_at and step.status in UNFINISHED:
        title += " · " + _("until %s") % clock(step.wake_at)
    row = format_html(
        '<div class="zt-row{}">'
        '<div class="zt-label"><a href="#step-{}">{}</a> <span class="zt-kind">{}</span>{}</div>'
        '<div class="zt-track"><a class="{}" href="#step-{}" style="left:{}%;width:{}%" '
        'title="{}">{}</a></div></div>',
        " zt-branch" if branch else "",
        step.pk,
        step.position,
        step.get_kind_display(),
        child_link(step, site_name),
        " ".join(classes),
        step.pk,
        "%.3f" % left,
        "%.3f" % width,
        title,
        parts,
    )
    if bar.branches:
        stack = format_html_join(
            "",
            "{}",
            ((bar_html(b, timeline, site_name, branch=True),) for b in bar.branches),
        )
        row = format_html('{}<div class="zt-stack">{}</div>', row, stack)
    return row


def axis_html(timeline: Timeline) -> str:
    """The run's start as a clock time, then offsets from it: they read the same for a
    run of 200 ms and one of two days."""
    span = timeline.end - timeline.start
    labels = [clock(timeline.start)] + ["+" + duration(span * i / 4) for i in range(1, 5)]
    ticks = format_html_join(
        "",
        '<span class="zt-tick" style="left:{}%">{}</span>',
        (("%d" % (i * 25), label) for i, label in enumerate(labels)),
    )
    return format_html(
        '<div class="zt-row zt-axis-row"><div class="zt-label">{}</div>'
        '<div class="zt-track zt-axis">{}</div></div>',
        duration(span),
        ticks,
    )


def legend_html() -> str:
    items = [
        ("zt-completed", _("completed")),
        ("zt-failed", _("failed")),
        ("zt-retrying", _("retrying")),
        ("zt-backoff", _("back-off")),
        ("zt-waiting zt-hatched", _("sleep or event wait")),
        ("zt-scheduled", _("scheduled")),
    ]
    return format_html(
        '<p class="zt-legend">{}</p>',
        format_html_join(
            " ", '<span class="zt-swatch {}"></span> {}', ((css, label) for css, label in items)
        ),
    )


REPLAYED_SHOWN = 50
"""Replayed steps named at most, the rest counted."""


def replayed_html(timeline: Timeline, site_name: str) -> str:
    if not timeline.replayed:
        return ""
    links = format_html_join(
        ", ",
        '<a href="{}">{}</a> ({})',
        (
            (
                reverse(site_name + ":django_zart_step_change", args=(step.pk,)),
                step.position,
                _("run %d") % step.run_index,
            )
            for step in timeline.replayed[:REPLAYED_SHOWN]
        ),
    )
    rest = len(timeline.replayed) - REPLAYED_SHOWN
    return format_html(
        '<p class="zt-replayed">{} {}{}</p>',
        _("Replayed from earlier runs, not run again:"),
        links,
        format_html(" {}", ngettext("and %d more", "and %d more", rest) % rest) if rest > 0 else "",
    )


def timeline_html(timeline: Timeline, site_name: str) -> SafeString:
    """The bars, the axis and the legend, and the steps replayed from earlier runs."""
    replayed = replayed_html(timeline, site_name)
    if not timeline.bars:
        return format_html('<p class="zt-empty">{}</p>{}', _("No steps in this run yet."), replayed)
    rows = format_html_join(
        "", "{}", ((bar_html(bar, timeline, site_name),) for bar in timeline.bars)
    )
    note = ""
    if timeline.more:
        note = format_html(
            '<p class="zt-note">{}</p>',
            _("More than %d steps: only the first %d are drawn.") % (BAR_LIMIT, BAR_LIMIT),
        )
    return format_html(
        '{}<div class="zt-timeline">{}{}</div>{}{}',
        replayed,
        axis_html(timeline),
        rows,
        note,
        legend_html(),
    )


def attempts_html(step: Step, empty: str) -> str:
    attempts = attempts_of(step)
    if not attempts:
        return ""
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                a.number,
                a.get_status_display(),
                local(a.finished_at).strftime("%Y-%m-%d %H:%M:%S"),
                error_html(a.error, limit=ROW_LIMIT, empty=empty, collapsible=True, expanded=False),
            )
            for a in attempts
        ),
    )
    return format_html(
        '<table class="zt-attempts"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>'
        "</tr></thead><tbody>{}</tbody></table>",
        _("attempt"),
        _("status"),
        _("finished"),
        _("error"),
        rows,
    )


def details_html(timeline: Timeline, site_name: str, empty: str) -> SafeString:
    """One folded block per step, the target of its bar: result, error and attempts."""
    blocks = []
    for step in timeline.steps:
        url = reverse(site_name + ":django_zart_step_change", args=(step.pk,))
        attempts = ngettext("%d attempt", "%d attempts", step.attempts) % step.attempts
        blocks.append(
            format_html(
                '<details class="zt-step" id="step-{}"><summary>'
                '<span class="zt-swatch zt-{}"></span> <strong>{}</strong> · {} · {} · {}'
                "{}</summary>"
                '<div class="zt-step-body"><p><a href="{}">{}</a>{}</p>{}{}{}</div></details>',
                step.pk,
                step.status.lower(),
                step.position,
                step.get_kind_display(),
                step.get_status_display(),
                attempts,
                child_link(step, site_name),
                url,
                _("step page"),
                format_html(" · {} {}", _("wakes at"), clock(step.wake_at)) if step.wake_at else "",
                json_html(step.result, limit=ROW_LIMIT, empty="", collapsible=True),
                error_html(step.error, limit=ROW_LIMIT, empty="", collapsible=True),
                attempts_html(step, empty),
            )
        )
    return mark_safe("".join(blocks))  # noqa: S308  # each block is built by format_html


def context(
    execution: Execution,
    site_name: str,
    empty: str,
    *,
    steps: Sequence[Step] | None = None,
    runs: Sequence[Run] | None = None,
) -> dict[str, Any]:
    """What the page's template shows of the timeline."""
    timeline = load(execution, steps=steps, runs=runs)
    return {
        "timeline": timeline,
        "timeline_html": timeline_html(timeline, site_name),
        "step_details_html": details_html(timeline, site_name, empty),
    }
