"""Events Milepost records itself (deliveries, opens, clicks, unsubscribes) on a customer's
timeline: stored like ingested events, published the same way, never twice."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from customers.models import Event, Source
from customers.services import INTERNAL_SOURCE, TimelineEvent, events_record
from customers.signals import events_ingested, events_stored
from tests.factories import AccountFactory, CustomerFactory

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)


@pytest.fixture
def published() -> Iterator[list[tuple[str, list[Any]]]]:
    seen: list[tuple[str, list[Any]]] = []

    def stored(sender: Any, events: list[Any], **kwargs: Any) -> None:
        seen.append(("stored", events))

    def ingested(sender: Any, events: list[Any], **kwargs: Any) -> None:
        seen.append(("ingested", events))

    events_stored.connect(stored)
    events_ingested.connect(ingested)
    yield seen
    events_stored.disconnect(stored)
    events_ingested.disconnect(ingested)


def test_recorded_events_are_stored_under_an_inactive_internal_source_and_published(
    published: list[tuple[str, list[Any]]], django_capture_on_commit_callbacks: Any
) -> None:
    account = AccountFactory()
    customer = CustomerFactory(account=account)
    event = TimelineEvent(customer.pk, "Email Opened", AT, "open-1", {"message_id": 9})

    with django_capture_on_commit_callbacks(execute=True):
        assert events_record(events=[event]) == 1

    stored = Event.objects.get()
    assert (
        stored.customer_id, stored.account_id, stored.name, stored.properties, stored.occurred_at,
        stored.message_id,
    ) == (customer.pk, account.pk, "Email Opened", {"message_id": 9}, AT, "open-1")  # fmt: skip
    source = Source.objects.get(name=INTERNAL_SOURCE)
    assert source.is_active is False
    assert [
        (kind, [(e.id, e.customer_id, e.name) for e in events]) for kind, events in published
    ] == [
        ("stored", [(stored.pk, customer.pk, "Email Opened")]),
        ("ingested", [(stored.pk, customer.pk, "Email Opened")]),
    ]


def test_recording_the_same_event_again_stores_and_publishes_nothing(
    published: list[tuple[str, list[Any]]],
) -> None:
    customer = CustomerFactory()
    event = TimelineEvent(customer.pk, "Email Delivered", AT, "delivered-1")
    events_record(events=[event])
    published.clear()

    assert events_record(events=[event]) == 0

    assert Event.objects.count() == 1
    assert published == []


def test_an_event_of_a_customer_that_no_longer_exists_is_dropped() -> None:
    assert events_record(events=[TimelineEvent(999_999, "Email Opened", AT, "x")]) == 0
    assert Event.objects.count() == 0
