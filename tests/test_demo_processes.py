"""The demo (``manage.py demo``, the README's first command) as a user runs it: the
example project, a worker process of its own that it kills and replaces half-way, the
admin with ``--keep-running``, Ctrl-C; and afterwards, no process of it left.

Each run is marked with an environment variable of its own, inherited by every process it
starts, so that a process left behind is found by its environment.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from .conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
MARK = "ZART_DEMO_TEST_RUN"

Demo = Callable[..., subprocess.Popen[str]]


def _left_behind(mark: str) -> list[int]:
    """Pids of the processes whose environment carries ``mark``."""
    found = []
    needle = ("%s=%s" % (MARK, mark)).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _ignored_sigint_reset() -> None:
    # A shell runs background jobs with SIGINT ignored, which Python would keep: the demo
    # must see Ctrl-C as a terminal sends it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The database the demo runs on: this run's PostgreSQL test database, or on SQLite,
    a file of its own, migrated as ``scripts/demo`` does."""
    if connection.vendor == "postgresql":
        settings = connection.settings_dict
        return "postgres://%s@%s:%s/%s" % (
            settings["USER"] or "postgres",
            settings["HOST"] or "127.0.0.1",
            settings["PORT"] or 5432,
            settings["NAME"],
        )
    url = "sqlite:///%s" % (tmp_path / "db.sqlite3")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="example_project.settings", DATABASE_URL=url)
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"],
        env=env,
        check=True,
        timeout=120,
    )
    return url


@pytest.fixture
def demo(database_url: str, tmp_path: Path) -> Iterator[Demo]:
    """Start ``manage.py demo``; afterwards, no process it started may be left."""
    marks: list[str] = []
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="example_project.settings",
        DATABASE_URL=database_url,
        PYTHONUNBUFFERED="1",
    )
    env.pop("ZART_TEST_DATABASE_NAME", None)

    def start(*args: str) -> subprocess.Popen[str]:
        mark = uuid.uuid4().hex
        marks.append(mark)
        return subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "demo", *args],
            env={**env, MARK: mark},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_ignored_sigint_reset,
        )

    yield start
    for mark in marks:
        stray = _left_behind(mark)
        for pid in stray:
            os.kill(pid, signal.SIGKILL)
        assert not stray, "the demo left processes behind"


def _finished(process: subprocess.Popen[str], timeout: float = 60) -> str:
    out = process.communicate(timeout=timeout)[0]
    assert process.returncode == 0, out
    assert "Traceback" not in out, out
    return out


def _read_until(process: subprocess.Popen[str], text: str, timeout: float = 60) -> str:
    assert process.stdout is not None
    out = ""
    deadline = time.monotonic() + timeout
    while text not in out:
        line = process.stdout.readline()
        assert line and time.monotonic() < deadline, out
        out += line
    return out


def _check_the_run(out: str) -> None:
    assert "Started 31 executions" in out
    assert "All 40 executions finished in" in out
    assert "Executions: completed 39, failed 1" in out
    for workflow, total in [("onboarding", 6), ("expense-request", 6), ("send-itinerary", 3)]:
        assert re.search(r"%s +\S+ +%d/%d" % (workflow, total, total), out), workflow
    # What happened, in plain words.
    assert re.search(r"step charge-card failed \(attempt 1, ConnectionError: .*\), retrying", out)
    assert re.search(r"the demo sent expense-\w+-1 the event 'decision'", out)
    assert "no event 'decision' came in time" in out
    assert "sleeping (wait-for-courier)" in out
    assert "all branches done" in out
    assert re.search(r"started: workflow 'book-hotel', a child of trip-", out)
    # The worker killed mid-work, and its executions taken over.
    killed = re.search(r"killed the worker \(pid \d+\) with SIGKILL, .* while it ran (\d+)", out)
    assert killed, out
    assert len(re.findall(r"taken over by the new worker", out)) == int(killed.group(1))
    # The outputs, and how to go on.
    assert re.search(r"onboarding +signup-\w+-1 -> \{\"customer\": \"cus_", out)
    assert re.search(r"shop-order +order-\w+-4 failed: .*NoCourier: no courier", out)
    assert "http://127.0.0.1:8000/admin/django_zart/execution/" in out
    assert "Stopped the worker (exit code 0)." in out


def test_the_demo(demo: Demo) -> None:
    out = _finished(demo("--fast"))
    _check_the_run(out)
    assert "Log in as demo, password demo (a superuser the demo made)." in out
    if connection.vendor == "sqlite":
        assert "SQLite (" in out
        assert "DATABASE_URL=postgres://" in out  # how to run it on PostgreSQL
    else:
        assert "on PostgreSQL (database %s" % connection.settings_dict["NAME"] in out
        assert "DATABASE_URL=postgres://" not in out

    again = _finished(demo("--fast", "--no-crash"))
    assert "All 40 executions finished in" in again
    assert "killed the worker" not in again
    assert "Log in as demo, password demo.\n" in again


def test_ctrl_c_mid_run_stops_the_worker(demo: Demo) -> None:
    process = demo()
    out = _read_until(process, "sleeping (wait-for-courier)")
    process.send_signal(signal.SIGINT)
    out += _finished(process, timeout=30)
    assert "Interrupted. What ran is checkpointed" in out
    assert "Stopped the worker (exit code 0)." in out
    assert "All 40 executions finished" not in out


def test_keep_running_serves_the_admin_until_ctrl_c(demo: Demo) -> None:
    port = free_port()
    process = demo("--fast", "--no-crash", "--keep-running", "--port", str(port))
    out = _read_until(process, "Ctrl-C stops both.")
    assert "http://127.0.0.1:%d/admin/" % port in out

    # The demo's user logs in, and the admin lists the demo's executions.
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = "http://127.0.0.1:%d/admin/" % port
    login = browser.open(base + "login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login)
    assert token
    form = {"username": "demo", "password": "demo", "csrfmiddlewaretoken": token.group(1)}
    browser.open(base + "login/?next=/admin/", urllib.parse.urlencode(form).encode(), timeout=10)
    listing = browser.open(base + "django_zart/execution/?q=expense", timeout=10).read().decode()
    executions = re.findall(r"expense-\w+-\d", out)
    assert executions and executions[0] in listing

    process.send_signal(signal.SIGINT)
    out += _finished(process, timeout=30)
    assert "Stopped runserver." in out
    assert "Stopped the worker (exit code 0)." in out
