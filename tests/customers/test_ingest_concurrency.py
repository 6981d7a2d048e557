"""Merges against concurrent ingest: no event may be left on a deleted customer, and
unrelated logins must not block or deadlock each other. Real transactions, no sleeps:
each test waits until PostgreSQL shows the expected lock wait."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from customers.models import Customer, Event, Identity, IdentityKind, Source
from tests.customers.test_ingest_service import ingest_batch
from tests.factories import CustomerFactory, IdentityFactory, SourceFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _dsn() -> str:
    db = connection.settings_dict
    return (
        f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} "
        f"user={db['USER']} dbname={db['NAME']}"
    )


@pytest.fixture
def other() -> Iterator[psycopg.Connection[Any]]:
    """A second session, standing in for another request's open transaction."""
    with psycopg.connect(_dsn()) as conn:
        yield conn


def _waiting_sessions() -> int:
    with connection.cursor() as cursor:
        # Only this database's sessions: other test runs may share the server.
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        (count,) = cursor.fetchone()
    return int(count)


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"


def _in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _insert_event(conn: psycopg.Connection[Any], source: Source, customer_id: int) -> None:
    now = timezone.now()
    conn.execute(
        "INSERT INTO customers_event (source_id, message_id, customer_id, type, name,"
        " properties, context, occurred_at, received_at)"
        " VALUES (%s, 'in-flight', %s, 'track', 'Viewed', '{}', '{}', %s, %s)",
        [source.pk, customer_id, now, now],
    )


def test_a_login_merge_waits_for_a_batch_that_resolved_the_visitor_and_takes_its_events(
    other: psycopg.Connection[Any],
) -> None:
    # given: an anonymous visitor, and another request that has resolved them (as ingest
    # does, FOR KEY SHARE) and is about to store an event for them
    source = SourceFactory()
    visitor = IdentityFactory(
        value="anon-x", customer=CustomerFactory(external_id=None, email="")
    ).customer
    user = CustomerFactory(external_id="u-1")
    other.execute("SELECT 1 FROM customers_customer WHERE id = %s FOR KEY SHARE", [visitor.pk])

    # when: the visitor logs in while that request is in flight
    login, errors = _in_thread(
        lambda: ingest_batch(
            source.pk,
            [{"type": "identify", "userId": "u-1", "anonymousId": "anon-x", "messageId": "i"}],
        )
    )
    _until(lambda: _waiting_sessions() == 1, "the merge waits for the in-flight request")
    _insert_event(other, source, visitor.pk)
    other.commit()
    login.join(timeout=10)

    # then: the in-flight event moved with the visitor; nothing points at a deleted customer
    assert errors == []
    assert not Customer.objects.filter(pk=visitor.pk).exists()
    assert sorted(Event.objects.values_list("message_id", "customer_id")) == [
        ("i", user.pk),
        ("in-flight", user.pk),
    ]
    assert list(Identity.objects.values_list("value", "customer_id")) == [("anon-x", user.pk)]


def test_a_batch_arriving_during_a_merge_resolves_the_visitor_to_the_user(
    other: psycopg.Connection[Any],
) -> None:
    # given: a merge of the visitor into the user has locked the visitor and not yet committed
    source = SourceFactory()
    visitor = IdentityFactory(
        value="anon-x", customer=CustomerFactory(external_id=None, email="")
    ).customer
    user = CustomerFactory(external_id="u-1")
    other.execute("SELECT 1 FROM customers_customer WHERE id = %s FOR UPDATE", [visitor.pk])

    # when: an anonymous-only batch for the visitor arrives, and then the merge commits
    batch, errors = _in_thread(
        lambda: ingest_batch(
            source.pk, [{"type": "track", "anonymousId": "anon-x", "event": "E", "messageId": "t"}]
        )
    )
    _until(lambda: _waiting_sessions() == 1, "the batch waits for the merge")
    other.execute(
        "UPDATE customers_identity SET customer_id = %s WHERE customer_id = %s",
        [user.pk, visitor.pk],
    )
    other.execute("DELETE FROM customers_customer WHERE id = %s", [visitor.pk])
    other.commit()
    batch.join(timeout=10)

    # then: the event is the user's, and no stray anonymous customer was left behind
    assert errors == []
    assert list(Event.objects.values_list("customer_id", flat=True)) == [user.pk]
    assert list(Customer.objects.values_list("pk", flat=True)) == [user.pk]


def test_many_people_logging_in_at_once_all_get_their_history() -> None:
    # given: eight visitors, each browsing with their own anonymous id
    source = SourceFactory()
    people = range(8)
    for n in people:
        ingest_batch(
            source.pk,
            [
                {"type": "page", "anonymousId": f"anon-{n}", "name": "Home", "messageId": f"p{n}"},
                *(
                    {"type": "page", "anonymousId": f"crowd-{n}-{i}", "messageId": f"c{n}-{i}"}
                    for i in range(150)
                ),
            ],
        )
    ready = threading.Barrier(len(people))

    def log_in(n: int) -> None:
        ready.wait(timeout=10)
        ingest_batch(
            source.pk,
            [
                {
                    "type": "identify",
                    "userId": f"u-{n}",
                    "anonymousId": f"anon-{n}",
                    "messageId": f"i{n}",
                },
                *(
                    {"type": "page", "anonymousId": f"crowd-{n}-{i}", "messageId": f"d{n}-{i}"}
                    for i in range(150)
                ),
            ],
        )

    # when: they all log in at the same moment, each batch also naming 150 other visitors
    runs = [_in_thread(lambda n=n: log_in(n)) for n in people]
    for thread, _ in runs:
        thread.join(timeout=30)

    # then: every login merged, nothing failed or was lost
    assert [errors for _, errors in runs] == [[] for _ in people]
    for n in people:
        user = Customer.objects.get(external_id=f"u-{n}")
        assert set(user.events.values_list("message_id", flat=True)) == {f"p{n}", f"i{n}"}
        assert Identity.objects.get(kind=IdentityKind.ANONYMOUS, value=f"anon-{n}").customer == user
    assert Event.objects.count() == len(people) * 302
    assert Customer.objects.filter(external_id__isnull=True).count() == len(people) * 150


def test_a_busy_customer_row_still_gets_its_seen_span_widened(
    other: psycopg.Connection[Any],
) -> None:
    # given: a customer seen 11:10-11:20 whose row another request is updating right now
    source = SourceFactory()
    day = (timezone.now() - dt.timedelta(days=1)).replace(
        hour=11, minute=0, second=0, microsecond=0
    )
    customer = CustomerFactory(
        external_id="u-1", first_seen=day.replace(minute=10), last_seen=day.replace(minute=20)
    )
    other.execute("SELECT 1 FROM customers_customer WHERE id = %s FOR NO KEY UPDATE", [customer.pk])

    # when: events from before and after that span arrive
    batch, errors = _in_thread(
        lambda: ingest_batch(
            source.pk,
            [
                {
                    "type": "track",
                    "userId": "u-1",
                    "event": "E",
                    "messageId": "early",
                    "timestamp": day.replace(minute=5).isoformat(),
                },
                {
                    "type": "track",
                    "userId": "u-1",
                    "event": "E",
                    "messageId": "late",
                    "timestamp": day.replace(minute=50).isoformat(),
                },
            ],
        )
    )
    _until(lambda: _waiting_sessions() == 1, "the batch waits for the busy row")
    other.commit()
    batch.join(timeout=10)

    # then
    customer.refresh_from_db()
    assert errors == []
    assert (customer.first_seen, customer.last_seen) == (
        day.replace(minute=5),
        day.replace(minute=50),
    )


def test_one_login_sent_as_two_concurrent_requests_merges_once_without_a_deadlock(
    other: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    # given: a visitor with an anonymous-only request in flight (it holds the visitor)
    source = SourceFactory()
    visitor = IdentityFactory(
        value="anon-x", customer=CustomerFactory(external_id=None, email="")
    ).customer
    user = CustomerFactory(external_id="u-1")
    other.execute("SELECT 1 FROM customers_customer WHERE id = %s FOR KEY SHARE", [visitor.pk])

    # when: the login arrives as two requests at once, as analytics.js sends identify and
    # track, both carrying both ids
    def request(kind: str) -> Callable[[], Any]:
        call = {"type": kind, "userId": "u-1", "anonymousId": "anon-x", "messageId": kind}
        if kind == "track":
            call["event"] = "Signed In"
        return lambda: ingest_batch(source.pk, [call])

    runs = [_in_thread(request("identify")), _in_thread(request("track"))]
    _until(lambda: _waiting_sessions() == 2, "both requests wait for the visitor")
    other.commit()
    for thread, _ in runs:
        thread.join(timeout=10)

    # then: one merge, no deadlock and no retry, both events on the user
    assert [errors for _, errors in runs] == [[], []]
    assert [r.message for r in caplog.records if "rolled back" in r.message] == []
    assert not Customer.objects.filter(pk=visitor.pk).exists()
    assert sorted(Event.objects.values_list("message_id", "customer_id")) == [
        ("identify", user.pk),
        ("track", user.pk),
    ]
