"""A marketer's day in a real browser, signed in with the Marketer role: build a milestone
with the condition builder, write a template and preview it for a customer, build a
three-step journey in the step editor and take it live, read the dashboard's charts and a
customer's 360 page. And an analyst, who may read but is refused an edit."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from playwright.sync_api import Page, expect

from consent.models import Topic
from journeys.models import Journey, JourneyStatus
from messaging.models import Template, TemplateStatus
from milestones.models import MilestoneDefinition
from milestones.services import definition_activate, definition_create
from tests.browser.conftest import PASSWORD, shot, sign_in
from tests.factories import CustomerFactory
from tests.reports.conftest import achieve, customer

pytestmark = pytest.mark.django_db(transaction=True)

VARIANTS = {
    "en": {
        "subject": "Welcome, {{ customer.first_name | default('there') }}",
        "html": "<p>Hi {{ customer.first_name | default('there') }}, here is how to start.</p>",
    }
}


def _staff(username: str, role: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def _marketer() -> None:
    _staff("mia", "Marketer")


def _save_and_continue(page: Page) -> None:
    page.get_by_role("button", name="Save and continue editing").click()


def test_a_milestone_is_built_with_the_condition_builder(page: Page) -> None:
    _marketer()
    sign_in(page, "mia")
    page.goto("/admin/milestones/milestonedefinition/add/")
    page.fill("#id_key", "reports-habit")
    page.fill("#id_name", "Made three reports in a week")
    page.select_option("#id_kind", "habit")
    while int(page.input_value("#id_condition_rows-TOTAL_FORMS")) < 1:
        page.click("#milestone-add-condition")
    page.select_option('[name="condition_rows-0-type"]', "event_count")
    page.fill('[name="condition_rows-0-event"]', "Report Created")
    page.fill('[name="condition_rows-0-at_least"]', "3")
    page.fill('[name="condition_rows-0-within"]', "7 days")
    shot(page, "condition-builder")
    _save_and_continue(page)
    expect(page.get_by_text("was added successfully")).to_be_visible()
    shot(page, "milestone-saved")
    definition = MilestoneDefinition.objects.get(key="reports-habit")
    assert definition.condition == {
        "type": "event_count",
        "event": "Report Created",
        "at_least": 3,
        "within": {"days": 7},
    }


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
    _save_and_continue(page)
    preview = page.locator("#template-preview")
    expect(preview).to_contain_text("Welcome, Ada")  # the sample customer
    page.fill("#preview_customer", str(customer.pk))
    preview.get_by_role("button", name="Preview").click()
    expect(preview).to_contain_text("Welcome, Grace")
    shot(page, "template-preview")
    page.get_by_role("button", name="Activate").click()
    expect(page.get_by_text("Activated v1 of “Welcome”")).to_be_visible()
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
    _save_and_continue(page)
    expect(page.get_by_text("was added successfully")).to_be_visible()
    page.get_by_role("button", name="Go live").click()
    expect(page.get_by_text("“Setup nudge” is live with v1")).to_be_visible()
    shot(page, "journey-live")
    journey = Journey.objects.get(key="setup-nudge")
    assert journey.status == JourneyStatus.LIVE
    assert [step["key"] for step in journey.active_version.steps] == ["nudge", "pause", "done"]


def test_the_dashboard_draws_its_charts(page: Page) -> None:
    _marketer()
    north_star = definition_create(
        key="activated", name="Activated", kind="value",
        condition={"type": "event_count", "event": "Report Created", "at_least": 3},
    )  # fmt: skip
    first = definition_create(
        key="first-report", name="First report", kind="onboarding", parent=north_star,
        condition={"type": "event_count", "event": "Report Created", "at_least": 1},
    )  # fmt: skip
    for definition in (north_star, first):
        definition_activate(definition=definition)
        definition.refresh_from_db()
    now = timezone.now()
    for n in range(8):
        someone = customer(now - dt.timedelta(days=3 * n + 1))
        achieve(first, someone, at=someone.created_at + dt.timedelta(hours=2 + n))
        if n % 2:
            achieve(north_star, someone, at=someone.created_at + dt.timedelta(hours=20 + n))
    sign_in(page, "mia")
    dashboard = page.locator("#reports-dashboard")
    expect(dashboard).to_contain_text("Events ingested today")
    for figure in ("cohorts", "time", "hierarchy", "journey"):
        expect(page.locator(f"#reports-figure-{figure}")).to_be_visible()
    charts = page.locator("#reports-dashboard svg[role=img]")
    assert charts.count() >= 3
    assert all(charts.nth(n).bounding_box()["height"] > 50 for n in range(charts.count()))
    shot(page, "dashboard")


def test_a_customer_360_page_answers_why(page: Page) -> None:
    _marketer()
    customer = CustomerFactory(traits={"first_name": "Grace"}, email="grace@example.com")
    sign_in(page, "mia")
    page.goto(f"/admin/customers/customer/{customer.pk}/change/")
    for section in ("Profile", "Milestones", "Consent", "Journeys", "Messages"):
        expect(page.get_by_role("heading", name=section).first).to_be_visible()
    shot(page, "customer-360")


def test_an_analyst_reads_but_is_refused_an_edit(page: Page) -> None:
    _staff("ann", "Analyst")
    definition = definition_create(
        key="activated", name="Activated", kind="onboarding",
        condition={"type": "event_count", "event": "Report Created", "at_least": 1},
    )  # fmt: skip
    sign_in(page, "ann")
    page.goto(f"/admin/milestones/milestonedefinition/{definition.pk}/change/")
    # Unfold's header shows the breadcrumbs, not the title: the page title tells view-only.
    expect(page).to_have_title(re.compile(r"\| View milestone definition \|"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Activated")
    assert page.get_by_role("button", name=re.compile(r"^Save")).count() == 0
    assert page.locator("#id_name").count() == 0  # read-only: no field to type in
    shot(page, "analyst-reads")
    response = page.goto("/admin/milestones/milestonedefinition/add/")
    assert response is not None
    assert response.status == 403
    shot(page, "analyst-refused")
