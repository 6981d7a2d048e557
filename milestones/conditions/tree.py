"""The condition tree: the frozen dataclasses a validated definition is made of.

``parse.py`` builds these from JSON; ``evaluate.py`` reads them. Nothing here touches time or
data, so a tree can be built by hand in tests or compared for equality between versions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Final, Literal, TypeAlias

MAX_DEPTH: Final = 8
MAX_NODES: Final = 50
MAX_N: Final = 10_000
MAX_FILTERS: Final = 20
MAX_IN_VALUES: Final = 1_000
MAX_NAME_LENGTH: Final = 255

#: ``distinct_count.of`` value meaning "distinct customers" rather than a property path.
CUSTOMER: Final = "customer"

FilterOp: TypeAlias = Literal["eq", "neq", "gt", "gte", "lt", "lte", "in", "contains", "exists"]
FILTER_OPS: Final[tuple[FilterOp, ...]] = (
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "contains",
    "exists",
)
Scalar: TypeAlias = str | int | float | bool
FilterValue: TypeAlias = Scalar | tuple[Scalar, ...]
PeriodUnit: TypeAlias = Literal["day", "week"]


class ConditionError(ValueError):
    """An invalid condition tree; ``path`` locates the bad node, e.g. ``$.all[1].at_least``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclasses.dataclass(frozen=True, slots=True)
class Filter:
    """A test on an event property (or, inside ``Attribute``, on a trait)."""

    property: str
    op: FilterOp
    value: FilterValue


@dataclasses.dataclass(frozen=True, slots=True)
class EventCount:
    event: str
    at_least: int
    where: tuple[Filter, ...] = ()
    within: dt.timedelta | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DistinctDays:
    event: str
    days: int
    where: tuple[Filter, ...] = ()
    within: dt.timedelta | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Streak:
    event: str
    periods: int
    unit: PeriodUnit
    where: tuple[Filter, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class PropertySum:
    event: str
    property: str
    at_least: int | float
    where: tuple[Filter, ...] = ()
    within: dt.timedelta | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DistinctCount:
    event: str
    of: str
    at_least: int
    where: tuple[Filter, ...] = ()
    within: dt.timedelta | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Attribute:
    test: Filter


@dataclasses.dataclass(frozen=True, slots=True)
class MilestoneAchieved:
    key: str


@dataclasses.dataclass(frozen=True, slots=True)
class AllOf:
    conditions: tuple[Condition, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class AnyOf:
    conditions: tuple[Condition, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    event: str
    where: tuple[Filter, ...] = ()
    within: dt.timedelta | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StepSequence:
    steps: tuple[Step, ...]


EventCondition: TypeAlias = EventCount | DistinctDays | Streak | PropertySum | DistinctCount
Condition: TypeAlias = EventCondition | Attribute | MilestoneAchieved | AllOf | AnyOf | StepSequence


def event_names(condition: Condition) -> frozenset[str]:
    """Every event name the condition reads, to index definitions by event name."""
    match condition:
        case AllOf(children) | AnyOf(children):
            return frozenset().union(*(event_names(child) for child in children))
        case StepSequence(steps):
            return frozenset(step.event for step in steps)
        case Attribute() | MilestoneAchieved():
            return frozenset()
        case _:
            return frozenset({condition.event})


def milestone_keys(condition: Condition) -> frozenset[str]:
    """Every other milestone the condition waits for."""
    match condition:
        case AllOf(children) | AnyOf(children):
            return frozenset().union(*(milestone_keys(child) for child in children))
        case MilestoneAchieved(key):
            return frozenset({key})
        case _:
            return frozenset()
