"""Consent writes: subscriptions with their ledger rows, double opt-in, suppressions, SMS
keywords, and the signed links."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from consent import links
from consent.models import (
    AppendOnly,
    ConsentRecord,
    RegionPolicy,
    Subscription,
    Suppression,
    Topic,
)
from consent.services import (
    Evidence,
    address_hash,
    confirmation_accept,
    sms_keyword_apply,
    subscription_set,
    suppression_add,
    suppression_remove,
)
from consent.signals import confirmation_requested
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

API = Evidence(source="api", ip_address="203.0.113.9", user_agent="curl/8", wording="Tips?")


@pytest.fixture
def topics() -> dict[str, Topic]:
    return {
        "tips": Topic.objects.create(key="tips", name="Tips"),
        "news": Topic.objects.create(key="news", name="News"),
        "receipts": Topic.objects.create(key="receipts", name="Receipts", is_transactional=True),
    }


@pytest.fixture
def confirmations() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append({k: v for k, v in kwargs.items() if k != "signal"})

    confirmation_requested.connect(receiver)
    yield seen
    confirmation_requested.disconnect(receiver)


def states(customer_id: int) -> dict[tuple[str, str], str]:
    return {
        (s.channel, s.topic.key): s.status
        for s in Subscription.objects.filter(customer_id=customer_id).select_related("topic")
    }


def test_setting_consent_writes_the_state_and_one_ledger_row_with_its_evidence(
    topics: dict[str, Topic],
) -> None:
    customer = CustomerFactory()

    changed = subscription_set(
        customer_id=customer.pk, channel="email", topic_keys=["tips"], status="opted_in",
        evidence=API,
    )  # fmt: skip

    assert [s.status for s in changed] == ["opted_in"]
    assert states(customer.pk) == {("email", "tips"): "opted_in"}
    record = ConsentRecord.objects.get()
    assert (
        record.customer_id, record.channel, record.topic_id, record.status, record.source,
        record.ip_address, record.user_agent, record.wording,
    ) == (
        customer.pk, "email", topics["tips"].pk, "opted_in", "api", "203.0.113.9", "curl/8",
        "Tips?",
    )  # fmt: skip


def test_setting_the_same_state_again_writes_no_ledger_row(topics: dict[str, Topic]) -> None:
    customer = CustomerFactory()
    for _ in range(2):
        subscription_set(
            customer_id=customer.pk, channel="sms", topic_keys=["tips"], status="opted_out",
            evidence=API,
        )  # fmt: skip

    assert ConsentRecord.objects.count() == 1


def test_no_topic_means_every_active_marketing_topic(topics: dict[str, Topic]) -> None:
    customer = CustomerFactory()
    Topic.objects.filter(key="news").update(is_active=False)

    subscription_set(
        customer_id=customer.pk, channel="email", topic_keys=None, status="opted_out",
        evidence=API,
    )  # fmt: skip

    assert states(customer.pk) == {("email", "tips"): "opted_out"}


def test_an_unknown_topic_is_refused_and_nothing_is_written(topics: dict[str, Topic]) -> None:
    customer = CustomerFactory()

    with pytest.raises(Topic.DoesNotExist, match="unknown topic\\(s\\): nope"):
        subscription_set(
            customer_id=customer.pk, channel="email", topic_keys=["tips", "nope"],
            status="opted_in", evidence=API,
        )  # fmt: skip

    assert (Subscription.objects.count(), ConsentRecord.objects.count()) == (0, 0)


def test_an_email_opt_in_in_a_double_opt_in_region_waits_for_confirmation(
    topics: dict[str, Topic],
    confirmations: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    RegionPolicy.objects.create(region="de", mode="opt_in", requires_double_opt_in=True)
    customer = CustomerFactory(region="DE")

    with django_capture_on_commit_callbacks(execute=True):
        subscription_set(
            customer_id=customer.pk, channel="email", topic_keys=["tips"], status="opted_in",
            evidence=API,
        )  # fmt: skip

    assert states(customer.pk) == {("email", "tips"): "pending"}
    assert confirmations == [{"customer_id": customer.pk, "topic_keys": ["tips"]}]

    confirmation_accept(customer_id=customer.pk, evidence=Evidence(source="api"))

    assert states(customer.pk) == {("email", "tips"): "opted_in"}
    assert list(ConsentRecord.objects.order_by("id").values_list("status", "source")) == [
        ("pending", "api"),
        ("opted_in", "double_opt_in"),
    ]


def test_sms_opt_in_is_not_held_for_double_opt_in(topics: dict[str, Topic]) -> None:
    RegionPolicy.objects.create(region="DE", mode="opt_in", requires_double_opt_in=True)
    customer = CustomerFactory(region="DE")

    subscription_set(
        customer_id=customer.pk, channel="sms", topic_keys=["tips"], status="opted_in",
        evidence=API,
    )  # fmt: skip

    assert states(customer.pk) == {("sms", "tips"): "opted_in"}


def test_the_ledger_is_append_only(topics: dict[str, Topic]) -> None:
    customer = CustomerFactory()
    subscription_set(
        customer_id=customer.pk, channel="email", topic_keys=["tips"], status="opted_in",
        evidence=API,
    )  # fmt: skip
    record = ConsentRecord.objects.get()

    record.status = "opted_out"
    with pytest.raises(AppendOnly):
        record.save()
    with pytest.raises(AppendOnly):
        record.delete()

    assert ConsentRecord.objects.get().status == "opted_in"


def test_address_hashes_ignore_case_and_spaces_of_emails_only() -> None:
    assert address_hash("email", " Ada@Example.COM ") == address_hash("email", "ada@example.com")
    assert address_hash("phone", "+14155550100") != address_hash("email", "+14155550100")
    assert address_hash("device_token", "AbC") != address_hash("device_token", "abc")


def test_suppressing_is_idempotent_and_the_stronger_reason_wins() -> None:
    first = suppression_add(kind="email", address="Ada@Example.com", reason="unsubscribe")
    again = suppression_add(kind="email", address="ada@example.com", reason="hard_bounce")
    weaker = suppression_add(kind="email", address="ada@example.com", reason="unsubscribe")

    assert first.pk == again.pk == weaker.pk
    stored = Suppression.objects.get()
    assert (stored.address, stored.reason) == ("ada@example.com", "hard_bounce")


@pytest.mark.parametrize("body", ["STOP", " stop ", "Quit", "END", "revoke", "opt out", "CANCEL",
                                  "unsubscribe"])  # fmt: skip
def test_an_sms_stop_keyword_opts_out_and_suppresses_the_number(
    topics: dict[str, Topic], body: str
) -> None:
    customer = CustomerFactory(phone="+14155550100")

    result = sms_keyword_apply(phone="+14155550100", body=body)

    assert (result.keyword, result.customers) == ("stop", 1)
    assert result.reply.startswith("You are unsubscribed")
    assert states(customer.pk) == {("sms", "news"): "opted_out", ("sms", "tips"): "opted_out"}
    assert list(Suppression.objects.values_list("kind", "reason")) == [("phone", "unsubscribe")]
    assert set(ConsentRecord.objects.values_list("source", flat=True)) == {"sms_keyword"}


def test_start_lifts_an_unsubscribe_but_never_a_complaint(topics: dict[str, Topic]) -> None:
    customer = CustomerFactory(phone="+14155550100")
    sms_keyword_apply(phone="+14155550100", body="STOP")

    result = sms_keyword_apply(phone="+14155550100", body="start")

    assert result.keyword == "start"
    assert Suppression.objects.count() == 0
    assert states(customer.pk) == {("sms", "news"): "opted_in", ("sms", "tips"): "opted_in"}
    suppression_add(kind="phone", address="+14155550100", reason="complaint")
    sms_keyword_apply(phone="+14155550100", body="START")
    assert list(Suppression.objects.values_list("reason", flat=True)) == ["complaint"]


def test_help_replies_and_changes_nothing_and_other_words_are_ignored(
    topics: dict[str, Topic],
) -> None:
    CustomerFactory(phone="+14155550100")

    assert sms_keyword_apply(phone="+14155550100", body="help").keyword == "help"
    assert sms_keyword_apply(phone="+14155550100", body="stop please").keyword == ""
    assert (Subscription.objects.count(), Suppression.objects.count()) == (0, 0)


def test_removing_a_suppression_names_the_reasons_it_may_lift() -> None:
    suppression_add(kind="email", address="a@example.com", reason="legal_hold")

    assert suppression_remove(kind="email", address="a@example.com", reasons=["unsubscribe"]) == 0
    assert suppression_remove(kind="email", address="A@example.com", reasons=["legal_hold"]) == 1


def test_a_link_token_reads_back_and_is_refused_when_tampered_or_used_for_another_purpose() -> None:
    claim = links.LinkClaim(42, "email", "tips")
    token = links.token_make(links.UNSUBSCRIBE, claim)

    assert links.token_read(links.UNSUBSCRIBE, token) == claim
    with pytest.raises(links.BadToken):
        links.token_read(links.PREFERENCES, token)
    with pytest.raises(links.BadToken):
        links.token_read(
            links.UNSUBSCRIBE, token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        )
    with pytest.raises(links.BadToken):
        links.token_read(links.UNSUBSCRIBE, "not-a-token")


def test_opting_in_and_out_goes_on_the_customers_timeline(topics: dict[str, Topic]) -> None:
    from customers.models import Event

    customer = CustomerFactory()
    for status in ("opted_in", "opted_out"):
        subscription_set(
            customer_id=customer.pk, channel="email", topic_keys=["tips"], status=status,
            evidence=API,
        )  # fmt: skip

    events = list(Event.objects.order_by("id").values_list("name", "properties"))
    assert events == [
        ("Subscribed", {"channel": "email", "topic": "tips", "source": "api"}),
        ("Unsubscribed", {"channel": "email", "topic": "tips", "source": "api"}),
    ]
