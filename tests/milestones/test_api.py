"""The milestones API under /api/v1/: auth, payloads, filters, the gap-free outcomes feed, the
dry run, and query counts."""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import AbstractUser
from django.db import connection
from rest_framework.test import APIClient

from customers.models import Customer
from milestones.api.pagination import cursor_decode, cursor_encode
from milestones.evaluation import xact_id
from milestones.feed import FeedPosition
from milestones.models import (
    DefinitionChange,
    MilestoneDefinition,
    MilestoneOutcome,
    MilestoneVersion,
    Progress,
    Unit,
)
from milestones.services import definition_activate, definition_create, definition_update
from tests.api_clients import token_client, user_with
from tests.factories import AccountFactory, CustomerFactory, EventFactory
from tests.milestones.conftest import T0

pytestmark = pytest.mark.django_db

READ_PERMISSIONS = ("view_milestonedefinition", "view_progress", "view_milestoneoutcome")
COUNT = {"type": "event_count", "event": "Task Done", "at_least": 1}
FEED = "/api/v1/milestone-outcomes/"
NO_PERMISSION = {"detail": "You do not have permission to perform this action."}


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def make_user(username: str, *permissions: str, is_staff: bool = False) -> AbstractUser:
    return user_with("milestones", username, *permissions, is_staff=is_staff)


@pytest.fixture
def api() -> APIClient:
    """A bearer-token client for a user holding the three view permissions, and nothing else."""
    return token_client(make_user("reader", *READ_PERMISSIONS))


@pytest.fixture
def editor() -> APIClient:
    """A bearer-token client for a user who may change definitions (and so dry-run them)."""
    return token_client(make_user("editor", "change_milestonedefinition"))


@pytest.fixture
def staff_api() -> APIClient:
    # Authentication is forced so that query-count pins count only the endpoint's own queries.
    client = APIClient()
    client.force_authenticate(make_user("staff", is_staff=True))
    return client


def progress_row(
    definition: MilestoneDefinition,
    subject_id: int,
    *,
    version: MilestoneVersion | None = None,
    **fields: Any,
) -> Progress:
    version = version or definition.active_version
    assert version is not None
    fields.setdefault("anchor_at", T0)
    row: Progress = Progress.objects.create(
        version=version,
        definition=definition,
        unit=version.unit,
        subject_id=subject_id,
        **fields,
    )
    return row


def outcome(
    definition: MilestoneDefinition, subject_id: int, *, xact: Any, **fields: Any
) -> MilestoneOutcome:
    version = definition.active_version
    assert version is not None
    fields.setdefault("kind", "achieved")
    fields.setdefault("occurred_at", T0)
    fields.setdefault("recorded_at", T0)
    row: MilestoneOutcome = MilestoneOutcome.objects.create(
        version=version,
        definition=definition,
        unit=version.unit,
        subject_id=subject_id,
        xact_id=xact,
        **fields,
    )
    return row


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.json()
    return [item["id"] for item in response.json()["results"]]


def keys(response: Any) -> list[str]:
    assert response.status_code == 200, response.json()
    return [item["key"] for item in response.json()["results"]]


# --- Authentication and permissions ---------------------------------------------------------

READ_PATHS = (
    "/api/v1/milestones/",
    "/api/v1/milestones/activated/",
    "/api/v1/customers/{customer}/milestones/",
    "/api/v1/accounts/{account}/milestones/",
    FEED,
)


@pytest.fixture
def subjects(milestone: Callable[..., MilestoneDefinition]) -> dict[str, int]:
    milestone("activated")
    return {"customer": CustomerFactory().pk, "account": AccountFactory().pk}


@pytest.mark.parametrize("path", READ_PATHS)
def test_it_asks_for_credentials_when_there_is_no_token(
    path: str, subjects: dict[str, int]
) -> None:
    response = APIClient().get(path.format(**subjects))

    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response["WWW-Authenticate"] == "Bearer"


def test_the_dry_run_asks_for_credentials_when_there_is_no_token(
    milestone: Callable[..., MilestoneDefinition],
) -> None:
    milestone("activated")

    response = APIClient().post("/api/v1/milestones/activated/dry-run/", {}, format="json")

    assert response.status_code == 401


@pytest.mark.parametrize("path", READ_PATHS)
def test_it_forbids_a_user_without_the_view_permission(path: str, subjects: dict[str, int]) -> None:
    client = token_client(make_user("nobody"))

    response = client.get(path.format(**subjects))

    assert response.status_code == 403
    assert response.json() == NO_PERMISSION


@pytest.mark.parametrize(
    ("permission", "allowed", "forbidden"),
    [
        ("view_milestonedefinition", "/api/v1/milestones/", FEED),
        ("view_progress", "/api/v1/customers/{customer}/milestones/", "/api/v1/milestones/"),
        ("view_milestoneoutcome", FEED, "/api/v1/accounts/{account}/milestones/"),
    ],
)
def test_each_endpoint_needs_its_own_models_view_permission(
    permission: str, allowed: str, forbidden: str, subjects: dict[str, int]
) -> None:
    client = token_client(make_user("partial", permission))

    assert client.get(allowed.format(**subjects)).status_code == 200
    assert client.get(forbidden.format(**subjects)).status_code == 403


@pytest.mark.parametrize("path", READ_PATHS)
def test_a_staff_user_reads_without_model_permissions(path: str, subjects: dict[str, int]) -> None:
    client = token_client(make_user("staff", is_staff=True))

    assert client.get(path.format(**subjects)).status_code == 200


def test_a_signed_in_admin_session_reads_too(subjects: dict[str, int]) -> None:
    client = APIClient()
    client.force_login(make_user("reader", "view_milestonedefinition"))

    assert keys(client.get("/api/v1/milestones/")) == ["activated"]


@pytest.mark.parametrize(
    "user",
    [
        pytest.param(lambda: make_user("reader", *READ_PERMISSIONS), id="reader"),
        # Being staff is not enough: as in the admin, editing needs its own permission.
        pytest.param(lambda: make_user("staff", is_staff=True), id="staff"),
    ],
)
def test_the_dry_run_needs_the_permission_to_change_definitions(
    user: Callable[[], AbstractUser], milestone: Callable[..., MilestoneDefinition]
) -> None:
    milestone("activated")

    response = token_client(user()).post("/api/v1/milestones/activated/dry-run/", format="json")

    assert response.status_code == 403
    assert response.json() == NO_PERMISSION


def test_the_definitions_are_read_only_even_for_staff(
    staff_api: APIClient, milestone: Callable[..., MilestoneDefinition]
) -> None:
    milestone("activated")

    created = staff_api.post("/api/v1/milestones/", {"key": "new"}, format="json")
    changed = staff_api.patch("/api/v1/milestones/activated/", {"name": "x"}, format="json")

    assert (created.status_code, changed.status_code) == (403, 403)
    assert list(MilestoneDefinition.objects.values_list("key", "name")) == [
        ("activated", "Activated")
    ]


# --- Definitions ------------------------------------------------------------------------------


@pytest.fixture
def marketer() -> AbstractUser:
    return make_user("marketer", is_staff=True)


def test_the_definition_list_shows_each_definition_with_its_active_version(
    api: APIClient, marketer: AbstractUser, time_machine: Any
) -> None:
    # given: a draft north star, and a milestone leading to it, activated a day after creation
    time_machine.move_to(T0, tick=False)
    north_star = definition_create(
        key="north_star",
        name="Weekly habit",
        kind="habit",
        condition={"type": "event_count", "event": "Report Created", "at_least": 4},
        user=marketer,
    )
    first = definition_create(
        key="first_task",
        name="First task",
        description="Finished a first task within a week of signup.",
        kind="onboarding",
        condition=COUNT,
        window=dt.timedelta(days=7),
        eligibility={"plans": ["free"]},
        parent=north_star,
        user=marketer,
    )
    time_machine.move_to(T0 + dt.timedelta(days=1), tick=False)
    definition_activate(definition=first, user=marketer)

    # when
    response = api.get("/api/v1/milestones/")

    # then
    assert response.status_code == 200
    assert response.json() == {
        "count": 2,
        "next": None,
        "previous": None,
        "results": [
            {
                "key": "first_task",
                "name": "First task",
                "description": "Finished a first task within a week of signup.",
                "kind": "onboarding",
                "unit": "customer",
                "status": "active",
                "parent": "north_star",
                "active_version": {
                    "number": 1,
                    "condition": COUNT,
                    "anchor": "signup",
                    "anchor_event": "",
                    "anchor_milestone": "",
                    "window": "P7DT00H00M00S",
                    "eligibility": {"plans": ["free"]},
                    "activated_at": "2026-03-03T09:00:00Z",
                },
                "created_at": "2026-03-02T09:00:00Z",
                "created_by": "marketer",
                "updated_at": "2026-03-03T09:00:00Z",
                "updated_by": "marketer",
            },
            {
                "key": "north_star",
                "name": "Weekly habit",
                "description": "",
                "kind": "habit",
                "unit": "customer",
                "status": "draft",
                "parent": None,
                "active_version": None,
                "created_at": "2026-03-02T09:00:00Z",
                "created_by": "marketer",
                "updated_at": "2026-03-02T09:00:00Z",
                "updated_by": "marketer",
            },
        ],
    }


@pytest.fixture
def three_definitions(milestone: Callable[..., MilestoneDefinition]) -> None:
    milestone("adopted", kind="feature_adoption")
    milestone("draft_one", activate=False)
    milestone("team_ready", unit="account")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["adopted", "draft_one", "team_ready"]),
        ({"status": "active"}, ["adopted", "team_ready"]),
        ({"status": "draft"}, ["draft_one"]),
        ({"status": "archived"}, []),
        ({"kind": "feature_adoption"}, ["adopted"]),
        ({"kind": "onboarding"}, ["draft_one", "team_ready"]),
        ({"unit": "account"}, ["team_ready"]),
        ({"unit": "customer", "status": "active"}, ["adopted"]),
    ],
)
def test_definitions_are_filtered_by_status_kind_and_unit(
    api: APIClient, three_definitions: None, query: dict[str, str], expected: list[str]
) -> None:
    assert keys(api.get("/api/v1/milestones/", query)) == expected


def test_a_bad_definition_filter_value_is_a_bad_request_naming_the_parameter(
    api: APIClient, three_definitions: None
) -> None:
    response = api.get("/api/v1/milestones/", {"status": "live"})

    assert response.status_code == 400
    assert response.json() == {
        "status": ["Select a valid choice. live is not one of the available choices."]
    }


def test_definition_detail_adds_the_working_copy_version_history_and_progress_counts(
    api: APIClient, marketer: AbstractUser, time_machine: Any
) -> None:
    # given: version 1 activated, then edited into version 2 a day later
    time_machine.move_to(T0, tick=False)
    definition = definition_create(
        key="first_task", name="First task", kind="onboarding", condition=COUNT, user=marketer
    )
    definition_activate(definition=definition)
    first_version = definition.active_version
    time_machine.move_to(T0 + dt.timedelta(days=1), tick=False)
    twice = {**COUNT, "at_least": 2}
    definition_update(definition=definition, condition=twice, user=marketer)
    # progress: the retired version's row is history and is not counted
    progress_row(definition, 1, version=first_version, state="missed")
    for subject_id, state in [(1, "achieved"), (2, "in_progress"), (3, "in_progress")]:
        progress_row(definition, subject_id, state=state)

    # when
    response = api.get("/api/v1/milestones/first_task/")

    # then
    assert response.status_code == 200
    assert response.json() == {
        "key": "first_task",
        "name": "First task",
        "description": "",
        "kind": "onboarding",
        "unit": "customer",
        "status": "active",
        "parent": None,
        "active_version": {
            "number": 2,
            "condition": twice,
            "anchor": "signup",
            "anchor_event": "",
            "anchor_milestone": "",
            "window": None,
            "eligibility": {},
            "activated_at": "2026-03-03T09:00:00Z",
        },
        "created_at": "2026-03-02T09:00:00Z",
        "created_by": "marketer",
        "updated_at": "2026-03-03T09:00:00Z",
        "updated_by": "marketer",
        "working_copy": {
            "condition": twice,
            "anchor": "signup",
            "anchor_event": "",
            "anchor_milestone": "",
            "window": None,
            "eligibility": {},
        },
        "versions": [
            {
                "number": 2,
                "created_at": "2026-03-03T09:00:00Z",
                "activated_at": "2026-03-03T09:00:00Z",
                "retired_at": None,
            },
            {
                "number": 1,
                "created_at": "2026-03-02T09:00:00Z",
                "activated_at": "2026-03-02T09:00:00Z",
                "retired_at": "2026-03-03T09:00:00Z",
            },
        ],
        "progress_counts": {"in_progress": 2, "achieved": 1, "missed": 0, "ineligible": 0},
    }


def test_a_draft_has_no_versions_and_no_progress_counts(
    api: APIClient, milestone: Callable[..., MilestoneDefinition]
) -> None:
    milestone("draft_one", activate=False, window=dt.timedelta(hours=36))

    body = api.get("/api/v1/milestones/draft_one/").json()

    assert (body["status"], body["active_version"], body["versions"]) == ("draft", None, [])
    assert body["progress_counts"] is None
    assert body["working_copy"]["window"] == "P1DT12H00M00S"


def test_an_unknown_definition_is_not_found(api: APIClient) -> None:
    response = api.get("/api/v1/milestones/nothing_here/")

    assert response.status_code == 404
    assert response.json() == {"detail": "No MilestoneDefinition matches the given query."}


# --- A subject's progress ---------------------------------------------------------------------


def test_a_customers_milestones_show_every_progress_row_in_full(
    api: APIClient, milestone: Callable[..., MilestoneDefinition], time_machine: Any
) -> None:
    # given: a customer with progress on two milestones, one of them on two versions
    time_machine.move_to(T0, tick=False)
    customer = CustomerFactory()
    other = CustomerFactory()
    adopted = milestone("adopted", window=dt.timedelta(days=7))
    old_version = adopted.active_version
    definition_update(definition=adopted, condition={**COUNT, "at_least": 2})
    activated = milestone("activated", name="Activated")
    detail = {
        "label": "1 of 2 Task Done",
        "done": 1,
        "total": 2,
        "achieved_at": None,
        "children": [{"label": "Task Done", "done": 1, "total": 2, "achieved_at": None}],
    }
    progress_row(
        adopted,
        customer.pk,
        version=old_version,
        state="missed",
        deadline_at=T0 + dt.timedelta(days=7),
        missed_at=T0 + dt.timedelta(days=7),
    )
    progress_row(
        adopted,
        customer.pk,
        state="in_progress",
        anchor_at=T0 + dt.timedelta(days=1),
        deadline_at=T0 + dt.timedelta(days=8),
        done=1,
        total=2,
        label="1 of 2 Task Done",
        detail=detail,
        evaluated_at=T0 + dt.timedelta(days=2),
    )
    progress_row(
        activated,
        customer.pk,
        state="achieved",
        achieved_at=T0 + dt.timedelta(hours=5),
        is_late=True,
        done=1,
        total=1,
    )
    progress_row(activated, other.pk, state="in_progress")
    # an account's row with the customer's id: subjects are keyed by unit too
    progress_row(milestone("team_ready", unit="account"), customer.pk, state="achieved")

    # when
    response = api.get(f"/api/v1/customers/{customer.pk}/milestones/")

    # then
    assert response.status_code == 200
    common = {
        "ineligible_reason": "",
        "deadline_at": None,
        "achieved_at": None,
        "missed_at": None,
        "is_late": False,
        "done": 0,
        "total": 1,
        "percent": 0,
        "label": "",
        "detail": {},
        "evaluated_at": None,
        "anchor_at": "2026-03-02T09:00:00Z",
    }
    assert response.json() == {
        "count": 3,
        "next": None,
        "previous": None,
        "results": [
            {
                **common,
                "definition": "activated",
                "definition_name": "Activated",
                "version": 1,
                "is_current": True,
                "state": "achieved",
                "achieved_at": "2026-03-02T14:00:00Z",
                "is_late": True,
                "done": 1,
                "percent": 100,
            },
            {
                **common,
                "definition": "adopted",
                "definition_name": "Adopted",
                "version": 2,
                "is_current": True,
                "state": "in_progress",
                "anchor_at": "2026-03-03T09:00:00Z",
                "deadline_at": "2026-03-10T09:00:00Z",
                "done": 1,
                "total": 2,
                "percent": 50,
                "label": "1 of 2 Task Done",
                "detail": detail,
                "evaluated_at": "2026-03-04T09:00:00Z",
            },
            {
                **common,
                "definition": "adopted",
                "definition_name": "Adopted",
                "version": 1,
                "is_current": False,
                "state": "missed",
                "deadline_at": "2026-03-09T09:00:00Z",
                "missed_at": "2026-03-09T09:00:00Z",
            },
        ],
    }


def test_an_accounts_milestones_show_only_account_rows(
    api: APIClient, milestone: Callable[..., MilestoneDefinition]
) -> None:
    account = AccountFactory()
    team_ready = milestone("team_ready", unit="account")
    progress_row(team_ready, account.pk, state="ineligible", ineligible_reason="plan")
    progress_row(milestone("activated"), account.pk, state="achieved")

    response = api.get(f"/api/v1/accounts/{account.pk}/milestones/")

    assert [
        (row["definition"], row["state"], row["ineligible_reason"])
        for row in response.json()["results"]
    ] == [("team_ready", "ineligible", "plan")]


def test_a_subject_without_progress_has_an_empty_list(api: APIClient) -> None:
    customer = CustomerFactory()

    response = api.get(f"/api/v1/customers/{customer.pk}/milestones/")

    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/v1/customers/999999/milestones/", "No customer with this id."),
        ("/api/v1/accounts/999999/milestones/", "No account with this id."),
    ],
)
def test_milestones_of_an_unknown_subject_are_not_found(
    api: APIClient, milestone: Callable[..., MilestoneDefinition], path: str, detail: str
) -> None:
    # progress rows alone do not make a subject (e.g. a customer merged away)
    progress_row(milestone("activated"), 999999, state="achieved")

    response = api.get(path)

    assert response.status_code == 404
    assert response.json() == {"detail": detail}


# --- The outcomes feed ------------------------------------------------------------------------


def test_an_outcome_is_shown_in_full_with_the_subjects_external_id(
    api: APIClient, milestone: Callable[..., MilestoneDefinition]
) -> None:
    customer = CustomerFactory(external_id="ada")
    anonymous = CustomerFactory(external_id=None)
    account = AccountFactory(external_id="acme")
    activated = milestone("activated")
    team_ready = milestone("team_ready", unit="account")
    achieved = outcome(
        activated,
        customer.pk,
        xact=10,
        kind="achieved",
        is_late=True,
        occurred_at=at("2026-03-03T10:00:00.250000Z"),
        recorded_at=at("2026-03-04T00:00:00Z"),
    )
    missed = outcome(activated, anonymous.pk, xact=10, kind="missed")
    for_account = outcome(team_ready, account.pk, xact=11)

    response = api.get(FEED)

    assert response.status_code == 200
    body = response.json()
    assert body["results"] == [
        {
            "id": achieved.pk,
            "definition": "activated",
            "version": 1,
            "unit": "customer",
            "subject_id": customer.pk,
            "subject_external_id": "ada",
            "kind": "achieved",
            "is_late": True,
            "occurred_at": "2026-03-03T10:00:00.250000Z",
            "recorded_at": "2026-03-04T00:00:00Z",
        },
        {
            "id": missed.pk,
            "definition": "activated",
            "version": 1,
            "unit": "customer",
            "subject_id": anonymous.pk,
            "subject_external_id": None,
            "kind": "missed",
            "is_late": False,
            "occurred_at": "2026-03-02T09:00:00Z",
            "recorded_at": "2026-03-02T09:00:00Z",
        },
        {
            "id": for_account.pk,
            "definition": "team_ready",
            "version": 1,
            "unit": "account",
            "subject_id": account.pk,
            "subject_external_id": "acme",
            "kind": "achieved",
            "is_late": False,
            "occurred_at": "2026-03-02T09:00:00Z",
            "recorded_at": "2026-03-02T09:00:00Z",
        },
    ]
    cursor = cursor_encode(FeedPosition(xact_id=11, id=for_account.pk))
    assert (body["cursor"], body["has_more"]) == (cursor, False)
    assert body["next"] == f"http://testserver{FEED}?cursor={cursor}"


def test_the_feed_goes_by_transaction_then_id_across_pages_and_resumes_from_its_cursor(
    api: APIClient, milestone: Callable[..., MilestoneDefinition]
) -> None:
    # given: ids inserted out of transaction order, as concurrent transactions commit
    activated = milestone("activated")
    c = [CustomerFactory().pk for _ in range(5)]
    late = outcome(activated, c[0], xact=12)
    first = outcome(activated, c[1], xact=10)
    third = outcome(activated, c[2], xact=11)
    second = outcome(activated, c[3], xact=10)
    fourth = outcome(activated, c[4], xact=11)

    # when: following `next` while `has_more`
    pages, url, body = [], f"{FEED}?page_size=2", {}
    while True:
        body = api.get(url).json()
        pages.append([item["id"] for item in body["results"]])
        url = body["next"]
        if not body["has_more"]:
            break

    # then
    assert pages == [[first.pk, second.pk], [third.pk, fourth.pk], [late.pk]]
    assert body["next"] == (
        f"http://testserver{FEED}?cursor={cursor_encode(FeedPosition(12, late.pk))}&page_size=2"
    )
    # polling the last `next` finds nothing new and keeps the place ...
    idle = api.get(url).json()
    assert (idle["results"], idle["has_more"], idle["next"]) == ([], False, url)
    # ... until a newer transaction's outcome is there
    newer = outcome(activated, c[0], xact=13, kind="missed")
    assert ids(api.get(url)) == [newer.pk]


def test_an_outcome_of_a_transaction_still_in_flight_is_held_back(
    api: APIClient, milestone: Callable[..., MilestoneDefinition]
) -> None:
    # given: one outcome of a long-finished transaction, one numbered far past the snapshot's
    # xmin, and one written by this very (uncommitted) test transaction
    activated = milestone("activated")
    done = outcome(activated, CustomerFactory().pk, xact=10)
    outcome(activated, CustomerFactory().pk, xact=2**62)
    outcome(activated, CustomerFactory().pk, xact=xact_id())
    own = MilestoneOutcome.objects.order_by("-id").values_list("xact_id", flat=True).first()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        (xmin,) = cursor.fetchone()

    # when
    body = api.get(FEED).json()

    # then: only the finished one, and the cursor stops before the others
    assert own is not None
    assert own >= xmin
    assert [item["id"] for item in body["results"]] == [done.pk]
    assert body["cursor"] == cursor_encode(FeedPosition(10, done.pk))
    assert ids(api.get(body["next"])) == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"definition": "activated"}, ["a-ada", "m-bob"]),
        ({"definition": "nothing"}, []),
        ({"kind": "missed"}, ["m-bob", "m-acme"]),
        ({"unit": "account"}, ["m-acme"]),
        ({"subject_id": "{ada}"}, ["a-ada", "a2-ada"]),
        ({"definition": "adopted", "kind": "achieved"}, ["a2-ada"]),
    ],
)
def test_the_feed_is_filtered_by_definition_kind_unit_and_subject(
    api: APIClient,
    milestone: Callable[..., MilestoneDefinition],
    query: dict[str, str],
    expected: list[str],
) -> None:
    ada, bob, acme = CustomerFactory(), CustomerFactory(), AccountFactory()
    activated, adopted = milestone("activated"), milestone("adopted")
    made = {
        outcome(activated, ada.pk, xact=10).pk: "a-ada",
        outcome(activated, bob.pk, xact=11, kind="missed").pk: "m-bob",
        outcome(adopted, ada.pk, xact=12).pk: "a2-ada",
        outcome(milestone("team", unit="account"), acme.pk, xact=13, kind="missed").pk: "m-acme",
    }
    query = {name: value.format(ada=ada.pk) for name, value in query.items()}

    assert [made[i] for i in ids(api.get(FEED, query))] == expected


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        base64.urlsafe_b64encode(b"ten:5").decode(),
        base64.urlsafe_b64encode(b"10:").decode(),
        base64.urlsafe_b64encode(b"-1:5").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b"10:9223372036854775808").decode(),
        cursor_encode(FeedPosition(10, 1)) + "!",
        "A" * 65,
    ],
)
def test_a_bad_cursor_is_a_bad_request_saying_so(
    api: APIClient, milestone: Callable[..., MilestoneDefinition], cursor: str
) -> None:
    outcome(milestone("activated"), CustomerFactory().pk, xact=10)

    response = api.get(FEED, {"cursor": cursor})

    assert response.status_code == 400
    assert response.json() == {
        "cursor": ["Not a cursor of this feed: pass the `cursor` of a previous page as it is."]
    }


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ({"kind": "late"}, {"kind": ['"late" is not a valid choice.']}),
        ({"unit": "team"}, {"unit": ['"team" is not a valid choice.']}),
        ({"subject_id": "0"}, {"subject_id": ["Ensure this value is greater than or equal to 1."]}),
        (
            {"page_size": "1001"},
            {"page_size": ["Ensure this value is less than or equal to 1000."]},
        ),
        ({"page_size": "0"}, {"page_size": ["Ensure this value is greater than or equal to 1."]}),
    ],
)
def test_a_bad_feed_query_is_a_bad_request_naming_the_parameter(
    api: APIClient, query: dict[str, str], errors: dict[str, list[str]]
) -> None:
    response = api.get(FEED, query)

    assert response.status_code == 400
    assert response.json() == errors


@pytest.mark.parametrize(
    "position",
    [FeedPosition(None, 7), FeedPosition(0, 1), FeedPosition(2**63 - 1, 2**63 - 1)],
)
def test_a_cursor_decodes_to_the_position_it_was_made_from(position: FeedPosition) -> None:
    assert cursor_decode(cursor_encode(position)) == position


# --- The dry run ------------------------------------------------------------------------------


@pytest.fixture
def history(time_machine: Any) -> dict[str, Customer]:
    """Four customers ten days after T0, as a 7-day "first task" milestone on free plans sees
    them: ada did the task in time, bob only after his deadline, cyd signed up 2 days ago, and
    dan is on the pro plan. Only ada and cyd ever signed in."""
    time_machine.move_to(T0, tick=False)
    people = {
        "ada": CustomerFactory(created_at=T0),
        "bob": CustomerFactory(created_at=T0),
        "cyd": CustomerFactory(created_at=T0 + dt.timedelta(days=8)),
        "dan": CustomerFactory(created_at=T0, plan="pro"),
    }
    EventFactory(customer=people["ada"], name="Signed In", occurred_at=T0)
    EventFactory(customer=people["ada"], name="Task Done", occurred_at=T0 + dt.timedelta(hours=20))
    EventFactory(customer=people["bob"], name="Task Done", occurred_at=T0 + dt.timedelta(days=8))
    EventFactory(customer=people["cyd"], name="Signed In", occurred_at=T0 + dt.timedelta(days=8))
    time_machine.move_to(T0 + dt.timedelta(days=10), tick=False)
    return people


@pytest.fixture
def first_task(milestone: Callable[..., MilestoneDefinition]) -> MilestoneDefinition:
    return milestone(
        "first_task",
        activate=False,
        window=dt.timedelta(days=7),
        eligibility={"plans": ["free"]},
    )


def test_a_dry_run_of_a_draft_counts_and_samples_every_bucket(
    editor: APIClient, history: dict[str, Customer], first_task: MilestoneDefinition
) -> None:
    response = editor.post("/api/v1/milestones/first_task/dry-run/", format="json")

    assert response.status_code == 200
    pk = {name: customer.pk for name, customer in history.items()}
    assert response.json() == {
        "subjects": 4,
        "counts": {"achieved": 1, "missed": 1, "in_progress": 1, "ineligible": 1, "not_started": 0},
        "samples": {
            "achieved": [pk["ada"]],
            "missed": [pk["bob"]],
            "in_progress": [pk["cyd"]],
            "ineligible": [pk["dan"]],
            "not_started": [],
        },
        "is_truncated": False,
        "evaluated_at": "2026-03-12T09:00:00Z",
    }


def test_a_dry_run_stops_at_the_limit_and_says_so(
    editor: APIClient, history: dict[str, Customer], first_task: MilestoneDefinition
) -> None:
    response = editor.post(
        "/api/v1/milestones/first_task/dry-run/", {"limit": 2, "sample_size": 0}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["subjects"], body["is_truncated"]) == (2, True)
    assert body["counts"] == {
        "achieved": 1,
        "missed": 1,
        "in_progress": 0,
        "ineligible": 0,
        "not_started": 0,
    }
    assert body["samples"] == {bucket: [] for bucket in body["counts"]}


def test_a_dry_run_previews_an_edit_without_saving_it(
    editor: APIClient, history: dict[str, Customer], first_task: MilestoneDefinition
) -> None:
    # given
    changes_before = DefinitionChange.objects.count()
    edit = {
        "anchor": "event",
        "anchor_event": "Signed In",
        "window": "P1D",
        "eligibility": {},
        "condition": {"type": "event_count", "event": "Task Done", "at_least": 1},
    }

    # when: the clock starts at sign-in, with one day to finish, for every plan
    response = editor.post("/api/v1/milestones/first_task/dry-run/", edit, format="json")

    # then: ada finished in time; cyd's day ran out; bob and dan never signed in
    assert response.status_code == 200
    assert response.json()["counts"] == {
        "achieved": 1,
        "missed": 1,
        "in_progress": 0,
        "ineligible": 0,
        "not_started": 2,
    }
    first_task.refresh_from_db()
    assert (first_task.anchor, first_task.window, first_task.eligibility) == (
        "signup",
        dt.timedelta(days=7),
        {"plans": ["free"]},
    )
    assert DefinitionChange.objects.count() == changes_before
    assert not MilestoneVersion.objects.exists()
    assert not Progress.objects.exists()


def test_a_dry_run_with_a_null_window_previews_no_deadline(
    editor: APIClient, history: dict[str, Customer], first_task: MilestoneDefinition
) -> None:
    response = editor.post(
        "/api/v1/milestones/first_task/dry-run/", {"window": None}, format="json"
    )

    # bob's late task counts once there is no deadline
    assert response.json()["counts"]["achieved"] == 2
    assert response.json()["counts"]["missed"] == 0


def test_a_dry_run_of_an_active_definition_reads_its_working_copy(
    editor: APIClient, history: dict[str, Customer], milestone: Callable[..., MilestoneDefinition]
) -> None:
    milestone("first_task", window=dt.timedelta(days=7))

    response = editor.post("/api/v1/milestones/first_task/dry-run/", format="json")

    # every plan is eligible here: dan missed too
    assert response.json()["counts"] == {
        "achieved": 1,
        "missed": 2,
        "in_progress": 1,
        "ineligible": 0,
        "not_started": 0,
    }
    assert not Progress.objects.exists()
    assert not MilestoneOutcome.objects.exists()


@pytest.mark.parametrize(
    ("edit", "errors"),
    [
        (
            {"condition": {"type": "event_count", "event": "Task Done", "at_least": 0}},
            {"condition": "$.at_least: must be a whole number of at least 1"},
        ),
        ({"anchor": "event"}, {"anchor_event": "name the event that starts the clock"}),
        ({"window": "P0D"}, {"window": "must be positive and at most 10 years"}),
        ({"eligibility": {"plan": "pro"}}, {"eligibility": "$.plan: is not an eligibility rule"}),
    ],
)
def test_a_dry_run_of_an_invalid_edit_is_a_bad_request_naming_the_field(
    editor: APIClient,
    first_task: MilestoneDefinition,
    edit: dict[str, Any],
    errors: dict[str, str],
) -> None:
    response = editor.post("/api/v1/milestones/first_task/dry-run/", edit, format="json")

    assert response.status_code == 400
    assert response.json() == {"detail": "The milestone definition is invalid.", "errors": errors}
    first_task.refresh_from_db()
    assert (first_task.condition, first_task.anchor, first_task.window) == (
        COUNT,
        "signup",
        dt.timedelta(days=7),
    )


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"limit": 200_001}, {"limit": ["Ensure this value is less than or equal to 200000."]}),
        ({"limit": 0}, {"limit": ["Ensure this value is greater than or equal to 1."]}),
        (
            {"sample_size": 101},
            {"sample_size": ["Ensure this value is less than or equal to 100."]},
        ),
        ({"anchor": "payday"}, {"anchor": ['"payday" is not a valid choice.']}),
        (
            {"window": "a week"},
            {"window": ["Duration has wrong format. Use ISO 8601, e.g. P7D or PT36H."]},
        ),
    ],
)
def test_a_malformed_dry_run_body_is_a_bad_request_naming_the_field(
    editor: APIClient,
    first_task: MilestoneDefinition,
    body: dict[str, Any],
    errors: dict[str, list[str]],
) -> None:
    response = editor.post("/api/v1/milestones/first_task/dry-run/", body, format="json")

    assert response.status_code == 400
    assert response.json() == errors


def test_a_dry_run_of_an_unknown_definition_is_not_found(editor: APIClient) -> None:
    response = editor.post("/api/v1/milestones/nothing_here/dry-run/", format="json")

    assert response.status_code == 404
    assert response.json() == {"detail": "No milestone with this key."}


# --- Query counts -----------------------------------------------------------------------------


@pytest.fixture
def busy(milestone: Callable[..., MilestoneDefinition], marketer: AbstractUser) -> Customer:
    """Three active definitions (two with a parent, each made by a user), two versions each,
    and a customer with progress and outcomes on all of them."""
    customer: Customer = CustomerFactory()
    parent = milestone("north_star", activate=False, user=marketer)
    for n, key in enumerate(("one", "two", "three")):
        definition = milestone(key, user=marketer, parent=parent if n else None)
        definition_update(definition=definition, condition={**COUNT, "at_least": 2}, user=marketer)
        progress_row(definition, customer.pk, state="in_progress")
        outcome(definition, customer.pk, xact=10 + n)
    return customer


@pytest.mark.parametrize(
    ("path", "queries", "rows"),
    [
        # COUNT(*), then one page with parents, active versions and users joined in.
        ("/api/v1/milestones/", 2, 4),
        # The customer's existence, COUNT(*), then one page with definitions and versions.
        ("/api/v1/customers/{customer}/milestones/", 3, 3),
        # One page with keys, version numbers and external ids: no COUNT(*), no extra reads.
        (FEED, 1, 3),
    ],
)
def test_a_list_costs_a_fixed_number_of_queries(
    staff_api: APIClient,
    django_assert_num_queries: Callable[..., Any],
    busy: Customer,
    path: str,
    queries: int,
    rows: int,
) -> None:
    with django_assert_num_queries(queries):
        response = staff_api.get(path.format(customer=busy.pk))

    assert len(response.json()["results"]) == rows


def test_definition_detail_costs_three_queries(
    staff_api: APIClient, django_assert_num_queries: Callable[..., Any], busy: Customer
) -> None:
    # The definition with its joins, its versions, then one aggregate of progress states.
    with django_assert_num_queries(3):
        response = staff_api.get("/api/v1/milestones/two/")

    assert [version["number"] for version in response.json()["versions"]] == [2, 1]
    assert response.json()["progress_counts"]["in_progress"] == 1


# --- Concurrency: a late commit is never skipped ------------------------------------------------


def _dsn() -> str:
    db = connection.settings_dict
    return (
        f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} "
        f"user={db['USER']} dbname={db['NAME']}"
    )


@pytest.fixture
def other() -> Iterator[psycopg.Connection[Any]]:
    """A second session, standing in for an evaluator whose transaction is still open."""
    with psycopg.connect(_dsn()) as conn:
        yield conn


@pytest.mark.django_db(transaction=True)
def test_a_row_committed_after_a_newer_one_is_not_skipped_by_a_cursor(
    other: psycopg.Connection[Any],
) -> None:
    # given: an active version, made without the services so no backfill is queued on commit
    definition = MilestoneDefinition.objects.create(
        key="activated", name="Activated", kind="onboarding", condition=COUNT, status="active"
    )
    version = MilestoneVersion.objects.create(
        definition=definition, number=1, unit=Unit.CUSTOMER, condition=COUNT, anchor="signup"
    )
    row = {
        "version_id": version.pk,
        "definition_id": definition.pk,
        "unit": "customer",
        "kind": "achieved",
        "is_late": False,
        "occurred_at": T0,
        "recorded_at": T0,
    }
    reader = token_client(make_user("reader", *READ_PERMISSIONS))
    before = reader.get(FEED).json()
    # an older transaction writes an outcome and stays open ...
    other.execute(
        "INSERT INTO milestones_milestoneoutcome (version_id, definition_id, unit, subject_id,"
        " kind, is_late, occurred_at, recorded_at, xact_id) VALUES (%(version_id)s,"
        " %(definition_id)s, %(unit)s, 1, %(kind)s, %(is_late)s, %(occurred_at)s,"
        " %(recorded_at)s, pg_current_xact_id()::text::bigint)",
        row,
    )
    # ... while a newer one commits first (it gets the larger id as well as the larger xact id)
    newer = MilestoneOutcome.objects.create(subject_id=2, xact_id=xact_id(), **row)

    # when: a reader polls while the older transaction is still open
    during = reader.get(before["next"]).json()

    # then: the newer outcome is held back, so the cursor cannot move past the older one
    assert (during["results"], during["cursor"]) == ([], None)
    other.commit()
    newer.refresh_from_db()
    older = MilestoneOutcome.objects.get(subject_id=1)
    assert older.xact_id is not None
    assert newer.xact_id is not None
    assert (older.xact_id, older.pk) < (newer.xact_id, newer.pk)
    # and once both have finished, the older is served first, from the same cursor
    served = _served_once_visible(reader, during["next"])
    assert [item["subject_id"] for item in served] == [1, 2]


def _served_once_visible(reader: APIClient, url: str, count: int = 2) -> list[Any]:
    """Poll the feed until it serves ``count`` outcomes. A transaction of another session of
    the cluster (another test run sharing the server) holds the snapshot's xmin back while it
    lasts: the feed waits for it, as it must."""
    deadline = time.monotonic() + 30
    while True:
        results: list[Any] = reader.get(url).json()["results"]
        if len(results) >= count or time.monotonic() > deadline:
            return results
        time.sleep(0.02)
