"""What the delivery policy reads: one snapshot of a batch of customers, in a fixed number of
set-based queries whatever the batch size (DESIGN.md §2.4), turned into policy data."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Mapping

from django.conf import settings

from config.cache import cached
from consent import selectors as consent_selectors
from consent.models import AddressKind, Channel, QuietHours, RegionPolicy, Topic
from consent.services import address_hash
from customers.models import Customer, Device, SubjectStatus
from messaging import policy
from messaging.models import FrequencyCap, Message


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    audiences: dict[int, policy.Audience]
    customers: dict[int, Customer]
    rules: policy.Rules
    topics: dict[str, Topic]


def snapshot_read(
    customer_ids: Collection[int],
    now: dt.datetime,
    *,
    loaded: Mapping[int, Customer] | None = None,
) -> Snapshot:
    """Customers, their addresses, consent, suppressions, slot-holding messages and the
    global rules. Read inside the caller's transaction, after it locked the customers.
    ``loaded``: customers (with their accounts) the caller read earlier in the same
    transaction, not read again; consent, suppressions and held slots always are."""
    ids = sorted(set(customer_ids))
    customers = {pk: loaded[pk] for pk in ids if loaded and pk in loaded}
    if len(customers) < len(ids):
        missing = [pk for pk in ids if pk not in customers]
        found = Customer.objects.filter(pk__any=missing).select_related("account")
        customers.update((c.pk, c) for c in found)
    config = _config.get()
    topics, caps, regions = config.topics, config.caps, config.regions
    addresses = _addresses(customers)
    pairs = {(a.kind, a.hash) for found in addresses.values() for a in _flat(found)}
    suppressed = consent_selectors.suppressed_among(pairs)
    subscriptions = consent_selectors.subscriptions_for(ids)
    preferences = consent_selectors.preferences_for(ids)
    longest = max(
        [c.window for c in caps]
        + [p.period for p in preferences.values() if p.max_marketing is not None],
        default=dt.timedelta(0),
    )
    held = _held(ids, now - longest, {t.pk: t.key for t in topics.values()}) if longest else {}
    audiences = {}
    for pk, customer in customers.items():
        region = consent_selectors.region_rule(regions, customer.region)
        preference = preferences.get(pk)
        audiences[pk] = policy.Audience(
            customer_id=pk,
            is_active=customer.status != SubjectStatus.BLOCKED,
            time_zone=customer.time_zone,
            consent_mode=region.mode,
            requires_double_opt_in=region.requires_double_opt_in,
            subscriptions=subscriptions.get(pk, {}),
            addresses=addresses.get(pk, {}),
            suppressed=suppressed,
            held=tuple(held.get(pk, ())),
            max_marketing=preference.max_marketing if preference else None,
            period=preference.period if preference else dt.timedelta(days=7),
            paused_until=preference.paused_until if preference else None,
        )
    rules = dataclasses.replace(
        config.rules, lower_priority_defers=settings.MESSAGING_LOWER_PRIORITY_DEFERS
    )
    return Snapshot(audiences, customers, rules, topics)


@dataclasses.dataclass(frozen=True, slots=True)
class _Config:
    topics: dict[str, Topic]
    caps: tuple[policy.CapRule, ...]
    regions: dict[str, consent_selectors.RegionRule]
    rules: policy.Rules


@cached(Topic, FrequencyCap, RegionPolicy, QuietHours)
def _config() -> _Config:
    """The policy's global rules, cached per process (config/cache.py)."""
    topics = consent_selectors.topics_by_key()
    caps = tuple(_caps(topics))
    rules = policy.Rules(
        caps=caps,
        quiet_hours={
            q.channel: policy.QuietWindow(q.starts_at, q.ends_at)
            for q in consent_selectors.quiet_hours_active()
        },
        active_topics=frozenset(k for k, t in topics.items() if t.is_active),
    )
    return _Config(topics, caps, consent_selectors.region_policies(), rules)


def _flat(found: Mapping[str, tuple[policy.Address, ...]]) -> list[policy.Address]:
    return [address for addresses in found.values() for address in addresses]


def _caps(topics: Mapping[str, Topic]) -> list[policy.CapRule]:
    keys = {t.pk: key for key, t in topics.items()}
    return [
        policy.CapRule(
            scope=cap.scope,
            limit=cap.limit,
            window=cap.window,
            channel=cap.channel,
            topic=keys.get(cap.topic_id, "") if cap.topic_id else "",
            journey=cap.journey_key,
            name=cap.name,
        )
        for cap in FrequencyCap.objects.filter(is_active=True).order_by("pk")
    ]


def _addresses(
    customers: Mapping[int, Customer],
) -> dict[int, dict[str, tuple[policy.Address, ...]]]:
    found: dict[int, dict[str, tuple[policy.Address, ...]]] = {}
    for pk, customer in customers.items():
        mine: dict[str, tuple[policy.Address, ...]] = {
            Channel.IN_APP: (policy.Address("customer", str(pk), f"customer:{pk}"),)
        }
        if customer.email:
            mine[Channel.EMAIL] = (_address(AddressKind.EMAIL, customer.email),)
        if customer.phone:
            mine[Channel.SMS] = (_address(AddressKind.PHONE, customer.phone),)
        found[pk] = mine
    devices = Device.objects.filter(customer_id__any=list(customers), is_active=True).order_by(
        "customer_id", "-last_seen"
    )
    for customer_id, platform, token in devices.values_list("customer_id", "platform", "token"):
        push = found[customer_id].get(Channel.PUSH, ())
        address = _address(AddressKind.DEVICE_TOKEN, token, platform)
        found[customer_id][Channel.PUSH] = (*push, address)
    return found


def _address(kind: str, value: str, platform: str = "") -> policy.Address:
    return policy.Address(kind, value, address_hash(kind, value), platform)


def _held(
    ids: list[int], since: dt.datetime, topic_keys: Mapping[int, str]
) -> dict[int, list[policy.Held]]:
    found: dict[int, list[policy.Held]] = {}
    rows = Message.objects.filter(customer_id__any=ids, reserved_at__gt=since).values_list(
        "customer_id", "reserved_at", "channel", "topic_id", "journey_key", "priority"
    )
    for customer_id, at, channel, topic_id, journey, priority in rows:
        assert at is not None  # noqa: S101 - filtered on reserved_at > since
        found.setdefault(customer_id, []).append(
            policy.Held(at, channel, topic_keys.get(topic_id, ""), journey, priority)
        )
    return found
