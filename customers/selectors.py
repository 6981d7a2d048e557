"""Reads with business meaning on the customer data model."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from customers.keys import key_digest
from customers.models import ApiToken, Event, Source


def source_for_key(key: str) -> int | None:
    """The id of the active source whose write key this is, or None."""
    if not key:
        return None
    return (
        Source.objects.filter(key_hash=key_digest(key), is_active=True)
        .values_list("id", flat=True)
        .first()
    )


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
