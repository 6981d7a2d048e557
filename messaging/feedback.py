"""What comes back after a send: deliveries, bounces, complaints, opens, clicks.

Each observation moves the message forward (never back: an opened message that is later
reported delivered stays opened), goes on the customer's timeline as an event milestones and
journeys can use, and a hard bounce or complaint suppresses the address.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Final

from django.db import transaction
from django.utils import timezone

from consent.models import AddressKind, ConsentSource, SubscriptionStatus, SuppressionReason
from consent.services import Evidence, subscription_set, suppression_add
from customers.services import TimelineEvent, events_record
from messaging.models import Message, MessageStatus

DELIVERED: Final = "delivered"
BOUNCED: Final = "bounced"
SOFT_BOUNCED: Final = "soft_bounced"
COMPLAINED: Final = "complained"
OPENED: Final = "opened"
CLICKED: Final = "clicked"
FAILED: Final = "failed"
KINDS: Final = frozenset({DELIVERED, BOUNCED, SOFT_BOUNCED, COMPLAINED, OPENED, CLICKED, FAILED})

# Progress only moves forward; the terminal states are never left.
_RANK: dict[str, int] = {
    MessageStatus.SENT: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.OPENED: 3,
    MessageStatus.CLICKED: 4,
}
_TERMINAL = frozenset({MessageStatus.BOUNCED, MessageStatus.COMPLAINED, MessageStatus.FAILED})
_NEXT = {
    DELIVERED: MessageStatus.DELIVERED,
    OPENED: MessageStatus.OPENED,
    CLICKED: MessageStatus.CLICKED,
    BOUNCED: MessageStatus.BOUNCED,
    COMPLAINED: MessageStatus.COMPLAINED,
    FAILED: MessageStatus.FAILED,
}
_STAMP = {
    DELIVERED: "delivered_at",
    OPENED: "opened_at",
    CLICKED: "clicked_at",
    BOUNCED: "failed_at",
    FAILED: "failed_at",
}
# Segment's email event names where there is one.
_EVENT_NAMES = {
    ("email", DELIVERED): "Email Delivered",
    ("email", BOUNCED): "Email Bounced",
    ("email", SOFT_BOUNCED): "Email Bounced",
    ("email", COMPLAINED): "Email Marked as Spam",
    ("email", OPENED): "Email Opened",
    ("email", CLICKED): "Email Link Clicked",
}
_CHANNEL_NAMES = {"email": "Email", "sms": "SMS", "push": "Push", "in_app": "In-App"}
_ADDRESS_KIND = {"email": AddressKind.EMAIL, "sms": AddressKind.PHONE, "push": "device_token"}


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    message_id: int
    kind: str
    at: dt.datetime
    detail: str = ""
    url: str = ""
    link_index: int | None = None


def observations_apply(observations: Sequence[Observation]) -> int:
    """Apply what providers and tracking links reported; returns how many messages moved."""
    moved = 0
    timeline: list[TimelineEvent] = []
    with transaction.atomic():
        ids = sorted({o.message_id for o in observations})
        messages = {
            m.pk: m
            for m in Message.objects.select_for_update(of=("self",))
            .filter(pk__in=ids)
            .select_related("topic", "template_version__template")
            .order_by("pk")
        }
        for observation in observations:
            message = messages.get(observation.message_id)
            if message is None or observation.kind not in KINDS:
                continue
            moved += _apply(message, observation)
            if message.customer_id is not None:
                timeline.append(_timeline(message, observation))
        events_record(events=timeline)
    return moved


def _apply(message: Message, observation: Observation) -> int:
    fields = ["updated_at"]
    stamp = _STAMP.get(observation.kind)
    if stamp and getattr(message, stamp) is None:
        setattr(message, stamp, observation.at)
        fields.append(stamp)
    target = _NEXT.get(observation.kind)
    moved = 0
    if (
        target is not None
        and message.status not in _TERMINAL
        and (target in _TERMINAL or _RANK.get(target, 0) > _RANK.get(str(message.status), 0))
    ):
        message.status = target
        fields.append("status")
        moved = 1
    if observation.kind in (BOUNCED, COMPLAINED, FAILED):
        message.error = observation.detail[:500]
        fields.append("error")
    message.updated_at = timezone.now()
    message.save(update_fields=fields)
    if observation.kind == BOUNCED and message.channel in _ADDRESS_KIND:
        suppression_add(
            kind=_ADDRESS_KIND[message.channel],
            address=message.to_address,
            reason=SuppressionReason.HARD_BOUNCE,
            note=f"message {message.pk}: {observation.detail}"[:500],
        )
    if observation.kind == COMPLAINED and message.channel in _ADDRESS_KIND:
        suppression_add(
            kind=_ADDRESS_KIND[message.channel],
            address=message.to_address,
            reason=SuppressionReason.COMPLAINT,
            note=f"message {message.pk}"[:500],
        )
        if message.customer_id is not None:
            subscription_set(
                customer_id=message.customer_id,
                channel=message.channel,
                topic_keys=None,
                status=SubscriptionStatus.OPTED_OUT,
                evidence=Evidence(source=ConsentSource.COMPLAINT, wording=f"message {message.pk}"),
            )
    return moved


def _timeline(message: Message, observation: Observation) -> TimelineEvent:
    channel = message.channel
    name = _EVENT_NAMES.get(
        (channel, observation.kind),
        f"{_CHANNEL_NAMES.get(channel, channel)} {observation.kind.replace('_', ' ').title()}",
    )
    suffix = f":{observation.link_index}" if observation.link_index is not None else ""
    version = message.template_version
    properties: dict[str, object] = {
        "message_id": message.pk,
        "channel": channel,
        "topic": message.topic.key,
        "template": version.template.key if version is not None else "",
        "journey": message.journey_key,
    }
    if observation.url:
        properties["url"] = observation.url
    if observation.detail:
        properties["detail"] = observation.detail[:500]
    return TimelineEvent(
        customer_id=message.customer_id or 0,
        name=name,
        occurred_at=observation.at,
        message_id=f"milepost:message:{message.pk}:{observation.kind}{suffix}",
        properties=properties,
    )
