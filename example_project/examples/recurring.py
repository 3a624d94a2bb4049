"""A recurring workflow: a schedule starts one execution per tick, exactly once however
many workers run; the example lets it tick three times, then removes it."""

import time

import django_zart as zart

from .runner import Example

TICKS = 3


@zart.step("count-signups")
def count_signups(tick: str) -> str:
    return "%s: 0 new signups" % tick


@zart.workflow("signup-digest")
def signup_digest(data: dict) -> str:
    # The tick's time, recorded once: a replay of this execution sees the same one.
    now = zart.now("tick-time")
    return count_signups(now.strftime("%H:%M:%S"))


def run(example: Example) -> None:
    every = example.duration(5, 0.5)
    schedule = zart.schedule_recurring("signup-digest-example", "signup-digest", {}, every=every)
    example.say(
        "Scheduled %r every %g s (first tick at %s); waiting for %d ticks."
        % (schedule.name, every, schedule.next_tick_at.strftime("%H:%M:%S"), TICKS)
    )
    try:
        seen: list[str] = []
        deadline = time.monotonic() + every * TICKS + 30
        while len(seen) < TICKS and time.monotonic() < deadline:
            started = zart.executions(workflow="signup-digest").filter(
                pk__startswith=schedule.name, created_at__gte=schedule.created_at
            )
            new = [e for e in started.order_by("created_at") if e.pk not in seen]
            for execution in new[: TICKS - len(seen)]:
                seen.append(execution.pk)
                example.follow(execution.pk)
            time.sleep(0.05)
    finally:
        zart.unschedule(schedule.name)
        example.say("Removed the schedule %r." % schedule.name)
