"""The admin in a real browser (headless Chromium)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, shot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_wrong_password_is_refused_and_the_right_one_signs_in(page: Page) -> None:
    User.objects.create_superuser("ada", "ada@example.com", PASSWORD)
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Please enter the correct username and password")).to_be_visible()
    assert page.url.endswith("/admin/login/?next=/admin/")
    shot(page, "login-refused")
    sign_in(page, "ada")
    assert page.title().startswith("Site administration")
    # Unfold keeps Log out in the user menu at the foot of the sidebar.
    page.get_by_text("ada@example.com").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    path = shot(page, "admin-index")
    assert path.stat().st_size > 10_000
