"""Compile a version's condition to one PostgreSQL statement that reads history per subject.

The backfill asks this module for a ``Plan``; the plan's statement takes one chunk of subject
ids and returns, per subject and per *leaf* of the condition tree, the numbers the pure core
(``milestones.conditions.evaluate``) would compute from the same events: the earliest moment
the leaf was reached and the best count or sum. ``Plan.result`` rebuilds the core's
``Result`` (labels, progress, composites) from those numbers, so what is stored is
exactly what the live evaluator stores.

How the core's rules map to SQL (one ``LATERAL`` subquery per leaf and subject, on the
``(customer_id|account_id, name, occurred_at)`` indexes, rows arriving in time order):

- Range: ``occurred_at BETWEEN start AND end`` (both inclusive), as the live evaluator
  chooses them (see ``Plan.statement``): up to the deadline, and up to the horizon (now plus
  the ingest clock tolerance) for late achievements; each leaf reports both.
- Rolling windows: an aggregate over ``RANGE BETWEEN <within> PRECEDING AND CURRENT ROW``
  is the tally over ``[t - within, t]`` with every event at ``t`` included (peers), which is
  the core's "score read after every point at that moment". Without ``within`` the frame
  starts unbounded. ``achieved_at`` is the earliest such ``t`` whose score reaches the target.
- Distinct days and distinct values (no window): the earliest moment of each day or value;
  the target is reached at the N-th smallest of those moments.
- Property filters compile only where PostgreSQL's ``jsonb`` semantics are the core's
  (``values.py``): a path is a chain of ``->`` (text keys never index arrays), JSON ``null``
  is absent, ``jsonb`` equality compares numbers by value and never equals a boolean.

Numbers are where SQL and Python can part: the core holds a decimal with a ``.`` as a binary
float, and sums them exactly as such. So the statement also returns, per subject, an error
bound for float sums and a flag for numbers whose float reading could compare or collide
differently from their decimal value (more than 15 significant digits, beyond 1e15 for
integers, outside the normal float range). The backfill hands such subjects to the Python
evaluator, so the stored answer is the core's in every case.

What does not compile raises ``NotCompilable`` and the whole backfill runs in Python:
streaks, sequences, attributes, other milestones, windowed distinct counts, ``contains`` a
number, and literals the checks above cannot vouch for.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final, TypeAlias

from milestones.conditions import (
    AllOf,
    AnyOf,
    Condition,
    DistinctCount,
    DistinctDays,
    EventCount,
    Filter,
    Progress,
    PropertySum,
    Result,
)
from milestones.conditions.evaluate import _counted, _number, _within
from milestones.conditions.tree import CUSTOMER
from milestones.conditions.windows import Reached
from milestones.models import Anchor

Leaf: TypeAlias = EventCount | PropertySum | DistinctDays | DistinctCount

#: Floats with at most this many significant digits keep their decimal order as floats.
_SAFE_DIGITS: Final = 15
#: A float is correctly rounded to within half a unit in the last place: ``|x| * 2**-53``.
#: Twice that bounds the error of each summand generously.
_ULP: Final = Fraction(1, 2**52)


class NotCompilable(Exception):
    """The condition (or the anchor) has a part SQL cannot evaluate exactly."""


@dataclasses.dataclass(frozen=True, slots=True)
class LeafNumbers:
    """What the statement found for one leaf of one subject."""

    achieved_at: dt.datetime | None
    best: Fraction
    error: Fraction = Fraction(0)  # bound on |Python sum - SQL sum| for float amounts
    gap: Fraction | None = None  # min |window sum - target| over the leaf's points
    is_unsafe: bool = False  # a number the core reads differently from its decimal


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    """What the statement needs to know about the version besides the condition."""

    version_id: int
    unit_is_account: bool
    anchor: str
    anchor_event: str
    window: dt.timedelta | None


@dataclasses.dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    params: dict[str, Any]


# --- Compiling ----------------------------------------------------------------------------


def leaves(condition: Condition) -> tuple[Leaf, ...]:
    """The leaves of the tree in pre-order; raises ``NotCompilable`` for any other node."""
    match condition:
        case AllOf(children) | AnyOf(children):
            return tuple(leaf for child in children for leaf in leaves(child))
        case EventCount() | PropertySum():
            _check_filters(condition.where)
            return (condition,)
        case DistinctDays() | DistinctCount():
            if condition.within is not None:
                raise NotCompilable(f"{type(condition).__name__} with a window")
            _check_filters(condition.where)
            return (condition,)
        case _:
            raise NotCompilable(f"{type(condition).__name__} condition")


def _check_filters(where: tuple[Filter, ...]) -> None:
    for test in where:
        values = test.value if isinstance(test.value, tuple) else (test.value,)
        if test.op == "contains" and any(_is_number(v) for v in values):
            raise NotCompilable("contains with a number")
        for value in values:
            if _is_number(value) and not _safe_literal(value):
                raise NotCompilable(f"number {value!r} in a filter")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _safe_literal(value: int | float | str | bool) -> bool:
    if isinstance(value, int):
        return abs(value) < 10**_SAFE_DIGITS
    if not isinstance(value, float) or not math.isfinite(value):
        return False
    if value != 0 and not 1e-300 < abs(value) < 1e300:
        return False
    digits = Decimal(repr(value)).normalize().as_tuple().digits
    return len(digits) <= _SAFE_DIGITS


class Plan:
    """The compiled statement of one version, and the way back to the core's ``Result``."""

    def __init__(
        self, shape: Shape, condition: Condition, zones: Callable[[], Mapping[str, str]]
    ) -> None:
        """``zones`` maps customer time zone names to the zone to use in SQL; it is called
        only when a leaf counts local days of customers."""
        if shape.anchor not in (Anchor.SIGNUP, Anchor.EVENT):
            raise NotCompilable(f"{shape.anchor} anchor")
        self.shape = shape
        self.condition = condition
        self.leaves = leaves(condition)
        self.needs_zone = not shape.unit_is_account and any(
            isinstance(leaf, DistinctDays) for leaf in self.leaves
        )
        self.zones = dict(zones()) if self.needs_zone else {}

    # -- the statement ---------------------------------------------------------------------

    def statement(
        self,
        *,
        after: int,
        through: int,
        horizon: dt.datetime,
        tables: Mapping[str, str],
    ) -> Statement:
        """Subjects with ``after < id <= through`` that have a clock (a fresh anchor or a
        stored row), by id. Columns (see ``COLUMNS``): the subject, its fresh anchor, the
        range the evaluator judges it on and the profile, then seven columns per leaf: the
        moment and best score up to ``end`` and up to ``last``, and the float error bound,
        the gap to the target and the unsafe flag over the whole range.

        The range follows ``evaluation._Run._apply``: an achieved row is refined up to its
        achievement (from an earlier anchor only without a deadline); a missed row is
        judged up to ``horizon`` (late achievements); an open row up to its deadline, and up
        to ``horizon`` for what happened after a deadline it misses now."""
        builder = _Builder(self.shape, tables)
        builder.params.update(after=after, through=through, horizon=horizon)
        lateral = "\n".join(
            f"CROSS JOIN LATERAL ({builder.leaf(leaf, index)}) AS l{index}"
            for index, leaf in enumerate(self.leaves)
        )
        columns = ", ".join(
            f"l{i}.at, l{i}.best, l{i}.at_last, l{i}.best_last, l{i}.error, l{i}.gap, l{i}.unsafe"
            for i in range(len(self.leaves))
        )
        sql = f"""
WITH subjects AS (
    {builder.subjects(self.zones if self.needs_zone else None)}
), clocked AS (
    SELECT s.*,
           CASE s.stored_state
                WHEN 'missed' THEN s.stored_anchor
                WHEN 'achieved' THEN
                    CASE WHEN %(window)s::interval IS NULL AND s.fresh_anchor < s.stored_anchor
                         THEN s.fresh_anchor ELSE s.stored_anchor END
                ELSE COALESCE(s.fresh_anchor, s.stored_anchor) END AS anchor_at,
           CASE WHEN s.stored_state IN ('missed', 'achieved') OR s.fresh_anchor IS NULL
                THEN s.stored_deadline
                ELSE s.fresh_anchor + %(window)s::interval END AS deadline_at
    FROM subjects s
), ranged AS (
    SELECT c.*,
           CASE c.stored_state
                WHEN 'achieved' THEN c.stored_achieved
                WHEN 'missed' THEN %(horizon)s::timestamptz
                ELSE LEAST(%(horizon)s::timestamptz, c.deadline_at) END AS range_end,
           CASE WHEN c.stored_state = 'achieved' THEN c.stored_achieved
                ELSE %(horizon)s::timestamptz END AS range_last
    FROM clocked c
    WHERE c.anchor_at IS NOT NULL
), subject AS (
    SELECT r.*, LEAST(r.anchor_at, r.range_end) AS range_start FROM ranged r
)
SELECT a.subject_id, a.fresh_anchor, a.range_end, a.zone IS NOT NULL,
       a.plan, a.region, a.status, a.created_at, a.lifecycle_stage, {columns}
FROM subject a
{lateral}
ORDER BY a.subject_id
"""  # noqa: S608 - identifiers are model table names; every value is a parameter
        builder.params["window"] = self.shape.window
        return Statement(sql, builder.params)

    # -- back to the core's result ---------------------------------------------------------

    def numbers(
        self, row: Sequence[Any], offset: int
    ) -> tuple[list[LeafNumbers], list[LeafNumbers]]:
        """The leaves' numbers up to ``end`` and up to ``last``, from a result row whose
        leaf columns start at ``offset``."""
        by_end: list[LeafNumbers] = []
        by_last: list[LeafNumbers] = []
        for index in range(len(self.leaves)):
            at, best, at_last, best_last, error, gap, unsafe = row[
                offset + 7 * index : offset + 7 * index + 7
            ]
            bound = Fraction(error or 0) * _ULP
            gap_ = None if gap is None else Fraction(gap)
            for found, moment, score in ((by_end, at, best), (by_last, at_last, best_last)):
                found.append(
                    LeafNumbers(
                        achieved_at=moment,
                        best=max(Fraction(0), Fraction(score or 0)),
                        error=bound,
                        gap=gap_,
                        is_unsafe=bool(unsafe),
                    )
                )
        return by_end, by_last

    def result(self, numbers: Sequence[LeafNumbers]) -> Result | None:
        """The core's result for these numbers, or ``None`` when SQL's decimal arithmetic
        cannot vouch for it (the caller evaluates that subject in Python)."""
        if any(leaf.is_unsafe for leaf in numbers):
            return None
        results = iter(
            [_leaf_result(leaf, found) for leaf, found in zip(self.leaves, numbers, strict=True)]
        )
        try:
            return _assemble(self.condition, results)
        except _Uncertain:
            return None


class _Uncertain(Exception):
    pass


def _leaf_result(leaf: Leaf, found: LeafNumbers) -> Result | None:
    match leaf:
        case EventCount():
            reached = Reached(found.achieved_at, found.best)
            return _counted(reached, leaf.at_least, f"{leaf.event}{_within(leaf.within)}")
        case DistinctDays():
            noun = f"days with {leaf.event}{_within(leaf.within)}"
            return _counted(Reached(found.achieved_at, found.best), leaf.days, noun)
        case DistinctCount():
            noun = "customers" if leaf.of == CUSTOMER else f"values of {leaf.of}"
            label = f"{noun} with {leaf.event}{_within(leaf.within)}"
            return _counted(Reached(found.achieved_at, found.best), leaf.at_least, label)
        case PropertySum():
            return _sum_result(leaf, found)


def _sum_result(leaf: PropertySum, found: LeafNumbers) -> Result | None:
    """The core's ``_property_sum`` for these numbers, or ``None`` if float rounding (up to
    ``found.error``) could change the outcome, the moment, the count or the label."""
    if found.error and found.gap is not None and found.gap <= found.error:
        return None
    target = Fraction(leaf.at_least)
    total = math.ceil(target)

    def shown(best: Fraction) -> tuple[int, str]:
        done = total if found.achieved_at else max(0, min(math.floor(best), total - 1))
        label = (
            f"{_number(min(best, target))} of {_number(target)} {leaf.property}"
            f" from {leaf.event}{_within(leaf.within)}"
        )
        return done, label

    done, label = shown(found.best)
    if found.error and not found.achieved_at:
        low = shown(max(Fraction(0), found.best - found.error))
        high = shown(found.best + found.error)
        if low != (done, label) or high != (done, label):
            return None
    return Result(found.achieved_at, Progress(done, total, label))


def _assemble(condition: Condition, results: Any) -> Result:
    """The core's ``_all``/``_any`` over the leaf results, consumed in pre-order."""
    match condition:
        case AllOf(children):
            found = tuple(_assemble(child, results) for child in children)
            moments = [child.achieved_at for child in found if child.achieved_at is not None]
            total = len(found)
            achieved_at = max(moments) if len(moments) == total else None
            progress = Progress(len(moments), total, f"{len(moments)} of {total} conditions")
            return Result(achieved_at, progress, found)
        case AnyOf(children):
            found = tuple(_assemble(child, results) for child in children)
            moments = [child.achieved_at for child in found if child.achieved_at is not None]
            best = max(found, key=lambda child: Fraction(child.progress.done, child.progress.total))
            return Result(min(moments, default=None), best.progress, found)
        case _:
            result = next(results)
            if result is None:
                raise _Uncertain
            return result  # type: ignore[no-any-return]


# --- SQL fragments ------------------------------------------------------------------------


class _Builder:
    """Builds the statement's fragments; every value becomes a named parameter."""

    def __init__(self, shape: Shape, tables: Mapping[str, str]) -> None:
        self.shape = shape
        self.tables = tables
        self.params: dict[str, Any] = {"version": shape.version_id}
        self.column = "account_id" if shape.unit_is_account else "customer_id"

    def param(self, value: object, cast: str = "") -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"%({name})s{cast}"

    def subjects(self, zones: Mapping[str, str] | None) -> str:
        event = self.tables["event"]
        if self.shape.anchor == Anchor.EVENT:
            name = self.param(self.shape.anchor_event)
            fresh = (
                f"(SELECT min(e.occurred_at) FROM {event} e"  # noqa: S608
                f" WHERE e.{self.column} = s.id AND e.name = {name})"
            )
        else:
            fresh = "s.created_at"
        if self.shape.unit_is_account:
            profile = "s.plan, s.region, s.status, s.created_at, NULL::text AS lifecycle_stage"
            zone = "'UTC'::text"
            table = self.tables["account"]
        else:
            profile = "s.plan, s.region, s.status, s.created_at, s.lifecycle_stage"
            table = self.tables["customer"]
            if zones is None:
                zone = "'UTC'::text"
            else:
                names = self.param(sorted(zones), "::text[]")
                values = self.param([zones[n] for n in sorted(zones)], "::text[]")
                zone = (
                    f"(SELECT z.zone FROM unnest({names}, {values}) AS z(name, zone)"  # noqa: S608
                    " WHERE z.name = s.time_zone)"
                )
        return f"""SELECT s.id AS subject_id, {profile}, {zone} AS zone,
           {fresh} AS fresh_anchor,
           p.state AS stored_state, p.anchor_at AS stored_anchor,
           p.deadline_at AS stored_deadline, p.achieved_at AS stored_achieved
    FROM {table} s
    LEFT JOIN {self.tables["progress"]} p
           ON p.version_id = %(version)s AND p.subject_id = s.id
          AND p.subject_id > %(after)s AND p.subject_id <= %(through)s
    WHERE s.id > %(after)s AND s.id <= %(through)s"""  # noqa: S608

    # -- leaves ----------------------------------------------------------------------------

    def _events(self, leaf: Leaf) -> str:
        """The subject's events of the leaf's name in its range, in time order. The range is
        a row comparison on the (subject, name, time) index: the planner cannot use it on the
        (customer, time) index, which would otherwise look cheaper to it (it cannot tell how
        many events fall in a range computed per subject) and read every event of the
        subject to keep one name."""
        name = self.param(leaf.event, "::text")
        key = "(e.name::text, e.occurred_at)"
        return (
            f"FROM {self.tables['event']} e WHERE e.{self.column} = a.subject_id"
            f" AND e.name = {name}"
            f" AND {key} >= ({name}, a.range_start) AND {key} <= ({name}, a.range_last)"
        )

    def leaf(self, leaf: Leaf, index: int) -> str:
        match leaf:
            case EventCount():
                return self._rolling(leaf, "count(*)", "TRUE", None, Fraction(leaf.at_least))
            case PropertySum():
                value = _numeric(self._path(leaf.property))
                target = Fraction(leaf.at_least)
                return self._rolling(leaf, f"sum({value})", f"{value} IS NOT NULL", value, target)
            case DistinctDays():
                key = "(e.occurred_at AT TIME ZONE a.zone)::date::text"
                return self._firsts(leaf, leaf.days, key, "TRUE", "FALSE")
            case DistinctCount():
                if leaf.of == CUSTOMER:
                    return self._firsts(leaf, leaf.at_least, "e.customer_id::text", "TRUE", "FALSE")
                found = self._path(leaf.of)
                kind = f"jsonb_typeof({found})"
                has_key = f"{kind} IN ('string', 'number', 'boolean')"
                return self._firsts(leaf, leaf.at_least, found, has_key, _unsafe(found))

    def _rolling(
        self,
        leaf: EventCount | PropertySum,
        aggregate: str,
        has_value: str,
        value: str | None,
        target: Fraction,
    ) -> str:
        """Score every matching event by the tally over its window; reached at the first
        event whose score meets ``target``."""
        frame = "UNBOUNDED PRECEDING"
        if leaf.within is not None:
            frame = f"{self.param(leaf.within, '::interval')} PRECEDING"
        target_sql = self.param(_decimal(target), "::numeric")
        matched, unsafe = self._filters(leaf.where)
        point = f"({matched}) AND ({has_value})"
        if value is None:
            error = "0"
            gap = "NULL::numeric"
        else:
            unsafe = f"({unsafe}) OR ({_out_of_range(value)})"
            error = "sum(abs(w.value)) FILTER (WHERE w.point AND scale(w.value) > 0)"
            gap = f"min(abs(w.score - {target_sql})) FILTER (WHERE w.point)"
        reached = f"w.point AND w.score >= {target_sql}"
        by_end = "w.occurred_at <= a.range_end"
        return f"""SELECT min(w.occurred_at) FILTER (WHERE {reached} AND {by_end}) AS at,
               max(w.score) FILTER (WHERE w.point AND {by_end}) AS best,
               min(w.occurred_at) FILTER (WHERE {reached}) AS at_last,
               max(w.score) FILTER (WHERE w.point) AS best_last,
               {error} AS error, {gap} AS gap, COALESCE(bool_or(w.unsafe), FALSE) AS unsafe
        FROM (SELECT e.occurred_at, {point} AS point, ({unsafe}) AS unsafe,
                     {value or "NULL::numeric"} AS value,
                     {aggregate} FILTER (WHERE {point}) OVER (
                         ORDER BY e.occurred_at RANGE BETWEEN {frame} AND CURRENT ROW
                     ) AS score
              {self._events(leaf)}) w"""  # noqa: S608

    def _firsts(
        self, leaf: DistinctDays | DistinctCount, target: int, key: str, has_key: str, unsafe: str
    ) -> str:
        """The earliest moment of each distinct key; reached at the ``target``-th of them."""
        matched, filters_unsafe = self._filters(leaf.where)
        point = f"({matched}) AND ({has_key})"
        nth = self.param(target, "::int")
        return f"""SELECT (array_agg(f.first ORDER BY f.first)
                   FILTER (WHERE f.first IS NOT NULL))[{nth}] AS at,
               count(f.first) AS best,
               (array_agg(f.first_last ORDER BY f.first_last))[{nth}] AS at_last,
               count(f.first_last) AS best_last,
               0 AS error, NULL::numeric AS gap, COALESCE(bool_or(f.unsafe), FALSE) AS unsafe
        FROM (SELECT CASE WHEN {point} THEN {key} END AS key,
                     min(e.occurred_at) FILTER (
                         WHERE {point} AND e.occurred_at <= a.range_end
                     ) AS first,
                     min(e.occurred_at) FILTER (WHERE {point}) AS first_last,
                     bool_or(({filters_unsafe}) OR ({point} AND ({unsafe}))) AS unsafe
              {self._events(leaf)}
              GROUP BY 1) f"""  # noqa: S608

    # -- filters ---------------------------------------------------------------------------

    def _path(self, path: str) -> str:
        """The value at a dotted path, SQL NULL when absent or JSON null (``lookup``)."""
        chain = "".join(f" -> {self.param(key, '::text')}" for key in path.split("."))
        return f"NULLIF(e.properties{chain}, 'null'::jsonb)"

    def _filters(self, where: tuple[Filter, ...]) -> tuple[str, str]:
        """``(matches all, has a number the core may read differently)`` as SQL."""
        matched, unsafe = ["TRUE"], ["FALSE"]
        for test in where:
            found = self._path(test.property)
            matched.append(self._holds(test, found))
            values = test.value if isinstance(test.value, tuple) else (test.value,)
            if test.op in ("gt", "gte", "lt", "lte") or any(_is_number(v) for v in values):
                unsafe.append(_unsafe(found))
        return " AND ".join(matched), " OR ".join(unsafe)

    def _holds(self, test: Filter, found: str) -> str:
        """``values.holds`` in SQL; ``found`` is NULL when absent."""
        match test.op:
            case "exists":
                return f"(({found}) IS NOT NULL) = {self.param(bool(test.value), '::boolean')}"
            case "eq":
                return f"COALESCE({found} = {self._json(test.value)}, FALSE)"
            case "neq":
                return f"NOT COALESCE({found} = {self._json(test.value)}, FALSE)"
            case "in":
                items = test.value if isinstance(test.value, tuple) else (test.value,)
                literal = self.param([json.dumps(item) for item in items], "::jsonb[]")
                return f"COALESCE({found} = ANY({literal}), FALSE)"
            case "contains":
                expected = self._json(test.value)
                text = self.param(test.value, "::text")
                contains_text = (
                    f"strpos({found} #>> '{{}}', {text}) > 0"
                    if isinstance(test.value, str)
                    else "FALSE"
                )
                return (
                    f"CASE jsonb_typeof({found}) WHEN 'string' THEN {contains_text}"
                    f" WHEN 'array' THEN {found} @> jsonb_build_array({expected})"
                    " ELSE FALSE END"
                )
            case _:
                operator = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[test.op]
                literal = self.param(_decimal(Fraction(str(test.value))), "::numeric")
                return (
                    f"(jsonb_typeof({found}) = 'number'"
                    f" AND ({found})::numeric {operator} {literal})"
                )

    def _json(self, value: object) -> str:
        return self.param(json.dumps(value), "::jsonb")


def _numeric(found: str) -> str:
    return f"CASE WHEN jsonb_typeof({found}) = 'number' THEN ({found})::numeric END"


def _unsafe(found: str) -> str:
    """A number whose float reading (the core's, for decimals with a point) may order or
    collide differently from its decimal value."""
    value = f"({found})::numeric"
    digits = f"length(ltrim(replace(trim_scale(abs({value}))::text, '.', ''), '0'))"
    return (
        f"(jsonb_typeof({found}) = 'number' AND CASE WHEN scale({value}) = 0"
        f" THEN abs({value}) >= 1e{_SAFE_DIGITS}"
        f" ELSE {digits} > {_SAFE_DIGITS} OR {_out_of_range(value)} END)"
    )


def _out_of_range(value: str) -> str:
    """A decimal with a point outside the normal float range (it would round to 0 or inf)."""
    return f"(scale({value}) > 0 AND {value} <> 0 AND NOT abs({value}) BETWEEN 1e-300 AND 1e300)"


def _decimal(value: Fraction) -> Decimal:
    """The exact decimal of a binary fraction (every float is one)."""
    numerator, denominator = value.numerator, value.denominator
    twos = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    fives = 0
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    if denominator != 1:
        raise NotCompilable(f"{value} has no exact decimal")
    scale = max(twos, fives)
    scaled = numerator * 2 ** (scale - twos) * 5 ** (scale - fives)
    return Decimal(scaled).scaleb(-scale)
