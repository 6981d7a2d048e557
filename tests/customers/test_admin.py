from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from customers.admin import CappedCountPaginator
from customers.models import Account, ApiToken, Customer, Device, Event, Identity, Source
from customers.selectors import api_token_for_key, source_for_key
from customers.services import api_token_create, source_create
from tests.factories import (
    AccountFactory,
    CustomerFactory,
    DeviceFactory,
    EventFactory,
    IdentityFactory,
    SourceFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def account() -> Account:
    return AccountFactory(external_id="acme", name="Acme Analytics", plan="enterprise")


@pytest.fixture
def customer(account: Account) -> Customer:
    return CustomerFactory(external_id="user-7", email="ada@acme.example", account=account)


@pytest.fixture
def anonymous_customer() -> Customer:
    visitor = CustomerFactory(external_id=None, email="")
    IdentityFactory(value="anon-visitor-1", customer=visitor)
    return visitor


@pytest.fixture
def staff_client(client: Client) -> Client:
    """A staff user holding every customers permission, but not a superuser."""
    user = User.objects.create_user("staff", password="irrelevant", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="customers"))
    client.force_login(user)
    return client


def _objects(customer: Customer) -> dict[str, Any]:
    source = SourceFactory()
    return {
        "customer": customer,
        "account": customer.account,
        "event": EventFactory(customer=customer, source=source),
        "identity": IdentityFactory(customer=customer),
        "device": DeviceFactory(customer=customer),
        "source": source,
        "apitoken": ApiToken.objects.get(
            pk=api_token_create(user=User.objects.create_user("api"), name="ci").id
        ),
    }


def _message_texts(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def _results(response: Any) -> list[Any]:
    return list(response.context["cl"].result_list)


@pytest.mark.parametrize(
    "model", ["customer", "account", "event", "identity", "device", "source", "apitoken"]
)
def test_every_changelist_and_change_page_renders_for_a_superuser(
    admin_client: Client, customer: Customer, model: str
) -> None:
    obj = _objects(customer)[model]

    changelist = admin_client.get(reverse(f"admin:customers_{model}_changelist"))
    change = admin_client.get(reverse(f"admin:customers_{model}_change", args=(obj.pk,)))

    assert changelist.status_code == 200
    assert [row.pk for row in _results(changelist)] == [obj.pk]
    assert change.status_code == 200


def test_the_customer_page_shows_the_latest_events_newest_first(
    admin_client: Client, customer: Customer
) -> None:
    # given
    now = timezone.now()
    EventFactory(customer=customer, name="Signed Up", occurred_at=now - dt.timedelta(days=2))
    EventFactory(
        customer=customer,
        name="Invoice Paid",
        properties={"amount": 1499.0, "currency": "USD"},
        occurred_at=now - dt.timedelta(days=1),
    )
    EventFactory(customer=CustomerFactory(), name="Someone Else's Event")

    # when
    response = admin_client.get(reverse("admin:customers_customer_change", args=(customer.pk,)))

    # then
    html = response.content.decode()
    assert html.index("Invoice Paid") < html.index("Signed Up")
    assert "<code>amount</code>: 1499.0" in html
    assert "Someone Else" not in html


def test_the_customer_timeline_stops_at_the_latest_50_events(
    admin_client: Client, customer: Customer
) -> None:
    start = timezone.now() - dt.timedelta(days=1)
    for minute in range(51):
        EventFactory(
            customer=customer,
            name=f"Step {minute:02d} Done",
            occurred_at=start + dt.timedelta(minutes=minute),
        )

    response = admin_client.get(reverse("admin:customers_customer_change", args=(customer.pk,)))

    shown = re.findall(r"Step (\d\d) Done", response.content.decode())
    assert shown == [f"{minute:02d}" for minute in range(50, 0, -1)]


def test_the_customer_page_lists_identities_and_devices(
    admin_client: Client, customer: Customer
) -> None:
    IdentityFactory(customer=customer, value="anon-from-the-laptop")
    DeviceFactory(customer=customer, platform="android", token="push-token-42")

    response = admin_client.get(reverse("admin:customers_customer_change", args=(customer.pk,)))

    html = response.content.decode()
    assert "anon-from-the-laptop" in html
    assert "push-token-42" in html


@pytest.mark.parametrize(
    "term", ["ada@acme.example", "ADA@ACME.EXAMPLE", "user-7", " user-7 ", "anon-visitor-1"]
)
def test_customer_search_finds_the_customer_by_email_user_id_or_anonymous_id(
    admin_client: Client, customer: Customer, anonymous_customer: Customer, term: str
) -> None:
    IdentityFactory(customer=customer, value="anon-visitor-1-other")
    expected = anonymous_customer if term.startswith("anon") else customer

    response = admin_client.get(reverse("admin:customers_customer_changelist"), {"q": term})

    assert _results(response) == [expected]


def test_customer_search_finds_the_customer_by_phone(admin_client: Client) -> None:
    CustomerFactory(phone="+14155550100")
    with_phone = CustomerFactory(phone="+14155550123")

    response = admin_client.get(
        reverse("admin:customers_customer_changelist"), {"q": "+14155550123"}
    )

    assert _results(response) == [with_phone]


def test_customer_search_matches_whole_values_only(
    admin_client: Client, customer: Customer
) -> None:
    response = admin_client.get(reverse("admin:customers_customer_changelist"), {"q": "ada"})

    assert _results(response) == []


def test_anonymous_customers_are_listed_by_their_id(
    admin_client: Client, anonymous_customer: Customer
) -> None:
    response = admin_client.get(reverse("admin:customers_customer_changelist"))

    assert f"anonymous #{anonymous_customer.pk}" in response.content.decode()


def test_the_customer_list_runs_the_same_queries_for_one_or_many_customers(
    admin_client: Client, account: Account
) -> None:
    url = reverse("admin:customers_customer_changelist")
    CustomerFactory(account=account)
    admin_client.get(url)  # warm the session and content-type caches
    with CaptureQueriesContext(connection) as one:
        admin_client.get(url)
    for _ in range(5):
        CustomerFactory(account=AccountFactory())
    with CaptureQueriesContext(connection) as six:
        response = admin_client.get(url)

    assert len(_results(response)) == 6
    assert len(six.captured_queries) == len(one.captured_queries)


def test_list_counts_stop_at_the_paginator_cap(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CappedCountPaginator, "CAP", 2)
    CustomerFactory.create_batch(5)

    response = admin_client.get(reverse("admin:customers_customer_changelist"))

    assert response.context["cl"].result_count == 3
    assert response.context["cl"].full_result_count is None


def test_the_account_list_shows_each_accounts_customer_count(
    admin_client: Client, account: Account
) -> None:
    CustomerFactory.create_batch(2, account=account)
    empty = AccountFactory()

    response = admin_client.get(reverse("admin:customers_account_changelist"))

    counts = {row.pk: row.customers_count for row in _results(response)}
    assert counts == {account.pk: 2, empty.pk: 0}


def test_the_account_page_lists_its_members(
    admin_client: Client, account: Account, customer: Customer
) -> None:
    CustomerFactory(external_id="user-elsewhere", account=AccountFactory())

    response = admin_client.get(reverse("admin:customers_account_change", args=(account.pk,)))

    html = response.content.decode()
    assert reverse("admin:customers_customer_change", args=(customer.pk,)) in html
    assert "user-elsewhere" not in html
    assert f"?account__id__exact={account.pk}" in html


def test_the_members_link_filters_the_customer_list_to_the_account(
    admin_client: Client, account: Account, customer: Customer
) -> None:
    CustomerFactory(account=AccountFactory())

    response = admin_client.get(
        reverse("admin:customers_customer_changelist"), {"account__id__exact": account.pk}
    )

    assert _results(response) == [customer]


def test_event_search_finds_by_message_id_and_by_customer(
    admin_client: Client, customer: Customer
) -> None:
    mine = EventFactory(customer=customer, message_id="msg-abc")
    other = EventFactory(message_id="msg-def")
    url = reverse("admin:customers_event_changelist")

    by_message = admin_client.get(url, {"q": "msg-def"})
    by_customer = admin_client.get(url, {"q": "user-7"})

    assert _results(by_message) == [other]
    assert _results(by_customer) == [mine]


def test_the_event_admin_forbids_add_change_and_delete(
    admin_client: Client, customer: Customer
) -> None:
    # given
    event = EventFactory(customer=customer, name="Report Created")
    change_url = reverse("admin:customers_event_change", args=(event.pk,))

    # when
    add = admin_client.post(reverse("admin:customers_event_add"), {"name": "Forged"})
    change = admin_client.post(change_url, {"name": "Edited"})
    delete = admin_client.post(
        reverse("admin:customers_event_delete", args=(event.pk,)), {"post": "yes"}
    )
    bulk_delete = admin_client.post(
        reverse("admin:customers_event_changelist"),
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )

    # then
    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    assert bulk_delete.status_code == 200
    assert list(Event.objects.values_list("name", flat=True)) == ["Report Created"]
    assert 'name="_save"' not in admin_client.get(change_url).content.decode()


def test_adding_a_source_stores_only_the_hash_and_shows_the_key_once(
    admin_client: Client,
) -> None:
    # when
    response = admin_client.post(
        reverse("admin:customers_source_add"), {"name": "mobile app"}, follow=True
    )

    # then
    source = Source.objects.get()
    [key] = [m for text in _message_texts(response) for m in re.findall(r"mpw_[\w-]{43}", text)]
    assert hashlib.sha256(key.encode()).hexdigest() == source.key_hash
    assert source.key_prefix == key[:8]
    assert source.name == "mobile app"
    assert source.created_by == User.objects.get(username="admin")
    assert source_for_key(key) == source.pk
    change_page = admin_client.get(reverse("admin:customers_source_change", args=(source.pk,)))
    assert key not in change_page.content.decode()
    assert source.key_hash in change_page.content.decode()


def test_adding_a_source_with_a_taken_name_shows_an_error_and_creates_nothing(
    admin_client: Client,
) -> None:
    source_create(name="mobile app")

    response = admin_client.post(reverse("admin:customers_source_add"), {"name": "mobile app"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "name": ["Source with this Name already exists."]
    }
    assert Source.objects.count() == 1


def test_adding_an_api_token_shows_a_key_that_authenticates_as_its_user(
    admin_client: Client,
) -> None:
    user = User.objects.create_user("integrations")

    response = admin_client.post(
        reverse("admin:customers_apitoken_add"), {"user": user.pk, "name": "ci"}, follow=True
    )

    token = ApiToken.objects.get()
    [key] = [m for text in _message_texts(response) for m in re.findall(r"mpa_[\w-]{43}", text)]
    assert hashlib.sha256(key.encode()).hexdigest() == token.key_hash
    assert (token.user, token.name) == (user, "ci")
    assert api_token_for_key(key) == token


def test_the_deactivate_action_turns_the_selected_keys_off(admin_client: Client) -> None:
    chosen, kept = source_create(name="old"), source_create(name="current")

    admin_client.post(
        reverse("admin:customers_source_changelist"),
        {"action": "deactivate", "_selected_action": [chosen.id]},
    )

    assert dict(Source.objects.values_list("name", "is_active")) == {
        "old": False,
        "current": True,
    }
    assert source_for_key(chosen.key) is None
    assert source_for_key(kept.key) == kept.id


def test_the_deactivate_action_turns_the_selected_devices_off(
    admin_client: Client, customer: Customer
) -> None:
    chosen, kept = DeviceFactory(customer=customer), DeviceFactory(customer=customer)

    admin_client.post(
        reverse("admin:customers_device_changelist"),
        {"action": "deactivate", "_selected_action": [chosen.pk]},
    )

    assert dict(Device.objects.values_list("pk", "is_active")) == {
        chosen.pk: False,
        kept.pk: True,
    }


@pytest.mark.parametrize("model", ["source", "apitoken"])
def test_a_staff_user_who_is_not_a_superuser_cannot_manage_keys(
    staff_client: Client, model: str
) -> None:
    source = source_create(name="web app")

    changelist = staff_client.get(reverse(f"admin:customers_{model}_changelist"))
    add = staff_client.post(reverse(f"admin:customers_{model}_add"), {"name": "sneaky"})
    change = staff_client.get(reverse("admin:customers_source_change", args=(source.id,)))
    index = staff_client.get(reverse("admin:app_list", args=("customers",)))

    assert (changelist.status_code, add.status_code, change.status_code) == (403, 403, 403)
    assert list(Source.objects.values_list("name", flat=True)) == ["web app"]
    assert ApiToken.objects.count() == 0
    assert "Customers" in index.content.decode()
    assert reverse("admin:customers_source_changelist") not in index.content.decode()


def test_a_staff_user_with_permissions_can_still_read_customers(
    staff_client: Client, customer: Customer
) -> None:
    response = staff_client.get(reverse("admin:customers_customer_changelist"))

    assert response.status_code == 200
    assert _results(response) == [customer]


def test_identities_are_found_by_their_exact_value(
    admin_client: Client, anonymous_customer: Customer
) -> None:
    IdentityFactory(value="anon-visitor-10")

    response = admin_client.get(
        reverse("admin:customers_identity_changelist"), {"q": "anon-visitor-1"}
    )

    assert [identity.customer for identity in _results(response)] == [anonymous_customer]
    assert Identity.objects.count() == 2
