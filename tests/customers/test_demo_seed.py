from __future__ import annotations

import hashlib
import io
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.test import Client

from customers.models import Account, Customer, Device, Event, Identity, Source
from customers.selectors import source_for_key

pytestmark = pytest.mark.django_db

# The seeded data set (random.Random(42)); a change to customers/demo.py changes these.
EVENTS = 531
CUSTOMERS = 46
ANONYMOUS = 6
IDENTITIES = 14
DEVICES = 12


def _seed() -> list[str]:
    out = io.StringIO()
    call_command("demo_seed", "--force", stdout=out)
    return out.getvalue().splitlines()


def _counts() -> dict[str, int]:
    return {
        "accounts": Account.objects.count(),
        "customers": Customer.objects.count(),
        "anonymous": Customer.objects.filter(external_id__isnull=True).count(),
        "identities": Identity.objects.count(),
        "devices": Device.objects.count(),
        "events": Event.objects.count(),
        "sources": Source.objects.count(),
        "users": User.objects.count(),
    }


EXPECTED = {
    "accounts": 3,
    "customers": CUSTOMERS,
    "anonymous": ANONYMOUS,
    "identities": IDENTITIES,
    "devices": DEVICES,
    "events": EVENTS,
    "sources": 1,
    "users": 1,
}


@pytest.fixture(autouse=True)
def _default_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)


def test_demo_seed_creates_the_demo_data_set_and_prints_a_working_write_key() -> None:
    # when
    lines = _seed()

    # then
    assert _counts() == EXPECTED
    source = Source.objects.get()
    key = lines[3].strip()
    assert source.name == "Demo app"
    assert hashlib.sha256(key.encode()).hexdigest() == source.key_hash
    assert source_for_key(key) == source.pk
    assert lines[:3] == [
        f"Demo data: 3 accounts, {CUSTOMERS} customers ({ANONYMOUS} anonymous), "
        f"{IDENTITIES} identities, {DEVICES} devices, {EVENTS} events.",
        f"This run sent {EVENTS} messages through ingest; {EVENTS} were new (replays are skipped).",
        "Created source “Demo app”. Its write key, shown only this once:",
    ]
    assert lines[4:] == [
        "Admin: http://127.0.0.1:8000/admin/",
        "Login: username admin, password milepost-demo",
    ]


def test_a_second_run_adds_nothing_and_does_not_print_a_key() -> None:
    _seed()
    message_ids = set(Event.objects.values_list("message_id", flat=True))

    lines = _seed()

    assert _counts() == EXPECTED
    assert set(Event.objects.values_list("message_id", flat=True)) == message_ids
    assert message_ids == {f"demo-{n}" for n in range(1, EVENTS + 1)}
    assert lines[1] == (
        f"This run sent {EVENTS} messages through ingest; 0 were new (replays are skipped)."
    )
    assert lines[2].startswith("Source “Demo app” already exists;")
    assert not any("mpw_" in line for line in lines)


def test_the_admin_can_log_in_with_the_printed_password(client: Client) -> None:
    password = re.fullmatch(r"Login: username admin, password (\S+)", _seed()[-1])

    assert password is not None
    assert client.login(username="admin", password=password[1]) is True
    admin = User.objects.get(username="admin")
    assert (admin.is_staff, admin.is_superuser, admin.is_active) == (True, True, True)


def test_each_run_resets_the_admin_password_from_the_environment(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed()
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "another-secret")

    last_line = _seed()[-1]

    assert last_line == "Login: username admin, password another-secret"
    assert client.login(username="admin", password="another-secret") is True
    assert client.login(username="admin", password="milepost-demo") is False


def test_an_empty_password_is_refused_before_anything_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "")

    with pytest.raises(CommandError) as raised:
        _seed()

    assert str(raised.value) == "DEMO_ADMIN_PASSWORD is set but empty."
    assert (User.objects.count(), Source.objects.count(), Event.objects.count()) == (0, 0, 0)


def test_the_accounts_are_b2b_with_different_plans_and_regions() -> None:
    _seed()

    accounts = {
        account.external_id: (account.name, account.plan, account.region, account.customers.count())
        for account in Account.objects.all()
    }
    assert accounts == {
        "demo-acme": ("Acme Analytics", "enterprise", "us", 12),
        "demo-globex": ("Globex Logistics", "growth", "eu", 10),
        "demo-initech": ("Initech Health", "starter", "apac", 8),
    }


def test_visitors_who_signed_up_keep_their_anonymous_history() -> None:
    _seed()

    identified = Customer.objects.filter(
        external_id__isnull=False, identities__value__startswith="demo-anon-"
    )
    assert identified.count() == 8
    for customer in identified:
        types = list(customer.events.order_by("occurred_at", "id").values_list("type", flat=True))
        assert types[0] == "page"
        assert "identify" in types


def test_every_identified_customer_has_a_profile_from_their_traits() -> None:
    _seed()

    customers = Customer.objects.filter(external_id__isnull=False)
    assert customers.count() == 40
    assert customers.filter(email="").count() == 0
    assert customers.filter(time_zone="").count() == 0
    assert set(customers.values_list("plan", flat=True)) == {
        "enterprise",
        "growth",
        "starter",
        "free",
        "pro",
    }


def test_the_product_events_carry_their_properties() -> None:
    _seed()

    tracks = Event.objects.filter(type="track").values_list("name").annotate(total=Count("id"))
    assert dict(tracks) == {
        "Signed Up": 40,
        "Onboarding Step Completed": 86,
        "Report Created": 64,
        "Feature Used": 83,
        "Seat Invited": 18,
        "Invoice Paid": 7,
    }
    types = Event.objects.values_list("type").annotate(total=Count("id"))
    assert dict(types) == {
        "identify": 40,
        "group": 30,
        "track": 298,
        "page": 133,
        "screen": 30,
    }
    invoices = Event.objects.filter(name="Invoice Paid")
    assert {event.properties["amount"] for event in invoices} == {1499.0, 199.0, 49.0, 29.0}
    features = {event.properties["feature"] for event in Event.objects.filter(name="Feature Used")}
    assert features == {"dashboards", "exports", "alerts", "api", "segments", "scheduled reports"}


def test_it_refuses_to_seed_a_deployment_with_debug_off() -> None:
    with pytest.raises(CommandError, match="DEBUG is off"):
        call_command("demo_seed", stdout=io.StringIO())

    assert not User.objects.filter(username="admin").exists()
    assert Event.objects.count() == 0
