"""Who each call in a batch belongs to: customers by userId, by anonymousId, by alias.

Resolution reads lock each resolved customer ``FOR KEY SHARE`` (see ``customers_merge``),
creating customers and identities that are missing with race-safe bulk inserts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from customers.ingest.parsing import Message
from customers.ingest.sql import fetch
from customers.models import Customer, Identity, IdentityKind
from customers.services import ConcurrentChange, customers_merge


class Seen(NamedTuple):
    """A resolved customer. A tuple: a batch builds one per distinct id (~1,000 per batch)."""

    id: int
    account_id: int | None
    is_anonymous: bool


def owner_of(message: Message, seen: dict[tuple[str, str], Seen]) -> Seen:
    # Parsing guarantees every non-alias message has one of the two ids.
    if message.user_id:
        return seen[("user", message.user_id)]
    return seen[("anonymous", message.anonymous_id or "")]


def resolve(messages: Sequence[Message]) -> dict[tuple[str, str], Seen]:
    """Map every userId and anonymousId in the batch to a customer, creating as needed."""
    user_ids = sorted({m.user_id for m in messages if m.user_id})
    anonymous_ids = sorted({m.anonymous_id for m in messages if m.anonymous_id})
    logins = sorted({m.anonymous_id for m in messages if m.anonymous_id and m.user_id})
    known = _lookup(user_ids, anonymous_ids, logins)
    resolved: dict[tuple[str, str], Seen] = {}
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
# Anonymous ids that arrive together with a userId (logins) are read WITHOUT a lock: their
# visitor is about to be merged, and customers_merge takes it FOR UPDATE itself. Taking
# FOR KEY SHARE here and upgrading there would deadlock two requests of the same login
# (analytics.js sends identify and track concurrently, both with both ids); this way the
# second request waits at the merge, finds the visitor gone, and re-reads the id.
_LOOKUP_SQL = """
WITH users AS MATERIALIZED (
    SELECT c.external_id, c.id, c.account_id
    FROM unnest(%b::text[]) AS u(value)
    JOIN customers_customer c ON c.external_id = u.value
    FOR KEY SHARE OF c
), logins AS MATERIALIZED (
    SELECT i.value, c.id, c.account_id, c.external_id IS NULL AS is_anonymous
    FROM unnest(%b::text[]) AS u(value)
    JOIN customers_identity i ON i.kind = 'anonymous' AND i.value = u.value
    JOIN customers_customer c ON c.id = i.customer_id
), anonymous AS MATERIALIZED (
    SELECT i.value, c.id, c.account_id, c.external_id IS NULL AS is_anonymous
    FROM unnest(%b::text[]) AS u(value)
    JOIN customers_identity i ON i.kind = 'anonymous' AND i.value = u.value
    JOIN customers_customer c ON c.id = i.customer_id
    FOR KEY SHARE OF c
)
SELECT 'user', external_id, id, account_id, false FROM users
UNION ALL
SELECT 'login', value, id, account_id, is_anonymous FROM logins
UNION ALL
SELECT 'anonymous', value, id, account_id, is_anonymous FROM anonymous
"""


def _lookup(
    user_ids: list[str], anonymous_ids: list[str], logins: list[str]
) -> dict[tuple[str, str], Seen]:
    """Who the batch's user ids and anonymous ids already are, in one round trip.

    ``logins`` are the anonymous ids that arrive together with a user id; they come back
    keyed ``("login", id)``, unlocked (see ``_LOOKUP_SQL``), on PostgreSQL only.
    """

    def portable() -> Iterable[tuple[Any, ...]]:
        users = _customers_by_user_id(user_ids)
        anonymous = _identities_read(anonymous_ids)
        return (
            (kind, key, seen.id, seen.account_id, seen.is_anonymous)
            for (kind, key), seen in (users | anonymous).items()
        )

    others = sorted(set(anonymous_ids) - set(logins))
    rows = fetch(_LOOKUP_SQL, [user_ids, logins, others], portable)
    return {
        (kind, key): Seen(id=pk, account_id=account, is_anonymous=anon)
        for kind, key, pk, account, anon in rows
    }


def _seen_rows(rows: Iterable[tuple[Any, ...]], kind: str) -> dict[tuple[str, str], Seen]:
    return {
        (kind, key): Seen(id=pk, account_id=account, is_anonymous=anon)
        for key, pk, account, anon in rows
    }


def _users_resolve(
    user_ids: list[str], messages: Sequence[Message], known: dict[tuple[str, str], Seen]
) -> dict[tuple[str, str], Seen]:
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
        if any(("user", u) not in found for u in missing):
            # Our insert lost to a row that a concurrent merge or rename has since removed.
            raise ConcurrentChange("a user id changed owner while it was being resolved")
    return found


_CUSTOMERS_SQL = """
SELECT c.external_id, c.id, c.account_id, false
FROM unnest(%b::text[]) AS u(value)
JOIN customers_customer c ON c.external_id = u.value
FOR KEY SHARE OF c
"""


def _customers_by_user_id(user_ids: list[str]) -> dict[tuple[str, str], Seen]:
    fields = ("external_id", "id", "account_id")
    rows = fetch(
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
    users: dict[tuple[str, str], Seen],
    known: dict[tuple[str, str], Seen],
) -> dict[tuple[str, str], Seen]:
    found = {key: seen for key, seen in known.items() if key[0] == "anonymous"}
    # Logins were read without a lock (PostgreSQL only; see _LOOKUP_SQL).
    unlocked = {("anonymous", key[1]): seen for key, seen in known.items() if key[0] == "login"}
    found.update(unlocked)
    links: dict[str, Seen] = {}
    merged: set[int] = set()
    reread: set[str] = set()
    for message in messages:
        if not (message.user_id and message.anonymous_id):
            continue
        key = ("anonymous", message.anonymous_id)
        user = users[("user", message.user_id)]
        owner = found.get(key)
        if owner is None:
            links.setdefault(message.anonymous_id, user)
        elif owner.id != user.id and owner.is_anonymous:
            # The visitor logged in: their anonymous history becomes the user's.
            if customers_merge(source_id=owner.id, target_id=user.id):
                found[key] = user
                merged.add(user.id)
            else:
                # A concurrent request merged the visitor first; see where the id went.
                del found[key]
                reread.add(message.anonymous_id)
    # A login id still owned by a known customer other than this batch's users (a shared
    # device) was read unlocked: lock it now, like every other id this batch writes for.
    users_locked = {seen.id for seen in users.values()}
    reread.update(
        key[1]
        for key, seen in unlocked.items()
        if found.get(key) == seen and seen.id not in users_locked
    )
    if reread:
        for value in reread:
            found.pop(("anonymous", value), None)
        found.update(_identities_read(sorted(reread)))
    if merged:
        # A merge may have given the user the visitor's account.
        accounts = dict(Customer.objects.filter(pk__in=merged).values_list("pk", "account_id"))
        for table in (users, found):
            for key, seen in table.items():
                if seen.id in accounts:
                    table[key] = seen._replace(account_id=accounts[seen.id])
    if links:
        Identity.objects.bulk_create(
            [
                # Sorted, like every bulk insert here: concurrent batches claim unique index
                # entries in the same order and cannot deadlock on them.
                Identity(kind=IdentityKind.ANONYMOUS, value=value, customer_id=seen.id)
                for value, seen in sorted(links.items())
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
) -> dict[tuple[str, str], Seen]:
    """Customers that anonymous ids (or, for ``ALIAS``, former user ids) resolve to."""

    def portable() -> Iterable[tuple[Any, ...]]:
        rows = Identity.objects.filter(kind=kind, value__in=values).values_list(
            "value",
            "customer_id",
            "customer__account_id",
            "customer__external_id",
        )
        return ((*row[:3], row[3] is None) for row in rows)

    rows = fetch(_IDENTITIES_SQL, [values, str(kind)], portable)
    return _seen_rows(rows, "user" if kind == IdentityKind.ALIAS else "anonymous")


def _anonymous_create(
    strangers: list[str], messages: Sequence[Message]
) -> dict[tuple[str, str], Seen]:
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
    if len(found) < len(strangers):
        raise ConcurrentChange("an anonymous id changed owner while it was being resolved")
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
