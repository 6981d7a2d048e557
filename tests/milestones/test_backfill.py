"""The backfill: the set-based SQL path gives exactly what the live evaluator gives.

Most tests build a history, run the backfill (SQL), then wipe its rows and run
``pairs_evaluate`` (the live evaluator, the reference) over every subject at the same moment,
and compare every stored field of progress and outcomes.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customers.models import Account, Customer, Source
from milestones.backfill import backfill_run
from milestones.backfill_sql import Plan
from milestones.conditions import ConditionError
from milestones.evaluation import pairs_evaluate
from milestones.models import (
    Backfill,
    BackfillStatus,
    MilestoneDefinition,
    MilestoneOutcome,
    Progress,
)
from milestones.registry import registry_clear
from milestones.services import definition_activate, definition_create
from milestones.signals import OutcomeRecord, outcomes_recorded
from tests.factories import AccountFactory, CustomerFactory, EventFactory, SourceFactory
from tests.milestones.conftest import T0

pytestmark = pytest.mark.django_db

Make = Callable[..., MilestoneDefinition]
NOW = T0 + dt.timedelta(days=60)
DAY = dt.timedelta(days=1)
_FIELDS = (
    "unit",
    "state",
    "anchor_at",
    "deadline_at",
    "achieved_at",
    "missed_at",
    "is_late",
    "done",
    "total",
    "label",
    "detail",
    "ineligible_reason",
)
_OUTCOME_FIELDS = ("unit", "kind", "is_late", "occurred_at")


@pytest.fixture
def source() -> Source:
    return SourceFactory()


@pytest.fixture
def event(source: Source) -> Callable[..., None]:
    def _event(customer: Customer, name: str, at: dt.datetime, **properties: Any) -> None:
        EventFactory(
            source=source,
            customer=customer,
            name=name,
            occurred_at=at,
            received_at=at,
            properties=properties,
        )

    return _event


def customer(**fields: Any) -> Customer:
    fields.setdefault("created_at", T0)
    return CustomerFactory(**fields)


Snapshot = tuple[dict[int, tuple[object, ...]], dict[tuple[int, str], tuple[object, ...]]]


def snapshot(version_id: int) -> Snapshot:
    progress = {
        row[0]: row[1:]
        for row in Progress.objects.filter(version_id=version_id).values_list(
            "subject_id", *_FIELDS
        )
    }
    outcomes = {
        (row[0], row[1]): row[2:]
        for row in MilestoneOutcome.objects.filter(version_id=version_id).values_list(
            "subject_id", "kind", *_OUTCOME_FIELDS
        )
    }
    return progress, outcomes


def run_backfill(definition: MilestoneDefinition, at: dt.datetime = NOW) -> Backfill:
    with time_machine.travel(at, tick=False):
        backfill = Backfill.objects.create(version_id=definition.active_version_id)
        return backfill_run(backfill_id=backfill.pk)


def evaluate_in_python(definition: MilestoneDefinition, at: dt.datetime = NOW) -> Snapshot:
    version_id = definition.active_version_id
    assert version_id is not None
    model = Account if definition.unit == "account" else Customer
    with time_machine.travel(at, tick=False), transaction.atomic():
        pairs_evaluate([(version_id, pk) for pk in model.objects.values_list("pk", flat=True)])
    return snapshot(version_id)


def both_ways(
    definition: MilestoneDefinition,
    at: dt.datetime = NOW,
    *,
    before: dt.datetime | Callable[[], object] | None = None,
) -> tuple[Snapshot, Backfill]:
    """Backfill in SQL, then the live evaluator from scratch; assert they agree. With
    ``before`` (a moment, or a function that stores rows), both start from the same stored
    rows: those the live evaluator stored at that earlier moment, or the function's."""
    version_id = definition.active_version_id
    assert version_id is not None

    def prepare() -> None:
        if callable(before):
            before()
        elif before is not None:
            evaluate_in_python(definition, before)

    prepare()
    backfill = run_backfill(definition, at)
    by_sql = snapshot(version_id)
    Progress.objects.filter(version_id=version_id).delete()
    MilestoneOutcome.objects.filter(version_id=version_id).delete()
    prepare()
    by_python = evaluate_in_python(definition, at)
    assert by_sql == by_python
    return by_sql, backfill


# --- Each condition type, SQL against the live evaluator ----------------------------------


def test_an_event_count_is_achieved_at_the_nth_event_in_the_range(
    milestone: Make, event: Callable[..., None]
) -> None:
    # given
    definition = milestone(
        "two_reports",
        condition={"type": "event_count", "event": "Report Created", "at_least": 2},
        window=dt.timedelta(days=30),
    )
    early, on_time, late, idle = customer(), customer(), customer(), customer()
    event(early, "Report Created", T0 - DAY)  # before the anchor: not counted
    event(early, "Report Created", T0 + DAY)
    event(on_time, "Report Created", T0 + DAY)
    event(on_time, "Report Created", T0 + 30 * DAY)  # exactly at the deadline: inside
    event(late, "Report Created", T0 + DAY)
    event(late, "Report Created", T0 + 31 * DAY)
    event(idle, "Other", T0 + DAY)

    # when
    (progress, outcomes), backfill = both_ways(definition)

    # then
    assert backfill.method == "sql"
    assert backfill.status == BackfillStatus.DONE
    assert (backfill.total, backfill.processed) == (4, 4)
    assert (backfill.achieved, backfill.missed) == (2, 3)
    assert progress[on_time.pk][1:5] == (
        "achieved",
        T0,
        T0 + 30 * DAY,
        T0 + 30 * DAY,
    )
    assert progress[early.pk][1] == "missed"
    assert progress[early.pk][7:10] == (1, 2, "1 of 2 Report Created")
    # what happened after the deadline is already a late achievement
    assert outcomes[(late.pk, "missed")] == ("customer", "missed", False, T0 + 30 * DAY)
    assert outcomes[(late.pk, "achieved")] == ("customer", "achieved", True, T0 + 31 * DAY)
    assert set(outcomes) == {
        (on_time.pk, "achieved"),
        (early.pk, "missed"),
        (late.pk, "missed"),
        (late.pk, "achieved"),
        (idle.pk, "missed"),
    }


def test_a_rolling_count_includes_the_window_edge_and_simultaneous_events(
    milestone: Make, event: Callable[..., None]
) -> None:
    # given: "3 reports within 7 days"
    definition = milestone(
        "three_in_a_week",
        condition={
            "type": "event_count",
            "event": "Report Created",
            "at_least": 3,
            "within": {"days": 7},
        },
    )
    edge, outside, simultaneous, spread = customer(), customer(), customer(), customer()
    for at in (T0 + DAY, T0 + 4 * DAY, T0 + 8 * DAY):  # first exactly 7 days before the third
        event(edge, "Report Created", at)
    for at in (T0 + DAY, T0 + 4 * DAY, T0 + 8 * DAY + dt.timedelta(microseconds=1)):
        event(outside, "Report Created", at)
    for _ in range(3):
        event(simultaneous, "Report Created", T0 + 2 * DAY)
    for day in (1, 9, 17, 25, 26):
        event(spread, "Report Created", T0 + day * DAY)

    # when
    (progress, outcomes), backfill = both_ways(definition)

    # then
    assert backfill.method == "sql"
    assert progress[edge.pk][1:5] == ("achieved", T0, None, T0 + 8 * DAY)
    assert progress[outside.pk][1] == "in_progress"
    assert progress[outside.pk][7:10] == (2, 3, "2 of 3 Report Created within 7 days")
    assert progress[simultaneous.pk][4] == T0 + 2 * DAY
    assert progress[spread.pk][7:10] == (2, 3, "2 of 3 Report Created within 7 days")
    assert set(outcomes) == {(edge.pk, "achieved"), (simultaneous.pk, "achieved")}


def test_a_property_sum_is_exact_counts_refunds_and_filters_by_currency(
    milestone: Make, event: Callable[..., None]
) -> None:
    definition = milestone(
        "spent_100",
        kind="value",
        condition={
            "type": "property_sum",
            "event": "Order Completed",
            "property": "order.amount",
            "at_least": 100,
            "where": [{"property": "currency", "op": "eq", "value": "USD"}],
        },
    )
    refunded, reached, mixed, euros = customer(), customer(), customer(), customer()
    event(refunded, "Order Completed", T0 + DAY, order={"amount": 90}, currency="USD")
    event(refunded, "Order Completed", T0 + 2 * DAY, order={"amount": -50}, currency="USD")
    event(refunded, "Order Completed", T0 + 3 * DAY, order={"amount": 55}, currency="USD")
    event(reached, "Order Completed", T0 + DAY, order={"amount": 60.5}, currency="USD")
    event(reached, "Order Completed", T0 + 2 * DAY, order={"amount": 39.5}, currency="USD")
    event(mixed, "Order Completed", T0 + DAY, order={"amount": "99"}, currency="USD")
    event(mixed, "Order Completed", T0 + DAY, order={"amount": True}, currency="USD")
    event(mixed, "Order Completed", T0 + DAY, order={"amount": 12.25}, currency="USD")
    event(euros, "Order Completed", T0 + DAY, order={"amount": 500}, currency="EUR")

    (progress, outcomes), backfill = both_ways(definition)

    assert backfill.method == "sql"
    assert progress[refunded.pk][7:10] == (95, 100, "95 of 100 order.amount from Order Completed")
    assert progress[reached.pk][4] == T0 + 2 * DAY
    assert progress[mixed.pk][9] == "12.25 of 100 order.amount from Order Completed"
    assert progress[euros.pk][7] == 0
    assert set(outcomes) == {(reached.pk, "achieved")}


def test_a_rolling_sum_drops_amounts_older_than_the_window(
    milestone: Make, event: Callable[..., None]
) -> None:
    definition = milestone(
        "spent_in_a_day",
        condition={
            "type": "property_sum",
            "event": "Order Completed",
            "property": "amount",
            "at_least": 10,
            "within": {"hours": 24},
        },
    )
    slow, fast = customer(), customer()
    event(slow, "Order Completed", T0 + DAY, amount=6)
    event(slow, "Order Completed", T0 + 2 * DAY + dt.timedelta(seconds=1), amount=6)
    event(fast, "Order Completed", T0 + DAY, amount=6)
    event(fast, "Order Completed", T0 + 2 * DAY, amount=4)

    (progress, outcomes), _ = both_ways(definition)

    assert progress[slow.pk][7:10] == (6, 10, "6 of 10 amount from Order Completed within 1 day")
    assert progress[fast.pk][4] == T0 + 2 * DAY
    assert set(outcomes) == {(fast.pk, "achieved")}


def test_float_sums_the_evaluator_rounds_differently_are_left_to_it(
    milestone: Make, event: Callable[..., None]
) -> None:
    # given: 0.1 + 0.7 is 0.8 in decimal but 0.7999999999999999 in floats, below 0.8
    definition = milestone(
        "cents",
        condition={
            "type": "property_sum",
            "event": "Tip",
            "property": "amount",
            "at_least": 0.8,
        },
    )
    rounded, plain = customer(), customer()
    event(rounded, "Tip", T0 + DAY, amount=0.1)
    event(rounded, "Tip", T0 + 2 * DAY, amount=0.7)
    event(plain, "Tip", T0 + DAY, amount=0.5)
    event(plain, "Tip", T0 + 2 * DAY, amount=0.5)

    # when
    (progress, outcomes), backfill = both_ways(definition)

    # then: the evaluator's answer, not the decimal one
    assert backfill.method == "sql"
    assert progress[rounded.pk][1] == "in_progress"
    assert set(outcomes) == {(plain.pk, "achieved")}


def test_distinct_days_are_local_days_in_the_customer_time_zone(
    milestone: Make, event: Callable[..., None]
) -> None:
    definition = milestone(
        "two_days",
        condition={"type": "distinct_days", "event": "Login", "days": 2},
    )
    tokyo = customer(time_zone="Asia/Tokyo")
    utc = customer(time_zone="")
    unknown = customer(time_zone="Mars/Olympus_Mons")
    new_york = customer(time_zone="America/New_York")
    # 14:00 and 16:00 UTC are one day in UTC but two in Tokyo (16:00 UTC is 01:00 next day).
    for person in (tokyo, utc, unknown):
        event(person, "Login", T0 + dt.timedelta(hours=5))
        event(person, "Login", T0 + dt.timedelta(hours=7))
    # 03:00 and 05:00 UTC are one day in UTC, two in New York (23:00 and 01:00 local).
    event(new_york, "Login", T0 + DAY - dt.timedelta(hours=6))
    event(new_york, "Login", T0 + DAY - dt.timedelta(hours=4))

    (progress, outcomes), backfill = both_ways(definition)

    assert backfill.method == "sql"
    assert progress[tokyo.pk][4] == T0 + dt.timedelta(hours=7)
    assert progress[utc.pk][7:10] == (1, 2, "1 of 2 days with Login")
    assert progress[unknown.pk][1] == "in_progress"
    assert progress[new_york.pk][4] == T0 + DAY - dt.timedelta(hours=4)
    assert set(outcomes) == {(tokyo.pk, "achieved"), (new_york.pk, "achieved")}


def test_distinct_values_follow_json_equality(milestone: Make, event: Callable[..., None]) -> None:
    # given: 1 and 1.0 are one value; true, "1" and 2 are three more; null and lists none
    definition = milestone(
        "four_kinds",
        condition={"type": "distinct_count", "event": "Used", "of": "kind", "at_least": 4},
    )
    person, short = customer(), customer()
    values: list[object] = [1, 1.0, True, "1", None, [1], {"a": 1}, 2]
    for offset, value in enumerate(values):
        event(person, "Used", T0 + offset * DAY, kind=value)
        if offset < 5:
            event(short, "Used", T0 + offset * DAY, kind=value)

    (progress, outcomes), _ = both_ways(definition)

    assert progress[person.pk][4] == T0 + 7 * DAY
    assert progress[short.pk][7:10] == (3, 4, "3 of 4 values of kind with Used")
    assert set(outcomes) == {(person.pk, "achieved")}


def test_an_account_counts_its_distinct_customers(
    milestone: Make, event: Callable[..., None]
) -> None:
    definition = milestone(
        "team_active",
        unit="account",
        condition={
            "type": "distinct_count",
            "event": "Report Created",
            "of": "customer",
            "at_least": 2,
        },
    )
    team = AccountFactory(created_at=T0)
    solo = AccountFactory(created_at=T0)
    first, second = customer(account=team), customer(account=team)
    alone = customer(account=solo)
    event(first, "Report Created", T0 + DAY)
    event(first, "Report Created", T0 + 2 * DAY)
    event(second, "Report Created", T0 + 3 * DAY)
    event(alone, "Report Created", T0 + DAY)
    event(alone, "Report Created", T0 + 2 * DAY)

    (progress, outcomes), backfill = both_ways(definition)

    assert backfill.method == "sql"
    assert (backfill.total, backfill.processed) == (2, 2)
    assert progress[team.pk][:5] == ("account", "achieved", T0, None, T0 + 3 * DAY)
    assert progress[solo.pk][7:10] == (1, 2, "1 of 2 customers with Report Created")
    assert set(outcomes) == {(team.pk, "achieved")}


def test_composites_are_achieved_at_the_latest_and_earliest_child(
    milestone: Make, event: Callable[..., None]
) -> None:
    both = {
        "type": "all",
        "conditions": [
            {"type": "event_count", "event": "Report Created", "at_least": 2},
            {
                "type": "any",
                "conditions": [
                    {"type": "distinct_days", "event": "Login", "days": 3},
                    {"type": "property_sum", "event": "Order", "property": "amount", "at_least": 5},
                ],
            },
        ],
    }
    definition = milestone("activated_team", condition=both, window=dt.timedelta(days=20))
    done, half, late = customer(), customer(), customer()
    for person in (done, half, late):
        event(person, "Report Created", T0 + DAY)
        event(person, "Report Created", T0 + 2 * DAY)
    event(done, "Order", T0 + 5 * DAY, amount=5)
    event(half, "Login", T0 + 3 * DAY)
    event(late, "Order", T0 + 25 * DAY, amount=5)

    (progress, outcomes), _ = both_ways(definition)

    assert progress[done.pk][4] == T0 + 5 * DAY
    assert progress[half.pk][1] == "missed"
    assert progress[half.pk][7:10] == (1, 2, "1 of 2 conditions")
    assert progress[late.pk][1:7] == (
        "achieved",
        T0,
        T0 + 20 * DAY,
        T0 + 25 * DAY,
        T0 + 20 * DAY,
        True,
    )
    assert set(outcomes) == {
        (done.pk, "achieved"),
        (half.pk, "missed"),
        (late.pk, "missed"),
        (late.pk, "achieved"),
    }


@pytest.mark.parametrize(
    ("test", "matching"),
    [
        ({"property": "plan.tier", "op": "eq", "value": "pro"}, {"p1"}),
        ({"property": "plan.tier", "op": "neq", "value": "pro"}, {"p2", "p3", "p4", "p5"}),
        ({"property": "seats", "op": "eq", "value": 3}, {"p1", "p2"}),
        ({"property": "seats", "op": "in", "value": [True, 10, "3"]}, {"p3", "p4", "p5"}),
        ({"property": "seats", "op": "gte", "value": 3}, {"p1", "p2", "p3"}),
        ({"property": "seats", "op": "lt", "value": 3.5}, {"p1", "p2"}),
        ({"property": "tags", "op": "contains", "value": "beta"}, {"p1", "p5"}),
        ({"property": "plan.tier", "op": "exists", "value": True}, {"p1", "p2"}),
        ({"property": "plan.tier", "op": "exists", "value": False}, {"p3", "p4", "p5"}),
    ],
)
def test_property_filters_match_the_evaluator(
    milestone: Make, event: Callable[..., None], test: dict[str, object], matching: set[str]
) -> None:
    definition = milestone(
        "filtered",
        condition={"type": "event_count", "event": "Seat", "at_least": 1, "where": [test]},
    )
    people = {name: customer(external_id=name) for name in ("p1", "p2", "p3", "p4", "p5")}
    event(people["p1"], "Seat", T0 + DAY, plan={"tier": "pro"}, seats=3, tags=["beta", 1])
    event(people["p2"], "Seat", T0 + DAY, plan={"tier": "free"}, seats=3.0, tags="alpha")
    event(people["p3"], "Seat", T0 + DAY, plan={"tier": None}, seats=10, tags=["x"])
    event(people["p4"], "Seat", T0 + DAY, plan="pro", seats="3")
    event(people["p5"], "Seat", T0 + DAY, plan=["pro"], seats=True, tags="in beta")

    (_, outcomes), backfill = both_ways(definition)

    assert backfill.method == "sql"
    achieved = {s for (s, kind) in outcomes if kind == "achieved"}
    assert achieved == {people[name].pk for name in matching}


def test_a_number_the_evaluator_reads_as_a_float_differently_is_left_to_it(
    milestone: Make, event: Callable[..., None]
) -> None:
    # given: 3.0000000000000001 is the float 3.0 for the evaluator, more than 3 for SQL
    definition = milestone(
        "above_three",
        condition={
            "type": "event_count",
            "event": "Seat",
            "at_least": 1,
            "where": [{"property": "seats", "op": "gt", "value": 3}],
        },
    )
    precise, plain = customer(), customer()
    event(precise, "Seat", T0 + DAY, seats=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE customers_event SET properties = '{\"seats\": 3.0000000000000001}'::jsonb"
            " WHERE customer_id = %s",
            [precise.pk],
        )
    event(plain, "Seat", T0 + DAY, seats=4)

    (progress, outcomes), backfill = both_ways(definition)

    assert backfill.method == "sql"
    assert progress[precise.pk][1] == "in_progress"
    assert set(outcomes) == {(plain.pk, "achieved")}


# --- Clocks, eligibility, states ----------------------------------------------------------


def test_an_event_anchor_starts_the_clock_and_subjects_without_it_get_no_row(
    milestone: Make, event: Callable[..., None]
) -> None:
    definition = milestone(
        "report_after_trial",
        anchor="event",
        anchor_event="Trial Started",
        window=dt.timedelta(days=10),
        condition={"type": "event_count", "event": "Report Created", "at_least": 1},
    )
    quick, early, never = customer(), customer(), customer()
    event(quick, "Trial Started", T0 + 5 * DAY)
    event(quick, "Trial Started", T0 + 6 * DAY)
    event(quick, "Report Created", T0 + 15 * DAY)  # exactly at the deadline
    event(early, "Report Created", T0 + DAY)  # before its clock started
    event(early, "Trial Started", T0 + 2 * DAY)
    event(never, "Report Created", T0 + DAY)

    (progress, outcomes), backfill = both_ways(definition)

    assert backfill.method == "sql"
    assert set(progress) == {quick.pk, early.pk}
    assert progress[quick.pk][1:5] == ("achieved", T0 + 5 * DAY, T0 + 15 * DAY, T0 + 15 * DAY)
    assert progress[early.pk][1:7] == (
        "missed",
        T0 + 2 * DAY,
        T0 + 12 * DAY,
        None,
        T0 + 12 * DAY,
        False,
    )
    assert set(outcomes) == {(quick.pk, "achieved"), (early.pk, "missed")}


def test_ineligible_subjects_get_their_reason_and_no_outcome(
    milestone: Make, event: Callable[..., None]
) -> None:
    definition = milestone(
        "pro_reports",
        eligibility={"plans": ["pro", "trial"], "billing": "paid"},
        window=dt.timedelta(days=5),
    )
    pro, free, trial = customer(plan="pro"), customer(plan="free"), customer(plan="trial")
    for person in (pro, free, trial):
        event(person, "Task Done", T0 + DAY)

    (progress, outcomes), backfill = both_ways(definition)

    assert backfill.method == "sql"
    assert progress[free.pk][1] == "ineligible"
    assert progress[free.pk][7:12] == (0, 1, "", {}, "plan")
    assert progress[trial.pk][1] == "ineligible"
    assert progress[trial.pk][11] == "billing"
    assert set(outcomes) == {(pro.pk, "achieved")}


def test_a_deadline_inside_the_grace_period_is_not_missed_yet(
    milestone: Make, event: Callable[..., None]
) -> None:
    definition = milestone("quick", window=dt.timedelta(days=1))
    waiting = customer()

    (progress, outcomes), _ = both_ways(definition, T0 + DAY + dt.timedelta(seconds=30))

    assert progress[waiting.pk][1] == "in_progress"
    assert outcomes == {}


def test_a_missed_subject_that_achieves_later_is_achieved_late(
    milestone: Make, event: Callable[..., None]
) -> None:
    # given: missed at the deadline by the live evaluator, then the event happened
    definition = milestone("quick", window=dt.timedelta(days=2))
    tardy = customer()
    event(tardy, "Task Done", T0 + 10 * DAY)

    # when
    (progress, outcomes), backfill = both_ways(definition, before=T0 + 5 * DAY)

    # then
    assert backfill.achieved == 1
    assert backfill.missed == 0
    assert progress[tardy.pk][1:7] == (
        "achieved",
        T0,
        T0 + 2 * DAY,
        T0 + 10 * DAY,
        T0 + 2 * DAY,
        True,
    )
    assert outcomes[(tardy.pk, "achieved")] == ("customer", "achieved", True, T0 + 10 * DAY)
    assert outcomes[(tardy.pk, "missed")] == ("customer", "missed", False, T0 + 2 * DAY)


def test_an_earlier_event_that_arrived_late_moves_a_stored_achievement_back(
    milestone: Make, event: Callable[..., None]
) -> None:
    # given: achieved at day 5 when evaluated; the day-2 event arrived afterwards
    definition = milestone("quick")
    person = customer()
    event(person, "Task Done", T0 + 5 * DAY)
    event(person, "Task Done", T0 + 2 * DAY)

    def achieved_on_day_five() -> None:
        common = {
            "version_id": definition.active_version_id,
            "definition": definition,
            "unit": "customer",
            "subject_id": person.pk,
        }
        Progress.objects.create(
            **common,
            state="achieved",
            anchor_at=T0,
            achieved_at=T0 + 5 * DAY,
            done=1,
            label="1 of 1 Task Done",
        )
        MilestoneOutcome.objects.create(**common, kind="achieved", occurred_at=T0 + 5 * DAY)

    # when
    (progress, outcomes), backfill = both_ways(definition, before=achieved_on_day_five)

    # then
    assert backfill.achieved == 0
    assert progress[person.pk][1:5] == ("achieved", T0, None, T0 + 2 * DAY)
    assert outcomes == {(person.pk, "achieved"): ("customer", "achieved", False, T0 + 2 * DAY)}


def test_events_up_to_the_ingest_tolerance_ahead_of_the_clock_count(
    milestone: Make, event: Callable[..., None]
) -> None:
    definition = milestone("quick")
    soon, later = customer(), customer()
    event(soon, "Task Done", NOW + dt.timedelta(minutes=4))
    event(later, "Task Done", NOW + dt.timedelta(minutes=6))

    (_, outcomes), _ = both_ways(definition)

    assert set(outcomes) == {(soon.pk, "achieved")}


def test_running_it_again_records_nothing_new_and_rewrites_no_row(
    milestone: Make, event: Callable[..., None]
) -> None:
    # given
    definition = milestone("quick", window=dt.timedelta(days=2))
    done, late, open_ = customer(), customer(), customer(created_at=NOW - DAY)
    event(done, "Task Done", T0 + DAY)
    first = run_backfill(definition)
    rows = list(Progress.objects.order_by("subject_id").values())
    outcomes = list(MilestoneOutcome.objects.order_by("id").values())

    # when
    again = run_backfill(definition, NOW + dt.timedelta(hours=1))

    # then
    assert (first.achieved, first.missed) == (1, 1)
    assert (again.processed, again.achieved, again.missed) == (3, 0, 0)
    assert list(Progress.objects.order_by("subject_id").values()) == rows
    assert list(MilestoneOutcome.objects.order_by("id").values()) == outcomes
    assert {row["subject_id"]: row["state"] for row in rows} == {
        done.pk: "achieved",
        late.pk: "missed",
        open_.pk: "in_progress",
    }


def test_a_finished_backfill_is_left_alone(milestone: Make) -> None:
    definition = milestone("quick")
    customer()
    backfill = run_backfill(definition)

    again = backfill_run(backfill_id=backfill.pk)

    assert again.finished_at == backfill.finished_at
    assert Progress.objects.count() == 1


def test_an_achieved_row_is_never_written_again(milestone: Make) -> None:
    # given: the live evaluator saw an achievement this history does not show
    definition = milestone("quick")
    lucky = customer()
    Progress.objects.create(
        version_id=definition.active_version_id,
        definition=definition,
        unit="customer",
        subject_id=lucky.pk,
        state="achieved",
        anchor_at=T0,
        achieved_at=T0 + DAY,
        done=1,
        label="1 of 1 Task Done",
    )

    # when
    backfill = run_backfill(definition)

    # then
    assert backfill.achieved == 0
    assert Progress.objects.get().achieved_at == T0 + DAY
    assert not MilestoneOutcome.objects.exists()


def test_progress_is_saved_and_reported_after_every_chunk(
    milestone: Make, event: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("milestones.backfill.CHUNK", 2)
    definition = milestone("quick")
    people = [customer() for _ in range(5)]
    event(people[0], "Task Done", T0 + DAY)
    seen: list[tuple[int, int, int]] = []
    with time_machine.travel(NOW, tick=False):
        backfill = Backfill.objects.create(version_id=definition.active_version_id)
        backfill_run(
            backfill_id=backfill.pk,
            on_progress=lambda b: seen.append((b.processed, b.total, b.achieved)),
        )

    assert seen == [(2, 5, 1), (4, 5, 1), (5, 5, 1)]
    assert Backfill.objects.get(pk=backfill.pk).processed == 5


def test_outcomes_are_published_after_commit(
    milestone: Make, event: Callable[..., None], django_capture_on_commit_callbacks: Any
) -> None:
    definition = milestone("quick", window=dt.timedelta(days=2))
    done, late = customer(), customer()
    event(done, "Task Done", T0 + DAY)
    published: list[OutcomeRecord] = []

    def receive(sender: object, outcomes: list[OutcomeRecord], **kwargs: object) -> None:
        published.extend(outcomes)

    outcomes_recorded.connect(receive)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            run_backfill(definition)
    finally:
        outcomes_recorded.disconnect(receive)

    assert sorted((r.subject_id, r.kind, r.key, r.occurred_at) for r in published) == [
        (done.pk, "achieved", "quick", T0 + DAY),
        (late.pk, "missed", "quick", T0 + 2 * DAY),
    ]


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_chunks_run_on_two_connections_at_once(
    milestone: Make,
    event: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    # given: committed rows, so that the workers' own connections see them
    monkeypatch.setattr("milestones.tasks.backfill_run_task.delay", lambda *a, **k: None)
    monkeypatch.setattr("milestones.backfill.CHUNK", 2)
    settings.MILESTONES_BACKFILL_WORKERS = 2
    definition = milestone("quick", window=dt.timedelta(days=2))
    people = [customer() for _ in range(7)]
    for person in people[::2]:
        event(person, "Task Done", T0 + DAY)
    seen: list[int] = []

    # when
    with time_machine.travel(NOW, tick=False):
        backfill = Backfill.objects.create(version_id=definition.active_version_id)
        finished = backfill_run(
            backfill_id=backfill.pk, on_progress=lambda b: seen.append(b.processed)
        )

    # then
    assert seen == [2, 4, 6, 7]
    assert (finished.method, finished.achieved, finished.missed) == ("sql", 4, 3)
    by_sql = snapshot(definition.active_version_id)
    Progress.objects.all().delete()
    MilestoneOutcome.objects.all().delete()
    assert evaluate_in_python(definition) == by_sql


def test_a_failing_chunk_marks_the_backfill_failed_and_keeps_the_chunks_before_it(
    milestone: Make, event: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("milestones.backfill.CHUNK", 2)
    definition = milestone("quick")
    people = [customer() for _ in range(3)]
    original = Plan.statement
    calls = iter(range(10))

    def statement(self: Plan, **kwargs: Any) -> Any:
        if next(calls) == 1:
            raise RuntimeError("the database went away")
        return original(self, **kwargs)

    monkeypatch.setattr(Plan, "statement", statement)

    with pytest.raises(RuntimeError, match="the database went away"):
        run_backfill(definition)

    failed = Backfill.objects.get(version_id=definition.active_version_id, status="failed")
    assert (failed.error, failed.processed) == ("the database went away", 2)
    assert failed.finished_at is not None
    assert sorted(Progress.objects.values_list("subject_id", flat=True)) == [
        people[0].pk,
        people[1].pk,
    ]


# --- The Python path ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"condition": {"type": "streak", "event": "Login", "periods": 2, "unit": "day"}},
        {
            "condition": {
                "type": "distinct_days",
                "event": "Login",
                "days": 2,
                "within": {"days": 3},
            }
        },
        {
            "condition": {
                "type": "all",
                "conditions": [
                    {"type": "event_count", "event": "Login", "at_least": 2},
                    {"type": "attribute", "trait": "plan", "op": "eq", "value": "free"},
                ],
            }
        },
        {
            "condition": {
                "type": "event_count",
                "event": "Login",
                "at_least": 1,
                "where": [{"property": "n", "op": "gt", "value": 0.12345678901234567}],
            }
        },
    ],
)
def test_a_condition_sql_cannot_evaluate_exactly_is_backfilled_in_python(
    milestone: Make, event: Callable[..., None], fields: dict[str, Any]
) -> None:
    definition = milestone("habit", **fields)
    regular, once = customer(), customer()
    event(regular, "Login", T0 + DAY, n=1)
    event(regular, "Login", T0 + 2 * DAY, n=1)
    event(once, "Login", T0 + DAY, n=0)

    (_, outcomes), backfill = both_ways(definition)

    assert backfill.method == "python"
    assert (backfill.processed, backfill.achieved) == (2, 1)
    assert set(outcomes) == {(regular.pk, "achieved")}


def test_a_milestone_anchor_is_backfilled_in_python(
    milestone: Make, event: Callable[..., None]
) -> None:
    first = milestone(
        "first_report", condition={"type": "event_count", "event": "R", "at_least": 1}
    )
    definition = milestone(
        "second_report",
        anchor="milestone",
        anchor_milestone="first_report",
        condition={"type": "event_count", "event": "R", "at_least": 2},
    )
    person = customer()
    event(person, "R", T0 + DAY)
    event(person, "R", T0 + 2 * DAY)
    run_backfill(first)

    (progress, _), backfill = both_ways(definition)

    assert backfill.method == "python"
    assert progress[person.pk][1:5] == ("achieved", T0 + DAY, None, T0 + 2 * DAY)


# --- The command --------------------------------------------------------------------------


def test_the_command_runs_a_backfill_in_process_with_a_progress_bar(
    milestone: Make, event: Callable[..., None]
) -> None:
    definition = milestone("quick")
    done, _waiting = customer(), customer()
    event(done, "Task Done", T0 + DAY)
    out, err = io.StringIO(), io.StringIO()

    with time_machine.travel(NOW, tick=False):
        call_command("milestone_backfill", "quick", "--sync", stdout=out, stderr=err)

    assert out.getvalue() == "Backfilled “quick” (sql): 2 subjects, 1 achieved, 0 missed.\n"
    assert err.getvalue().startswith(f"[{'#' * 30}] 100% 2/2 subjects, 1 achieved, 0 missed, ")
    finished = Backfill.objects.get(version_id=definition.active_version_id, status="done")
    assert (finished.method, finished.processed) == ("sql", 2)
    assert Progress.objects.count() == 2


def test_the_command_queues_a_backfill_for_a_worker(
    milestone: Make, django_capture_on_commit_callbacks: Any
) -> None:
    definition = milestone("quick")
    out = io.StringIO()

    with django_capture_on_commit_callbacks() as callbacks:
        call_command("milestone_backfill", "quick", stdout=out)

    queued = Backfill.objects.filter(version_id=definition.active_version_id).latest("id")
    assert out.getvalue() == f"Queued backfill {queued.pk} of “quick”.\n"
    assert queued.status == "queued"
    assert len(callbacks) == 1
    assert not Progress.objects.exists()


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("nope", "No milestone has the key “nope”."),
        (
            "drafted",
            "The milestone “drafted” is draft: only an active milestone can be backfilled.",
        ),
    ],
)
def test_the_command_refuses_an_unknown_or_inactive_milestone(
    milestone: Make, key: str, message: str
) -> None:
    milestone("drafted", activate=False)

    with pytest.raises(CommandError) as raised:
        call_command("milestone_backfill", key, "--sync", stdout=io.StringIO())

    assert str(raised.value) == message
    assert not Backfill.objects.exists()


# --- SQL against the live evaluator on random histories -----------------------------------

_WITHIN = st.sampled_from([None, {"hours": 36}, {"days": 3}])
_WHERE = st.sampled_from(
    [
        [],
        [{"property": "kind", "op": "eq", "value": "a"}],
        [{"property": "kind", "op": "neq", "value": 1}],
        [{"property": "amount", "op": "gte", "value": 1}],
        [{"property": "kind", "op": "exists", "value": False}],
    ]
)
_LEAF = st.one_of(
    st.builds(
        lambda n, within, where: {
            "type": "event_count",
            "event": "A",
            "at_least": n,
            "where": where,
            **({"within": within} if within else {}),
        },
        st.integers(1, 3),
        _WITHIN,
        _WHERE,
    ),
    st.builds(
        lambda n, within, where: {
            "type": "property_sum",
            "event": "A",
            "property": "amount",
            "at_least": n,
            "where": where,
            **({"within": within} if within else {}),
        },
        st.sampled_from([1, 2, 0.8, 3.5]),
        _WITHIN,
        _WHERE,
    ),
    st.builds(
        lambda n, where: {"type": "distinct_days", "event": "B", "days": n, "where": where},
        st.integers(1, 3),
        _WHERE,
    ),
    st.builds(
        lambda n, where: {
            "type": "distinct_count",
            "event": "A",
            "of": "kind",
            "at_least": n,
            "where": where,
        },
        st.integers(1, 3),
        _WHERE,
    ),
)
_CONDITION = st.one_of(
    _LEAF,
    st.builds(
        lambda kind, children: {"type": kind, "conditions": children},
        st.sampled_from(["all", "any"]),
        st.lists(_LEAF, min_size=2, max_size=3),
    ),
)
_EVENT = st.tuples(
    st.integers(0, 2),
    st.sampled_from(["A", "B"]),
    st.integers(-24, 24 * 12).map(lambda hours: T0 + dt.timedelta(hours=hours)),
    st.sampled_from([1, 2.5, -1, 0.1, 0.7, "x", None, True]),
    st.sampled_from(["a", "b", 1, 1.0, True, None]),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    condition=_CONDITION,
    window=st.sampled_from([None, dt.timedelta(days=2), dt.timedelta(days=9)]),
    anchor=st.sampled_from(["signup", "event"]),
    zones=st.lists(st.sampled_from(["UTC", "Asia/Tokyo", "America/New_York", ""]), min_size=3),
    events=st.lists(_EVENT, max_size=14),
    at=st.sampled_from([T0 + 4 * DAY, NOW]),
    before=st.sampled_from([None, T0 + 2 * DAY]),
)
def test_sql_and_the_live_evaluator_agree_on_random_histories(
    source: Source,
    condition: dict[str, Any],
    window: dt.timedelta | None,
    anchor: str,
    zones: list[str],
    events: list[tuple[int, str, dt.datetime, object, object]],
    at: dt.datetime,
    before: dt.datetime | None,
) -> None:
    with transaction.atomic():
        try:
            definition = definition_create(
                key="random",
                name="Random",
                kind="habit",
                condition=condition,
                window=window,
                anchor=anchor,
                anchor_event="B" if anchor == "event" else "",
            )
        except ConditionError:
            transaction.set_rollback(True)
            return
        definition_activate(definition=definition)
        people = [
            customer(time_zone=zone, created_at=T0 + dt.timedelta(hours=7 * index))
            for index, zone in enumerate(zones[:3])
        ]
        for who, name, moment, amount, kind in events:
            EventFactory(
                source=source,
                customer=people[who],
                name=name,
                occurred_at=moment,
                received_at=moment,
                properties={"amount": amount, "kind": kind},
            )
        _, backfill = both_ways(definition, at, before=before)
        assert backfill.method == "sql"
        transaction.set_rollback(True)
    registry_clear()
