"""Retrying failed sends by hand: which rows go back to the queue, and how."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
import time_machine

from consent.models import Topic
from customers.models import Customer
from messaging import reasons
from messaging.models import Message, MessageStatus
from messaging.retry import _wake, messages_retry

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
EARLIER = NOW - dt.timedelta(hours=5)
_keys = itertools.count()


@pytest.fixture
def make(topics: dict[str, Topic], customer: Customer) -> Any:
    def _make(
        status: str,
        reason: str = "",
        *,
        channel: str = "email",
        topic: str = "tips",
        reserved_at: dt.datetime | None = None,
    ) -> Message:
        return Message.objects.create(
            idempotency_key=f"retry-{next(_keys)}",
            customer=customer,
            channels=[channel],
            channel=channel,
            topic=topics[topic],
            is_transactional=topics[topic].is_transactional,
            status=status,
            reason=reason,
            error="provider said no",
            attempts=5,
            reserved_at=reserved_at,
            send_after=EARLIER,
            failed_at=EARLIER if status == MessageStatus.FAILED else None,
            created_at=EARLIER,
            updated_at=EARLIER,
        )

    return _make


def _state(message: Message) -> tuple[Any, ...]:
    message.refresh_from_db()
    return (
        message.status,
        message.reason,
        message.attempts,
        message.send_after,
        message.failed_at,
        message.reserved_at,
        message.error,
        message.updated_at,
    )


def test_it_requeues_exhausted_retries_provider_rejections_and_unconfirmed_sends(make: Any) -> None:
    # given
    exhausted = make(MessageStatus.FAILED, reasons.RETRIES_EXHAUSTED)
    rejected = make(MessageStatus.FAILED, reasons.PROVIDER_REJECTED, channel="sms")
    unconfirmed = make(MessageStatus.UNCONFIRMED, reasons.SEND_UNCONFIRMED, reserved_at=EARLIER)

    # when
    with time_machine.travel(NOW, tick=False):
        count = messages_retry([exhausted.pk, rejected.pk, unconfirmed.pk])

    # then
    assert count == 3
    # Each goes back to the policy: deferred, due now, holding no cap slot until it is
    # weighed again.
    assert _state(exhausted) == ("deferred", "", 0, NOW, None, None, "provider said no", NOW)
    assert _state(rejected) == ("deferred", "", 0, NOW, None, None, "provider said no", NOW)
    assert _state(unconfirmed) == ("deferred", "", 0, NOW, None, None, "provider said no", NOW)


def test_a_retried_message_is_weighed_again_and_stopped_if_consent_was_withdrawn(
    templates: Any, customer: Any
) -> None:
    from consent.models import Subscription, Topic
    from messaging.services import SendRequest, messages_due_process, messages_request

    (pk,) = messages_request([SendRequest("r1", customer.pk, ("tips-sms",))])
    Message.objects.filter(pk=pk).update(status="failed", reason=reasons.RETRIES_EXHAUSTED)
    Subscription.objects.create(
        customer=customer, channel="sms", topic=Topic.objects.get(key="tips"), status="opted_out"
    )

    assert messages_retry([pk]) == 1
    messages_due_process()

    retried = Message.objects.get(pk=pk)
    assert (retried.status, retried.reason) == ("suppressed", "no_consent")


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (MessageStatus.FAILED, reasons.BAD_ADDRESS),
        (MessageStatus.FAILED, reasons.TEMPLATE_ERROR),
        (MessageStatus.SUPPRESSED, reasons.NO_CONSENT),
        (MessageStatus.DEFERRED, reasons.QUIET_HOURS_DEFERRED),
        (MessageStatus.QUEUED, ""),
        (MessageStatus.SENDING, ""),
        (MessageStatus.SENT, ""),
        (MessageStatus.BOUNCED, ""),
        (MessageStatus.COMPLAINED, ""),
    ],
)
def test_it_never_retries_anything_else(
    make: Any, status: str, reason: str, django_capture_on_commit_callbacks: Any
) -> None:
    message = make(status, reason)
    before = _state(message)

    with django_capture_on_commit_callbacks() as callbacks:
        count = messages_retry([message.pk])

    assert count == 0
    assert _state(message) == before
    assert callbacks == []


def test_it_touches_only_the_messages_named(make: Any) -> None:
    named = make(MessageStatus.FAILED, reasons.RETRIES_EXHAUSTED)
    other = make(MessageStatus.FAILED, reasons.RETRIES_EXHAUSTED)
    before = _state(other)

    assert messages_retry([named.pk]) == 1

    assert _state(other) == before


def test_it_counts_only_the_retryable_among_a_mixed_selection(make: Any) -> None:
    rows = [
        make(MessageStatus.FAILED, reasons.RETRIES_EXHAUSTED),
        make(MessageStatus.FAILED, reasons.BAD_ADDRESS),
        make(MessageStatus.UNCONFIRMED, reasons.SEND_UNCONFIRMED),
        make(MessageStatus.SENT),
    ]

    count = messages_retry([row.pk for row in rows])

    assert count == 2
    assert [_state(row)[0] for row in rows] == ["deferred", "failed", "deferred", "sent"]


def test_it_wakes_the_due_tick_once_after_commit(
    make: Any, django_capture_on_commit_callbacks: Any
) -> None:
    email = make(MessageStatus.FAILED, reasons.RETRIES_EXHAUSTED)
    sms = make(MessageStatus.UNCONFIRMED, reasons.SEND_UNCONFIRMED, channel="sms")

    with django_capture_on_commit_callbacks() as callbacks:
        messages_retry([sms.pk, email.pk])

    (callback,) = callbacks
    assert callback is _wake


def test_nothing_to_retry_asks_nothing_of_the_database(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        assert messages_retry([]) == 0


def test_an_unknown_id_is_not_retried(make: Any) -> None:
    assert messages_retry([999_999]) == 0
