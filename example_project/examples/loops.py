"""A batch of reports, one checkpoint per report (a step name template): kill the worker
half-way, and the next one goes on with the reports not yet rendered."""

import time

import django_zart as zart

from .runner import Example, new_id

CUSTOMERS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka"]


@zart.step("render-report-{index}")  # named by its argument: one checkpoint per report
def render_report(index: int, report: dict) -> str:
    time.sleep(report["seconds"])  # the slow part
    return "reports/%s-%s.pdf" % (report["month"], report["customer"])


@zart.workflow("monthly-reports-batch")
def monthly_reports_batch(data: dict) -> dict:
    files = [render_report(index, report) for index, report in enumerate(data["reports"])]
    return {"rendered": len(files), "first": files[0], "last": files[-1]}


def run(example: Example) -> None:
    seconds = example.duration(1.5, 0.02)
    reports = [{"customer": c, "month": "2026-11", "seconds": seconds} for c in CUSTOMERS]
    execution_id = zart.start(
        "monthly-reports-batch", {"reports": reports}, execution_id=new_id("batch")
    )
    example.say("Started %s: %d reports, %g s each." % (execution_id, len(reports), seconds))
    if example.worker is not None:
        example.say(
            "Kill the worker half-way from another terminal: kill -9 %d\n"
            "Another worker is then started: it skips the reports already rendered (after"
            " the dead worker's lease ends, 5 s) and renders the rest." % example.worker.pid
        )
    example.follow(execution_id)
