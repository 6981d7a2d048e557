"""The step graph's frozen dataclasses: what ``graph_parse`` builds and the runner reads.

Nothing here validates or decides; a ``Graph`` built by ``graph_parse`` is known to be well
formed (every reference resolves, every path from the first step ends at an exit step).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any, ClassVar, Final, Literal, TypeAlias

from milestones.conditions import Filter

MilestoneState: TypeAlias = Literal[
    "achieved", "missed", "in_progress", "ineligible", "not_started"
]
MILESTONE_STATES: Final[tuple[MilestoneState, ...]] = (
    "achieved",
    "missed",
    "in_progress",
    "ineligible",
    "not_started",
)
#: The state of a milestone the customer has no progress for.
NOT_STARTED: Final = "not_started"
Engagement: TypeAlias = Literal["sent", "delivered", "opened", "clicked"]
ENGAGEMENTS: Final[tuple[Engagement, ...]] = ("sent", "delivered", "opened", "clicked")
ExitOutcome: TypeAlias = Literal["completed", "exited"]
EXIT_OUTCOMES: Final[tuple[ExitOutcome, ...]] = ("completed", "exited")


class GraphError(ValueError):
    """An invalid step graph; ``path`` locates the bad item, e.g. ``$[2].next``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# --- Branch conditions ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TraitIs:
    """A customer trait or field compared as a milestone property filter (``test.property``
    is the trait's dotted path)."""

    test: Filter


@dataclasses.dataclass(frozen=True, slots=True)
class MilestoneIs:
    milestone: str
    state: MilestoneState


@dataclasses.dataclass(frozen=True, slots=True)
class EngagementIs:
    engagement: Engagement
    step: str


@dataclasses.dataclass(frozen=True, slots=True)
class StageIs:
    stage: str


@dataclasses.dataclass(frozen=True, slots=True)
class AllOf:
    conditions: tuple[Condition, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class AnyOf:
    conditions: tuple[Condition, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Not:
    condition: Condition


Condition: TypeAlias = TraitIs | MilestoneIs | EngagementIs | StageIs | AllOf | AnyOf | Not


def condition_milestones(condition: Condition) -> frozenset[str]:
    match condition:
        case MilestoneIs(milestone):
            return frozenset({milestone})
        case AllOf(children) | AnyOf(children):
            return frozenset().union(*(condition_milestones(child) for child in children))
        case Not(child):
            return condition_milestones(child)
        case _:
            return frozenset()


# --- Steps ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SendStep:
    type: ClassVar[str] = "send"
    key: str
    next: str
    templates: tuple[str, ...]  # channel fallback order
    priority: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DurationWait:
    type: ClassVar[str] = "wait"
    key: str
    next: str
    duration: dt.timedelta


@dataclasses.dataclass(frozen=True, slots=True)
class LocalTimeWait:
    """Until the next occurrence of ``at`` on the customer's wall clock."""

    type: ClassVar[str] = "wait"
    key: str
    next: str
    at: dt.time


@dataclasses.dataclass(frozen=True, slots=True)
class UntilEvent:
    event: str
    filters: tuple[Filter, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class UntilMilestone:
    milestone: str
    state: MilestoneState


@dataclasses.dataclass(frozen=True, slots=True)
class UntilWait:
    """Until an event or a milestone state (then ``next``) or the timeout (``timeout_next``)."""

    type: ClassVar[str] = "wait"
    key: str
    next: str
    until: UntilEvent | UntilMilestone
    timeout: dt.timedelta
    timeout_next: str


@dataclasses.dataclass(frozen=True, slots=True)
class Branch:
    when: Condition
    next: str


@dataclasses.dataclass(frozen=True, slots=True)
class BranchStep:
    """The first branch whose condition holds wins; ``otherwise`` is the JSON ``else``."""

    type: ClassVar[str] = "branch"
    key: str
    branches: tuple[Branch, ...]
    otherwise: str


@dataclasses.dataclass(frozen=True, slots=True)
class Variant:
    name: str
    weight: int
    next: str


@dataclasses.dataclass(frozen=True, slots=True)
class SplitStep:
    type: ClassVar[str] = "split"
    key: str
    variants: tuple[Variant, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class NotifyStep:
    """``to`` is as written: ``account_owner``, ``sales``, ``support``, ``email:<address>`` or
    ``webhook:<https url>``; ``template`` is optional for a webhook only."""

    type: ClassVar[str] = "notify"
    key: str
    next: str
    to: str
    template: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class UpdateStep:
    """``set_traits`` holds JSON values (a ``null`` clears the trait, at the caller's choice)."""

    type: ClassVar[str] = "update"
    key: str
    next: str
    set_traits: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    set_stage: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ExitStep:
    type: ClassVar[str] = "exit"
    key: str
    outcome: ExitOutcome = "completed"


WaitStep: TypeAlias = DurationWait | LocalTimeWait | UntilWait
Step: TypeAlias = (
    SendStep
    | DurationWait
    | LocalTimeWait
    | UntilWait
    | BranchStep
    | SplitStep
    | NotifyStep
    | UpdateStep
    | ExitStep
)


def step_edges(step: Step) -> tuple[tuple[str, str], ...]:
    """``(field path suffix, step key)`` for every step this one can go to, in field order."""
    match step:
        case BranchStep(branches=branches, otherwise=otherwise):
            chosen = [(f".branches[{i}].next", branch.next) for i, branch in enumerate(branches)]
            return (*chosen, (".else", otherwise))
        case SplitStep(variants=variants):
            return tuple((f".variants[{i}].next", v.next) for i, v in enumerate(variants))
        case UntilWait(next=after, timeout_next=timed_out):
            return ((".next", after), (".timeout_next", timed_out))
        case ExitStep():
            return ()
        case _:
            return ((".next", step.next),)


# --- The graph ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Graph:
    """Steps in their stored order; the first one is the entry."""

    steps: tuple[Step, ...]
    _index: Mapping[str, Step] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {step.key: step for step in self.steps})

    @property
    def first(self) -> Step:
        return self.steps[0]

    def step(self, key: str) -> Step:
        """The step with this key; ``KeyError`` if there is none (e.g. a stale enrollment)."""
        return self._index[key]

    def successors(self, key: str) -> tuple[str, ...]:
        """The distinct keys the step can go to, in field order."""
        return tuple(dict.fromkeys(target for _, target in step_edges(self.step(key))))

    def templates(self) -> frozenset[str]:
        """Every template key used by send and notify steps."""
        found: set[str] = set()
        for step in self.steps:
            if isinstance(step, SendStep):
                found.update(step.templates)
            elif isinstance(step, NotifyStep) and step.template is not None:
                found.add(step.template)
        return frozenset(found)

    def milestones(self) -> frozenset[str]:
        """Every milestone key referenced by until-waits and branch conditions."""
        found: set[str] = set()
        for step in self.steps:
            if isinstance(step, UntilWait) and isinstance(step.until, UntilMilestone):
                found.add(step.until.milestone)
            elif isinstance(step, BranchStep):
                found.update(*(condition_milestones(branch.when) for branch in step.branches))
        return frozenset(found)

    def events(self) -> frozenset[str]:
        """Every event name an until-wait waits for."""
        return frozenset(
            step.until.event
            for step in self.steps
            if isinstance(step, UntilWait) and isinstance(step.until, UntilEvent)
        )
