"""Reads with messaging meaning."""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, QuerySet

from config.plans import planned_each_time
from config.windows import newest_id_before
from messaging.models import Message, MessageStatus


def messages_by_outcome(
    *, since: dt.datetime, until: dt.datetime | None = None
) -> dict[tuple[str, str], int]:
    """Messages created from ``since`` (to ``until``), by (current status, reason); the
    reason says why one was not sent and is empty for the others. Reads the window's rows
    only (config/windows.py)."""
    floor = newest_id_before(Message, "created_at", since)
    window = Message.objects.filter(pk__gt=floor, created_at__gte=since)
    if until is not None:
        window = window.filter(created_at__lte=until)
    with planned_each_time():
        rows = window.order_by().values_list("status", "reason").annotate(count=Count("*"))
        return {(status, reason): count for status, reason, count in rows}


def message_link(*, message_id: int, index: int) -> str | None:
    """The ``index``-th tracked URL of a message, or None: the only places a click may go."""
    links = Message.objects.filter(pk=message_id).values_list("links", flat=True).first()
    if not isinstance(links, list) or not 0 <= index < len(links):
        return None
    url = links[index]
    return url if isinstance(url, str) else None


def message_for_report(*, provider_id: str, message_id: int | None) -> int | None:
    """The message a provider's report is about: by our id, else by the provider's id."""
    if message_id is not None:
        return Message.objects.filter(pk=message_id).values_list("pk", flat=True).first()
    if not provider_id:
        return None
    return Message.objects.filter(provider_id=provider_id).values_list("pk", flat=True).first()


def inbox_for(*, customer_id: int) -> QuerySet[Message]:
    """A customer's in-app messages that went out and were not dismissed, newest first."""
    return (
        Message.objects.filter(
            customer_id=customer_id,
            channel="in_app",
            status__in=(MessageStatus.SENT, MessageStatus.OPENED, MessageStatus.CLICKED),
            dismissed_at__isnull=True,
        )
        .select_related("topic")
        .order_by("-created_at", "-id")
    )
