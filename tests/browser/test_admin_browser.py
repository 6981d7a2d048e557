"""The admin in a real browser (headless Chromium)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page

from tests.browser.conftest import PASSWORD, shot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_wrong_password_is_refused_and_the_right_one_signs_in(page: Page) -> None:
    User.objects.create_superuser("ada", "ada@example.com", PASSWORD)
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "not-the-password")
    page.click("input[type=submit]")
    assert "Please enter the correct username and password" in page.inner_text(".errornote")
    shot(page, "login-refused")
    sign_in(page, "ada")
    assert page.title().startswith("Site administration")
    assert page.is_visible("text=Log out") or page.is_visible("#logout-form")
    path = shot(page, "admin-index")
    assert path.stat().st_size > 10_000
