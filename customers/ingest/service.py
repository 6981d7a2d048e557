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
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, NamedTuple

import orjson
import psycopg
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Case, F, Q, Value, When
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


class _Seen(NamedTuple):
    """A resolved customer. A tuple: a batch builds one per distinct id (~1,000 per batch)."""

    id: int
    account_id: int | None
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
    # deadlock_detected, serialization_failure, and unique_violation: a concurrent batch
    # created the same customer or identity first; on retry this batch finds it.
    code = getattr(exc.__cause__, "sqlstate", None)
    return code in {"40P01", "40001", "23505"}


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
    return sorted(inserted.values(), key=lambda event: event.id)


# --- Identity resolution -------------------------------------------------------------------


def _owner(message: Message, seen: dict[tuple[str, str], _Seen]) -> _Seen:
    # Parsing guarantees every non-alias message has one of the two ids.
    if message.user_id:
        return seen[("user", message.user_id)]
    return seen[("anonymous", message.anonymous_id or "")]


def _resolve(messages: Sequence[Message]) -> dict[tuple[str, str], _Seen]:
    """Map every userId and anonymousId in the batch to a customer, creating as needed."""
    user_ids = sorted({m.user_id for m in messages if m.user_id})
    anonymous_ids = sorted({m.anonymous_id for m in messages if m.anonymous_id})
    known = _lookup(user_ids, anonymous_ids)
    resolved: dict[tuple[str, str], _Seen] = {}
    if user_ids:
        resolved.update(_users_resolve(user_ids, messages, known))
    if anonymous_ids:
        resolved.update(_anonymous_resolve(anonymous_ids, messages, resolved, known))
    return resolved


# Resolution reads lock each resolved customer FOR KEY SHARE — once per customer per
# batch, where a foreign key would lock it once per event row. A merge takes its source
# FOR UPDATE, so it waits for every batch that resolved the source, and a batch reading
# after the merge committed skips the deleted row and re-resolves (see customers_merge).
# Ids are joined from unnest() rather than matched with = ANY(array): an unnest has a fixed
# row estimate, so the prepared statement's generic plan stays an index nested loop even
# while table statistics are stale (with = ANY($1) it scanned every anonymous identity).
_LOOKUP_SQL = """
WITH users AS MATERIALIZED (
    SELECT c.external_id, c.id, c.account_id
    FROM unnest(%b::text[]) AS u(value)
    JOIN customers_customer c ON c.external_id = u.value
    FOR KEY SHARE OF c
), anonymous AS MATERIALIZED (
    SELECT i.value, c.id, c.account_id, c.external_id IS NULL AS is_anonymous
    FROM unnest(%b::text[]) AS u(value)
    JOIN customers_identity i ON i.kind = 'anonymous' AND i.value = u.value
    JOIN customers_customer c ON c.id = i.customer_id
    FOR KEY SHARE OF c
)
SELECT 'user', external_id, id, account_id, false FROM users
UNION ALL
SELECT 'anonymous', value, id, account_id, is_anonymous FROM anonymous
"""


def _lookup(user_ids: list[str], anonymous_ids: list[str]) -> dict[tuple[str, str], _Seen]:
    """Who the batch's user ids and anonymous ids already are, in one round trip."""

    def portable() -> Iterable[tuple[Any, ...]]:
        users = _customers_by_user_id(user_ids)
        anonymous = _identities_read(anonymous_ids)
        return (
            (kind, key, seen.id, seen.account_id, seen.is_anonymous)
            for (kind, key), seen in (users | anonymous).items()
        )

    rows = _select(_LOOKUP_SQL, [user_ids, anonymous_ids], portable)
    return {
        (kind, key): _Seen(id=pk, account_id=account, is_anonymous=anon)
        for kind, key, pk, account, anon in rows
    }


def _seen_rows(rows: Iterable[tuple[Any, ...]], kind: str) -> dict[tuple[str, str], _Seen]:
    return {
        (kind, key): _Seen(id=pk, account_id=account, is_anonymous=anon)
        for key, pk, account, anon in rows
    }


def _users_resolve(
    user_ids: list[str], messages: Sequence[Message], known: dict[tuple[str, str], _Seen]
) -> dict[tuple[str, str], _Seen]:
    found = {key: seen for key, seen in known.items() if key[0] == "user"}
    missing = [u for u in user_ids if ("user", u) not in found]
    if not missing:
        return found
    found.update(_identities_read(missing, IdentityKind.ALIAS))
    missing = [u for u in missing if ("user", u) not in found]
    if missing:
        first = _first_times(messages, lambda m: m.user_id)
        Customer.objects.bulk_create(
            [
                Customer(
                    external_id=u, first_seen=first[u], last_seen=first[u], created_at=first[u]
                )
                for u in missing
            ],
            ignore_conflicts=True,
        )
        found.update(_customers_by_user_id(missing))
    return found


_CUSTOMERS_SQL = """
SELECT c.external_id, c.id, c.account_id, false
FROM unnest(%b::text[]) AS u(value)
JOIN customers_customer c ON c.external_id = u.value
FOR KEY SHARE OF c
"""


def _customers_by_user_id(user_ids: list[str]) -> dict[tuple[str, str], _Seen]:
    fields = ("external_id", "id", "account_id")
    rows = _select(
        _CUSTOMERS_SQL,
        [user_ids],
        lambda: (
            (*row, False)
            for row in Customer.objects.filter(external_id__in=user_ids).values_list(*fields)
        ),
    )
    return _seen_rows(rows, "user")


def _anonymous_resolve(
    anonymous_ids: list[str],
    messages: Sequence[Message],
    users: dict[tuple[str, str], _Seen],
    known: dict[tuple[str, str], _Seen],
) -> dict[tuple[str, str], _Seen]:
    found = {key: seen for key, seen in known.items() if key[0] == "anonymous"}
    links: dict[str, _Seen] = {}
    for message in messages:
        if not (message.user_id and message.anonymous_id):
            continue
        user = users[("user", message.user_id)]
        owner = found.get(("anonymous", message.anonymous_id))
        if owner is None:
            links.setdefault(message.anonymous_id, user)
        elif owner.id != user.id and owner.is_anonymous:
            # The visitor logged in: their anonymous history becomes the user's.
            customers_merge(source_id=owner.id, target_id=user.id)
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


_IDENTITIES_SQL = """
SELECT i.value, c.id, c.account_id, c.external_id IS NULL
FROM unnest(%b::text[]) AS u(value)
JOIN customers_identity i ON i.kind = %s AND i.value = u.value
JOIN customers_customer c ON c.id = i.customer_id
FOR KEY SHARE OF c
"""


def _identities_read(
    values: list[str], kind: str = IdentityKind.ANONYMOUS
) -> dict[tuple[str, str], _Seen]:
    """Customers that anonymous ids (or, for ``ALIAS``, former user ids) resolve to."""

    def portable() -> Iterable[tuple[Any, ...]]:
        rows = Identity.objects.filter(kind=kind, value__in=values).values_list(
            "value",
            "customer_id",
            "customer__account_id",
            "customer__external_id",
        )
        return ((*row[:3], row[3] is None) for row in rows)

    rows = _select(_IDENTITIES_SQL, [values, str(kind)], portable)
    return _seen_rows(rows, "user" if kind == IdentityKind.ALIAS else "anonymous")


def _select(
    sql: str, params: list[Any], portable: Callable[[], Iterable[tuple[Any, ...]]]
) -> list[tuple[Any, ...]]:
    """Run ``sql`` on PostgreSQL with server-side binding, else the portable ORM query.

    Django's psycopg cursor binds parameters client-side, quoting every array element into
    the SQL text; on the hot path that costs more than the query. A plain ``psycopg.Cursor``
    sends them as parameters.
    """
    if connection.vendor != "postgresql":
        return list(portable())
    connection.ensure_connection()
    # Wrapped like Django's own cursors, so query logging and execute_wrappers see it.
    wrap = connection._prepare_cursor  # type: ignore[attr-defined]
    with wrap(_PreparedCursor(connection.connection)) as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


class _PreparedCursor(psycopg.Cursor[Any]):
    """Server-side binding, and prepared statements for the few fixed hot-path statements.

    Django turns psycopg's automatic preparation off (``prepare_threshold=None``); planning
    the insert on every request cost ~0.3 ms of a ~2 ms single ``track``.
    """

    def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> _PreparedCursor:
        super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)
        return self


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
SELECT %s, e->>0, (e->>1)::bigint, (e->>2)::bigint, e->>3, e->>4, e->5, e->6,
       (e->>7)::timestamptz, %s
FROM jsonb_array_elements(%s::jsonb) AS e
ON CONFLICT (source_id, message_id) DO NOTHING
RETURNING id, message_id, customer_id, occurred_at
"""

# The insert and the first_seen/last_seen widening in one round trip. Customers whose
# span already covers the new events are not rewritten (last_seen to the minute); rows
# another batch is touching right now are skipped rather than waited for, so concurrent
# batches never queue or deadlock on a busy customer (its next batch catches up).
# Composed of constants only.
_INSERT_AND_TOUCH_SQL = f"""
WITH inserted AS ({_INSERT_SQL}),
span AS (
    SELECT customer_id, min(occurred_at) AS low, max(occurred_at) AS high
    FROM inserted GROUP BY customer_id
),
stale AS (
    SELECT c.id, span.low, span.high
    FROM customers_customer c JOIN span ON span.customer_id = c.id
    WHERE c.first_seen IS NULL OR c.last_seen IS NULL
       OR c.first_seen > span.low OR c.last_seen < span.high - %s
    ORDER BY c.id
    FOR NO KEY UPDATE OF c SKIP LOCKED
),
touched AS (
    UPDATE customers_customer c
    SET first_seen = LEAST(COALESCE(c.first_seen, stale.low), stale.low),
        last_seen = GREATEST(COALESCE(c.last_seen, stale.high), stale.high)
    FROM stale WHERE c.id = stale.id
)
SELECT id, message_id FROM inserted
"""  # noqa: S608


def _events_insert(
    source_id: int,
    messages: Sequence[Message],
    owners: list[_Seen],
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
    params = [source_id, received_at, rows_json, _LAST_SEEN_SLACK]
    rows = _select(
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
    created = list(events.values())
    owner_of = {event.message_id: _Seen(event.customer_id, None, False) for event in created}
    _seen_touch([m for m in messages if m.message_id in owner_of], owner_of)
    return [(event.pk, event.message_id) for event in created]


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
            account = by_id[accounts[message.group_id or ""]]
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
