"""``events_ingest``: store one parsed batch durably, resolving who each event belongs to.

One transaction per batch, a fixed handful of statements per batch whatever its size:
look up customers and identities, create the missing ones in bulk, insert all events in
one statement that skips replays (``ON CONFLICT DO NOTHING``), then apply profile calls
(identify, group) of the *new* messages only, so a replayed old batch cannot overwrite
newer traits. Merges (alias, an anonymous visitor logging in) are rare and done one by one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import orjson
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce, Greatest, Least
from django.utils import timezone

from customers.ingest.parsing import Message
from customers.ingest.resolution import Seen, owner_of, resolve
from customers.ingest.sql import fetch
from customers.models import (
    Account,
    Customer,
    Device,
    Event,
    Source,
)
from customers.services import ConcurrentChange, customer_alias, profile_fields_apply
from customers.signals import IngestedEvent, events_ingested, events_stored

logger = logging.getLogger(__name__)

_ATTEMPTS = 3
# last_seen is kept to this precision so busy customers are not rewritten on every batch.
_LAST_SEEN_SLACK = dt.timedelta(minutes=1)
_PROFILE_CALLS = frozenset({"identify", "group"})


@dataclasses.dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    stored: int


class IngestBusy(Exception):
    """The batch kept colliding with concurrent work; nothing was stored. Retry shortly."""


def events_ingest(
    *, source_id: int, messages: Sequence[Message], received_at: dt.datetime
) -> IngestResult:
    """Store ``messages`` from one request; returns how many were new.

    Idempotent per ``(source, messageId)``. One transaction: either the whole batch is stored
    or nothing is. A deadlock, a serialization failure or a lost creation race (a concurrent
    batch created the same customer or identity) rolls back and retries after a short,
    jittered pause; if that keeps happening, raises ``IngestBusy``.
    """
    if not messages:
        return IngestResult(accepted=0, stored=0)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with transaction.atomic():
                new_events = _ingest(source_id, messages, received_at)
                if new_events:
                    # In the transaction: receivers record durable follow-up work with the
                    # events (the milestone evaluator's pending rows).
                    events_stored.send(sender=Source, source_id=source_id, events=new_events)
                    transaction.on_commit(
                        partial(
                            events_ingested.send,
                            sender=Source,
                            source_id=source_id,
                            events=new_events,
                        )
                    )
            return IngestResult(accepted=len(messages), stored=len(new_events))
        except (OperationalError, IntegrityError, ConcurrentChange) as exc:
            if not _is_transient(exc):
                raise
            logger.warning("ingest batch rolled back by %s (attempt %d)", exc, attempt)
            if attempt < _ATTEMPTS:
                # Jitter so two colliding batches do not collide again on the retry.
                time.sleep(random.uniform(0.005, 0.025) * attempt)  # noqa: S311
    raise IngestBusy(f"the batch collided with concurrent work {_ATTEMPTS} times")


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, ConcurrentChange):
        return True
    # deadlock_detected, serialization_failure; unique_violation: a concurrent batch created
    # the same customer or identity first; foreign_key_violation: a row this batch linked
    # to was merged away before commit. On retry this batch resolves the ids afresh.
    code = getattr(exc.__cause__, "sqlstate", None)
    return code in {"40P01", "40001", "23505", "23503"}


def _ingest(
    source_id: int, messages: Sequence[Message], received_at: dt.datetime
) -> list[IngestedEvent]:
    # A messageId repeated within one batch is a replay of its first occurrence: only that one
    # may be stored or touch profiles and devices.
    unique: dict[str, Message] = {}
    for message in messages:
        unique.setdefault(message.message_id, message)
    messages = list(unique.values())
    for message in messages:
        if message.type == "alias" and message.previous_id and message.user_id:
            customer_alias(
                previous_id=message.previous_id, user_id=message.user_id, at=message.occurred_at
            )
    seen = resolve(messages)
    owners = [owner_of(message, seen) for message in messages]
    accounts = _accounts_ensure(messages)
    account_ids = _accounts_at_time(messages, owners, accounts)
    inserted = _events_insert(source_id, messages, owners, account_ids, received_at)
    fresh = [message for message in messages if message.message_id in inserted]
    if fresh:
        fresh_owners = {message.message_id: owner_of(message, seen) for message in fresh}
        _profiles_apply(fresh, fresh_owners, accounts)
        _devices_register(fresh, fresh_owners)
    return sorted(inserted.values(), key=lambda event: event.id)


# --- Accounts ------------------------------------------------------------------------------


def _accounts_ensure(messages: Sequence[Message]) -> dict[str, int]:
    group_ids = sorted({m.group_id for m in messages if m.type == "group" and m.group_id})
    if not group_ids:
        return {}
    Account.objects.bulk_create(
        [Account(external_id=g, name=g) for g in group_ids], ignore_conflicts=True
    )
    return dict(Account.objects.filter(external_id__in=group_ids).values_list("external_id", "id"))


def _accounts_at_time(
    messages: Sequence[Message],
    owners: list[Seen],
    accounts: dict[str, int],
) -> list[int | None]:
    """The account each event belongs to: the owner's, or the group joined earlier in the batch."""
    current: dict[int, int | None] = {}
    result: list[int | None] = []
    for message, owner in zip(messages, owners, strict=True):
        account_id = current.get(owner.id, owner.account_id)
        if message.type == "group" and message.group_id:
            account_id = accounts[message.group_id]
            current[owner.id] = account_id
        result.append(account_id)
    return result


# --- Events --------------------------------------------------------------------------------

_INSERT_SQL = """
INSERT INTO customers_event
    (source_id, message_id, customer_id, account_id, type, name,
     properties, context, occurred_at, received_at)
SELECT %s, e->>0, (e->>1)::bigint, (e->>2)::bigint, e->>3, e->>4, e->5, e->6,
       (e->>7)::timestamptz, %s
FROM jsonb_array_elements(%s::jsonb) AS e
ON CONFLICT (source_id, message_id) DO NOTHING
RETURNING id, message_id, customer_id, occurred_at
"""

# The insert, and first_seen/last_seen widening, in one round trip. Here a batch takes its
# customer write locks, all at once and in id order: FOR NO KEY UPDATE over the customers
# whose seen span the new events widen (last_seen is kept to the minute, so a busy customer
# is not rewritten per batch) and the owners of identify/group calls, written next by
# _profiles_apply. Taking them together and in order keeps batches from deadlocking each
# other. (Merges lock their own two customers earlier, during resolution.)
# Composed of constants only.
_INSERT_AND_TOUCH_SQL = f"""
WITH inserted AS ({_INSERT_SQL}),
span AS (
    SELECT customer_id, min(occurred_at) AS low, max(occurred_at) AS high
    FROM inserted GROUP BY customer_id
),
wanted AS (
    SELECT span.customer_id AS id
    FROM span JOIN customers_customer c ON c.id = span.customer_id
    WHERE c.first_seen IS NULL OR c.last_seen IS NULL
       OR c.first_seen > span.low OR c.last_seen < span.high - %s
    UNION
    SELECT unnest(%b::bigint[])
),
locked AS (
    SELECT c.id FROM customers_customer c JOIN wanted ON wanted.id = c.id
    ORDER BY c.id
    FOR NO KEY UPDATE OF c
),
touched AS (
    UPDATE customers_customer c
    SET first_seen = LEAST(COALESCE(c.first_seen, span.low), span.low),
        last_seen = GREATEST(COALESCE(c.last_seen, span.high), span.high)
    FROM span JOIN locked ON locked.id = span.customer_id
    WHERE c.id = span.customer_id
      -- profile owners are locked too; rewrite only rows whose span actually widens
      AND (c.first_seen IS NULL OR c.last_seen IS NULL
           OR c.first_seen > span.low OR c.last_seen < span.high)
)
SELECT id, message_id FROM inserted
"""  # noqa: S608


def _events_insert(
    source_id: int,
    messages: Sequence[Message],
    owners: list[Seen],
    account_ids: list[int | None],
    received_at: dt.datetime,
) -> dict[str, IngestedEvent]:
    """Insert every event in one statement; returns the new ones by message id.

    On PostgreSQL the same statement widens the owners' first_seen/last_seen; the portable
    path does that separately with ``_seen_touch``.
    """
    # The whole batch travels as one JSON document: orjson writes it at C speed and embeds
    # the already validated properties/context as they are, where binding ten arrays made
    # psycopg dump every element in Python (~2 µs/event more).
    rows_json = orjson.dumps(
        [
            (
                m.message_id,
                owner.id,
                account_id,
                m.type,
                m.name,
                orjson.Fragment(m.properties_json),
                orjson.Fragment(m.context_json),
                m.occurred_at,
            )
            for m, owner, account_id in zip(messages, owners, account_ids, strict=True)
        ]
    ).decode()
    profile_owners = sorted(
        {owner.id for m, owner in zip(messages, owners, strict=True) if m.type in _PROFILE_CALLS}
    )
    params = [source_id, received_at, rows_json, _LAST_SEEN_SLACK, profile_owners]
    rows = fetch(
        _INSERT_AND_TOUCH_SQL,
        params,
        lambda: _events_insert_portable(source_id, messages, owners, account_ids, received_at),
    )
    new_ids = {message_id: pk for pk, message_id in rows}
    return {
        message.message_id: IngestedEvent(
            id=new_ids[message.message_id],
            customer_id=owner.id,
            account_id=account_id,
            type=message.type,
            name=message.name,
            occurred_at=message.occurred_at,
        )
        for message, owner, account_id in zip(messages, owners, account_ids, strict=True)
        if message.message_id in new_ids
    }


def _events_insert_portable(
    source_id: int,
    messages: Sequence[Message],
    owners: list[Seen],
    account_ids: list[int | None],
    received_at: dt.datetime,
) -> list[tuple[Any, ...]]:
    """The embedded (SQLite) path: the same semantics through the ORM, for demo volumes."""
    ids = [m.message_id for m in messages]
    existing = set(
        Event.objects.filter(source_id=source_id, message_id__in=ids).values_list(
            "message_id", flat=True
        )
    )
    events: dict[str, Event] = {}
    for message, owner, account_id in zip(messages, owners, account_ids, strict=True):
        if message.message_id in existing or message.message_id in events:
            continue
        events[message.message_id] = Event(
            source_id=source_id,
            message_id=message.message_id,
            customer_id=owner.id,
            account_id=account_id,
            type=message.type,
            name=message.name,
            properties=orjson.loads(message.properties_json),
            context=orjson.loads(message.context_json),
            occurred_at=message.occurred_at,
            received_at=received_at,
        )
    Event.objects.bulk_create(events.values())
    created = list(events.values())
    by_message = {event.message_id: Seen(event.customer_id, None, False) for event in created}
    _seen_touch([m for m in messages if m.message_id in by_message], by_message)
    return [(event.pk, event.message_id) for event in created]


# --- Profiles, devices, last seen ----------------------------------------------------------


def _profiles_apply(
    fresh: Sequence[Message], owners: dict[str, Seen], accounts: dict[str, int]
) -> None:
    """Apply identify and group calls in batch order; later calls win, traits merge.

    On PostgreSQL the customers are already locked by the insert statement; the
    FOR NO KEY UPDATE here re-reads them (and locks accounts, and customers on the portable
    path). Profile writes never change keys, so they do not wait on resolution locks.
    """
    identifies = [m for m in fresh if m.type == "identify" and m.traits]
    groups = [m for m in fresh if m.type == "group"]
    now = timezone.now()
    if identifies:
        customer_ids = {owners[m.message_id].id for m in identifies}
        customer_rows = Customer.objects.select_for_update(no_key=True).order_by("pk")
        customers = customer_rows.in_bulk(customer_ids)
        changed: set[str] = {"traits", "updated_at"}
        for message in identifies:
            customer = customers[owners[message.message_id].id]
            customer.traits = {**customer.traits, **(message.traits or {})}
            customer.updated_at = now
            changed.update(profile_fields_apply(customer, message.profile or {}))
        Customer.objects.bulk_update(customers.values(), sorted(changed))
    if groups:
        account_rows = Account.objects.select_for_update(no_key=True).order_by("pk")
        by_id = account_rows.in_bulk({accounts[m.group_id] for m in groups if m.group_id})
        account_changed: set[str] = {"traits", "updated_at"}
        links: dict[int, int] = {}
        for message in groups:
            account = by_id[accounts[message.group_id or ""]]
            account.traits = {**account.traits, **(message.traits or {})}
            account.updated_at = now
            account_changed.update(profile_fields_apply(account, message.profile or {}))
            links[owners[message.message_id].id] = account.pk
        Account.objects.bulk_update(by_id.values(), sorted(account_changed))
        Customer.objects.filter(pk__in=links).update(
            account_id=Case(*(When(pk=c, then=Value(a)) for c, a in links.items())),
            updated_at=now,
        )


def _devices_register(fresh: Sequence[Message], owners: dict[str, Seen]) -> None:
    latest: dict[tuple[str, str], tuple[int, dt.datetime]] = {}
    for message in fresh:
        if message.device:
            latest[message.device] = (owners[message.message_id].id, message.occurred_at)
    if not latest:
        return
    Device.objects.bulk_create(
        [
            Device(platform=p, token=t, customer_id=c, is_active=True, last_seen=at)
            for (p, t), (c, at) in sorted(latest.items())
        ],
        update_conflicts=True,
        unique_fields=["platform", "token"],
        update_fields=["customer", "is_active", "last_seen"],
    )


def _seen_touch(fresh: Sequence[Message], owners: dict[str, Seen]) -> None:
    """Portable twin of the touch in ``_INSERT_AND_TOUCH_SQL``: widen first/last seen."""
    spans: dict[int, tuple[dt.datetime, dt.datetime]] = {}
    for message in fresh:
        owner_id = owners[message.message_id].id
        low, high = spans.get(owner_id, (message.occurred_at, message.occurred_at))
        spans[owner_id] = (min(low, message.occurred_at), max(high, message.occurred_at))
    ids = sorted(spans)
    stale = Q(first_seen__isnull=True) | Q(last_seen__isnull=True)
    for pk, (low, high) in spans.items():
        stale |= Q(pk=pk, first_seen__gt=low) | Q(pk=pk, last_seen__lt=high - _LAST_SEEN_SLACK)
    Customer.objects.filter(stale, pk__in=ids).update(
        first_seen=_bound(Least, "first_seen", {pk: low for pk, (low, _) in spans.items()}),
        last_seen=_bound(Greatest, "last_seen", {pk: high for pk, (_, high) in spans.items()}),
    )


def _bound(pick: type[Least] | type[Greatest], field: str, values: dict[int, dt.datetime]) -> Any:
    """``pick(stored, new)`` per row; a NULL stored value takes the new one on every backend."""
    new = Case(*(When(pk=pk, then=Value(value)) for pk, value in values.items()))
    return pick(Coalesce(F(field), new), new)
