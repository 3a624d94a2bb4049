import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from django_zart.worker import Worker, WorkerOptions

ROOT = Path(__file__).resolve().parent.parent


def pytest_report_header() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    return "django-zart database: %s %s" % (db["ENGINE"].rsplit(".", 1)[-1], db.get("HOST") or "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (concurrent worker processes)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _no_stray_sessions(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """End sessions that threads of the async API left open, so the test database drops."""
    yield
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture
def run_worker() -> Callable[..., int]:
    """Run a real worker in this process until nothing is due (threads, real DB)."""

    def run(**options: object) -> int:
        opts = WorkerOptions.from_settings(burst=True, **options)
        return Worker(opts).run()

    return run


@pytest.fixture
def drain(run_worker: Callable[..., int]) -> Callable[..., None]:
    """Run burst workers until the given executions finish (retries may be delayed)."""
    from django_zart.models import Execution
    from django_zart.states import TERMINAL

    def go(*execution_ids: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run_worker()
            pending = Execution.objects.filter(pk__in=execution_ids).exclude(status__in=TERMINAL)
            if not pending.exists():
                return
            time.sleep(0.05)
        raise AssertionError("executions did not finish: %s" % list(pending.values("id", "status")))

    return go


class WorkerProcess:
    """A real ``runzartworker`` process on the test database."""

    def __init__(self, *args: str, modules: str = "") -> None:
        env = dict(os.environ, ZART_TEST_MODULES=modules)
        env["ZART_TEST_DATABASE_NAME"] = connection.settings_dict["NAME"]
        env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
        # A file, not a pipe: a worker logging one line per step would fill a pipe
        # nobody reads and block.
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by the fixture
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django", "runzartworker", *args],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()


@pytest.fixture
def worker_process() -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, modules: str = "") -> WorkerProcess:
        proc = WorkerProcess(*args, modules=modules)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.process.poll() is None:
            proc.kill()
        proc.log.close()
