"""``manage.py demo``: start a worker, run a few onboardings, show them progress."""

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.core.management.base import BaseCommand
from django.utils import timezone

import django_zart as zart
from django_zart.models import Step


class Command(BaseCommand):
    help = "Run the onboarding demo against a real worker process."

    def handle(self, *args: object, **options: object) -> None:
        manage = Path(__file__).resolve().parents[4] / "manage.py"
        # A session of its own: Ctrl-C in the terminal reaches this command only, which
        # then stops the worker with one SIGTERM (a second signal would make it exit at once).
        worker = subprocess.Popen(
            [sys.executable, str(manage), "runzartworker", "--poll-interval", "0.1", "-v", "0"],
            start_new_session=True,
        )
        self.stdout.write("Started a worker (pid %d)." % worker.pid)
        batch = uuid.uuid4().hex[:6]
        ids = [
            zart.start(
                "signup",
                {"email": "%s@example.com" % name},
                execution_id="signup-%s-%s" % (name, batch),
            )
            for name in ("alice", "bob", "carol")
        ]
        self.stdout.write("Started %d signup workflows: %s" % (len(ids), ", ".join(ids)))
        try:
            self._show_progress(ids)
        except KeyboardInterrupt:
            self.stdout.write("\nInterrupted: stopping the worker; the next one resumes them.")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
            self.stdout.write("Worker stopped (exit code %d)." % worker.returncode)

    def _show_progress(self, ids: list[str]) -> None:
        last = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = []
            for execution_id in ids:
                execution = zart.status(execution_id)
                steps = Step.objects.filter(execution_id=execution_id, status="COMPLETED")
                done = ", ".join(steps.values_list("position", flat=True)) or "-"
                lines.append(
                    "  %-22s %-10s steps done: %s%s"
                    % (execution_id, execution.status, done, _why(execution_id, execution.status))
                )
            text = "\n".join(lines)
            if text != last:
                self.stdout.write(text + "\n")
                last = text
            if all(zart.status(i).is_finished for i in ids):
                break
            time.sleep(0.2)
        for execution_id in ids:
            try:
                output = zart.wait_completion(execution_id, timeout=1)
            except zart.ZartError as exc:
                self.stdout.write("%s: %s" % (execution_id, exc))
            else:
                self.stdout.write("%s output: %s" % (execution_id, output))


def _why(execution_id: str, status: str) -> str:
    """Why a suspended execution waits: a step's retry, in plain words."""
    if status != "SUSPENDED":
        return ""
    retrying = (
        Step.objects.filter(execution_id=execution_id, status="RETRYING")
        .values_list("position", "error", "wake_at")
        .first()
    )
    if retrying is None:
        return ""
    position, error, wake_at = retrying
    error = error or {}
    reason = "%s: %s" % (error.get("type", "error").rsplit(".", 1)[-1], error.get("message", ""))
    wait = ""
    if wake_at is not None:
        wait = ", retrying in %.1f s" % max((wake_at - timezone.now()).total_seconds(), 0)
    return "  (%s failed, %s%s)" % (position, reason, wait)
