"""The delivery policy: whether, when and where a message may go. Pure: plain data in, a
``Decision`` per request out, no database and no clock of its own (DESIGN.md §2.3).

For each request, each channel it lists is tried in priority order:

1. consent for the channel and topic (transactional topics need no marketing consent);
2. address suppression; 3. reachability (an address or an active token);
4. the first channel that passes 1-3 and the caps is used (fallback to the next one);
5. frequency caps (marketing only): the customer's own pause and "at most N per period",
   then every active cap rule whose scope covers the message, over a rolling window;
6. priority: the requests of one batch are decided highest priority first, so when they
   compete for a customer's last slot the higher one wins and the other is recorded
   ``lower_priority`` (or deferred until the slot frees, by setting);
7. quiet hours on the chosen channel (marketing only) defer the message to the window's end.

The caller reads the snapshot and stores the decisions in one transaction holding a lock
per customer (``messaging.services``), which is what makes a reservation atomic.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from consent.rules import is_subscribed
from messaging import reasons

QUEUED: Final = "queued"
DEFERRED: Final = "deferred"
SUPPRESSED: Final = "suppressed"

OPTED_IN: Final = "opted_in"
OPTED_OUT: Final = "opted_out"
UNKNOWN: Final = "unknown"
PENDING: Final = "pending"

OPT_IN: Final = "opt_in"
OPT_OUT: Final = "opt_out"

EMAIL: Final = "email"
IN_APP: Final = "in_app"


@dataclasses.dataclass(frozen=True, slots=True)
class Address:
    kind: str  # "email" | "phone" | "device_token" | "customer" (in-app)
    value: str
    hash: str  # of the normalised value, as suppressions store it
    platform: str = ""  # push tokens: "ios" | "android" | "web"


@dataclasses.dataclass(frozen=True, slots=True)
class Held:
    """A message holding a cap slot: marketing, queued or sent, at ``at``."""

    at: dt.datetime
    channel: str
    topic: str
    journey: str = ""
    priority: int = 0
    is_this_batch: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Audience:
    """What the policy knows of one customer."""

    customer_id: int
    is_active: bool = True
    time_zone: str = ""
    consent_mode: str = OPT_OUT  # how "unknown" reads in the customer's region
    requires_double_opt_in: bool = False
    subscriptions: Mapping[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    addresses: Mapping[str, tuple[Address, ...]] = dataclasses.field(default_factory=dict)
    suppressed: frozenset[tuple[str, str]] = frozenset()  # (address kind, hash)
    held: tuple[Held, ...] = ()
    max_marketing: int | None = None
    period: dt.timedelta = dt.timedelta(days=7)
    paused_until: dt.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CapRule:
    scope: str  # "marketing" | "channel" | "journey" | "topic"
    limit: int
    window: dt.timedelta
    channel: str = ""
    topic: str = ""
    journey: str = ""
    name: str = ""

    def covers(self, channel: str, topic: str, journey: str) -> bool:
        if self.scope == "channel":
            return channel == self.channel
        if self.scope == "topic":
            return topic == self.topic
        if self.scope == "journey":
            return bool(journey) and journey == self.journey
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class QuietWindow:
    starts: dt.time
    ends: dt.time


@dataclasses.dataclass(frozen=True, slots=True)
class Rules:
    caps: tuple[CapRule, ...] = ()
    quiet_hours: Mapping[str, QuietWindow] = dataclasses.field(default_factory=dict)
    active_topics: frozenset[str] | None = None  # None: every topic is active
    lower_priority_defers: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    key: str
    customer_id: int
    channels: tuple[str, ...]
    topic: str
    is_transactional: bool = False
    priority: int = 0
    journey: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    channel: str
    reason: str  # "" when the channel passed
    detail: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    key: str
    status: str  # queued | deferred | suppressed
    channel: str = ""
    addresses: tuple[Address, ...] = ()
    reason: str = ""
    send_after: dt.datetime | None = None
    checks: tuple[Check, ...] = ()

    @property
    def holds_slot(self) -> bool:
        return self.status == QUEUED


def decide(
    requests: Sequence[Request],
    audiences: Mapping[int, Audience],
    rules: Rules,
    now: dt.datetime,
) -> list[Decision]:
    """A decision for each request, in the order given. Requests are weighed highest
    priority first (stable for equal priorities); a queued marketing decision holds a slot
    that the requests weighed after it see."""
    held: dict[int, list[Held]] = {pk: list(a.held) for pk, a in audiences.items()}
    order = sorted(range(len(requests)), key=lambda i: -requests[i].priority)
    decisions: dict[int, Decision] = {}
    for index in order:
        request = requests[index]
        audience = audiences.get(request.customer_id)
        if audience is None:
            decisions[index] = Decision(request.key, SUPPRESSED, reason=reasons.UNREACHABLE)
            continue
        decision = _decide_one(request, audience, held[audience.customer_id], rules, now)
        if decision.holds_slot and not request.is_transactional:
            held[audience.customer_id].append(
                Held(
                    now,
                    decision.channel,
                    request.topic,
                    request.journey,
                    request.priority,
                    is_this_batch=True,
                )
            )
        decisions[index] = decision
    return [decisions[i] for i in range(len(requests))]


def _decide_one(
    request: Request,
    audience: Audience,
    held: Sequence[Held],
    rules: Rules,
    now: dt.datetime,
) -> Decision:
    if not audience.is_active:
        return Decision(request.key, SUPPRESSED, reason=reasons.CUSTOMER_INACTIVE)
    if rules.active_topics is not None and request.topic not in rules.active_topics:
        return Decision(request.key, SUPPRESSED, reason=reasons.TOPIC_INACTIVE)
    checks: list[Check] = []
    for channel in request.channels:
        reason, addresses, detail = _channel_check(request, audience, held, rules, channel, now)
        checks.append(Check(channel, reason, detail))
        if reason:
            continue
        window = None if request.is_transactional else rules.quiet_hours.get(channel)
        quiet_end = quiet_until(window, audience.time_zone, now) if window else None
        if quiet_end is not None:
            return Decision(
                request.key,
                DEFERRED,
                channel,
                addresses,
                reasons.QUIET_HOURS_DEFERRED,
                quiet_end,
                tuple(checks),
            )
        return Decision(request.key, QUEUED, channel, addresses, checks=tuple(checks))
    first = next((c for c in checks if c.reason), Check("", reasons.UNREACHABLE))
    if first.reason == reasons.LOWER_PRIORITY and rules.lower_priority_defers:
        frees = _slot_frees(request, audience, held, rules, first.channel, now)
        return Decision(
            request.key, DEFERRED, first.channel, (), first.reason, frees, tuple(checks)
        )
    return Decision(request.key, SUPPRESSED, reason=first.reason, checks=tuple(checks))


def _channel_check(
    request: Request,
    audience: Audience,
    held: Sequence[Held],
    rules: Rules,
    channel: str,
    now: dt.datetime,
) -> tuple[str, tuple[Address, ...], str]:
    """The first reason ``channel`` cannot carry the request ("" if it can), the addresses
    to send to, and a detail for the explanation."""
    if not request.is_transactional and not consents(audience, channel, request.topic):
        status = audience.subscriptions.get((channel, request.topic), UNKNOWN)
        return reasons.NO_CONSENT, (), f"{status} ({audience.consent_mode} region)"
    candidates = audience.addresses.get(channel, ())
    allowed = tuple(a for a in candidates if (a.kind, a.hash) not in audience.suppressed)
    if candidates and not allowed:
        return reasons.SUPPRESSED_ADDRESS, (), ""
    if not allowed:
        return reasons.UNREACHABLE, (), ""
    if request.is_transactional:
        return "", allowed, ""
    reason, detail = _cap_check(request, audience, held, rules, channel, now)
    return reason, (() if reason else allowed), detail


def consents(audience: Audience, channel: str, topic: str) -> bool:
    """Marketing consent for ``topic`` on ``channel`` (the rule is ``consent.rules``, which
    the preference centre shows too)."""
    return is_subscribed(
        audience.subscriptions.get((channel, topic), UNKNOWN),
        channel,
        mode=audience.consent_mode,
        requires_double_opt_in=audience.requires_double_opt_in,
    )


def _cap_check(
    request: Request,
    audience: Audience,
    held: Sequence[Held],
    rules: Rules,
    channel: str,
    now: dt.datetime,
) -> tuple[str, str]:
    if audience.paused_until is not None and now < audience.paused_until:
        return reasons.CUSTOMER_PAUSED, f"until {audience.paused_until.isoformat()}"
    if audience.max_marketing is not None:
        recent = [h for h in held if h.at > now - audience.period]
        if len(recent) >= audience.max_marketing:
            return reasons.CUSTOMER_FREQUENCY, f"{len(recent)} of {audience.max_marketing}"
    for cap in rules.caps:
        if not cap.covers(channel, request.topic, request.journey):
            continue
        inside = [
            h for h in held if h.at > now - cap.window and cap.covers(h.channel, h.topic, h.journey)
        ]
        if len(inside) >= cap.limit:
            competed = any(h.is_this_batch and h.priority > request.priority for h in inside)
            reason = reasons.LOWER_PRIORITY if competed else reasons.FREQUENCY_CAP
            return reason, f"{cap.name or cap.scope}: {len(inside)} of {cap.limit}"
    return "", ""


def _slot_frees(
    request: Request,
    audience: Audience,
    held: Sequence[Held],
    rules: Rules,
    channel: str,
    now: dt.datetime,
) -> dt.datetime:
    """When the fullest cap covering the request next frees a slot (its oldest holder
    leaves the window); the deferred message is weighed again then."""
    latest = now
    for cap in rules.caps:
        if not cap.covers(channel, request.topic, request.journey):
            continue
        inside = sorted(
            h.at
            for h in held
            if h.at > now - cap.window and cap.covers(h.channel, h.topic, h.journey)
        )
        if len(inside) >= cap.limit:
            latest = max(latest, inside[len(inside) - cap.limit] + cap.window)
    return latest


def customer_zone(name: str) -> dt.tzinfo:
    if not name:
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def quiet_until(window: QuietWindow, time_zone: str, now: dt.datetime) -> dt.datetime | None:
    """The end of the quiet window ``now`` falls in, in the customer's local time, or None
    when ``now`` is outside it. A window whose start is after its end spans midnight."""
    zone = customer_zone(time_zone)
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if window.starts == window.ends:
        return None
    if window.starts < window.ends:
        if not window.starts <= clock < window.ends:
            return None
        day = local.date()
    elif clock >= window.starts:
        day = local.date() + dt.timedelta(days=1)
    elif clock < window.ends:
        day = local.date()
    else:
        return None
    # Local wall time to UTC: a wall time skipped by a DST change lands just after the gap.
    end = dt.datetime.combine(day, window.ends, tzinfo=zone)
    return end.astimezone(dt.UTC)
