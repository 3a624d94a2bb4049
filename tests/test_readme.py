"""The README's Python blocks: every one parses, and those meant to run are run.

A block is run in a namespace of its own, with ``zart`` and the few names its prose
leaves to the reader (a mailer, a report renderer) given as small stand-ins, then its
workflows are driven to their end with ``zart.testing``. Blocks that are fragments of a
settings file or of another module say so in ``FRAGMENTS``; a new block must be one or
the other, so that no example in the README goes untested without a reason.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks() -> dict[str, str]:
    """The README's Python blocks by their first line."""
    text = README.read_text()
    found = {}
    for match in re.finditer(r"```python\n(.*?)```", text, re.S):
        code = match.group(1)
        found[code.splitlines()[0].strip()] = code
    return found


FRAGMENTS = {
    "# settings.py": "settings: needs a project around it",
    "# myapp/workflows.py — found in every installed app, like admin.py": (
        "run verbatim by tests/test_examples.py (example_project/examples/onboarding.py)"
    ),
    "# a view, a shell, a test": "run verbatim by tests/test_examples.py",
    "# urls.py": "a project's urls.py and settings",
    '@zart.step("credit-account", atomic=True, retry=zart.Retry.fixed(3, "1s"))': (
        "needs the project's models; atomic steps are tested by tests/test_atomic_steps.py"
    ),
    "from django.dispatch import receiver": "a module of an app (a relative import)",
    "ZART = {": "settings",
    "# myapp/tasks.py": "a project's tasks module; tests/test_tasks_backend.py runs its like",
    'result = email_users.enqueue(emails=["user@example.com"], subject="Hi", message="Hello")': (
        "uses the block above; tests/test_tasks_backend.py runs its like"
    ),
    "# the same with Django's test runner": "a TestCase class; the pytest block above runs",
    'DATABASES = {"default": {**db, "OPTIONS": {"prepare_threshold": 5}}}': "settings",
    "DATABASES = {": "settings",
    'DATABASES["default"]["OPTIONS"] = {': "settings",
    "def refund_order(data: dict, error: dict) -> None:": (
        "a handler sketch (checkout's body is elided); tests/test_engine.py runs on_failure"
    ),
}


def test_every_block_parses_and_is_run_or_says_why() -> None:
    found = blocks()
    for code in found.values():
        ast.parse(code, filename="README.md")
    run = {first_line for first_line in found if first_line not in FRAGMENTS}
    assert run == set(RUNNABLE), "a README block neither run nor listed in FRAGMENTS"
    assert set(FRAGMENTS) <= set(found), "FRAGMENTS names a block the README no longer has"


RUNNABLE = [
    '@zart.workflow("expense-approval")',
    'zart.send_event("expense-17", "decision", {"approved": True, "by": "dana"})',
    "# myapp/tests/test_workflows.py, with pytest-django",
    '@zart.workflow("monthly-reports")',
    '@zart.step("process-report-{index}")  # a template over the step\'s arguments',
    '@zart.workflow("order")',
    "@zart.workflow(",
    '@zart.workflow("sync-account", concurrency=1, concurrency_key=lambda data: data["user_id"])',
]


@pytest.mark.parametrize("first_line", RUNNABLE)
def test_a_readme_block_runs(first_line: str, tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "tests.readme_settings",
        "ZART_README_DATABASE": str(tmp_path / "readme.sqlite3"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.readme_runner", first_line],
        cwd=README.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ran"), done.stderr[-4000:]
