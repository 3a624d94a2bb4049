import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection
from psycopg.rows import dict_row

from django_zart.worker import Worker, WorkerOptions

ROOT = Path(__file__).resolve().parent.parent
# Set in a worker's environment, it sends the worker's default database through PgBouncer
# on this port (see tests/settings.py).
PGBOUNCER_PORT_ENV = "ZART_TEST_PGBOUNCER_PORT"
# Set (as .ci/run does), a missing pgbouncer binary fails the PgBouncer tests instead of
# skipping them.
REQUIRE_PGBOUNCER_ENV = "ZART_TEST_REQUIRE_PGBOUNCER"
# Runs a process test's body twice: workers connected to PostgreSQL, and workers behind
# PgBouncer in transaction pooling mode (``-m "not pgbouncer"`` leaves the second out).
direct_and_pgbouncer = pytest.mark.parametrize(
    "via", ["direct", pytest.param("pgbouncer", marks=pytest.mark.pgbouncer)]
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pgbouncer: worker processes reach PostgreSQL through PgBouncer"
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures know whether the test failed."""
    report = yield
    setattr(item, "report_" + report.when, report)
    return report


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


class PgBouncer:
    """PgBouncer in transaction pooling mode in front of the test database's server."""

    USERS_FILE = "users.txt"

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        server = connection.settings_dict
        self.user: str = server.get("USER") or "postgres"
        self.server_host: str = server.get("HOST") or "127.0.0.1"
        self.server_port = int(server.get("PORT") or 5432)
        self._password: str = server.get("PASSWORD") or ""
        self.port = 0
        self.ini = workdir / "pgbouncer.ini"
        self.pidfile = workdir / "pgbouncer.pid"
        self.logfile = workdir / "pgbouncer.log"
        # PgBouncer refuses to run as root; it then drops to the server's usual owner.
        self.run_as: str | None = None
        if os.geteuid() == 0:
            self.run_as = "postgres" if has_user("postgres") else "nobody"

    def _config(self) -> str:
        return "\n".join(
            [
                "[databases]",
                "* = host=%s port=%d" % (self.server_host, self.server_port),
                "",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                "listen_port = %d" % self.port,
                "unix_socket_dir =",
                "pool_mode = transaction",
                # Clients are trusted; the file gives PgBouncer the password it logs in to
                # the server with (none on a trusting server).
                "auth_type = trust",
                "auth_file = %s" % (self.workdir / self.USERS_FILE),
                "admin_users = %s" % self.user,
                # Up to 4 workers of a main, a heartbeat and 4 runner threads each, plus
                # the admin console: more clients than server connections, as in production.
                "max_client_conn = 200",
                "default_pool_size = 20",
                "pidfile = %s" % self.pidfile,
                "logfile = %s" % self.logfile,
                "",
            ]
        )

    def start(self) -> None:
        users = '"%s" "%s"\n' % (self.user.replace('"', '""'), self._password.replace('"', '""'))
        (self.workdir / self.USERS_FILE).write_text(users)
        command = [self.binary, "-d"]
        if self.run_as is not None:
            owner = pwd.getpwnam(self.run_as)
            for path in (self.workdir, self.workdir / self.USERS_FILE):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            command += ["-u", self.run_as]
        for _ in range(3):  # another process may take the free port before PgBouncer does
            self.port = free_port()
            self.ini.write_text(self._config())
            done = subprocess.run(
                [*command, str(self.ini)], capture_output=True, text=True, timeout=30
            )
            if done.returncode == 0 and self._wait_until_up(10):
                return
            self.stop()
        raise RuntimeError("PgBouncer did not start: %s\n%s" % (done.stderr, self.log_tail()))

    def _wait_until_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.admin("SHOW VERSION")
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        try:
            pid = int(self.pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.05)
        except ProcessLookupError:
            pass

    def admin(self, command: str) -> list[dict[str, Any]]:
        """The rows of a ``SHOW`` command on PgBouncer's admin console."""
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            dbname="pgbouncer",
            user=self.user,
            autocommit=True,
            connect_timeout=2,
            row_factory=dict_row,
        ) as conn:
            return conn.execute(command).fetchall()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text().splitlines()[-lines:])
        except FileNotFoundError:
            return "(no PgBouncer log)"


def has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_pgbouncer() -> str | None:
    # Debian installs it in /usr/sbin, which a non-root PATH often lacks.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    return shutil.which("pgbouncer", path=path)


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[PgBouncer]:
    """One PgBouncer (transaction pooling) for the run, for the tests that put workers behind
    it: production deployments often do, and there a session lasts one transaction."""
    if connection.vendor != "postgresql":
        pytest.skip("PgBouncer needs PostgreSQL")
    binary = find_pgbouncer()
    if binary is None:
        reason = "pgbouncer is not installed (Debian: apt-get install pgbouncer)"
        if os.environ.get(REQUIRE_PGBOUNCER_ENV):
            pytest.fail("%s, and %s is set" % (reason, REQUIRE_PGBOUNCER_ENV))
        pytest.skip(reason)
    bouncer = PgBouncer(binary, Path(tempfile.mkdtemp(prefix="zart-pgbouncer-")))
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(bouncer.workdir, ignore_errors=True)


class WorkerProcess:
    """A real ``runzartworker`` process on the test database, direct or behind PgBouncer."""

    def __init__(
        self,
        *args: str,
        modules: str = "",
        pgbouncer: PgBouncer | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        env = dict(os.environ, ZART_TEST_MODULES=modules, **(env or {}))
        # SIGABRT (sent by ``terminate`` to a worker that will not stop) prints every
        # thread's stack into the log, so a hang explains itself.
        env["PYTHONFAULTHANDLER"] = "1"
        env["ZART_TEST_DATABASE_NAME"] = connection.settings_dict["NAME"]
        env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
        env.pop(PGBOUNCER_PORT_ENV, None)
        if pgbouncer is not None:
            env[PGBOUNCER_PORT_ENV] = str(pgbouncer.port)
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
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            self.process.wait(10)
            pytest.fail(
                "worker pid %d did not exit %ss after SIGTERM; its log and stacks:\n%s"
                % (self.pid, timeout, self.output()[-20000:])
            )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()


@pytest.fixture(autouse=True)
def _fresh_pause_rules() -> Iterator[None]:
    """Each test reads the pause rules of its own database, not the last test's."""
    from django_zart import pauses

    pauses.invalidate()
    yield
    pauses.invalidate()


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workflows, steps and name clashes registered by the test are forgotten after it."""
    from django_zart import registry, steps
    from django_zart.clashes import Clashes

    monkeypatch.setattr(registry, "_workflows", dict(registry._workflows))
    monkeypatch.setattr(registry, "clashes", Clashes("workflow"))
    monkeypatch.setattr(steps, "_steps", dict(steps._steps))
    monkeypatch.setattr(steps, "clashes", Clashes("step"))


@pytest.fixture
def via() -> str:
    """How worker processes reach PostgreSQL: directly, unless a test is parametrized over
    ``direct_and_pgbouncer`` to run its body behind PgBouncer too."""
    return "direct"


@pytest.fixture
def worker_process(
    request: pytest.FixtureRequest, via: str
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes (``via="pgbouncer"`` puts one behind PgBouncer; the
    default is the test's ``via``; ``env`` adds to its environment, e.g. the settings
    hooks of tests/settings.py), and kill those still running after the test."""
    started: list[WorkerProcess] = []
    if via == "pgbouncer":  # now, so a missing PgBouncer skips the test before it starts
        request.getfixturevalue("pgbouncer")

    def start(
        *args: str, modules: str = "", via: str = via, env: dict[str, str] | None = None
    ) -> WorkerProcess:
        if via not in ("direct", "pgbouncer"):
            raise ValueError("via is 'direct' or 'pgbouncer', not %r" % via)
        bouncer = request.getfixturevalue("pgbouncer") if via == "pgbouncer" else None
        proc = WorkerProcess(*args, modules=modules, pgbouncer=bouncer, env=env)
        started.append(proc)
        return proc

    yield start
    call = getattr(request.node, "report_call", None)
    failed = call is not None and call.failed
    for proc in started:
        if proc.process.poll() is None:
            if failed:  # its threads' stacks into its log (faulthandler), then kill it
                proc.process.send_signal(signal.SIGCONT)
                proc.process.send_signal(signal.SIGABRT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.process.wait(5)
            if proc.process.poll() is None:
                proc.kill()
        if failed:  # shown with the failure, as the test's captured output
            print("--- worker pid %d ---\n%s" % (proc.pid, proc.output()[-20000:]))
        proc.log.close()
