"""A marketer's day in a real browser: write a template and preview it for a customer,
build a three-step journey in the step editor and take it live."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from consent.models import Topic
from journeys.models import Journey, JourneyStatus
from messaging.models import Template, TemplateStatus
from tests.browser.conftest import PASSWORD, shot, sign_in
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db(transaction=True)

VARIANTS = {
    "en": {
        "subject": "Welcome, {{ customer.first_name | default('there') }}",
        "html": "<p>Hi {{ customer.first_name | default('there') }}, here is how to start.</p>",
    }
}


def _marketer() -> None:
    User.objects.create_superuser("mia", "mia@example.com", PASSWORD)


def test_a_template_is_written_previewed_for_a_customer_and_activated(page: Page) -> None:
    _marketer()
    Topic.objects.create(key="tips", name="Tips")
    customer = CustomerFactory(traits={"first_name": "Grace"})
    sign_in(page, "mia")
    page.goto("/admin/messaging/template/add/")
    page.fill("#id_key", "welcome")
    page.fill("#id_name", "Welcome")
    page.select_option("#id_channel", "email")
    page.select_option("#id_topic", label="Tips")
    page.fill("#id_default_locale", "en")
    page.fill("#id_variants", json.dumps(VARIANTS, indent=2))
    shot(page, "template-add")
    page.click("input[name=_continue]")
    preview = page.locator("#template-preview")
    expect(preview).to_contain_text("Welcome, Ada")  # the sample customer
    page.fill("#preview_customer", str(customer.pk))
    preview.get_by_role("button", name="Preview").click()
    expect(preview).to_contain_text("Welcome, Grace")
    shot(page, "template-preview")
    page.get_by_role("button", name="Activate").click()
    expect(page.locator(".messagelist")).to_contain_text("v1")
    shot(page, "template-activated")
    template = Template.objects.get(key="welcome")
    assert (template.status, template.active_version.number) == (TemplateStatus.ACTIVE, 1)


def test_a_three_step_journey_is_built_in_the_step_editor_and_goes_live(page: Page) -> None:
    _marketer()
    topic = Topic.objects.create(key="tips", name="Tips")
    template = Template.objects.create(
        key="setup-help", name="Setup help", channel="email", topic=topic,
        default_locale="en", variants=VARIANTS,
    )  # fmt: skip
    from messaging.templating import template_activate

    template_activate(template_id=template.pk)
    sign_in(page, "mia")
    page.goto("/admin/journeys/journey/add/")
    page.fill("#id_key", "setup-nudge")
    page.fill("#id_name", "Setup nudge")
    page.select_option("#id_trigger_kind", "event")
    page.fill("#id_trigger_event", "Signed Up")
    while int(page.input_value("#id_steps-TOTAL_FORMS")) < 3:
        page.click("#journey-add-step")
    rows = [
        {"key": "nudge", "type": "send", "templates": "setup-help", "next": "pause"},
        {"key": "pause", "type": "wait", "wait_for": "duration", "duration": "2 days",
         "next": "done"},
        {"key": "done", "type": "exit"},
    ]  # fmt: skip
    for index, row in enumerate(rows):
        for name, value in row.items():
            selector = f'[name="steps-{index}-{name}"]'
            if page.locator(selector).evaluate("e => e.tagName") == "SELECT":
                page.select_option(selector, value)
            else:
                page.fill(selector, value)
    shot(page, "journey-add")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    page.get_by_role("button", name="Go live").click()
    expect(page.locator(".messagelist")).to_contain_text("live")
    shot(page, "journey-live")
    journey = Journey.objects.get(key="setup-nudge")
    assert journey.status == JourneyStatus.LIVE
    assert [step["key"] for step in journey.active_version.steps] == ["nudge", "pause", "done"]
