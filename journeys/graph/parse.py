"""``graph_parse``: validate a journey's step list decoded from JSON and build a ``Graph``.

Every refusal is a ``GraphError`` whose path reads like JSON path (``$[2].branches[0].when``).
Checks run in this order, so the first error reported is the most local one:

1. each step on its own: an object with a unique ``key``, a known ``type`` and exactly the
   fields its type allows, each of the right shape (unknown fields are refused, so a typo never
   silently changes a journey);
2. references: every ``next``, ``else``, ``timeout_next`` and variant ``next`` names a step, and
   every engagement condition names a ``send`` step;
3. every path ends: the graph from the first step has no loop. Every step but ``exit`` must name
   a next step, so a path that never reaches an exit step is exactly a path with a loop;
4. every step is reachable from the first;
5. an engagement condition's send step comes before its branch on every path (it dominates it).

Trait comparisons and event filters are milestone property filters: they are parsed by
``milestones.conditions.parse_condition`` so both apps accept and mean exactly the same thing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, cast
from urllib.parse import urlsplit

from journeys.graph.steps import (
    ENGAGEMENTS,
    EXIT_OUTCOMES,
    MILESTONE_STATES,
    AllOf,
    AnyOf,
    Branch,
    BranchStep,
    Condition,
    DurationWait,
    Engagement,
    EngagementIs,
    ExitOutcome,
    ExitStep,
    Graph,
    GraphError,
    LocalTimeWait,
    MilestoneIs,
    MilestoneState,
    Not,
    NotifyStep,
    SendStep,
    SplitStep,
    StageIs,
    Step,
    TraitIs,
    UntilEvent,
    UntilMilestone,
    UntilWait,
    UpdateStep,
    Variant,
    step_edges,
)
from milestones.conditions import Attribute, ConditionError, EventCount, parse_condition

MAX_STEPS: Final = 100
MAX_TEMPLATES: Final = 4
MIN_VARIANTS: Final = 2
MAX_VARIANTS: Final = 10
MAX_WEIGHT: Final = 10_000
MAX_BRANCHES: Final = 20
MAX_CONDITION_DEPTH: Final = 8
MAX_TRAITS: Final = 50
MAX_WAIT: Final = dt.timedelta(days=365)
KEY: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: Template and milestone keys are Django slugs of at most 100 characters, stages of 32.
_SLUG: Final = re.compile(r"[-a-zA-Z0-9_]+")
_LOCAL_TIME: Final = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]")
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DURATION_UNITS: Final = {"days": 1440, "hours": 60, "minutes": 1}
_UNTIL_STATES: Final = tuple(state for state in MILESTONE_STATES if state != "not_started")
_RECIPIENTS: Final = ("account_owner", "sales", "support")
_TYPES: Final = ("branch", "exit", "notify", "send", "split", "update", "wait")
_WAIT_KINDS: Final = ("duration", "until_local_time", "until")
_CONDITION_KINDS: Final = {
    "trait": frozenset({"trait", "op", "value"}),
    "milestone": frozenset({"milestone", "state"}),
    "engagement": frozenset({"engagement", "step"}),
    "stage": frozenset({"stage"}),
    "all": frozenset({"all"}),
    "any": frozenset({"any"}),
    "not": frozenset({"not"}),
}


def graph_parse(raw: object) -> Graph:
    """The graph a JSON step list describes; raises ``GraphError`` naming the first bad item."""
    if not isinstance(raw, list) or not raw:
        raise GraphError("$", "must be a non-empty list of steps")
    if len(raw) > MAX_STEPS:
        raise GraphError("$", f"must have at most {MAX_STEPS} steps")
    parser = _Parser()
    steps = tuple(parser.step(item, index) for index, item in enumerate(raw))
    positions = {step.key: index for index, step in enumerate(steps)}
    _check_references(steps, positions, parser.engagements)
    order = _check_acyclic(steps, positions)
    _check_reachable(steps, set(order))
    _check_engagements_come_first(steps, positions, order, parser.engagements)
    return Graph(steps)


@dataclasses.dataclass(frozen=True, slots=True)
class _Node:
    """A JSON object being read, with its location for error messages."""

    fields: Mapping[str, object]
    path: str

    def at(self, name: str) -> str:
        return f"{self.path}.{name}"

    def has(self, name: str) -> bool:
        return self.fields.get(name) is not None

    def required(self, name: str) -> object:
        if not self.has(name):
            raise GraphError(self.at(name), "is required")
        return self.fields[name]

    def only(self, allowed: frozenset[str], what: str) -> None:
        unknown = [name for name in self.fields if name not in allowed]
        if unknown:
            raise GraphError(self.at(unknown[0]), f"is not a field of {what}")


def _node(value: object, path: str, what: str) -> _Node:
    if not isinstance(value, Mapping) or not all(isinstance(name, str) for name in value):
        raise GraphError(path, f"must be {what}")
    return _Node(cast(Mapping[str, object], value), path)


@dataclasses.dataclass(frozen=True, slots=True)
class _EngagementRef:
    path: str
    send_key: str
    branch_index: int


class _Parser:
    """Reads the steps in order, remembering keys (for duplicates) and engagement references
    (checked once every step is known)."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}
        self.engagements: list[_EngagementRef] = []
        self.index = 0

    def step(self, item: object, index: int) -> Step:
        self.index = index
        node = _node(item, f"$[{index}]", "a step object")
        key = self._key(node)
        kind = node.required("type")
        if kind not in _TYPES:
            raise GraphError(node.at("type"), f"must be one of {', '.join(_TYPES)}")
        return _STEP_PARSERS[cast(str, kind)](self, node, key)

    def _key(self, node: _Node) -> str:
        key = node.required("key")
        if not isinstance(key, str) or not KEY.fullmatch(key):
            raise GraphError(
                node.at("key"),
                "must be 1 to 64 lowercase letters, digits, _ or - starting with a letter or digit",
            )
        if key in self.keys:
            raise GraphError(node.at("key"), f'"{key}" is already the key of $[{self.keys[key]}]')
        self.keys[key] = self.index
        return key

    # --- Step types ---------------------------------------------------------------------------

    def send(self, node: _Node, key: str) -> SendStep:
        node.only(frozenset({"key", "type", "next", "templates", "priority"}), "a send step")
        templates = node.required("templates")
        if not isinstance(templates, list) or not 1 <= len(templates) <= MAX_TEMPLATES:
            raise GraphError(
                node.at("templates"), f"must be a list of 1 to {MAX_TEMPLATES} template keys"
            )
        keys: list[str] = []
        for position, template in enumerate(templates):
            path = f"{node.at('templates')}[{position}]"
            keys.append(_slug(template, path, "template", 100))
            if keys[-1] in keys[:-1]:
                raise GraphError(path, f'repeats "{keys[-1]}"')
        priority = node.fields.get("priority")
        if priority is not None and not _is_int(priority, -(2**31), 2**31 - 1):
            raise GraphError(node.at("priority"), "must be a whole number")
        return SendStep(key, _next(node), tuple(keys), cast(int | None, priority))

    def wait(self, node: _Node, key: str) -> DurationWait | LocalTimeWait | UntilWait:
        kinds = [kind for kind in _WAIT_KINDS if kind in node.fields]
        if not kinds:
            raise GraphError(
                node.path, 'must have one of "duration", "until_local_time" or "until"'
            )
        if len(kinds) > 1:
            raise GraphError(node.at(kinds[1]), f'cannot be combined with "{kinds[0]}"')
        kind = kinds[0]
        extra = {"timeout", "timeout_next"} if kind == "until" else set()
        node.only(frozenset({"key", "type", "next", kind, *extra}), f'a wait with "{kind}"')
        if kind == "duration":
            return DurationWait(key, _next(node), _duration(node.required(kind), node.at(kind)))
        if kind == "until_local_time":
            return LocalTimeWait(key, _next(node), _local_time(node))
        until = self._until(node.required("until"), node.at("until"))
        timeout = _duration(node.required("timeout"), node.at("timeout"))
        return UntilWait(key, _next(node), until, timeout, _reference(node, "timeout_next"))

    def _until(self, value: object, path: str) -> UntilEvent | UntilMilestone:
        node = _node(value, path, 'an object with "event" or "milestone"')
        if "event" in node.fields:
            node.only(frozenset({"event", "filters"}), "an event wait")
            tree = {"type": "event_count", "event": node.required("event"), "at_least": 1}
            if "filters" in node.fields:
                tree["where"] = node.fields["filters"]
            parsed = cast(EventCount, _milestone_parse(tree, path, {"$.where": ".filters"}))
            return UntilEvent(parsed.event, parsed.where)
        if "milestone" in node.fields:
            node.only(frozenset({"milestone", "state"}), "a milestone wait")
            return UntilMilestone(
                _slug(node.fields["milestone"], node.at("milestone"), "milestone", 100),
                cast(MilestoneState, _choice(node, "state", _UNTIL_STATES)),
            )
        raise GraphError(path, 'must have "event" or "milestone"')

    def branch(self, node: _Node, key: str) -> BranchStep:
        node.only(frozenset({"key", "type", "branches", "else"}), "a branch step")
        items = node.required("branches")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BRANCHES:
            raise GraphError(node.at("branches"), f"must be a list of 1 to {MAX_BRANCHES} branches")
        branches = []
        for position, item in enumerate(items):
            path = f"{node.at('branches')}[{position}]"
            branch = _node(item, path, 'an object with "when" and "next"')
            branch.only(frozenset({"when", "next"}), "a branch")
            when = self._condition(branch.required("when"), branch.at("when"), depth=1)
            branches.append(Branch(when, _reference(branch, "next")))
        return BranchStep(key, tuple(branches), _reference(node, "else"))

    def split(self, node: _Node, key: str) -> SplitStep:
        node.only(frozenset({"key", "type", "variants"}), "a split step")
        items = node.required("variants")
        if not isinstance(items, list) or not MIN_VARIANTS <= len(items) <= MAX_VARIANTS:
            raise GraphError(
                node.at("variants"), f"must be a list of {MIN_VARIANTS} to {MAX_VARIANTS} variants"
            )
        variants: list[Variant] = []
        for position, item in enumerate(items):
            path = f"{node.at('variants')}[{position}]"
            variant = _node(item, path, 'an object with "name", "weight" and "next"')
            variant.only(frozenset({"name", "weight", "next"}), "a variant")
            name = variant.required("name")
            if not isinstance(name, str) or not name.strip() or len(name) > 64:
                raise GraphError(variant.at("name"), "must be a name of 1 to 64 characters")
            if any(earlier.name == name for earlier in variants):
                raise GraphError(variant.at("name"), f'repeats the variant name "{name}"')
            weight = variant.required("weight")
            if not _is_int(weight, 1, MAX_WEIGHT):
                raise GraphError(
                    variant.at("weight"), f"must be a whole number from 1 to {MAX_WEIGHT}"
                )
            variants.append(Variant(name, cast(int, weight), _reference(variant, "next")))
        return SplitStep(key, tuple(variants))

    def notify(self, node: _Node, key: str) -> NotifyStep:
        node.only(frozenset({"key", "type", "next", "to", "template"}), "a notify step")
        to = _recipient(node.required("to"), node.at("to"))
        template = None
        if not to.startswith("webhook:") or node.has("template"):
            template = _slug(node.required("template"), node.at("template"), "template", 100)
        return NotifyStep(key, _next(node), to, template)

    def update(self, node: _Node, key: str) -> UpdateStep:
        node.only(frozenset({"key", "type", "next", "set_traits", "set_stage"}), "an update step")
        if not node.has("set_traits") and not node.has("set_stage"):
            raise GraphError(node.path, 'must have "set_traits" or "set_stage"')
        traits = _traits(node) if node.has("set_traits") else {}
        stage = None
        if node.has("set_stage"):
            stage = _slug(node.fields["set_stage"], node.at("set_stage"), "stage", 32)
        return UpdateStep(key, _next(node), traits, stage)

    def exit(self, node: _Node, key: str) -> ExitStep:
        node.only(frozenset({"key", "type", "outcome"}), "an exit step")
        if not node.has("outcome"):
            return ExitStep(key)
        return ExitStep(key, cast(ExitOutcome, _choice(node, "outcome", EXIT_OUTCOMES)))

    # --- Branch conditions ------------------------------------------------------------------

    def _condition(self, value: object, path: str, depth: int) -> Condition:
        what = 'a condition (an object with "trait", "milestone", "engagement", "stage", '
        node = _node(value, path, what + '"all", "any" or "not")')
        kind = next((kind for kind in _CONDITION_KINDS if kind in node.fields), None)
        if kind is None:
            raise GraphError(path, f"must be {what}" + '"all", "any" or "not")')
        if depth > MAX_CONDITION_DEPTH:
            raise GraphError(path, f"conditions may nest at most {MAX_CONDITION_DEPTH} levels deep")
        node.only(_CONDITION_KINDS[kind], f"a {kind} condition")
        if kind in ("all", "any"):
            items = node.fields[kind]
            if not isinstance(items, list) or not items:
                raise GraphError(node.at(kind), "must be a non-empty list of conditions")
            children = tuple(
                self._condition(item, f"{node.at(kind)}[{i}]", depth + 1)
                for i, item in enumerate(items)
            )
            return AllOf(children) if kind == "all" else AnyOf(children)
        if kind == "not":
            return Not(self._condition(node.fields["not"], node.at("not"), depth + 1))
        return self._leaf(node, kind)

    def _leaf(self, node: _Node, kind: str) -> Condition:
        if kind == "trait":
            tree = {"type": "attribute", **node.fields}
            return TraitIs(cast(Attribute, _milestone_parse(tree, node.path, {})).test)
        if kind == "milestone":
            milestone = _slug(node.fields["milestone"], node.at("milestone"), "milestone", 100)
            return MilestoneIs(
                milestone, cast(MilestoneState, _choice(node, "state", MILESTONE_STATES))
            )
        if kind == "stage":
            return StageIs(_slug(node.fields["stage"], node.at("stage"), "stage", 32))
        engagement = _choice(node, "engagement", ENGAGEMENTS)
        step = node.required("step")
        if not isinstance(step, str):
            raise GraphError(node.at("step"), "must be the key of an earlier send step")
        self.engagements.append(_EngagementRef(node.at("step"), step, self.index))
        return EngagementIs(cast(Engagement, engagement), step)


_STEP_PARSERS: Final[dict[str, Callable[[_Parser, _Node, str], Step]]] = {
    "send": _Parser.send,
    "wait": _Parser.wait,
    "branch": _Parser.branch,
    "split": _Parser.split,
    "notify": _Parser.notify,
    "update": _Parser.update,
    "exit": _Parser.exit,
}


# --- Fields ---------------------------------------------------------------------------------


def _is_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _next(node: _Node) -> str:
    return _reference(node, "next")


def _reference(node: _Node, field: str) -> str:
    """A step key; whether the step exists is checked once all steps are read."""
    value = node.required(field)
    if not isinstance(value, str):
        raise GraphError(node.at(field), "must be a step key")
    return value


def _slug(value: object, path: str, what: str, longest: int) -> str:
    if not isinstance(value, str) or not _SLUG.fullmatch(value) or len(value) > longest:
        raise GraphError(path, f"must be a {what} key (at most {longest} letters, digits, _ or -)")
    return value


def _choice(node: _Node, field: str, choices: tuple[str, ...]) -> str:
    value = node.required(field)
    if value not in choices:
        raise GraphError(node.at(field), f"must be one of {', '.join(choices)}")
    return cast(str, value)


def _duration(value: object, path: str) -> dt.timedelta:
    what = 'a duration such as {"days": 1, "hours": 12}'
    node = _node(value, path, what)
    if not node.fields:
        raise GraphError(path, f"must be {what}")
    minutes = 0
    for unit, amount in node.fields.items():
        if unit not in _DURATION_UNITS:
            raise GraphError(node.at(unit), "is not a duration unit (use days, hours or minutes)")
        if not _is_int(amount, 0, 10**6):
            raise GraphError(node.at(unit), "must be a whole number of at least 0")
        minutes += cast(int, amount) * _DURATION_UNITS[unit]
    duration = dt.timedelta(minutes=minutes)
    if not dt.timedelta(0) < duration <= MAX_WAIT:
        raise GraphError(path, "must be more than 0 and at most 365 days")
    return duration


def _local_time(node: _Node) -> dt.time:
    value = node.required("until_local_time")
    if not isinstance(value, str) or not _LOCAL_TIME.fullmatch(value):
        raise GraphError(node.at("until_local_time"), 'must be a 24-hour time such as "10:00"')
    return dt.time(int(value[:2]), int(value[3:]))


def _recipient(value: object, path: str) -> str:
    if value in _RECIPIENTS:
        return cast(str, value)
    if isinstance(value, str) and value.startswith("email:"):
        if not _EMAIL.fullmatch(value.removeprefix("email:")):
            raise GraphError(path, 'must have an email address after "email:"')
        return value
    if isinstance(value, str) and value.startswith("webhook:"):
        url = urlsplit(value.removeprefix("webhook:"))
        if url.scheme != "https" or not url.hostname:
            raise GraphError(path, 'must have an https:// URL after "webhook:"')
        return value
    raise GraphError(
        path, "must be account_owner, sales, support, email:<address> or webhook:<https url>"
    )


def _traits(node: _Node) -> dict[str, Any]:
    path = node.at("set_traits")
    traits = _node(node.fields["set_traits"], path, "an object of trait names to values")
    if not 1 <= len(traits.fields) <= MAX_TRAITS:
        raise GraphError(path, f"must set 1 to {MAX_TRAITS} traits")
    for name, value in traits.fields.items():
        if not name.strip() or "." in name or len(name) > 255:
            raise GraphError(traits.at(name), "is not a trait name (1 to 255 characters, no dots)")
        if not _is_json(value):
            raise GraphError(traits.at(name), "must be a JSON value")
    return dict(traits.fields)


def _is_json(value: object) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _milestone_parse(tree: Mapping[str, object], path: str, renames: Mapping[str, str]) -> Any:
    """``parse_condition``, with its error paths (``$.op``, ``$.where[0]``) moved under
    ``path`` and its field names renamed to ours."""
    try:
        return parse_condition(dict(tree))
    except ConditionError as error:
        where = error.path
        for theirs, ours in renames.items():
            if where == theirs or where.startswith((f"{theirs}.", f"{theirs}[")):
                where = ours + where.removeprefix(theirs)
                break
        else:
            where = where.removeprefix("$")
        raise GraphError(path + where, error.message) from None


# --- Whole-graph checks ---------------------------------------------------------------------


def _check_references(
    steps: tuple[Step, ...], positions: Mapping[str, int], engagements: list[_EngagementRef]
) -> None:
    for index, step in enumerate(steps):
        for suffix, target in step_edges(step):
            if target not in positions:
                raise GraphError(f"$[{index}]{suffix}", f'no step "{target}"')
    for ref in engagements:
        if ref.send_key not in positions:
            raise GraphError(ref.path, f'no step "{ref.send_key}"')
        found = steps[positions[ref.send_key]]
        if not isinstance(found, SendStep):
            raise GraphError(
                ref.path, f'step "{ref.send_key}" is a {found.type} step, not a send step'
            )


def _check_acyclic(steps: tuple[Step, ...], positions: Mapping[str, int]) -> list[str]:
    """The keys reachable from the first step in topological order; ``GraphError`` at the
    field that closes a loop."""
    finished: list[str] = []
    trail: list[str] = []

    def visit(key: str) -> None:
        trail.append(key)
        index = positions[key]
        for suffix, target in step_edges(steps[index]):
            if target in trail:
                loop = " -> ".join([*trail[trail.index(target) :], target])
                raise GraphError(
                    f"$[{index}]{suffix}",
                    f"makes a loop ({loop}): every path must end at an exit step",
                )
            if target not in finished:
                visit(target)
        trail.pop()
        finished.append(key)

    visit(steps[0].key)
    return finished[::-1]


def _check_reachable(steps: tuple[Step, ...], reachable: set[str]) -> None:
    unreachable = [index for index, step in enumerate(steps) if step.key not in reachable]
    if unreachable:
        names = ", ".join(f'"{steps[index].key}"' for index in unreachable)
        raise GraphError(
            f"$[{unreachable[0]}]", f"is unreachable from the first step; unreachable: {names}"
        )


def _check_engagements_come_first(
    steps: tuple[Step, ...],
    positions: Mapping[str, int],
    order: list[str],
    engagements: list[_EngagementRef],
) -> None:
    if not engagements:
        return
    # In a DAG, the steps on every path to a step are the step itself plus those on every
    # path to each of its predecessors (its dominators); topological order has them ready.
    predecessors: dict[str, set[str]] = {key: set() for key in order}
    for key in order:
        for target in dict.fromkeys(target for _, target in step_edges(steps[positions[key]])):
            predecessors[target].add(key)
    before: dict[str, frozenset[str]] = {}
    for key in order:
        shared = [before[parent] for parent in predecessors[key]]
        before[key] = frozenset.intersection(*shared) | {key} if shared else frozenset({key})
    for ref in engagements:
        if ref.send_key not in before[steps[ref.branch_index].key]:
            raise GraphError(
                ref.path,
                f'send step "{ref.send_key}" does not come before this branch on every path',
            )
