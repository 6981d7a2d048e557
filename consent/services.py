"""Every consent write: subscriptions with their ledger row, suppressions, SMS keywords.

Each function is one transaction that writes the current state and its append-only ledger
row together (the Zulip shape), so the ledger can always explain the state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
from collections.abc import Sequence
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from consent.models import (
    AddressKind,
    Channel,
    ConsentRecord,
    ConsentSource,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    Topic,
)
from consent.selectors import region_policy_for
from consent.signals import confirmation_requested
from customers.models import Customer
from customers.services import TimelineEvent, events_record

#: SMS keywords (CTIA / carrier conventions), matched on the whole trimmed, upper-cased body.
STOP_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "QUIT", "END", "REVOKE", "OPT OUT", "OPTOUT", "CANCEL", "UNSUBSCRIBE"}
)
START_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})


@dataclasses.dataclass(frozen=True, slots=True)
class Evidence:
    """How a consent change came about, kept on its ledger row."""

    source: str
    ip_address: str | None = None
    user_agent: str = ""
    wording: str = ""
    actor_id: int | None = None


def address_normalise(kind: str, value: str) -> str:
    value = value.strip()
    return value.lower() if kind == AddressKind.EMAIL else value


def address_hash(kind: str, value: str) -> str:
    """A keyed hash of the normalised address: it survives erasing the customer, and
    cannot be reversed by hashing a list of known addresses without the key."""
    key = (settings.CONSENT_HASH_KEY or settings.SECRET_KEY).encode()
    message = f"{kind}:{address_normalise(kind, value)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def subscription_set(
    *,
    customer_id: int,
    channel: str,
    topic_keys: Sequence[str] | None,
    status: str,
    evidence: Evidence,
) -> list[Subscription]:
    """Set the customer's consent on ``channel`` for ``topic_keys`` (None: every marketing
    topic) and record it in the ledger. An email opt-in in a double opt-in region becomes
    ``pending`` and asks for a confirmation, unless it is that confirmation."""
    customer = Customer.objects.get(pk=customer_id)
    topics = list(_topics(topic_keys))
    if (
        status == SubscriptionStatus.OPTED_IN
        and channel == Channel.EMAIL
        and evidence.source != ConsentSource.DOUBLE_OPT_IN
        and region_policy_for(customer.region).requires_double_opt_in
    ):
        status = SubscriptionStatus.PENDING
    now = timezone.now()
    with transaction.atomic():
        changed = []
        timeline: list[TimelineEvent] = []
        for topic in topics:
            subscription, _ = Subscription.objects.select_for_update().get_or_create(
                customer_id=customer_id, channel=channel, topic=topic
            )
            if subscription.status == status:
                continue
            subscription.status, subscription.updated_at = status, now
            subscription.save(update_fields=["status", "updated_at"])
            changed.append(subscription)
            record = _record(customer_id, channel, topic, status, evidence, now)
            timeline.extend(_timeline(record))
        events_record(events=timeline)
        pending = [s.topic.key for s in changed if s.status == SubscriptionStatus.PENDING]
        if pending:
            transaction.on_commit(
                partial(
                    confirmation_requested.send,
                    sender=Subscription,
                    customer_id=customer_id,
                    topic_keys=pending,
                )
            )
    return changed


def _topics(keys: Sequence[str] | None) -> list[Topic]:
    if keys is None:
        return list(Topic.objects.filter(is_active=True, is_transactional=False).order_by("pk"))
    found = {t.key: t for t in Topic.objects.filter(key__in=keys)}
    missing = sorted(set(keys) - set(found))
    if missing:
        raise Topic.DoesNotExist(f"unknown topic(s): {', '.join(missing)}")
    return [found[key] for key in keys]


def _record(
    customer_id: int,
    channel: str,
    topic: Topic | None,
    status: str,
    evidence: Evidence,
    now: dt.datetime,
) -> ConsentRecord:
    return ConsentRecord.objects.create(
        customer_id=customer_id,
        channel=channel,
        topic=topic,
        status=status,
        source=evidence.source,
        ip_address=evidence.ip_address,
        user_agent=evidence.user_agent[:500],
        wording=evidence.wording,
        actor_id=evidence.actor_id,
        created_at=now,
    )


_TIMELINE_NAMES = {
    SubscriptionStatus.OPTED_OUT: "Unsubscribed",
    SubscriptionStatus.OPTED_IN: "Subscribed",
}


def _timeline(record: ConsentRecord) -> list[TimelineEvent]:
    """Opt-ins and opt-outs go on the customer's timeline, so milestones and journeys can
    react to them (a journey that exits on unsubscribe)."""
    name = _TIMELINE_NAMES.get(SubscriptionStatus(record.status))
    if name is None:
        return []
    return [
        TimelineEvent(
            customer_id=record.customer_id,
            name=name,
            occurred_at=record.created_at,
            message_id=f"milepost:consent:{record.pk}",
            properties={
                "channel": record.channel,
                "topic": record.topic.key if record.topic else "",
                "source": record.source,
            },
        )
    ]


def confirmation_accept(*, customer_id: int, evidence: Evidence) -> list[Subscription]:
    """The customer confirmed a double opt-in: every pending email topic becomes opted in."""
    keys = list(
        Subscription.objects.filter(
            customer_id=customer_id, channel=Channel.EMAIL, status=SubscriptionStatus.PENDING
        ).values_list("topic__key", flat=True)
    )
    if not keys:
        return []
    return subscription_set(
        customer_id=customer_id,
        channel=Channel.EMAIL,
        topic_keys=keys,
        status=SubscriptionStatus.OPTED_IN,
        evidence=dataclasses.replace(evidence, source=ConsentSource.DOUBLE_OPT_IN),
    )


def suppression_add(
    *,
    kind: str,
    address: str,
    reason: str,
    note: str = "",
    created_by_id: int | None = None,
) -> Suppression:
    """Suppress an address (idempotent: an address already suppressed keeps its first
    reason; a legal hold or complaint outranks a bounce or an unsubscribe)."""
    digest = address_hash(kind, address)
    with transaction.atomic():
        suppression, created = Suppression.objects.select_for_update().get_or_create(
            kind=kind,
            address_hash=digest,
            defaults={
                "address": address_normalise(kind, address),
                "reason": reason,
                "note": note[:500],
                "created_by_id": created_by_id,
            },
        )
        if not created and _rank(reason) > _rank(suppression.reason):
            suppression.reason = reason
            suppression.save(update_fields=["reason"])
    return suppression


_RANKS = (
    SuppressionReason.UNSUBSCRIBE,
    SuppressionReason.HARD_BOUNCE,
    SuppressionReason.MANUAL,
    SuppressionReason.ERASED,
    SuppressionReason.COMPLAINT,
    SuppressionReason.LEGAL_HOLD,
)


def _rank(reason: str) -> int:
    return _RANKS.index(reason) if reason in _RANKS else -1


def suppression_remove(*, kind: str, address: str, reasons: Sequence[str]) -> int:
    """Lift a suppression of one of ``reasons`` (an SMS START lifts only an unsubscribe)."""
    deleted, _ = Suppression.objects.filter(
        kind=kind, address_hash=address_hash(kind, address), reason__in=list(reasons)
    ).delete()
    return deleted


@dataclasses.dataclass(frozen=True, slots=True)
class KeywordResult:
    keyword: str  # "stop" | "start" | "help" | ""
    customers: int
    reply: str


def sms_keyword_apply(*, phone: str, body: str) -> KeywordResult:
    """An inbound SMS from ``phone``: STOP and friends opt every customer with that number
    out of SMS and suppress the number; START lifts that and opts back in; HELP replies."""
    word = " ".join(body.split()).upper()
    customers = list(Customer.objects.filter(phone=phone).values_list("pk", flat=True))
    evidence = Evidence(source=ConsentSource.SMS_KEYWORD, wording=body[:500])
    if word in STOP_KEYWORDS:
        with transaction.atomic():
            suppression_add(kind=AddressKind.PHONE, address=phone, reason="unsubscribe")
            for pk in customers:
                subscription_set(
                    customer_id=pk,
                    channel=Channel.SMS,
                    topic_keys=None,
                    status=SubscriptionStatus.OPTED_OUT,
                    evidence=evidence,
                )
        return KeywordResult("stop", len(customers), settings.CONSENT_SMS_STOP_REPLY)
    if word in START_KEYWORDS:
        with transaction.atomic():
            suppression_remove(
                kind=AddressKind.PHONE, address=phone, reasons=[SuppressionReason.UNSUBSCRIBE]
            )
            for pk in customers:
                subscription_set(
                    customer_id=pk,
                    channel=Channel.SMS,
                    topic_keys=None,
                    status=SubscriptionStatus.OPTED_IN,
                    evidence=evidence,
                )
        return KeywordResult("start", len(customers), settings.CONSENT_SMS_START_REPLY)
    if word in HELP_KEYWORDS:
        return KeywordResult("help", len(customers), settings.CONSENT_SMS_HELP_REPLY)
    return KeywordResult("", len(customers), "")
