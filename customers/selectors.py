"""Reads with business meaning on the customer data model."""

from __future__ import annotations

import datetime as dt
import time

from django.conf import settings
from django.db.models import Count, Prefetch, Q, QuerySet

from customers.keys import key_digest
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

# digest -> (source id, monotonic expiry). Only hits are cached, so a new key works at once;
# a deactivated key stops working within INGEST_KEY_CACHE_SECONDS in every web process.
_source_cache: dict[str, tuple[int, float]] = {}


def source_for_key(key: str) -> int | None:
    """The id of the active source whose write key this is, or None.

    Called on every ingest request, so hits are kept in-process for a few seconds.
    """
    if not key:
        return None
    digest = key_digest(key)
    cached = _source_cache.get(digest)
    now = time.monotonic()
    if cached is not None and cached[1] > now:
        return cached[0]
    source_id = (
        Source.objects.filter(key_hash=digest, is_active=True).values_list("id", flat=True).first()
    )
    if source_id is None:
        _source_cache.pop(digest, None)
    elif settings.INGEST_KEY_CACHE_SECONDS > 0:
        if len(_source_cache) > 1000:
            _source_cache.clear()
        _source_cache[digest] = (source_id, now + settings.INGEST_KEY_CACHE_SECONDS)
    return source_id


def source_cache_clear() -> None:
    _source_cache.clear()


def api_token_for_key(key: str) -> ApiToken | None:
    if not key:
        return None
    return (
        ApiToken.objects.select_related("user")
        .filter(key_hash=key_digest(key), is_active=True, user__is_active=True)
        .first()
    )


def customer_events(
    *, customer_id: int, name: str | None = None, since: dt.datetime | None = None
) -> QuerySet[Event]:
    """A customer's events, newest first; served by the (customer, [name,] occurred_at) indexes."""
    events = Event.objects.filter(customer_id=customer_id)
    if name is not None:
        events = events.filter(name=name)
    if since is not None:
        events = events.filter(occurred_at__gte=since)
    return events.order_by("-occurred_at", "-id")


def customer_events_between(
    *,
    customer_id: int,
    name: str | None = None,
    event_type: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> QuerySet[Event]:
    """``customer_events`` narrowed by type and an exclusive upper bound: ``[since, until)``."""
    events = customer_events(customer_id=customer_id, name=name, since=since)
    if event_type is not None:
        events = events.filter(type=event_type)
    if until is not None:
        events = events.filter(occurred_at__lt=until)
    return events


def customer_exists(*, customer_id: int) -> bool:
    return Customer.objects.filter(pk=customer_id).exists()


def customers_with_account() -> QuerySet[Customer]:
    """Customers with their account joined in, for listings: one query per page."""
    return Customer.objects.select_related("account").order_by("-created_at", "-id")


def customers_with_contact_points() -> QuerySet[Customer]:
    """``customers_with_account`` plus identities and devices, each in one extra query."""
    return customers_with_account().prefetch_related(
        Prefetch("identities", queryset=Identity.objects.order_by("id")),
        Prefetch("devices", queryset=Device.objects.order_by("id")),
    )


def accounts_all() -> QuerySet[Account]:
    return Account.objects.order_by("-created_at", "-id")


def accounts_with_customer_count() -> QuerySet[Account]:
    return accounts_all().annotate(customer_count=Count("customers"))


def customer_ids_matching(*, term: str) -> list[int]:
    """Customers whose user id, email, phone, anonymous id or former user id is ``term``.

    Exact matches only, each answered by an index (phone only when ``term`` looks like an
    E.164 number), so looking someone up stays cheap however many customers there are.
    """
    term = term.strip()
    if not term:
        return []
    ids = set(Customer.objects.filter(external_id=term).values_list("id", flat=True))
    ids.update(
        Identity.objects.filter(kind__in=IdentityKind.values, value=term).values_list(
            "customer_id", flat=True
        )
    )
    if "@" in term:
        emails = {term, term.lower()}
        ids.update(Customer.objects.filter(email__in=emails).values_list("id", flat=True))
    if term.startswith("+") and term[1:].isdigit():
        ids.update(Customer.objects.filter(phone=term).values_list("id", flat=True))
    return sorted(ids)


def events_matching(*, term: str, events: QuerySet[Event] | None = None) -> QuerySet[Event]:
    """``events`` narrowed to the message id ``term`` or the customer ``term`` identifies.

    Both arms are index lookups: the (source, message_id) unique index, probed once per
    source, and the (customer, occurred_at) index.
    """
    events = Event.objects.all() if events is None else events
    term = term.strip()
    source_ids = list(Source.objects.values_list("id", flat=True))
    return events.filter(
        Q(source_id__in=source_ids, message_id=term)
        | Q(customer_id__in=customer_ids_matching(term=term))
    )
