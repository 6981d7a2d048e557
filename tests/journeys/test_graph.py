"""Pure tests of the step graph's validation: JSON in, ``Graph`` or ``GraphError`` out."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from journeys.graph import (
    AllOf,
    AnyOf,
    Branch,
    BranchStep,
    DurationWait,
    EngagementIs,
    ExitStep,
    GraphError,
    LocalTimeWait,
    MilestoneIs,
    Not,
    NotifyStep,
    SendStep,
    SplitStep,
    StageIs,
    TraitIs,
    UntilEvent,
    UntilMilestone,
    UntilWait,
    UpdateStep,
    Variant,
    graph_parse,
)
from milestones.conditions import Filter

EXIT = {"key": "done", "type": "exit"}


def _send(key: str = "hello", next_: str = "done", **extra: Any) -> dict[str, Any]:
    return {"key": key, "type": "send", "templates": ["tips-push"], "next": next_, **extra}


def _error(raw: object) -> str:
    with pytest.raises(GraphError) as caught:
        graph_parse(raw)
    return str(caught.value)


def _step_error(step: dict[str, Any]) -> str:
    """The error for one step placed first, before an exit step named "done"."""
    return _error([step, EXIT])


def _branch(when: object, **extra: Any) -> dict[str, Any]:
    return {
        "key": "pick",
        "type": "branch",
        "branches": [{"when": when, "next": "done"}],
        "else": "done",
        **extra,
    }


# --- A full graph ---------------------------------------------------------------------------

FULL = [
    {"key": "tips", "type": "send", "templates": ["tips-push", "tips-email"], "next": "nap",
     "priority": 5},
    {"key": "nap", "type": "wait", "duration": {"days": 1, "hours": 2, "minutes": 3},
     "next": "morning"},
    {"key": "morning", "type": "wait", "until_local_time": "10:00", "next": "await-report"},
    {"key": "await-report", "type": "wait",
     "until": {"event": "Report Created", "filters": [
         {"property": "pages", "op": "gte", "value": 2}]},
     "timeout": {"days": 3}, "timeout_next": "pick", "next": "await-activation"},
    {"key": "await-activation", "type": "wait",
     "until": {"milestone": "activated", "state": "achieved"},
     "timeout": {"hours": 12}, "timeout_next": "pick", "next": "pick"},
    {"key": "pick", "type": "branch", "branches": [
        {"when": {"all": [
            {"trait": "plan", "op": "eq", "value": "pro"},
            {"any": [{"milestone": "onboarded", "state": "missed"}, {"stage": "active"}]},
            {"not": {"engagement": "opened", "step": "tips"}},
        ]}, "next": "ab"},
    ], "else": "owner"},
    {"key": "ab", "type": "split", "variants": [
        {"name": "A", "weight": 70, "next": "owner"},
        {"name": "B", "weight": 30, "next": "hook"},
    ]},
    {"key": "owner", "type": "notify", "to": "account_owner", "template": "owner-alert",
     "next": "mark"},
    {"key": "hook", "type": "notify", "to": "webhook:https://example.com/hook", "next": "mark"},
    {"key": "mark", "type": "update", "set_traits": {"nudged": True, "tags": ["a"]},
     "set_stage": "engaged", "next": "done"},
    {"key": "done", "type": "exit", "outcome": "exited"},
]  # fmt: skip


def test_it_parses_every_step_type_into_frozen_steps() -> None:
    graph = graph_parse(FULL)

    assert graph.steps == (
        SendStep("tips", "nap", ("tips-push", "tips-email"), 5),
        DurationWait("nap", "morning", dt.timedelta(days=1, hours=2, minutes=3)),
        LocalTimeWait("morning", "await-report", dt.time(10, 0)),
        UntilWait(
            "await-report",
            "await-activation",
            UntilEvent("Report Created", (Filter("pages", "gte", 2),)),
            dt.timedelta(days=3),
            "pick",
        ),
        UntilWait(
            "await-activation",
            "pick",
            UntilMilestone("activated", "achieved"),
            dt.timedelta(hours=12),
            "pick",
        ),
        BranchStep(
            "pick",
            (
                Branch(
                    AllOf(
                        (
                            TraitIs(Filter("plan", "eq", "pro")),
                            AnyOf((MilestoneIs("onboarded", "missed"), StageIs("active"))),
                            Not(EngagementIs("opened", "tips")),
                        )
                    ),
                    "ab",
                ),
            ),
            "owner",
        ),
        SplitStep("ab", (Variant("A", 70, "owner"), Variant("B", 30, "hook"))),
        NotifyStep("owner", "mark", "account_owner", "owner-alert"),
        NotifyStep("hook", "mark", "webhook:https://example.com/hook", None),
        UpdateStep("mark", "done", {"nudged": True, "tags": ["a"]}, "engaged"),
        ExitStep("done", "exited"),
    )


def test_the_graph_answers_the_runners_questions() -> None:
    graph = graph_parse(FULL)

    assert graph.first == graph.steps[0]
    assert graph.step("ab") == graph.steps[6]
    assert graph.templates() == frozenset({"tips-push", "tips-email", "owner-alert"})
    assert graph.milestones() == frozenset({"activated", "onboarded"})
    assert graph.events() == frozenset({"Report Created"})
    assert graph.successors("tips") == ("nap",)
    assert graph.successors("await-report") == ("await-activation", "pick")
    assert graph.successors("await-activation") == ("pick",)
    assert graph.successors("pick") == ("ab", "owner")
    assert graph.successors("ab") == ("owner", "hook")
    assert graph.successors("done") == ()


def test_a_step_type_is_readable_on_every_step() -> None:
    graph = graph_parse(FULL)

    assert [step.type for step in graph.steps] == [
        "send", "wait", "wait", "wait", "wait", "branch", "split", "notify", "notify", "update",
        "exit",
    ]  # fmt: skip


def test_asking_for_an_unknown_step_raises_key_error() -> None:
    with pytest.raises(KeyError):
        graph_parse([EXIT]).step("nope")


def test_an_exit_step_completes_by_default() -> None:
    assert graph_parse([EXIT]).first == ExitStep("done", "completed")


def test_parsing_does_not_share_the_raw_traits() -> None:
    raw = [{"key": "mark", "type": "update", "set_traits": {"a": 1}, "next": "done"}, EXIT]
    graph = graph_parse(raw)
    raw[0]["set_traits"]["a"] = 2  # type: ignore[index]

    assert graph.first == UpdateStep("mark", "done", {"a": 1}, None)


# --- The list and the steps -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "$: must be a non-empty list of steps"),
        ({}, "$: must be a non-empty list of steps"),
        ([], "$: must be a non-empty list of steps"),
        ([EXIT] * 101, "$: must have at most 100 steps"),
        (["done"], "$[0]: must be a step object"),
        ([{"type": "exit"}], "$[0].key: is required"),
        (
            [{"key": "Done", "type": "exit"}],
            "$[0].key: must be 1 to 64 lowercase letters, digits, _ or - starting with a letter"
            " or digit",
        ),
        (
            [{"key": "_x", "type": "exit"}],
            "$[0].key: must be 1 to 64 lowercase letters, digits, _ or - starting with a letter"
            " or digit",
        ),
        (
            [{"key": "x" * 65, "type": "exit"}],
            "$[0].key: must be 1 to 64 lowercase letters, digits, _ or - starting with a letter"
            " or digit",
        ),
        ([EXIT, EXIT], '$[1].key: "done" is already the key of $[0]'),
        ([{"key": "done"}], "$[0].type: is required"),
        (
            [{"key": "done", "type": "email"}],
            "$[0].type: must be one of branch, exit, notify, send, split, update, wait",
        ),
    ],
)
def test_it_rejects_a_malformed_list_or_step(raw: object, message: str) -> None:
    assert _error(raw) == message


def test_a_key_of_64_characters_is_accepted() -> None:
    assert graph_parse([{"key": "a" * 64, "type": "exit"}]).first.key == "a" * 64


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (_send(channel="sms"), "$[0].channel: is not a field of a send step"),
        ({"key": "s", "type": "send", "next": "done"}, "$[0].templates: is required"),
        (_send(templates=[]), "$[0].templates: must be a list of 1 to 4 template keys"),
        (_send(templates="tips"), "$[0].templates: must be a list of 1 to 4 template keys"),
        (
            _send(templates=["a", "b", "c", "d", "e"]),
            "$[0].templates: must be a list of 1 to 4 template keys",
        ),
        (
            _send(templates=["ok", "not ok"]),
            "$[0].templates[1]: must be a template key (at most 100 letters, digits, _ or -)",
        ),
        (_send(templates=["a", "b", "a"]), '$[0].templates[2]: repeats "a"'),
        (_send(priority="high"), "$[0].priority: must be a whole number"),
        (_send(priority=True), "$[0].priority: must be a whole number"),
        (_send(priority=1.5), "$[0].priority: must be a whole number"),
        ({"key": "s", "type": "send", "templates": ["t"]}, "$[0].next: is required"),
        (_send(next_=3), "$[0].next: must be a step key"),  # type: ignore[arg-type]
    ],
)
def test_it_rejects_a_bad_send_step(step: dict[str, Any], message: str) -> None:
    assert _step_error(step) == message


def test_a_send_step_takes_up_to_four_templates_and_a_negative_priority() -> None:
    step = _send(templates=["a", "b", "c", "d"], priority=-3)

    assert graph_parse([step, EXIT]).first == SendStep("hello", "done", ("a", "b", "c", "d"), -3)


def _wait(**fields: Any) -> dict[str, Any]:
    return {"key": "w", "type": "wait", "next": "done", **fields}


_UNTIL = {"event": "Paid"}
_OPS = "eq, neq, gt, gte, lt, lte, in, contains, exists"


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (_wait(), '$[0]: must have one of "duration", "until_local_time" or "until"'),
        (
            _wait(duration={"days": 1}, until_local_time="10:00"),
            '$[0].until_local_time: cannot be combined with "duration"',
        ),
        (
            _wait(duration={"days": 1}, timeout={"days": 1}),
            '$[0].timeout: is not a field of a wait with "duration"',
        ),
        (_wait(duration=None), "$[0].duration: is required"),
        (_wait(duration=3), '$[0].duration: must be a duration such as {"days": 1, "hours": 12}'),
        (_wait(duration={}), '$[0].duration: must be a duration such as {"days": 1, "hours": 12}'),
        (
            _wait(duration={"weeks": 1}),
            "$[0].duration.weeks: is not a duration unit (use days, hours or minutes)",
        ),
        (_wait(duration={"days": -1}), "$[0].duration.days: must be a whole number of at least 0"),
        (
            _wait(duration={"hours": 1.5}),
            "$[0].duration.hours: must be a whole number of at least 0",
        ),
        (
            _wait(duration={"days": True}),
            "$[0].duration.days: must be a whole number of at least 0",
        ),
        (_wait(duration={"days": 0}), "$[0].duration: must be more than 0 and at most 365 days"),
        (
            _wait(duration={"days": 365, "minutes": 1}),
            "$[0].duration: must be more than 0 and at most 365 days",
        ),
        (
            {"key": "w", "type": "wait", "duration": {"days": 1}},
            "$[0].next: is required",
        ),
        (
            _wait(until_local_time="24:00"),
            '$[0].until_local_time: must be a 24-hour time such as "10:00"',
        ),
        (
            _wait(until_local_time="9:00"),
            '$[0].until_local_time: must be a 24-hour time such as "10:00"',
        ),
        (
            _wait(until_local_time=1000),
            '$[0].until_local_time: must be a 24-hour time such as "10:00"',
        ),
        (
            _wait(until_local_time="10:00", until=_UNTIL),
            '$[0].until: cannot be combined with "until_local_time"',
        ),
        (
            _wait(until="Paid", timeout={"days": 1}, timeout_next="done"),
            '$[0].until: must be an object with "event" or "milestone"',
        ),
        (
            _wait(until={"state": "achieved"}, timeout={"days": 1}, timeout_next="done"),
            '$[0].until: must have "event" or "milestone"',
        ),
        (_wait(until=_UNTIL, timeout_next="done"), "$[0].timeout: is required"),
        (_wait(until=_UNTIL, timeout={"days": 1}), "$[0].timeout_next: is required"),
        (
            _wait(until=_UNTIL, timeout={"days": 400}, timeout_next="done"),
            "$[0].timeout: must be more than 0 and at most 365 days",
        ),
        (
            _wait(
                until={"event": "Paid", "milestone": "x"}, timeout={"days": 1}, timeout_next="done"
            ),
            "$[0].until.milestone: is not a field of an event wait",
        ),
        (
            _wait(until={"event": " "}, timeout={"days": 1}, timeout_next="done"),
            "$[0].until.event: must be a non-empty event name of at most 255 characters",
        ),
        (
            _wait(until={"event": "Paid", "filters": {}}, timeout={"days": 1}, timeout_next="done"),
            "$[0].until.filters: must be a list of property filters",
        ),
        (
            _wait(
                until={
                    "event": "Paid",
                    "filters": [{"property": "amount", "op": "gt", "value": "x"}],
                },
                timeout={"days": 1},
                timeout_next="done",
            ),
            "$[0].until.filters[0].value: must be a number",
        ),
        (
            _wait(
                until={"event": "Paid", "filters": [{"property": "a", "op": "like", "value": "x"}]},
                timeout={"days": 1},
                timeout_next="done",
            ),
            f"$[0].until.filters[0].op: must be one of {_OPS}",
        ),
        (
            _wait(
                until={"event": "Paid", "filters": [{"property": "a", "op": "eq", "v": 1}]},
                timeout={"days": 1},
                timeout_next="done",
            ),
            "$[0].until.filters[0].v: is not a field of a property filter",
        ),
        (
            _wait(
                until={"milestone": "activated", "state": "not_started"},
                timeout={"days": 1},
                timeout_next="done",
            ),
            "$[0].until.state: must be one of achieved, missed, in_progress, ineligible",
        ),
        (
            _wait(
                until={"milestone": "a b", "state": "achieved"},
                timeout={"days": 1},
                timeout_next="done",
            ),
            "$[0].until.milestone: must be a milestone key (at most 100 letters, digits, _ or -)",
        ),
        (
            _wait(
                until={"milestone": "activated", "state": "achieved", "event": "x"},
                timeout={"days": 1},
                timeout_next="done",
            ),
            "$[0].until.milestone: is not a field of an event wait",
        ),
    ],
)
def test_it_rejects_a_bad_wait_step(step: dict[str, Any], message: str) -> None:
    assert _step_error(step) == message


def test_a_wait_may_last_exactly_365_days() -> None:
    graph = graph_parse([_wait(duration={"days": 365}), EXIT])

    assert graph.first == DurationWait("w", "done", dt.timedelta(days=365))


def test_an_event_wait_without_filters_matches_on_the_name_alone() -> None:
    graph = graph_parse([_wait(until=_UNTIL, timeout={"minutes": 30}, timeout_next="done"), EXIT])

    assert graph.first == UntilWait(
        "w", "done", UntilEvent("Paid", ()), dt.timedelta(minutes=30), "done"
    )


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (_branch({"stage": "active"}, next="done"), "$[0].next: is not a field of a branch step"),
        ({"key": "b", "type": "branch", "else": "done"}, "$[0].branches: is required"),
        (_branch({"stage": "a"}, branches=[]), "$[0].branches: must be a list of 1 to 20 branches"),
        (
            _branch({"stage": "a"}, branches=[{"when": {"stage": "a"}, "next": "done"}] * 21),
            "$[0].branches: must be a list of 1 to 20 branches",
        ),
        (
            _branch({"stage": "a"}, branches=["x"]),
            '$[0].branches[0]: must be an object with "when" and "next"',
        ),
        (
            _branch({"stage": "a"}, branches=[{"when": {"stage": "a"}}]),
            "$[0].branches[0].next: is required",
        ),
        (
            _branch({"stage": "a"}, branches=[{"when": {"stage": "a"}, "next": "done", "x": 1}]),
            "$[0].branches[0].x: is not a field of a branch",
        ),
        (
            {"key": "b", "type": "branch", "branches": [{"when": {"stage": "a"}, "next": "done"}]},
            "$[0].else: is required",
        ),
        (
            _branch(None),
            "$[0].branches[0].when: is required",
        ),
    ],
)
def test_it_rejects_a_bad_branch_step(step: dict[str, Any], message: str) -> None:
    assert _step_error(step) == message


_NOT_A_CONDITION = (
    'must be a condition (an object with "trait", "milestone", "engagement", "stage", '
    '"all", "any" or "not")'
)


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("plan", f"$[0].branches[0].when: {_NOT_A_CONDITION}"),
        ({"plan": "pro"}, f"$[0].branches[0].when: {_NOT_A_CONDITION}"),
        ({"trait": "plan", "op": "eq"}, "$[0].branches[0].when.value: is required"),
        (
            {"trait": "plan", "op": "is", "value": 1},
            f"$[0].branches[0].when.op: must be one of {_OPS}",
        ),
        (
            {"trait": "plan..x", "op": "eq", "value": 1},
            "$[0].branches[0].when.trait: must be a property name or dotted path such as"
            ' "order.total"',
        ),
        (
            {"trait": "seats", "op": "gte", "value": "5"},
            "$[0].branches[0].when.value: must be a number",
        ),
        (
            {"trait": "plan", "op": "in", "value": []},
            "$[0].branches[0].when.value: must be a non-empty list of strings, numbers or booleans",
        ),
        (
            {"trait": "plan", "op": "in", "value": ["a", {}]},
            "$[0].branches[0].when.value[1]: must be a string, number or boolean",
        ),
        (
            {"trait": "plan", "op": "exists", "value": "yes"},
            "$[0].branches[0].when.value: must be true or false",
        ),
        (
            {"trait": "plan", "op": "eq", "value": "pro", "stage": "x"},
            "$[0].branches[0].when.stage: is not a field of a trait condition",
        ),
        (
            {"milestone": "activated", "state": "done"},
            "$[0].branches[0].when.state: must be one of achieved, missed, in_progress, ineligible,"
            " not_started",
        ),
        ({"milestone": "activated"}, "$[0].branches[0].when.state: is required"),
        (
            {"milestone": 3, "state": "achieved"},
            "$[0].branches[0].when.milestone: must be a milestone key (at most 100 letters, digits,"
            " _ or -)",
        ),
        (
            {"stage": "a" * 33},
            "$[0].branches[0].when.stage: must be a stage key (at most 32 letters, digits, _ or -)",
        ),
        (
            {"engagement": "bounced", "step": "hello"},
            "$[0].branches[0].when.engagement: must be one of sent, delivered, opened, clicked",
        ),
        ({"engagement": "opened"}, "$[0].branches[0].when.step: is required"),
        (
            {"engagement": "opened", "step": 1},
            "$[0].branches[0].when.step: must be the key of an earlier send step",
        ),
        ({"all": []}, "$[0].branches[0].when.all: must be a non-empty list of conditions"),
        (
            {"any": {"stage": "a"}},
            "$[0].branches[0].when.any: must be a non-empty list of conditions",
        ),
        (
            {"all": [{"stage": "a"}, {"any": [{"nope": 1}]}]},
            f"$[0].branches[0].when.all[1].any[0]: {_NOT_A_CONDITION}",
        ),
        ({"not": [{"stage": "a"}]}, f"$[0].branches[0].when.not: {_NOT_A_CONDITION}"),
        (
            {"not": {"not": {"not": {"not": {"not": {"not": {"not": {"not": {"stage": "a"}}}}}}}}},
            "$[0].branches[0].when.not.not.not.not.not.not.not.not: conditions may nest at most 8"
            " levels deep",
        ),
    ],
)
def test_it_rejects_a_bad_condition(when: object, message: str) -> None:
    assert _step_error(_branch(when)) == message


def test_conditions_may_nest_eight_levels_deep() -> None:
    when: dict[str, Any] = {"stage": "a"}
    for _ in range(7):
        when = {"not": when}

    graph = graph_parse([_branch(when), EXIT])

    assert isinstance(graph.first, BranchStep)


def _split(*variants: Any) -> dict[str, Any]:
    return {"key": "ab", "type": "split", "variants": list(variants)}


_A = {"name": "A", "weight": 1, "next": "done"}


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({**_split(_A, _A), "next": "done"}, "$[0].next: is not a field of a split step"),
        (_split(_A), "$[0].variants: must be a list of 2 to 10 variants"),
        (
            _split(*({**_A, "name": str(i)} for i in range(11))),
            "$[0].variants: must be a list of 2 to 10 variants",
        ),
        (_split(_A, "B"), '$[0].variants[1]: must be an object with "name", "weight" and "next"'),
        (_split(_A, _A), '$[0].variants[1].name: repeats the variant name "A"'),
        (
            _split(_A, {**_A, "name": ""}),
            "$[0].variants[1].name: must be a name of 1 to 64 characters",
        ),
        (
            _split(_A, {**_A, "name": "B", "weight": 0}),
            "$[0].variants[1].weight: must be a whole number from 1 to 10000",
        ),
        (
            _split(_A, {**_A, "name": "B", "weight": 2.5}),
            "$[0].variants[1].weight: must be a whole number from 1 to 10000",
        ),
        (
            _split(_A, {**_A, "name": "B", "weight": 10_001}),
            "$[0].variants[1].weight: must be a whole number from 1 to 10000",
        ),
        (_split(_A, {"name": "B", "weight": 1}), "$[0].variants[1].next: is required"),
        (
            _split(_A, {**_A, "name": "B", "share": 1}),
            "$[0].variants[1].share: is not a field of a variant",
        ),
    ],
)
def test_it_rejects_a_bad_split_step(step: dict[str, Any], message: str) -> None:
    assert _step_error(step) == message


def _notify(**fields: Any) -> dict[str, Any]:
    return {"key": "tell", "type": "notify", "next": "done", **fields}


_RECIPIENT = (
    "$[0].to: must be account_owner, sales, support, email:<address> or webhook:<https url>"
)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (_notify(template="t"), "$[0].to: is required"),
        (_notify(to="ceo", template="t"), _RECIPIENT),
        (_notify(to=["sales"], template="t"), _RECIPIENT),
        (
            _notify(to="email:nobody", template="t"),
            '$[0].to: must have an email address after "email:"',
        ),
        (
            _notify(to="webhook:http://example.com", template="t"),
            '$[0].to: must have an https:// URL after "webhook:"',
        ),
        (
            _notify(to="webhook:https://", template="t"),
            '$[0].to: must have an https:// URL after "webhook:"',
        ),
        (_notify(to="sales"), "$[0].template: is required"),
        (_notify(to="email:cs@example.com"), "$[0].template: is required"),
        (
            _notify(to="webhook:https://example.com", template="a/b"),
            "$[0].template: must be a template key (at most 100 letters, digits, _ or -)",
        ),
        (
            _notify(to="sales", template="t", channel="sms"),
            "$[0].channel: is not a field of a notify step",
        ),
    ],
)
def test_it_rejects_a_bad_notify_step(step: dict[str, Any], message: str) -> None:
    assert _step_error(step) == message


@pytest.mark.parametrize(
    ("to", "template"),
    [
        ("sales", "lead-alert"),
        ("support", "lead-alert"),
        ("email:cs@example.com", "lead-alert"),
        ("webhook:https://example.com/hooks/1?x=2", "lead-alert"),
    ],
)
def test_it_accepts_every_kind_of_recipient(to: str, template: str) -> None:
    graph = graph_parse([_notify(to=to, template=template), EXIT])

    assert graph.first == NotifyStep("tell", "done", to, template)


def _update(**fields: Any) -> dict[str, Any]:
    return {"key": "mark", "type": "update", "next": "done", **fields}


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (_update(), '$[0]: must have "set_traits" or "set_stage"'),
        (_update(set_traits=[]), "$[0].set_traits: must be an object of trait names to values"),
        (_update(set_traits={}), "$[0].set_traits: must set 1 to 50 traits"),
        (
            _update(set_traits={f"t{i}": i for i in range(51)}),
            "$[0].set_traits: must set 1 to 50 traits",
        ),
        (
            _update(set_traits={"a.b": 1}),
            "$[0].set_traits.a.b: is not a trait name (1 to 255 characters, no dots)",
        ),
        (
            _update(set_traits={" ": 1}),
            "$[0].set_traits. : is not a trait name (1 to 255 characters, no dots)",
        ),
        (
            _update(set_traits={"score": float("nan")}),
            "$[0].set_traits.score: must be a JSON value",
        ),
        (
            _update(set_traits={"when": {"at": dt.date(2025, 1, 1)}}),
            "$[0].set_traits.when: must be a JSON value",
        ),
        (
            _update(set_stage="Very Active"),
            "$[0].set_stage: must be a stage key (at most 32 letters, digits, _ or -)",
        ),
        (_update(set_stage="x", stage="y"), "$[0].stage: is not a field of an update step"),
    ],
)
def test_it_rejects_a_bad_update_step(step: dict[str, Any], message: str) -> None:
    assert _step_error(step) == message


def test_an_update_step_may_set_only_the_stage_or_only_traits() -> None:
    graph = graph_parse(
        [
            _update(set_stage="active", next="traits"),
            _update(key="traits", set_traits={"plan": None, "seats": 3.5}),
            EXIT,
        ]
    )

    assert graph.steps[:2] == (
        UpdateStep("mark", "traits", {}, "active"),
        UpdateStep("traits", "done", {"plan": None, "seats": 3.5}, None),
    )


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"key": "done", "type": "exit", "next": "x"}, "$[0].next: is not a field of an exit step"),
        (
            {"key": "done", "type": "exit", "outcome": "won"},
            "$[0].outcome: must be one of completed, exited",
        ),
    ],
)
def test_it_rejects_a_bad_exit_step(step: dict[str, Any], message: str) -> None:
    assert _error([step]) == message


# --- References and the shape of the graph --------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([_send(next_="x"), EXIT], '$[0].next: no step "x"'),
        (
            [_wait(until=_UNTIL, timeout={"days": 1}, timeout_next="later"), EXIT],
            '$[0].timeout_next: no step "later"',
        ),
        (
            [_branch({"stage": "a"}, branches=[{"when": {"stage": "a"}, "next": "nope"}]), EXIT],
            '$[0].branches[0].next: no step "nope"',
        ),
        ([_branch({"stage": "a"}, **{"else": "other"}), EXIT], '$[0].else: no step "other"'),
        (
            [_split(_A, {**_A, "name": "B", "next": "b"}), EXIT],
            '$[0].variants[1].next: no step "b"',
        ),
        (
            [_branch({"engagement": "opened", "step": "tips"}), EXIT],
            '$[0].branches[0].when.step: no step "tips"',
        ),
        (
            [
                _wait(duration={"days": 1}, next="pick"),
                _branch({"any": [{"stage": "a"}, {"engagement": "opened", "step": "w"}]}),
                EXIT,
            ],
            '$[1].branches[0].when.any[1].step: step "w" is a wait step, not a send step',
        ),
    ],
)
def test_it_rejects_a_reference_to_a_missing_or_wrong_step(
    steps: list[dict[str, Any]], message: str
) -> None:
    assert _error(steps) == message


def test_it_names_a_loop_back_to_the_first_step() -> None:
    steps = [
        _send("a", "b"),
        _wait(key="b", duration={"days": 1}, next="c"),
        _send("c", "a"),
    ]

    assert _error(steps) == (
        "$[2].next: makes a loop (a -> b -> c -> a): every path must end at an exit step"
    )


def test_it_names_a_step_that_goes_to_itself() -> None:
    steps = [_send("a", "b"), _send("b", "b"), EXIT]

    assert _error(steps) == (
        "$[1].next: makes a loop (b -> b): every path must end at an exit step"
    )


def test_it_rejects_a_loop_even_when_another_branch_reaches_an_exit() -> None:
    # The retry loop can escape on the timeout, but a loop is still a path that need not end.
    steps = [
        _send("nudge", "await"),
        _wait(key="await", until=_UNTIL, timeout={"days": 2}, timeout_next="nudge", next="done"),
        EXIT,
    ]

    assert _error(steps) == (
        "$[1].timeout_next: makes a loop (nudge -> await -> nudge): every path must end at an"
        " exit step"
    )


def test_it_names_a_loop_through_a_split_variant() -> None:
    steps = [
        _split({"name": "A", "weight": 1, "next": "done"}, {"name": "B", "weight": 1, "next": "x"}),
        _send("x", "ab"),
        EXIT,
    ]

    assert _error(steps) == (
        "$[1].next: makes a loop (ab -> x -> ab): every path must end at an exit step"
    )


def test_it_names_every_unreachable_step() -> None:
    steps = [_send("a", "done"), _send("orphan", "done"), EXIT, _send("stray", "orphan")]

    assert _error(steps) == (
        '$[1]: is unreachable from the first step; unreachable: "orphan", "stray"'
    )


def test_an_unreachable_loop_is_reported_as_unreachable() -> None:
    steps = [_send("a", "done"), EXIT, _send("x", "y"), _send("y", "x")]

    assert _error(steps) == '$[2]: is unreachable from the first step; unreachable: "x", "y"'


def test_paths_may_join_again_without_making_a_loop() -> None:
    steps = [
        _branch({"stage": "a"}, branches=[{"when": {"stage": "a"}, "next": "x"}], **{"else": "y"}),
        _send("x", "z"),
        _send("y", "z"),
        _send("z", "done"),
        EXIT,
    ]

    assert graph_parse(steps).successors("pick") == ("x", "y")


# --- Engagement conditions name a send step that comes first ----------------------------------


def _engaged(send: str) -> dict[str, Any]:
    return {"engagement": "clicked", "step": send}


def test_an_engagement_condition_may_name_a_send_step_on_every_path_before_it() -> None:
    steps = [
        _send("tips", "fork"),
        _branch({"stage": "a"}, key="fork", branches=[{"when": {"stage": "a"}, "next": "x"}],
                **{"else": "y"}),
        _send("x", "pick"),
        _send("y", "pick"),
        _branch(_engaged("tips")),
        EXIT,
    ]  # fmt: skip

    assert graph_parse(steps).step("pick") == BranchStep(
        "pick", (Branch(EngagementIs("clicked", "tips"), "done"),), "done"
    )


def test_it_rejects_an_engagement_condition_on_a_send_step_only_some_paths_pass() -> None:
    steps = [
        _branch({"stage": "a"}, key="fork", branches=[{"when": {"stage": "a"}, "next": "x"}],
                **{"else": "y"}),
        _send("x", "pick"),
        _send("y", "pick"),
        _branch(_engaged("x")),
        EXIT,
    ]  # fmt: skip

    assert _error(steps) == (
        '$[3].branches[0].when.step: send step "x" does not come before this branch on every path'
    )


def test_it_rejects_an_engagement_condition_on_a_send_step_after_the_branch() -> None:
    steps = [_branch(_engaged("later"), **{"else": "later"}), _send("later", "done"), EXIT]

    assert _error(steps) == (
        '$[0].branches[0].when.step: send step "later" does not come before this branch on every'
        " path"
    )


def test_it_rejects_an_engagement_condition_on_a_send_step_on_another_branch() -> None:
    steps = [
        _split(
            {"name": "A", "weight": 1, "next": "mail"}, {"name": "B", "weight": 1, "next": "pick"}
        ),
        _send("mail", "done"),
        _branch({"not": _engaged("mail")}),
        EXIT,
    ]

    assert _error(steps) == (
        '$[2].branches[0].when.not.step: send step "mail" does not come before this branch on'
        " every path"
    )
