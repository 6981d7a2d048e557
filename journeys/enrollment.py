"""Entering journeys: milestone outcomes (and, through the same door, events and stage
changes) enroll customers in the live journeys they trigger.

``enroll`` is idempotent: each entry has a key (``outcome:<id>``, ``event:<id>``, …) and the
enrollment is unique per (version, customer, entry key), so an outcome delivered twice — by
its signal and by the sweep that catches lost signals — enrolls once. Entry rules and the
re-entry policy are checked under a per-customer advisory lock, so two workers cannot both
let the same customer in when only one entry is allowed. Held-out customers are enrolled as
``holdout`` and never advance: they are the control group.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from django.db import transaction
from django.utils import timezone

from config.cache import cached
from config.durability import commit_async
from customers.locks import customers_advisory_lock
from customers.models import Customer
from journeys.graph import is_holdout
from journeys.models import (
    Enrollment,
    EnrollmentState,
    Journey,
    JourneyStatus,
    JourneyVersion,
    WebhookEvent,
)
from journeys.notices import enrollment_payloads, wants, webhooks_write
from journeys.runner import version_graph
from journeys.triggers import event_filters, event_matches
from milestones.signals import OutcomeRecord

_LOCK_SPACE = 0x4A52  # "JR": advisory locks of journey entry, per customer


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """Something that may enroll ``customer_id``: its trigger kind and subject (milestone key,
    event name or stage) and a key that makes entering idempotent."""

    customer_id: int
    kind: str  # milestone_achieved | milestone_missed | event | stage_changed
    subject: str
    entry_key: str
    at: dt.datetime
    properties: Mapping[str, object] = dataclasses.field(default_factory=dict)  # events
    # When what enrolls was recorded, if it is being handed on late (the outcome sweep): a
    # journey that went live after that does not take it.
    recorded_at: dt.datetime | None = None


def entries_from_outcomes(
    outcomes: Iterable[OutcomeRecord], recorded_at: Mapping[int, dt.datetime] | None = None
) -> list[Entry]:
    """Customer-unit outcomes as entries (an account-unit outcome enrolls nobody yet);
    ``recorded_at`` by outcome id for outcomes handed on late."""
    return [
        Entry(
            o.subject_id, f"milestone_{o.kind}", o.key, f"outcome:{o.id}", o.occurred_at,
            recorded_at=(recorded_at or {}).get(o.id),
        )
        for o in outcomes
        if o.unit == "customer"
    ]  # fmt: skip


@cached(Journey, JourneyVersion)
def live_versions() -> list[tuple[Journey, JourneyVersion]]:
    """Live journeys with their active versions, cached per process (config/cache.py; an
    entry a stale process passes over is handed on again by the sweeps)."""
    journeys = Journey.objects.filter(
        status=JourneyStatus.LIVE, active_version__isnull=False
    ).select_related("active_version")
    return [(j, j.active_version) for j in journeys if j.active_version is not None]


def entry_matches(version: JourneyVersion, entry: Entry) -> bool:
    trigger = version.trigger
    if trigger.get("kind") != entry.kind:
        return False
    if entry.recorded_at is not None and entry.recorded_at < version.created_at:
        return False
    if entry.kind.startswith("milestone_"):
        return bool(trigger.get("milestone") == entry.subject)
    if entry.kind == "event":
        if trigger.get("event") != entry.subject:
            return False
        return not trigger.get("filters") or event_matches(event_filters(trigger), entry.properties)
    return bool(trigger.get("to") == entry.subject)


def entry_eligible(version: JourneyVersion, customer: Customer) -> bool:
    rules = version.entry_rules or {}
    for name, value in (
        ("plans", customer.plan),
        ("regions", customer.region),
        ("stages", customer.lifecycle_stage),
    ):
        wanted = {v.upper() for v in rules.get(name, [])}
        if wanted and value.upper() not in wanted:
            return False
    return True


def enroll(entries: Sequence[Entry], *, now: dt.datetime | None = None) -> list[Enrollment]:
    """Enroll the customers of ``entries`` in every live journey they trigger; returns the
    enrollments made (none for an entry seen before)."""
    now = now or timezone.now()
    live = live_versions.get()
    pairs = [(j, v, e) for e in entries for j, v in live if entry_matches(v, e)]
    if not pairs:
        return []
    made: list[Enrollment] = []
    with transaction.atomic():
        commit_async()  # derived work: see config/durability.py
        ids = sorted({e.customer_id for _, _, e in pairs})
        customers_advisory_lock(_LOCK_SPACE, ids)
        customers = {c.pk: c for c in Customer.objects.filter(pk__any=ids)}
        latest = entries_latest(ids, {j.pk for j, _, _ in pairs})
        seen = set(
            Enrollment.objects.filter(
                customer_id__any=ids, entry_key__any=[e.entry_key for _, _, e in pairs]
            ).values_list("version_id", "customer_id", "entry_key")
        )
        for journey, version, entry in pairs:
            customer = customers.get(entry.customer_id)
            if customer is None or (version.pk, customer.pk, entry.entry_key) in seen:
                continue
            if not entry_eligible(version, customer) or not reentry_allowed(
                version, latest.get((journey.pk, customer.pk)), now
            ):
                continue
            enrollment = _enrollment(journey, version, customer, entry, now)
            made.append(enrollment)
            latest[(journey.pk, customer.pk)] = now
            seen.add((version.pk, customer.pk, entry.entry_key))
        Enrollment.objects.bulk_create(made)
        if made and wants(WebhookEvent.JOURNEY_ENTERED):
            webhooks_write(enrollment_payloads(made, WebhookEvent.JOURNEY_ENTERED))
    return made


def _enrollment(
    journey: Journey, version: JourneyVersion, customer: Customer, entry: Entry, now: dt.datetime
) -> Enrollment:
    held = is_holdout(journey.key, customer.pk, float(version.holdout_percent))
    return Enrollment(
        version=version,
        journey=journey,
        customer=customer,
        entry_key=entry.entry_key,
        state=EnrollmentState.HOLDOUT if held else EnrollmentState.ACTIVE,
        current_step="" if held else version_graph(version).first.key,
        next_run_at=None if held else now,
        step_started_at=None if held else now,
        entered_at=now,
        finished_at=now if held else None,
        updated_at=now,
    )


def entries_latest(
    customer_ids: list[int], journey_ids: set[int]
) -> dict[tuple[int, int], dt.datetime]:
    latest: dict[tuple[int, int], dt.datetime] = {}
    rows = Enrollment.objects.filter(
        customer_id__any=customer_ids, journey_id__any=sorted(journey_ids)
    ).values_list("journey_id", "customer_id", "entered_at")
    for journey_id, customer_id, at in rows:
        key = (journey_id, customer_id)
        if key not in latest or at > latest[key]:
            latest[key] = at
    return latest


def reentry_allowed(version: JourneyVersion, last: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a customer who entered this journey at ``last`` (any version) may enter again."""
    if last is None:
        return True
    if version.reentry != "after_days" or not version.reentry_days:
        return False
    return now - last >= dt.timedelta(days=version.reentry_days)
