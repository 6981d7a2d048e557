"""The consent API under /api/v1/: a customer's subscriptions with their effective state, the
all-or-nothing PATCH with its evidence, and the consent ledger."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import AbstractUser
from rest_framework.test import APIClient

from consent.api.views import ConsentHistoryPagination
from consent.models import ConsentRecord, RegionPolicy, Subscription, Topic
from consent.services import Evidence, subscription_set
from customers.models import Customer
from tests.api_clients import token_client, user_with
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)
NOW_TEXT = "2026-03-04T12:00:00Z"
CHANNELS = ("email", "sms", "push", "in_app")
NO_PERMISSION = {"detail": "You do not have permission to perform this action."}
NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
NO_CUSTOMER = {"detail": "No customer with this id."}
OPT_OUT_RULE = {"mode": "opt_out", "requires_double_opt_in": False}


def make_user(username: str, *permissions: str, is_staff: bool = False) -> AbstractUser:
    return user_with("consent", username, *permissions, is_staff=is_staff)


@pytest.fixture
def reader() -> APIClient:
    return token_client(make_user("reader", "view_subscription", "view_consentrecord"))


@pytest.fixture
def editor() -> APIClient:
    """May read and change subscriptions, as the product's backend would."""
    return token_client(make_user("editor", "view_subscription", "change_subscription"))


@pytest.fixture
def topics() -> dict[str, Topic]:
    return {
        "tips": Topic.objects.create(key="tips", name="Tips"),
        "news": Topic.objects.create(key="news", name="News"),
        "receipts": Topic.objects.create(key="receipts", name="Receipts", is_transactional=True),
        "old": Topic.objects.create(key="old", name="Old", is_active=False),
    }


@pytest.fixture
def customer(topics: dict[str, Topic]) -> Customer:
    found: Customer = CustomerFactory(region="US")
    return found


@pytest.fixture
def german() -> Customer:
    """A customer of an opt-in region that asks for a double opt-in of email."""
    RegionPolicy.objects.create(region="DE", mode="opt_in", requires_double_opt_in=True)
    found: Customer = CustomerFactory(region="de")
    return found


def url(customer_id: int, what: str = "subscriptions") -> str:
    return f"/api/v1/customers/{customer_id}/{what}/"


def row(
    channel: str,
    topic: str,
    *,
    status: str = "unknown",
    effective: bool,
    updated_at: str | None = None,
) -> dict[str, Any]:
    names = {"tips": "Tips", "news": "News", "receipts": "Receipts"}
    return {
        "channel": channel,
        "topic": topic,
        "topic_name": names[topic],
        "is_transactional": topic == "receipts",
        "status": status,
        "effective": effective,
        "updated_at": updated_at,
    }


def effective(payload: dict[str, Any]) -> dict[tuple[str, str], tuple[str, bool]]:
    return {
        (item["channel"], item["topic"]): (item["status"], item["effective"])
        for item in payload["subscriptions"]
    }


def states(customer_id: int) -> dict[tuple[str, str], str]:
    return {
        (s.channel, s.topic.key): s.status
        for s in Subscription.objects.filter(customer_id=customer_id).select_related("topic")
    }


def patch(client: APIClient, customer_id: int, body: Any, **extra: Any) -> Any:
    return client.patch(url(customer_id), body, format="json", **extra)


def set_consent(customer: Customer, channel: str, topic: str | None, status: str) -> None:
    subscription_set(
        customer_id=customer.pk,
        channel=channel,
        topic_keys=None if topic is None else [topic],
        status=status,
        evidence=Evidence(source="admin"),
    )


# --- Authentication and permissions ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "what"),
    [("get", "subscriptions"), ("patch", "subscriptions"), ("get", "consent-history")],
)
def test_it_asks_for_credentials_when_there_is_no_token(
    customer: Customer, method: str, what: str
) -> None:
    response = getattr(APIClient(), method)(url(customer.pk, what), {}, format="json")

    assert (response.status_code, response.json()) == (401, NO_CREDENTIALS)
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "what"),
    [("get", "subscriptions"), ("patch", "subscriptions"), ("get", "consent-history")],
)
def test_it_forbids_a_user_without_the_permission(
    customer: Customer, method: str, what: str
) -> None:
    client = token_client(make_user("nobody"))

    response = getattr(client, method)(url(customer.pk, what), {}, format="json")

    assert (response.status_code, response.json()) == (403, NO_PERMISSION)


def test_a_reader_cannot_change_consent(customer: Customer, reader: APIClient) -> None:
    body = {"changes": [{"channel": "email", "topic": "tips", "status": "opted_in"}]}

    response = patch(reader, customer.pk, body)

    assert (response.status_code, response.json()) == (403, NO_PERMISSION)
    assert (Subscription.objects.count(), ConsentRecord.objects.count()) == (0, 0)


def test_being_staff_is_not_enough_to_change_consent(customer: Customer) -> None:
    client = token_client(make_user("staff", is_staff=True))
    body = {"changes": [{"channel": "email", "topic": "tips", "status": "opted_in"}]}

    assert client.get(url(customer.pk)).status_code == 200
    assert patch(client, customer.pk, body).status_code == 403
    assert ConsentRecord.objects.count() == 0


def test_changing_consent_does_not_let_a_user_read_it(customer: Customer) -> None:
    client = token_client(make_user("writer", "change_subscription"))

    response = client.get(url(customer.pk))

    assert (response.status_code, response.json()) == (403, NO_PERMISSION)


def test_the_history_needs_the_permission_to_view_the_ledger(customer: Customer) -> None:
    client = token_client(make_user("subscriptions only", "view_subscription"))

    assert client.get(url(customer.pk)).status_code == 200
    assert client.get(url(customer.pk, "consent-history")).status_code == 403


@pytest.mark.parametrize(
    ("method", "what"),
    [("get", "subscriptions"), ("patch", "subscriptions"), ("get", "consent-history")],
)
def test_an_unknown_customer_is_not_found(topics: dict[str, Topic], method: str, what: str) -> None:
    client = token_client(
        make_user("all", "view_subscription", "change_subscription", "view_consentrecord")
    )
    body = {"changes": [{"channel": "email", "topic": "tips", "status": "opted_in"}]}

    response = getattr(client, method)(url(999_999, what), body, format="json")

    assert (response.status_code, response.json()) == (404, NO_CUSTOMER)
    assert ConsentRecord.objects.count() == 0


# --- Reading subscriptions ------------------------------------------------------------------


def test_it_lists_every_active_topic_on_every_channel_with_the_region_rule(
    customer: Customer, reader: APIClient
) -> None:
    # given: two choices stored, everything else never chosen, in an opt-out region
    with time_machine.travel(NOW, tick=False):
        set_consent(customer, "email", "tips", "opted_out")
        set_consent(customer, "sms", "news", "opted_in")

    # when
    response = reader.get(url(customer.pk))

    # then: channel by channel, topics by name, the inactive topic left out
    assert response.status_code == 200
    assert response.json() == {
        "region": "US",
        "rule": OPT_OUT_RULE,
        "subscriptions": [
            row("email", "news", effective=True),
            row("email", "receipts", effective=True),
            row("email", "tips", status="opted_out", effective=False, updated_at=NOW_TEXT),
            row("sms", "news", status="opted_in", effective=True, updated_at=NOW_TEXT),
            row("sms", "receipts", effective=True),
            row("sms", "tips", effective=True),
            row("push", "news", effective=True),
            row("push", "receipts", effective=True),
            row("push", "tips", effective=True),
            row("in_app", "news", effective=True),
            row("in_app", "receipts", effective=True),
            row("in_app", "tips", effective=True),
        ],
    }


def test_unknown_consent_sends_no_marketing_in_an_opt_in_region_except_in_app(
    topics: dict[str, Topic], german: Customer, reader: APIClient
) -> None:
    set_consent(german, "sms", "tips", "opted_in")
    Subscription.objects.create(
        customer=german, channel="email", topic=topics["news"], status="pending"
    )

    response = reader.get(url(german.pk))

    payload = response.json()
    assert (payload["region"], payload["rule"]) == (
        "de",
        {"mode": "opt_in", "requires_double_opt_in": True},
    )
    assert effective(payload) == {
        ("email", "news"): ("pending", False),
        ("email", "receipts"): ("unknown", True),
        ("email", "tips"): ("unknown", False),
        ("sms", "news"): ("unknown", False),
        ("sms", "receipts"): ("unknown", True),
        ("sms", "tips"): ("opted_in", True),
        ("push", "news"): ("unknown", False),
        ("push", "receipts"): ("unknown", True),
        ("push", "tips"): ("unknown", False),
        ("in_app", "news"): ("unknown", True),
        ("in_app", "receipts"): ("unknown", True),
        ("in_app", "tips"): ("unknown", True),
    }


def test_an_opt_out_stops_marketing_in_an_opt_out_region_even_in_app(
    customer: Customer, reader: APIClient
) -> None:
    set_consent(customer, "in_app", None, "opted_out")

    payload = reader.get(url(customer.pk)).json()

    assert {k: v for k, v in effective(payload).items() if k[0] == "in_app"} == {
        ("in_app", "news"): ("opted_out", False),
        ("in_app", "receipts"): ("unknown", True),
        ("in_app", "tips"): ("opted_out", False),
    }


def test_a_region_without_a_policy_follows_the_default_mode(
    topics: dict[str, Topic], reader: APIClient, settings: Any
) -> None:
    settings.CONSENT_DEFAULT_MODE = "opt_in"
    customer = CustomerFactory(region="BR")

    payload = reader.get(url(customer.pk)).json()

    assert payload["rule"] == {"mode": "opt_in", "requires_double_opt_in": False}
    assert effective(payload)[("push", "tips")] == ("unknown", False)
    assert effective(payload)[("email", "tips")] == ("unknown", False)


def test_reading_subscriptions_takes_a_fixed_number_of_queries(
    customer: Customer, django_assert_num_queries: Any
) -> None:
    client = APIClient()
    client.force_authenticate(make_user("staff", is_staff=True))
    set_consent(customer, "email", None, "opted_in")

    # customer, region policy, subscriptions, topics
    with django_assert_num_queries(4):
        response = client.get(url(customer.pk))

    assert len(response.json()["subscriptions"]) == 12


# --- Changing subscriptions -----------------------------------------------------------------


def test_a_change_is_stored_with_its_evidence_and_answers_with_the_new_state(
    customer: Customer, editor: APIClient
) -> None:
    body = {
        "changes": [
            {"channel": "email", "topic": "tips", "status": "opted_in"},
            {"channel": "sms", "topic": "news", "status": "opted_out"},
        ],
        "wording": "Send me tips by email",
    }

    with time_machine.travel(NOW, tick=False):
        response = patch(editor, customer.pk, body, HTTP_USER_AGENT="acme-backend/2.1")

    assert response.status_code == 200
    assert response.json() == editor.get(url(customer.pk)).json()
    assert effective(response.json())[("email", "tips")] == ("opted_in", True)
    assert effective(response.json())[("sms", "news")] == ("opted_out", False)
    assert states(customer.pk) == {("email", "tips"): "opted_in", ("sms", "news"): "opted_out"}
    records = ConsentRecord.objects.order_by("id")
    assert [
        (r.channel, r.topic.key if r.topic else None, r.status, r.source, r.ip_address,
         r.user_agent, r.wording, r.actor.username if r.actor else None, r.created_at)
        for r in records
    ] == [
        ("email", "tips", "opted_in", "api", "127.0.0.1", "acme-backend/2.1",
         "Send me tips by email", "editor", NOW),
        ("sms", "news", "opted_out", "api", "127.0.0.1", "acme-backend/2.1",
         "Send me tips by email", "editor", NOW),
    ]  # fmt: skip


def test_a_null_topic_changes_every_active_marketing_topic_of_the_channel(
    customer: Customer, editor: APIClient
) -> None:
    body = {"changes": [{"channel": "push", "topic": None, "status": "opted_out"}]}

    response = patch(editor, customer.pk, body)

    assert response.status_code == 200
    assert states(customer.pk) == {("push", "news"): "opted_out", ("push", "tips"): "opted_out"}
    assert sorted(ConsentRecord.objects.values_list("channel", "topic__key", "status")) == [
        ("push", "news", "opted_out"),
        ("push", "tips", "opted_out"),
    ]
    assert effective(response.json())[("push", "receipts")] == ("unknown", True)


def test_an_email_opt_in_in_a_double_opt_in_region_waits_for_confirmation(
    topics: dict[str, Topic], german: Customer, editor: APIClient
) -> None:
    body = {"changes": [{"channel": "email", "topic": "tips", "status": "opted_in"}]}

    response = patch(editor, german.pk, body)

    assert effective(response.json())[("email", "tips")] == ("pending", False)
    assert states(german.pk) == {("email", "tips"): "pending"}


def test_a_change_to_the_status_already_stored_writes_no_ledger_row(
    customer: Customer, editor: APIClient
) -> None:
    set_consent(customer, "email", "tips", "opted_in")
    body = {"changes": [{"channel": "email", "topic": "tips", "status": "opted_in"}]}

    response = patch(editor, customer.pk, body)

    assert response.status_code == 200
    assert ConsentRecord.objects.count() == 1


def test_every_bad_item_is_reported_with_its_index_and_nothing_is_written(
    customer: Customer, editor: APIClient
) -> None:
    body = {
        "changes": [
            {"channel": "email", "topic": "tips", "status": "opted_in"},
            {"channel": "fax", "topic": "tips", "status": "opted_in"},
            {"channel": "sms", "topic": "nope", "status": "opted_out"},
            {"channel": "sms", "topic": "news", "status": "pending"},
            {"channel": "push", "topic": "receipts", "status": "opted_out"},
            {"channel": "push", "status": "opted_out"},
            "email",
            {"channel": "telegram", "topic": "gone", "status": "maybe"},
        ],
        "wording": "Tips?",
    }

    response = patch(editor, customer.pk, body)

    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {"index": 1, "field": "channel", "error": '"fax" is not a valid choice.'},
            {"index": 2, "field": "topic", "error": "No topic with this key."},
            {"index": 3, "field": "status", "error": '"pending" is not a valid choice.'},
            {
                "index": 4,
                "field": "topic",
                "error": "A transactional topic is sent without marketing consent; it has "
                "none to change.",
            },
            {"index": 5, "field": "topic", "error": "This field is required."},
            {
                "index": 6,
                "field": None,
                "error": "Invalid data. Expected a dictionary, but got str.",
            },
            {"index": 7, "field": "channel", "error": '"telegram" is not a valid choice.'},
            {"index": 7, "field": "topic", "error": "No topic with this key."},
            {"index": 7, "field": "status", "error": '"maybe" is not a valid choice.'},
        ]
    }
    assert (Subscription.objects.count(), ConsentRecord.objects.count()) == (0, 0)


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, [{"index": None, "field": "changes", "error": "This field is required."}]),
        (
            {"changes": []},
            [{"index": None, "field": "changes", "error": "This list may not be empty."}],
        ),
        (
            {"changes": {"channel": "email"}},
            [
                {
                    "index": None,
                    "field": "changes",
                    "error": 'Expected a list of items but got type "dict".',
                }
            ],
        ),
        (
            {"changes": [{"channel": "email", "topic": "tips", "status": "opted_in"}] * 101},
            [
                {
                    "index": None,
                    "field": "changes",
                    "error": "Ensure this field has no more than 100 elements.",
                }
            ],
        ),
        (
            ["email"],
            [
                {
                    "index": None,
                    "field": None,
                    "error": "Invalid data. Expected a dictionary, but got list.",
                }
            ],
        ),
        (
            {
                "changes": [{"channel": "email", "topic": "tips", "status": "opted_in"}],
                "wording": ["x"],
            },
            [{"index": None, "field": "wording", "error": "Not a valid string."}],
        ),
    ],
)
def test_a_malformed_body_is_reported_in_the_same_shape(
    customer: Customer, editor: APIClient, body: Any, errors: list[dict[str, Any]]
) -> None:
    response = patch(editor, customer.pk, body)

    assert (response.status_code, response.json()) == (400, {"errors": errors})
    assert ConsentRecord.objects.count() == 0


def test_the_changes_are_one_transaction(
    customer: Customer, editor: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the second change fails after the first one was written
    calls: list[str] = []

    def second_fails(**kwargs: Any) -> list[Subscription]:
        calls.append(kwargs["channel"])
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return subscription_set(**kwargs)

    monkeypatch.setattr("consent.api.views.subscription_set", second_fails)
    body = {
        "changes": [
            {"channel": "email", "topic": "tips", "status": "opted_in"},
            {"channel": "sms", "topic": "tips", "status": "opted_in"},
        ]
    }

    # when
    with pytest.raises(RuntimeError):
        patch(editor, customer.pk, body)

    # then: the first change is gone with the second
    assert calls == ["email", "sms"]
    assert (Subscription.objects.count(), ConsentRecord.objects.count()) == (0, 0)


def test_the_put_method_is_not_allowed(customer: Customer, editor: APIClient) -> None:
    response = editor.put(url(customer.pk), {"changes": []}, format="json")

    assert response.status_code == 405


# --- The consent history --------------------------------------------------------------------


def test_the_history_lists_ledger_rows_newest_first_with_their_evidence(
    customer: Customer, reader: APIClient, editor: APIClient
) -> None:
    # given: a change through the API, then an SMS STOP for every topic
    with time_machine.travel(NOW, tick=False):
        patch(
            editor,
            customer.pk,
            {
                "changes": [{"channel": "email", "topic": "tips", "status": "opted_in"}],
                "wording": "Tips by email?",
            },
            HTTP_USER_AGENT="acme/1",
        )
    with time_machine.travel(NOW + dt.timedelta(hours=1), tick=False):
        subscription_set(
            customer_id=customer.pk,
            channel="sms",
            topic_keys=None,
            status="opted_out",
            evidence=Evidence(source="sms_keyword", wording="STOP"),
        )
    ConsentRecord.objects.create(
        customer=customer, channel="sms", topic=None, status="opted_out",
        source="sms_keyword", created_at=NOW + dt.timedelta(hours=2),
    )  # fmt: skip
    other = CustomerFactory()
    set_consent(other, "email", "tips", "opted_in")

    # when
    response = reader.get(url(customer.pk, "consent-history"))

    # then
    assert response.status_code == 200
    sms = {
        "channel": "sms",
        "status": "opted_out",
        "source": "sms_keyword",
        "ip_address": None,
        "user_agent": "",
        "actor": None,
    }
    assert response.json() == {
        "next": None,
        "previous": None,
        "results": [
            {**sms, "topic": None, "wording": "", "created_at": "2026-03-04T14:00:00Z"},
            # one instant: the later row (topics in id order) first
            {**sms, "topic": "news", "wording": "STOP", "created_at": "2026-03-04T13:00:00Z"},
            {**sms, "topic": "tips", "wording": "STOP", "created_at": "2026-03-04T13:00:00Z"},
            {
                "channel": "email",
                "topic": "tips",
                "status": "opted_in",
                "source": "api",
                "ip_address": "127.0.0.1",
                "user_agent": "acme/1",
                "wording": "Tips by email?",
                "actor": "editor",
                "created_at": NOW_TEXT,
            },
        ],
    }


def test_the_history_is_paginated_by_cursor(
    customer: Customer, reader: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ConsentHistoryPagination, "page_size", 2)
    for hour in range(5):
        ConsentRecord.objects.create(
            customer=customer, channel="email", topic=None, status="opted_out",
            source="admin", wording=f"hour {hour}", created_at=NOW + dt.timedelta(hours=hour),
        )  # fmt: skip

    seen: list[str] = []
    page = reader.get(url(customer.pk, "consent-history")).json()
    seen += [item["wording"] for item in page["results"]]
    while page["next"]:
        page = reader.get(page["next"]).json()
        seen += [item["wording"] for item in page["results"]]

    assert seen == ["hour 4", "hour 3", "hour 2", "hour 1", "hour 0"]
