"""Asking for messages: the policy's decision stored atomically, rendered, dispatched."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from consent.models import QuietHours, Subscription, Topic
from consent.services import suppression_add
from customers.models import Customer
from messaging.models import FrequencyCap, Message, Template
from messaging.services import MessagingError, SendRequest, messages_due_process, messages_request
from messaging.tracking import click_read, open_read

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)


def ask(customer: Customer, *keys: str, key: str = "k1", **fields: Any) -> Message:
    (pk,) = messages_request([SendRequest(key, customer.pk, keys, **fields)], now=NOON)
    return Message.objects.get(pk=pk)


def test_an_allowed_email_is_queued_rendered_tracked_and_dispatched_after_commit(
    templates: dict[str, Template],
    customer: Customer,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.PUBLIC_BASE_URL = "https://mp.example.com"
    with django_capture_on_commit_callbacks() as callbacks:
        message = ask(customer, "tips-email")

    assert (message.status, message.reason, message.channel, message.to_address) == (
        "queued",
        "",
        "email",
        "ada@example.com",
    )
    assert message.reserved_at == NOON
    assert message.template_version_id == templates["email"].active_version_id
    assert message.rendered["subject"] == "Welcome, Ada"
    assert message.links == ["https://example.com/start?a=1&b=2"]
    html = message.rendered["html"]
    assert "https://example.com/start" not in html  # rewritten to the tracked redirect
    click_token = html.split("https://mp.example.com/m/c/")[1].split('"')[0]
    assert click_read(click_token) == (message.pk, 0)
    open_token = html.split("https://mp.example.com/m/o/")[1].split(".gif")[0]
    assert open_read(open_token) == message.pk
    unsubscribe = message.rendered["headers"]["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://mp.example.com/c/u/")
    assert message.rendered["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.explanation == [{"channel": "email", "reason": "", "detail": ""}]
    assert len(callbacks) == 1


def test_asking_again_with_the_same_key_returns_the_same_message_and_decides_nothing(
    templates: dict[str, Template], customer: Customer
) -> None:
    first = ask(customer, "tips-email")
    Subscription.objects.create(
        customer=customer, channel="email", topic=Topic.objects.get(key="tips"), status="opted_out"
    )

    again = ask(customer, "tips-email")

    assert again.pk == first.pk
    assert (Message.objects.count(), again.status) == (1, "queued")


def test_a_message_the_policy_stops_is_still_a_row_with_its_reason_and_explanation(
    templates: dict[str, Template], customer: Customer, django_capture_on_commit_callbacks: Any
) -> None:
    suppression_add(kind="email", address="ADA@example.com", reason="hard_bounce")
    Subscription.objects.create(
        customer=customer, channel="sms", topic=Topic.objects.get(key="tips"), status="opted_out"
    )

    with django_capture_on_commit_callbacks() as callbacks:
        message = ask(customer, "tips-email", "tips-sms")

    assert (message.status, message.reason, message.channel, message.rendered) == (
        "suppressed",
        "suppressed_address",
        "",
        {},
    )
    assert message.reserved_at is None
    assert [(c["channel"], c["reason"]) for c in message.explanation] == [
        ("email", "suppressed_address"),
        ("sms", "no_consent"),
    ]
    assert callbacks == []


def test_the_channel_list_falls_back_in_priority_order(
    templates: dict[str, Template], customer: Customer
) -> None:
    Subscription.objects.create(
        customer=customer, channel="push", topic=Topic.objects.get(key="tips"), status="opted_out"
    )

    message = ask(customer, "tips-push", "tips-email")

    assert (message.channel, message.template_version_id, message.channels) == (
        "email",
        templates["email"].active_version_id,
        ["push", "email"],
    )


def test_a_cap_lets_one_of_two_through_and_records_the_other(
    templates: dict[str, Template], customer: Customer
) -> None:
    FrequencyCap.objects.create(
        name="1 a day", scope="marketing", limit=1, window=dt.timedelta(days=1)
    )

    ids = messages_request(
        [
            SendRequest("low", customer.pk, ("tips-email",), priority=1),
            SendRequest("high", customer.pk, ("tips-sms",), priority=5),
        ],
        now=NOON,
    )

    low, high = (Message.objects.get(pk=pk) for pk in ids)
    assert (high.status, low.status, low.reason) == ("queued", "suppressed", "lower_priority")
    later = ask(customer, "tips-push", key="later")
    assert (later.status, later.reason) == ("suppressed", "frequency_cap")


def test_a_transactional_template_ignores_caps_and_marketing_consent(
    make_template: Any, customer: Customer
) -> None:
    make_template("receipt", "email", topic="receipts")
    FrequencyCap.objects.create(name="none", scope="marketing", limit=0, window=dt.timedelta(1))
    Subscription.objects.create(
        customer=customer,
        channel="email",
        topic=Topic.objects.get(key="receipts"),
        status="opted_out",
    )

    message = ask(customer, "receipt")

    assert (message.status, message.is_transactional, message.reserved_at) == ("queued", True, None)


def test_quiet_hours_defer_and_the_due_tick_sends_when_the_window_ends(
    templates: dict[str, Template], customer: Customer, django_capture_on_commit_callbacks: Any
) -> None:
    QuietHours.objects.create(channel="sms", starts_at=dt.time(11), ends_at=dt.time(13))
    message = ask(customer, "tips-sms")
    assert (message.status, message.reason, message.send_after) == (
        "deferred",
        "quiet_hours_deferred",
        NOON + dt.timedelta(hours=1),
    )

    assert messages_due_process(now=NOON + dt.timedelta(minutes=59)).redecided == 0
    with (
        time_machine.travel(NOON + dt.timedelta(hours=1), tick=False),
        django_capture_on_commit_callbacks() as callbacks,
    ):
        summary = messages_due_process()

    message.refresh_from_db()
    assert summary.redecided == 1
    assert (message.status, message.reason, message.to_address) == ("queued", "", "+14155550100")
    assert message.rendered == {"body": "Hi Ada: 3 tips inside"}
    assert len(callbacks) == 1


def test_a_deferred_message_is_weighed_again_and_stopped_if_consent_was_withdrawn(
    templates: dict[str, Template], customer: Customer
) -> None:
    QuietHours.objects.create(channel="sms", starts_at=dt.time(11), ends_at=dt.time(13))
    message = ask(customer, "tips-sms")
    Subscription.objects.create(
        customer=customer, channel="sms", topic=Topic.objects.get(key="tips"), status="opted_out"
    )

    messages_due_process(now=NOON + dt.timedelta(hours=2))

    message.refresh_from_db()
    assert (message.status, message.reason) == ("suppressed", "no_consent")


def test_a_template_that_fails_for_this_customer_fails_the_message_never_a_blank_send(
    make_template: Any, customer: Customer
) -> None:
    make_template("strict", "sms", fields={"body": "Hi {{ customer.last_name }}"})

    message = ask(customer, "strict")

    assert (message.status, message.reason, message.reserved_at, message.rendered) == (
        "failed",
        "template_error",
        None,
        {},
    )
    assert message.error.startswith("body: ")
    assert "last_name" in message.error


def test_an_in_app_message_is_delivered_by_being_stored(
    templates: dict[str, Template], customer: Customer, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        message = ask(customer, "tips-in_app")

    assert (message.status, message.sent_at, message.to_address) == ("sent", NOON, str(customer.pk))
    assert message.rendered == {
        "title": "Tips",
        "body": "3 tips",
        "cta_label": "Open",
        "cta_url": "app://tips",
    }
    assert callbacks == []


def test_an_unknown_or_inactive_template_is_refused_naming_the_request(
    templates: dict[str, Template], customer: Customer
) -> None:
    with pytest.raises(MessagingError, match=r"request 1 \(b\): template 'nope' does not exist"):
        messages_request(
            [
                SendRequest("a", customer.pk, ("tips-email",)),
                SendRequest("b", customer.pk, ("nope",)),
            ]
        )

    assert Message.objects.count() == 0


def test_an_email_opt_in_in_a_double_opt_in_region_sends_the_confirmation_email(
    make_template: Any, customer: Customer, django_capture_on_commit_callbacks: Any
) -> None:
    from consent.models import RegionPolicy
    from consent.services import Evidence, subscription_set

    make_template(
        "double-opt-in-confirmation",
        "email",
        topic="receipts",
        fields={"subject": "Confirm", "html": '<a href="{{ confirm_url }}">Yes</a>'},
    )
    RegionPolicy.objects.create(region="DE", mode="opt_in", requires_double_opt_in=True)
    Customer.objects.filter(pk=customer.pk).update(region="DE")

    with django_capture_on_commit_callbacks(execute=True):
        subscription_set(
            customer_id=customer.pk, channel="email", topic_keys=["tips"], status="opted_in",
            evidence=Evidence(source="api"),
        )  # fmt: skip

    message = Message.objects.get()
    assert (message.status, message.is_transactional, message.to_address) == (
        "queued",
        True,
        "ada@example.com",
    )
    assert message.context["confirm_url"].startswith("http")
    assert "/c/confirm/" in message.context["confirm_url"]
    assert message.links == [message.context["confirm_url"]]


def test_a_transactional_email_carries_no_unsubscribe_headers(
    make_template: Any, customer: Customer
) -> None:
    make_template("receipt", "email", topic="receipts")

    message = ask(customer, "receipt")

    assert "headers" not in message.rendered
