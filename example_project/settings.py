"""Settings of the example project: SQLite next to manage.py unless DATABASE_URL is set."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

SECRET_KEY = env("SECRET_KEY", default="example-project-not-secret")
DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = ["*"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_zart",
    "example_project.demo",
    "example_project.examples",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "example_project.urls"
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
STATIC_URL = "static/"

DATABASES = {"default": env.db("DATABASE_URL", default="sqlite:///%s" % (BASE_DIR / "db.sqlite3"))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One file shared by the worker and the web process: wait for locks, take the write
    # lock when a transaction starts, and let readers run beside the writer.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

# The onboarding example's welcome mails, in the worker's output.
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

ZART = {
    "POLL_INTERVAL": "100ms",
    # For the approval example's curl; a real project reads its tokens from the environment.
    "EVENT_TOKENS": [env("ZART_EVENT_TOKEN", default="example-project-event-token")],
}

# The APIs of the brewery example (python manage.py zart_example brewery).
BREWERY_ZIP_API_URL = env("BREWERY_ZIP_API_URL", default="https://api.zippopotam.us")
BREWERY_API_URL = env("BREWERY_API_URL", default="https://api.openbrewerydb.org/v1")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_zart": {"handlers": ["console"], "level": "INFO"}},
}
