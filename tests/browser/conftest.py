"""Browser tests: headless Debian Chromium driven by Playwright (``executable_path``; no
browser is downloaded), against pytest-django's live server. Each test keeps screenshots
of the pages it visits under var/screenshots/ (git-ignored) as artefacts."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from playwright.sync_api import Browser, Page, sync_playwright

SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
PASSWORD = "browser-test-pw-1"


@pytest.fixture
def chromium(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls
    # (users, fixtures) are synchronous and safe, which Django cannot tell by itself.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    executable = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def _plain_http_server(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    # The live server builds its middleware once, when it starts: plain HTTP must be set
    # before then (tests/conftest.py's per-test override comes too late for it).
    with override_settings(SECURE_SSL_REDIRECT=False, SECURE_HSTS_SECONDS=0):
        yield
    # Set up after the test database and torn down after the live server: a request
    # thread the browser kept alive may still hold a connection, which would stop the
    # test database from being dropped.
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def page(_plain_http_server: None, chromium: Browser, live_server: Any) -> Iterator[Page]:
    context = chromium.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def shot(page: Page, name: str) -> Path:
    """Keep a full-page screenshot of ``page`` as ``var/screenshots/<test>/<name>.png``."""
    test = re.sub(r"[^\w.-]+", "_", os.environ.get("PYTEST_CURRENT_TEST", "test").split(" ")[0])
    folder = SCREENSHOTS / test
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/")
