"""The journeys API under /api/v1/: auth, the journey list and detail with their enrollment
counts, and a customer's enrollments with the step history the runner wrote."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import AbstractUser
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from consent.models import Topic
from customers.models import Customer
from journeys.api.views import EnrollmentCursorPagination
from journeys.enrollment import Entry, enroll
from journeys.graph import SplitStep, graph_parse, split_variant
from journeys.models import Enrollment, Journey
from journeys.runner import enrollments_advance
from journeys.services import journey_archive, journey_go_live, journey_pause, journey_save
from messaging.models import Message
from messaging.templating import template_activate, template_save
from tests.api_clients import token_client, user_with
from tests.factories import CustomerFactory
from tests.journeys.conftest import MISSED, STEPS

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
NOW_TEXT = "2026-03-04T12:00:00Z"
NO_PERMISSION = {"detail": "You do not have permission to perform this action."}
NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
NO_CUSTOMER = {"detail": "No customer with this id."}
ZERO = {"active": 0, "waiting": 0, "completed": 0, "exited": 0, "holdout": 0, "failed": 0}
SPLIT_SEND_WAIT_EXIT: list[dict[str, Any]] = [
    {
        "key": "ab",
        "type": "split",
        "variants": [
            {"name": "A", "weight": 1, "next": "nudge"},
            {"name": "B", "weight": 1, "next": "nudge"},
        ],
    },
    {"key": "nudge", "type": "send", "templates": ["setup-help"], "next": "pause"},
    {"key": "pause", "type": "wait", "duration": {"days": 2}, "next": "done"},
    {"key": "done", "type": "exit"},
]


def make_user(username: str, *permissions: str, is_staff: bool = False) -> AbstractUser:
    return user_with("journeys", username, *permissions, is_staff=is_staff)


@pytest.fixture(autouse=True)
def _at_now() -> Iterator[None]:
    """Journeys and versions stamp ``timezone.now()``; the runner is given ``now`` too."""
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def reader() -> APIClient:
    return token_client(make_user("reader", "view_journey", "view_enrollment"))


@pytest.fixture
def staff_api() -> APIClient:
    # Authentication is forced so that query-count pins count only the endpoint's own queries.
    client = APIClient()
    client.force_authenticate(make_user("staff", is_staff=True))
    return client


@pytest.fixture
def customer(db: None) -> Customer:
    return CustomerFactory(phone="+14155550100", time_zone="UTC", plan="pro")


def live(key: str = "setup-nudge", steps: list[Any] = STEPS, **fields: Any) -> Journey:
    fields.setdefault("name", "Setup nudge")
    fields.setdefault("trigger", MISSED)
    journey = journey_save(key=key, steps=steps, **fields)
    journey_go_live(journey_id=journey.pk)
    journey.refresh_from_db()
    return journey


def missed(customer: Customer, entry_key: str = "outcome:1") -> Entry:
    return Entry(customer.pk, "milestone_missed", "activated", entry_key, NOW)


def enrollments_url(customer: Customer | int) -> str:
    customer_id = customer if isinstance(customer, int) else customer.pk
    return f"/api/v1/customers/{customer_id}/enrollments/"


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.json()
    return response.json()


# --- Authentication and permissions ---------------------------------------------------------

PATHS = ("/api/v1/journeys/", "/api/v1/journeys/setup-nudge/", "enrollments")


def _url(path: str, customer: Customer) -> str:
    return enrollments_url(customer) if path == "enrollments" else path


@pytest.mark.parametrize("path", PATHS)
def test_it_asks_for_credentials_when_there_is_no_token(
    ready: None, customer: Customer, path: str
) -> None:
    live()

    response = APIClient().get(_url(path, customer))

    assert (response.status_code, response.json()) == (401, NO_CREDENTIALS)
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("path", PATHS)
def test_it_forbids_a_user_without_the_view_permission(
    ready: None, customer: Customer, path: str
) -> None:
    live()
    client = token_client(make_user("nobody", "change_journey", "change_enrollment"))

    response = client.get(_url(path, customer))

    assert (response.status_code, response.json()) == (403, NO_PERMISSION)


@pytest.mark.parametrize(
    ("path", "permission", "other"),
    [
        ("/api/v1/journeys/", "view_journey", "view_enrollment"),
        ("/api/v1/journeys/setup-nudge/", "view_journey", "view_enrollment"),
        ("enrollments", "view_enrollment", "view_journey"),
    ],
)
def test_each_endpoint_needs_its_own_models_view_permission(
    ready: None, customer: Customer, path: str, permission: str, other: str
) -> None:
    live()
    url = _url(path, customer)

    refused = token_client(make_user("other", other)).get(url)
    allowed = token_client(make_user("holder", permission)).get(url)

    assert (refused.status_code, refused.json()) == (403, NO_PERMISSION)
    assert allowed.status_code == 200


@pytest.mark.parametrize("path", PATHS)
def test_a_staff_user_reads_without_model_permissions(
    ready: None, customer: Customer, path: str
) -> None:
    live()

    response = token_client(make_user("staff", is_staff=True)).get(_url(path, customer))

    assert response.status_code == 200


def test_it_refuses_writes_even_to_staff(ready: None, staff_api: APIClient) -> None:
    live()

    created = staff_api.post("/api/v1/journeys/", {"key": "new"}, format="json")
    deleted = staff_api.delete("/api/v1/journeys/setup-nudge/")

    assert (created.status_code, created.json()) == (403, NO_PERMISSION)
    assert (deleted.status_code, deleted.json()) == (403, NO_PERMISSION)
    assert list(Journey.objects.values_list("key", flat=True)) == ["setup-nudge"]


# --- The journey list -------------------------------------------------------------------------


def test_the_list_shows_each_journey_by_key_with_its_active_versions_enrollment_counts(
    ready: None, reader: APIClient
) -> None:
    # given a live journey with one enrollment run to its end and one not run yet, and a draft
    live(priority=5)
    finished, active = CustomerFactory(), CustomerFactory()
    enroll([missed(finished, "outcome:1")], now=NOW)
    enrollments_advance(now=NOW)
    enroll([missed(active, "outcome:2")], now=NOW)
    journey_save(
        key="a-draft", name="A draft", trigger={"kind": "event", "event": "Signed Up"}, steps=STEPS
    )

    # when
    body = ok(reader.get("/api/v1/journeys/"))

    # then
    assert body == {
        "count": 2,
        "next": None,
        "previous": None,
        "results": [
            {
                "key": "a-draft",
                "name": "A draft",
                "description": "",
                "status": "draft",
                "trigger": {"kind": "event", "event": "Signed Up"},
                "priority": 0,
                "holdout_percent": "0.00",
                "active_version": None,
                "enrollment_counts": None,
                "created_at": NOW_TEXT,
                "updated_at": NOW_TEXT,
            },
            {
                "key": "setup-nudge",
                "name": "Setup nudge",
                "description": "",
                "status": "live",
                "trigger": MISSED,
                "priority": 5,
                "holdout_percent": "0.00",
                "active_version": 1,
                "enrollment_counts": {**ZERO, "active": 1, "completed": 1},
                "created_at": NOW_TEXT,
                "updated_at": NOW_TEXT,
            },
        ],
    }


def test_the_counts_are_the_active_versions_only(ready: None, reader: APIClient) -> None:
    # given an enrollment on version 1, then version 2 live
    live()
    enroll([missed(CustomerFactory())], now=NOW)
    live(priority=1)

    # when
    (item,) = ok(reader.get("/api/v1/journeys/"))["results"]

    # then
    assert (item["active_version"], item["enrollment_counts"]) == (2, ZERO)
    assert Enrollment.objects.get().version.number == 1


def test_the_list_filters_by_status(ready: None, reader: APIClient) -> None:
    live("live-one")
    journey_pause(journey_id=live("paused-one").pk)
    journey_save(key="draft-one", name="Draft", trigger=MISSED, steps=STEPS)
    journey_archive(journey_id=live("archived-one").pk)

    def keys(status: str) -> list[str]:
        return [
            item["key"] for item in ok(reader.get(f"/api/v1/journeys/?status={status}"))["results"]
        ]

    assert (keys("live"), keys("paused"), keys("draft"), keys("archived")) == (
        ["live-one"],
        ["paused-one"],
        ["draft-one"],
        ["archived-one"],
    )


def test_an_unknown_status_is_a_bad_request(reader: APIClient) -> None:
    response = reader.get("/api/v1/journeys/?status=running")

    assert (response.status_code, response.json()) == (
        400,
        {"status": ["Select a valid choice. running is not one of the available choices."]},
    )


def test_the_list_takes_three_queries_however_many_journeys(
    ready: None, staff_api: APIClient
) -> None:
    # a count, the page (active versions joined), and one aggregate for all the counts
    for key in ("one", "two", "three"):
        live(key)
    enroll([missed(CustomerFactory())], now=NOW)

    with CaptureQueriesContext(connection) as queries:
        body = ok(staff_api.get("/api/v1/journeys/"))

    assert len(queries) == 3
    assert [item["enrollment_counts"]["active"] for item in body["results"]] == [1, 1, 1]


# --- The journey detail -----------------------------------------------------------------------


def test_the_detail_shows_the_working_copy_the_live_definition_and_the_versions(
    ready: None, reader: APIClient
) -> None:
    # given version 1, version 2 live with one customer enrolled, then a working-copy edit
    live(description="Nudge who missed activation")
    live(
        exit_when=[{"event": "Unsubscribed"}],
        goal={"milestone": "activated", "within": {"days": 14}},
    )
    enroll([missed(CustomerFactory())], now=NOW)
    journey_save(key="setup-nudge", priority=9, entry_rules={"plans": ["pro"]})

    # when
    body = ok(reader.get("/api/v1/journeys/setup-nudge/"))

    # then
    definition = {
        "trigger": MISSED,
        "entry_rules": {},
        "reentry": "never",
        "reentry_days": None,
        "priority": 0,
        "holdout_percent": "0.00",
        "steps": STEPS,
        "goal": {"milestone": "activated", "within": {"days": 14}},
        "exit_when": [{"event": "Unsubscribed"}],
    }
    assert body == {
        "key": "setup-nudge",
        "name": "Setup nudge",
        "description": "Nudge who missed activation",
        "status": "live",
        **definition,
        "entry_rules": {"plans": ["pro"]},
        "priority": 9,
        "active_version": 2,
        "enrollment_counts": {**ZERO, "active": 1},
        "active_definition": {
            "number": 2,
            "created_at": NOW_TEXT,
            "created_by": None,
            **definition,
        },
        "versions": [
            {"number": 2, "created_at": NOW_TEXT, "created_by": None},
            {"number": 1, "created_at": NOW_TEXT, "created_by": None},
        ],
        "created_at": NOW_TEXT,
        "updated_at": NOW_TEXT,
    }


def test_a_draft_has_no_live_definition_nor_counts(reader: APIClient) -> None:
    journey_save(key="draft-one", name="Draft", trigger=MISSED, steps=STEPS)

    body = ok(reader.get("/api/v1/journeys/draft-one/"))

    assert (
        body["status"],
        body["active_version"],
        body["enrollment_counts"],
        body["active_definition"],
        body["versions"],
    ) == ("draft", None, None, None, [])


def test_the_detail_names_who_made_each_version(ready: None, reader: APIClient) -> None:
    journey = journey_save(key="setup-nudge", name="Setup nudge", trigger=MISSED, steps=STEPS)
    journey_go_live(journey_id=journey.pk, user=make_user("editor"))

    body = ok(reader.get("/api/v1/journeys/setup-nudge/"))

    assert (body["active_definition"]["created_by"], body["versions"]) == (
        "editor",
        [{"number": 1, "created_at": NOW_TEXT, "created_by": "editor"}],
    )


def test_an_unknown_journey_is_not_found(reader: APIClient) -> None:
    response = reader.get("/api/v1/journeys/nope/")

    assert (response.status_code, response.json()) == (
        404,
        {"detail": "No Journey matches the given query."},
    )


def test_the_detail_takes_three_queries(ready: None, staff_api: APIClient) -> None:
    # the journey with its active version, the versions with their makers, the counts
    live()
    live(priority=1)

    with CaptureQueriesContext(connection) as queries:
        ok(staff_api.get("/api/v1/journeys/setup-nudge/"))

    assert len(queries) == 3


# --- A customer's enrollments -----------------------------------------------------------------


def test_an_enrollment_shows_its_step_history_as_the_runner_wrote_it(
    ready: None, reader: APIClient, customer: Customer
) -> None:
    # given an enrollment run through its split and send, now waiting
    live(steps=SPLIT_SEND_WAIT_EXIT)
    (enrollment,) = enroll([missed(customer)], now=NOW)
    enrollments_advance(now=NOW)
    message = Message.objects.get()
    split = graph_parse(SPLIT_SEND_WAIT_EXIT).step("ab")
    assert isinstance(split, SplitStep)
    variant = split_variant("setup-nudge", "ab", customer.pk, split.variants).name

    # when
    body = ok(reader.get(enrollments_url(customer)))

    # then
    assert body == {
        "next": None,
        "previous": None,
        "results": [
            {
                "id": enrollment.pk,
                "journey": "setup-nudge",
                "version": 1,
                "state": "waiting",
                "current_step": "pause",
                "entered_at": NOW_TEXT,
                "next_run_at": "2026-03-06T12:00:00Z",
                "finished_at": None,
                "exit_reason": "",
                "converted_at": None,
                "variants": {"ab": variant},
                "steps": [
                    {
                        "step_key": "ab",
                        "attempt": 1,
                        "status": "done",
                        "result": {"variant": variant},
                        "at": NOW_TEXT,
                        "message": None,
                    },
                    {
                        "step_key": "nudge",
                        "attempt": 1,
                        "status": "done",
                        "result": {"templates": ["setup-help"]},
                        "at": NOW_TEXT,
                        "message": {
                            "id": message.pk,
                            "status": "queued",
                            "channel": "sms",
                            "reason": "",
                        },
                    },
                ],
            }
        ],
    }


def test_a_finished_enrollment_shows_every_step_in_the_order_run(
    ready: None, reader: APIClient, customer: Customer
) -> None:
    # given an enrollment run to its end: sent, waited two days, exited
    live(steps=SPLIT_SEND_WAIT_EXIT)
    enroll([missed(customer)], now=NOW)
    enrollments_advance(now=NOW)
    enrollments_advance(now=NOW + 2 * DAY)

    # when
    (item,) = ok(reader.get(enrollments_url(customer)))["results"]

    # then
    assert (item["state"], item["current_step"], item["next_run_at"]) == (
        "completed",
        "done",
        None,
    )
    assert (item["finished_at"], item["exit_reason"]) == ("2026-03-06T12:00:00Z", "reached done")
    assert [(s["step_key"], s["result"], s["at"]) for s in item["steps"]] == [
        ("ab", {"variant": item["variants"]["ab"]}, NOW_TEXT),
        ("nudge", {"templates": ["setup-help"]}, NOW_TEXT),
        ("pause", {"timed_out": False}, "2026-03-06T12:00:00Z"),
        ("done", {}, "2026-03-06T12:00:00Z"),
    ]
    assert [s["message"] is None for s in item["steps"]] == [True, False, True, True]


def test_a_send_that_was_suppressed_shows_why(
    ready: None, reader: APIClient, customer: Customer
) -> None:
    # given a customer with no phone: the SMS template has no channel to go out on
    customer.phone = ""
    customer.save(update_fields=["phone"])
    live()
    enroll([missed(customer)], now=NOW)
    enrollments_advance(now=NOW)
    message = Message.objects.get()

    # when
    (item,) = ok(reader.get(enrollments_url(customer)))["results"]

    # then
    assert item["steps"][0]["message"] == {
        "id": message.pk,
        "status": "suppressed",
        "channel": "",
        "reason": "unreachable",
    }


def test_enrollments_come_newest_first_and_only_the_customers_own(
    ready: None, reader: APIClient, customer: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given three enrollments of the customer on two journeys, and another customer's
    live("first")
    live("second", trigger={"kind": "event", "event": "Trial Started"})
    (oldest,) = enroll([missed(customer, "outcome:1")], now=NOW)
    (middle,) = enroll(
        [Entry(customer.pk, "event", "Trial Started", "event:1", NOW + DAY)], now=NOW + DAY
    )
    enroll([missed(CustomerFactory(), "outcome:2")], now=NOW + DAY)
    journey_save(key="first", reentry="after_days", reentry_days=1)
    live("first")
    (newest,) = enroll([missed(customer, "outcome:3")], now=NOW + 2 * DAY)
    monkeypatch.setattr(EnrollmentCursorPagination, "page_size", 2)

    # when
    first = ok(reader.get(enrollments_url(customer)))
    second = ok(reader.get(first["next"]))

    # then
    assert [(e["id"], e["journey"], e["version"]) for e in first["results"]] == [
        (newest.pk, "first", 2),
        (middle.pk, "second", 1),
    ]
    assert [(e["id"], e["journey"], e["version"]) for e in second["results"]] == [
        (oldest.pk, "first", 1)
    ]
    assert second["next"] is None


def test_a_customer_without_enrollments_has_an_empty_list(
    reader: APIClient, customer: Customer
) -> None:
    assert ok(reader.get(enrollments_url(customer))) == {
        "next": None,
        "previous": None,
        "results": [],
    }


def test_an_unknown_customer_is_not_found(reader: APIClient) -> None:
    response = reader.get(enrollments_url(999_999))

    assert (response.status_code, response.json()) == (404, NO_CUSTOMER)


def test_the_enrollments_take_three_queries_however_many_steps_and_sends(
    ready: None, staff_api: APIClient, customer: Customer
) -> None:
    # the customer's existence, the page (journey and version joined), the step runs with
    # their messages
    live("first", steps=SPLIT_SEND_WAIT_EXIT)
    live("second", trigger={"kind": "event", "event": "Trial Started"})
    enroll([missed(customer)], now=NOW)
    enroll([Entry(customer.pk, "event", "Trial Started", "event:1", NOW)], now=NOW)
    enrollments_advance(now=NOW)

    with CaptureQueriesContext(connection) as queries:
        body = ok(staff_api.get(enrollments_url(customer)))

    assert len(queries) == 3
    assert sorted(len(e["steps"]) for e in body["results"]) == [2, 2]
    assert Message.objects.count() == 2


# --- In-app messages of a journey -------------------------------------------------------------


def test_an_in_app_send_reaches_the_inbox_as_journey_output(
    ready: None, customer: Customer
) -> None:
    # given a journey whose send step goes out in-app
    template = template_save(
        key="in-app-tips", name="In-app tips", channel="in_app",
        topic=Topic.objects.get(key="tips"), default_locale="en",
        variants={"en": {"title": "Tips", "body": "3 tips", "cta_label": "Open",
                         "cta_url": "app://tips"}},
    )  # fmt: skip
    template_activate(template_id=template.pk)
    live(steps=[{"key": "nudge", "type": "send", "templates": ["in-app-tips"], "next": "done"},
                {"key": "done", "type": "exit"}])  # fmt: skip
    enroll([missed(customer)], now=NOW)
    enrollments_advance(now=NOW)
    message = Message.objects.get()
    client = token_client(user_with("messaging", "product", "view_message"))

    # when
    inbox = ok(client.get(f"/api/v1/customers/{customer.pk}/inbox/"))
    log = ok(client.get(f"/api/v1/customers/{customer.pk}/messages/"))

    # then the inbox serves it as the journey's output ...
    assert inbox["results"] == [
        {
            "id": message.pk,
            "title": "Tips",
            "body": "3 tips",
            "cta_label": "Open",
            "cta_url": "app://tips",
            "topic": "tips",
            "journey_key": "setup-nudge",
            "created_at": NOW_TEXT,
            "read_at": None,
        }
    ]
    # ... and so does the customer's message log
    assert [(m["id"], m["channel"], m["status"], m["journey_key"]) for m in log["results"]] == [
        (message.pk, "in_app", "sent", "setup-nudge")
    ]
