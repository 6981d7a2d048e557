"""Milestone conditions: the pure core (no ORM, no I/O).

``parse_condition`` validates a JSON tree into frozen dataclasses (``tree.py``); ``evaluate``
computes, from scratch, when a subject achieved the condition and how far along it is. The
evaluation rules (window edges, time zones, what ``achieved_at`` means) are documented in
``evaluate.py``.
"""

from milestones.conditions.evaluate import EventFact, Facts, Progress, Result, evaluate
from milestones.conditions.parse import parse_condition
from milestones.conditions.tree import (
    AllOf,
    AnyOf,
    Attribute,
    Condition,
    ConditionError,
    DistinctCount,
    DistinctDays,
    EventCount,
    Filter,
    MilestoneAchieved,
    PropertySum,
    Step,
    StepSequence,
    Streak,
    event_names,
    milestone_keys,
)

__all__ = [
    "AllOf",
    "AnyOf",
    "Attribute",
    "Condition",
    "ConditionError",
    "DistinctCount",
    "DistinctDays",
    "EventCount",
    "EventFact",
    "Facts",
    "Filter",
    "MilestoneAchieved",
    "Progress",
    "PropertySum",
    "Result",
    "Step",
    "StepSequence",
    "Streak",
    "evaluate",
    "event_names",
    "milestone_keys",
    "parse_condition",
]
