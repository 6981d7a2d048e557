"""Exits and goals, checked continuously: an outcome or event ends a running enrollment at
once, and a goal reached within its window converts it (held-out ones too)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from customers.models import Customer
from customers.signals import IngestedEvent
from journeys.enrollment import Entry, enroll, entries_from_outcomes
from journeys.exits import exits_apply
from journeys.models import Enrollment, Journey
from journeys.receivers import on_events_ingested
from journeys.runner import enrollments_advance
from journeys.services import journey_go_live, journey_save
from milestones.signals import OutcomeRecord
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
LONG_WAIT = [
    {"key": "wait", "type": "wait", "duration": {"days": 30}, "next": "done"},
    {"key": "done", "type": "exit"},
]


def live(**fields: Any) -> Journey:
    journey = journey_save(
        key=fields.pop("key", "setup-nudge"),
        name="Setup nudge",
        trigger={"kind": "milestone_missed", "milestone": "activated"},
        steps=LONG_WAIT,
        **fields,
    )
    journey_go_live(journey_id=journey.pk)
    journey.refresh_from_db()
    return journey


def outcome(customer: Customer, kind: str, at: dt.datetime, outcome_id: int) -> list[Entry]:
    record = OutcomeRecord(outcome_id, 1, 1, "activated", "customer", customer.pk, kind, False, at)
    return entries_from_outcomes([record])


@pytest.fixture
def waiting(ready: None) -> tuple[Customer, Enrollment]:
    live(
        exit_when=[{"milestone": "activated", "state": "achieved"}, {"event": "Account Closed"}],
        goal={"milestone": "activated", "within": {"days": 14}},
    )
    customer = CustomerFactory()
    (enrollment,) = enroll(outcome(customer, "missed", NOW, 1), now=NOW)
    enrollments_advance(now=NOW)
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.next_run_at) == ("waiting", NOW + 30 * DAY)
    return customer, enrollment


def test_achieving_the_milestone_during_a_30_day_wait_exits_at_once_and_converts(
    waiting: tuple[Customer, Enrollment],
) -> None:
    customer, enrollment = waiting

    changed = exits_apply(outcome(customer, "achieved", NOW + 3 * DAY, 2), now=NOW + 3 * DAY)

    enrollment.refresh_from_db()
    assert changed == 1
    assert (
        enrollment.state, enrollment.finished_at, enrollment.next_run_at, enrollment.converted_at,
        enrollment.exit_reason,
    ) == (
        "exited", NOW + 3 * DAY, None, NOW + 3 * DAY, "exit: milestone_achieved activated",
    )  # fmt: skip
    assert exits_apply(outcome(customer, "achieved", NOW + 3 * DAY, 2)) == 0  # idempotent


def test_an_exit_event_ends_the_enrollment_through_the_ingest_signal(
    waiting: tuple[Customer, Enrollment],
) -> None:
    customer, enrollment = waiting
    event = IngestedEvent(77, customer.pk, None, "track", "Account Closed", NOW + DAY)

    on_events_ingested(sender=None, events=[event])

    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.exit_reason, enrollment.converted_at) == (
        "exited",
        "exit: event Account Closed",
        None,
    )


def test_a_goal_reached_after_its_window_does_not_convert(
    waiting: tuple[Customer, Enrollment],
) -> None:
    customer, enrollment = waiting

    exits_apply(outcome(customer, "achieved", NOW + 15 * DAY, 2), now=NOW + 15 * DAY)

    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.converted_at) == ("exited", None)


def test_held_out_customers_convert_too_so_lift_can_be_measured(ready: None) -> None:
    live(holdout_percent=50, goal={"milestone": "activated", "within": {"days": 14}})
    customers = CustomerFactory.create_batch(12)
    enroll([e for c in customers for e in outcome(c, "missed", NOW, c.pk)], now=NOW)

    exits_apply(
        [e for c in customers for e in outcome(c, "achieved", NOW + DAY, 1000 + c.pk)],
        now=NOW + DAY,
    )

    rows = set(Enrollment.objects.values_list("state", "converted_at"))
    assert rows == {("holdout", NOW + DAY), ("active", NOW + DAY)}


def test_what_happened_before_the_customer_entered_does_not_end_the_pass(
    waiting: tuple[Customer, Enrollment],
) -> None:
    customer, enrollment = waiting

    assert exits_apply(outcome(customer, "achieved", NOW - DAY, 2)) == 0

    enrollment.refresh_from_db()
    assert enrollment.state == "waiting"


def test_entries_no_journey_watches_cost_no_query(
    waiting: tuple[Customer, Enrollment], django_assert_num_queries: Any
) -> None:
    customer, _ = waiting
    other = Entry(customer.pk, "event", "Page Viewed", "event:9", NOW + DAY)
    exits_apply([other], now=NOW + DAY)  # loads the watched names once

    with django_assert_num_queries(0):
        changed = exits_apply([other], now=NOW + 2 * DAY)

    assert changed == 0


def test_a_finished_enrollment_that_converted_is_left_alone(
    waiting: tuple[Customer, Enrollment],
) -> None:
    customer, enrollment = waiting
    exits_apply(outcome(customer, "achieved", NOW + DAY, 2), now=NOW + DAY)
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.converted_at) == ("exited", NOW + DAY)
    closed = Entry(customer.pk, "event", "Account Closed", "event:7", NOW + 2 * DAY)

    assert exits_apply([closed], now=NOW + 2 * DAY) == 0
    enrollment.refresh_from_db()
    assert (enrollment.exit_reason, enrollment.converted_at) == (
        "exit: milestone_achieved activated",
        NOW + DAY,
    )


def test_a_journey_made_in_this_process_is_watched_at_once(ready: None) -> None:
    live()
    customer = CustomerFactory()
    assert len(enroll(outcome(customer, "missed", NOW, 1), now=NOW)) == 1
    assert exits_apply([Entry(customer.pk, "event", "Cancelled", "event:1", NOW)], now=NOW) == 0
    live(key="winback", exit_when=[{"event": "Cancelled"}])
    (second,) = enroll(outcome(customer, "missed", NOW, 2), now=NOW)

    changed = exits_apply([Entry(customer.pk, "event", "Cancelled", "event:2", NOW)], now=NOW)

    second.refresh_from_db()
    assert (changed, second.state, second.exit_reason) == (1, "exited", "exit: event Cancelled")
