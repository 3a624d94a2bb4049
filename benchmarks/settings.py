"""Settings of the benchmark project: django_zart plus the benchmarks' workflows.

The database server comes from ``DATABASE_URL`` (default: the local PostgreSQL); the
database name from ``ZART_BENCH_DATABASE``. The scripts (through
``harness.configure_django``) set it for themselves and for the worker processes they
start, together with ``ZART_BENCH_CONN_MAX_AGE``, ``ZART_BENCH_POLL_INTERVAL`` and
``ZART_BENCH_SERVER_SIDE_BINDING``.
"""

import os

import environ

env = environ.Env()

SECRET_KEY = "benchmarks-not-secret"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django_zart"]

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/postgres")
}
DATABASES["default"]["NAME"] = os.environ.get("ZART_BENCH_DATABASE", "zart_bench")
_max_age = os.environ.get("ZART_BENCH_CONN_MAX_AGE", "0")
DATABASES["default"]["CONN_MAX_AGE"] = None if _max_age.lower() == "none" else int(_max_age)
# Prepared statements, as a project connecting directly turns them on (the README's
# "Prepared statements"); ZART_BENCH_PREPARE=0 measures the engine without them.
if os.environ.get("ZART_BENCH_PREPARE", "1") == "1":
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
if os.environ.get("ZART_BENCH_SERVER_SIDE_BINDING") == "1":
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True

ZART = {
    "WORKFLOW_MODULES": [
        "benchmarks.workflows",
        "benchmarks.wakeup_workflows",
        "benchmarks.chaos_workflows",
        "benchmarks.suite_workflows",
    ],
    "POLL_INTERVAL": float(os.environ.get("ZART_BENCH_POLL_INTERVAL", "0.05")),
}
