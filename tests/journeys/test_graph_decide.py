"""Pure tests of the runner's decisions: holdout and split assignment, wait deadlines,
branch choice and until-wait matching."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from journeys.graph import (
    BranchStep,
    Facts,
    UntilWait,
    Variant,
    WaitStep,
    branch_choose,
    graph_parse,
    is_holdout,
    split_variant,
    timeout_at,
    until_matches,
    wait_until,
)

UTC = dt.UTC
EXIT = {"key": "done", "type": "exit"}
AB = (Variant("A", 1, "a"), Variant("B", 1, "b"))


# --- Holdout and split ----------------------------------------------------------------------


def test_the_holdout_is_pinned_for_ever_for_a_journey_key() -> None:
    # Changing the hash input would move customers between control and treatment of live
    # journeys: these ids must stay exactly the held-out ones.
    held = [i for i in range(1, 200) if is_holdout("onboarding", i, 10.0)]

    assert held == [14, 25, 31, 43, 53, 69, 74, 81, 104, 114, 155, 166, 187]


def test_the_split_assignment_is_pinned_for_ever() -> None:
    names = "".join(split_variant("onboarding", "ab", i, AB).name for i in range(1, 21))

    assert names == "BBABAABAAABAABAABABB"


def test_a_ten_percent_holdout_holds_out_about_ten_percent() -> None:
    held = sum(is_holdout("onboarding", i, 10.0) for i in range(1, 10_001))

    assert 850 <= held <= 1150


@pytest.mark.parametrize(("percent", "expected"), [(0.0, 0), (100.0, 10_000), (0.5, None)])
def test_the_holdout_edges(percent: float, expected: int | None) -> None:
    held = sum(is_holdout("onboarding", i, percent) for i in range(1, 10_001))

    if expected is None:
        assert 20 <= held <= 80
    else:
        assert held == expected


@pytest.mark.parametrize("percent", [-1.0, 100.5, float("nan")])
def test_it_refuses_a_holdout_percent_out_of_range(percent: float) -> None:
    with pytest.raises(ValueError, match="holdout percent must be between 0 and 100"):
        is_holdout("onboarding", 1, percent)


def test_journeys_hold_out_different_customers() -> None:
    first = {i for i in range(1, 10_001) if is_holdout("onboarding", i, 10.0)}
    second = {i for i in range(1, 10_001) if is_holdout("winback", i, 10.0)}

    # Independent 10 % samples overlap on about 1 % of customers.
    assert 50 <= len(first & second) <= 150


def test_a_split_follows_its_weights() -> None:
    variants = (Variant("A", 70, "a"), Variant("B", 20, "b"), Variant("C", 10, "c"))
    counts = {"A": 0, "B": 0, "C": 0}
    for customer in range(1, 10_001):
        counts[split_variant("onboarding", "ab", customer, variants).name] += 1

    assert 6800 <= counts["A"] <= 7200
    assert 1800 <= counts["B"] <= 2200
    assert 850 <= counts["C"] <= 1150


def test_the_split_is_independent_of_the_holdout_and_of_other_splits() -> None:
    cells: dict[tuple[bool, str, str], int] = {}
    for customer in range(1, 20_001):
        cell = (
            is_holdout("onboarding", customer, 50.0),
            split_variant("onboarding", "first", customer, AB).name,
            split_variant("onboarding", "second", customer, AB).name,
        )
        cells[cell] = cells.get(cell, 0) + 1

    assert len(cells) == 8
    assert all(2200 <= count <= 2800 for count in cells.values())  # 2,500 expected each


def test_a_split_refuses_no_variants_or_a_zero_weight() -> None:
    with pytest.raises(ValueError, match="at least one variant and positive weights"):
        split_variant("onboarding", "ab", 1, ())
    with pytest.raises(ValueError, match="at least one variant and positive weights"):
        split_variant("onboarding", "ab", 1, (Variant("A", 0, "a"), Variant("B", 1, "b")))


@given(
    journey=st.text(max_size=20),
    step=st.text(max_size=20),
    customer=st.integers(min_value=1, max_value=2**63 - 1),
    weights=st.lists(st.integers(min_value=1, max_value=10_000), min_size=2, max_size=10),
)
def test_a_split_always_picks_one_of_its_variants_and_the_same_one_again(
    journey: str, step: str, customer: int, weights: list[int]
) -> None:
    variants = tuple(Variant(str(i), weight, "x") for i, weight in enumerate(weights))

    chosen = split_variant(journey, step, customer, variants)

    assert chosen in variants
    assert split_variant(journey, step, customer, variants) is chosen


# --- Waits ----------------------------------------------------------------------------------


def _wait(**fields: Any) -> WaitStep:
    step = graph_parse([{"key": "w", "type": "wait", "next": "done", **fields}, EXIT]).first
    assert step.type == "wait"
    return step  # type: ignore[return-value]


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_duration_wait_ends_after_the_elapsed_duration_in_utc() -> None:
    step = _wait(duration={"days": 1, "hours": 2, "minutes": 30})
    started = dt.datetime(2025, 3, 29, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))

    ends = wait_until(step, started, "Europe/Paris")

    # Across the spring-forward night: 26.5 elapsed hours, whatever the wall clock says.
    assert ends == _at("2025-03-30 13:30")
    assert ends is not None
    assert ends.tzinfo is UTC


@pytest.mark.parametrize(
    ("started", "zone", "ends"),
    [
        # Before 10:00 local: today; at or after it: tomorrow (strictly after the start).
        ("2025-06-10 07:59", "Europe/Paris", "2025-06-10 08:00"),
        ("2025-06-10 08:00", "Europe/Paris", "2025-06-11 08:00"),
        ("2025-06-10 08:01", "Europe/Paris", "2025-06-11 08:00"),
        # The local date, not the UTC date, decides "today".
        ("2025-06-10 23:30", "Asia/Tokyo", "2025-06-11 01:00"),
        ("2025-06-10 02:00", "America/Los_Angeles", "2025-06-10 17:00"),
        # An empty or unknown zone is UTC.
        ("2025-06-10 09:00", "", "2025-06-10 10:00"),
        ("2025-06-10 09:00", "Mars/Olympus_Mons", "2025-06-10 10:00"),
        ("2025-06-10 09:00", "../../etc/passwd", "2025-06-10 10:00"),
    ],
)
def test_a_local_time_wait_ends_at_the_next_wall_time(started: str, zone: str, ends: str) -> None:
    step = _wait(until_local_time="10:00")

    assert wait_until(step, _at(started), zone) == _at(ends)


@pytest.mark.parametrize(
    ("started", "ends"),
    [
        # 2025-03-30 02:00 CET jumps to 03:00 CEST: 02:30 does not exist that night and the
        # wait ends at the first instant after the gap, 03:00 CEST (01:00 UTC).
        ("2025-03-29 23:00", "2025-03-30 01:00"),
        ("2025-03-30 00:59", "2025-03-30 01:00"),
        # At or after that instant, the next 02:30 is the following night's (CEST).
        ("2025-03-30 01:00", "2025-03-31 00:30"),
        ("2025-03-30 01:30", "2025-03-31 00:30"),
    ],
)
def test_a_local_time_skipped_by_spring_forward_moves_to_the_end_of_the_gap(
    started: str, ends: str
) -> None:
    step = _wait(until_local_time="02:30")

    assert wait_until(step, _at(started), "Europe/Paris") == _at(ends)


@pytest.mark.parametrize(
    ("started", "ends"),
    [
        # 2025-10-26 03:00 CEST falls back to 02:00 CET: 02:30 happens at 00:30 and 01:30 UTC.
        # The first occurrence is the one taken.
        ("2025-10-25 22:00", "2025-10-26 00:30"),
        # Started between the two: that night's 02:30 is the first one, already past, so the
        # next is the following night's (CET).
        ("2025-10-26 00:45", "2025-10-27 01:30"),
        ("2025-10-26 01:30", "2025-10-27 01:30"),
    ],
)
def test_a_local_time_repeated_by_fall_back_takes_the_first_occurrence(
    started: str, ends: str
) -> None:
    step = _wait(until_local_time="02:30")

    assert wait_until(step, _at(started), "Europe/Paris") == _at(ends)


@pytest.mark.parametrize(
    ("wall", "started", "ends"),
    [
        # 2025-03-09 02:00 EST jumps to 03:00 EDT (07:00 UTC).
        ("02:15", "2025-03-09 05:00", "2025-03-09 07:00"),
        ("09:00", "2025-03-09 05:00", "2025-03-09 13:00"),
        ("09:00", "2025-03-08 15:00", "2025-03-09 13:00"),
        # 2025-11-02 02:00 EDT falls back to 01:00 EST: 01:30 is at 05:30 and 06:30 UTC.
        ("01:30", "2025-11-02 04:00", "2025-11-02 05:30"),
        ("01:30", "2025-11-02 06:00", "2025-11-03 06:30"),
        ("09:00", "2025-11-01 14:00", "2025-11-02 14:00"),
    ],
)
def test_local_time_waits_in_new_york_across_both_changes(
    wall: str, started: str, ends: str
) -> None:
    step = _wait(until_local_time=wall)

    assert wait_until(step, _at(started), "America/New_York") == _at(ends)


def test_a_local_time_wait_returns_utc_for_a_start_in_another_zone() -> None:
    step = _wait(until_local_time="10:00")
    started = dt.datetime(2025, 6, 10, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))

    ends = wait_until(step, started, "Europe/Paris")

    assert ends == _at("2025-06-10 08:00")
    assert ends is not None
    assert ends.tzinfo is UTC


def test_an_until_wait_has_no_wall_deadline_only_a_timeout() -> None:
    step = _wait(until={"event": "Paid"}, timeout={"days": 2, "hours": 6}, timeout_next="done")
    started = _at("2025-06-10 09:00")

    assert wait_until(step, started, "Europe/Paris") is None
    assert isinstance(step, UntilWait)
    assert timeout_at(step, started) == _at("2025-06-12 15:00")


def test_waits_refuse_a_naive_start() -> None:
    step = _wait(duration={"days": 1})
    timeout = _wait(until={"event": "Paid"}, timeout={"days": 1}, timeout_next="done")
    assert isinstance(timeout, UntilWait)

    with pytest.raises(ValueError, match="started_at must be an aware datetime"):
        wait_until(step, dt.datetime(2025, 6, 10, 9, 0), "UTC")  # noqa: DTZ001
    with pytest.raises(ValueError, match="started_at must be an aware datetime"):
        timeout_at(timeout, dt.datetime(2025, 6, 10, 9, 0))  # noqa: DTZ001


# --- Branches -------------------------------------------------------------------------------


TRAITS = {
    "plan": "pro",
    "seats": 5,
    "ratio": 0.5,
    "beta": True,
    "tags": ["beta", "eu"],
    "company": {"size": 50},
    "gone": None,
}


def _branch(*branches: tuple[object, str], otherwise: str = "no") -> BranchStep:
    raw = {
        "key": "pick",
        "type": "branch",
        "branches": [{"when": when, "next": target} for when, target in branches],
        "else": otherwise,
    }
    targets = {otherwise} | {target for _, target in branches}
    steps = [raw, *({"key": key, "type": "exit"} for key in sorted(targets))]
    step = graph_parse(steps).first
    assert isinstance(step, BranchStep)
    return step


def _facts(
    traits: dict[str, Any] | None = None,
    stage: str = "active",
    milestones: dict[str, str] | None = None,
    engagement: dict[str, frozenset[str]] | None = None,
) -> Facts:
    return Facts(TRAITS if traits is None else traits, stage, milestones or {}, engagement or {})


@pytest.mark.parametrize(
    ("trait", "op", "value", "holds"),
    [
        ("plan", "eq", "pro", True),
        ("plan", "eq", "Pro", False),
        ("seats", "eq", 5.0, True),
        ("beta", "eq", 1, False),
        ("beta", "eq", True, True),
        ("plan", "neq", "free", True),
        ("plan", "neq", "pro", False),
        ("missing", "neq", "pro", True),
        ("gone", "neq", "x", True),
        ("seats", "gt", 4, True),
        ("seats", "gt", 5, False),
        ("plan", "gt", 1, False),
        ("seats", "gte", 5, True),
        ("seats", "gte", 5.5, False),
        ("ratio", "lt", 1, True),
        ("seats", "lt", 5, False),
        ("seats", "lte", 5, True),
        ("missing", "lte", 5, False),
        ("plan", "in", ["team", "pro"], True),
        ("plan", "in", ["free"], False),
        ("seats", "in", [5.0, "5"], True),
        ("plan", "contains", "ro", True),
        ("plan", "contains", "RO", False),
        ("tags", "contains", "eu", True),
        ("tags", "contains", "us", False),
        ("seats", "contains", 5, False),
        ("plan", "exists", True, True),
        ("missing", "exists", True, False),
        ("gone", "exists", True, False),
        ("missing", "exists", False, True),
        ("company.size", "gte", 50, True),
        ("company.name", "exists", False, True),
    ],
)
def test_trait_conditions_use_the_milestone_filter_rules(
    trait: str, op: str, value: object, holds: bool
) -> None:
    step = _branch(({"trait": trait, "op": op, "value": value}, "yes"))

    assert branch_choose(step, _facts()) == ("yes" if holds else "no")


def test_exists_without_a_value_means_exists() -> None:
    step = _branch(({"trait": "missing", "op": "exists"}, "yes"))

    assert branch_choose(step, _facts()) == "no"


@pytest.mark.parametrize(
    ("state", "states", "holds"),
    [
        ("achieved", {"activated": "achieved"}, True),
        ("achieved", {"activated": "missed"}, False),
        ("missed", {"activated": "missed"}, True),
        ("in_progress", {"activated": "in_progress"}, True),
        ("ineligible", {"activated": "ineligible"}, True),
        ("not_started", {}, True),
        ("not_started", {"other": "achieved"}, True),
        ("achieved", {}, False),
    ],
)
def test_a_milestone_condition_compares_the_state_and_missing_is_not_started(
    state: str, states: dict[str, str], holds: bool
) -> None:
    step = _branch(({"milestone": "activated", "state": state}, "yes"))

    assert branch_choose(step, _facts(milestones=states)) == ("yes" if holds else "no")


def _engagement_branch(status: str) -> BranchStep:
    steps = [
        {"key": "tips", "type": "send", "templates": ["t"], "next": "pick"},
        {"key": "pick", "type": "branch", "else": "no",
         "branches": [{"when": {"engagement": status, "step": "tips"}, "next": "yes"}]},
        {"key": "yes", "type": "exit"},
        {"key": "no", "type": "exit"},
    ]  # fmt: skip
    step = graph_parse(steps).step("pick")
    assert isinstance(step, BranchStep)
    return step


@pytest.mark.parametrize(
    ("status", "reached", "holds"),
    [
        ("opened", frozenset({"sent", "delivered", "opened"}), True),
        ("clicked", frozenset({"sent", "delivered", "opened"}), False),
        # Literal: a click without an open is the caller's business to complete.
        ("opened", frozenset({"clicked"}), False),
        ("sent", frozenset({"sent"}), True),
        ("delivered", frozenset(), False),
    ],
)
def test_an_engagement_condition_reads_the_statuses_literally(
    status: str, reached: frozenset[str], holds: bool
) -> None:
    step = _engagement_branch(status)

    assert branch_choose(step, _facts(engagement={"tips": reached})) == ("yes" if holds else "no")


def test_an_engagement_condition_on_a_send_step_with_no_message_is_false() -> None:
    step = _engagement_branch("sent")

    assert branch_choose(step, _facts(engagement={})) == "no"


def test_a_stage_condition_compares_the_lifecycle_stage() -> None:
    step = _branch(({"stage": "active"}, "yes"))

    assert branch_choose(step, _facts(stage="active")) == "yes"
    assert branch_choose(step, _facts(stage="dormant")) == "no"


NESTED = {
    "all": [
        {"trait": "plan", "op": "eq", "value": "pro"},
        {"any": [
            {"milestone": "activated", "state": "achieved"},
            {"not": {"stage": "churned"}},
        ]},
    ]
}  # fmt: skip


@pytest.mark.parametrize(
    ("traits", "stage", "states", "holds"),
    [
        ({"plan": "pro"}, "churned", {"activated": "achieved"}, True),
        ({"plan": "pro"}, "active", {}, True),
        ({"plan": "pro"}, "churned", {}, False),
        ({"plan": "free"}, "active", {"activated": "achieved"}, False),
        ({}, "active", {}, False),
    ],
)
def test_nested_all_any_and_not(
    traits: dict[str, Any], stage: str, states: dict[str, str], holds: bool
) -> None:
    step = _branch((NESTED, "yes"))

    assert branch_choose(step, _facts(traits, stage, states)) == ("yes" if holds else "no")


def test_the_first_branch_that_holds_wins() -> None:
    step = _branch(
        ({"stage": "dormant"}, "first"),
        ({"trait": "seats", "op": "gte", "value": 2}, "second"),
        ({"trait": "seats", "op": "gte", "value": 1}, "third"),
    )

    assert branch_choose(step, _facts()) == "second"
    assert branch_choose(step, _facts(traits={"seats": 1})) == "third"
    assert branch_choose(step, _facts(traits={}, stage="dormant")) == "first"
    assert branch_choose(step, _facts(traits={})) == "no"


# --- Until-waits ----------------------------------------------------------------------------


def _until(until: dict[str, Any]) -> UntilWait:
    step = _wait(until=until, timeout={"days": 1}, timeout_next="done")
    assert isinstance(step, UntilWait)
    return step


def test_an_event_wait_matches_its_event_with_matching_properties() -> None:
    step = _until(
        {
            "event": "Order Completed",
            "filters": [
                {"property": "total", "op": "gte", "value": 100},
                {"property": "coupon", "op": "exists", "value": False},
            ],
        }
    )

    def matched(name: str, properties: dict[str, Any]) -> bool:
        return until_matches(step, event_name=name, properties=properties, milestone_states={})

    assert matched("Order Completed", {"total": 120})
    assert matched("Order Completed", {"total": 100, "coupon": None})
    assert not matched("Order Completed", {"total": 99})
    assert not matched("Order Completed", {"total": 120, "coupon": "WELCOME"})
    assert not matched("order completed", {"total": 120})
    assert not matched("Order Refunded", {"total": 120})


def test_an_event_wait_without_filters_matches_any_properties() -> None:
    step = _until({"event": "Paid"})

    assert until_matches(step, event_name="Paid", properties={}, milestone_states={})


def test_a_milestone_wait_matches_the_awaited_state_only() -> None:
    step = _until({"milestone": "activated", "state": "achieved"})

    def matched(states: dict[str, str]) -> bool:
        return until_matches(step, event_name="Paid", properties={}, milestone_states=states)

    assert matched({"activated": "achieved"})
    assert not matched({"activated": "in_progress"})
    assert not matched({"other": "achieved"})
    assert not matched({})
