"""Entering journeys from milestone outcomes: once per entry, under entry rules, the re-entry
policy and the holdout."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from customers.models import Customer
from journeys.enrollment import enroll, entries_from_outcomes
from journeys.graph import is_holdout
from journeys.models import Enrollment, Journey
from journeys.services import journey_go_live, journey_pause, journey_save
from milestones.signals import OutcomeRecord
from tests.factories import CustomerFactory
from tests.journeys.conftest import STEPS

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def live(**fields: Any) -> Journey:
    values: dict[str, Any] = {
        "name": "Setup nudge",
        "trigger": {"kind": "milestone_missed", "milestone": "activated"},
        "steps": STEPS,
    }
    journey = journey_save(key=fields.pop("key", "setup-nudge"), **{**values, **fields})
    journey_go_live(journey_id=journey.pk)
    journey.refresh_from_db()
    return journey


def missed(customer: Customer, outcome_id: int = 1, key: str = "activated") -> list[Any]:
    record = OutcomeRecord(outcome_id, 1, 1, key, "customer", customer.pk, "missed", False, NOW)
    return entries_from_outcomes([record])


def test_a_missed_outcome_enrolls_the_customer_at_the_first_step(ready: None) -> None:
    journey = live()
    customer = CustomerFactory()

    (made,) = enroll(missed(customer), now=NOW)

    stored = Enrollment.objects.get()
    assert stored.pk == made.pk
    assert (
        stored.journey_id, stored.version_id, stored.customer_id, stored.entry_key, stored.state,
        stored.current_step, stored.next_run_at,
    ) == (
        journey.pk, journey.active_version_id, customer.pk, "outcome:1", "active", "nudge", NOW,
    )  # fmt: skip


def test_the_same_outcome_delivered_twice_enrolls_once(ready: None) -> None:
    live()
    customer = CustomerFactory()

    enroll(missed(customer), now=NOW)
    again = enroll(missed(customer), now=NOW)

    assert (again, Enrollment.objects.count()) == ([], 1)


def test_only_live_journeys_triggered_by_that_milestone_and_kind_enroll(ready: None) -> None:
    paused = live(key="paused")
    journey_pause(journey_id=paused.pk)
    live(key="achieved", trigger={"kind": "milestone_achieved", "milestone": "activated"})
    customer = CustomerFactory()

    assert enroll(missed(customer), now=NOW) == []
    account_outcome = OutcomeRecord(2, 1, 1, "activated", "account", 5, "missed", False, NOW)
    assert entries_from_outcomes([account_outcome]) == []


def test_entry_rules_keep_out_customers_of_other_plans(ready: None) -> None:
    live(entry_rules={"plans": ["pro"]})
    pro, free = CustomerFactory(plan="PRO"), CustomerFactory(plan="free")

    made = enroll(missed(pro, 1) + missed(free, 2), now=NOW)

    assert [e.customer_id for e in made] == [pro.pk]


def test_a_customer_never_enters_twice_unless_re_entry_allows_it(ready: None) -> None:
    live()
    live(key="weekly", reentry="after_days", reentry_days=7)
    customer = CustomerFactory()
    enroll(missed(customer, 1), now=NOW)

    soon = enroll(missed(customer, 2), now=NOW + 6 * DAY)
    later = enroll(missed(customer, 3), now=NOW + 7 * DAY)

    assert soon == []
    assert [(e.journey.key, e.entry_key) for e in later] == [("weekly", "outcome:3")]


def test_held_out_customers_are_enrolled_as_the_control_group_and_never_run(ready: None) -> None:
    journey = live(holdout_percent=50)
    customers = CustomerFactory.create_batch(20)

    enroll([e for c in customers for e in missed(c, c.pk)], now=NOW)

    states = {e.customer_id: (e.state, e.next_run_at) for e in Enrollment.objects.all()}
    expected = {
        c.pk: ("holdout", None) if is_holdout(journey.key, c.pk, 50.0) else ("active", NOW)
        for c in customers
    }
    assert states == expected
    assert {state for state, _ in states.values()} == {"holdout", "active"}
