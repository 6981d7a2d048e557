"""Milestone conditions as builder rows and back: the pure translation behind the admin's
condition builder (``milestones.condition_editor``). No ORM, no Django.

The builder shows a condition one level deep: a single leaf condition, ``all`` / ``any`` of
leaf conditions, or a ``sequence`` of steps. Each leaf (or step) is one ``ConditionRow`` of
text fields, as a marketer types them; its property filters are ``FilterRow`` sub-rows.

- ``condition_rows`` reads a stored condition into rows, or raises ``Unrepresentable`` saying
  why in a sentence (a group inside a group, or a value the fields cannot show exactly). Rows
  it returns give back the identical JSON, types included (``3`` is not ``3.0``), so saving a
  page untouched never changes a condition and never makes a new version.
- ``rows_condition`` writes rows as condition JSON. It only translates: a blank field is left
  out, so ``parse_condition`` says "is required" about that field, and text that is not a
  number is passed on as text for the parser to refuse. What the parser cannot judge (a
  duration that does not read as one, several rows for a single condition) is refused here
  with ``RowsInvalid``.
- ``rows_check`` writes and validates; ``problem_at`` maps a ``ConditionError`` path such as
  ``$.all[1].where[0].value`` back to the row and field it is about, in plain words.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, NamedTuple, TypeAlias

from milestones.conditions import ConditionError, parse_condition
from milestones.conditions.values import is_number

Match: TypeAlias = Literal["single", "all", "any", "sequence"]
MATCHES: Final[tuple[Match, ...]] = ("single", "all", "any", "sequence")
#: Every leaf type ``parse.py`` accepts, in the order the builder offers them.
LEAF_TYPES: Final = (
    "event_count",
    "distinct_days",
    "streak",
    "property_sum",
    "distinct_count",
    "attribute",
    "milestone",
)
#: The kind of a row of a sequence: a step has an event, filters and a "within", no type.
STEP: Final = "step"
#: ``RowProblem.field`` of a problem with the rows as a whole (how they combine, how many).
MATCH_FIELD: Final = "match"
FILTER_PARTS: Final = ("property", "op", "value")
DURATION_ERROR: Final = (
    'Write a duration such as "7 days", "36 hours", "2 weeks" or "1 day 6 hours".'
)

_DURATION_UNITS: Final = (
    ("weeks", "week"),
    ("days", "day"),
    ("hours", "hour"),
    ("minutes", "minute"),
)
_DURATION_PART: Final = re.compile(
    r"(?P<amount>\d+)\s*(?P<unit>weeks?|w|days?|d|hours?|hrs?|h|minutes?|mins?|m)(?![a-z])",
    re.IGNORECASE,
)
_UNIT_LETTERS: Final = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}
_ROW_PATH: Final = re.compile(r"^\$\.(?:all|any|sequence)\[(\d+)\](.*)$")
_FILTER_PATH: Final = re.compile(r"^\.where\[(\d+)\](?:\.(property|op|value)\b)?(.*)$")
_FIELD_PATH: Final = re.compile(r"^\.(\w+)(.*)$")
_REWORDED: Final = {
    "the first step has no previous step to be within": (
        "leave this blank on the first step: there is no previous step to be within"
    ),
}


# --- The rows -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FilterRow:
    """One property filter of a row: ``plan`` ``eq`` ``pro``."""

    property: str = ""
    op: str = ""
    value: str = ""

    def is_blank(self) -> bool:
        return not (self.property.strip() or self.op.strip() or self.value.strip())


@dataclasses.dataclass(frozen=True, slots=True)
class ConditionRow:
    """One leaf condition (or sequence step) as the builder's text fields; a field a type
    does not use is ignored. ``total`` is a property sum's ``at_least`` (a number that may
    have decimals), kept apart from the counts' ``at_least`` so each can explain itself."""

    type: str = ""
    event: str = ""
    at_least: str = ""
    days: str = ""
    periods: str = ""
    unit: str = ""
    property: str = ""
    total: str = ""
    of: str = ""
    within: str = ""
    trait: str = ""
    op: str = ""
    value: str = ""
    key: str = ""
    filters: tuple[FilterRow, ...] = ()


#: The text fields of a row, by name (the admin form's field names).
ROW_FIELDS: Final = tuple(
    field.name for field in dataclasses.fields(ConditionRow) if field.name != "filters"
)


@dataclasses.dataclass(frozen=True, slots=True)
class ConditionRows:
    """How the rows combine, and the rows in order."""

    match: Match
    rows: tuple[ConditionRow, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class RowProblem:
    """A refusal placed on a row (an index of ``ConditionRows.rows``) and a field of it.

    ``row`` None: the rows as a whole (``field`` is ``MATCH_FIELD``, or None for the whole
    condition); ``field`` None on a row: the row as a whole.
    """

    row: int | None
    field: str | None
    message: str


class RowsInvalid(ValueError):
    def __init__(self, problems: Sequence[RowProblem]) -> None:
        super().__init__("; ".join(problem.message for problem in problems))
        self.problems = tuple(problems)


class Unrepresentable(ValueError):
    """A condition the builder cannot show; ``reason`` says why, as a sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def filter_field(slot: int, part: str) -> str:
    """The form field of a filter sub-row's part: ``filter0_property``."""
    return f"filter{slot}_{part}"


# --- Which JSON field is which row field ----------------------------------------------------


class _Spec(NamedTuple):
    json: str  # the field in the condition JSON
    field: str  # the row field
    kind: Literal["text", "number", "duration", "value", "filters"]


_EVENT: Final = _Spec("event", "event", "text")
_WITHIN: Final = _Spec("within", "within", "duration")
_WHERE: Final = _Spec("where", "filters", "filters")
_SPECS: Final[dict[str, tuple[_Spec, ...]]] = {
    "event_count": (_EVENT, _Spec("at_least", "at_least", "number"), _WITHIN, _WHERE),
    "distinct_days": (_EVENT, _Spec("days", "days", "number"), _WITHIN, _WHERE),
    "streak": (_EVENT, _Spec("periods", "periods", "number"), _Spec("unit", "unit", "text"),
               _WHERE),
    "property_sum": (_EVENT, _Spec("property", "property", "text"),
                     _Spec("at_least", "total", "number"), _WITHIN, _WHERE),
    "distinct_count": (_EVENT, _Spec("of", "of", "text"), _Spec("at_least", "at_least", "number"),
                       _WITHIN, _WHERE),
    "attribute": (_Spec("trait", "trait", "text"), _Spec("op", "op", "text"),
                  _Spec("value", "value", "value")),
    "milestone": (_Spec("key", "key", "text"),),
    STEP: (_EVENT, _WITHIN, _WHERE),
}  # fmt: skip


def row_fields(kind: str) -> tuple[str, ...]:
    """The row fields a leaf type (or ``"step"``) uses, in the order the JSON has them."""
    return tuple(spec.field for spec in _SPECS.get(kind, ()))


# --- Condition JSON to rows -----------------------------------------------------------------


def condition_rows(condition: object) -> ConditionRows:
    """The rows that show ``condition``; raises ``Unrepresentable`` when no rows give back
    the identical JSON."""
    rows = _shape(condition)
    try:
        rebuilt = rows_condition(rows)
    except RowsInvalid as exc:  # every field was checked on the way in; kept as a guard
        raise Unrepresentable("The builder cannot show this condition exactly.") from exc
    if not same_json(rebuilt, condition):
        raise Unrepresentable("The builder cannot show this condition exactly.")
    return rows


def _shape(condition: object) -> ConditionRows:
    if not isinstance(condition, Mapping):
        raise Unrepresentable('The condition is not a JSON object with a "type".')
    kind = condition.get("type")
    if kind in ("all", "any"):
        children = _items(condition, "conditions")
        return ConditionRows(
            "all" if kind == "all" else "any",
            tuple(_child_row(child, index) for index, child in enumerate(children)),
        )
    if kind == "sequence":
        steps = _items(condition, "steps")
        return ConditionRows(
            "sequence",
            tuple(_leaf_row(STEP, step, f"Step {index + 1}") for index, step in enumerate(steps)),
        )
    if kind in LEAF_TYPES:
        return ConditionRows("single", (_leaf_row(str(kind), condition, "The condition"),))
    raise Unrepresentable(f"The builder does not know the condition type {json.dumps(kind)}.")


def _items(condition: Mapping[str, Any], name: str) -> list[Any]:
    items = condition.get(name)
    if not isinstance(items, list) or not items:
        raise Unrepresentable(f"The condition has no list of {name}.")
    return items


def _child_row(child: object, index: int) -> ConditionRow:
    what = f"Condition {index + 1}"
    kind = child.get("type") if isinstance(child, Mapping) else None
    if kind in ("all", "any"):
        group = "“all of”" if kind == "all" else "“any of”"
        raise Unrepresentable(
            f"{what} is itself an {group} group, and the builder shows only one level of grouping."
        )
    if kind == "sequence":
        raise Unrepresentable(
            f"{what} is a sequence of steps inside a group; the builder shows a sequence only "
            "as the whole condition."
        )
    if kind not in LEAF_TYPES:
        raise Unrepresentable(f"{what} is not a condition the builder knows.")
    return _leaf_row(str(kind), child, what)


def _leaf_row(kind: str, node: object, what: str) -> ConditionRow:
    """The row of one leaf (or step), checked to give back exactly ``node``."""
    if not isinstance(node, Mapping):
        raise Unrepresentable(f"{what} is not a JSON object.")
    values: dict[str, str] = {}
    filters: tuple[FilterRow, ...] = ()
    for spec in _SPECS[kind]:
        if spec.json not in node:
            continue
        value = node[spec.json]
        if spec.kind == "filters":
            filters = _filter_rows(value)
        else:
            values[spec.field] = _words(spec, value)
    row = ConditionRow(type="" if kind == STEP else kind, filters=filters, **values)
    problems: list[RowProblem] = []
    rebuilt = _node(row, kind, 0, problems)
    if problems or not same_json(rebuilt, node):
        raise Unrepresentable(_difference(what, kind, node, rebuilt))
    return row


def _filter_rows(value: object) -> tuple[FilterRow, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(
        FilterRow(
            property=_text_words(item.get("property", "")),
            op=_text_words(item.get("op", "")),
            value=value_words(item["value"]) if "value" in item else "",
        )
        for item in value
        if isinstance(item, Mapping)
    )


def _words(spec: _Spec, value: object) -> str:
    if spec.kind == "number":
        return json.dumps(value) if is_number(value) else _text_words(value)
    if spec.kind == "duration":
        return duration_words(value)
    if spec.kind == "value":
        return value_words(value)
    return _text_words(value)


def _text_words(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _difference(what: str, kind: str, node: Mapping[str, Any], rebuilt: Mapping[str, Any]) -> str:
    known = {spec.json for spec in _SPECS[kind]} | ({"type"} if kind != STEP else set())
    for key in node:
        if key not in known:
            return f"{what} has a field the builder does not know: “{key}”."
        if key not in rebuilt or not same_json(node[key], rebuilt[key]):
            shown = json.dumps(node[key], ensure_ascii=False)
            return f"{what} has a “{key}” value the builder cannot show exactly: {shown}."
    return f"{what} cannot be shown exactly by the builder."


# --- Rows to condition JSON -----------------------------------------------------------------


def rows_condition(rows: ConditionRows) -> dict[str, Any]:
    """The condition JSON the rows describe (not yet validated: see ``rows_check``)."""
    problems: list[RowProblem] = []
    condition: dict[str, Any]
    if rows.match == "single":
        if len(rows.rows) != 1:
            raise RowsInvalid([RowProblem(None, MATCH_FIELD, _single_problem(len(rows.rows)))])
        condition = _node(rows.rows[0], rows.rows[0].type, 0, problems)
    elif rows.match == "sequence":
        steps = [_node(row, STEP, index, problems) for index, row in enumerate(rows.rows)]
        condition = {"type": "sequence", "steps": steps}
    else:
        children = [_node(row, row.type, index, problems) for index, row in enumerate(rows.rows)]
        condition = {"type": rows.match, "conditions": children}
    if problems:
        raise RowsInvalid(problems)
    return condition


def _single_problem(count: int) -> str:
    if count == 0:
        return "Add a condition row."
    return (
        f"“This one condition” takes one row: choose “all of” or “any of” to combine "
        f"{count} conditions, or delete the rows you do not need."
    )


def _node(row: ConditionRow, kind: str, index: int, problems: list[RowProblem]) -> dict[str, Any]:
    """One row as a leaf (or step); what cannot be read goes to ``problems``."""
    node: dict[str, Any] = {}
    if kind != STEP and row.type.strip():
        node["type"] = row.type.strip()
    for spec in _SPECS.get(kind, ()):
        if spec.kind == "filters":
            where = [_filter_node(test) for test in row.filters if not test.is_blank()]
            if where:
                node["where"] = where
            continue
        text = getattr(row, spec.field).strip()
        if not text:
            continue
        if spec.kind == "duration":
            amounts = duration_parse(text)
            if amounts is None:
                problems.append(RowProblem(index, spec.field, DURATION_ERROR))
                continue
            node[spec.json] = amounts
        elif spec.kind == "number":
            node[spec.json] = number_parse(text)
        elif spec.kind == "value":
            value = value_parse(text, row.op.strip())
            if value is not None:
                node[spec.json] = value
        else:
            node[spec.json] = text
    return node


def _filter_node(test: FilterRow) -> dict[str, Any]:
    node: dict[str, Any] = {}
    if test.property.strip():
        node["property"] = test.property.strip()
    if test.op.strip():
        node["op"] = test.op.strip()
    value = value_parse(test.value, test.op.strip())
    if value is not None:
        node["value"] = value
    return node


# --- Text to values and back ----------------------------------------------------------------

_NOT_JSON: Final = object()


def _loads(text: str) -> object:
    """The JSON ``text`` reads as, or ``_NOT_JSON``; ``NaN`` and ``Infinity`` are not JSON."""
    try:
        return json.loads(text, parse_constant=_refuse)
    except ValueError:
        return _NOT_JSON


def _refuse(name: str) -> object:
    raise ValueError(name)


def number_parse(text: str) -> object:
    """A number as written (``3``, ``2.5``), or the text itself for the parser to refuse."""
    value = _loads(text.strip())
    return value if is_number(value) else text.strip()


def value_parse(text: str, op: str) -> object:
    """A filter or trait value: JSON when it reads as a string, number, boolean, list or
    object (``5``, ``true``, ``"42"``), else the text itself (``pro``); None when blank.
    For ``in``, a JSON list, or comma separated values each read the same way."""
    text = text.strip()
    if not text:
        return None
    if op == "in":
        whole = _loads(text)
        if isinstance(whole, list):
            return whole
        return [_scalar_parse(part.strip()) for part in text.split(",") if part.strip()]
    return _scalar_parse(text)


def _scalar_parse(text: str) -> object:
    value = _loads(text)
    return text if value is _NOT_JSON or value is None else value


def value_words(value: object) -> str:
    """A value as ``value_parse`` reads it back: text that would read as something else is
    quoted, a list is comma separated when that reads back the same."""
    if isinstance(value, list):
        return _list_words(value)
    if isinstance(value, str) and value and value == value.strip() and _loads(value) is _NOT_JSON:
        return value
    return json.dumps(value, ensure_ascii=False)


def _list_words(items: list[Any]) -> str:
    words = [value_words(item) for item in items]
    simple = all(isinstance(item, str | bool) or is_number(item) for item in items) and all(
        word and "," not in word for word in words
    )
    return ", ".join(words) if items and simple else json.dumps(items, ensure_ascii=False)


def duration_parse(text: str) -> dict[str, int] | None:
    """``"2 weeks"``, ``"36h"``, ``"1 day 6 hours"`` as ``{"weeks": 2}``, ``{"hours": 36}``,
    ``{"days": 1, "hours": 6}``, in the units written; None if it does not read as one."""
    cleaned = text.strip().replace(",", " ")
    parts = list(_DURATION_PART.finditer(cleaned))
    if not parts or _DURATION_PART.sub("", cleaned).strip():
        return None
    amounts: dict[str, int] = {}
    for part in parts:
        unit = _UNIT_LETTERS[part["unit"][0].lower()]
        amounts[unit] = amounts.get(unit, 0) + int(part["amount"])
    return amounts


def duration_words(value: object) -> str:
    """A ``within`` object as ``duration_parse`` reads it back (``"1 day 6 hours"``); one it
    cannot show comes out as JSON, which does not read as a duration."""
    units = {unit for unit, _ in _DURATION_UNITS}
    if not (
        isinstance(value, Mapping)
        and value
        and set(value) <= units
        and all(type(amount) is int and amount >= 0 for amount in value.values())
    ):
        return json.dumps(value, ensure_ascii=False)
    return " ".join(
        f"{value[unit]} {word if value[unit] == 1 else unit}"
        for unit, word in _DURATION_UNITS
        if unit in value
    )


def same_json(left: object, right: object) -> bool:
    """The same JSON, types included: ``3`` is not ``3.0``, ``1`` is not ``true``."""
    try:
        return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)
    except (TypeError, ValueError):
        return False


# --- Validation and errors back to rows -----------------------------------------------------


def rows_check(rows: ConditionRows) -> dict[str, Any]:
    """The validated condition JSON the rows describe; raises ``RowsInvalid`` with each
    problem placed on its row and field."""
    condition = rows_condition(rows)
    try:
        parse_condition(condition)
    except ConditionError as exc:
        raise RowsInvalid([problem_at(exc, rows)]) from exc
    return condition


def problem_at(error: ConditionError, rows: ConditionRows) -> RowProblem:
    """Where a ``ConditionError`` about ``rows_condition(rows)`` belongs, in plain words."""
    if error.path in ("$.conditions", "$.steps"):
        noun = "step" if error.path == "$.steps" else "condition"
        return RowProblem(None, MATCH_FIELD, f"Add at least one {noun} row.")
    found = _ROW_PATH.match(error.path)
    if found is not None and rows.match != "single":
        index, rest = int(found[1]), found[2]
    elif rows.match == "single" and error.path.startswith("$.") and rows.rows:
        index, rest = 0, error.path[1:]
    else:
        index, rest = len(rows.rows), ""
    if index >= len(rows.rows):  # not about a row: kept whole
        return RowProblem(None, None, sentence(f"{error.path}: {error.message}"))
    row = rows.rows[index]
    kind = STEP if rows.match == "sequence" else row.type
    field, detail = _field_at(rest, row, kind)
    return RowProblem(index, field, _plain(error.message, field, detail))


def _field_at(rest: str, row: ConditionRow, kind: str) -> tuple[str | None, str]:
    """The row field a path inside a leaf is about, and what is left of the path."""
    if not rest:
        return None, ""
    found = _FILTER_PATH.match(rest)
    if found is not None:
        slot = _filter_slot(row, int(found[1]))
        return filter_field(slot, found[2] or "property"), found[3] if found[2] else ""
    named = _FIELD_PATH.match(rest)
    if named is None:
        return None, ""
    if named[1] == "type":
        return "type", ""
    spec = next((spec for spec in _SPECS.get(kind, ()) if spec.json == named[1]), None)
    if spec is None or spec.kind == "filters":
        return None, ""
    return spec.field, named[2]


def _filter_slot(row: ConditionRow, position: int) -> int:
    """The sub-row of the ``position``-th filter written (blank sub-rows are left out)."""
    used = [slot for slot, test in enumerate(row.filters) if not test.is_blank()]
    return used[position] if position < len(used) else position


def _plain(message: str, field: str | None, detail: str) -> str:
    if message == "is required":
        return "Choose what to measure." if field == "type" else "This field is required."
    text = _REWORDED.get(message, message)
    item = re.match(r"^\[(\d+)\]", detail)
    named = re.match(r"^\.(\w+)", detail)
    if item is not None:
        text = f"value {int(item[1]) + 1}: {text}"
    elif named is not None:
        text = f"{named[1]}: {text}"
    return sentence(text)


def sentence(text: str) -> str:
    """``text`` with a capital first letter and a full stop."""
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else f"{text}."


def rows_naming(rows: ConditionRows, key: str) -> list[int]:
    """The rows that wait for the milestone ``key`` (to place a dependency problem)."""
    if rows.match == "sequence":
        return []
    return [
        index
        for index, row in enumerate(rows.rows)
        if row.type == "milestone" and row.key.strip() == key
    ]
