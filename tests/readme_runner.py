"""Runs one README block (``python -m tests.readme_runner "<its first line>"``), in a
process of its own on ``tests.readme_settings``: see tests/test_readme.py."""

from __future__ import annotations

import sys
from typing import Any

import django

django.setup()

from django.core.management import call_command  # noqa: E402

import django_zart as zart  # noqa: E402
from django_zart import testing  # noqa: E402
from tests.test_readme import blocks  # noqa: E402


def step(name: str, result: Any = None) -> Any:
    """A stand-in step the README's prose leaves to the reader."""
    return zart.step("readme-" + name)(lambda *args, **kwargs: result)


STAND_INS: dict[str, Any] = {
    "zart": zart,
    "notify_manager": step("notify-manager"),
    "escalate": step("escalate"),
    "render_report": step("render-report", 12),
    "build_summary": step("build-summary", "summary.pdf"),
    "notify_accounting": step("notify-accounting", "sent"),
}


def run_block(first_line: str) -> dict[str, Any]:
    namespace = {"__name__": "readme_block", **STAND_INS}
    exec(compile(blocks()[first_line], "README.md", "exec"), namespace)  # noqa: S102
    return namespace


def expense_approval() -> None:
    run_block('@zart.workflow("expense-approval")')
    tests = run_block("# myapp/tests/test_workflows.py, with pytest-django")
    # The README's own tests, as pytest would call them; not test_charging_is_idempotent,
    # which needs a project's checkout workflow and Payment model.
    tests["test_an_approved_expense_is_paid"](None)
    tests["test_an_expense_nobody_decides_is_escalated"](None)


def events_from_anywhere() -> None:
    run_block('@zart.workflow("expense-approval")')
    driver = testing.start("expense-approval", {"id": 17}, execution_id="expense-17")
    driver.advance()
    run_block('zart.send_event("expense-17", "decision", {"approved": True, "by": "dana"})')
    assert driver.finish().output == "paid"


def monthly_reports() -> None:
    run_block('@zart.workflow("monthly-reports")')
    result = testing.run("monthly-reports", {"customer_ids": [1, 2, 3], "month": "2026-11"})
    assert result.output == {"reports": 3, "summary": "summary.pdf"}


def step_names() -> None:
    code = blocks()['@zart.step("process-report-{index}")  # a template over the step\'s arguments']
    definition, _, call = code.partition("\n\n\n")
    namespace = {"zart": zart, "__name__": "readme_block"}
    exec(definition, namespace)  # noqa: S102
    template = namespace["process_report"]
    assert template.position_name(None, (7, {}), {}) == ("process-report-7", True)
    namespace.update(notify=step("notify"), user=type("User", (), {"pk": 5, "email": "e"}))

    @zart.workflow("readme-step-names")
    def named(data: None) -> None:
        exec(call, namespace)  # noqa: S102

    result = testing.run("readme-step-names")
    assert result.status == "COMPLETED"
    assert result.execution.steps.filter(position="notify-5").exists()


def children() -> None:
    namespace = run_block('@zart.workflow("order")')
    assert "order" in namespace["order"].name
    zart.workflow("invoice")(lambda data: "INV-%s" % data["order"])
    zart.workflow("analytics")(lambda data: None)
    result = testing.run("order", {"id": 9})
    assert result.output == {"invoice": "INV-9"}


def recurring() -> None:
    zart.workflow("purge-sessions")(lambda data: data["days"])
    run_block("@zart.workflow(")
    from django_zart.models import Schedule

    assert not Schedule.objects.filter(name="cleanup").exists()  # unscheduled at the end


def limits() -> None:
    run_block(
        '@zart.workflow("sync-account", concurrency=1, concurrency_key=lambda data: '
        'data["user_id"])'
    )
    assert testing.run("sync-account", {"user_id": 7}).status == "COMPLETED"
    assert testing.run("render-video", {}).status == "COMPLETED"


RUNNERS = {
    '@zart.workflow("expense-approval")': expense_approval,
    'zart.send_event("expense-17", "decision", {"approved": True, "by": "dana"})': (
        events_from_anywhere
    ),
    "# myapp/tests/test_workflows.py, with pytest-django": expense_approval,
    '@zart.workflow("monthly-reports")': monthly_reports,
    '@zart.step("process-report-{index}")  # a template over the step\'s arguments': step_names,
    '@zart.workflow("order")': children,
    "@zart.workflow(": recurring,
    '@zart.workflow("sync-account", concurrency=1, concurrency_key=lambda data: '
    'data["user_id"])': limits,
}


if __name__ == "__main__":
    call_command("migrate", verbosity=0)
    RUNNERS[sys.argv[1]]()
    print("ran")
