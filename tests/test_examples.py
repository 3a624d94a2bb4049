"""The runnable examples of ``example_project/examples/``, end to end, offline and fast.

Each runs through ``manage.py zart_example <name> --no-worker --fast`` with a real worker
on threads of this process, on the test database.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from django_zart.worker import Worker, WorkerOptions
from example_project.examples.catalog import NAMES
from example_project.examples.management.commands.zart_example import Command

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def example(isolated_registry: None) -> Iterator[Callable[..., str]]:
    """Run an example against a worker on threads of this process; its output."""
    worker = Worker(WorkerOptions.from_settings(concurrency=4))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()

    def run(name: str, *args: str) -> str:
        # Imported afresh, so that its workflows register in this test's registry.
        sys.modules.pop("example_project.examples.%s" % name, None)
        out = StringIO()
        call_command(Command(), name, "--no-worker", "--fast", *args, stdout=out)
        return out.getvalue()

    yield run
    worker.request_stop()
    thread.join(30)
    assert not thread.is_alive()


def test_onboarding(example: Callable[..., str]) -> None:
    out = example("onboarding")
    assert re.search(r"signup-user-\d+ +step send-email done", out)
    assert re.search(r"step setup-billing done -> \"cus_\w+\"", out)
    assert "wait_completion() returned {'customer': 'cus_" in out
    assert "It ran before" not in out
    again = example("onboarding")  # the same user: the same execution, not a second one
    assert "It ran before" in again


def test_onboarding_is_the_readme_example_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A complete example", 1)[1].split("\n## ", 1)[0]
    workflows, start = re.findall(r"```python\n(.*?)```", section, re.S)
    source = (ROOT / "example_project/examples/onboarding.py").read_text()
    assert workflows in source
    assert textwrap.indent(start, "    ") in source


def test_sleep(example: Callable[..., str]) -> None:
    out = example("sleep")
    assert "stop your worker" in out
    lines = [
        "step pack-parcel done",
        "sleeping (wait-for-courier)",
        "woke up from wait-for-courier",
        "step ship-parcel done",
        'completed -> {"packed": "parcel for order-17 packed"',
    ]
    positions = [out.index(line) for line in lines]
    assert positions == sorted(positions)


def test_parallel(example: Callable[..., str]) -> None:
    out = example("parallel")
    for branch in ("check-health ", "check-health#2", "check-health#3"):
        assert "branch %s done" % branch.strip() in out
    assert "all branches done" in out
    assert 'step summarize done -> "down: payments"' in out


def test_errors(example: Callable[..., str]) -> None:
    out = example("errors")
    assert "step apply-coupon failed for good after 1 attempt(s): CouponExpired" in out
    assert "step charge-card failed (attempt 1, ConnectionError: payment provider" in out
    assert "step charge-card done on attempt 2" in out
    assert '"discount": 0' in out
    assert "step book-courier failed for good after 1 attempt(s): NoCourier" in out
    assert "running its failure handler (on_failure)" in out
    assert 'step release-stock done -> "released 2 x teapot"' in out
    assert '(failure handler: "completed")' in out


def test_approval(example: Callable[..., str]) -> None:
    out = example("approval")
    assert "python manage.py zart send-event expense-" in out
    assert "Authorization: Bearer example-project-event-token" in out
    assert re.search(r"expense-\w+ +waiting for event 'decision', at most", out)
    # PostgreSQL's jsonb orders keys its own way: the tests do not depend on the order.
    assert re.search(r"received event 'decision': \{.*\"by\": \"dana\"", out)
    assert 'completed -> "120 EUR for a train ticket approved by dana"' in out
    assert "no event 'decision' came in time" in out
    assert 'completed -> "4000 EUR for a sofa rejected: no decision in time"' in out


def test_loops(example: Callable[..., str]) -> None:
    out = example("loops")
    steps = [out.index("step render-report-%d done" % i) for i in range(8)]
    assert steps == sorted(steps)
    assert '"rendered": 8' in out


def test_children(example: Callable[..., str]) -> None:
    out = example("children")
    assert "started: workflow 'book-flight', a child of trip-" in out
    assert '/run_workflow:book-hotel finished -> "room 203 in Lisbon, 3 nights"' in out
    assert "/start_workflow:send-itinerary, not waiting for it" in out
    assert 'step email-itinerary done -> "itinerary sent to ada@example.com"' in out
    assert re.search(r'trip-\w+ +completed -> \{.*"flight": "seat 14C to Lisbon"', out)


def test_recurring(example: Callable[..., str]) -> None:
    from django_zart.models import Schedule

    out = example("recurring")
    assert len(re.findall(r"signup-digest-example-\d{8}T\d{6}Z completed", out)) == 3
    assert "Removed the schedule 'signup-digest-example'." in out
    assert not Schedule.objects.exists()


def test_brewery(example: Callable[..., str]) -> None:
    out = example("brewery", "--offline")
    assert "step lookup-zip failed (attempt 1, HTTPError: HTTP Error 503" in out
    assert 'step lookup-zip done on attempt 2 -> {"city": "San Francisco"' in out
    assert "step find-breweries done" in out
    assert "  - 21st Amendment Brewery (brewpub), 563 2nd St\n" in out
    assert "  - Magnolia Brewing Co - Dogpatch (brewpub), 2505 3rd St\n" in out


def test_the_command_runs_its_own_worker_and_stops_it(tmp_path: Path) -> None:
    """The command as a user runs it: the example project, a worker process of its own,
    and Ctrl-C in the middle of a sleep. On a SQLite file of its own, whatever the test
    database, so that it never touches a shared one."""
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="example_project.settings",
        DATABASE_URL="sqlite:///%s" % (tmp_path / "db.sqlite3"),
    )
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, timeout=60)
    done = subprocess.run(
        [*manage, "zart_example", "parallel"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "all branches done" in done.stdout
    assert "Stopped the worker (exit code 0)." in done.stdout
    assert not _running(int(re.findall(r"Started a worker \(pid (\d+)\)", done.stdout)[0]))

    example = subprocess.Popen(
        [*manage, "zart_example", "sleep"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert example.stdout is not None
    out = ""
    while "sleeping (wait-for-courier)" not in out:
        line = example.stdout.readline()
        assert line, out
        out += line
    example.send_signal(signal.SIGINT)  # what Ctrl-C sends
    out += example.communicate(timeout=30)[0]
    assert example.returncode == 0, out
    assert "Interrupted." in out and "Traceback" not in out
    assert "Stopped the worker (exit code 0)." in out
    assert not _running(int(re.findall(r"Started a worker \(pid (\d+)\)", out)[0]))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_every_example_is_tested() -> None:
    tested = {name[len("test_") :] for name in globals() if name.startswith("test_")}
    assert set(NAMES) <= tested
