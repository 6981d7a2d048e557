"""Reads with consent meaning: region policies, and what the delivery policy needs to know
about a batch of customers in a few set-based queries."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from django.conf import settings

from consent.models import (
    ConsentRecord,
    Preference,
    QuietHours,
    RegionPolicy,
    Subscription,
    Suppression,
    Topic,
)


@dataclasses.dataclass(frozen=True, slots=True)
class RegionRule:
    mode: str
    requires_double_opt_in: bool


def region_policies() -> dict[str, RegionRule]:
    return {
        region: RegionRule(mode, double)
        for region, mode, double in RegionPolicy.objects.values_list(
            "region", "mode", "requires_double_opt_in"
        )
    }


def region_rule(policies: dict[str, RegionRule], region: str) -> RegionRule:
    """The rule for a customer's region; regions without a row follow the default mode."""
    found = policies.get(region.strip().upper())
    return found or RegionRule(settings.CONSENT_DEFAULT_MODE, False)


def region_policy_for(region: str) -> RegionRule:
    found = RegionPolicy.objects.filter(region=region.strip().upper()).first()
    if found is None:
        return RegionRule(settings.CONSENT_DEFAULT_MODE, False)
    return RegionRule(found.mode, found.requires_double_opt_in)


def subscriptions_for(customer_ids: Collection[int]) -> dict[int, dict[tuple[str, str], str]]:
    found: dict[int, dict[tuple[str, str], str]] = {pk: {} for pk in customer_ids}
    rows = Subscription.objects.filter(customer_id__any=list(customer_ids)).values_list(
        "customer_id", "channel", "topic__key", "status"
    )
    for customer_id, channel, topic, status in rows:
        found[customer_id][(channel, topic)] = status
    return found


def suppressed_among(pairs: Collection[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    """Which of the (address kind, hash) pairs are suppressed."""
    if not pairs:
        return frozenset()
    hashes = sorted({digest for _, digest in pairs})
    rows = Suppression.objects.filter(address_hash__any=list(hashes)).values_list(
        "kind", "address_hash"
    )
    return frozenset(rows) & frozenset(pairs)


def preferences_for(customer_ids: Collection[int]) -> dict[int, Preference]:
    return {
        p.customer_id: p for p in Preference.objects.filter(customer_id__any=list(customer_ids))
    }


def quiet_hours_active() -> list[QuietHours]:
    return list(QuietHours.objects.filter(is_active=True))


def topics_by_key() -> dict[str, Topic]:
    return {t.key: t for t in Topic.objects.all()}


def consent_history(*, customer_id: int) -> list[ConsentRecord]:
    return list(
        ConsentRecord.objects.filter(customer_id=customer_id)
        .select_related("topic")
        .order_by("-created_at", "-id")
    )
