"""Journey triggers, entry rules, goals and exit criteria: validated, naming the bad part."""

from __future__ import annotations

from typing import Any

import pytest

from journeys.rules import RuleError, holdout_check, reentry_check, rules_check

MISSED = {"kind": "milestone_missed", "milestone": "activated"}


def check(**overrides: Any) -> Any:
    values: dict[str, Any] = {"trigger": MISSED, "entry_rules": {}, "goal": None, "exit_when": []}
    return rules_check(**{**values, **overrides})


def test_references_collect_every_milestone_and_event_named() -> None:
    found = check(
        goal={"milestone": "second-purchase", "within": {"days": 14}},
        exit_when=[{"milestone": "activated", "state": "achieved"}, {"event": "Unsubscribed"}],
    )

    assert found.milestones == frozenset({"activated", "second-purchase"})
    assert found.events == frozenset({"Unsubscribed"})
    assert check(trigger={"kind": "event", "event": "Order Completed"}).events == frozenset(
        {"Order Completed"}
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"trigger": {"kind": "later"}}, "trigger.kind: must be one of milestone_achieved, "
         "milestone_missed, event, stage_changed"),
        ({"trigger": {"kind": "milestone_missed"}},
         "trigger.milestone: must be a non-empty string"),
        ({"trigger": {"kind": "event", "event": "X", "extra": 1}},
         "trigger: unknown field(s): extra"),
        ({"trigger": {"kind": "event", "event": "X", "filters": {}}},
         "trigger.filters: must be a list of property filters"),
        ({"trigger": {"kind": "stage_changed"}}, "trigger.to: must be a non-empty string"),
        ({"entry_rules": {"plans": "pro"}}, "entry_rules.plans: must be a list of strings"),
        ({"entry_rules": {"planets": []}}, "entry_rules: unknown field(s): planets"),
        ({"goal": {"milestone": "a"}}, "goal.within: must be an object"),
        ({"goal": {"milestone": "a", "within": {"days": 0}}},
         "goal.within: must be more than 0 and at most a year"),
        ({"goal": {"milestone": "a", "within": {"weeks": 1}}},
         "goal.within: unknown field(s): weeks"),
        ({"exit_when": {}}, "exit_when: must be a list"),
        ({"exit_when": [{}]},
         'exit_when[0]: must name a "milestone" (with a "state") or an "event"'),
        ({"exit_when": [{"milestone": "a", "state": "done"}]},
         "exit_when[0].state: must be one of achieved, missed, in_progress, ineligible"),
    ],
)  # fmt: skip
def test_a_bad_rule_is_refused_with_its_path(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleError) as raised:
        check(**overrides)

    assert str(raised.value) == message


def test_reentry_needs_days_exactly_when_it_is_after_days() -> None:
    reentry_check("never", None)
    reentry_check("after_days", 30)
    with pytest.raises(RuleError, match="reentry_days: is required"):
        reentry_check("after_days", None)
    with pytest.raises(RuleError, match="reentry_days: must be empty"):
        reentry_check("never", 5)


@pytest.mark.parametrize("value", ["0", "12.5", 50])
def test_a_holdout_between_0_and_50_percent_is_accepted(value: object) -> None:
    holdout_check(value)


@pytest.mark.parametrize("value", ["-1", "50.01", "lots"])
def test_a_holdout_outside_0_to_50_percent_is_refused(value: object) -> None:
    with pytest.raises(RuleError, match="holdout_percent: must"):
        holdout_check(value)
