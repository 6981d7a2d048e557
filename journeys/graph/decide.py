"""Pure decisions for the journey runner: holdout and split assignment, wait deadlines,
branch choice and until-wait matching. No clock, no database: callers pass the facts.

Assignment buckets come from sha256 of a JSON list naming what is being decided (``holdout``
or ``split`` plus the step key), the journey key and the customer id: stable across processes
and across versions of the journey, and independent between the holdout and every split.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any

from journeys.graph.steps import (
    NOT_STARTED,
    AllOf,
    AnyOf,
    BranchStep,
    Condition,
    DurationWait,
    EngagementIs,
    LocalTimeWait,
    MilestoneIs,
    Not,
    StageIs,
    TraitIs,
    UntilEvent,
    UntilWait,
    Variant,
    WaitStep,
)
from milestones.conditions.values import matches

_BUCKETS = 2**64


def _bucket(*parts: object) -> int:
    """A uniform integer in [0, 2**64) for these parts, the same in every process."""
    digest = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def is_holdout(journey_key: str, customer_id: int, percent: float) -> bool:
    """Whether the customer is in the journey's control group of ``percent`` % (0 to 100)."""
    if not 0 <= percent <= 100:
        raise ValueError(f"holdout percent must be between 0 and 100, not {percent!r}")
    return _bucket("holdout", journey_key, customer_id) / _BUCKETS < percent / 100


def split_variant(
    journey_key: str, step_key: str, customer_id: int, variants: Sequence[Variant]
) -> Variant:
    """The variant the customer gets at this split, with probability weight / total weight."""
    total = sum(variant.weight for variant in variants)
    if not variants or any(variant.weight < 1 for variant in variants):
        raise ValueError("a split needs at least one variant and positive weights")
    # Scale the bucket to [0, total) exactly, with integers.
    point = _bucket("split", journey_key, step_key, customer_id) * total // _BUCKETS
    for variant in variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    raise AssertionError("unreachable: point < total")  # pragma: no cover


# --- Waits ----------------------------------------------------------------------------------


def wait_until(step: WaitStep, started_at: dt.datetime, time_zone: str) -> dt.datetime | None:
    """When a duration or local-time wait that started at ``started_at`` ends (aware UTC);
    ``None`` for an until-wait, which ends on an event (its deadline is ``timeout_at``).

    A local-time wait ends at the next occurrence of the wall time strictly after
    ``started_at`` in ``time_zone`` (UTC if empty or unknown). A wall time skipped by a DST
    gap ends at the first instant after the gap; a repeated one at its first occurrence.
    """
    _require_aware(started_at)
    if isinstance(step, DurationWait):
        return started_at.astimezone(dt.UTC) + step.duration
    if isinstance(step, UntilWait):
        return None
    return _next_local_time(step, started_at, _zone(time_zone))


def timeout_at(step: UntilWait, started_at: dt.datetime) -> dt.datetime:
    """When an until-wait gives up and takes ``timeout_next`` (aware UTC)."""
    _require_aware(started_at)
    return started_at.astimezone(dt.UTC) + step.timeout


def _require_aware(moment: dt.datetime) -> None:
    # (Adding a timedelta to an aware datetime in a DST zone adds wall time, not elapsed
    # time, so callers convert to UTC before adding.)
    if moment.utcoffset() is None:
        raise ValueError("started_at must be an aware datetime")


def _zone(name: str) -> dt.tzinfo:
    if not name:
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def _next_local_time(step: LocalTimeWait, started_at: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    today = started_at.astimezone(zone).date()
    for offset in range(3):
        wall = dt.datetime.combine(today + dt.timedelta(days=offset), step.at)
        moment = _resolve(wall, zone)
        if moment > started_at:
            return moment
    raise AssertionError("unreachable: a wall time recurs within two days")  # pragma: no cover


def _resolve(wall: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """The UTC instant of a naive wall time: its first occurrence if repeated (``fold=0``),
    the end of the gap if skipped."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # Skipped: fold=0 reads the wall time with the offset before the gap (landing after
    # it), fold=1 with the offset after (landing before it). The wall clock only moves
    # forward between the two, so search for the first second that reads ``wall`` or later.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(dt.UTC)
    high = first
    while high - low > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high


# --- Branches and until-waits ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Facts:
    """What a branch may look at. ``engagement`` maps a send step key to the statuses its
    message reached, taken literally (the caller adds "opened" when it saw a click)."""

    traits: Mapping[str, Any]
    stage: str
    milestone_states: Mapping[str, str]
    engagement: Mapping[str, frozenset[str]]


def branch_choose(step: BranchStep, facts: Facts) -> str:
    """The next step key: that of the first branch whose condition holds, else ``else``."""
    for branch in step.branches:
        if condition_holds(branch.when, facts):
            return branch.next
    return step.otherwise


def condition_holds(condition: Condition, facts: Facts) -> bool:
    match condition:
        case TraitIs(test):
            return matches(test, facts.traits)
        case MilestoneIs(milestone, state):
            return facts.milestone_states.get(milestone, NOT_STARTED) == state
        case EngagementIs(engagement, send_key):
            return engagement in facts.engagement.get(send_key, frozenset())
        case StageIs(stage):
            return facts.stage == stage
        case AllOf(children):
            return all(condition_holds(child, facts) for child in children)
        case AnyOf(children):
            return any(condition_holds(child, facts) for child in children)
        case Not(child):
            return not condition_holds(child, facts)


def until_matches(
    step: UntilWait,
    *,
    event_name: str,
    properties: Mapping[str, Any],
    milestone_states: Mapping[str, str],
) -> bool:
    """Whether an until-wait is over: its event with matching properties arrived (pass the
    event), or its milestone is in the awaited state (pass the current states)."""
    until = step.until
    if isinstance(until, UntilEvent):
        return event_name == until.event and all(matches(f, properties) for f in until.filters)
    return milestone_states.get(until.milestone, NOT_STARTED) == until.state
