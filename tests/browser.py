"""Fixtures for the admin's browser tests: Debian's Chromium driven by Playwright.

Playwright's own browser download does not work everywhere, so the tests launch the
``chromium`` binary on the PATH (the Debian package; ``.ci/run`` installs it). Without it
they skip, unless ``ZART_TEST_REQUIRE_BROWSER`` is set (as in CI), where they fail.

The live server of pytest-django serves static files only with ``django.contrib.staticfiles``
installed; the test settings do without it, so the browser answers ``/static/`` requests
itself from the apps' static folders, and the admin looks as it does in production.

With ``ZART_SCREENSHOTS=1`` the tests save screenshots into ``docs/screenshots/``.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

from . import workflows  # noqa: F401 - the workflows the in-process workers run

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
REQUIRE_BROWSER_ENV = "ZART_TEST_REQUIRE_BROWSER"
PASSWORD = "browser-pw"
"""The password of the users the browser tests create."""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get(REQUIRE_BROWSER_ENV):
        pytest.fail("chromium is not installed and %s is set" % REQUIRE_BROWSER_ENV)
    pytest.skip("chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get(REQUIRE_BROWSER_ENV):
            raise
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    # Playwright's sync API runs an event loop in this thread; the test's own database
    # calls are synchronous all the same. Allowed for this module's tests only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(
                executable_path=path, headless=True, args=["--no-sandbox"]
            )
            yield launched
            launched.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def serve_static(route: Route) -> None:
    """Answer a ``/static/...`` request from the installed apps' static folders."""
    from urllib.parse import unquote, urlsplit

    path = unquote(urlsplit(route.request.url).path)
    prefix = "/" + settings.STATIC_URL.lstrip("/")
    found = finders.find(path.removeprefix(prefix)) if path.startswith(prefix) else None
    if not found:
        route.fulfill(status=404, body="")
        return
    content_type = mimetypes.guess_type(str(found))[0] or "application/octet-stream"
    route.fulfill(status=200, body=Path(str(found)).read_bytes(), content_type=content_type)


@pytest.fixture
def page(browser: Browser, live_server: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(10_000)
    context.route("**/static/**", serve_static)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture
def log_in(page: Page) -> Callable[..., None]:
    """Log ``username`` in through the admin's login form."""

    def go(username: str, password: str = PASSWORD) -> None:
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")

    return go


@pytest.fixture
def screenshot(page: Page) -> Callable[..., None]:
    """Save the page as ``docs/screenshots/<name>`` when ``ZART_SCREENSHOTS=1``: the whole
    page, or with ``until`` a CSS selector, the top of the page down to that element."""

    def save(name: str, *, until: str | None = None) -> None:
        if os.environ.get("ZART_SCREENSHOTS") != "1":
            return
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = str(SCREENSHOTS / name)
        box = page.locator(until).bounding_box() if until else None
        if box is None:
            page.screenshot(path=path, full_page=True)
            return
        width = page.viewport_size["width"] if page.viewport_size else 1440
        clip = {"x": 0, "y": 0, "width": width, "height": box["y"] + box["height"] + 16}
        page.screenshot(path=path, full_page=True, clip=clip)  # type: ignore[arg-type]

    return save
