"""Events and stage changes as journey entries, and the until-waits they (and milestone
outcomes) end early. Pure parsing and matching; the receivers do the reading and writing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from milestones.conditions import ConditionError, parse_condition
from milestones.conditions.tree import EventCount, Filter
from milestones.conditions.values import matches


class TriggerInvalid(ValueError):
    pass


def event_filters(trigger: Mapping[str, Any]) -> tuple[Filter, ...]:
    """The property filters of an event trigger, parsed by the milestone filter rules (so the
    two apps accept and mean the same thing)."""
    tree = {
        "type": "event_count",
        "event": str(trigger.get("event", "")),
        "at_least": 1,
        "where": trigger.get("filters", []),
    }
    try:
        parsed = parse_condition(tree)
    except ConditionError as exc:
        where = exc.path.replace("$.where", "trigger.filters", 1)
        raise TriggerInvalid(f"{where}: {exc.message}") from exc
    assert isinstance(parsed, EventCount)  # noqa: S101 - parse_condition of an event_count
    return parsed.where


def event_matches(filters: Sequence[Filter], properties: Mapping[str, object]) -> bool:
    return all(matches(test, properties) for test in filters)
