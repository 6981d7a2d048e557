"""``events_ingest``: dedup, the events_ingested hand-off, profiles, devices, last seen, load."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone

from customers.ingest.parsing import Limits, parse_batch
from customers.ingest.service import IngestResult, events_ingest
from customers.models import Account, Customer, Device, Event, Identity, Source
from customers.services import CreatedKey
from customers.signals import IngestedEvent, events_ingested
from tests.factories import AccountFactory, CustomerFactory, DeviceFactory, SourceFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
Ingest = Callable[..., IngestResult]


def at(minutes: float) -> dt.datetime:
    """``minutes`` after 11:00 on the test day."""
    return dt.datetime(2024, 5, 1, 11, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes)


@pytest.fixture
def now() -> Iterator[dt.datetime]:
    with time_machine.travel(NOW, tick=False):
        yield NOW


@pytest.fixture
def source() -> Source:
    return SourceFactory()


def ingest_batch(source_id: int, items: list[dict[str, Any]]) -> IngestResult:
    """Parse a batch of Segment calls and store it, as the /v1/batch view does."""
    received_at = timezone.now()
    parsed = parse_batch(orjson.dumps({"batch": items}), received_at, Limits())
    assert parsed.errors == []
    return events_ingest(source_id=source_id, messages=parsed.messages, received_at=received_at)


@pytest.fixture
def ingest(source: Source, now: dt.datetime) -> Ingest:
    def _ingest(*items: dict[str, Any]) -> IngestResult:
        return ingest_batch(source.pk, list(items))

    return _ingest


@pytest.fixture
def ingested() -> Iterator[list[dict[str, Any]]]:
    """Every ``events_ingested`` sent while the test runs, as keyword arguments."""
    sent: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal")
        sent.append({"sender": sender, **kwargs})

    events_ingested.connect(receiver)
    yield sent
    events_ingested.disconnect(receiver)


def track(message_id: str, user_id: str = "u1", minutes: float = 0) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user_id,
        "event": "Report Created",
        "messageId": message_id,
        "timestamp": at(minutes).isoformat(),
    }


def identify(message_id: str, traits: dict[str, Any], user_id: str = "u1") -> dict[str, Any]:
    return {"type": "identify", "userId": user_id, "messageId": message_id, "traits": traits}


# --- Dedup and the events_ingested signal ---------------------------------------------------


def test_it_reports_how_many_messages_were_accepted_and_new(ingest: Ingest) -> None:
    ingest(track("m1"))

    result = ingest(track("m1"), track("m2"), track("m3"))

    assert result == IngestResult(accepted=3, stored=2)
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["m1", "m2", "m3"]


def test_an_empty_batch_touches_nothing(
    source: Source, django_assert_num_queries: Any, ingested: list[dict[str, Any]]
) -> None:
    with django_assert_num_queries(0):
        result = events_ingest(source_id=source.pk, messages=[], received_at=NOW)

    assert result == IngestResult(accepted=0, stored=0)
    assert ingested == []


def test_the_same_message_id_from_another_source_is_a_different_event(
    ingest: Ingest, source: Source
) -> None:
    other = SourceFactory()
    ingest(track("m1"))

    result = ingest_batch(other.pk, [track("m1")])

    assert result == IngestResult(accepted=1, stored=1)
    assert sorted(Event.objects.values_list("source_id", "message_id")) == sorted(
        [(source.pk, "m1"), (other.pk, "m1")]
    )


def test_a_message_id_repeated_within_a_batch_counts_once_as_first_sent(
    ingest: Ingest, ingested: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    # given: a client bug sends one messageId twice with different content
    first = identify("m1", {"plan": "free"})
    second = {**identify("m1", {"plan": "pro"}), "timestamp": at(30).isoformat()}

    # when
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest(first, second)

    # then: the second is a replay of the first in every respect
    event = Event.objects.get()
    customer = Customer.objects.get()
    assert result == IngestResult(accepted=2, stored=1)
    assert (event.properties, event.occurred_at) == ({"plan": "free"}, NOW)
    assert (customer.plan, customer.traits) == ("free", {"plan": "free"})
    assert [call["events"] for call in ingested] == [
        [
            IngestedEvent(
                id=event.pk,
                customer_id=customer.pk,
                account_id=None,
                type="identify",
                name="",
                occurred_at=NOW,
            )
        ]
    ]


def test_it_sends_events_ingested_with_exactly_the_new_events_after_commit(
    ingest: Ingest,
    source: Source,
    ingested: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: m1 is already stored, u2 belongs to an account
    ingest(track("m1"))
    account = AccountFactory(external_id="acme")
    u2 = CustomerFactory(external_id="u2", account=account)

    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        ingest(
            track("m1"),
            track("m2", minutes=2),
            {"type": "page", "anonymousId": "a1", "name": "Home", "messageId": "m3"},
            track("m4", user_id="u2", minutes=4),
        )

    # then
    u1 = Customer.objects.get(external_id="u1")
    visitor = Identity.objects.get(value="a1").customer_id
    ids = dict(Event.objects.values_list("message_id", "id"))
    assert len(callbacks) == 1
    assert ingested == [
        {
            "sender": Source,
            "source_id": source.pk,
            "events": [
                IngestedEvent(
                    id=ids["m2"],
                    customer_id=u1.pk,
                    account_id=None,
                    type="track",
                    name="Report Created",
                    occurred_at=at(2),
                ),
                IngestedEvent(
                    id=ids["m3"],
                    customer_id=visitor,
                    account_id=None,
                    type="page",
                    name="Home",
                    occurred_at=NOW,
                ),
                IngestedEvent(
                    id=ids["m4"],
                    customer_id=u2.pk,
                    account_id=account.pk,
                    type="track",
                    name="Report Created",
                    occurred_at=at(4),
                ),
            ],
        }
    ]


def test_it_does_not_send_events_ingested_before_the_transaction_commits(
    ingest: Ingest, ingested: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        ingest(track("m1"))

    assert len(callbacks) == 1
    assert ingested == []


def test_a_replayed_batch_is_accepted_stores_nothing_and_sends_no_signal(
    post: Callable[..., Any],
    write_key: CreatedKey,
    ingested: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given
    batch = {
        "batch": [
            track("m1"),
            identify("m2", {"plan": "pro"}),
            {"type": "group", "userId": "u1", "groupId": "acme", "messageId": "m3"},
        ]
    }
    with django_capture_on_commit_callbacks(execute=True):
        post("/v1/batch", batch)
    stored = list(Event.objects.order_by("id").values_list("id", "message_id", "customer_id"))
    ingested.clear()

    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post("/v1/batch", batch)

    # then
    assert (response.status_code, response.json()) == (200, {"success": True})
    assert list(Event.objects.order_by("id").values_list("id", "message_id", "customer_id")) == (
        stored
    )
    assert (Customer.objects.count(), Account.objects.count()) == (1, 1)
    assert callbacks == []
    assert ingested == []


def test_a_replayed_old_identify_does_not_overwrite_newer_traits(ingest: Ingest) -> None:
    old = identify("m1", {"plan": "free", "email": "old@example.com"})
    ingest(old)
    ingest(identify("m2", {"plan": "pro", "email": "new@example.com"}))

    ingest(old)

    customer = Customer.objects.get()
    assert (customer.plan, customer.email, customer.traits) == (
        "pro",
        "new@example.com",
        {"plan": "pro", "email": "new@example.com"},
    )


def test_a_replayed_old_group_does_not_move_the_customer_back(ingest: Ingest) -> None:
    old = {"type": "group", "userId": "u1", "groupId": "old-co", "messageId": "m1"}
    ingest(old)
    ingest({"type": "group", "userId": "u1", "groupId": "new-co", "messageId": "m2"})

    ingest(old)

    customer = Customer.objects.get()
    assert customer.account.external_id == "new-co"


# --- Profiles ------------------------------------------------------------------------------


def test_identify_merges_traits_into_the_existing_ones(ingest: Ingest) -> None:
    CustomerFactory(external_id="u1", plan="free", traits={"plan": "free", "colour": "red"})

    ingest(identify("m1", {"plan": "pro", "seats": 3}))

    customer = Customer.objects.get()
    assert (customer.plan, customer.traits) == (
        "pro",
        {"plan": "pro", "colour": "red", "seats": 3},
    )


def test_later_identifies_in_a_batch_win(ingest: Ingest) -> None:
    ingest(
        identify("m1", {"plan": "free", "email": "a@example.com"}),
        identify("m2", {"plan": "pro"}),
        identify("m3", {"region": "eu"}, user_id="u2"),
    )

    u1 = Customer.objects.get(external_id="u1")
    u2 = Customer.objects.get(external_id="u2")
    assert (u1.plan, u1.email, u1.region, u1.traits) == (
        "pro",
        "a@example.com",
        "",
        {"plan": "pro", "email": "a@example.com"},
    )
    assert (u2.plan, u2.region, u2.traits) == ("", "eu", {"region": "eu"})


def test_identify_keeps_columns_the_traits_do_not_mention(ingest: Ingest) -> None:
    CustomerFactory(external_id="u1", email="ada@example.com", time_zone="Europe/London")

    ingest(identify("m1", {"plan": "pro"}))

    customer = Customer.objects.get()
    assert (customer.email, customer.time_zone, customer.plan) == (
        "ada@example.com",
        "Europe/London",
        "pro",
    )


def test_identify_can_profile_an_anonymous_visitor(ingest: Ingest) -> None:
    ingest({"type": "identify", "anonymousId": "a1", "messageId": "m1", "traits": {"plan": "pro"}})

    customer = Customer.objects.get()
    assert (customer.external_id, customer.plan, customer.traits) == (None, "pro", {"plan": "pro"})


def test_group_creates_the_account_and_later_calls_update_it(ingest: Ingest) -> None:
    ingest(
        {
            "type": "group",
            "userId": "u1",
            "groupId": "acme",
            "messageId": "m1",
            "traits": {"name": "Acme", "plan": "pro", "seats": 5},
        }
    )

    ingest(
        {
            "type": "group",
            "userId": "u2",
            "groupId": "acme",
            "messageId": "m2",
            "traits": {"name": "Acme Inc", "status": "inactive"},
        }
    )

    account = Account.objects.get()
    assert (account.external_id, account.name, account.plan, account.status, account.traits) == (
        "acme",
        "Acme Inc",
        "pro",
        "inactive",
        {"name": "Acme Inc", "plan": "pro", "seats": 5, "status": "inactive"},
    )
    assert sorted(Customer.objects.values_list("external_id", "account_id")) == [
        ("u1", account.pk),
        ("u2", account.pk),
    ]


def test_group_without_traits_names_the_account_after_its_id(ingest: Ingest) -> None:
    ingest({"type": "group", "userId": "u1", "groupId": "acme", "messageId": "m1"})

    account = Account.objects.get()
    assert (account.name, account.traits) == ("acme", {})


def test_events_carry_the_account_the_customer_was_in_at_the_time(ingest: Ingest) -> None:
    # given
    old = AccountFactory(external_id="old-co")
    CustomerFactory(external_id="u1", account=old)

    # when
    ingest(
        track("m1"),
        {"type": "group", "userId": "u1", "groupId": "new-co", "messageId": "m2"},
        track("m3"),
    )

    # then
    new = Account.objects.get(external_id="new-co")
    assert list(Event.objects.order_by("id").values_list("message_id", "account_id")) == [
        ("m1", old.pk),
        ("m2", new.pk),
        ("m3", new.pk),
    ]
    assert Customer.objects.get().account_id == new.pk


# --- Devices -------------------------------------------------------------------------------


def with_device(item: dict[str, Any], token: str, kind: str = "ios") -> dict[str, Any]:
    return {**item, "context": {"device": {"token": token, "type": kind}}}


def devices() -> list[tuple[str, str, str | None, bool, dt.datetime]]:
    return list(
        Device.objects.order_by("platform", "token").values_list(
            "platform", "token", "customer__external_id", "is_active", "last_seen"
        )
    )


def test_a_device_token_in_the_context_registers_a_device(ingest: Ingest) -> None:
    ingest(with_device(track("m1", minutes=5), "t1"), with_device(track("m2"), "t2", "android"))

    assert devices() == [
        ("android", "t2", "u1", True, at(0)),
        ("ios", "t1", "u1", True, at(5)),
    ]


def test_a_token_used_by_another_customer_moves_to_them(ingest: Ingest) -> None:
    ingest(with_device(track("m1", user_id="u1", minutes=1), "t1"))

    ingest(with_device(track("m2", user_id="u2", minutes=2), "t1"))

    assert devices() == [("ios", "t1", "u2", True, at(2))]


def test_a_replayed_message_does_not_move_a_token_back(ingest: Ingest) -> None:
    first = with_device(track("m1", user_id="u1", minutes=1), "t1")
    ingest(first)
    ingest(with_device(track("m2", user_id="u2", minutes=2), "t1"))

    ingest(first)

    assert devices() == [("ios", "t1", "u2", True, at(2))]


def test_a_deactivated_token_seen_again_is_active_again(ingest: Ingest) -> None:
    DeviceFactory(customer=CustomerFactory(external_id="u1"), token="t1", is_active=False)

    ingest(with_device(track("m1", minutes=3), "t1"))

    assert devices() == [("ios", "t1", "u1", True, at(3))]


def test_the_same_token_on_another_platform_is_another_device(ingest: Ingest) -> None:
    ingest(with_device(track("m1"), "t1", "ios"), with_device(track("m2"), "t1", "web"))

    assert [(platform, token) for platform, token, *_ in devices()] == [
        ("ios", "t1"),
        ("web", "t1"),
    ]


def test_a_device_without_a_known_platform_is_not_registered(ingest: Ingest) -> None:
    ingest(with_device(track("m1"), "t1", "fridge"))

    assert Device.objects.count() == 0


# --- first_seen / last_seen ----------------------------------------------------------------


@pytest.fixture
def seen_customer() -> Customer:
    return CustomerFactory(external_id="u1", first_seen=at(10), last_seen=at(20))


def seen() -> tuple[dt.datetime | None, dt.datetime | None]:
    return Customer.objects.values_list("first_seen", "last_seen").get()


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        ([5], (at(5), at(20))),
        ([30], (at(10), at(30))),
        ([15], (at(10), at(20))),
        ([30, 5, 25], (at(5), at(30))),
        ([40, 35], (at(10), at(40))),
    ],
)
def test_an_event_outside_the_seen_span_widens_it(
    ingest: Ingest, seen_customer: Customer, minutes: list[int], expected: tuple[Any, Any]
) -> None:
    ingest(*(track(f"m{i}", minutes=m) for i, m in enumerate(minutes)))

    assert seen() == expected


def test_last_seen_is_kept_to_the_minute(ingest: Ingest, seen_customer: Customer) -> None:
    ingest(track("m1", minutes=20.5))

    assert seen() == (at(10), at(20))


def test_a_customer_seen_for_the_first_time_spans_its_events(ingest: Ingest) -> None:
    CustomerFactory(external_id="u1", first_seen=None, last_seen=None)

    ingest(track("m1", minutes=7), track("m2", minutes=3))

    assert seen() == (at(3), at(7))


def test_a_replayed_old_event_does_not_widen_the_span(ingest: Ingest) -> None:
    ingest(track("m1", minutes=0))
    Customer.objects.update(first_seen=at(10), last_seen=at(20))

    ingest(track("m1", minutes=0))

    assert seen() == (at(10), at(20))


# --- Load ----------------------------------------------------------------------------------


def test_a_batch_costs_the_same_queries_whatever_its_size(
    source: Source, now: dt.datetime, django_assert_num_queries: Any
) -> None:
    # given: 10 known users whose seen span already covers the batches' events
    users = [f"u{n}" for n in range(10)]
    for user in users:
        CustomerFactory(external_id=user, first_seen=at(0), last_seen=at(200))
    small = [track(f"s{i}", user_id=users[i], minutes=i) for i in range(10)]
    large = [track(f"l{i}", user_id=users[i % 10], minutes=i) for i in range(100)]

    # when / then: a fixed handful per batch (savepoint, the locking lookup, one insert that
    # also widens first/last seen, release)
    with django_assert_num_queries(4) as small_queries:
        ingest_batch(source.pk, small)
    with django_assert_num_queries(4) as large_queries:
        result = ingest_batch(source.pk, large)

    assert len(large_queries) == len(small_queries)
    assert result == IngestResult(accepted=100, stored=100)
    assert Event.objects.filter(message_id__startswith="l").count() == 100


# --- Concurrency ---------------------------------------------------------------------------


def _blocked(pids: list[int]) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted AND pid = ANY(%s)",
            [pids],
        )
        (waiting,) = cursor.fetchone()
    return waiting == len(pids)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("identity", ["anonymousId", "userId"])
def test_two_batches_for_the_same_new_person_at_once_make_one_customer(identity: str) -> None:
    # given: two requests for one person nobody has seen yet
    source = SourceFactory()
    batches = [
        [
            {"type": "track", identity: "new-1", "event": "E", "messageId": f"t{n}-{i}"}
            for i in range(5)
        ]
        for n in range(2)
    ]
    ready = threading.Barrier(3)
    pids: list[int] = []
    errors: list[BaseException] = []

    def worker(items: list[dict[str, Any]]) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pids.append(cursor.fetchone()[0])
            ready.wait(timeout=10)
            ingest_batch(source.pk, items)
        except BaseException as exc:  # reported to the test thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(items,), daemon=True) for items in batches]
    for thread in threads:
        thread.start()

    # when: both run while event inserts are held back, so each has created its customer or
    # identity (or is waiting on the other's) before either commits
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("LOCK TABLE customers_event IN EXCLUSIVE MODE")
            ready.wait(timeout=10)
            deadline = time.monotonic() + 10
            while not _blocked(pids):
                assert time.monotonic() < deadline, "the two requests never met"
    finally:
        ready.abort()  # frees the workers if the test thread failed before meeting them
        for thread in threads:
            thread.join(timeout=30)

    # then
    assert errors == []
    customer = Customer.objects.get()
    assert Event.objects.count() == 10
    assert set(Event.objects.values_list("customer_id", flat=True)) == {customer.pk}
    if identity == "userId":
        assert (customer.external_id, Identity.objects.count()) == ("new-1", 0)
    else:
        assert customer.external_id is None
        assert list(Identity.objects.values_list("value", "customer_id")) == [
            ("new-1", customer.pk)
        ]


class _Violation(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _fail_once_with(sqlstate: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from django.db import IntegrityError

    from customers.ingest import service

    calls: list[int] = []
    real = service._ingest

    def flaky(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("conflict") from _Violation(sqlstate)
        return real(*args)

    monkeypatch.setattr(service, "_ingest", flaky)
    return calls


def test_a_batch_that_lost_a_creation_race_is_retried_and_stored(
    source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fail_once_with("23505", monkeypatch)

    result = ingest_batch(source.pk, [{"type": "track", "userId": "u1", "event": "A"}])

    assert (result, len(calls), Event.objects.count()) == (IngestResult(1, 1), 2, 1)


def test_a_batch_failing_for_another_reason_is_not_retried(
    source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import IntegrityError

    calls = _fail_once_with("23502", monkeypatch)

    with pytest.raises(IntegrityError):
        ingest_batch(source.pk, [{"type": "track", "userId": "u1", "event": "A"}])

    assert (len(calls), Event.objects.count(), Customer.objects.count()) == (1, 0, 0)


def test_a_batch_that_keeps_deadlocking_gives_up_as_busy_and_stores_nothing(
    source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    from customers.ingest import service

    calls: list[int] = []

    def deadlocked(*args: Any) -> Any:
        calls.append(1)
        raise OperationalError("deadlock detected") from _Violation("40P01")

    monkeypatch.setattr(service, "_ingest", deadlocked)
    monkeypatch.setattr(service.time, "sleep", lambda seconds: None)

    with pytest.raises(service.IngestBusy):
        ingest_batch(source.pk, [{"type": "track", "userId": "u1", "event": "A"}])

    assert (len(calls), Event.objects.count()) == (3, 0)


def test_a_batch_whose_customer_changed_under_it_is_resolved_again_and_stored(
    source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    from customers.ingest import service
    from customers.services import ConcurrentChange

    calls: list[int] = []
    real = service._ingest

    def changed_once(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ConcurrentChange("a user id changed owner while it was being resolved")
        return real(*args)

    monkeypatch.setattr(service, "_ingest", changed_once)
    monkeypatch.setattr(service.time, "sleep", lambda seconds: None)

    result = ingest_batch(source.pk, [{"type": "track", "userId": "u1", "event": "A"}])

    assert (result, len(calls), Event.objects.count()) == (IngestResult(1, 1), 2, 1)
