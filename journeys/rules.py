"""Validation of a journey's trigger, entry rules, goal and exit criteria. Pure: JSON in,
``RuleError(path, message)`` out (the step graph has its own module, ``journeys.graph``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

TRIGGER_KINDS: Final = ("milestone_achieved", "milestone_missed", "event", "stage_changed")
STATES: Final = ("achieved", "missed", "in_progress", "ineligible")
_ENTRY_LISTS: Final = ("plans", "regions", "stages")


class RuleError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message


@dataclasses.dataclass(frozen=True, slots=True)
class References:
    """The milestones and events a journey's rules name (checked against what exists)."""

    milestones: frozenset[str]
    events: frozenset[str]


def _text(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RuleError(path, "must be a non-empty string")
    return value


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RuleError(path, "must be an object")
    return value


def _keys(value: Mapping[str, Any], path: str, allowed: set[str]) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise RuleError(path, f"unknown field(s): {', '.join(unknown)}")


def window_days(value: object, path: str) -> float:
    """A ``{"days": d, "hours": h}`` window as days (positive, at most a year)."""
    found = _object(value, path)
    _keys(found, path, {"days", "hours"})
    total = 0.0
    for unit, per_day in (("days", 1.0), ("hours", 24.0)):
        amount = found.get(unit, 0)
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
            raise RuleError(f"{path}.{unit}", "must be a number of at least 0")
        total += amount / per_day
    if not 0 < total <= 366:
        raise RuleError(path, "must be more than 0 and at most a year")
    return total


def rules_check(
    *,
    trigger: object,
    entry_rules: object,
    goal: object,
    exit_when: object,
) -> References:
    milestones: set[str] = set()
    events: set[str] = set()
    found = _object(trigger, "trigger")
    kind = found.get("kind")
    if kind not in TRIGGER_KINDS:
        raise RuleError("trigger.kind", f"must be one of {', '.join(TRIGGER_KINDS)}")
    if kind in ("milestone_achieved", "milestone_missed"):
        _keys(found, "trigger", {"kind", "milestone"})
        milestones.add(_text(found.get("milestone"), "trigger.milestone"))
    elif kind == "event":
        _keys(found, "trigger", {"kind", "event", "filters"})
        events.add(_text(found.get("event"), "trigger.event"))
        if not isinstance(found.get("filters", []), list):
            raise RuleError("trigger.filters", "must be a list of property filters")
        from journeys.triggers import TriggerInvalid, event_filters

        try:
            event_filters(found)
        except TriggerInvalid as exc:
            path, _, message = str(exc).partition(": ")
            raise RuleError(path, message) from exc
    else:
        _keys(found, "trigger", {"kind", "to"})
        _text(found.get("to"), "trigger.to")
    entry = _object(entry_rules, "entry_rules")
    _keys(entry, "entry_rules", set(_ENTRY_LISTS))
    for name in _ENTRY_LISTS:
        values = entry.get(name, [])
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise RuleError(f"entry_rules.{name}", "must be a list of strings")
    if goal is not None:
        target = _object(goal, "goal")
        _keys(target, "goal", {"milestone", "within"})
        milestones.add(_text(target.get("milestone"), "goal.milestone"))
        window_days(target.get("within"), "goal.within")
    if not isinstance(exit_when, list):
        raise RuleError("exit_when", "must be a list")
    for index, item in enumerate(exit_when):
        path = f"exit_when[{index}]"
        rule = _object(item, path)
        if "milestone" in rule:
            _keys(rule, path, {"milestone", "state"})
            milestones.add(_text(rule["milestone"], f"{path}.milestone"))
            if rule.get("state", "achieved") not in STATES:
                raise RuleError(f"{path}.state", f"must be one of {', '.join(STATES)}")
        elif "event" in rule:
            _keys(rule, path, {"event"})
            events.add(_text(rule["event"], f"{path}.event"))
        else:
            raise RuleError(path, 'must name a "milestone" (with a "state") or an "event"')
    return References(frozenset(milestones), frozenset(events))


def reentry_check(reentry: str, reentry_days: int | None) -> None:
    if reentry == "after_days" and not reentry_days:
        raise RuleError("reentry_days", "is required (at least 1) when re-entry is after N days")
    if reentry == "never" and reentry_days:
        raise RuleError("reentry_days", "must be empty when a customer never re-enters")


def holdout_check(percent: object) -> None:
    try:
        value = float(str(percent))
    except ValueError as exc:
        raise RuleError("holdout_percent", "must be a number") from exc
    if not 0 <= value <= 50:
        raise RuleError("holdout_percent", "must be between 0 and 50")
