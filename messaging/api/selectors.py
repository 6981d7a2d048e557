"""Reads behind the messaging API, one query per page."""

from __future__ import annotations

from django.db.models import QuerySet

from messaging.models import Message
from messaging.selectors import inbox_for


def inbox_messages(*, customer_id: int, is_unread_only: bool) -> QuerySet[Message]:
    """The customer's inbox, newest first; only the messages not read yet if asked."""
    messages = inbox_for(customer_id=customer_id)
    return messages.filter(read_at__isnull=True) if is_unread_only else messages


def customer_messages(*, customer_id: int) -> QuerySet[Message]:
    """Every message of the customer, sent or not, newest first, with topic and template."""
    return (
        Message.objects.filter(customer_id=customer_id)
        .select_related("topic", "template_version__template")
        .order_by("-created_at", "-id")
    )
