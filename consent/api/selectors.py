"""Reads behind the consent API, each a fixed number of queries."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection

from django.db.models import QuerySet

from consent.models import Channel, ConsentRecord, Subscription, SubscriptionStatus, Topic
from consent.preferences import is_subscribed
from consent.selectors import RegionRule, region_policy_for
from customers.models import Customer


@dataclasses.dataclass(frozen=True, slots=True)
class SubscriptionState:
    """One topic on one channel: the stored status and what it means under the region rule."""

    channel: str
    topic: str
    topic_name: str
    is_transactional: bool
    status: str  # as stored; "unknown" when there is no row
    effective: bool
    updated_at: dt.datetime | None  # None when there is no row


@dataclasses.dataclass(frozen=True, slots=True)
class CustomerSubscriptions:
    region: str
    rule: RegionRule
    subscriptions: tuple[SubscriptionState, ...]


def customer_subscriptions(*, customer_id: int) -> CustomerSubscriptions | None:
    """Every active topic on every channel, channel by channel and topics by name, or None
    when there is no such customer. Four queries."""
    customer = Customer.objects.filter(pk=customer_id).only("pk", "region").first()
    if customer is None:
        return None
    rule = region_policy_for(customer.region)
    stored = {
        (s.channel, s.topic_id): s for s in Subscription.objects.filter(customer_id=customer_id)
    }
    topics = list(Topic.objects.filter(is_active=True).order_by("name", "key"))
    states = tuple(
        _state(channel, topic, stored.get((channel, topic.pk)), rule)
        for channel in Channel.values
        for topic in topics
    )
    return CustomerSubscriptions(region=customer.region, rule=rule, subscriptions=states)


def _state(
    channel: str, topic: Topic, subscription: Subscription | None, rule: RegionRule
) -> SubscriptionState:
    status = subscription.status if subscription else SubscriptionStatus.UNKNOWN
    return SubscriptionState(
        channel=channel,
        topic=topic.key,
        topic_name=topic.name,
        is_transactional=topic.is_transactional,
        status=str(status),
        # Transactional topics go out without marketing consent (messaging.policy).
        effective=topic.is_transactional or is_subscribed(status, channel, rule),
        updated_at=subscription.updated_at if subscription else None,
    )


def topics_for_keys(keys: Collection[str]) -> dict[str, Topic]:
    if not keys:
        return {}
    return {t.key: t for t in Topic.objects.filter(key__in=list(keys))}


def consent_records(*, customer_id: int) -> QuerySet[ConsentRecord]:
    """The customer's ledger rows, newest first, with topic and actor joined in."""
    return (
        ConsentRecord.objects.filter(customer_id=customer_id)
        .select_related("topic", "actor")
        .order_by("-created_at", "-id")
    )
