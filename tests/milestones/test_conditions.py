"""Pure tests of milestone conditions: JSON tree in, ``Result`` out. No database."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milestones.conditions import (
    AllOf,
    AnyOf,
    Attribute,
    ConditionError,
    DistinctCount,
    DistinctDays,
    EventCount,
    EventFact,
    Facts,
    Filter,
    MilestoneAchieved,
    Progress,
    PropertySum,
    Result,
    Step,
    StepSequence,
    Streak,
    evaluate,
    event_names,
    milestone_keys,
    parse_condition,
)

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
END = dt.datetime(2025, 12, 31, tzinfo=dt.UTC)
MICROSECOND = dt.timedelta(microseconds=1)


def at(text: str) -> dt.datetime:
    """An aware UTC moment from ``"2024-03-04 09:00"``."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def event(name: str, when: str | dt.datetime, customer: int = 1, **properties: Any) -> EventFact:
    moment = at(when) if isinstance(when, str) else when
    return EventFact(name=name, occurred_at=moment, customer_id=customer, properties=properties)


def facts(
    events: list[EventFact],
    *,
    zone: ZoneInfo = UTC,
    start: dt.datetime = START,
    end: dt.datetime = END,
    traits: Mapping[str, object] | None = None,
    milestones: Mapping[str, dt.datetime] | None = None,
) -> Facts:
    return Facts(
        events=events,
        zone=zone,
        start=start,
        end=end,
        traits=traits or {},
        milestones=milestones or {},
    )


def run(tree: dict[str, Any], *events: EventFact, **options: Any) -> Result:
    return evaluate(parse_condition(tree), facts(list(events), **options))


def refusal(tree: object) -> str:
    with pytest.raises(ConditionError) as caught:
        parse_condition(tree)
    return str(caught.value)


def count(at_least: int, **fields: Any) -> dict[str, Any]:
    return {"type": "event_count", "event": "report_created", "at_least": at_least, **fields}


# --- Parsing ------------------------------------------------------------------------------


def test_it_parses_every_kind_into_frozen_dataclasses() -> None:
    tree = {
        "type": "all",
        "conditions": [
            count(3, where=[{"property": "plan", "op": "eq", "value": "pro"}], within={"days": 7}),
            {"type": "distinct_days", "event": "app_opened", "days": 5},
            {"type": "streak", "event": "spending_checked", "periods": 4, "unit": "week"},
            {"type": "property_sum", "event": "order", "property": "order.total", "at_least": 99.5},
            {"type": "distinct_count", "event": "seat_active", "of": "customer", "at_least": 3},
            {"type": "attribute", "trait": "payment_method", "op": "exists"},
            {"type": "milestone", "key": "onboarded"},
            {
                "type": "any",
                "conditions": [
                    {
                        "type": "sequence",
                        "steps": [
                            {"event": "purchase"},
                            {"event": "purchase", "within": {"days": 45}},
                        ],
                    }
                ],
            },
        ],
    }

    assert parse_condition(tree) == AllOf(
        (
            EventCount(
                "report_created",
                3,
                (Filter("plan", "eq", "pro"),),
                dt.timedelta(days=7),
            ),
            DistinctDays("app_opened", 5),
            Streak("spending_checked", 4, "week"),
            PropertySum("order", "order.total", 99.5),
            DistinctCount("seat_active", "customer", 3),
            Attribute(Filter("payment_method", "exists", True)),
            MilestoneAchieved("onboarded"),
            AnyOf(
                (StepSequence((Step("purchase"), Step("purchase", within=dt.timedelta(days=45)))),)
            ),
        )
    )


def test_parsed_conditions_are_frozen() -> None:
    condition = parse_condition(count(3))

    with pytest.raises(dataclasses.FrozenInstanceError):
        condition.at_least = 4  # type: ignore[misc,union-attr]


def test_a_duration_combines_all_its_units() -> None:
    condition = parse_condition(count(1, within={"weeks": 1, "days": 2, "hours": 3, "minutes": 4}))

    assert condition == EventCount("report_created", 1, within=dt.timedelta(days=9, minutes=184))


def test_a_whole_number_may_be_written_with_a_decimal_point() -> None:
    assert parse_condition(count(3.0)) == EventCount("report_created", 3)  # type: ignore[arg-type]


def test_optional_fields_may_be_null() -> None:
    assert parse_condition(count(2, where=None, within=None)) == EventCount("report_created", 2)


def test_event_names_lists_every_event_the_condition_reads() -> None:
    condition = parse_condition(
        {
            "type": "any",
            "conditions": [
                count(1),
                {"type": "streak", "event": "checked", "periods": 2, "unit": "day"},
                {"type": "sequence", "steps": [{"event": "signed_up"}, {"event": "invited"}]},
                {"type": "milestone", "key": "activated"},
                {"type": "attribute", "trait": "plan", "op": "eq", "value": "pro"},
            ],
        }
    )

    assert event_names(condition) == {"report_created", "checked", "signed_up", "invited"}
    assert milestone_keys(condition) == {"activated"}


def test_milestone_keys_are_found_at_any_depth() -> None:
    condition = parse_condition(
        {
            "type": "all",
            "conditions": [
                {"type": "any", "conditions": [{"type": "milestone", "key": "a"}, count(1)]},
                {"type": "milestone", "key": "b"},
            ],
        }
    )

    assert milestone_keys(condition) == {"a", "b"}
    assert event_names(condition) == {"report_created"}


# --- Validation errors --------------------------------------------------------------------


def where(*filters: dict[str, Any]) -> dict[str, Any]:
    return count(1, where=list(filters))


def eq_filter(**fields: Any) -> dict[str, Any]:
    return {"property": "plan", "op": "eq", "value": "pro", **fields}


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        # the node itself
        ([], '$: must be an object with a "type"'),
        ({}, "$.type: is required"),
        ({"type": None}, "$.type: is required"),
        (
            {"type": "event_total"},
            "$.type: must be one of all, any, attribute, distinct_count, distinct_days, "
            "event_count, milestone, property_sum, sequence, streak",
        ),
        (count(1, at_lest=2), "$.at_lest: is not a field of event_count"),
        ({1: "x", "type": "event_count"}, '$: must be an object with a "type"'),
        # event names and whole numbers
        ({"type": "event_count", "at_least": 1}, "$.event: is required"),
        (
            {**count(1), "event": ""},
            "$.event: must be a non-empty event name of at most 255 characters",
        ),
        (
            {**count(1), "event": "x" * 256},
            "$.event: must be a non-empty event name of at most 255 characters",
        ),
        (
            {**count(1), "event": 7},
            "$.event: must be a non-empty event name of at most 255 characters",
        ),
        (count(0), "$.at_least: must be a whole number of at least 1"),
        (count(2.5), "$.at_least: must be a whole number of at least 1"),
        (count(True), "$.at_least: must be a whole number of at least 1"),
        (count("3"), "$.at_least: must be a whole number of at least 1"),
        (count(float("nan")), "$.at_least: must be a whole number of at least 1"),
        (count(10_001), "$.at_least: must be at most 10000"),
        # durations
        (count(1, within=7), '$.within: must be a duration such as {"days": 7}'),
        (count(1, within={}), '$.within: must be a duration such as {"days": 7}'),
        (
            count(1, within={"days": 1, "months": 1}),
            "$.within.months: is not a duration unit (use weeks, days, hours or minutes)",
        ),
        (count(1, within={"days": 0}), "$.within.days: must be a whole number of at least 1"),
        (count(1, within={"hours": 1.5}), "$.within.hours: must be a whole number of at least 1"),
        (
            count(1, within={"minutes": -5}),
            "$.within.minutes: must be a whole number of at least 1",
        ),
        (count(1, within={"weeks": 10_001}), "$.within.weeks: must be at most 10000"),
        # property filters
        (count(1, where={"plan": "pro"}), "$.where: must be a list of property filters"),
        (where("plan"), '$.where[0]: must be an object with "property" and "op"'),
        (
            where(eq_filter(), eq_filter(negate=True)),
            "$.where[1].negate: is not a field of a property filter",
        ),
        (where({"op": "eq", "value": 1}), "$.where[0].property: is required"),
        (
            where(eq_filter(property="order..total")),
            '$.where[0].property: must be a property name or dotted path such as "order.total"',
        ),
        (
            where(eq_filter(property="")),
            '$.where[0].property: must be a property name or dotted path such as "order.total"',
        ),
        (
            where(eq_filter(op="like")),
            "$.where[0].op: must be one of eq, neq, gt, gte, lt, lte, in, contains, exists",
        ),
        (where({"property": "plan", "op": "eq"}), "$.where[0].value: is required"),
        (
            where(eq_filter(value=["pro"])),
            "$.where[0].value: must be a string, number or boolean",
        ),
        (
            where(eq_filter(op="neq", value={"a": 1})),
            "$.where[0].value: must be a string, number or boolean",
        ),
        (
            where(eq_filter(op="contains", value=None)),
            "$.where[0].value: is required",
        ),
        (where(eq_filter(op="gt", value="10")), "$.where[0].value: must be a number"),
        (where(eq_filter(op="gte", value=True)), "$.where[0].value: must be a number"),
        (where(eq_filter(op="lt", value=float("inf"))), "$.where[0].value: must be a number"),
        (where(eq_filter(op="lte")), "$.where[0].value: must be a number"),
        (
            where(eq_filter(op="in", value=[])),
            "$.where[0].value: must be a non-empty list of strings, numbers or booleans",
        ),
        (
            where(eq_filter(op="in", value="pro")),
            "$.where[0].value: must be a non-empty list of strings, numbers or booleans",
        ),
        (
            where(eq_filter(op="in", value=["pro", ["team"]])),
            "$.where[0].value[1]: must be a string, number or boolean",
        ),
        (
            where(eq_filter(op="in", value=list(range(1001)))),
            "$.where[0].value: must have at most 1000 values",
        ),
        (where(eq_filter(op="exists", value="yes")), "$.where[0].value: must be true or false"),
        (where(*[eq_filter()] * 21), "$.where: must have at most 20 filters"),
        # kind-specific fields
        (
            {"type": "distinct_days", "event": "app_opened", "days": 0},
            "$.days: must be a whole number of at least 1",
        ),
        ({"type": "streak", "event": "checked", "periods": 4}, "$.unit: is required"),
        (
            {"type": "streak", "event": "checked", "periods": 4, "unit": "month"},
            '$.unit: must be "day" or "week"',
        ),
        (
            {"type": "streak", "event": "checked", "periods": 4, "unit": "day", "within": {}},
            "$.within: is not a field of streak",
        ),
        (
            {"type": "streak", "event": "checked", "periods": 10_001, "unit": "day"},
            "$.periods: must be at most 10000",
        ),
        (
            {"type": "property_sum", "event": "order", "property": "total", "at_least": 0},
            "$.at_least: must be a number greater than 0",
        ),
        (
            {"type": "property_sum", "event": "order", "property": "total", "at_least": "100"},
            "$.at_least: must be a number greater than 0",
        ),
        (
            {"type": "property_sum", "event": "order", "property": "total", "at_least": True},
            "$.at_least: must be a number greater than 0",
        ),
        ({"type": "property_sum", "event": "order", "at_least": 5}, "$.property: is required"),
        (
            {"type": "property_sum", "event": "order", "property": ".total", "at_least": 5},
            '$.property: must be a property name or dotted path such as "order.total"',
        ),
        (
            {"type": "distinct_count", "event": "seat_active", "of": 3, "at_least": 3},
            '$.of: must be "customer" or a property path such as "plan"',
        ),
        (
            {"type": "attribute", "op": "exists"},
            "$.trait: is required",
        ),
        (
            {"type": "attribute", "trait": "seats", "op": "gt", "value": "many"},
            "$.value: must be a number",
        ),
        (
            {"type": "attribute", "trait": "plan", "op": "is", "value": "pro"},
            "$.op: must be one of eq, neq, gt, gte, lt, lte, in, contains, exists",
        ),
        (
            {"type": "milestone", "key": ""},
            "$.key: must be a non-empty milestone key of at most 255 characters",
        ),
        # composites and sequences
        ({"type": "all"}, "$.conditions: is required"),
        ({"type": "any", "conditions": []}, "$.conditions: must be a non-empty list of conditions"),
        (
            {"type": "all", "conditions": count(1)},
            "$.conditions: must be a non-empty list of conditions",
        ),
        (
            {"type": "all", "conditions": [count(1), count(0)]},
            "$.all[1].at_least: must be a whole number of at least 1",
        ),
        (
            {"type": "all", "conditions": [{"type": "any", "conditions": [count(1), {}]}]},
            "$.all[0].any[1].type: is required",
        ),
        ({"type": "sequence", "steps": []}, "$.steps: must be a non-empty list of steps"),
        (
            {"type": "sequence", "steps": ["signed_up"]},
            '$.sequence[0]: must be an object with an "event"',
        ),
        (
            {"type": "sequence", "steps": [{"event": "a", "within": {"days": 1}}]},
            "$.sequence[0].within: the first step has no previous step to be within",
        ),
        (
            {"type": "sequence", "steps": [{"type": "event_count", "event": "a"}]},
            "$.sequence[0].type: is not a field of a sequence step",
        ),
        (
            {"type": "sequence", "steps": [{"event": "a"}, {"event": "b", "within": {"days": 0}}]},
            "$.sequence[1].within.days: must be a whole number of at least 1",
        ),
        (
            {"type": "sequence", "steps": [{"event": "a"}, {"event": "b", "where": [{}]}]},
            "$.sequence[1].where[0].property: is required",
        ),
    ],
)
def test_it_refuses_an_invalid_tree_naming_the_bad_node(tree: object, message: str) -> None:
    assert refusal(tree) == message


def test_a_condition_error_carries_its_path_and_message_apart() -> None:
    with pytest.raises(ConditionError) as caught:
        parse_condition({"type": "all", "conditions": [count(1), count(0)]})

    assert caught.value.path == "$.all[1].at_least"
    assert caught.value.message == "must be a whole number of at least 1"


def nested(depth: int) -> dict[str, Any]:
    tree = count(1)
    for _ in range(depth - 1):
        tree = {"type": "all", "conditions": [tree]}
    return tree


def test_conditions_may_nest_eight_levels_deep() -> None:
    condition = parse_condition(nested(8))

    assert event_names(condition) == {"report_created"}


def test_it_refuses_a_ninth_level_of_nesting() -> None:
    assert refusal(nested(9)) == (
        "$.all[0].all[0].all[0].all[0].all[0].all[0].all[0].all[0]: "
        "conditions may nest at most 8 levels deep"
    )


def test_sequence_steps_count_as_a_level_of_nesting() -> None:
    tree: dict[str, Any] = {"type": "sequence", "steps": [{"event": "a"}]}
    for _ in range(7):
        tree = {"type": "all", "conditions": [tree]}

    assert refusal(tree) == (
        "$.all[0].all[0].all[0].all[0].all[0].all[0].all[0].sequence[0]: "
        "conditions may nest at most 8 levels deep"
    )


def test_a_condition_may_have_fifty_nodes() -> None:
    condition = parse_condition({"type": "any", "conditions": [count(1)] * 49})

    assert isinstance(condition, AnyOf)
    assert len(condition.conditions) == 49


def test_it_refuses_a_fifty_first_node() -> None:
    assert refusal({"type": "any", "conditions": [count(1)] * 50}) == (
        "$.any[49]: a condition may have at most 50 nodes"
    )


def test_sequence_steps_count_as_nodes() -> None:
    steps = [{"event": "a"}] * 50

    assert refusal({"type": "sequence", "steps": steps}) == (
        "$.sequence[49]: a condition may have at most 50 nodes"
    )


# --- Facts --------------------------------------------------------------------------------


def test_facts_refuse_naive_times() -> None:
    with pytest.raises(ValueError, match=r"^start must be an aware datetime$"):
        facts([], start=dt.datetime(2024, 1, 1))  # noqa: DTZ001

    with pytest.raises(ValueError, match=r"^occurred_at must be an aware datetime$"):
        EventFact(name="a", occurred_at=dt.datetime(2024, 1, 1), customer_id=1)  # noqa: DTZ001


def test_facts_refuse_a_start_after_the_end() -> None:
    with pytest.raises(ValueError, match=r"^start must not be after end$"):
        facts([], start=END, end=START)


# --- event_count --------------------------------------------------------------------------


def test_event_count_is_achieved_at_the_nth_matching_event() -> None:
    result = run(
        count(3),
        event("report_created", "2024-03-01 10:00"),
        event("report_created", "2024-03-09 10:00"),
        event("page_viewed", "2024-03-10 10:00"),
        event("report_created", "2024-03-20 10:00"),
        event("report_created", "2024-03-25 10:00"),
    )

    assert result == Result(at("2024-03-20 10:00"), Progress(3, 3, "3 of 3 report_created"))


def test_event_count_not_yet_achieved_shows_the_count_so_far() -> None:
    result = run(
        count(3),
        event("report_created", "2024-03-01 10:00"),
        event("report_created", "2024-03-09 10:00"),
    )

    assert result == Result(None, Progress(2, 3, "2 of 3 report_created"))


def test_only_events_between_start_and_end_inclusive_count() -> None:
    start, end = at("2024-03-01 00:00"), at("2024-03-31 00:00")
    events = [
        event("report_created", start - MICROSECOND),
        event("report_created", start),
        event("report_created", end),
        event("report_created", end + MICROSECOND),
    ]

    result = evaluate(parse_condition(count(3)), facts(events, start=start, end=end))

    assert result == Result(None, Progress(2, 3, "2 of 3 report_created"))


def test_a_rolling_window_includes_an_event_exactly_its_length_earlier() -> None:
    result = run(
        count(3, within={"days": 7}),
        event("report_created", "2024-03-04 09:00"),
        event("report_created", "2024-03-06 09:00"),
        event("report_created", "2024-03-11 09:00"),
    )

    assert result == Result(
        at("2024-03-11 09:00"), Progress(3, 3, "3 of 3 report_created within 7 days")
    )


def test_a_rolling_window_excludes_an_event_just_older_than_its_length() -> None:
    result = run(
        count(3, within={"days": 7}),
        event("report_created", "2024-03-04 09:00"),
        event("report_created", "2024-03-06 09:00"),
        event("report_created", at("2024-03-11 09:00") + MICROSECOND),
    )

    assert result == Result(None, Progress(2, 3, "2 of 3 report_created within 7 days"))


def test_a_rolling_window_slides_to_the_first_dense_stretch() -> None:
    result = run(
        count(3, within={"hours": 12}),
        event("report_created", "2024-03-01 00:00"),
        event("report_created", "2024-03-01 13:00"),
        event("report_created", "2024-03-02 00:00"),
        event("report_created", "2024-03-02 01:00"),
        event("report_created", "2024-03-02 02:00"),
    )

    assert result == Result(
        at("2024-03-02 01:00"), Progress(3, 3, "3 of 3 report_created within 12 hours")
    )


def test_simultaneous_events_complete_a_window_together() -> None:
    result = run(
        count(3, within={"minutes": 30}),
        event("report_created", "2024-03-01 10:00"),
        event("report_created", "2024-03-01 10:00"),
        event("report_created", "2024-03-01 10:00"),
    )

    assert result.achieved_at == at("2024-03-01 10:00")


def test_event_count_progress_is_capped_at_n() -> None:
    events = [event("report_created", f"2024-03-0{day} 10:00") for day in range(1, 6)]

    result = run(count(2), *events)

    assert result == Result(at("2024-03-02 10:00"), Progress(2, 2, "2 of 2 report_created"))


# --- Property filters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "properties", "is_match"),
    [
        ({"op": "eq", "value": "pro"}, {"plan": "pro"}, True),
        ({"op": "eq", "value": "pro"}, {"plan": "Pro"}, False),
        ({"op": "eq", "value": "pro"}, {}, False),
        ({"op": "eq", "value": 1}, {"plan": 1.0}, True),
        ({"op": "eq", "value": 1}, {"plan": True}, False),
        ({"op": "eq", "value": True}, {"plan": True}, True),
        ({"op": "eq", "value": False}, {"plan": 0}, False),
        ({"op": "neq", "value": "free"}, {"plan": "pro"}, True),
        ({"op": "neq", "value": "free"}, {"plan": "free"}, False),
        ({"op": "neq", "value": "free"}, {}, True),
        ({"op": "neq", "value": "free"}, {"plan": None}, True),
        ({"op": "gt", "value": 10}, {"plan": 10.5}, True),
        ({"op": "gt", "value": 10}, {"plan": 10}, False),
        ({"op": "gte", "value": 10}, {"plan": 10}, True),
        ({"op": "gte", "value": 10}, {"plan": 9.99}, False),
        ({"op": "lt", "value": 10}, {"plan": 9}, True),
        ({"op": "lt", "value": 10}, {"plan": 10}, False),
        ({"op": "lte", "value": 10}, {"plan": 10.0}, True),
        ({"op": "lte", "value": 10}, {"plan": 11}, False),
        ({"op": "gt", "value": 1}, {"plan": "20"}, False),
        ({"op": "gt", "value": 0}, {"plan": True}, False),
        ({"op": "lt", "value": 10}, {}, False),
        ({"op": "in", "value": ["pro", "team"]}, {"plan": "team"}, True),
        ({"op": "in", "value": ["pro", "team"]}, {"plan": "free"}, False),
        ({"op": "in", "value": [1, 2]}, {"plan": 2.0}, True),
        ({"op": "in", "value": [1, 2]}, {"plan": True}, False),
        ({"op": "contains", "value": "pro"}, {"plan": "pro-annual"}, True),
        ({"op": "contains", "value": "PRO"}, {"plan": "pro-annual"}, False),
        ({"op": "contains", "value": "pro"}, {"plan": ["free", "pro"]}, True),
        ({"op": "contains", "value": 3}, {"plan": [1, 2, 3.0]}, True),
        ({"op": "contains", "value": "pro"}, {"plan": ["professional"]}, False),
        ({"op": "contains", "value": 1}, {"plan": 1}, False),
        ({"op": "exists"}, {"plan": "free"}, True),
        ({"op": "exists", "value": True}, {"plan": False}, True),
        ({"op": "exists"}, {"plan": None}, False),
        ({"op": "exists"}, {}, False),
        ({"op": "exists", "value": False}, {}, True),
        ({"op": "exists", "value": False}, {"plan": ""}, False),
    ],
)
def test_each_filter_op_matches_json_values(
    test: dict[str, Any], properties: dict[str, Any], is_match: bool
) -> None:
    tree = count(1, where=[{"property": "plan", **test}])

    result = run(tree, event("report_created", "2024-03-01 10:00", **properties))

    assert result.is_achieved is is_match


@pytest.mark.parametrize(
    ("properties", "is_match"),
    [
        ({"order": {"total": 120}}, True),
        ({"order": {"total": 80}}, False),
        ({"order": 120}, False),
        ({"order": None}, False),
        ({"order.total": 120}, False),
    ],
)
def test_a_dotted_path_reads_nested_objects(properties: dict[str, Any], is_match: bool) -> None:
    tree = count(1, where=[{"property": "order.total", "op": "gte", "value": 100}])

    result = run(tree, event("report_created", "2024-03-01 10:00", **properties))

    assert result.is_achieved is is_match


def test_every_filter_must_match() -> None:
    tree = count(
        1,
        where=[
            {"property": "plan", "op": "eq", "value": "pro"},
            {"property": "seats", "op": "gte", "value": 3},
        ],
    )

    result = run(
        tree,
        event("report_created", "2024-03-01 10:00", plan="pro", seats=2),
        event("report_created", "2024-03-02 10:00", plan="free", seats=5),
        event("report_created", "2024-03-03 10:00", plan="pro", seats=3),
    )

    assert result.achieved_at == at("2024-03-03 10:00")


# --- distinct_days ------------------------------------------------------------------------


def days(n: int, **fields: Any) -> dict[str, Any]:
    return {"type": "distinct_days", "event": "app_opened", "days": n, **fields}


def test_distinct_days_counts_local_calendar_days() -> None:
    # 22:30 and 23:30 UTC on 4 March are 23:30 on the 4th and 00:30 on the 5th in Berlin.
    events = [event("app_opened", "2024-03-04 22:30"), event("app_opened", "2024-03-04 23:30")]

    in_utc = run(days(2), *events, zone=UTC)
    in_berlin = run(days(2), *events, zone=BERLIN)

    assert in_utc == Result(None, Progress(1, 2, "1 of 2 days with app_opened"))
    assert in_berlin == Result(
        at("2024-03-04 23:30"), Progress(2, 2, "2 of 2 days with app_opened")
    )


def test_distinct_days_west_of_utc_puts_early_utc_hours_on_the_previous_day() -> None:
    # 03:00 UTC on 5 March is 22:00 on 4 March in New York (EST, UTC-5).
    events = [event("app_opened", "2024-03-04 12:00"), event("app_opened", "2024-03-05 03:00")]

    assert run(days(2), *events, zone=UTC).achieved_at == at("2024-03-05 03:00")
    assert run(days(2), *events, zone=NEW_YORK).achieved_at is None


def test_the_berlin_spring_forward_day_is_one_local_day_of_23_hours() -> None:
    # Sunday 31 March 2024: 00:30 CET and 23:59 CEST are the same day; 00:00 on 1 April is not.
    events = [
        event("app_opened", "2024-03-30 23:30"),
        event("app_opened", "2024-03-31 21:59"),
        event("app_opened", "2024-03-31 22:00"),
    ]

    result = run(days(2), *events, zone=BERLIN)

    assert result.achieved_at == at("2024-03-31 22:00")


def test_the_berlin_fall_back_day_is_one_local_day_of_25_hours() -> None:
    # Sunday 27 October 2024: 00:00 CEST (22:00 UTC the day before) to 23:59 CET (22:59 UTC).
    events = [
        event("app_opened", "2024-10-26 22:00"),
        event("app_opened", "2024-10-27 22:59"),
    ]

    assert run(days(2), *events, zone=BERLIN).achieved_at is None
    assert run(days(2), *events, event("app_opened", "2024-10-27 23:00"), zone=BERLIN) == Result(
        at("2024-10-27 23:00"), Progress(2, 2, "2 of 2 days with app_opened")
    )


def test_new_york_days_follow_both_dst_changes() -> None:
    # 10 March 2024 (spring forward) runs 05:00-03:59 UTC; 3 November (fall back) 04:00-04:59.
    spring = [event("app_opened", "2024-03-10 05:00"), event("app_opened", "2024-03-11 03:59")]
    autumn = [event("app_opened", "2024-11-03 04:00"), event("app_opened", "2024-11-04 04:59")]

    assert run(days(2), *spring, zone=NEW_YORK).achieved_at is None
    assert run(days(2), *autumn, zone=NEW_YORK).achieved_at is None
    assert run(days(2), *spring, *autumn, zone=NEW_YORK).achieved_at == at("2024-11-03 04:00")


def test_distinct_days_within_a_window_includes_its_edge() -> None:
    events = [
        event("app_opened", "2024-03-01 10:00"),
        event("app_opened", "2024-03-02 10:00"),
        event("app_opened", "2024-03-03 10:00"),
    ]

    inside = run(days(3, within={"hours": 48}), *events)
    outside = run(days(3, within={"hours": 47, "minutes": 59}), *events)

    assert inside == Result(
        at("2024-03-03 10:00"), Progress(3, 3, "3 of 3 days with app_opened within 2 days")
    )
    assert outside == Result(
        None, Progress(2, 3, "2 of 3 days with app_opened within 1 day 23 hours 59 minutes")
    )


# --- streak -------------------------------------------------------------------------------


def streak(periods: int, unit: str) -> dict[str, Any]:
    return {"type": "streak", "event": "spending_checked", "periods": periods, "unit": unit}


def test_a_daily_streak_is_achieved_at_the_first_event_of_its_last_day() -> None:
    result = run(
        streak(3, "day"),
        event("spending_checked", "2024-03-01 08:00"),
        event("spending_checked", "2024-03-02 23:00"),
        event("spending_checked", "2024-03-02 09:00"),
        event("spending_checked", "2024-03-03 18:00"),
        event("spending_checked", "2024-03-03 07:00"),
    )

    assert result == Result(
        at("2024-03-03 07:00"), Progress(3, 3, "3 of 3 days in a row with spending_checked")
    )


def test_a_gap_breaks_a_streak_and_progress_shows_the_longest_run() -> None:
    result = run(
        streak(3, "day"),
        event("spending_checked", "2024-03-01 08:00"),
        event("spending_checked", "2024-03-02 08:00"),
        event("spending_checked", "2024-03-04 08:00"),
    )

    assert result == Result(None, Progress(2, 3, "2 of 3 days in a row with spending_checked"))


def test_a_daily_streak_runs_through_the_berlin_spring_forward_day() -> None:
    result = run(
        streak(3, "day"),
        event("spending_checked", "2024-03-29 23:30"),  # Saturday 30 March, 00:30 CET
        event("spending_checked", "2024-03-30 23:30"),  # Sunday 31 March, 00:30 CET
        event("spending_checked", "2024-03-31 22:30"),  # Monday 1 April, 00:30 CEST
        zone=BERLIN,
    )

    assert result.achieved_at == at("2024-03-31 22:30")
    assert run(streak(3, "day"), *[], zone=BERLIN).progress.done == 0


def test_weeks_start_on_local_monday() -> None:
    # Sunday 23:30 and Monday 00:30 in Berlin: two ISO weeks, though one UTC day.
    events = [
        event("spending_checked", "2024-03-10 22:30"),
        event("spending_checked", "2024-03-10 23:30"),
    ]

    in_berlin = run(streak(2, "week"), *events, zone=BERLIN)
    in_utc = run(streak(2, "week"), *events, zone=UTC)

    assert in_berlin == Result(
        at("2024-03-10 23:30"), Progress(2, 2, "2 of 2 weeks in a row with spending_checked")
    )
    assert in_utc == Result(None, Progress(1, 2, "1 of 2 weeks in a row with spending_checked"))


def test_a_weekly_streak_crosses_the_new_year_and_a_dst_change() -> None:
    new_year = [
        event("spending_checked", "2024-12-27 12:00"),  # ISO 2024-W52
        event("spending_checked", "2024-12-31 12:00"),  # ISO 2025-W01
        event("spending_checked", "2025-01-06 12:00"),  # ISO 2025-W02
    ]
    autumn = [
        event("spending_checked", "2024-10-20 21:00"),  # Sunday 23:00 CEST, week of 14 Oct
        event("spending_checked", "2024-10-27 22:00"),  # Sunday 23:00 CET, week of 21 Oct
        event("spending_checked", "2024-10-27 23:00"),  # Monday 00:00 CET, week of 28 Oct
    ]

    assert run(streak(3, "week"), *new_year, zone=BERLIN).achieved_at == at("2025-01-06 12:00")
    assert run(streak(3, "week"), *autumn, zone=BERLIN).achieved_at == at("2024-10-27 23:00")


def test_a_skipped_week_breaks_a_weekly_streak() -> None:
    result = run(
        streak(4, "week"),
        event("spending_checked", "2024-03-04 12:00"),
        event("spending_checked", "2024-03-11 12:00"),
        event("spending_checked", "2024-03-25 12:00"),
        event("spending_checked", "2024-04-01 12:00"),
    )

    assert result == Result(None, Progress(2, 4, "2 of 4 weeks in a row with spending_checked"))


# --- property_sum -------------------------------------------------------------------------


def total(at_least: float, **fields: Any) -> dict[str, Any]:
    return {
        "type": "property_sum",
        "event": "order_completed",
        "property": "order.total",
        "at_least": at_least,
        **fields,
    }


def order(when: str, amount: object) -> EventFact:
    return event("order_completed", when, order={"total": amount})


def test_property_sum_is_achieved_at_the_event_that_reaches_the_target() -> None:
    result = run(
        total(100),
        order("2024-03-01 10:00", 40),
        order("2024-03-02 10:00", 30.5),
        order("2024-03-03 10:00", 29.5),
        order("2024-03-04 10:00", 10),
    )

    assert result == Result(
        at("2024-03-03 10:00"), Progress(100, 100, "100 of 100 order.total from order_completed")
    )


def test_property_sum_ignores_values_that_are_not_numbers() -> None:
    result = run(
        total(100),
        order("2024-03-01 10:00", 40),
        order("2024-03-02 10:00", "60"),
        order("2024-03-03 10:00", True),
        order("2024-03-04 10:00", None),
        event("order_completed", "2024-03-05 10:00"),
        order("2024-03-06 10:00", [60]),
    )

    assert result == Result(None, Progress(40, 100, "40 of 100 order.total from order_completed"))


def test_property_sum_adds_floats_exactly() -> None:
    events = [order(f"2024-03-{day:02} 10:00", 0.1) for day in range(1, 11)]

    result = run(total(1), *events)

    assert result.achieved_at == at("2024-03-10 10:00")


def test_a_refund_lowers_the_sum_but_never_undoes_an_achievement() -> None:
    refunded = run(
        total(100),
        order("2024-03-01 10:00", 80),
        order("2024-03-02 10:00", -30),
        order("2024-03-03 10:00", 40),
    )
    achieved = run(total(100), order("2024-03-01 10:00", 100), order("2024-03-02 10:00", -50))

    assert refunded == Result(None, Progress(90, 100, "90 of 100 order.total from order_completed"))
    assert achieved.achieved_at == at("2024-03-01 10:00")


def test_amounts_at_the_same_instant_are_added_together_before_the_target_is_checked() -> None:
    earlier = order("2024-03-01 10:00", 80)
    refund, purchase = order("2024-03-02 10:00", -30), order("2024-03-02 10:00", 30)

    refund_first = run(total(100), earlier, refund, purchase)
    purchase_first = run(total(100), earlier, purchase, refund)

    assert refund_first == purchase_first
    assert refund_first == Result(
        None, Progress(80, 100, "80 of 100 order.total from order_completed")
    )


def test_property_sum_within_a_window() -> None:
    result = run(
        total(100, within={"days": 30}),
        order("2024-03-01 10:00", 60),
        order("2024-04-01 10:00", 50),
        order("2024-04-30 10:00", 50),
    )

    assert result == Result(
        at("2024-04-30 10:00"),
        Progress(100, 100, "100 of 100 order.total from order_completed within 30 days"),
    )


def test_a_fractional_target_rounds_progress_up() -> None:
    result = run(total(99.5), order("2024-03-01 10:00", 99.25))

    assert result == Result(
        None, Progress(99, 100, "99.25 of 99.5 order.total from order_completed")
    )


# --- distinct_count -----------------------------------------------------------------------


def distinct(of: str, at_least: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": "distinct_count",
        "event": "seat_active",
        "of": of,
        "at_least": at_least,
        **fields,
    }


def test_distinct_count_of_a_property_counts_different_values() -> None:
    result = run(
        distinct("device.os", 3),
        event("seat_active", "2024-03-01 10:00", device={"os": "ios"}),
        event("seat_active", "2024-03-02 10:00", device={"os": "ios"}),
        event("seat_active", "2024-03-03 10:00", device={"os": "android"}),
        event("seat_active", "2024-03-04 10:00"),
        event("seat_active", "2024-03-05 10:00", device={"os": "web"}),
    )

    assert result == Result(
        at("2024-03-05 10:00"), Progress(3, 3, "3 of 3 values of device.os with seat_active")
    )


def test_distinct_count_treats_equal_json_numbers_as_one_value_and_booleans_apart() -> None:
    result = run(
        distinct("seats", 3),
        event("seat_active", "2024-03-01 10:00", seats=1),
        event("seat_active", "2024-03-02 10:00", seats=1.0),
        event("seat_active", "2024-03-03 10:00", seats=True),
        event("seat_active", "2024-03-04 10:00", seats="1"),
    )

    assert result.achieved_at == at("2024-03-04 10:00")


def test_distinct_customers_make_active_seats_for_an_account() -> None:
    result = run(
        distinct("customer", 3),
        event("seat_active", "2024-03-01 10:00", customer=7),
        event("seat_active", "2024-03-02 10:00", customer=7),
        event("seat_active", "2024-03-03 10:00", customer=8),
        event("seat_active", "2024-03-05 10:00", customer=9),
        event("seat_active", "2024-03-04 10:00", customer=9),
    )

    assert result == Result(
        at("2024-03-04 10:00"), Progress(3, 3, "3 of 3 customers with seat_active")
    )


def test_distinct_customers_within_a_window() -> None:
    result = run(
        distinct("customer", 3, within={"days": 1}),
        event("seat_active", "2024-03-01 10:00", customer=7),
        event("seat_active", "2024-03-02 10:00", customer=8),
        event("seat_active", "2024-03-03 10:00", customer=9),
        event("seat_active", "2024-03-03 10:00", customer=9),
    )

    assert result == Result(None, Progress(2, 3, "2 of 3 customers with seat_active within 1 day"))


# --- attribute and milestone --------------------------------------------------------------


def test_a_matching_trait_counts_as_achieved_at_start() -> None:
    tree = {"type": "attribute", "trait": "billing.payment_method", "op": "exists"}

    result = run(tree, traits={"billing": {"payment_method": "card"}})

    assert result == Result(START, Progress(1, 1, "billing.payment_method exists"))


def test_a_trait_that_does_not_match_is_not_achieved() -> None:
    tree = {"type": "attribute", "trait": "plan", "op": "in", "value": ["pro", "team"]}

    result = run(tree, traits={"plan": "free"})

    assert result == Result(None, Progress(0, 1, 'plan in ["pro", "team"]'))


@pytest.mark.parametrize(
    ("achieved", "expected"),
    [
        (at("2023-06-01 10:00"), START),
        (at("2024-03-01 10:00"), at("2024-03-01 10:00")),
        (END, END),
        (END + MICROSECOND, None),
    ],
)
def test_another_milestone_counts_from_start_until_end(
    achieved: dt.datetime, expected: dt.datetime | None
) -> None:
    result = run({"type": "milestone", "key": "onboarded"}, milestones={"onboarded": achieved})

    assert result.achieved_at == expected


def test_a_milestone_not_achieved_yet() -> None:
    result = run({"type": "milestone", "key": "onboarded"}, milestones={"activated": START})

    assert result == Result(None, Progress(0, 1, "milestone onboarded"))


# --- all and any --------------------------------------------------------------------------


def activation(kind: str) -> dict[str, Any]:
    return {
        "type": kind,
        "conditions": [
            {"type": "event_count", "event": "workspace_created", "at_least": 1},
            {"type": "event_count", "event": "teammate_invited", "at_least": 2},
            {"type": "event_count", "event": "task_completed", "at_least": 1},
        ],
    }


def test_all_is_achieved_when_its_last_child_is() -> None:
    result = run(
        activation("all"),
        event("task_completed", "2024-03-01 10:00"),
        event("workspace_created", "2024-03-02 10:00"),
        event("teammate_invited", "2024-03-03 10:00"),
        event("teammate_invited", "2024-03-04 10:00"),
    )

    assert result.achieved_at == at("2024-03-04 10:00")
    assert result.progress == Progress(3, 3, "3 of 3 conditions")


def test_all_shows_how_many_children_are_satisfied() -> None:
    result = run(
        activation("all"),
        event("workspace_created", "2024-03-02 10:00"),
        event("teammate_invited", "2024-03-03 10:00"),
    )

    assert result == Result(
        None,
        Progress(1, 3, "1 of 3 conditions"),
        (
            Result(at("2024-03-02 10:00"), Progress(1, 1, "1 of 1 workspace_created")),
            Result(None, Progress(1, 2, "1 of 2 teammate_invited")),
            Result(None, Progress(0, 1, "0 of 1 task_completed")),
        ),
    )


def test_any_is_achieved_when_its_first_child_is() -> None:
    result = run(
        activation("any"),
        event("task_completed", "2024-03-03 10:00"),
        event("workspace_created", "2024-03-02 10:00"),
    )

    assert result.achieved_at == at("2024-03-02 10:00")
    assert result.progress == Progress(1, 1, "1 of 1 workspace_created")


def test_any_not_yet_achieved_shows_its_most_advanced_child() -> None:
    result = run(activation("any"), event("teammate_invited", "2024-03-03 10:00"))

    assert result.achieved_at is None
    assert result.progress == Progress(1, 2, "1 of 2 teammate_invited")


# --- sequence -----------------------------------------------------------------------------


def sequence(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"type": "sequence", "steps": list(steps)}


def test_a_sequence_is_achieved_when_its_steps_happen_in_order() -> None:
    result = run(
        sequence({"event": "signed_up"}, {"event": "workspace_created"}, {"event": "invited"}),
        event("invited", "2024-03-01 10:00"),
        event("signed_up", "2024-03-02 10:00"),
        event("workspace_created", "2024-03-03 10:00"),
        event("invited", "2024-03-04 10:00"),
        event("invited", "2024-03-05 10:00"),
    )

    assert result == Result(at("2024-03-04 10:00"), Progress(3, 3, "3 of 3 steps"))


def test_a_sequence_out_of_order_shows_the_steps_reached() -> None:
    result = run(
        sequence({"event": "signed_up"}, {"event": "workspace_created"}, {"event": "invited"}),
        event("invited", "2024-03-01 10:00"),
        event("signed_up", "2024-03-02 10:00"),
        event("workspace_created", "2024-03-01 09:00"),
    )

    assert result == Result(None, Progress(1, 3, "1 of 3 steps"))


def test_events_at_the_same_instant_are_not_consecutive_steps() -> None:
    tree = sequence({"event": "signed_up"}, {"event": "invited"})

    simultaneous = run(
        tree, event("signed_up", "2024-03-01 10:00"), event("invited", "2024-03-01 10:00")
    )
    later = run(
        tree,
        event("signed_up", "2024-03-01 10:00"),
        event("invited", at("2024-03-01 10:00") + MICROSECOND),
    )

    assert simultaneous == Result(None, Progress(1, 2, "1 of 2 steps"))
    assert later.achieved_at == at("2024-03-01 10:00") + MICROSECOND


def test_a_second_purchase_within_45_days_includes_the_45th_day() -> None:
    tree = sequence({"event": "purchase"}, {"event": "purchase", "within": {"days": 45}})

    on_time = run(
        tree, event("purchase", "2024-03-01 10:00"), event("purchase", "2024-04-15 10:00")
    )
    late = run(
        tree,
        event("purchase", "2024-03-01 10:00"),
        event("purchase", at("2024-04-15 10:00") + MICROSECOND),
    )
    single = run(tree, event("purchase", "2024-03-01 10:00"))

    assert on_time.achieved_at == at("2024-04-15 10:00")
    assert late == Result(None, Progress(1, 2, "1 of 2 steps"))
    assert single == Result(None, Progress(1, 2, "1 of 2 steps"))


def test_a_step_within_is_measured_from_the_latest_earlier_previous_step() -> None:
    # The first signup is too early for the invite, the second is recent enough.
    tree = sequence(
        {"event": "signed_up"},
        {"event": "invited", "within": {"days": 7}},
        {"event": "task_completed", "within": {"hours": 1}},
    )

    result = run(
        tree,
        event("signed_up", "2024-03-01 10:00"),
        event("invited", "2024-03-02 10:00"),
        event("signed_up", "2024-03-10 10:00"),
        event("invited", "2024-03-12 10:00"),
        event("task_completed", "2024-03-12 10:30"),
    )

    assert result.achieved_at == at("2024-03-12 10:30")


def test_sequence_steps_apply_their_own_filters() -> None:
    tree = sequence(
        {"event": "plan_changed", "where": [{"property": "plan", "op": "eq", "value": "trial"}]},
        {"event": "plan_changed", "where": [{"property": "plan", "op": "eq", "value": "pro"}]},
    )

    result = run(
        tree,
        event("plan_changed", "2024-03-01 10:00", plan="pro"),
        event("plan_changed", "2024-03-02 10:00", plan="trial"),
        event("plan_changed", "2024-03-03 10:00", plan="pro"),
    )

    assert result.achieved_at == at("2024-03-03 10:00")


# --- Properties over random histories -----------------------------------------------------

NAMES = ("a", "b", "c")
RANGE_START = at("2024-03-08 00:00")  # spans the March 2024 DST changes in New York and Berlin
RANGE_MINUTES = 60 * 24 * 28
WHERE_PRO = [{"property": "plan", "op": "in", "value": ["pro", "team"]}]

KINDS: dict[str, dict[str, Any]] = {
    "event_count": {"type": "event_count", "event": "a", "at_least": 3, "within": {"days": 5}},
    "event_count_filtered": {
        "type": "event_count",
        "event": "b",
        "where": WHERE_PRO,
        "at_least": 2,
    },
    "distinct_days": {"type": "distinct_days", "event": "a", "days": 2, "within": {"days": 3}},
    "streak_day": {"type": "streak", "event": "a", "periods": 2, "unit": "day"},
    "streak_week": {"type": "streak", "event": "b", "periods": 2, "unit": "week"},
    "property_sum": {
        "type": "property_sum",
        "event": "a",
        "property": "amount",
        "at_least": 80.5,
        "within": {"days": 10},
    },
    "distinct_count": {"type": "distinct_count", "event": "b", "of": "plan", "at_least": 2},
    "distinct_customers": {
        "type": "distinct_count",
        "event": "c",
        "of": "customer",
        "at_least": 3,
        "within": {"days": 3},
    },
    "sequence": sequence({"event": "a"}, {"event": "b", "within": {"days": 2}}, {"event": "c"}),
    "all": {
        "type": "all",
        "conditions": [
            {"type": "event_count", "event": "c", "at_least": 2},
            {"type": "milestone", "key": "m"},
            {"type": "attribute", "trait": "plan", "op": "eq", "value": "pro"},
        ],
    },
    "any": {
        "type": "any",
        "conditions": [
            {"type": "streak", "event": "c", "periods": 2, "unit": "day"},
            {"type": "property_sum", "event": "b", "property": "amount", "at_least": 100},
        ],
    },
}
EVENT_KINDS = [kind for kind in KINDS if kind not in ("all", "any")]

amounts = st.one_of(
    st.integers(-40, 100),
    st.floats(-40, 100, allow_nan=False),
    st.booleans(),
    st.none(),
    st.just("12"),
)
random_events = st.lists(
    st.builds(
        lambda name, minute, customer, amount, plan: event(
            name,
            RANGE_START + dt.timedelta(minutes=minute),
            customer,
            amount=amount,
            plan=plan,
        ),
        st.sampled_from(NAMES),
        # whole days and weeks apart as well, to land on window edges and share instants
        st.one_of(st.integers(0, RANGE_MINUTES), st.sampled_from([0, 1440, 2880, 4320, 10080])),
        st.integers(1, 4),
        amounts,
        st.sampled_from(["free", "pro", "team", None]),
    ),
    max_size=30,
)
zones = st.sampled_from([UTC, BERLIN, NEW_YORK])


def history(events: list[EventFact], zone: ZoneInfo, end: dt.datetime = END) -> Facts:
    return facts(
        events,
        zone=zone,
        start=RANGE_START,
        end=end,
        traits={"plan": "pro"},
        milestones={"m": RANGE_START + dt.timedelta(days=3)},
    )


@pytest.mark.parametrize("kind", list(KINDS))
@settings(max_examples=40, deadline=None)
@given(data=st.data(), zone=zones)
def test_the_result_does_not_depend_on_event_order(
    kind: str, data: st.DataObject, zone: ZoneInfo
) -> None:
    condition = parse_condition(KINDS[kind])
    events = data.draw(random_events)
    shuffled = data.draw(st.permutations(events))

    assert evaluate(condition, history(shuffled, zone)) == evaluate(
        condition, history(events, zone)
    )


@pytest.mark.parametrize("kind", EVENT_KINDS)
@settings(max_examples=30, deadline=None)
@given(events=random_events, zone=zones)
def test_achieved_at_is_the_earliest_moment_the_condition_holds(
    kind: str, events: list[EventFact], zone: ZoneInfo
) -> None:
    condition = parse_condition(KINDS[kind])

    result = evaluate(condition, history(events, zone))

    assert (result.progress.done == result.progress.total) is result.is_achieved
    if result.achieved_at is not None:
        assert result.achieved_at in {fact.occurred_at for fact in events}
        assert evaluate(condition, history(events, zone, end=result.achieved_at)) == result
    if result.achieved_at is not None and result.achieved_at > RANGE_START:
        before = evaluate(condition, history(events, zone, end=result.achieved_at - MICROSECOND))
        assert before.achieved_at is None


@settings(max_examples=60, deadline=None)
@given(events=random_events)
def test_event_count_in_a_window_agrees_with_a_brute_force_count(events: list[EventFact]) -> None:
    window = dt.timedelta(days=5)
    moments = sorted(fact.occurred_at for fact in events if fact.name == "a")
    expected = next(
        (end for end in moments if sum(end - window <= m <= end for m in moments) >= 3), None
    )

    result = evaluate(parse_condition(KINDS["event_count"]), history(events, UTC))

    assert result.achieved_at == expected
