"""Test settings: PostgreSQL from DATABASE_URL, or SQLite when it says sqlite.

Worker processes started by the tests use these settings too, with
``ZART_TEST_DATABASE_NAME`` pointing them at the test database, and
``ZART_TEST_PGBOUNCER_PORT`` (when set) sending them through PgBouncer on that port.
"""

import copy
import hashlib
import os
from pathlib import Path

import django
import environ

from django_zart import Retry

env = environ.Env()
BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "tests"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_zart",
    "tests",
]
if django.VERSION < (6,):
    # Django's Tasks framework comes from its backport before Django 6.
    INSTALLED_APPS.append("django_tasks")
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
# pytest-django's live_server serves static files under it, and fails every request without.
STATIC_URL = "static/"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {"default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/zart")}
_default = DATABASES["default"]
# One test database per checkout (or per ZART_TEST_DB), so several suites can run side
# by side on one server.
_checkout = os.environ.get("ZART_TEST_DB") or hashlib.sha256(str(BASE_DIR).encode()).hexdigest()[:8]
if _default["ENGINE"] != "django.db.backends.sqlite3":
    _default["TEST"] = {"NAME": "test_zart_%s" % _checkout}
    # The store prepares its statements where Django's connection allows it; the Django 6
    # line of CI runs with ZART_TEST_PREPARE=0, so both ways are tested.
    if os.environ.get("ZART_TEST_PREPARE", "1") == "1":
        _default["OPTIONS"] = {**_default.get("OPTIONS", {}), "prepare_threshold": 5}
if _default["ENGINE"] == "django.db.backends.sqlite3":
    _default["NAME"] = str(BASE_DIR.parent / (".test-db-%s.sqlite3" % _checkout))
    _default["TEST"] = {"NAME": str(BASE_DIR.parent / (".test-db-%s-test.sqlite3" % _checkout))}
    _default["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
if os.environ.get("ZART_TEST_DATABASE_NAME"):
    _default["NAME"] = os.environ["ZART_TEST_DATABASE_NAME"]

ZART = {
    "POLL_INTERVAL": 0.05,
    "ORPHAN_TIMEOUT": 30,
    # Worker processes of the schedule tests also load a module that declares one.
    "WORKFLOW_MODULES": [m for m in os.environ.get("ZART_TEST_MODULES", "").split(",") if m],
    # Worker processes of the fault tests crash at a named point, or give up sooner.
    "FAULT_POINTS": [p for p in os.environ.get("ZART_TEST_FAULT_POINTS", "").split(",") if p],
    "MAX_RECOVERIES": int(os.environ.get("ZART_TEST_MAX_RECOVERIES", "5")),
}

# Django's Tasks framework on django-zart (tests/test_tasks_backend.py): a backend whose
# tasks fail for good at once, as with Django's own, and one that retries them.
TASKS = {
    "default": {"BACKEND": "django_zart.tasks.ZartBackend", "QUEUES": ["default", "emails"]},
    "retrying": {
        "BACKEND": "django_zart.tasks.ZartBackend",
        "OPTIONS": {"RETRY": Retry.fixed(2, "1s")},
    },
}

if os.environ.get("ZART_TEST_QUEUE_RATE"):
    # Worker processes of the rate tests: the queue "emails" at this rate, e.g. "10/s".
    ZART["QUEUES"] = {"default": {}, "emails": {"rate": os.environ["ZART_TEST_QUEUE_RATE"]}}

if os.environ.get("ZART_TEST_PGBOUNCER_PORT"):
    # A worker behind PgBouncer in transaction pooling mode (tests/conftest.py starts it):
    # no server-side prepared statements or cursors, which would outlive the transaction
    # on a server connection the next transaction may not get; LISTEN needs a session of
    # its own, so the listener connects to PostgreSQL directly.
    DATABASES["direct"] = copy.deepcopy(_default)
    _default["HOST"] = "127.0.0.1"
    _default["PORT"] = int(os.environ["ZART_TEST_PGBOUNCER_PORT"])
    _default["OPTIONS"] = {**_default.get("OPTIONS", {}), "prepare_threshold": None}
    _default["DISABLE_SERVER_SIDE_CURSORS"] = True
    ZART["LISTEN_DATABASE"] = "direct"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(process)d %(levelname)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"django_zart": {"handlers": ["console"], "level": "WARNING"}},
}
