"""The messaging API under /api/v1/: the in-app inbox with read and dismiss, and a customer's
messages with why each went out or not."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import AbstractUser
from rest_framework.test import APIClient

from consent.models import Topic
from customers.models import Customer, Event
from messaging.api.views import MessageCursorPagination
from messaging.models import Message, Template
from tests.api_clients import token_client, user_with
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)
NO_PERMISSION = {"detail": "You do not have permission to perform this action."}
NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
NO_CUSTOMER = {"detail": "No customer with this id."}
NOT_IN_INBOX = {"detail": "No in-app message with this id in this customer's inbox."}
RENDERED = {"title": "Tips", "body": "3 tips", "cta_label": "Open", "cta_url": "app://tips"}

_keys = itertools.count()


def make_user(username: str, *permissions: str, is_staff: bool = False) -> AbstractUser:
    return user_with("messaging", username, *permissions, is_staff=is_staff)


@pytest.fixture
def reader() -> APIClient:
    return token_client(make_user("reader", "view_message"))


@pytest.fixture
def product() -> APIClient:
    """The product's backend: reads the inbox and marks messages read or dismissed."""
    return token_client(make_user("product", "view_message", "change_message"))


@pytest.fixture
def make_message(topics: dict[str, Topic]) -> Callable[..., Message]:
    """An in-app message that went out, unless told otherwise."""

    def _make(customer: Customer, **fields: Any) -> Message:
        fields.setdefault("channels", ["in_app"])
        fields.setdefault("channel", "in_app")
        fields.setdefault("status", "sent")
        fields.setdefault("rendered", RENDERED)
        fields.setdefault("created_at", T0)
        topic = topics[fields.pop("topic", "tips")]
        message: Message = Message.objects.create(
            idempotency_key=f"test-{next(_keys)}", customer=customer, topic=topic, **fields
        )
        return message

    return _make


def inbox_item(message: Message, **changes: Any) -> dict[str, Any]:
    return {
        "id": message.pk,
        **RENDERED,
        "topic": "tips",
        "journey_key": "",
        "created_at": "2026-03-04T12:00:00Z",
        "read_at": None,
        **changes,
    }


def inbox_url(customer: Customer) -> str:
    return f"/api/v1/customers/{customer.pk}/inbox/"


def action_url(customer: Customer, message: Message | int, action: str) -> str:
    message_id = message if isinstance(message, int) else message.pk
    return f"/api/v1/customers/{customer.pk}/inbox/{message_id}/{action}/"


def messages_url(customer: Customer) -> str:
    return f"/api/v1/customers/{customer.pk}/messages/"


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.json()
    return [item["id"] for item in response.json()["results"]]


# --- Authentication and permissions ---------------------------------------------------------

PATHS = (
    ("get", "inbox/"),
    ("get", "messages/"),
    ("post", "inbox/{message}/read/"),
    ("post", "inbox/{message}/dismiss/"),
)


@pytest.mark.parametrize(("method", "path"), PATHS)
def test_it_asks_for_credentials_when_there_is_no_token(
    customer: Customer, make_message: Callable[..., Message], method: str, path: str
) -> None:
    message = make_message(customer)
    full = f"/api/v1/customers/{customer.pk}/" + path.format(message=message.pk)

    response = getattr(APIClient(), method)(full)

    assert (response.status_code, response.json()) == (401, NO_CREDENTIALS)
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), PATHS)
def test_it_forbids_a_user_without_the_permission(
    customer: Customer, make_message: Callable[..., Message], method: str, path: str
) -> None:
    message = make_message(customer)
    full = f"/api/v1/customers/{customer.pk}/" + path.format(message=message.pk)

    response = getattr(token_client(make_user("nobody")), method)(full)

    assert (response.status_code, response.json()) == (403, NO_PERMISSION)


@pytest.mark.parametrize("action", ["read", "dismiss"])
def test_a_reader_cannot_mark_messages(
    customer: Customer, make_message: Callable[..., Message], reader: APIClient, action: str
) -> None:
    message = make_message(customer)

    response = reader.post(action_url(customer, message, action))

    assert (response.status_code, response.json()) == (403, NO_PERMISSION)
    message.refresh_from_db()
    assert (message.read_at, message.dismissed_at, message.status) == (None, None, "sent")


def test_a_staff_user_reads_but_needs_the_permission_to_mark(
    customer: Customer, make_message: Callable[..., Message]
) -> None:
    message = make_message(customer)
    client = token_client(make_user("staff", is_staff=True))

    assert client.get(inbox_url(customer)).status_code == 200
    assert client.get(messages_url(customer)).status_code == 200
    assert client.post(action_url(customer, message, "read")).status_code == 403


@pytest.mark.parametrize("path", ["inbox", "messages"])
def test_an_unknown_customer_is_not_found(topics: dict[str, Topic], path: str) -> None:
    client = token_client(make_user("reader", "view_message"))

    response = client.get(f"/api/v1/customers/999999/{path}/")

    assert (response.status_code, response.json()) == (404, NO_CUSTOMER)


# --- The inbox ------------------------------------------------------------------------------


def test_the_inbox_lists_in_app_messages_that_went_out_newest_first(
    customer: Customer, make_message: Callable[..., Message], reader: APIClient
) -> None:
    # given: what belongs in the inbox
    older = make_message(customer, created_at=T0 - dt.timedelta(hours=1))
    read = make_message(customer, status="opened", read_at=T0 + dt.timedelta(minutes=5))
    clicked = make_message(customer, status="clicked", created_at=T0 + dt.timedelta(hours=1))
    # ... and what does not
    make_message(customer, dismissed_at=T0)
    make_message(customer, status="suppressed", reason="no_consent", channel="", rendered={})
    make_message(customer, status="queued")
    make_message(customer, channels=["email"], channel="email", to_address="ada@example.com")
    make_message(CustomerFactory())

    # when
    response = reader.get(inbox_url(customer))

    # then
    assert response.status_code == 200
    assert response.json() == {
        "next": None,
        "previous": None,
        "results": [
            inbox_item(clicked, created_at="2026-03-04T13:00:00Z"),
            inbox_item(read, read_at="2026-03-04T12:05:00Z"),
            inbox_item(older, created_at="2026-03-04T11:00:00Z"),
        ],
    }


def test_the_inbox_can_list_only_unread_messages(
    customer: Customer, make_message: Callable[..., Message], reader: APIClient
) -> None:
    unread = make_message(customer)
    read = make_message(customer, status="opened", read_at=T0)

    assert ids(reader.get(inbox_url(customer), {"unread": "true"})) == [unread.pk]
    assert ids(reader.get(inbox_url(customer), {"unread": "false"})) == [read.pk, unread.pk]
    assert ids(reader.get(inbox_url(customer))) == [read.pk, unread.pk]


def test_the_inbox_rejects_a_bad_unread_value(customer: Customer, reader: APIClient) -> None:
    response = reader.get(inbox_url(customer), {"unread": "perhaps"})

    assert (response.status_code, response.json()) == (
        400,
        {"unread": ["Must be a valid boolean."]},
    )


def test_a_message_without_some_rendered_parts_shows_them_empty(
    customer: Customer, make_message: Callable[..., Message], reader: APIClient
) -> None:
    message = make_message(customer, rendered={"title": "Hi", "body": "Yo"})

    (item,) = reader.get(inbox_url(customer)).json()["results"]

    assert item == inbox_item(message, title="Hi", body="Yo", cta_label="", cta_url="")


@pytest.mark.parametrize("path", ["inbox", "messages"])
def test_the_lists_are_paginated_by_cursor_with_ties_kept_in_order(
    customer: Customer,
    make_message: Callable[..., Message],
    reader: APIClient,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    monkeypatch.setattr(MessageCursorPagination, "page_size", 2)
    made = [make_message(customer, created_at=T0 + dt.timedelta(minutes=i // 2)) for i in range(5)]

    seen: list[int] = []
    page = reader.get(f"/api/v1/customers/{customer.pk}/{path}/").json()
    seen += [item["id"] for item in page["results"]]
    pages = 1
    while page["next"]:
        page = reader.get(page["next"]).json()
        seen += [item["id"] for item in page["results"]]
        pages += 1

    assert (seen, pages) == ([m.pk for m in reversed(made)], 3)


def test_reading_the_inbox_takes_a_fixed_number_of_queries(
    customer: Customer, make_message: Callable[..., Message], django_assert_num_queries: Any
) -> None:
    for _ in range(3):
        make_message(customer)
    client = APIClient()
    client.force_authenticate(make_user("staff", is_staff=True))

    # the customer exists, the page with its topics
    with django_assert_num_queries(2):
        assert len(ids(client.get(inbox_url(customer)))) == 3


# --- Read and dismiss -----------------------------------------------------------------------


def test_reading_a_message_marks_it_read_and_records_it_opened_once(
    customer: Customer, make_message: Callable[..., Message], product: APIClient
) -> None:
    message = make_message(customer)

    # when: read twice, an hour apart
    with time_machine.travel(T0 + dt.timedelta(minutes=10), tick=False):
        first = product.post(action_url(customer, message, "read"))
    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False):
        second = product.post(action_url(customer, message, "read"))

    # then: the first time is kept, and there is one open on the message and the timeline
    assert (first.status_code, second.status_code) == (204, 204)
    message.refresh_from_db()
    read_at = T0 + dt.timedelta(minutes=10)
    assert (message.read_at, message.opened_at, message.status, message.dismissed_at) == (
        read_at,
        read_at,
        "opened",
        None,
    )
    event = Event.objects.get()
    assert (event.customer_id, event.name, event.occurred_at, event.message_id) == (
        customer.pk,
        "In-App Opened",
        read_at,
        f"milepost:message:{message.pk}:opened",
    )
    assert event.properties == {
        "message_id": message.pk,
        "channel": "in_app",
        "topic": "tips",
        "template": "",
        "journey": "",
    }
    item = product.get(inbox_url(customer)).json()["results"][0]
    assert item["read_at"] == "2026-03-04T12:10:00Z"


def test_dismissing_a_message_takes_it_out_of_the_inbox_once(
    customer: Customer, make_message: Callable[..., Message], product: APIClient
) -> None:
    message = make_message(customer)
    kept = make_message(customer)

    with time_machine.travel(T0 + dt.timedelta(minutes=10), tick=False):
        first = product.post(action_url(customer, message, "dismiss"))
    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False):
        second = product.post(action_url(customer, message, "dismiss"))

    assert (first.status_code, second.status_code) == (204, 204)
    message.refresh_from_db()
    assert (message.dismissed_at, message.read_at, message.status) == (
        T0 + dt.timedelta(minutes=10),
        None,
        "sent",
    )
    assert ids(product.get(inbox_url(customer))) == [kept.pk]
    assert Event.objects.count() == 0


def test_a_dismissed_message_can_still_be_read(
    customer: Customer, make_message: Callable[..., Message], product: APIClient
) -> None:
    message = make_message(customer, dismissed_at=T0)

    response = product.post(action_url(customer, message, "read"))

    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == "opened"


@pytest.mark.parametrize("action", ["read", "dismiss"])
def test_only_this_customers_in_app_messages_that_went_out_can_be_marked(
    customer: Customer, make_message: Callable[..., Message], product: APIClient, action: str
) -> None:
    # given
    others = make_message(CustomerFactory())
    email = make_message(customer, channels=["email"], channel="email")
    suppressed = make_message(customer, status="suppressed", reason="no_consent", channel="")
    queued = make_message(customer, status="queued")

    # when
    responses = [
        product.post(action_url(customer, message, action))
        for message in (others, email, suppressed, queued, 999_999)
    ]

    # then
    assert [(r.status_code, r.json()) for r in responses] == [(404, NOT_IN_INBOX)] * 5
    assert set(Message.objects.values_list("read_at", "dismissed_at", "opened_at")) == {
        (None, None, None)
    }
    assert Event.objects.count() == 0


# --- A customer's messages ------------------------------------------------------------------


def test_the_messages_list_says_why_each_message_went_out_or_not(
    customer: Customer,
    make_message: Callable[..., Message],
    templates: dict[str, Template],
    reader: APIClient,
) -> None:
    # given: an in-app message read, a marketing email stopped by consent, a deferred push
    version = templates["in_app"].active_version
    assert version is not None
    sent = make_message(
        customer,
        status="opened",
        template_version=version,
        templates={"in_app": version.pk},
        journey_key="onboarding",
        to_address=str(customer.pk),
        explanation=[{"channel": "in_app", "reason": "", "detail": ""}],
        sent_at=T0,
        delivered_at=T0,
        opened_at=T0 + dt.timedelta(minutes=1),
        read_at=T0 + dt.timedelta(minutes=1),
    )
    stopped = make_message(
        customer,
        channels=["email", "sms"],
        channel="",
        status="suppressed",
        reason="no_consent",
        explanation=[
            {"channel": "email", "reason": "no_consent", "detail": "opted_out (opt_out region)"},
            {"channel": "sms", "reason": "unreachable", "detail": ""},
        ],
        rendered={},
        created_at=T0 + dt.timedelta(hours=1),
    )
    deferred = make_message(
        customer,
        channels=["push"],
        channel="push",
        status="deferred",
        reason="quiet_hours_deferred",
        topic="receipts",
        is_transactional=True,
        send_after=T0 + dt.timedelta(hours=9),
        error="",
        created_at=T0 + dt.timedelta(hours=2),
    )
    make_message(CustomerFactory())

    # when
    response = reader.get(messages_url(customer))

    # then
    assert response.status_code == 200
    nothing_yet = {
        "template": None,
        "template_version": None,
        "journey_key": "",
        "to_address": "",
        "error": "",
        "sent_at": None,
        "delivered_at": None,
        "opened_at": None,
        "clicked_at": None,
        "failed_at": None,
    }
    assert response.json() == {
        "next": None,
        "previous": None,
        "results": [
            {
                **nothing_yet,
                "id": deferred.pk,
                "channels": ["push"],
                "channel": "push",
                "status": "deferred",
                "reason": "quiet_hours_deferred",
                "explanation": [],
                "topic": "receipts",
                "is_transactional": True,
                "send_after": "2026-03-04T21:00:00Z",
                "created_at": "2026-03-04T14:00:00Z",
            },
            {
                **nothing_yet,
                "id": stopped.pk,
                "channels": ["email", "sms"],
                "channel": "",
                "status": "suppressed",
                "reason": "no_consent",
                "explanation": [
                    {
                        "channel": "email",
                        "reason": "no_consent",
                        "detail": "opted_out (opt_out region)",
                    },
                    {"channel": "sms", "reason": "unreachable", "detail": ""},
                ],
                "topic": "tips",
                "is_transactional": False,
                "send_after": None,
                "created_at": "2026-03-04T13:00:00Z",
            },
            {
                **nothing_yet,
                "id": sent.pk,
                "channels": ["in_app"],
                "channel": "in_app",
                "status": "opened",
                "reason": "",
                "explanation": [{"channel": "in_app", "reason": "", "detail": ""}],
                "topic": "tips",
                "is_transactional": False,
                "template": "tips-in_app",
                "template_version": 1,
                "journey_key": "onboarding",
                "to_address": str(customer.pk),
                "send_after": None,
                "created_at": "2026-03-04T12:00:00Z",
                "sent_at": "2026-03-04T12:00:00Z",
                "delivered_at": "2026-03-04T12:00:00Z",
                "opened_at": "2026-03-04T12:01:00Z",
            },
        ],
    }


def test_reading_the_messages_takes_a_fixed_number_of_queries(
    customer: Customer,
    make_message: Callable[..., Message],
    templates: dict[str, Template],
    django_assert_num_queries: Any,
) -> None:
    for template in templates.values():
        make_message(customer, template_version=template.active_version)
    client = APIClient()
    client.force_authenticate(make_user("staff", is_staff=True))

    # the customer exists, the page with its topics and templates
    with django_assert_num_queries(2):
        assert len(ids(client.get(messages_url(customer)))) == 4
