"""Reading event properties and traits, and the property-filter operators.

JSON semantics, not Python's: ``true`` is not the number 1 and ``1`` equals ``1.0``.
A value of ``null`` counts as absent. Paths are dotted (``order.total``) and walk nested
objects only; a key that itself contains a dot cannot be addressed.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Final, TypeGuard

from milestones.conditions.tree import Filter, FilterValue

MISSING: Final = object()


def lookup(data: Mapping[str, object], path: str) -> object:
    """The value at a dotted path; ``MISSING`` if a step is absent, ``null`` or not an object."""
    value: object = data
    for key in path.split("."):
        if not isinstance(value, Mapping) or value.get(key) is None:
            return MISSING
        value = value[key]
    return value


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite JSON number; booleans are not numbers."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def same(left: object, right: object) -> bool:
    """JSON equality: numbers compare by value, booleans only equal booleans."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return left == right


def distinct_key(value: object) -> Hashable | None:
    """A key under which equal JSON scalars collide (1 and 1.0) and others don't (1 and true).

    Objects, lists and absent values have no key: they are not counted as distinct values.
    """
    if isinstance(value, bool):
        return ("bool", value)
    if is_number(value):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return None


def matches(test: Filter, data: Mapping[str, object]) -> bool:
    return holds(test.op, test.value, lookup(data, test.property))


def holds(op: str, expected: FilterValue, found: object) -> bool:
    """Whether ``found`` (possibly ``MISSING``) passes ``op`` against ``expected``.

    ``neq`` is exactly ``not eq``, so an absent value is "not equal". Comparisons need a
    number on both sides. ``contains`` is a case-sensitive substring test on strings and a
    membership test on lists. ``exists`` with ``false`` matches absent values.
    """
    if op == "exists":
        return (found is not MISSING) == expected
    if op == "neq":
        return not same(found, expected)
    if op == "eq":
        return same(found, expected)
    if op == "in":
        return isinstance(expected, tuple) and any(same(found, item) for item in expected)
    if op == "contains":
        return _contains(found, expected)
    return _compare(op, found, expected)


def _contains(found: object, expected: FilterValue) -> bool:
    if isinstance(found, str):
        return isinstance(expected, str) and expected in found
    if isinstance(found, list):
        return any(same(item, expected) for item in found)
    return False


def _compare(op: str, found: object, expected: FilterValue) -> bool:
    if not (is_number(found) and is_number(expected)):
        return False
    if op == "gt":
        return found > expected
    if op == "gte":
        return found >= expected
    if op == "lt":
        return found < expected
    return found <= expected
