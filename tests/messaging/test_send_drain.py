"""A send task drains its channel: after the messages it was handed, it takes the channel's
other due messages, so a backlog never waits for one task per message."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core import mail

from customers.models import Customer
from messaging.models import Message, Template
from messaging.services import SendRequest, messages_request
from messaging.tasks import email_send_task
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _locmem(settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def queue(customer: Customer, key: str) -> int:
    (pk,) = messages_request([SendRequest(key, customer.pk, ("tips-email",))], now=NOON)
    return pk


def test_a_send_task_takes_its_channels_backlog_too(
    templates: dict[str, Template], customer: Customer
) -> None:
    others = [CustomerFactory(email=f"other{n}@example.com") for n in range(3)]
    first = queue(customer, "k0")
    rest = [queue(other, f"k{n + 1}") for n, other in enumerate(others)]

    sent = email_send_task([first])

    assert sent == 4
    assert sorted(m.to[0] for m in mail.outbox) == [
        "ada@example.com", "other0@example.com", "other1@example.com", "other2@example.com",
    ]  # fmt: skip
    assert set(Message.objects.filter(pk__in=[first, *rest]).values_list("status", flat=True)) == {
        "sent"
    }


def test_a_message_due_later_is_left_for_its_time(
    templates: dict[str, Template], customer: Customer
) -> None:
    later = queue(CustomerFactory(email="later@example.com"), "later")
    Message.objects.filter(pk=later).update(send_after=NOON + dt.timedelta(days=3650))

    sent = email_send_task([queue(customer, "now")])

    assert sent == 1
    assert Message.objects.get(pk=later).status == "queued"
