"""A journey's step graph: validation of the stored JSON and the runner's pure decisions.

``graph_parse`` turns the JSON step list into a frozen ``Graph`` or raises ``GraphError``
naming the bad item by path (``$[2].next: no step "x"``); the rules are in ``parse.py``.
``decide.py`` holds what the runner asks of a step: holdout and split assignment, when a wait
ends, which branch to take, whether an until-wait is over. Trait comparisons and event
filters are milestone property filters (``milestones.conditions``), parsed and evaluated by
the milestone code itself.
"""

from journeys.graph.decide import (
    Facts,
    branch_choose,
    condition_holds,
    is_holdout,
    split_variant,
    timeout_at,
    until_matches,
    wait_until,
)
from journeys.graph.parse import graph_parse
from journeys.graph.steps import (
    AllOf,
    AnyOf,
    Branch,
    BranchStep,
    Condition,
    DurationWait,
    EngagementIs,
    ExitStep,
    Graph,
    GraphError,
    LocalTimeWait,
    MilestoneIs,
    Not,
    NotifyStep,
    SendStep,
    SplitStep,
    StageIs,
    Step,
    TraitIs,
    UntilEvent,
    UntilMilestone,
    UntilWait,
    UpdateStep,
    Variant,
    WaitStep,
)

__all__ = [
    "AllOf",
    "AnyOf",
    "Branch",
    "BranchStep",
    "Condition",
    "DurationWait",
    "EngagementIs",
    "ExitStep",
    "Facts",
    "Graph",
    "GraphError",
    "LocalTimeWait",
    "MilestoneIs",
    "Not",
    "NotifyStep",
    "SendStep",
    "SplitStep",
    "StageIs",
    "Step",
    "TraitIs",
    "UntilEvent",
    "UntilMilestone",
    "UntilWait",
    "UpdateStep",
    "Variant",
    "WaitStep",
    "branch_choose",
    "condition_holds",
    "graph_parse",
    "is_holdout",
    "split_variant",
    "timeout_at",
    "until_matches",
    "wait_until",
]
