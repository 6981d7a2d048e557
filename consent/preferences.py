"""What the login-free consent pages read and write (``consent/views.py``): the preference
centre, the customer's frequency choice, what an unsubscribe link covers, and the email
topics waiting for a double opt-in confirmation.

Consent changes go through ``consent.services.subscription_set`` (state and ledger row
together). The frequency choice is not consent, so ``preference_set`` keeps it out of the
ledger.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Final
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from consent import rules
from consent.links import LinkClaim
from consent.models import Channel, Preference, Subscription, SubscriptionStatus, Topic
from consent.selectors import RegionRule, region_policy_for, subscriptions_for
from consent.services import Evidence, subscription_set
from customers.models import Customer, Device

logger = logging.getLogger(__name__)

#: How each channel is named in a sentence ("no more “Tips” emails").
CHANNEL_NOUNS: Final = {
    Channel.EMAIL: "emails",
    Channel.SMS: "text messages",
    Channel.PUSH: "push notifications",
    Channel.IN_APP: "in-app messages",
}
PREFERENCE_HEADING: Final = "Choose what we send you"
DEFAULT_PERIOD_DAYS: Final = 7


class LinkTargetGone(Exception):
    """A genuine link names a customer, channel or topic that no longer exists."""


def is_subscribed(status: str, channel: str, rule: RegionRule) -> bool:
    """Whether marketing on ``channel`` goes out with ``status`` under the region's ``rule``
    (``consent.rules``, the same rule the delivery policy applies)."""
    return rules.is_subscribed(
        status, channel, mode=rule.mode, requires_double_opt_in=rule.requires_double_opt_in
    )


@dataclasses.dataclass(frozen=True, slots=True)
class TopicChoice:
    """One checkbox of the preference centre: a topic on a channel."""

    channel: str
    key: str
    name: str
    description: str
    status: str  # as stored; "unknown" when the customer never chose
    is_subscribed: bool  # the effective state under the region's policy

    @property
    def is_pending(self) -> bool:
        return self.status == SubscriptionStatus.PENDING

    @property
    def is_checked(self) -> bool:
        """The box shows what the customer asked for: a pending opt-in is ticked."""
        return self.is_subscribed or self.is_pending

    @property
    def field_name(self) -> str:
        return f"{self.channel}-{self.key}"  # channel values have no "-", so this is unique

    @property
    def wording(self) -> str:
        """What the page shows for this box, kept as the ledger row's evidence."""
        label = Channel(self.channel).label
        text = f"{PREFERENCE_HEADING}: {label}, {self.name}"
        return f"{text}. {self.description}" if self.description else text


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelSection:
    channel: str
    label: str
    topics: tuple[TopicChoice, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class PreferenceCentre:
    customer_id: int
    zone: ZoneInfo
    today: dt.date  # in the customer's time zone
    sections: tuple[ChannelSection, ...]
    max_marketing: int | None
    period_days: int
    paused_until: dt.datetime | None  # None also when a pause has run out

    def choices(self) -> Iterator[TopicChoice]:
        for section in self.sections:
            yield from section.topics

    @property
    def pause_date(self) -> dt.date | None:
        return None if self.paused_until is None else self.paused_until.astimezone(self.zone).date()


def preference_centre_read(customer_id: int) -> PreferenceCentre:
    """Every active marketing topic on each channel the customer can be reached on (in-app
    always), with its stored and effective state, and the customer's frequency choice."""
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        raise LinkTargetGone(f"no customer {customer_id}")
    rule = region_policy_for(customer.region)
    statuses = subscriptions_for([customer_id])[customer_id]
    topics = list(Topic.objects.filter(is_active=True, is_transactional=False).order_by("name"))
    sections = tuple(
        ChannelSection(
            channel,
            Channel(channel).label,
            tuple(_choice(channel, topic, statuses, rule) for topic in topics),
        )
        for channel in _reachable_channels(customer)
    )
    preference = Preference.objects.filter(customer_id=customer_id).first()
    now = timezone.now()
    paused_until = preference.paused_until if preference else None
    return PreferenceCentre(
        customer_id=customer_id,
        zone=customer.zone,
        today=now.astimezone(customer.zone).date(),
        sections=sections,
        max_marketing=preference.max_marketing if preference else None,
        period_days=preference.period_days if preference else DEFAULT_PERIOD_DAYS,
        paused_until=paused_until if paused_until and paused_until > now else None,
    )


def _reachable_channels(customer: Customer) -> list[str]:
    channels: list[str] = []
    if customer.email:
        channels.append(Channel.EMAIL)
    if customer.phone:
        channels.append(Channel.SMS)
    if Device.objects.filter(customer=customer, is_active=True).exists():
        channels.append(Channel.PUSH)
    channels.append(Channel.IN_APP)
    return channels


def _choice(
    channel: str, topic: Topic, statuses: dict[tuple[str, str], str], rule: RegionRule
) -> TopicChoice:
    status = statuses.get((channel, topic.key), SubscriptionStatus.UNKNOWN)
    return TopicChoice(
        channel=channel,
        key=topic.key,
        name=topic.name,
        description=topic.description,
        status=status,
        is_subscribed=is_subscribed(status, channel, rule),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Chosen:
    """What the customer submitted on the preference centre."""

    subscribed: frozenset[tuple[str, str]]  # (channel, topic key) of every ticked box
    max_marketing: int | None  # None: no limit
    period_days: int | None  # None: keep the stored period
    pause_date: dt.date | None  # marketing resumes at the start of this day, local time


@dataclasses.dataclass(frozen=True, slots=True)
class Applied:
    changed: tuple[TopicChoice, ...]  # as they were shown before the change
    pending: tuple[TopicChoice, ...]  # email opt-ins now awaiting a confirmation
    preference_changed: bool


def preference_centre_apply(*, customer_id: int, chosen: Chosen, evidence: Evidence) -> Applied:
    """Apply a preference centre submission in one transaction: one ``subscription_set`` per
    box that differs from what the page shows now (an untouched "unknown" stays unknown),
    each with that box's wording as evidence, then the frequency choice. An email opt-in in a
    double opt-in region becomes pending (``subscription_set`` decides that)."""
    changed: list[TopicChoice] = []
    pending: list[TopicChoice] = []
    with transaction.atomic():
        centre = preference_centre_read(customer_id)
        for choice in centre.choices():
            wanted = (choice.channel, choice.key) in chosen.subscribed
            if wanted == choice.is_checked:
                continue
            subscriptions = subscription_set(
                customer_id=customer_id,
                channel=choice.channel,
                topic_keys=[choice.key],
                status=SubscriptionStatus.OPTED_IN if wanted else SubscriptionStatus.OPTED_OUT,
                evidence=dataclasses.replace(evidence, wording=choice.wording),
            )
            changed.append(choice)
            if any(s.status == SubscriptionStatus.PENDING for s in subscriptions):
                pending.append(choice)
        preference_changed = preference_set(
            customer_id=customer_id,
            max_marketing=chosen.max_marketing,
            period_days=chosen.period_days or centre.period_days,
            paused_until=_pause_at(centre, chosen.pause_date),
            evidence=evidence,
        )
    return Applied(tuple(changed), tuple(pending), preference_changed)


def _pause_at(centre: PreferenceCentre, day: dt.date | None) -> dt.datetime | None:
    if day is None:
        return None
    if day == centre.pause_date:
        return centre.paused_until  # unchanged: keep a pause set to the minute elsewhere
    return dt.datetime.combine(day, dt.time.min, tzinfo=centre.zone)


def preference_set(
    *,
    customer_id: int,
    max_marketing: int | None,
    period_days: int,
    paused_until: dt.datetime | None,
    evidence: Evidence,
) -> bool:
    """Store the customer's frequency choice (one row per customer, made on first change) and
    say whether anything changed. The same values write nothing and keep ``updated_at``.

    Not consent, so no ledger row: ``evidence`` is only named in the log line."""
    wanted = (max_marketing, period_days, paused_until)
    with transaction.atomic():
        stored = Preference.objects.select_for_update().filter(customer_id=customer_id).first()
        current = (
            (stored.max_marketing, stored.period_days, stored.paused_until)
            if stored
            else (None, DEFAULT_PERIOD_DAYS, None)
        )
        if current == wanted:
            return False
        Preference.objects.update_or_create(
            customer_id=customer_id,
            defaults={
                "max_marketing": max_marketing,
                "period_days": period_days,
                "paused_until": paused_until,
                "updated_at": timezone.now(),
            },
        )
    logger.info("frequency choice of customer %s changed (%s)", customer_id, evidence.source)
    return True


@dataclasses.dataclass(frozen=True, slots=True)
class UnsubscribeScope:
    """What an unsubscribe link opts the customer out of."""

    customer_id: int
    channel: str
    topic_keys: tuple[str, ...] | None  # None: every marketing topic of the channel
    what: str  # for the page: "“Tips” emails", "all marketing emails"


def unsubscribe_scope(claim: LinkClaim) -> UnsubscribeScope:
    """The link's channel and topic; "" (or a transactional topic, which has no marketing
    consent to withdraw) means every marketing topic of the channel."""
    if claim.channel not in Channel.values:
        raise LinkTargetGone(f"unknown channel {claim.channel!r}")
    if not Customer.objects.filter(pk=claim.customer_id).exists():
        raise LinkTargetGone(f"no customer {claim.customer_id}")
    noun = CHANNEL_NOUNS[Channel(claim.channel)]
    topic = Topic.objects.filter(key=claim.topic).first() if claim.topic else None
    if claim.topic and topic is None:
        raise LinkTargetGone(f"no topic {claim.topic!r}")
    if topic is None or topic.is_transactional:
        return UnsubscribeScope(claim.customer_id, claim.channel, None, f"all marketing {noun}")
    return UnsubscribeScope(
        claim.customer_id, claim.channel, (topic.key,), f"\u201c{topic.name}\u201d {noun}"
    )


def confirmation_pending(customer_id: int) -> tuple[str, ...]:
    """The names of the email topics awaiting the customer's double opt-in confirmation."""
    if not Customer.objects.filter(pk=customer_id).exists():
        raise LinkTargetGone(f"no customer {customer_id}")
    return tuple(
        Subscription.objects.filter(
            customer_id=customer_id,
            channel=Channel.EMAIL,
            status=SubscriptionStatus.PENDING,
        )
        .order_by("topic__name")
        .values_list("topic__name", flat=True)
    )
