"""What a project gets from the package's own dependencies."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# psycopg made unimportable, as on a machine with plain psycopg and no libpq.
WITHOUT_PSYCOPG = """
import sys
sys.modules["psycopg"] = None
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
import django_zart as zart
zart.start("arith", {"a": 1, "b": 2}, execution_id="no-psycopg")
call_command("runzartworker", "--burst", verbosity=0)
print(zart.status("no-psycopg").status, zart.status("no-psycopg").output)
"""


def test_a_project_on_sqlite_runs_without_psycopg(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": "sqlite://",
        "ZART_TEST_DATABASE_NAME": str(tmp_path / "db.sqlite3"),
    }
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PSYCOPG],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("COMPLETED {'sum': 113}"), done.stdout
