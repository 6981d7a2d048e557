"""The condition builder's pure translation: condition JSON to rows and back, validation, and
errors placed on their row and field."""

from __future__ import annotations

from typing import Any

import pytest

from milestones.condition_rows import (
    DURATION_ERROR,
    LEAF_TYPES,
    MATCH_FIELD,
    ConditionRow,
    ConditionRows,
    FilterRow,
    RowProblem,
    RowsInvalid,
    Unrepresentable,
    condition_rows,
    duration_parse,
    duration_words,
    problem_at,
    row_fields,
    rows_check,
    rows_condition,
    rows_naming,
    same_json,
    value_parse,
    value_words,
)
from milestones.conditions import ConditionError, parse_condition
from milestones.conditions.parse import _LEAVES

PLAN_PRO = {"property": "plan", "op": "eq", "value": "pro"}
COUNT = {"type": "event_count", "event": "Report Created", "at_least": 3}
MILESTONE = {"type": "milestone", "key": "activated"}


def _problems(rows: ConditionRows) -> tuple[RowProblem, ...]:
    with pytest.raises(RowsInvalid) as caught:
        rows_check(rows)
    return caught.value.problems


def _single(**fields: Any) -> ConditionRows:
    return ConditionRows("single", (ConditionRow(**fields),))


# --- Every leaf type, both ways -------------------------------------------------------------

LEAVES: list[tuple[dict[str, Any], ConditionRow]] = [
    (
        {
            "type": "event_count",
            "event": "Report Created",
            "at_least": 3,
            "within": {"days": 7},
            "where": [PLAN_PRO],
        },
        ConditionRow(
            type="event_count",
            event="Report Created",
            at_least="3",
            within="7 days",
            filters=(FilterRow("plan", "eq", "pro"),),
        ),
    ),
    (
        {"type": "distinct_days", "event": "App Opened", "days": 5, "within": {"weeks": 2}},
        ConditionRow(type="distinct_days", event="App Opened", days="5", within="2 weeks"),
    ),
    (
        {"type": "streak", "event": "Check-in Completed", "periods": 4, "unit": "week"},
        ConditionRow(type="streak", event="Check-in Completed", periods="4", unit="week"),
    ),
    (
        {
            "type": "property_sum",
            "event": "Order Completed",
            "property": "order.total",
            "at_least": 499.5,
            "within": {"days": 30},
        },
        ConditionRow(
            type="property_sum",
            event="Order Completed",
            property="order.total",
            total="499.5",
            within="30 days",
        ),
    ),
    (
        {
            "type": "distinct_count",
            "event": "Teammate Invited",
            "of": "customer",
            "at_least": 3,
            "within": {"days": 1, "hours": 6},
        },
        ConditionRow(
            type="distinct_count",
            event="Teammate Invited",
            of="customer",
            at_least="3",
            within="1 day 6 hours",
        ),
    ),
    (
        {"type": "attribute", "trait": "plan", "op": "in", "value": ["pro", "team"]},
        ConditionRow(type="attribute", trait="plan", op="in", value="pro, team"),
    ),
    (MILESTONE, ConditionRow(type="milestone", key="activated")),
]


def test_the_builder_offers_every_leaf_type_the_parser_accepts() -> None:
    assert set(LEAF_TYPES) == set(_LEAVES)
    assert [leaf["type"] for leaf, _ in LEAVES] == list(LEAF_TYPES)


@pytest.mark.parametrize(("leaf", "row"), LEAVES, ids=LEAF_TYPES)
def test_a_leaf_reads_into_one_row_of_its_type(leaf: dict[str, Any], row: ConditionRow) -> None:
    assert condition_rows(leaf) == ConditionRows("single", (row,))


@pytest.mark.parametrize(("leaf", "row"), LEAVES, ids=LEAF_TYPES)
def test_a_row_writes_its_leaf_exactly(leaf: dict[str, Any], row: ConditionRow) -> None:
    written = rows_check(ConditionRows("single", (row,)))

    assert written == leaf
    assert same_json(written, leaf)


@pytest.mark.parametrize(("leaf", "row"), LEAVES, ids=LEAF_TYPES)
def test_a_row_writes_only_the_fields_of_its_type(leaf: dict[str, Any], row: ConditionRow) -> None:
    # given: every field written, whatever the type
    everything = ConditionRow(
        type=row.type,
        **{name: getattr(row, name) or "x" for name in ("event", "property", "of", "trait", "key")},
        **{name: getattr(row, name) or "1" for name in ("at_least", "days", "periods", "total")},
        unit=row.unit or "day",
        within=row.within or "1 day",
        op=row.op or "eq",
        value=row.value or "pro",
        filters=row.filters,
    )

    # when
    written = rows_condition(ConditionRows("single", (everything,)))

    # then: the type's fields, and a "within" where the type has one (the leaf may not)
    has_within = ["within"] if "within" in row_fields(row.type) else []
    assert set(written) == {"type", *leaf, *has_within}


def test_fields_per_type_follow_the_parser() -> None:
    assert {kind: row_fields(kind) for kind in (*LEAF_TYPES, "step")} == {
        "event_count": ("event", "at_least", "within", "filters"),
        "distinct_days": ("event", "days", "within", "filters"),
        "streak": ("event", "periods", "unit", "filters"),
        "property_sum": ("event", "property", "total", "within", "filters"),
        "distinct_count": ("event", "of", "at_least", "within", "filters"),
        "attribute": ("trait", "op", "value"),
        "milestone": ("key",),
        "step": ("event", "within", "filters"),
    }


# --- Combinators ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["all", "any"])
def test_all_and_any_read_into_one_row_per_condition_in_order(kind: str) -> None:
    condition = {"type": kind, "conditions": [COUNT, MILESTONE]}

    rows = condition_rows(condition)

    assert rows == ConditionRows(
        kind,  # type: ignore[arg-type]
        (
            ConditionRow(type="event_count", event="Report Created", at_least="3"),
            ConditionRow(type="milestone", key="activated"),
        ),
    )
    assert rows_check(rows) == condition


def test_a_group_of_one_stays_a_group() -> None:
    condition = {"type": "all", "conditions": [COUNT]}

    rows = condition_rows(condition)

    assert (rows.match, len(rows.rows)) == ("all", 1)
    assert rows_check(rows) == condition


def test_a_sequence_reads_into_one_step_row_per_step() -> None:
    condition = {
        "type": "sequence",
        "steps": [
            {"event": "Cart Viewed"},
            {"event": "Checkout Started", "within": {"hours": 1}},
            {
                "event": "Order Completed",
                "where": [{"property": "total", "op": "gte", "value": 50}],
                "within": {"days": 1},
            },
        ],
    }

    rows = condition_rows(condition)

    assert rows == ConditionRows(
        "sequence",
        (
            ConditionRow(event="Cart Viewed"),
            ConditionRow(event="Checkout Started", within="1 hour"),
            ConditionRow(
                event="Order Completed",
                within="1 day",
                filters=(FilterRow("total", "gte", "50"),),
            ),
        ),
    )
    assert rows_check(rows) == condition


def test_step_rows_ignore_a_type_and_the_fields_steps_do_not_have() -> None:
    rows = ConditionRows(
        "sequence",
        (ConditionRow(type="event_count", event="A", at_least="3"), ConditionRow(event="B")),
    )

    assert rows_check(rows) == {"type": "sequence", "steps": [{"event": "A"}, {"event": "B"}]}


def test_a_single_condition_takes_exactly_one_row() -> None:
    two = ConditionRows("single", (ConditionRow(**_count()), ConditionRow(**_count())))
    none = ConditionRows("single", ())

    assert _problems(two) == (
        RowProblem(
            None,
            MATCH_FIELD,
            "“This one condition” takes one row: choose “all of” or “any of” to combine 2 "
            "conditions, or delete the rows you do not need.",
        ),
    )
    assert _problems(none) == (RowProblem(None, MATCH_FIELD, "Add a condition row."),)


def _count(**fields: str) -> dict[str, str]:
    return {"type": "event_count", "event": "Report Created", "at_least": "3", **fields}


# --- Filters --------------------------------------------------------------------------------

FILTERS: list[tuple[dict[str, Any], FilterRow]] = [
    (PLAN_PRO, FilterRow("plan", "eq", "pro")),
    ({"property": "seats", "op": "eq", "value": 5}, FilterRow("seats", "eq", "5")),
    ({"property": "code", "op": "eq", "value": "42"}, FilterRow("code", "eq", '"42"')),
    ({"property": "code", "op": "eq", "value": "true"}, FilterRow("code", "eq", '"true"')),
    ({"property": "code", "op": "eq", "value": " padded "}, FilterRow("code", "eq", '" padded "')),
    ({"property": "trial", "op": "neq", "value": True}, FilterRow("trial", "neq", "true")),
    ({"property": "total", "op": "gt", "value": 49.99}, FilterRow("total", "gt", "49.99")),
    ({"property": "total", "op": "gte", "value": 50.0}, FilterRow("total", "gte", "50.0")),
    ({"property": "total", "op": "lt", "value": 10}, FilterRow("total", "lt", "10")),
    ({"property": "total", "op": "lte", "value": -1}, FilterRow("total", "lte", "-1")),
    (
        {"property": "plan", "op": "in", "value": ["pro", "team", 5, "5"]},
        FilterRow("plan", "in", 'pro, team, 5, "5"'),
    ),
    ({"property": "plan", "op": "in", "value": ["pro"]}, FilterRow("plan", "in", "pro")),
    (
        {"property": "city", "op": "in", "value": ["Paris, TX", "Rome"]},
        FilterRow("city", "in", '["Paris, TX", "Rome"]'),
    ),
    (
        {"property": "url", "op": "contains", "value": "/pricing"},
        FilterRow("url", "contains", "/pricing"),
    ),
    ({"property": "coupon", "op": "exists"}, FilterRow("coupon", "exists", "")),
    ({"property": "coupon", "op": "exists", "value": True}, FilterRow("coupon", "exists", "true")),
    (
        {"property": "coupon", "op": "exists", "value": False},
        FilterRow("coupon", "exists", "false"),
    ),
    (
        {"property": "order.total", "op": "gte", "value": 100},
        FilterRow("order.total", "gte", "100"),
    ),
]


@pytest.mark.parametrize(("test", "row"), FILTERS)
def test_a_filter_reads_into_a_sub_row_and_back_exactly(
    test: dict[str, Any], row: FilterRow
) -> None:
    condition = {**COUNT, "where": [test]}

    rows = condition_rows(condition)

    assert rows.rows[0].filters == (row,)
    written = rows_check(rows)
    assert same_json(written, condition)


@pytest.mark.parametrize(("test", "row"), FILTERS)
def test_a_trait_test_reads_the_same_way_as_a_filter(test: dict[str, Any], row: FilterRow) -> None:
    condition = {"type": "attribute", "trait": test["property"], "op": test["op"]}
    if "value" in test:
        condition["value"] = test["value"]

    rows = condition_rows(condition)

    assert (rows.rows[0].trait, rows.rows[0].op, rows.rows[0].value) == (
        row.property,
        row.op,
        row.value,
    )
    assert same_json(rows_check(rows), condition)


def test_blank_filter_sub_rows_are_left_out_and_the_rest_keep_their_order() -> None:
    rows = _single(
        **_count(),
        filters=(
            FilterRow(),
            FilterRow("plan", "eq", "pro"),
            FilterRow("  ", "", " "),
            FilterRow("seats", "gte", "5"),
        ),
    )

    assert rows_check(rows)["where"] == [PLAN_PRO, {"property": "seats", "op": "gte", "value": 5}]


def test_no_filters_write_no_where() -> None:
    assert "where" not in rows_check(_single(**_count(), filters=(FilterRow(),)))


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [
        ("pro", "eq", "pro"),
        ("  pro  ", "eq", "pro"),
        ("5", "eq", 5),
        ("5.5", "gt", 5.5),
        ('"5"', "eq", "5"),
        ("true", "eq", True),
        ("false", "exists", False),
        ("null", "eq", "null"),
        ("NaN", "eq", "NaN"),
        ("Infinity", "eq", "Infinity"),
        ("two words", "contains", "two words"),
        ("pro, team", "eq", "pro, team"),
        ("pro, team", "in", ["pro", "team"]),
        ("pro,,team,", "in", ["pro", "team"]),
        ('["a, b", 1]', "in", ["a, b", 1]),
        ("1, true, x", "in", [1, True, "x"]),
        ("7", "in", [7]),
        ("", "eq", None),
        ("   ", "in", None),
    ],
)
def test_values_read_as_json_when_they_are_json_else_as_text(
    text: str, op: str, value: object
) -> None:
    assert same_json(value_parse(text, op), value)


@pytest.mark.parametrize(
    "value",
    ["pro", "5", "true", "null", "", " x", "a, b", '"quoted"', "[1", 5, 5.0, -2.5, True, False,
     ["a", "b"], ["a, b"], [1, "1", True], [""], []],
)  # fmt: skip
def test_value_words_read_back_as_the_same_value(value: object) -> None:
    op = "in" if isinstance(value, list) and value else "eq"

    assert same_json(value_parse(value_words(value), op), value)


# --- Durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amounts"),
    [
        ("7 days", {"days": 7}),
        ("1 day", {"days": 1}),
        ("2 weeks", {"weeks": 2}),
        ("2w", {"weeks": 2}),
        ("36h", {"hours": 36}),
        ("36 hrs", {"hours": 36}),
        ("90 minutes", {"minutes": 90}),
        ("90 min", {"minutes": 90}),
        ("1d12h", {"days": 1, "hours": 12}),
        ("1 day, 6 hours", {"days": 1, "hours": 6}),
        ("2 Weeks 3 Days", {"weeks": 2, "days": 3}),
        ("1 day 2 days", {"days": 3}),
    ],
)
def test_durations_are_read_in_the_units_written(text: str, amounts: dict[str, int]) -> None:
    assert duration_parse(text) == amounts


@pytest.mark.parametrize("text", ["soon", "3 months", "1.5 days", "7", "days", "7 days later"])
def test_a_duration_that_does_not_read_as_one_is_refused_on_its_field(text: str) -> None:
    rows = ConditionRows("all", (ConditionRow(**_count()), ConditionRow(**_count(within=text))))

    assert duration_parse(text) is None
    assert _problems(rows) == (RowProblem(1, "within", DURATION_ERROR),)


@pytest.mark.parametrize(
    ("amounts", "words"),
    [
        ({"days": 7}, "7 days"),
        ({"weeks": 1}, "1 week"),
        ({"hours": 6, "days": 1}, "1 day 6 hours"),
        ({"minutes": 1, "weeks": 2, "hours": 1, "days": 3}, "2 weeks 3 days 1 hour 1 minute"),
    ],
)
def test_durations_are_written_largest_unit_first_and_read_back(
    amounts: dict[str, int], words: str
) -> None:
    assert duration_words(amounts) == words
    assert duration_parse(words) == amounts


# --- What the builder cannot show -----------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        (
            {"type": "all", "conditions": [COUNT, {"type": "any", "conditions": [MILESTONE]}]},
            "Condition 2 is itself an “any of” group, and the builder shows only one level of "
            "grouping.",
        ),
        (
            {"type": "any", "conditions": [{"type": "all", "conditions": [COUNT]}]},
            "Condition 1 is itself an “all of” group, and the builder shows only one level of "
            "grouping.",
        ),
        (
            {
                "type": "all",
                "conditions": [MILESTONE, {"type": "sequence", "steps": [{"event": "A"}]}],
            },
            "Condition 2 is a sequence of steps inside a group; the builder shows a sequence only "
            "as the whole condition.",
        ),
        (
            {**COUNT, "within": {"days": 1.5}},
            'The condition has a “within” value the builder cannot show exactly: {"days": 1.5}.',
        ),
        (
            {"type": "all", "conditions": [MILESTONE, {**COUNT, "event": " Padded"}]},
            'Condition 2 has a “event” value the builder cannot show exactly: " Padded".',
        ),
        (
            {**COUNT, "where": []},
            "The condition has a “where” value the builder cannot show exactly: [].",
        ),
        (
            {**COUNT, "where": [{"property": "plan", "op": "exists", "value": None}]},
            "The condition has a “where” value the builder cannot show exactly: "
            '[{"property": "plan", "op": "exists", "value": null}].',
        ),
        (
            {"type": "sequence", "steps": [{"event": "A", "type": "step"}]},
            "Step 1 has a field the builder does not know: “type”.",
        ),
        (
            {**COUNT, "at_lest": 3},
            "The condition has a field the builder does not know: “at_lest”.",
        ),
        (["not", "an", "object"], 'The condition is not a JSON object with a "type".'),
        ({"type": "not_a_type"}, 'The builder does not know the condition type "not_a_type".'),
        ({"type": "all", "conditions": []}, "The condition has no list of conditions."),
        ({"type": "all", "conditions": ["x"]}, "Condition 1 is not a condition the builder knows."),
    ],
)
def test_a_condition_the_builder_cannot_show_says_why(condition: object, reason: str) -> None:
    with pytest.raises(Unrepresentable) as caught:
        condition_rows(condition)

    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "condition",
    [
        {**COUNT, "at_least": 3.0},
        {**COUNT, "within": {"hours": 6, "days": 1}},
        {"type": "property_sum", "event": "Order", "property": "total", "at_least": 1e21},
        {"type": "attribute", "trait": "code", "op": "eq", "value": "[1"},
    ],
)
def test_what_the_builder_shows_it_gives_back_identically(condition: dict[str, Any]) -> None:
    written = rows_check(condition_rows(condition))

    assert same_json(written, condition)


def test_same_json_tells_numbers_from_floats_and_booleans() -> None:
    assert same_json({"a": 1, "b": [True]}, {"b": [True], "a": 1})
    assert not same_json({"a": 3}, {"a": 3.0})
    assert not same_json({"a": 1}, {"a": True})
    assert not same_json({"a": object()}, {"a": object()})


# --- Errors back to rows and fields ---------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        (
            ConditionRows(
                "all", (ConditionRow(**_count()), ConditionRow(**_count(at_least="1.5")))
            ),
            RowProblem(1, "at_least", "Must be a whole number of at least 1."),
        ),
        (
            ConditionRows("any", (ConditionRow(**_count()), ConditionRow(**_count(at_least="")))),
            RowProblem(1, "at_least", "This field is required."),
        ),
        (
            _single(**_count(at_least="three")),
            RowProblem(0, "at_least", "Must be a whole number of at least 1."),
        ),
        (
            _single(**_count(at_least="20000")),
            RowProblem(0, "at_least", "Must be at most 10000."),
        ),
        (
            _single(**_count(type="")),
            RowProblem(0, "type", "Choose what to measure."),
        ),
        (
            _single(**_count(event="")),
            RowProblem(0, "event", "This field is required."),
        ),
        (
            _single(**_count(within="0 days")),
            RowProblem(0, "within", "Days: must be a whole number of at least 1."),
        ),
        (
            _single(type="distinct_days", event="A", days="0"),
            RowProblem(0, "days", "Must be a whole number of at least 1."),
        ),
        (
            _single(type="streak", event="A", periods="4"),
            RowProblem(0, "unit", "This field is required."),
        ),
        (
            _single(type="streak", event="A", periods="", unit="day"),
            RowProblem(0, "periods", "This field is required."),
        ),
        (
            _single(type="property_sum", event="Order", property="total", total="-5"),
            RowProblem(0, "total", "Must be a number greater than 0."),
        ),
        (
            _single(type="property_sum", event="Order", property="a..b", total="5"),
            RowProblem(
                0, "property", 'Must be a property name or dotted path such as "order.total".'
            ),
        ),
        (
            _single(type="distinct_count", event="A", of="", at_least="2"),
            RowProblem(0, "of", "This field is required."),
        ),
        (
            _single(type="distinct_count", event="A", of=".x", at_least="2"),
            RowProblem(0, "of", 'Must be "customer" or a property path such as "plan".'),
        ),
        (
            _single(type="attribute", trait="plan", value="pro"),
            RowProblem(0, "op", "This field is required."),
        ),
        (
            _single(type="attribute", trait="seats", op="gte", value="many"),
            RowProblem(0, "value", "Must be a number."),
        ),
        (
            _single(type="attribute", trait="plan", op="in", value='[1, {"a": 2}]'),
            RowProblem(0, "value", "Value 2: must be a string, number or boolean."),
        ),
        (
            _single(type="attribute", trait="plan", op="exists", value="yes"),
            RowProblem(0, "value", "Must be true or false."),
        ),
        (
            _single(type="milestone", key=""),
            RowProblem(0, "key", "This field is required."),
        ),
        (
            _single(**_count(), filters=(FilterRow(), FilterRow("seats", "gt", "many"))),
            RowProblem(0, "filter1_value", "Must be a number."),
        ),
        (
            _single(**_count(), filters=(FilterRow("plan", "", "pro"),)),
            RowProblem(0, "filter0_op", "This field is required."),
        ),
        (
            _single(**_count(), filters=(FilterRow("", "eq", "pro"),)),
            RowProblem(0, "filter0_property", "This field is required."),
        ),
        (
            _single(**_count(), filters=(FilterRow("plan", "in", ","),)),
            RowProblem(
                0, "filter0_value", "Must be a non-empty list of strings, numbers or booleans."
            ),
        ),
        (
            _single(**_count(), filters=tuple(FilterRow(f"p{n}", "exists") for n in range(21))),
            RowProblem(0, None, "Must have at most 20 filters."),
        ),
        (
            ConditionRows("sequence", (ConditionRow(event="A", within="1 day"),)),
            RowProblem(
                0,
                "within",
                "Leave this blank on the first step: there is no previous step to be within.",
            ),
        ),
        (
            ConditionRows("sequence", (ConditionRow(event="A"), ConditionRow(event=""))),
            RowProblem(1, "event", "This field is required."),
        ),
        (
            ConditionRows("all", ()),
            RowProblem(None, MATCH_FIELD, "Add at least one condition row."),
        ),
        (
            ConditionRows("sequence", ()),
            RowProblem(None, MATCH_FIELD, "Add at least one step row."),
        ),
        (
            ConditionRows("all", tuple(ConditionRow(**_count()) for _ in range(50))),
            RowProblem(49, None, "A condition may have at most 50 nodes."),
        ),
    ],
)
def test_a_refusal_lands_on_its_row_and_field_in_plain_words(
    rows: ConditionRows, problem: RowProblem
) -> None:
    assert _problems(rows) == (problem,)


def test_a_path_outside_the_rows_is_kept_whole() -> None:
    rows = ConditionRows("all", (ConditionRow(**_count()),))

    assert problem_at(ConditionError("$", "must be an object"), rows) == RowProblem(
        None, None, "$: must be an object."
    )
    assert problem_at(ConditionError("$.all[3].event", "is required"), rows) == RowProblem(
        None, None, "$.all[3].event: is required."
    )


def test_valid_rows_write_a_condition_the_parser_accepts() -> None:
    rows = ConditionRows(
        "all",
        tuple(ConditionRow(type=leaf["type"], **_fields(row)) for leaf, row in LEAVES),
    )

    written = rows_check(rows)

    assert written == {"type": "all", "conditions": [leaf for leaf, _ in LEAVES]}
    parse_condition(written)


def _fields(row: ConditionRow) -> dict[str, Any]:
    return {
        name: getattr(row, name)
        for name in ("event", "at_least", "days", "periods", "unit", "property", "total", "of",
                     "within", "trait", "op", "value", "key", "filters")
    }  # fmt: skip


def test_rows_naming_a_milestone_are_found_to_place_a_dependency_problem() -> None:
    rows = ConditionRows(
        "any",
        (
            ConditionRow(type="milestone", key="activated"),
            ConditionRow(**_count()),
            ConditionRow(type="milestone", key=" activated "),
            ConditionRow(type="milestone", key="onboarded"),
        ),
    )

    assert rows_naming(rows, "activated") == [0, 2]
    assert rows_naming(rows, "nowhere") == []
    assert (
        rows_naming(ConditionRows("sequence", (ConditionRow(key="activated"),)), "activated") == []
    )
