"""The in-app inbox's writes: a customer reads or dismisses one of their in-app messages.

Both are idempotent (the first time is kept) and each is one transaction holding the
message's row lock, so two concurrent reads record one open.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from consent.models import Channel
from messaging.feedback import OPENED, Observation, observations_apply
from messaging.models import Message, MessageStatus

# The statuses of a message that went out to the inbox, as ``selectors.inbox_for`` shows it.
_SHOWN = (MessageStatus.SENT, MessageStatus.OPENED, MessageStatus.CLICKED)


def inbox_read(*, customer_id: int, message_id: int) -> None:
    """Mark the message read and, the first time only, record it as opened: on the message
    and on the customer's timeline (``observations_apply``). A dismissed message can still
    be read. Raises ``Message.DoesNotExist`` unless it is this customer's in-app message."""
    with transaction.atomic():
        message = _locked(customer_id, message_id)
        if message.read_at is not None:
            return
        now = timezone.now()
        message.read_at = message.updated_at = now
        message.save(update_fields=["read_at", "updated_at"])
        observations_apply([Observation(message_id=message.pk, kind=OPENED, at=now)])


def inbox_dismiss(*, customer_id: int, message_id: int) -> None:
    """Take the message out of the inbox. Raises ``Message.DoesNotExist`` unless it is this
    customer's in-app message."""
    with transaction.atomic():
        message = _locked(customer_id, message_id)
        if message.dismissed_at is not None:
            return
        now = timezone.now()
        message.dismissed_at = message.updated_at = now
        message.save(update_fields=["dismissed_at", "updated_at"])


def _locked(customer_id: int, message_id: int) -> Message:
    return Message.objects.select_for_update().get(
        pk=message_id, customer_id=customer_id, channel=Channel.IN_APP, status__in=_SHOWN
    )
