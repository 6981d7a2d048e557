"""Writes on the customer data model: keys, profiles, merges.

Batch ingestion lives in ``customers.ingest.service`` (``events_ingest``); it calls the
merge services here when identities meet.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from functools import partial
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet

from customers.keys import key_generate
from customers.models import (
    Account,
    ApiToken,
    Customer,
    Device,
    Event,
    Identity,
    IdentityKind,
    Source,
)
from customers.signals import customers_merged

_PROFILE_FIELDS = ("email", "phone", "time_zone", "locale", "plan", "region")


@dataclasses.dataclass(frozen=True, slots=True)
class CreatedKey:
    """A freshly made key. ``key`` is the only time the secret exists in plain text."""

    id: int
    key: str


def source_create(*, name: str, created_by: User | None = None) -> CreatedKey:
    new = key_generate("mpw")
    source = Source.objects.create(
        name=name, key_prefix=new.prefix, key_hash=new.digest, created_by=created_by
    )
    return CreatedKey(id=source.pk, key=new.key)


def api_token_create(*, user: User, name: str) -> CreatedKey:
    new = key_generate("mpa")
    token = ApiToken.objects.create(
        user=user, name=name, key_prefix=new.prefix, key_hash=new.digest
    )
    return CreatedKey(id=token.pk, key=new.key)


def customers_merge(*, source_id: int, target_id: int) -> bool:
    """Fold customer ``source_id`` into ``target_id`` and delete the source.

    Moves events, identities and devices; the target's profile wins, blanks are filled from
    the source. A known source keeps resolving: its user id becomes an alias identity.

    Must run inside a transaction. Ingest resolves ids with ``FOR KEY SHARE`` locking reads
    (``customers.ingest.service``), so the source's ``FOR UPDATE`` here waits for every
    in-flight batch that resolved it, and batches that resolve it later skip the deleted
    row and re-resolve to the target: no event can be left on a deleted customer. The
    target is locked ``FOR NO KEY UPDATE``, which does not conflict with those reads.
    Returns False when either customer is already gone (merged by a concurrent request).
    """
    if source_id == target_id:
        return False
    source = Customer.objects.select_for_update().filter(pk=source_id).first()
    target = Customer.objects.select_for_update(no_key=True).filter(pk=target_id).first()
    if source is None or target is None:
        return False
    # Everything below reads after the lock, so it sees every link committed before it.
    Event.objects.filter(customer_id=source_id).update(customer_id=target_id)
    Device.objects.filter(customer_id=source_id).update(customer_id=target_id)
    Identity.objects.filter(customer_id=source_id).update(customer_id=target_id)
    if source.external_id:
        # Upsert: a race elsewhere may already have recorded this alias for another customer.
        Identity.objects.update_or_create(
            kind=IdentityKind.ALIAS,
            value=source.external_id,
            defaults={"customer_id": target_id},
        )
    changed = _absorb_profile(target, source)
    Customer.objects.filter(pk=source_id).delete()
    target.save(update_fields=[*changed, "updated_at"])
    transaction.on_commit(
        partial(
            customers_merged.send,
            sender=Customer,
            source_customer_id=source_id,
            target_customer_id=target_id,
        )
    )
    return True


def _absorb_profile(target: Customer, source: Customer) -> list[str]:
    """Fill the target's blanks from the source; returns the fields it changed."""
    changed = [f for f in _PROFILE_FIELDS if not getattr(target, f) and getattr(source, f)]
    for field in changed:
        setattr(target, field, getattr(source, field))
    if target.account_id is None and source.account_id is not None:
        target.account_id = source.account_id
        changed.append("account")
    target.traits = {**source.traits, **target.traits}
    target.first_seen = _earliest(target.first_seen, source.first_seen)
    target.last_seen = _latest(target.last_seen, source.last_seen)
    if not source.is_anonymous:
        # An aliased former user id signed up first; an anonymous visit is not a signup.
        target.created_at = min(target.created_at, source.created_at)
    return [*changed, "traits", "first_seen", "last_seen", "created_at"]


def _earliest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return min((x for x in (a, b) if x is not None), default=None)


def _latest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return max((x for x in (a, b) if x is not None), default=None)


class ConcurrentChange(Exception):
    """A customer this transaction read was merged or renamed concurrently; retry it whole."""


def customer_alias(*, previous_id: str, user_id: str, at: dt.datetime) -> int:
    """Segment ``alias``: ``previous_id`` (an anonymous id or an old user id) is ``user_id``.

    Idempotent: replaying an alias finds the identities already in place. Returns the id of
    the customer ``user_id`` now resolves to.
    """
    target = _customer_by_user_id(user_id)
    previous = _customer_by_user_id(previous_id) or _customer_by_anonymous_id(previous_id)
    if target is None and previous is not None:
        if previous.external_id and previous.external_id != user_id:
            _identity_ensure(IdentityKind.ALIAS, previous.external_id, previous.pk)
        if not Customer.objects.filter(pk=previous.pk).update(external_id=user_id):
            raise ConcurrentChange(f"customer {previous.pk} was merged away during an alias")
        target_id = previous.pk
    else:
        if target is None:
            target = Customer.objects.create(
                external_id=user_id, first_seen=at, last_seen=at, created_at=at
            )
        target_id = target.pk
        source_id = previous.pk if previous is not None else target_id
        if source_id != target_id and not customers_merge(source_id=source_id, target_id=target_id):
            raise ConcurrentChange(f"customer {source_id} or {target_id} changed")
    # Later calls may use the old id either as a userId or as an anonymousId.
    _identity_ensure(IdentityKind.ALIAS, previous_id, target_id)
    _identity_ensure(IdentityKind.ANONYMOUS, previous_id, target_id)
    return target_id


def _customer_by_user_id(user_id: str) -> Customer | None:
    customer = Customer.objects.filter(external_id=user_id).first()
    if customer is None:
        identity = (
            Identity.objects.select_related("customer")
            .filter(kind=IdentityKind.ALIAS, value=user_id)
            .first()
        )
        customer = identity.customer if identity else None
    return customer


def _customer_by_anonymous_id(anonymous_id: str) -> Customer | None:
    identity = (
        Identity.objects.select_related("customer")
        .filter(kind=IdentityKind.ANONYMOUS, value=anonymous_id)
        .first()
    )
    return identity.customer if identity else None


def _identity_ensure(kind: str, value: str, customer_id: int) -> None:
    Identity.objects.bulk_create(
        [Identity(kind=kind, value=value, customer_id=customer_id)], ignore_conflicts=True
    )


def profile_fields_apply(subject: Customer | Account, profile: dict[str, Any]) -> list[str]:
    """Copy validated profile values onto a customer or account; returns the changed fields.

    Keys the model has no column for (a customer's ``name``) stay in its traits only.
    """
    changed = []
    for field, value in profile.items():
        if hasattr(subject, field) and getattr(subject, field) != value:
            setattr(subject, field, value)
            changed.append(field)
    return changed


def sources_deactivate(*, source_ids: list[int]) -> int:
    """Turn off write keys; returns how many were active. Rows are kept (events point at them).

    Ingest caches key hits per process, so a key stops working everywhere within
    ``INGEST_KEY_CACHE_SECONDS``, not at once.
    """
    return _deactivate(Source.objects.filter(pk__in=source_ids, is_active=True))


def api_tokens_deactivate(*, token_ids: list[int]) -> int:
    """Turn off API tokens; returns how many were active."""
    return _deactivate(ApiToken.objects.filter(pk__in=token_ids, is_active=True))


def _deactivate(keys: QuerySet[Source] | QuerySet[ApiToken]) -> int:
    # Row by row through save(): each key's deactivation goes into the audit trail.
    with transaction.atomic():
        rows: list[Source | ApiToken] = list(keys.select_for_update())
        for row in rows:
            row.is_active = False
            row.save(update_fields=["is_active"])
    return len(rows)


def devices_deactivate(*, device_ids: list[int]) -> int:
    """Stop pushing to these device tokens; returns how many were active."""
    return Device.objects.filter(pk__in=device_ids, is_active=True).update(is_active=False)


# --- Events Milepost itself records on a customer's timeline ------------------------------

INTERNAL_SOURCE = "milepost"


@dataclasses.dataclass(frozen=True, slots=True)
class TimelineEvent:
    """An event Milepost observed about a customer (an email delivered, opened, clicked,
    bounced; an unsubscribe): stored like an ingested event so milestones and journeys can
    use it. ``message_id`` makes recording it idempotent."""

    customer_id: int
    name: str
    occurred_at: dt.datetime
    message_id: str
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)


def events_record(*, events: list[TimelineEvent]) -> int:
    """Store ``events`` under the internal source (no key can authenticate as it) and
    publish them as ingest does; a replayed ``message_id`` is stored once. Returns how
    many were new."""
    if not events:
        return 0
    from customers.signals import IngestedEvent, events_ingested, events_stored

    source = _internal_source()
    now = dt.datetime.now(tz=dt.UTC)
    accounts = dict(
        Customer.objects.filter(pk__in={e.customer_id for e in events}).values_list(
            "pk", "account_id"
        )
    )
    with transaction.atomic():
        keys = [e.message_id for e in events]
        before = set(
            Event.objects.filter(source=source, message_id__in=keys).values_list(
                "message_id", flat=True
            )
        )
        Event.objects.bulk_create(
            [
                Event(
                    source=source,
                    message_id=e.message_id,
                    customer_id=e.customer_id,
                    account_id=accounts.get(e.customer_id),
                    name=e.name,
                    properties=e.properties,
                    occurred_at=e.occurred_at,
                    received_at=now,
                )
                for e in events
                if e.customer_id in accounts and e.message_id not in before
            ],
            ignore_conflicts=True,
        )
        stored = [
            IngestedEvent(pk, customer_id, account_id, kind, name, occurred_at)
            for pk, customer_id, account_id, kind, name, occurred_at in Event.objects.filter(
                source=source, message_id__in=[k for k in keys if k not in before]
            ).values_list("pk", "customer_id", "account_id", "type", "name", "occurred_at")
        ]
        if stored:
            events_stored.send(sender=Source, source_id=source.pk, events=stored)
            transaction.on_commit(
                partial(events_ingested.send, sender=Source, source_id=source.pk, events=stored)
            )
    return len(stored)


def _internal_source() -> Source:
    source = Source.objects.filter(name=INTERNAL_SOURCE).first()
    if source is None:
        # A key nobody is ever shown, on an inactive source: nothing can post as Milepost.
        unused = key_generate("int")
        source, _ = Source.objects.get_or_create(
            name=INTERNAL_SOURCE,
            defaults={"key_prefix": unused.prefix, "key_hash": unused.digest, "is_active": False},
        )
    return source
