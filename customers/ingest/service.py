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
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

import orjson
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce, Greatest, Least

from customers.ingest.parsing import Message
from customers.models import (
    Account,
    Customer,
    Device,
    Event,
    Identity,
    IdentityKind,
    Source,
)
from customers.services import customer_alias, customers_merge, profile_fields_apply
from customers.signals import IngestedEvent, events_ingested

logger = logging.getLogger(__name__)

_ATTEMPTS = 3
# last_seen is kept to this precision so busy customers are not rewritten on every batch.
_LAST_SEEN_SLACK = dt.timedelta(minutes=1)


@dataclasses.dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    stored: int


@dataclasses.dataclass(slots=True)
class _Seen:
    id: int
    account_id: int | None
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None
    is_anonymous: bool


def events_ingest(
    *, source_id: int, messages: Sequence[Message], received_at: dt.datetime
) -> IngestResult:
    """Store ``messages`` from one request; returns how many were new.

    Idempotent per ``(source, messageId)``. Retries the whole transaction on a deadlock or
    on a concurrent merge removing a customer mid-batch; after that the error propagates
    (the client gets a 5xx and retries, and nothing was half-written).
    """
    if not messages:
        return IngestResult(accepted=0, stored=0)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with transaction.atomic():
                new_events = _ingest(source_id, messages, received_at)
                if new_events:
                    transaction.on_commit(
                        partial(
                            events_ingested.send,
                            sender=Source,
                            source_id=source_id,
                            events=new_events,
                        )
                    )
            return IngestResult(accepted=len(messages), stored=len(new_events))
        except (OperationalError, IntegrityError) as exc:
            if attempt == _ATTEMPTS or not _is_transient(exc):
                raise
            logger.warning("ingest batch retried after %s (attempt %d)", exc, attempt)
    raise AssertionError("unreachable")


def _is_transient(exc: Exception) -> bool:
    # deadlock_detected, serialization_failure, foreign_key_violation (a concurrent merge).
    code = getattr(exc.__cause__, "sqlstate", None)
    return code in {"40P01", "40001", "23503"}


def _ingest(
    source_id: int, messages: Sequence[Message], received_at: dt.datetime
) -> list[IngestedEvent]:
    for message in messages:
        if message.type == "alias" and message.previous_id and message.user_id:
            customer_alias(
                previous_id=message.previous_id, user_id=message.user_id, at=message.occurred_at
            )
    seen = _resolve(messages)
    owners = [_owner(message, seen) for message in messages]
    accounts = _accounts_ensure(messages)
    account_ids = _accounts_at_time(messages, owners, seen, accounts)
    inserted = _events_insert(source_id, messages, owners, account_ids, received_at)
    fresh = [message for message in messages if message.message_id in inserted]
    if fresh:
        fresh_owners = {message.message_id: _owner(message, seen) for message in fresh}
        _profiles_apply(fresh, fresh_owners, accounts)
        _devices_register(fresh, fresh_owners)
        _seen_touch(fresh, fresh_owners)
    return sorted(inserted.values(), key=lambda event: event.id)


# --- Identity resolution -------------------------------------------------------------------


def _owner(message: Message, seen: dict[tuple[str, str], _Seen]) -> _Seen:
    if message.user_id:
        return seen[("user", message.user_id)]
    assert message.anonymous_id is not None
    return seen[("anonymous", message.anonymous_id)]


def _resolve(messages: Sequence[Message]) -> dict[tuple[str, str], _Seen]:
    """Map every userId and anonymousId in the batch to a customer, creating as needed."""
    resolved: dict[tuple[str, str], _Seen] = {}
    user_ids = sorted({m.user_id for m in messages if m.user_id})
    if user_ids:
        resolved.update(_users_resolve(user_ids, messages))
    anonymous_ids = sorted({m.anonymous_id for m in messages if m.anonymous_id})
    if anonymous_ids:
        resolved.update(_anonymous_resolve(anonymous_ids, messages, resolved))
    return resolved


def _seen_rows(rows: Iterable[tuple[Any, ...]], kind: str) -> dict[tuple[str, str], _Seen]:
    return {
        (kind, key): _Seen(
            id=pk, account_id=account, first_seen=first, last_seen=last, is_anonymous=anon
        )
        for key, pk, account, first, last, anon in rows
    }


def _users_resolve(
    user_ids: list[str], messages: Sequence[Message]
) -> dict[tuple[str, str], _Seen]:
    fields = ("id", "account_id", "first_seen", "last_seen")
    rows = Customer.objects.filter(external_id__in=user_ids).values_list("external_id", *fields)
    found = _seen_rows(((*row, False) for row in rows), "user")
    missing = [u for u in user_ids if ("user", u) not in found]
    if not missing:
        return found
    aliased = Identity.objects.filter(kind=IdentityKind.ALIAS, value__in=missing).values_list(
        "value", *(f"customer__{f}" for f in fields), "customer__external_id"
    )
    found.update(_seen_rows(((*row[:5], row[5] is None) for row in aliased), "user"))
    missing = [u for u in missing if ("user", u) not in found]
    if missing:
        first = _first_times(messages, lambda m: m.user_id)
        Customer.objects.bulk_create(
            [
                Customer(external_id=u, first_seen=first[u], last_seen=first[u], created_at=first[u])
                for u in missing
            ],
            ignore_conflicts=True,
        )
        rows = Customer.objects.filter(external_id__in=missing).values_list("external_id", *fields)
        found.update(_seen_rows(((*row, False) for row in rows), "user"))
    return found


def _anonymous_resolve(
    anonymous_ids: list[str],
    messages: Sequence[Message],
    users: dict[tuple[str, str], _Seen],
) -> dict[tuple[str, str], _Seen]:
    found = _identities_read(anonymous_ids)
    links: dict[str, _Seen] = {}
    for message in messages:
        if not (message.user_id and message.anonymous_id):
            continue
        user = users[("user", message.user_id)]
        known = found.get(("anonymous", message.anonymous_id))
        if known is None:
            links.setdefault(message.anonymous_id, user)
        elif known.id != user.id and known.is_anonymous:
            # The visitor logged in: their anonymous history becomes the user's.
            customers_merge(source_id=known.id, target_id=user.id)
            found[("anonymous", message.anonymous_id)] = user
    if links:
        Identity.objects.bulk_create(
            [
                Identity(kind=IdentityKind.ANONYMOUS, value=value, customer_id=seen.id)
                for value, seen in links.items()
            ],
            ignore_conflicts=True,
        )
        found.update(_identities_read(list(links)))
    strangers = [a for a in anonymous_ids if ("anonymous", a) not in found]
    if strangers:
        found.update(_anonymous_create(strangers, messages))
    return found


def _identities_read(values: list[str]) -> dict[tuple[str, str], _Seen]:
    rows = Identity.objects.filter(kind=IdentityKind.ANONYMOUS, value__in=values).values_list(
        "value",
        "customer_id",
        "customer__account_id",
        "customer__first_seen",
        "customer__last_seen",
        "customer__external_id",
    )
    return _seen_rows(((*row[:5], row[5] is None) for row in rows), "anonymous")


def _anonymous_create(
    strangers: list[str], messages: Sequence[Message]
) -> dict[tuple[str, str], _Seen]:
    """One anonymous customer per unseen anonymousId, race-safe.

    Customers are created first and identities claimed with ``ON CONFLICT DO NOTHING``; a
    customer whose identity was claimed by a concurrent request is deleted again.
    """
    first = _first_times(messages, lambda m: m.anonymous_id)
    created = Customer.objects.bulk_create(
        [Customer(first_seen=first[a], last_seen=first[a], created_at=first[a]) for a in strangers]
    )
    Identity.objects.bulk_create(
        [
            Identity(kind=IdentityKind.ANONYMOUS, value=value, customer_id=customer.pk)
            for value, customer in zip(strangers, created, strict=True)
        ],
        ignore_conflicts=True,
    )
    found = _identities_read(strangers)
    winners = {seen.id for seen in found.values()}
    losers = [customer.pk for customer in created if customer.pk not in winners]
    if losers:
        Customer.objects.filter(pk__in=losers).delete()
    return found


def _first_times(messages: Sequence[Message], key: Any) -> dict[str, dt.datetime]:
    first: dict[str, dt.datetime] = {}
    for message in messages:
        value = key(message)
        if value and (value not in first or message.occurred_at < first[value]):
            first[value] = message.occurred_at
    return first


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
    owners: list[_Seen],
    seen: dict[tuple[str, str], _Seen],
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
SELECT %s, m, c, a, t, n, p::jsonb, x::jsonb, o, %s
FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[],
            %s::text[], %s::text[], %s::timestamptz[]) AS u(m, c, a, t, n, p, x, o)
ON CONFLICT (source_id, message_id) DO NOTHING
RETURNING id, message_id, customer_id, account_id, type, name, occurred_at
"""


def _events_insert(
    source_id: int,
    messages: Sequence[Message],
    owners: list[_Seen],
    account_ids: list[int | None],
    received_at: dt.datetime,
) -> dict[str, IngestedEvent]:
    """Insert every event in one statement; returns the new ones by message id."""
    if connection.vendor == "postgresql":
        params = [
            source_id,
            received_at,
            [m.message_id for m in messages],
            [o.id for o in owners],
            account_ids,
            [m.type for m in messages],
            [m.name for m in messages],
            [m.properties_json for m in messages],
            [m.context_json for m in messages],
            [m.occurred_at for m in messages],
        ]
        # A server-side-binding cursor sends the arrays as parameters, not SQL text.
        with connection.connection.cursor() as cursor:
            cursor.execute(_INSERT_SQL, params)
            rows = cursor.fetchall()
    else:
        rows = _events_insert_portable(source_id, messages, owners, account_ids, received_at)
    return {
        message_id: IngestedEvent(
            id=pk,
            customer_id=customer,
            account_id=account,
            type=kind,
            name=name,
            occurred_at=occurred,
        )
        for pk, message_id, customer, account, kind, name, occurred in rows
    }


def _events_insert_portable(
    source_id: int,
    messages: Sequence[Message],
    owners: list[_Seen],
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
            properties=_loads(message.properties_json),
            context=_loads(message.context_json),
            occurred_at=message.occurred_at,
            received_at=received_at,
        )
    Event.objects.bulk_create(events.values())
    return [
        (e.pk, e.message_id, e.customer_id, e.account_id, e.type, e.name, e.occurred_at)
        for e in events.values()
    ]


def _loads(text: str) -> Any:
    return orjson.loads(text)


# --- Profiles, devices, last seen ----------------------------------------------------------


def _profiles_apply(
    fresh: Sequence[Message], owners: dict[str, _Seen], accounts: dict[str, int]
) -> None:
    """Apply identify and group calls in batch order; later calls win, traits merge."""
    identifies = [m for m in fresh if m.type == "identify" and m.traits]
    groups = [m for m in fresh if m.type == "group"]
    if identifies:
        customer_ids = {owners[m.message_id].id for m in identifies}
        customers = Customer.objects.select_for_update().order_by("pk").in_bulk(customer_ids)
        changed: set[str] = {"traits"}
        for message in identifies:
            customer = customers[owners[message.message_id].id]
            customer.traits = {**customer.traits, **(message.traits or {})}
            changed.update(profile_fields_apply(customer, message.profile or {}))
        Customer.objects.bulk_update(customers.values(), sorted(changed))
    if groups:
        account_rows = Account.objects.select_for_update().order_by("pk")
        by_id = account_rows.in_bulk({accounts[m.group_id] for m in groups if m.group_id})
        account_changed: set[str] = {"traits"}
        links: dict[int, int] = {}
        for message in groups:
            assert message.group_id is not None
            account = by_id[accounts[message.group_id]]
            account.traits = {**account.traits, **(message.traits or {})}
            account_changed.update(profile_fields_apply(account, message.profile or {}))
            links[owners[message.message_id].id] = account.pk
        Account.objects.bulk_update(by_id.values(), sorted(account_changed))
        Customer.objects.filter(pk__in=links).update(
            account_id=Case(*(When(pk=c, then=Value(a)) for c, a in links.items()))
        )


def _devices_register(fresh: Sequence[Message], owners: dict[str, _Seen]) -> None:
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


def _seen_touch(fresh: Sequence[Message], owners: dict[str, _Seen]) -> None:
    """Widen first_seen/last_seen where the new events fall outside them (minute precision)."""
    spans: dict[int, tuple[dt.datetime, dt.datetime]] = {}
    known: dict[int, _Seen] = {}
    for message in fresh:
        owner = owners[message.message_id]
        known[owner.id] = owner
        low, high = spans.get(owner.id, (message.occurred_at, message.occurred_at))
        spans[owner.id] = (min(low, message.occurred_at), max(high, message.occurred_at))
    stale = {
        pk: span
        for pk, span in spans.items()
        if known[pk].first_seen is None
        or known[pk].last_seen is None
        or span[0] < known[pk].first_seen
        or span[1] > known[pk].last_seen + _LAST_SEEN_SLACK
    }
    if not stale:
        return
    Customer.objects.filter(pk__in=sorted(stale)).update(
        first_seen=_bound(Least, "first_seen", {pk: low for pk, (low, _) in stale.items()}),
        last_seen=_bound(Greatest, "last_seen", {pk: high for pk, (_, high) in stale.items()}),
    )


def _bound(pick: type[Least] | type[Greatest], field: str, values: dict[int, dt.datetime]) -> Any:
    """``pick(stored, new)`` per row; a NULL stored value takes the new one on every backend."""
    new = Case(*(When(pk=pk, then=Value(value)) for pk, value in values.items()))
    return pick(Coalesce(F(field), new), new)
