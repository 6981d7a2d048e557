"""Validate a condition tree decoded from JSON and build the frozen dataclasses of ``tree.py``.

Every refusal is a ``ConditionError`` whose path reads like JSON path: ``$`` is the root, a
field is ``.name``, a list item is ``[i]``. Children of a composite are addressed by the
composite's type (``$.all[1]``, ``$.any[0]``, ``$.sequence[2]``) so that the path reads as the
tree a marketer sees; an error about the list itself names the field (``$.conditions``).
Unknown fields are refused too, so a typo (``"at_lest"``) never silently changes a milestone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Final, TypeGuard, cast

from milestones.conditions.tree import (
    CUSTOMER,
    FILTER_OPS,
    MAX_DEPTH,
    MAX_FILTERS,
    MAX_IN_VALUES,
    MAX_N,
    MAX_NAME_LENGTH,
    MAX_NODES,
    AllOf,
    AnyOf,
    Attribute,
    Condition,
    ConditionError,
    DistinctCount,
    DistinctDays,
    EventCount,
    Filter,
    FilterOp,
    FilterValue,
    MilestoneAchieved,
    PropertySum,
    Scalar,
    Step,
    StepSequence,
    Streak,
)
from milestones.conditions.values import is_number

_PATH = re.compile(r"[^.]+(\.[^.]+)*")
_DURATION_UNITS: Final = ("weeks", "days", "hours", "minutes")
_NUMBER_OPS: Final = frozenset({"gt", "gte", "lt", "lte"})
_SCALAR = "a string, number or boolean"


def parse_condition(tree: object) -> Condition:
    """The condition a JSON tree describes; raises ``ConditionError`` naming the first bad node."""
    return _Parser().condition(tree, "$", depth=1)


@dataclasses.dataclass(frozen=True, slots=True)
class _Node:
    """A JSON object being read, with its location for error messages."""

    fields: Mapping[str, object]
    path: str

    def at(self, name: str) -> str:
        return f"{self.path}.{name}"

    def required(self, name: str) -> object:
        if self.fields.get(name) is None:
            raise ConditionError(self.at(name), "is required")
        return self.fields[name]

    def optional(self, name: str) -> object:
        return self.fields.get(name)

    def only(self, allowed: frozenset[str], what: str) -> None:
        unknown = sorted(set(self.fields) - allowed)
        if unknown:
            raise ConditionError(self.at(unknown[0]), f"is not a field of {what}")


def _node(tree: object, path: str, what: str) -> _Node:
    if not isinstance(tree, Mapping) or not all(isinstance(key, str) for key in tree):
        raise ConditionError(path, f"must be {what}")
    return _Node(cast(Mapping[str, object], tree), path)


class _Parser:
    """Walks the tree once, counting nodes and depth so the limits hold before recursing."""

    def __init__(self) -> None:
        self.nodes = 0

    def enter(self, path: str, depth: int) -> None:
        self.nodes += 1
        if depth > MAX_DEPTH:
            raise ConditionError(path, f"conditions may nest at most {MAX_DEPTH} levels deep")
        if self.nodes > MAX_NODES:
            raise ConditionError(path, f"a condition may have at most {MAX_NODES} nodes")

    def condition(self, tree: object, path: str, depth: int) -> Condition:
        self.enter(path, depth)
        node = _node(tree, path, 'an object with a "type"')
        kind = node.required("type")
        if not isinstance(kind, str) or kind not in _FIELDS:
            raise ConditionError(node.at("type"), f"must be one of {', '.join(sorted(_FIELDS))}")
        node.only(_FIELDS[kind] | {"type"}, kind)
        if kind in ("all", "any"):
            return self.composite(node, kind, depth)
        if kind == "sequence":
            return self.sequence(node, depth)
        return _LEAVES[kind](node)

    def composite(self, node: _Node, kind: str, depth: int) -> Condition:
        items = _non_empty_list(node, "conditions", "conditions")
        children = tuple(
            self.condition(item, f"{node.path}.{kind}[{index}]", depth + 1)
            for index, item in enumerate(items)
        )
        return AllOf(children) if kind == "all" else AnyOf(children)

    def sequence(self, node: _Node, depth: int) -> StepSequence:
        items = _non_empty_list(node, "steps", "steps")
        steps = []
        for index, item in enumerate(items):
            path = f"{node.path}.sequence[{index}]"
            self.enter(path, depth + 1)
            steps.append(_step(_node(item, path, 'an object with an "event"'), first=index == 0))
        return StepSequence(tuple(steps))


def _non_empty_list(node: _Node, name: str, what: str) -> list[object]:
    items = node.required(name)
    if not isinstance(items, list) or not items:
        raise ConditionError(node.at(name), f"must be a non-empty list of {what}")
    return items


def _step(node: _Node, *, first: bool) -> Step:
    node.only(frozenset({"event", "where", "within"}), "a sequence step")
    if first and node.optional("within") is not None:
        raise ConditionError(node.at("within"), "the first step has no previous step to be within")
    return Step(event=_event(node), where=_where(node), within=_within(node))


# --- Leaf kinds ---------------------------------------------------------------------------


def _event_count(node: _Node) -> EventCount:
    return EventCount(
        event=_event(node),
        at_least=_whole(node, "at_least"),
        where=_where(node),
        within=_within(node),
    )


def _distinct_days(node: _Node) -> DistinctDays:
    return DistinctDays(
        event=_event(node), days=_whole(node, "days"), where=_where(node), within=_within(node)
    )


def _streak(node: _Node) -> Streak:
    unit = node.required("unit")
    if unit not in ("day", "week"):
        raise ConditionError(node.at("unit"), 'must be "day" or "week"')
    return Streak(
        event=_event(node),
        periods=_whole(node, "periods"),
        unit="day" if unit == "day" else "week",
        where=_where(node),
    )


def _property_sum(node: _Node) -> PropertySum:
    at_least = node.required("at_least")
    if not is_number(at_least) or at_least <= 0:
        raise ConditionError(node.at("at_least"), "must be a number greater than 0")
    return PropertySum(
        event=_event(node),
        property=_property_path(node.required("property"), node.at("property")),
        at_least=at_least,
        where=_where(node),
        within=_within(node),
    )


def _distinct_count(node: _Node) -> DistinctCount:
    of = node.required("of")
    if of != CUSTOMER and not _is_path(of):
        raise ConditionError(node.at("of"), 'must be "customer" or a property path such as "plan"')
    return DistinctCount(
        event=_event(node),
        of=cast(str, of),
        at_least=_whole(node, "at_least"),
        where=_where(node),
        within=_within(node),
    )


def _attribute(node: _Node) -> Attribute:
    return Attribute(_comparison(node, "trait"))


def _milestone(node: _Node) -> MilestoneAchieved:
    return MilestoneAchieved(_name(node, "key", "milestone key"))


_EVENT_FIELDS: Final = frozenset({"event", "where", "within"})
_FIELDS: Final = {
    "event_count": _EVENT_FIELDS | {"at_least"},
    "distinct_days": _EVENT_FIELDS | {"days"},
    "streak": frozenset({"event", "where", "periods", "unit"}),
    "property_sum": _EVENT_FIELDS | {"property", "at_least"},
    "distinct_count": _EVENT_FIELDS | {"of", "at_least"},
    "attribute": frozenset({"trait", "op", "value"}),
    "milestone": frozenset({"key"}),
    "all": frozenset({"conditions"}),
    "any": frozenset({"conditions"}),
    "sequence": frozenset({"steps"}),
}
_LEAVES: Final[dict[str, Callable[[_Node], Condition]]] = {
    "event_count": _event_count,
    "distinct_days": _distinct_days,
    "streak": _streak,
    "property_sum": _property_sum,
    "distinct_count": _distinct_count,
    "attribute": _attribute,
    "milestone": _milestone,
}


# --- Fields -------------------------------------------------------------------------------


def _event(node: _Node) -> str:
    return _name(node, "event", "event name")


def _name(node: _Node, field: str, what: str) -> str:
    value = node.required(field)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
        raise ConditionError(
            node.at(field), f"must be a non-empty {what} of at most {MAX_NAME_LENGTH} characters"
        )
    return value


def _whole(node: _Node, field: str) -> int:
    return _whole_value(node.required(field), node.at(field))


def _whole_value(value: object, path: str) -> int:
    if not is_number(value) or not float(value).is_integer() or value < 1:
        raise ConditionError(path, "must be a whole number of at least 1")
    if value > MAX_N:
        raise ConditionError(path, f"must be at most {MAX_N}")
    return int(value)


def _is_scalar(value: object) -> TypeGuard[Scalar]:
    return isinstance(value, str | bool) or is_number(value)


def _is_path(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _PATH.fullmatch(value) is not None


def _property_path(value: object, path: str) -> str:
    if not _is_path(value):
        raise ConditionError(path, 'must be a property name or dotted path such as "order.total"')
    return value


def _within(node: _Node) -> dt.timedelta | None:
    value = node.optional("within")
    return None if value is None else _duration(value, node.at("within"))


def _duration(value: object, path: str) -> dt.timedelta:
    what = 'a duration such as {"days": 7}'
    duration = _node(value, path, what)
    if not duration.fields:
        raise ConditionError(path, f"must be {what}")
    unknown = sorted(set(duration.fields) - set(_DURATION_UNITS))
    if unknown:
        raise ConditionError(
            duration.at(unknown[0]), "is not a duration unit (use weeks, days, hours or minutes)"
        )
    amounts = {
        unit: _whole_value(duration.fields[unit], duration.at(unit))
        for unit in _DURATION_UNITS
        if unit in duration.fields
    }
    return dt.timedelta(**amounts)


# --- Property filters ---------------------------------------------------------------------


def _where(node: _Node) -> tuple[Filter, ...]:
    value = node.optional("where")
    if value is None:
        return ()
    path = node.at("where")
    if not isinstance(value, list):
        raise ConditionError(path, "must be a list of property filters")
    if len(value) > MAX_FILTERS:
        raise ConditionError(path, f"must have at most {MAX_FILTERS} filters")
    return tuple(_filter(item, f"{path}[{index}]") for index, item in enumerate(value))


def _filter(item: object, path: str) -> Filter:
    node = _node(item, path, 'an object with "property" and "op"')
    node.only(frozenset({"property", "op", "value"}), "a property filter")
    return _comparison(node, "property")


def _comparison(node: _Node, subject: str) -> Filter:
    """``{subject, op, value}``, shared by property filters and the ``attribute`` condition."""
    target = _property_path(node.required(subject), node.at(subject))
    op = node.required("op")
    if op not in FILTER_OPS:
        raise ConditionError(node.at("op"), f"must be one of {', '.join(FILTER_OPS)}")
    op = cast(FilterOp, op)
    return Filter(target, op, _operand(op, node.optional("value"), node.at("value")))


def _operand(op: FilterOp, value: object, path: str) -> FilterValue:
    if op == "exists":
        return _exists_operand(value, path)
    if value is None:
        raise ConditionError(path, "is required")
    if op in _NUMBER_OPS:
        if not is_number(value):
            raise ConditionError(path, "must be a number")
        return value
    if op == "in":
        return _in_operand(value, path)
    if not _is_scalar(value):
        raise ConditionError(path, f"must be {_SCALAR}")
    return value


def _exists_operand(value: object, path: str) -> bool:
    if value is None:
        return True
    if not isinstance(value, bool):
        raise ConditionError(path, "must be true or false")
    return value


def _in_operand(value: object, path: str) -> tuple[Scalar, ...]:
    if not isinstance(value, list) or not value:
        raise ConditionError(path, "must be a non-empty list of strings, numbers or booleans")
    if len(value) > MAX_IN_VALUES:
        raise ConditionError(path, f"must have at most {MAX_IN_VALUES} values")
    for index, item in enumerate(value):
        if not _is_scalar(item):
            raise ConditionError(f"{path}[{index}]", f"must be {_SCALAR}")
    return tuple(value)
