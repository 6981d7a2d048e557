"""GDPR export and erasure: everything held comes out; erasing leaves only hashes."""

from __future__ import annotations

import datetime as dt
import io

import orjson
import pytest
from django.core.management import CommandError, call_command

from consent.gdpr import customer_erase, customer_export
from consent.models import ConsentRecord, Subscription, Suppression, Topic
from consent.services import Evidence, address_hash, subscription_set, suppression_add
from customers.models import Customer, Device, Event, Identity
from milestones.models import Progress
from tests.factories import CustomerFactory, DeviceFactory, EventFactory, IdentityFactory

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)


@pytest.fixture
def held(db: None) -> Customer:
    Topic.objects.create(key="tips", name="Tips")
    customer = CustomerFactory(email="ada@example.com", phone="+14155550100", traits={"a": 1})
    DeviceFactory(customer=customer, token="tok-1")
    IdentityFactory(customer=customer, kind="anonymous", value="anon-1")
    EventFactory(customer=customer, name="Signed Up", occurred_at=AT)
    subscription_set(
        customer_id=customer.pk, channel="email", topic_keys=["tips"], status="opted_out",
        evidence=Evidence(source="api", ip_address="203.0.113.9"),
    )  # fmt: skip
    suppression_add(kind="email", address="ada@example.com", reason="unsubscribe")
    Progress.objects.create(
        version_id=1, definition_id=1, unit="customer", subject_id=customer.pk, anchor_at=AT
    )
    return customer


def test_the_export_holds_every_kind_of_data(held: Customer) -> None:
    data = customer_export(customer_id=held.pk)

    assert data["customer"]["email"] == "ada@example.com"
    assert data["customer"]["traits"] == {"a": 1}
    assert [i["value"] for i in data["identities"]] == ["anon-1"]
    assert [d["token"] for d in data["devices"]] == ["tok-1"]
    assert [e["name"] for e in data["events"]] == ["Signed Up", "Unsubscribed"]
    assert [(s["channel"], s["status"]) for s in data["subscriptions"]] == [("email", "opted_out")]
    assert [(r["status"], r["ip_address"]) for r in data["consent_records"]] == [
        ("opted_out", "203.0.113.9")
    ]
    assert [(s["kind"], s["reason"]) for s in data["suppressions"]] == [("email", "unsubscribe")]
    assert [p["subject_id"] for p in data["milestone_progress"]] == [held.pk]
    assert data["messages"] == []
    orjson.dumps(data)  # JSON-ready as it is


def test_erasing_keeps_only_hashed_suppressions_of_every_address(held: Customer) -> None:
    other = CustomerFactory(email="bob@example.com")

    summary = customer_erase(customer_id=held.pk)

    assert (summary.events, summary.suppressed_addresses) == (2, 3)
    assert not Customer.objects.filter(pk=held.pk).exists()
    assert Customer.objects.filter(pk=other.pk).exists()
    assert (Event.objects.count(), Identity.objects.count(), Device.objects.count()) == (0, 0, 0)
    assert (Subscription.objects.count(), ConsentRecord.objects.count()) == (0, 0)
    assert Progress.objects.count() == 0
    rows = set(Suppression.objects.values_list("kind", "address_hash", "address", "reason"))
    assert rows == {
        ("email", address_hash("email", "ada@example.com"), "", "unsubscribe"),
        ("phone", address_hash("phone", "+14155550100"), "", "erased"),
        ("device_token", address_hash("device_token", "tok-1"), "", "erased"),
    }


def test_a_returning_erased_address_is_still_suppressed(held: Customer) -> None:
    customer_erase(customer_id=held.pk)

    assert Suppression.objects.filter(
        kind="email", address_hash=address_hash("email", " ADA@example.com")
    ).exists()


def test_the_commands_export_and_refuse_to_erase_without_confirmation(held: Customer) -> None:
    out = io.StringIO()
    call_command("customer_export", str(held.pk), stdout=out)
    assert orjson.loads(out.getvalue())["customer"]["id"] == held.pk

    with pytest.raises(CommandError, match="pass --yes"):
        call_command("customer_erase", str(held.pk))
    assert Customer.objects.filter(pk=held.pk).exists()

    erased = io.StringIO()
    call_command("customer_erase", str(held.pk), "--yes", stdout=erased)
    assert erased.getvalue().startswith(f"Erased customer {held.pk}: 2 events deleted")
    with pytest.raises(CommandError, match="There is no customer"):
        call_command("customer_export", str(held.pk))


def test_erasing_anonymises_the_customers_messages(held: Customer) -> None:
    from messaging.models import Message

    message = Message.objects.create(
        idempotency_key="k", customer=held, channels=["email"], channel="email",
        topic=Topic.objects.get(), status="sent", to_address="ada@example.com",
        rendered={"subject": "Hi Ada"}, links=["https://x"],
    )  # fmt: skip

    assert customer_erase(customer_id=held.pk).messages_blanked == 1

    message.refresh_from_db()
    assert (message.customer_id, message.to_address, message.rendered, message.links) == (
        None, "", {}, [],
    )  # fmt: skip
    assert message.status == "sent"
