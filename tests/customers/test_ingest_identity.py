"""Who an event belongs to: user ids, anonymous ids, logins, Segment ``alias`` and merges."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import time_machine
from django.utils import timezone

from customers.ingest.parsing import Limits, parse_batch
from customers.ingest.service import IngestResult, events_ingest
from customers.models import Customer, Device, Event, Identity, IdentityKind, Source
from customers.services import customers_merge
from customers.signals import customers_merged
from tests.factories import (
    AccountFactory,
    CustomerFactory,
    DeviceFactory,
    EventFactory,
    IdentityFactory,
    SourceFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
Ingest = Callable[..., IngestResult]


@pytest.fixture(autouse=True)
def now() -> Iterator[dt.datetime]:
    with time_machine.travel(NOW, tick=False):
        yield NOW


@pytest.fixture
def source() -> Source:
    return SourceFactory()


@pytest.fixture
def ingest(source: Source) -> Ingest:
    """Parse a batch of Segment calls and store it, as the /v1/batch view does."""

    def _ingest(*items: dict[str, Any]) -> IngestResult:
        received_at = timezone.now()
        parsed = parse_batch(orjson.dumps({"batch": list(items)}), received_at, Limits())
        assert parsed.errors == []
        return events_ingest(source_id=source.pk, messages=parsed.messages, received_at=received_at)

    return _ingest


def at(minutes: int) -> str:
    """An ISO timestamp ``minutes`` after 11:00 on the test day."""
    return (
        dt.datetime(2024, 5, 1, 11, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes)
    ).isoformat()


def owners() -> list[tuple[str, int]]:
    return list(Event.objects.order_by("id").values_list("message_id", "customer_id"))


def identities() -> set[tuple[str, str, int]]:
    return set(Identity.objects.values_list("kind", "value", "customer_id"))


# --- User ids and anonymous ids ------------------------------------------------------------


def test_it_creates_a_customer_for_a_new_user_id_from_its_earliest_event(ingest: Ingest) -> None:
    ingest(
        {"type": "track", "userId": "u1", "event": "E", "messageId": "m1", "timestamp": at(30)},
        {"type": "track", "userId": "u1", "event": "E", "messageId": "m2", "timestamp": at(10)},
    )

    customer = Customer.objects.get()
    assert (customer.external_id, customer.created_at, customer.first_seen, customer.last_seen) == (
        "u1",
        dt.datetime(2024, 5, 1, 11, 10, tzinfo=dt.UTC),
        dt.datetime(2024, 5, 1, 11, 10, tzinfo=dt.UTC),
        dt.datetime(2024, 5, 1, 11, 30, tzinfo=dt.UTC),
    )
    assert owners() == [("m1", customer.pk), ("m2", customer.pk)]
    assert identities() == set()


def test_it_files_events_of_a_known_user_id_under_that_customer(ingest: Ingest) -> None:
    known = CustomerFactory(external_id="u1")

    ingest({"type": "track", "userId": "u1", "event": "E", "messageId": "m1"})

    assert list(Customer.objects.values_list("pk", flat=True)) == [known.pk]
    assert owners() == [("m1", known.pk)]


def test_it_creates_one_anonymous_customer_per_new_anonymous_id(ingest: Ingest) -> None:
    ingest(
        {"type": "page", "anonymousId": "a1", "messageId": "m1"},
        {"type": "page", "anonymousId": "a2", "messageId": "m2"},
        {"type": "page", "anonymousId": "a1", "messageId": "m3"},
    )

    a1 = Identity.objects.get(value="a1").customer
    a2 = Identity.objects.get(value="a2").customer
    assert (a1.external_id, a2.external_id, Customer.objects.count()) == (None, None, 2)
    assert identities() == {("anonymous", "a1", a1.pk), ("anonymous", "a2", a2.pk)}
    assert owners() == [("m1", a1.pk), ("m2", a2.pk), ("m3", a1.pk)]


def test_it_files_events_of_a_known_anonymous_id_under_its_customer(ingest: Ingest) -> None:
    identity = IdentityFactory(value="a1", customer=CustomerFactory(external_id=None))

    ingest({"type": "page", "anonymousId": "a1", "messageId": "m1"})

    assert Customer.objects.count() == 1
    assert owners() == [("m1", identity.customer_id)]


def test_the_user_id_wins_over_the_anonymous_id(ingest: Ingest) -> None:
    ingest({"type": "track", "userId": "u1", "anonymousId": "a1", "event": "E", "messageId": "m1"})

    user = Customer.objects.get()
    assert user.external_id == "u1"
    assert identities() == {("anonymous", "a1", user.pk)}
    assert owners() == [("m1", user.pk)]


def test_a_new_anonymous_id_seen_with_a_user_resolves_to_that_user_later(ingest: Ingest) -> None:
    ingest({"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m1"})

    ingest({"type": "page", "anonymousId": "a1", "messageId": "m2"})

    user = Customer.objects.get()
    assert owners() == [("m1", user.pk), ("m2", user.pk)]


# --- An anonymous visitor logs in ----------------------------------------------------------


@pytest.mark.parametrize("call", ["identify", "track"])
@pytest.mark.parametrize("user_is_known", [True, False])
def test_an_anonymous_visitors_history_moves_to_the_user_who_logs_in(
    ingest: Ingest, call: str, user_is_known: bool
) -> None:
    # given: an anonymous visitor with two page views
    ingest(
        {"type": "page", "anonymousId": "a1", "messageId": "m1", "timestamp": at(0)},
        {"type": "page", "anonymousId": "a1", "messageId": "m2", "timestamp": at(5)},
    )
    visitor = Customer.objects.get()
    user_pk = CustomerFactory(external_id="u1").pk if user_is_known else None

    # when: a call carries both the anonymous id and the user id
    login = {"type": call, "userId": "u1", "anonymousId": "a1", "messageId": "m3", "event": "In"}
    ingest(login)

    # then
    user = Customer.objects.get()
    assert user.external_id == "u1"
    assert user.pk != visitor.pk
    if user_pk is not None:
        assert user.pk == user_pk
    assert owners() == [("m1", user.pk), ("m2", user.pk), ("m3", user.pk)]
    assert identities() == {("anonymous", "a1", user.pk)}


def test_a_login_in_the_same_batch_takes_the_visitors_earlier_events(ingest: Ingest) -> None:
    ingest(
        {"type": "page", "anonymousId": "a1", "messageId": "m1"},
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m2"},
        {"type": "page", "anonymousId": "a1", "messageId": "m3"},
    )

    user = Customer.objects.get()
    assert user.external_id == "u1"
    assert owners() == [("m1", user.pk), ("m2", user.pk), ("m3", user.pk)]


def test_the_user_keeps_their_profile_and_gains_what_the_visitor_knew(ingest: Ingest) -> None:
    # given
    visitor = CustomerFactory(
        external_id=None,
        email="visitor@example.com",
        phone="+14155550100",
        plan="trial",
        traits={"plan": "trial", "utm_source": "ads"},
        first_seen=dt.datetime(2024, 4, 1, tzinfo=dt.UTC),
        last_seen=dt.datetime(2024, 4, 2, tzinfo=dt.UTC),
    )
    IdentityFactory(value="a1", customer=visitor)
    DeviceFactory(customer=visitor, token="t1")
    user = CustomerFactory(
        external_id="u1",
        email="ada@example.com",
        phone="",
        plan="pro",
        traits={"plan": "pro"},
        first_seen=dt.datetime(2024, 4, 10, tzinfo=dt.UTC),
        last_seen=dt.datetime(2024, 4, 11, tzinfo=dt.UTC),
    )

    # when
    ingest({"type": "track", "userId": "u1", "anonymousId": "a1", "event": "E", "timestamp": at(0)})

    # then
    user.refresh_from_db()
    assert not Customer.objects.filter(pk=visitor.pk).exists()
    assert (user.email, user.phone, user.plan, user.traits) == (
        "ada@example.com",
        "+14155550100",
        "pro",
        {"plan": "pro", "utm_source": "ads"},
    )
    assert (user.first_seen, user.last_seen) == (
        dt.datetime(2024, 4, 1, tzinfo=dt.UTC),
        dt.datetime(2024, 5, 1, 11, 0, tzinfo=dt.UTC),
    )
    assert list(Device.objects.values_list("token", "customer_id")) == [("t1", user.pk)]


def test_an_anonymous_id_of_another_known_user_is_not_merged(ingest: Ingest) -> None:
    # given: a shared device, first used by u1
    ingest({"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m1"})
    first = Customer.objects.get()

    # when: u2 logs in on it
    ingest({"type": "identify", "userId": "u2", "anonymousId": "a1", "messageId": "m2"})

    # then: both users keep their own events, and the device id stays with u1
    second = Customer.objects.get(external_id="u2")
    assert sorted(Customer.objects.values_list("external_id", flat=True)) == ["u1", "u2"]
    assert owners() == [("m1", first.pk), ("m2", second.pk)]
    assert identities() == {("anonymous", "a1", first.pk)}


def test_an_anonymous_id_merged_in_a_batch_is_not_merged_again_by_a_second_user(
    ingest: Ingest,
) -> None:
    ingest({"type": "page", "anonymousId": "a1", "messageId": "m1"})

    ingest(
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m2"},
        {"type": "identify", "userId": "u2", "anonymousId": "a1", "messageId": "m3"},
    )

    u1 = Customer.objects.get(external_id="u1")
    u2 = Customer.objects.get(external_id="u2")
    assert Customer.objects.count() == 2
    assert owners() == [("m1", u1.pk), ("m2", u1.pk), ("m3", u2.pk)]
    assert identities() == {("anonymous", "a1", u1.pk)}


# --- alias ---------------------------------------------------------------------------------


def test_alias_merges_an_anonymous_customer_into_the_user(ingest: Ingest) -> None:
    ingest({"type": "page", "anonymousId": "a1", "messageId": "m1"})
    visitor = Customer.objects.get()
    user = CustomerFactory(external_id="u1")

    ingest({"type": "alias", "previousId": "a1", "userId": "u1", "messageId": "m2"})

    assert list(Customer.objects.values_list("pk", flat=True)) == [user.pk]
    assert not Customer.objects.filter(pk=visitor.pk).exists()
    assert owners() == [("m1", user.pk), ("m2", user.pk)]
    assert identities() == {("anonymous", "a1", user.pk), ("alias", "a1", user.pk)}


def test_alias_merges_the_previous_users_customer_into_the_new_one(
    ingest: Ingest, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    old = CustomerFactory(external_id="old")
    new = CustomerFactory(external_id="new")
    EventFactory(customer=old, message_id="e1")
    merges: list[tuple[int, int]] = []

    def receiver(sender: Any, source_customer_id: int, target_customer_id: int, **_: Any) -> None:
        merges.append((source_customer_id, target_customer_id))

    customers_merged.connect(receiver)
    try:
        # when
        with django_capture_on_commit_callbacks(execute=True):
            ingest({"type": "alias", "previousId": "old", "userId": "new", "messageId": "m1"})
    finally:
        customers_merged.disconnect(receiver)

    # then
    assert list(Customer.objects.values_list("pk", flat=True)) == [new.pk]
    assert owners() == [("e1", new.pk), ("m1", new.pk)]
    assert identities() == {("alias", "old", new.pk), ("anonymous", "old", new.pk)}
    assert merges == [(old.pk, new.pk)]


def test_events_sent_with_the_old_user_id_after_an_alias_go_to_the_merged_customer(
    ingest: Ingest,
) -> None:
    old = CustomerFactory(external_id="old")
    new = CustomerFactory(external_id="new")
    ingest({"type": "alias", "previousId": "old", "userId": "new", "messageId": "m1"})

    ingest(
        {"type": "track", "userId": "old", "event": "E", "messageId": "m2"},
        {"type": "identify", "userId": "old", "messageId": "m3", "traits": {"plan": "pro"}},
        {"type": "page", "anonymousId": "old", "messageId": "m4"},
    )

    assert not Customer.objects.filter(pk=old.pk).exists()
    assert list(Customer.objects.values_list("pk", "plan")) == [(new.pk, "pro")]
    assert owners() == [("m1", new.pk), ("m2", new.pk), ("m3", new.pk), ("m4", new.pk)]


def test_alias_to_an_unknown_user_id_renames_the_previous_customer(ingest: Ingest) -> None:
    old = CustomerFactory(external_id="old")
    EventFactory(customer=old, message_id="e1")

    ingest({"type": "alias", "previousId": "old", "userId": "new", "messageId": "m1"})
    ingest({"type": "track", "userId": "old", "event": "E", "messageId": "m2"})

    assert list(Customer.objects.values_list("pk", "external_id")) == [(old.pk, "new")]
    assert owners() == [("e1", old.pk), ("m1", old.pk), ("m2", old.pk)]
    assert identities() == {("alias", "old", old.pk), ("anonymous", "old", old.pk)}


def test_alias_with_two_unknown_ids_creates_the_user_both_resolve_to(ingest: Ingest) -> None:
    ingest(
        {"type": "alias", "previousId": "a1", "userId": "u1", "messageId": "m1", "timestamp": at(0)}
    )
    ingest(
        {"type": "page", "anonymousId": "a1", "messageId": "m2"},
        {"type": "track", "userId": "a1", "event": "E", "messageId": "m3"},
    )

    user = Customer.objects.get()
    assert (user.external_id, user.created_at) == ("u1", dt.datetime(2024, 5, 1, 11, tzinfo=dt.UTC))
    assert owners() == [("m1", user.pk), ("m2", user.pk), ("m3", user.pk)]


def test_alias_applies_to_the_whole_batch_it_arrives_in(ingest: Ingest) -> None:
    ingest({"type": "page", "anonymousId": "a1", "messageId": "m0"})
    user = CustomerFactory(external_id="u1")

    ingest(
        {"type": "page", "anonymousId": "a1", "messageId": "m1"},
        {"type": "alias", "previousId": "a1", "userId": "u1", "messageId": "m2"},
        {"type": "page", "anonymousId": "a1", "messageId": "m3"},
    )

    assert list(Customer.objects.values_list("pk", flat=True)) == [user.pk]
    assert owners() == [("m0", user.pk), ("m1", user.pk), ("m2", user.pk), ("m3", user.pk)]


def test_a_replayed_alias_changes_nothing(ingest: Ingest) -> None:
    old = CustomerFactory(external_id="old")
    new = CustomerFactory(external_id="new")
    alias = {"type": "alias", "previousId": "old", "userId": "new", "messageId": "m1"}
    ingest(alias)

    result = ingest(alias)

    assert result == IngestResult(accepted=1, stored=0)
    assert not Customer.objects.filter(pk=old.pk).exists()
    assert list(Customer.objects.values_list("pk", flat=True)) == [new.pk]
    assert owners() == [("m1", new.pk)]
    assert identities() == {("alias", "old", new.pk), ("anonymous", "old", new.pk)}


def test_an_id_aliased_to_itself_can_later_be_aliased_to_another_user(ingest: Ingest) -> None:
    # Regression: the merge re-created the alias identity the source already held (a 500).
    ingest({"type": "alias", "previousId": "x", "userId": "x", "messageId": "m1"})
    target = CustomerFactory(external_id="y")

    ingest({"type": "alias", "previousId": "x", "userId": "y", "messageId": "m2"})

    assert list(Customer.objects.values_list("pk", flat=True)) == [target.pk]
    assert owners() == [("m1", target.pk), ("m2", target.pk)]
    assert identities() == {("alias", "x", target.pk), ("anonymous", "x", target.pk)}


def test_alias_chains_resolve_to_the_latest_user(ingest: Ingest) -> None:
    ingest({"type": "track", "userId": "v1", "event": "E", "messageId": "m1"})
    ingest({"type": "alias", "previousId": "v1", "userId": "v2", "messageId": "m2"})
    ingest({"type": "alias", "previousId": "v2", "userId": "v3", "messageId": "m3"})

    ingest(
        {"type": "track", "userId": "v1", "event": "E", "messageId": "m4"},
        {"type": "track", "userId": "v2", "event": "E", "messageId": "m5"},
    )

    customer = Customer.objects.get()
    assert customer.external_id == "v3"
    assert {pk for _, pk in owners()} == {customer.pk}


# --- customers_merge -----------------------------------------------------------------------


def test_merging_a_customer_into_itself_does_nothing() -> None:
    customer = CustomerFactory()

    assert customers_merge(source_id=customer.pk, target_id=customer.pk) is False
    assert Customer.objects.filter(pk=customer.pk).exists()


def test_merging_a_customer_that_is_already_gone_does_nothing() -> None:
    target = CustomerFactory(traits={"plan": "pro"})

    assert customers_merge(source_id=target.pk + 1000, target_id=target.pk) is False
    target.refresh_from_db()
    assert target.traits == {"plan": "pro"}


def test_merging_keeps_the_source_account_when_the_target_has_none() -> None:
    account = AccountFactory()
    source = CustomerFactory(account=account)
    target = CustomerFactory(account=None)

    assert customers_merge(source_id=source.pk, target_id=target.pk) is True

    target.refresh_from_db()
    assert target.account_id == account.pk
    assert list(Identity.objects.values_list("kind", "value", "customer_id")) == [
        (IdentityKind.ALIAS, source.external_id, target.pk)
    ]


def test_events_after_a_login_in_the_same_batch_carry_the_account_the_visitor_brought(
    ingest: Ingest,
) -> None:
    # given: an anonymous visitor who joined an account; a known user without one
    account = AccountFactory(external_id="acme")
    visitor = IdentityFactory(
        value="anon-1", customer=CustomerFactory(external_id=None, email="", account=account)
    ).customer
    user = CustomerFactory(external_id="u-1", account=None)

    # when: the visitor logs in and keeps working, in one batch
    ingest(
        {"type": "identify", "userId": "u-1", "anonymousId": "anon-1", "messageId": "i"},
        {"type": "track", "userId": "u-1", "event": "Report Created", "messageId": "t"},
    )

    # then
    assert not Customer.objects.filter(pk=visitor.pk).exists()
    assert sorted(Event.objects.values_list("message_id", "customer_id", "account_id")) == [
        ("i", user.pk, account.pk),
        ("t", user.pk, account.pk),
    ]
