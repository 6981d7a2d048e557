"""The login-free consent pages: one-click unsubscribe, preference centre, double opt-in
confirmation; their tokens, CSRF rules and privacy headers."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings as django_settings
from django.test import Client

from consent import links
from consent.models import ConsentRecord, Preference, RegionPolicy, Subscription, Topic
from consent.preferences import is_subscribed
from consent.selectors import RegionRule
from consent.services import Evidence, subscription_set
from customers.models import Customer
from messaging import policy
from tests.factories import CustomerFactory, DeviceFactory

pytestmark = pytest.mark.django_db

IP, UA = "203.0.113.7", "Mozilla/5.0 (Test)"
ONE_CLICK = "List-Unsubscribe=One-Click"
FORM_ENCODED = "application/x-www-form-urlencoded"
NOW = dt.datetime(2025, 6, 10, 12, 0, tzinfo=dt.UTC)
PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}


@pytest.fixture(autouse=True)
def _opt_out_by_default(settings: Any) -> None:
    settings.CONSENT_DEFAULT_MODE = "opt_out"


@pytest.fixture(autouse=True)
def topics() -> dict[str, Topic]:
    return {
        "news": Topic.objects.create(key="news", name="News", description="Product news."),
        "tips": Topic.objects.create(key="tips", name="Tips"),
        "receipts": Topic.objects.create(key="receipts", name="Receipts", is_transactional=True),
        "old": Topic.objects.create(key="old", name="Old", is_active=False),
    }


@pytest.fixture(autouse=True)
def regions() -> None:
    RegionPolicy.objects.create(region="FR", mode="opt_in")
    RegionPolicy.objects.create(region="DE", mode="opt_in", requires_double_opt_in=True)


@pytest.fixture
def customer() -> Customer:
    return CustomerFactory(region="us", phone="")


@pytest.fixture
def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


def path(purpose: str, customer_id: int, channel: str = "email", topic: str = "") -> str:
    prefix = {links.UNSUBSCRIBE: "/c/u/", links.PREFERENCES: "/c/p/", links.CONFIRM: "/c/confirm/"}
    claim = links.LinkClaim(customer_id, channel, topic)
    return prefix[purpose] + links.token_make(purpose, claim)


def states(customer_id: int) -> dict[tuple[str, str], str]:
    return {
        (s.channel, s.topic.key): s.status
        for s in Subscription.objects.filter(customer_id=customer_id).select_related("topic")
    }


def ledger() -> list[tuple[Any, ...]]:
    return [
        (r.channel, r.topic.key if r.topic else None, r.status, r.source, r.ip_address,
         r.user_agent, r.wording)
        for r in ConsentRecord.objects.select_related("topic").order_by("id")
    ]  # fmt: skip


def text(response: Any) -> str:
    """The words of the page's <main>, tags removed and white space collapsed."""
    main = response.content.decode().partition("<main>")[2].partition("</main>")[0]
    return " ".join(re.sub(r"<[^>]+>", " ", main).split())


def checked_boxes(response: Any) -> dict[str, bool]:
    html = response.content.decode()
    return {
        name: " checked" in attrs
        for attrs, name in re.findall(r'(<input type="checkbox" name="([^"]+)"[^>]*>)', html)
    }


def opt_in(customer_id: int, channel: str, topic: str) -> None:
    subscription_set(
        customer_id=customer_id, channel=channel, topic_keys=[topic], status="opted_in",
        evidence=Evidence(source="api"),
    )  # fmt: skip


# --- Unsubscribe ----------------------------------------------------------------------------


def test_opening_an_unsubscribe_link_asks_and_changes_nothing(
    client: Client, customer: Customer
) -> None:
    response = client.get(path(links.UNSUBSCRIBE, customer.pk, "email", "news"))

    assert response.status_code == 200
    assert "Unsubscribe from “News” emails?" in text(response)
    assert '<input type="hidden" name="confirm" value="yes">' in response.content.decode()
    assert 'name="csrfmiddlewaretoken"' in response.content.decode()
    assert Subscription.objects.count() == 0
    assert ConsentRecord.objects.count() == 0


def test_a_one_click_post_without_csrf_opts_out_and_records_its_evidence(
    csrf_client: Client, customer: Customer
) -> None:
    response = csrf_client.post(
        path(links.UNSUBSCRIBE, customer.pk, "email", "news"),
        data=ONE_CLICK, content_type=FORM_ENCODED, REMOTE_ADDR=IP, HTTP_USER_AGENT=UA,
    )  # fmt: skip

    assert response.status_code == 200
    assert "You are unsubscribed You will no longer receive “News” emails." in text(response)
    assert states(customer.pk) == {("email", "news"): "opted_out"}
    assert ledger() == [
        ("email", "news", "opted_out", "unsubscribe_link", IP, UA,
         "List-Unsubscribe=One-Click (RFC 8058), sent by the mail client"),
    ]  # fmt: skip


def test_the_unsubscribed_page_links_to_the_preference_centre(
    client: Client, customer: Customer
) -> None:
    response = client.post(
        path(links.UNSUBSCRIBE, customer.pk, "email", "news"), ONE_CLICK, FORM_ENCODED
    )

    found = re.search(r'href="(/c/p/[^"]+)"', response.content.decode())
    assert found is not None
    claim = links.token_read(links.PREFERENCES, found.group(1).removeprefix("/c/p/"))
    assert claim == links.LinkClaim(customer.pk, "email", "news")
    assert client.get(found.group(1)).status_code == 200


def test_the_confirmation_form_opts_out_with_the_question_as_wording(
    csrf_client: Client, customer: Customer
) -> None:
    response = csrf_client.post(
        path(links.UNSUBSCRIBE, customer.pk, "sms", "tips"),
        {"confirm": "yes", "csrfmiddlewaretoken": "not checked: the signed link authorises"},
        REMOTE_ADDR=IP, HTTP_USER_AGENT=UA,
    )  # fmt: skip

    assert response.status_code == 200
    assert states(customer.pk) == {("sms", "tips"): "opted_out"}
    assert ledger() == [
        ("sms", "tips", "opted_out", "unsubscribe_link", IP, UA,
         "Unsubscribe from “Tips” text messages?"),
    ]  # fmt: skip


def test_a_link_without_a_topic_opts_out_of_every_marketing_topic_of_its_channel_only(
    client: Client, customer: Customer
) -> None:
    opt_in(customer.pk, "email", "receipts")
    opt_in(customer.pk, "sms", "news")

    response = client.post(path(links.UNSUBSCRIBE, customer.pk, "email"), ONE_CLICK, FORM_ENCODED)

    assert response.status_code == 200
    assert "You will no longer receive all marketing emails." in text(response)
    assert states(customer.pk) == {
        ("email", "news"): "opted_out",
        ("email", "tips"): "opted_out",
        ("email", "receipts"): "opted_in",
        ("sms", "news"): "opted_in",
    }
    assert [row[:4] for row in ledger()][2:] == [
        ("email", "news", "opted_out", "unsubscribe_link"),
        ("email", "tips", "opted_out", "unsubscribe_link"),
    ]


def test_a_link_from_a_transactional_message_opts_out_of_the_channels_marketing(
    client: Client, customer: Customer
) -> None:
    response = client.post(
        path(links.UNSUBSCRIBE, customer.pk, "email", "receipts"), ONE_CLICK, FORM_ENCODED
    )

    assert response.status_code == 200
    assert states(customer.pk) == {("email", "news"): "opted_out", ("email", "tips"): "opted_out"}


def test_unsubscribing_twice_records_the_change_once(client: Client, customer: Customer) -> None:
    url = path(links.UNSUBSCRIBE, customer.pk, "email", "news")

    first = client.post(url, ONE_CLICK, FORM_ENCODED)
    second = client.post(url, ONE_CLICK, FORM_ENCODED)

    assert (first.status_code, second.status_code) == (200, 200)
    assert [row[:3] for row in ledger()] == [("email", "news", "opted_out")]


def test_a_post_with_neither_the_one_click_body_nor_the_form_changes_nothing(
    client: Client, customer: Customer
) -> None:
    response = client.post(
        path(links.UNSUBSCRIBE, customer.pk, "email", "news"), "x=1", FORM_ENCODED
    )

    assert response.status_code == 400
    assert "Unsubscribe from “News” emails?" in text(response)
    assert Subscription.objects.count() == 0
    assert ConsentRecord.objects.count() == 0


def _tampered(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize(
    "make_path",
    [
        pytest.param(
            lambda pk: "/c/u/" + _tampered(path(links.UNSUBSCRIBE, pk)[5:]), id="tampered"
        ),
        pytest.param(lambda pk: "/c/u/" + path(links.PREFERENCES, pk)[5:], id="wrong-purpose"),
        pytest.param(lambda pk: "/c/u/not-a-token", id="garbage"),
        pytest.param(lambda pk: path(links.UNSUBSCRIBE, pk + 1000), id="no-such-customer"),
        pytest.param(lambda pk: path(links.UNSUBSCRIBE, pk, "fax"), id="unknown-channel"),
        pytest.param(lambda pk: path(links.UNSUBSCRIBE, pk, "email", "gone"), id="unknown-topic"),
    ],
)
def test_a_bad_unsubscribe_link_is_refused_and_writes_nothing(
    client: Client, customer: Customer, method: str, make_path: Any
) -> None:
    url = make_path(customer.pk)

    response = client.get(url) if method == "get" else client.post(url, ONE_CLICK, FORM_ENCODED)

    assert response.status_code == 400
    assert text(response).startswith("This link is invalid The link is incomplete")
    assert Subscription.objects.count() == 0
    assert ConsentRecord.objects.count() == 0


def test_an_expired_unsubscribe_link_is_refused_and_writes_nothing(
    client: Client, customer: Customer
) -> None:
    with time_machine.travel(NOW, tick=False):
        url = path(links.UNSUBSCRIBE, customer.pk, "email", "news")
    later = NOW + dt.timedelta(days=django_settings.MESSAGING_LINK_MAX_AGE_DAYS, seconds=1)

    with time_machine.travel(later, tick=False):
        response = client.post(url, ONE_CLICK, FORM_ENCODED)

    assert response.status_code == 400
    assert "This link is invalid" in text(response)
    assert Subscription.objects.count() == 0
    assert ConsentRecord.objects.count() == 0


def test_a_link_just_inside_its_age_still_works(client: Client, customer: Customer) -> None:
    with time_machine.travel(NOW, tick=False):
        url = path(links.UNSUBSCRIBE, customer.pk, "email", "news")
    later = NOW + dt.timedelta(days=django_settings.MESSAGING_LINK_MAX_AGE_DAYS, seconds=-1)

    with time_machine.travel(later, tick=False):
        response = client.post(url, ONE_CLICK, FORM_ENCODED)

    assert response.status_code == 200
    assert states(customer.pk) == {("email", "news"): "opted_out"}


# --- Preference centre ----------------------------------------------------------------------


def test_the_preference_centre_shows_unknown_as_subscribed_in_an_opt_out_region(
    client: Client, customer: Customer
) -> None:
    opt_in(customer.pk, "email", "tips")
    subscription_set(
        customer_id=customer.pk, channel="in_app", topic_keys=["news"], status="opted_out",
        evidence=Evidence(source="api"),
    )  # fmt: skip

    response = client.get(path(links.PREFERENCES, customer.pk))

    assert response.status_code == 200
    assert checked_boxes(response) == {
        "email-news": True,
        "email-tips": True,
        "in_app-news": False,
        "in_app-tips": True,
    }
    assert text(response).count("Now: subscribed") == 3
    assert text(response).count("Now: not subscribed") == 1
    assert "Receipts" not in text(response)
    assert "Old" not in text(response)


def test_the_preference_centre_shows_unknown_as_not_subscribed_in_an_opt_in_region(
    client: Client,
) -> None:
    customer = CustomerFactory(region="fr", phone="+33612345678")
    opt_in(customer.pk, "sms", "tips")

    response = client.get(path(links.PREFERENCES, customer.pk))

    assert checked_boxes(response) == {
        "email-news": False,
        "email-tips": False,
        "sms-news": False,
        "sms-tips": True,
        # In-app messages need no prior opt-in (messaging.policy.consents).
        "in_app-news": True,
        "in_app-tips": True,
    }


def test_the_preference_centre_lists_push_only_with_an_active_device(client: Client) -> None:
    with_device = CustomerFactory(email="")
    DeviceFactory(customer=with_device)
    inactive = CustomerFactory(email="")
    DeviceFactory(customer=inactive, is_active=False)

    shown = client.get(path(links.PREFERENCES, with_device.pk))
    hidden = client.get(path(links.PREFERENCES, inactive.pk))

    assert list(checked_boxes(shown)) == ["push-news", "push-tips", "in_app-news", "in_app-tips"]
    assert list(checked_boxes(hidden)) == ["in_app-news", "in_app-tips"]


def test_saving_writes_only_the_topics_that_changed(client: Client, customer: Customer) -> None:
    # given: everything shows subscribed (unknown in an opt-out region)
    url = path(links.PREFERENCES, customer.pk)

    # when: the customer unticks email news and keeps the rest
    response = client.post(
        url,
        {"email-tips": "on", "in_app-news": "on", "in_app-tips": "on", "frequency": "none"},
        REMOTE_ADDR=IP, HTTP_USER_AGENT=UA,
    )  # fmt: skip

    # then
    assert response.status_code == 302
    assert response["Location"] == url
    assert states(customer.pk) == {("email", "news"): "opted_out"}
    assert ledger() == [
        ("email", "news", "opted_out", "preference_centre", IP, UA,
         "Choose what we send you: Email, News. Product news."),
    ]  # fmt: skip
    assert Preference.objects.count() == 0
    page = client.get(url)
    assert "Your choices are saved." in text(page)
    assert checked_boxes(page)["email-news"] is False


def test_saving_an_untouched_form_writes_nothing(client: Client, customer: Customer) -> None:
    opt_in(customer.pk, "email", "news")
    before = ledger()

    response = client.post(
        path(links.PREFERENCES, customer.pk),
        {"email-news": "on", "email-tips": "on", "in_app-news": "on", "in_app-tips": "on",
         "frequency": "none"},
    )  # fmt: skip

    assert response.status_code == 302
    assert ledger() == before
    assert states(customer.pk) == {("email", "news"): "opted_in"}
    assert Preference.objects.count() == 0


def test_opting_in_from_an_opt_in_region_records_an_opt_in(client: Client) -> None:
    customer = CustomerFactory(region="FR")

    client.post(path(links.PREFERENCES, customer.pk), {"email-tips": "on", "frequency": "none"})

    assert states(customer.pk) == {
        ("email", "tips"): "opted_in",
        ("in_app", "news"): "opted_out",
        ("in_app", "tips"): "opted_out",
    }


def test_an_email_opt_in_in_a_double_opt_in_region_waits_for_confirmation(
    client: Client,
) -> None:
    customer = CustomerFactory(region="DE")
    url = path(links.PREFERENCES, customer.pk)

    client.post(
        url,
        {"email-tips": "on", "in_app-news": "on", "in_app-tips": "on", "frequency": "none"},
    )
    page = client.get(url)

    assert states(customer.pk) == {("email", "tips"): "pending"}
    assert "Check your inbox to confirm: we have emailed you a link to confirm “Tips”." in text(
        page
    )
    assert "Tips Awaiting your confirmation: check your inbox to confirm" in text(page)
    assert checked_boxes(page)["email-tips"] is True


def test_unticking_a_pending_opt_in_opts_out(client: Client) -> None:
    customer = CustomerFactory(region="DE")
    opt_in(customer.pk, "email", "tips")  # pending in DE

    client.post(
        path(links.PREFERENCES, customer.pk),
        {"in_app-news": "on", "in_app-tips": "on", "frequency": "none"},
    )

    assert states(customer.pk) == {("email", "tips"): "opted_out"}


@time_machine.travel(NOW, tick=False)
def test_a_custom_frequency_and_a_pause_are_saved(client: Client) -> None:
    customer = CustomerFactory(time_zone="Europe/Berlin")
    url = path(links.PREFERENCES, customer.pk)

    response = client.post(
        url,
        {"email-news": "on", "email-tips": "on", "in_app-news": "on", "in_app-tips": "on",
         "frequency": "custom", "max_marketing": "3", "period_days": "14",
         "pause_until": "2025-07-01"},
    )  # fmt: skip

    assert response.status_code == 302
    preference = Preference.objects.get(customer=customer)
    assert (
        preference.max_marketing, preference.period_days, preference.paused_until,
        preference.updated_at,
    ) == (3, 14, dt.datetime(2025, 7, 1, tzinfo=ZoneInfo("Europe/Berlin")), NOW)  # fmt: skip
    assert ConsentRecord.objects.count() == 0
    page = client.get(url).content.decode()
    assert 'value="custom" id="id_frequency_2" required checked' in page
    assert 'name="max_marketing" value="3"' in page
    assert 'name="pause_until" value="2025-07-01"' in page


@time_machine.travel(NOW, tick=False)
def test_choosing_one_a_week_and_no_pause_replaces_an_earlier_choice(client: Client) -> None:
    customer = CustomerFactory()
    Preference.objects.create(
        customer=customer,
        max_marketing=5,
        period_days=30,
        paused_until=NOW + dt.timedelta(days=3),
        updated_at=NOW - dt.timedelta(days=9),
    )

    client.post(
        path(links.PREFERENCES, customer.pk),
        {"email-news": "on", "email-tips": "on", "in_app-news": "on", "in_app-tips": "on",
         "frequency": "weekly", "pause_until": ""},
    )  # fmt: skip

    preference = Preference.objects.get(customer=customer)
    assert (
        preference.max_marketing, preference.period_days, preference.paused_until,
        preference.updated_at,
    ) == (1, 7, None, NOW)  # fmt: skip


@time_machine.travel(NOW, tick=False)
def test_an_unchanged_pause_keeps_its_exact_time(client: Client) -> None:
    customer = CustomerFactory()
    until = NOW + dt.timedelta(days=3, hours=2)
    earlier = NOW - dt.timedelta(days=9)
    Preference.objects.create(customer=customer, paused_until=until, updated_at=earlier)

    client.post(
        path(links.PREFERENCES, customer.pk),
        {"email-news": "on", "email-tips": "on", "in_app-news": "on", "in_app-tips": "on",
         "frequency": "none", "pause_until": "2025-06-13"},
    )  # fmt: skip

    preference = Preference.objects.get(customer=customer)
    assert (preference.paused_until, preference.updated_at) == (until, earlier)


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    ("pause_until", "message"),
    [
        ("2025-06-10", "Choose a date in the future."),
        ("2025-05-01", "Choose a date in the future."),
        ("2026-06-11", "Choose a date at most one year ahead (on or before 2026-06-10)."),
        ("10/06/2025x", "Enter a valid date."),
    ],
)
def test_a_pause_date_outside_the_next_year_is_refused_and_nothing_is_written(
    client: Client, customer: Customer, pause_until: str, message: str
) -> None:
    response = client.post(
        path(links.PREFERENCES, customer.pk),
        {"email-tips": "on", "frequency": "weekly", "pause_until": pause_until},
    )

    assert response.status_code == 400
    assert message in text(response)
    assert "nothing has been saved" in text(response)
    assert Subscription.objects.count() == 0
    assert ConsentRecord.objects.count() == 0
    assert Preference.objects.count() == 0


@time_machine.travel(NOW, tick=False)
def test_a_pause_of_exactly_one_year_is_accepted(client: Client, customer: Customer) -> None:
    response = client.post(
        path(links.PREFERENCES, customer.pk),
        {"frequency": "none", "pause_until": "2026-06-10"},
    )

    assert response.status_code == 302
    assert Preference.objects.get().paused_until == dt.datetime(2026, 6, 10, tzinfo=dt.UTC)


def test_a_custom_frequency_needs_both_numbers(client: Client, customer: Customer) -> None:
    response = client.post(
        path(links.PREFERENCES, customer.pk), {"frequency": "custom", "max_marketing": "0"}
    )

    assert response.status_code == 400
    assert "Ensure this value is greater than or equal to 1." in text(response)
    assert "Enter over how many days." in text(response)
    assert ConsentRecord.objects.count() == 0
    assert Preference.objects.count() == 0


def test_the_preference_form_is_csrf_protected(csrf_client: Client, customer: Customer) -> None:
    url = path(links.PREFERENCES, customer.pk)

    refused = csrf_client.post(url, {"frequency": "weekly"})

    assert refused.status_code == 403
    assert ConsentRecord.objects.count() == 0
    assert Preference.objects.count() == 0
    csrf_client.get(url)
    accepted = csrf_client.post(
        url,
        {"frequency": "weekly", "csrfmiddlewaretoken": csrf_client.cookies["csrftoken"].value},
    )
    assert accepted.status_code == 302
    assert (Preference.objects.get().max_marketing, ConsentRecord.objects.count()) == (1, 4)


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_bad_preference_link_is_refused_and_writes_nothing(
    client: Client, customer: Customer, method: str
) -> None:
    url = "/c/p/" + path(links.UNSUBSCRIBE, customer.pk)[5:]

    response = client.get(url) if method == "get" else client.post(url, {"frequency": "weekly"})

    assert response.status_code == 400
    assert "This link is invalid" in text(response)
    assert ConsentRecord.objects.count() == 0
    assert Preference.objects.count() == 0


@pytest.mark.parametrize("status", ["opted_in", "opted_out", "unknown", "pending"])
@pytest.mark.parametrize("channel", ["email", "sms", "push", "in_app"])
@pytest.mark.parametrize(
    "rule",
    [RegionRule("opt_out", False), RegionRule("opt_in", False), RegionRule("opt_in", True)],
    ids=["opt-out", "opt-in", "double-opt-in"],
)
def test_the_shown_state_is_the_one_delivery_uses(
    status: str, channel: str, rule: RegionRule
) -> None:
    audience = policy.Audience(
        customer_id=1,
        consent_mode=rule.mode,
        requires_double_opt_in=rule.requires_double_opt_in,
        subscriptions={(channel, "tips"): status},
    )

    assert is_subscribed(status, channel, rule) is policy.consents(audience, channel, "tips")


# --- Double opt-in confirmation -------------------------------------------------------------


@pytest.fixture
def pending_customer() -> Customer:
    customer = CustomerFactory(region="DE")
    opt_in(customer.pk, "email", "tips")
    opt_in(customer.pk, "email", "news")
    return customer


def test_opening_a_confirmation_link_asks_and_changes_nothing(
    client: Client, pending_customer: Customer
) -> None:
    before = ledger()

    response = client.get(path(links.CONFIRM, pending_customer.pk))

    assert response.status_code == 200
    assert "Confirm that you want to receive these emails: News Tips Confirm" in text(response)
    assert states(pending_customer.pk) == {
        ("email", "news"): "pending",
        ("email", "tips"): "pending",
    }
    assert ledger() == before


def test_confirming_opts_in_every_pending_topic_with_evidence(
    csrf_client: Client, pending_customer: Customer
) -> None:
    url = path(links.CONFIRM, pending_customer.pk)
    csrf_client.get(url)

    response = csrf_client.post(
        url, {"csrfmiddlewaretoken": csrf_client.cookies["csrftoken"].value},
        REMOTE_ADDR=IP, HTTP_USER_AGENT=UA,
    )  # fmt: skip

    assert response.status_code == 200
    assert "Thank you, you are subscribed" in text(response)
    assert states(pending_customer.pk) == {
        ("email", "news"): "opted_in",
        ("email", "tips"): "opted_in",
    }
    wording = "Confirm that you want to receive these emails: News, Tips"
    assert ledger()[2:] == [
        ("email", "news", "opted_in", "double_opt_in", IP, UA, wording),
        ("email", "tips", "opted_in", "double_opt_in", IP, UA, wording),
    ]


def test_confirming_needs_a_csrf_token(csrf_client: Client, pending_customer: Customer) -> None:
    before = ledger()

    response = csrf_client.post(path(links.CONFIRM, pending_customer.pk))

    assert response.status_code == 403
    assert ledger() == before


def test_confirming_with_nothing_pending_writes_nothing(client: Client, customer: Customer) -> None:
    response = client.post(path(links.CONFIRM, customer.pk))

    assert response.status_code == 200
    assert "Nothing to confirm" in text(response)
    assert ConsentRecord.objects.count() == 0


def test_a_bad_confirmation_link_is_refused_and_writes_nothing(
    client: Client, pending_customer: Customer
) -> None:
    before = ledger()
    url = "/c/confirm/" + _tampered(path(links.CONFIRM, pending_customer.pk)[11:])

    response = client.post(url)

    assert response.status_code == 400
    assert ledger() == before
    assert set(states(pending_customer.pk).values()) == {"pending"}


# --- Every response -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "purpose", "data", "status"),
    [
        ("get", links.UNSUBSCRIBE, None, 200),
        ("post", links.UNSUBSCRIBE, ONE_CLICK, 200),
        ("get", links.PREFERENCES, None, 200),
        ("post", links.PREFERENCES, "frequency=none", 302),
        ("post", links.PREFERENCES, "frequency=sometimes", 400),
        ("get", links.CONFIRM, None, 200),
        ("post", links.CONFIRM, "", 200),
        ("get", "bad", None, 400),
        ("put", links.UNSUBSCRIBE, "", 405),
    ],
)
def test_every_response_is_kept_out_of_caches_referrers_and_indexes(
    client: Client, customer: Customer, method: str, purpose: str, data: str | None, status: int
) -> None:
    url = "/c/u/bad" if purpose == "bad" else path(purpose, customer.pk, "email", "news")
    kwargs = {} if data is None else {"data": data, "content_type": FORM_ENCODED}

    response = getattr(client, method)(url, **kwargs)

    assert response.status_code == status
    assert {name: response.get(name) for name in PRIVATE_HEADERS} == PRIVATE_HEADERS
    assert response["Content-Security-Policy"].startswith("default-src 'none';")
    if status in (200, 400):
        assert '<meta name="robots" content="noindex">' in response.content.decode()


def test_page_content_is_escaped(client: Client, customer: Customer) -> None:
    Topic.objects.create(key="xss", name="<script>alert(1)</script>", description="<b>x</b>")

    preferences = client.get(path(links.PREFERENCES, customer.pk)).content.decode()
    unsubscribe = client.get(path(links.UNSUBSCRIBE, customer.pk, "email", "xss")).content.decode()

    for page in (preferences, unsubscribe):
        assert "<script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in preferences
