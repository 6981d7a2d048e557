"""The native read-only API under /api/v1/: auth, payloads, filters, pagination, query counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from rest_framework.test import APIClient

from customers.api.views import EventCursorPagination
from customers.models import ApiToken, Customer, Event
from tests.api_clients import token_client, user_with
from tests.factories import (
    AccountFactory,
    CustomerFactory,
    DeviceFactory,
    EventFactory,
    IdentityFactory,
    SourceFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 20, 12, 0, tzinfo=dt.UTC)
READ_PERMISSIONS = ("view_customer", "view_account", "view_event")


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def make_user(username: str, *permissions: str, is_staff: bool = False) -> AbstractUser:
    return user_with("customers", username, *permissions, is_staff=is_staff)


@pytest.fixture
def api() -> APIClient:
    """A bearer-token client for a user holding the three view permissions, and nothing else."""
    return token_client(make_user("reader", *READ_PERMISSIONS))


@pytest.fixture
def staff_api() -> APIClient:
    # Authentication is forced so that query-count pins count only the endpoint's own queries.
    client = APIClient()
    client.force_authenticate(make_user("staff", is_staff=True))
    return client


def results(response: Any, key: str = "external_id") -> list[Any]:
    assert response.status_code == 200, response.json()
    return [item[key] for item in response.json()["results"]]


# --- Authentication and permissions ---------------------------------------------------------

READ_PATHS = ("/api/v1/customers/", "/api/v1/accounts/", "/api/v1/customers/{id}/events/")


@pytest.mark.parametrize("path", READ_PATHS)
def test_it_asks_for_credentials_when_there_is_no_token(path: str) -> None:
    customer = CustomerFactory()

    response = APIClient().get(path.format(id=customer.pk))

    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response["WWW-Authenticate"] == "Bearer"


def test_it_rejects_a_revoked_token() -> None:
    client = token_client(make_user("reader", *READ_PERMISSIONS))
    ApiToken.objects.update(is_active=False)

    response = client.get("/api/v1/customers/")

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or revoked API token."}


def test_it_rejects_an_unknown_token() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer mpa_not-a-real-key")

    response = client.get("/api/v1/customers/")

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or revoked API token."}


@pytest.mark.parametrize("path", READ_PATHS)
def test_it_forbids_a_user_without_the_view_permission(path: str) -> None:
    customer = CustomerFactory()
    client = token_client(make_user("nobody"))

    response = client.get(path.format(id=customer.pk))

    assert response.status_code == 403
    assert response.json() == {"detail": "You do not have permission to perform this action."}


@pytest.mark.parametrize(
    ("permission", "allowed", "forbidden"),
    [
        ("view_customer", "/api/v1/customers/", "/api/v1/accounts/"),
        ("view_account", "/api/v1/accounts/", "/api/v1/customers/{id}/events/"),
        ("view_event", "/api/v1/customers/{id}/events/", "/api/v1/customers/"),
    ],
)
def test_each_endpoint_needs_its_own_models_view_permission(
    permission: str, allowed: str, forbidden: str
) -> None:
    customer = CustomerFactory()
    client = token_client(make_user("partial", permission))

    assert client.get(allowed.format(id=customer.pk)).status_code == 200
    assert client.get(forbidden.format(id=customer.pk)).status_code == 403


@pytest.mark.parametrize("path", READ_PATHS)
def test_a_staff_user_reads_without_model_permissions(path: str) -> None:
    customer = CustomerFactory()
    client = token_client(make_user("staff", is_staff=True))

    assert client.get(path.format(id=customer.pk)).status_code == 200


def test_it_refuses_writes_even_to_staff(staff_api: APIClient) -> None:
    customer = CustomerFactory(email="before@example.com")

    created = staff_api.post("/api/v1/customers/", {"external_id": "new"}, format="json")
    changed = staff_api.patch(
        f"/api/v1/customers/{customer.pk}/", {"email": "after@example.com"}, format="json"
    )

    assert (created.status_code, changed.status_code) == (403, 403)
    assert list(Customer.objects.values_list("external_id", "email")) == [
        (customer.external_id, "before@example.com")
    ]


# --- Customers --------------------------------------------------------------------------------


def test_customer_detail_shows_the_profile_account_identities_and_devices(
    api: APIClient, time_machine: Any
) -> None:
    # given
    time_machine.move_to(NOW, tick=False)
    account = AccountFactory(external_id="acme", name="Acme Inc")
    customer = CustomerFactory(
        external_id="ada",
        account=account,
        email="ada@example.com",
        phone="+14155550100",
        time_zone="Europe/London",
        locale="en-GB",
        plan="pro",
        region="eu",
        status="active",
        lifecycle_stage="activated",
        traits={"name": "Ada", "seats": 3},
        first_seen=at("2025-01-02T03:04:05Z"),
        last_seen=at("2025-03-19T08:00:00Z"),
        created_at=at("2025-01-01T00:00:00Z"),
    )
    IdentityFactory(customer=customer, kind="anonymous", value="anon-1")
    IdentityFactory(customer=customer, kind="alias", value="old-ada")
    DeviceFactory(customer=customer, platform="ios", token="a1b2c3d4e5f6a7b8c9d0" * 3)
    DeviceFactory(customer=customer, platform="web", token="short", is_active=False)

    # when
    response = api.get(f"/api/v1/customers/{customer.pk}/")

    # then
    assert response.status_code == 200
    assert response.json() == {
        "id": customer.pk,
        "external_id": "ada",
        "email": "ada@example.com",
        "phone": "+14155550100",
        "time_zone": "Europe/London",
        "locale": "en-GB",
        "plan": "pro",
        "region": "eu",
        "status": "active",
        "lifecycle_stage": "activated",
        "traits": {"name": "Ada", "seats": 3},
        "first_seen": "2025-01-02T03:04:05Z",
        "last_seen": "2025-03-19T08:00:00Z",
        "created_at": "2025-01-01T00:00:00Z",
        "updated_at": "2025-03-20T12:00:00Z",
        "account": {"id": account.pk, "external_id": "acme", "name": "Acme Inc"},
        "identities": [
            {"kind": "anonymous", "value": "anon-1"},
            {"kind": "alias", "value": "old-ada"},
        ],
        "devices": [
            {
                "platform": "ios",
                "token_prefix": "a1b2c3d4e5f6",
                "is_active": True,
                "last_seen": "2025-03-20T12:00:00Z",
            },
            # Half a short token at most: a response never carries a whole push token.
            {
                "platform": "web",
                "token_prefix": "sh",
                "is_active": False,
                "last_seen": "2025-03-20T12:00:00Z",
            },
        ],
    }


def test_customer_list_shows_profiles_with_an_account_summary(
    api: APIClient, time_machine: Any
) -> None:
    time_machine.move_to(NOW, tick=False)
    customer = CustomerFactory(
        external_id=None,
        email="",
        plan="",
        region="",
        time_zone="",
        traits={},
        first_seen=None,
        last_seen=None,
        created_at=at("2025-02-01T00:00:00Z"),
    )
    IdentityFactory(customer=customer)

    response = api.get("/api/v1/customers/")

    assert response.status_code == 200
    assert response.json() == {
        "count": 1,
        "next": None,
        "previous": None,
        "results": [
            {
                "id": customer.pk,
                "external_id": None,
                "email": "",
                "phone": "",
                "time_zone": "",
                "locale": "",
                "plan": "",
                "region": "",
                "status": "active",
                "lifecycle_stage": "new",
                "traits": {},
                "first_seen": None,
                "last_seen": None,
                "created_at": "2025-02-01T00:00:00Z",
                "updated_at": "2025-03-20T12:00:00Z",
                "account": None,
            }
        ],
    }


def test_an_unknown_customer_is_not_found(api: APIClient) -> None:
    response = api.get("/api/v1/customers/999999/")

    assert response.status_code == 404
    assert response.json() == {"detail": "No Customer matches the given query."}


@pytest.fixture
def three_customers() -> dict[str, Customer]:
    acme = AccountFactory(external_id="acme")
    globex = AccountFactory(external_id="globex")
    return {
        "ada": CustomerFactory(
            external_id="ada",
            email="Ada@Example.com",
            plan="pro",
            region="eu",
            status="active",
            lifecycle_stage="activated",
            account=acme,
            created_at=at("2025-01-10T00:00:00Z"),
            last_seen=at("2025-03-01T00:00:00Z"),
        ),
        "bob": CustomerFactory(
            external_id="bob",
            email="bob@example.com",
            plan="free",
            region="us",
            status="inactive",
            lifecycle_stage="new",
            account=globex,
            created_at=at("2025-02-10T00:00:00Z"),
            last_seen=at("2025-02-15T00:00:00Z"),
        ),
        "cyd": CustomerFactory(
            external_id="cyd",
            email="cyd@example.com",
            plan="free",
            region="us",
            status="blocked",
            lifecycle_stage="new",
            account=None,
            created_at=at("2025-03-10T00:00:00Z"),
            last_seen=None,
        ),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["cyd", "bob", "ada"]),
        ({"external_id": "bob"}, ["bob"]),
        ({"email": "ada@example.COM"}, ["ada"]),
        ({"plan": "free"}, ["cyd", "bob"]),
        ({"region": "eu"}, ["ada"]),
        ({"status": "inactive"}, ["bob"]),
        ({"lifecycle_stage": "new"}, ["cyd", "bob"]),
        ({"account_external_id": "globex"}, ["bob"]),
        ({"created_after": "2025-02-10T00:00:00Z"}, ["cyd", "bob"]),
        ({"created_before": "2025-02-10T00:00:00Z"}, ["ada"]),
        (
            {"created_after": "2025-01-01T00:00:00Z", "created_before": "2025-03-01T00:00:00Z"},
            ["bob", "ada"],
        ),
        ({"last_seen_after": "2025-02-20T00:00:00Z"}, ["ada"]),
        ({"plan": "free", "region": "eu"}, []),
    ],
)
def test_customers_are_filtered_by_the_query(
    api: APIClient, three_customers: dict[str, Customer], query: dict[str, str], expected: list[str]
) -> None:
    assert results(api.get("/api/v1/customers/", query)) == expected


def test_customers_are_filtered_by_account_id(
    api: APIClient, three_customers: dict[str, Customer]
) -> None:
    account_id = three_customers["ada"].account_id

    assert results(api.get("/api/v1/customers/", {"account": account_id})) == ["ada"]
    assert results(api.get("/api/v1/customers/", {"account": 999999})) == []


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("created_at", ["ada", "bob", "cyd"]),
        ("-created_at", ["cyd", "bob", "ada"]),
        # Never-seen customers come last both ways.
        ("last_seen", ["bob", "ada", "cyd"]),
        ("-last_seen", ["ada", "bob", "cyd"]),
    ],
)
def test_customers_are_ordered_by_created_at_or_last_seen(
    api: APIClient, three_customers: dict[str, Customer], ordering: str, expected: list[str]
) -> None:
    assert results(api.get("/api/v1/customers/", {"ordering": ordering})) == expected


def test_customers_created_at_the_same_instant_keep_a_stable_order(api: APIClient) -> None:
    same = at("2025-01-01T00:00:00Z")
    first, second, third = (CustomerFactory(created_at=same, last_seen=same) for _ in range(3))
    newest_id_first = [third.pk, second.pk, first.pk]

    assert results(api.get("/api/v1/customers/"), "id") == newest_id_first
    assert results(api.get("/api/v1/customers/", {"ordering": "last_seen"}), "id") == (
        newest_id_first
    )


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ({"created_after": "yesterday"}, {"created_after": ["Enter a valid date/time."]}),
        ({"account": "1.5"}, {"account": ["Enter a whole number."]}),
        (
            {"status": "gone"},
            {"status": ["Select a valid choice. gone is not one of the available choices."]},
        ),
    ],
)
def test_a_bad_customer_filter_value_is_a_bad_request_naming_the_parameter(
    api: APIClient, query: dict[str, str], errors: dict[str, list[str]]
) -> None:
    response = api.get("/api/v1/customers/", query)

    assert response.status_code == 400
    assert response.json() == errors


# --- Accounts ---------------------------------------------------------------------------------


def test_account_detail_counts_its_customers(api: APIClient, time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)
    account = AccountFactory(
        external_id="acme",
        name="Acme Inc",
        plan="enterprise",
        region="eu",
        traits={"industry": "anvils"},
        created_at=at("2024-12-01T00:00:00Z"),
    )
    CustomerFactory.create_batch(2, account=account)
    CustomerFactory(account=AccountFactory())

    response = api.get(f"/api/v1/accounts/{account.pk}/")

    assert response.status_code == 200
    assert response.json() == {
        "id": account.pk,
        "external_id": "acme",
        "name": "Acme Inc",
        "plan": "enterprise",
        "region": "eu",
        "status": "active",
        "traits": {"industry": "anvils"},
        "created_at": "2024-12-01T00:00:00Z",
        "updated_at": "2025-03-20T12:00:00Z",
        "customer_count": 2,
    }


def test_account_detail_counts_zero_customers(api: APIClient) -> None:
    account = AccountFactory()

    assert api.get(f"/api/v1/accounts/{account.pk}/").json()["customer_count"] == 0


def test_account_list_shows_accounts_newest_first(api: APIClient, time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)
    older = AccountFactory(external_id="older", name="", created_at=at("2024-01-01T00:00:00Z"))
    newer = AccountFactory(external_id="newer", name="New", created_at=at("2024-06-01T00:00:00Z"))

    response = api.get("/api/v1/accounts/")

    assert response.status_code == 200
    assert response.json() == {
        "count": 2,
        "next": None,
        "previous": None,
        "results": [
            {
                "id": newer.pk,
                "external_id": "newer",
                "name": "New",
                "plan": "pro",
                "region": "us",
                "status": "active",
                "traits": {},
                "created_at": "2024-06-01T00:00:00Z",
                "updated_at": "2025-03-20T12:00:00Z",
            },
            {
                "id": older.pk,
                "external_id": "older",
                "name": "",
                "plan": "pro",
                "region": "us",
                "status": "active",
                "traits": {},
                "created_at": "2024-01-01T00:00:00Z",
                "updated_at": "2025-03-20T12:00:00Z",
            },
        ],
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"plan": "free"}, ["initech"]),
        ({"region": "eu"}, ["globex"]),
        ({"status": "blocked"}, ["initech"]),
        ({"external_id": "acme"}, ["acme"]),
        ({"plan": "pro", "region": "us"}, ["acme"]),
    ],
)
def test_accounts_are_filtered_by_the_query(
    api: APIClient, query: dict[str, str], expected: list[str]
) -> None:
    AccountFactory(external_id="acme", plan="pro", region="us", created_at=at("2025-01-01T00:00Z"))
    AccountFactory(
        external_id="globex", plan="pro", region="eu", created_at=at("2025-01-02T00:00Z")
    )
    AccountFactory(
        external_id="initech",
        plan="free",
        region="us",
        status="blocked",
        created_at=at("2025-01-03T00:00Z"),
    )

    assert results(api.get("/api/v1/accounts/", query)) == expected


def test_an_unknown_account_is_not_found(api: APIClient) -> None:
    response = api.get("/api/v1/accounts/999999/")

    assert response.status_code == 404
    assert response.json() == {"detail": "No Account matches the given query."}


# --- A customer's events ----------------------------------------------------------------------


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EventCursorPagination, "page_size", 2)


def event_at(customer: Customer, when: str, **fields: Any) -> Event:
    event: Event = EventFactory(customer=customer, occurred_at=at(when), **fields)
    return event


def test_an_event_is_shown_in_full(api: APIClient) -> None:
    account = AccountFactory()
    customer = CustomerFactory(account=account)
    source = SourceFactory()
    event = EventFactory(
        customer=customer,
        source=source,
        message_id="m-1",
        type="track",
        name="Report Created",
        properties={"report": "weekly"},
        context={"ip": "203.0.113.7"},
        occurred_at=at("2025-03-01T10:00:00.123456Z"),
        received_at=at("2025-03-01T10:00:01Z"),
    )

    response = api.get(f"/api/v1/customers/{customer.pk}/events/")

    assert response.status_code == 200
    assert response.json() == {
        "next": None,
        "previous": None,
        "results": [
            {
                "id": event.pk,
                "source": source.pk,
                "message_id": "m-1",
                "account": account.pk,
                "type": "track",
                "name": "Report Created",
                "properties": {"report": "weekly"},
                "context": {"ip": "203.0.113.7"},
                "occurred_at": "2025-03-01T10:00:00.123456Z",
                "received_at": "2025-03-01T10:00:01Z",
            }
        ],
    }


def test_events_are_paged_newest_first_by_cursor(api: APIClient, small_pages: None) -> None:
    # given: five events, two of them at the same instant across a page boundary
    customer = CustomerFactory()
    oldest = event_at(customer, "2025-03-01T00:00:00Z")
    tied_first = event_at(customer, "2025-03-02T00:00:00Z")
    tied_second = event_at(customer, "2025-03-02T00:00:00Z")
    newer = event_at(customer, "2025-03-03T00:00:00Z")
    newest = event_at(customer, "2025-03-04T00:00:00Z")
    event_at(CustomerFactory(), "2025-03-05T00:00:00Z")

    # when: following `next` to the end
    pages, url = [], f"/api/v1/customers/{customer.pk}/events/"
    while url:
        response = api.get(url)
        assert response.status_code == 200
        pages.append([item["id"] for item in response.json()["results"]])
        url = response.json()["next"]

    # then
    assert pages == [[newest.pk, newer.pk], [tied_second.pk, tied_first.pk], [oldest.pk]]


def test_the_previous_cursor_leads_back_to_the_newer_page(
    api: APIClient, small_pages: None
) -> None:
    customer = CustomerFactory()
    events = [event_at(customer, f"2025-03-0{day}T00:00:00Z") for day in range(1, 5)]
    first_page = api.get(f"/api/v1/customers/{customer.pk}/events/").json()

    second_page = api.get(first_page["next"]).json()
    back = api.get(second_page["previous"]).json()

    assert first_page["previous"] is None
    assert [item["id"] for item in second_page["results"]] == [events[1].pk, events[0].pk]
    assert second_page["next"] is None
    assert [item["id"] for item in back["results"]] == [events[3].pk, events[2].pk]


def test_the_next_cursor_keeps_the_filters(api: APIClient, small_pages: None) -> None:
    customer = CustomerFactory()
    for day in range(1, 6):
        event_at(customer, f"2025-03-0{day}T00:00:00Z", name="Signed Up", message_id=f"s-{day}")
        event_at(customer, f"2025-03-0{day}T01:00:00Z", name="Logged In", message_id=f"l-{day}")
    query = {"name": "Signed Up", "since": "2025-03-02T00:00:00Z"}

    first_page = api.get(f"/api/v1/customers/{customer.pk}/events/", query).json()
    second_page = api.get(first_page["next"]).json()

    assert [item["message_id"] for item in first_page["results"]] == ["s-5", "s-4"]
    assert [item["message_id"] for item in second_page["results"]] == ["s-3", "s-2"]
    assert second_page["next"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"since": "2025-03-02T00:00:00Z"}, ["identify-3", "signup-2"]),
        ({"until": "2025-03-02T00:00:00Z"}, ["signup-1"]),
        ({"since": "2025-03-01T12:00:00+00:00", "until": "2025-03-03T00:00:00Z"}, ["signup-2"]),
        ({"name": "Signed Up"}, ["signup-2", "signup-1"]),
        ({"type": "identify"}, ["identify-3"]),
        ({"name": "Signed Up", "since": "2025-03-02T00:00:00Z"}, ["signup-2"]),
        ({"name": "Nothing"}, []),
    ],
)
def test_events_are_filtered_by_name_type_and_time(
    api: APIClient, query: dict[str, str], expected: list[str]
) -> None:
    customer = CustomerFactory()
    event_at(customer, "2025-03-01T00:00:00Z", name="Signed Up", message_id="signup-1")
    event_at(customer, "2025-03-02T00:00:00Z", name="Signed Up", message_id="signup-2")
    event_at(customer, "2025-03-03T00:00:00Z", name="", type="identify", message_id="identify-3")

    response = api.get(f"/api/v1/customers/{customer.pk}/events/", query)

    assert results(response, "message_id") == expected


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        (
            {"since": "last tuesday"},
            {
                "since": [
                    "Datetime has wrong format. Use one of these formats instead: "
                    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
                ]
            },
        ),
        (
            {"until": "2025-13-01"},
            {
                "until": [
                    "Datetime has wrong format. Use one of these formats instead: "
                    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
                ]
            },
        ),
        ({"type": "click"}, {"type": ['"click" is not a valid choice.']}),
    ],
)
def test_a_bad_event_query_is_a_bad_request_naming_the_parameter(
    api: APIClient, query: dict[str, str], errors: dict[str, list[str]]
) -> None:
    customer = CustomerFactory()
    event_at(customer, "2025-03-01T00:00:00Z")

    response = api.get(f"/api/v1/customers/{customer.pk}/events/", query)

    assert response.status_code == 400
    assert response.json() == errors


def test_events_of_an_unknown_customer_are_not_found(api: APIClient) -> None:
    response = api.get("/api/v1/customers/999999/events/")

    assert response.status_code == 404
    assert response.json() == {"detail": "No customer with this id."}


# --- Query counts -----------------------------------------------------------------------------


def a_customer_with_everything() -> Customer:
    customer: Customer = CustomerFactory(account=AccountFactory())
    IdentityFactory.create_batch(2, customer=customer)
    DeviceFactory.create_batch(2, customer=customer)
    EventFactory.create_batch(2, customer=customer)
    return customer


@pytest.mark.parametrize(
    ("path", "queries"),
    [
        # COUNT(*) and one page with the accounts joined in.
        ("/api/v1/customers/", 2),
        # COUNT(*) and one page.
        ("/api/v1/accounts/", 2),
    ],
)
def test_a_list_costs_a_fixed_number_of_queries(
    staff_api: APIClient,
    django_assert_num_queries: Callable[..., Any],
    path: str,
    queries: int,
) -> None:
    for _ in range(3):
        a_customer_with_everything()

    with django_assert_num_queries(queries):
        response = staff_api.get(path)

    assert len(response.json()["results"]) == 3


def test_the_event_list_costs_two_queries(
    staff_api: APIClient, django_assert_num_queries: Callable[..., Any]
) -> None:
    customer = a_customer_with_everything()
    EventFactory.create_batch(3, customer=customer, source=SourceFactory())

    # The customer's existence, then one page; no COUNT(*) over the event table.
    with django_assert_num_queries(2):
        response = staff_api.get(f"/api/v1/customers/{customer.pk}/events/")

    assert len(response.json()["results"]) == 5


def test_customer_detail_costs_three_queries(
    staff_api: APIClient, django_assert_num_queries: Callable[..., Any]
) -> None:
    customer = a_customer_with_everything()

    # The customer with its account, then its identities, then its devices.
    with django_assert_num_queries(3):
        response = staff_api.get(f"/api/v1/customers/{customer.pk}/")

    assert (len(response.json()["identities"]), len(response.json()["devices"])) == (2, 2)


def test_account_detail_costs_one_query(
    staff_api: APIClient, django_assert_num_queries: Callable[..., Any]
) -> None:
    customer = a_customer_with_everything()

    with django_assert_num_queries(1):
        response = staff_api.get(f"/api/v1/accounts/{customer.account_id}/")

    assert response.json()["customer_count"] == 1


# --- Schema and docs --------------------------------------------------------------------------


def test_the_schema_and_the_docs_are_served_to_staff(staff_api: APIClient) -> None:
    schema = staff_api.get("/api/schema/")
    docs = staff_api.get("/api/docs/")

    assert schema.status_code == 200
    assert b"/api/v1/customers/{customer_id}/events/:" in schema.content
    assert docs.status_code == 200
    # Swagger UI is served from drf-spectacular-sidecar's static files, not from a CDN.
    assert b"/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in docs.content
    assert b"cdn.jsdelivr.net" not in docs.content


def test_the_schema_and_the_docs_need_a_login() -> None:
    client = APIClient()

    assert client.get("/api/schema/").status_code == 401
    assert client.get("/api/docs/").status_code == 401
