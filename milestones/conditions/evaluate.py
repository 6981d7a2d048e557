"""Evaluate a condition against one subject's facts, from scratch. Pure and deterministic.

The rules every caller can rely on:

- **Range.** Only events with ``start <= occurred_at <= end`` count (both ends inclusive).
  ``start`` is the anchor, ``end`` the deadline or "now".
- **Earliest moment.** ``achieved_at`` is the earliest moment the condition became true, so
  evaluating again with ``end = achieved_at`` gives the same answer and any earlier ``end``
  gives none. For event conditions it is the ``occurred_at`` of the event that completed the
  count, sum, window, streak or sequence. Once reached, a milestone stays reached: a later
  refund (a negative ``property_sum`` amount) does not undo it.
- **Windows** (``within``) are closed: an event exactly ``within`` before the completing event
  is inside ("3 in 7 days" accepts a first event on Monday 09:00 and a third on the next Monday
  09:00). They are measured in absolute time and end at a matching event.
- **Local time.** ``distinct_days`` and ``streak`` use local calendar dates in ``facts.zone``
  (a DST day of 23 or 25 hours is still one day); weeks are ISO weeks starting on Monday.
- **Sequences.** Each step needs an event strictly later than the previous step's event: two
  events at the same instant have no order, so they cannot be consecutive steps. A step's
  ``within`` is measured from the previous step's event, inclusive.
- **Attributes** have no history: a trait that matches now is taken to have matched at
  ``start``, so ``achieved_at == start``.
- **Other milestones** count if achieved by ``end``; one achieved before ``start`` counts from
  ``start``.
- **``all``** is achieved at the latest of its children's moments, **``any``** at the earliest.
- **Order independence.** The result depends only on the multiset of events, never on their
  order (simultaneous events included; sums are exact). Duplicates are *not* removed: the
  caller passes each stored event once (events are unique rows).
- **Progress** is complete (``done == total``) exactly when the condition is achieved. Counts
  show the best count seen in any window, capped at N; ``all`` the number of satisfied
  children; ``any`` its most advanced child; ``sequence`` the steps reached in order.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import json
import math
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from fractions import Fraction
from typing import assert_never
from zoneinfo import ZoneInfo

from milestones.conditions.tree import (
    CUSTOMER,
    AllOf,
    AnyOf,
    Attribute,
    Condition,
    DistinctCount,
    DistinctDays,
    EventCount,
    Filter,
    MilestoneAchieved,
    PropertySum,
    StepSequence,
    Streak,
)
from milestones.conditions.values import distinct_key, is_number, lookup, matches
from milestones.conditions.windows import (
    CountTally,
    DistinctTally,
    Reached,
    SumTally,
    rolling,
    run_of_periods,
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EventFact:
    name: str
    occurred_at: dt.datetime
    customer_id: int
    properties: Mapping[str, object] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_aware(self.occurred_at, "occurred_at")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """Everything known about one subject (a customer, or an account and its customers)."""

    events: Sequence[EventFact]
    zone: ZoneInfo
    start: dt.datetime
    end: dt.datetime
    traits: Mapping[str, object] = dataclasses.field(default_factory=dict)
    milestones: Mapping[str, dt.datetime] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_aware(self.start, "start")
        _require_aware(self.end, "end")
        if self.start > self.end:
            raise ValueError("start must not be after end")


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """For display: "2 of 3 tasks". ``done == total`` exactly when achieved."""

    done: int
    total: int
    label: str


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    achieved_at: dt.datetime | None
    progress: Progress
    children: tuple[Result, ...] = ()  # per child of ``all`` / ``any``, in definition order

    @property
    def is_achieved(self) -> bool:
        return self.achieved_at is not None


def evaluate(condition: Condition, facts: Facts) -> Result:
    """The condition's state over ``facts``; see the module docstring for the rules."""
    return _Context(facts).evaluate(condition)


def _require_aware(moment: dt.datetime, name: str) -> None:
    if moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")


_Match = tuple[dt.datetime, EventFact]


class _Context:
    """The facts, with events in range grouped by name and their moments in UTC."""

    def __init__(self, facts: Facts) -> None:
        self.facts = facts
        self.start = facts.start.astimezone(dt.UTC)
        self.end = facts.end.astimezone(dt.UTC)
        self.by_name: defaultdict[str, list[_Match]] = defaultdict(list)
        for event in facts.events:
            moment = event.occurred_at.astimezone(dt.UTC)
            if self.start <= moment <= self.end:
                self.by_name[event.name].append((moment, event))

    def matching(self, event: str, where: tuple[Filter, ...]) -> list[_Match]:
        return [
            (moment, fact)
            for moment, fact in self.by_name.get(event, ())
            if all(matches(test, fact.properties) for test in where)
        ]

    def local_date(self, moment: dt.datetime) -> dt.date:
        return moment.astimezone(self.facts.zone).date()

    def evaluate(self, condition: Condition) -> Result:
        match condition:
            case EventCount():
                return _event_count(condition, self)
            case DistinctDays():
                return _distinct_days(condition, self)
            case Streak():
                return _streak(condition, self)
            case PropertySum():
                return _property_sum(condition, self)
            case DistinctCount():
                return _distinct_count(condition, self)
            case Attribute():
                return _attribute(condition, self)
            case MilestoneAchieved():
                return _milestone(condition, self)
            case AllOf():
                return _all(condition, self)
            case AnyOf():
                return _any(condition, self)
            case StepSequence():
                return _sequence(condition, self)
            case _:
                assert_never(condition)


# --- Event conditions ---------------------------------------------------------------------


def _event_count(condition: EventCount, context: _Context) -> Result:
    points = [(moment, None) for moment, _ in context.matching(condition.event, condition.where)]
    if condition.within is None:
        # Over everything so far the count first reaches N at the N-th moment (ties count).
        moments = sorted(moment for moment, _ in points)
        if len(moments) >= condition.at_least:
            reached = Reached(moments[condition.at_least - 1], condition.at_least)
        else:
            reached = Reached(None, len(moments))
    else:
        reached = rolling(points, CountTally(), condition.at_least, condition.within)
    return _counted(reached, condition.at_least, f"{condition.event}{_within(condition.within)}")


def _distinct_days(condition: DistinctDays, context: _Context) -> Result:
    points = [
        (moment, context.local_date(moment))
        for moment, _ in context.matching(condition.event, condition.where)
    ]
    reached = rolling(points, DistinctTally(), condition.days, condition.within)
    noun = f"days with {condition.event}{_within(condition.within)}"
    return _counted(reached, condition.days, noun)


def _streak(condition: Streak, context: _Context) -> Result:
    firsts: dict[dt.date, dt.datetime] = {}
    for moment, _ in context.matching(condition.event, condition.where):
        period = context.local_date(moment)
        if condition.unit == "week":
            period -= dt.timedelta(days=period.weekday())
        firsts[period] = min(moment, firsts.get(period, moment))
    step = dt.timedelta(days=1 if condition.unit == "day" else 7)
    achieved_at, longest = run_of_periods(firsts, step, condition.periods)
    done = min(longest, condition.periods)
    label = f"{done} of {condition.periods} {condition.unit}s in a row with {condition.event}"
    return Result(achieved_at, Progress(done, condition.periods, label))


def _property_sum(condition: PropertySum, context: _Context) -> Result:
    points = []
    for moment, fact in context.matching(condition.event, condition.where):
        value = lookup(fact.properties, condition.property)
        if is_number(value):
            points.append((moment, Fraction(value)))
    target = Fraction(condition.at_least)
    reached = rolling(points, SumTally(), target, condition.within)
    total = math.ceil(target)
    done = total if reached.at else max(0, min(math.floor(reached.best), total - 1))
    label = (
        f"{_number(Fraction(min(reached.best, target)))} of {_number(target)} {condition.property}"
        f" from {condition.event}{_within(condition.within)}"
    )
    return Result(reached.at, Progress(done, total, label))


def _distinct_count(condition: DistinctCount, context: _Context) -> Result:
    points: list[tuple[dt.datetime, Hashable]] = []
    for moment, fact in context.matching(condition.event, condition.where):
        key = _distinct_of(condition.of, fact)
        if key is not None:
            points.append((moment, key))
    reached = rolling(points, DistinctTally(), condition.at_least, condition.within)
    noun = "customers" if condition.of == CUSTOMER else f"values of {condition.of}"
    label = f"{noun} with {condition.event}{_within(condition.within)}"
    return _counted(reached, condition.at_least, label)


def _distinct_of(of: str, fact: EventFact) -> Hashable | None:
    if of == CUSTOMER:
        return fact.customer_id
    return distinct_key(lookup(fact.properties, of))


def _counted(reached: Reached, total: int, noun: str) -> Result:
    done = min(int(reached.best), total)
    return Result(reached.at, Progress(done, total, f"{done} of {total} {noun}"))


def _sequence(condition: StepSequence, context: _Context) -> Result:
    """Forward pass: for each step, every moment at which the steps so far can be complete."""
    reached: list[dt.datetime] = []
    done = 0
    for step in condition.steps:
        moments = sorted(moment for moment, _ in context.matching(step.event, step.where))
        if done:
            moments = [m for m in moments if _follows(m, reached, step.within)]
        if not moments:
            break
        reached, done = moments, done + 1
    total = len(condition.steps)
    achieved_at = reached[0] if done == total else None
    return Result(achieved_at, Progress(done, total, f"{done} of {total} steps"))


def _follows(moment: dt.datetime, previous: list[dt.datetime], within: dt.timedelta | None) -> bool:
    """Whether a previous step ended strictly before ``moment`` and, if bounded, recently
    enough. ``previous`` is sorted; the latest end before ``moment`` is the best candidate."""
    earlier = bisect.bisect_left(previous, moment)
    return earlier > 0 and (within is None or moment - previous[earlier - 1] <= within)


# --- Other conditions ---------------------------------------------------------------------


def _attribute(condition: Attribute, context: _Context) -> Result:
    test = condition.test
    achieved = matches(test, context.facts.traits)
    value = "" if test.op == "exists" and test.value is True else f" {json.dumps(test.value)}"
    label = f"{test.property} {test.op}{value}"
    return Result(context.start if achieved else None, Progress(int(achieved), 1, label))


def _milestone(condition: MilestoneAchieved, context: _Context) -> Result:
    moment = context.facts.milestones.get(condition.key)
    achieved_at = None
    if moment is not None and moment <= context.end:
        achieved_at = max(moment.astimezone(dt.UTC), context.start)
    label = f"milestone {condition.key}"
    return Result(achieved_at, Progress(int(achieved_at is not None), 1, label))


def _all(condition: AllOf, context: _Context) -> Result:
    children = tuple(context.evaluate(child) for child in condition.conditions)
    moments = [child.achieved_at for child in children if child.achieved_at is not None]
    total = len(children)
    achieved_at = max(moments) if len(moments) == total else None
    progress = Progress(len(moments), total, f"{len(moments)} of {total} conditions")
    return Result(achieved_at, progress, children)


def _any(condition: AnyOf, context: _Context) -> Result:
    children = tuple(context.evaluate(child) for child in condition.conditions)
    moments = [child.achieved_at for child in children if child.achieved_at is not None]
    best = max(children, key=lambda child: Fraction(child.progress.done, child.progress.total))
    return Result(min(moments, default=None), best.progress, children)


# --- Labels -------------------------------------------------------------------------------


def _within(within: dt.timedelta | None) -> str:
    return "" if within is None else f" within {_duration(within)}"


def _duration(within: dt.timedelta) -> str:
    hours, minutes = divmod(within.seconds // 60, 60)
    parts = [(within.days, "day"), (hours, "hour"), (minutes, "minute")]
    return " ".join(_plural(amount, unit) for amount, unit in parts if amount)


def _plural(amount: int, unit: str) -> str:
    return f"{amount} {unit}{'' if amount == 1 else 's'}"


def _number(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.2f}".rstrip("0").rstrip(".")
