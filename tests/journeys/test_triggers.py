"""Events and stage changes enroll customers in the journeys they trigger (with the trigger's
property filters), and until-waits end early when their event or milestone comes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine

from customers.models import Customer
from customers.signals import IngestedEvent
from journeys.enrollment import entries_from_outcomes
from journeys.exits import exits_apply
from journeys.models import Enrollment, Journey, StepRun
from journeys.receivers import on_events_ingested, on_stage_changed
from journeys.runner import enrollments_advance
from journeys.services import JourneyInvalid, journey_go_live, journey_save
from milestones.signals import OutcomeRecord, StageChangeRecord
from tests.factories import CustomerFactory, EventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _at_noon() -> Iterator[None]:
    """Receivers read the clock: everything here happens at NOW unless a test says later."""
    with time_machine.travel(NOW, tick=False):
        yield


NOW = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
DONE = [{"key": "done", "type": "exit"}]


def live(trigger: dict[str, Any], steps: list[dict[str, Any]] = DONE, **fields: Any) -> Journey:
    journey = journey_save(
        key=fields.pop("key", "j"), name="J", trigger=trigger, steps=steps, **fields
    )
    journey_go_live(journey_id=journey.pk)
    return journey


def ingested(customer: Customer, name: str, **properties: Any) -> IngestedEvent:
    event = EventFactory(customer=customer, name=name, properties=properties, occurred_at=NOW)
    return IngestedEvent(event.pk, customer.pk, None, "track", name, NOW)


def test_an_event_enrolls_only_when_the_triggers_filters_match(ready: None) -> None:
    live({"kind": "event", "event": "Order Completed",
          "filters": [{"property": "total", "op": "gte", "value": 100}]})  # fmt: skip
    big, small = CustomerFactory(), CustomerFactory()

    on_events_ingested(
        sender=None,
        events=[
            ingested(big, "Order Completed", total=120),
            ingested(small, "Order Completed", total=5),
        ],
    )

    assert list(Enrollment.objects.values_list("customer_id", flat=True)) == [big.pk]


def test_a_trigger_with_a_bad_filter_is_refused_naming_it() -> None:
    with pytest.raises(JourneyInvalid, match=r"trigger\.filters\[0\]"):
        journey_save(
            key="bad", name="Bad", steps=DONE,
            trigger={"kind": "event", "event": "X", "filters": [{"property": "a", "op": "near"}]},
        )  # fmt: skip


def test_a_stage_change_enrolls_in_the_journeys_for_that_stage(ready: None) -> None:
    live({"kind": "stage_changed", "to": "at_risk"})
    customer = CustomerFactory()
    change = StageChangeRecord(customer.pk, "active", "at_risk", NOW)

    on_stage_changed(sender=None, changes=[change])
    on_stage_changed(sender=None, changes=[change])
    on_stage_changed(sender=None, changes=[StageChangeRecord(customer.pk, "x", "champion", NOW)])

    assert Enrollment.objects.count() == 1


UNTIL = [
    {"key": "hold", "type": "wait", "until": {"event": "Setup Finished"},
     "timeout": {"days": 3}, "next": "thanks", "timeout_next": "help"},
    {"key": "thanks", "type": "exit"},
    {"key": "help", "type": "exit", "outcome": "exited"},
]  # fmt: skip


@pytest.fixture
def holding(ready: None) -> Enrollment:
    live({"kind": "stage_changed", "to": "onboarding"}, UNTIL)
    customer = CustomerFactory()
    on_stage_changed(
        sender=None, changes=[StageChangeRecord(customer.pk, "new", "onboarding", NOW)]
    )
    enrollments_advance(now=NOW)
    enrollment = Enrollment.objects.get()
    assert (enrollment.state, enrollment.next_run_at) == ("waiting", NOW + 3 * DAY)
    return enrollment


def test_an_until_wait_ends_when_its_event_comes_and_takes_next(holding: Enrollment) -> None:
    on_events_ingested(sender=None, events=[ingested(holding.customer, "Setup Finished")])
    enrollments_advance(now=NOW + DAY)

    holding.refresh_from_db()
    assert (holding.state, holding.current_step) == ("completed", "thanks")
    assert list(StepRun.objects.order_by("id").values_list("step_key", "result")) == [
        ("hold", {"until": "met", "by": "event Setup Finished"}),
        ("thanks", {}),
    ]


def test_an_until_wait_that_times_out_takes_its_timeout_branch(holding: Enrollment) -> None:
    enrollments_advance(now=NOW + 3 * DAY)

    holding.refresh_from_db()
    assert (holding.state, holding.current_step) == ("exited", "help")


def test_an_until_wait_for_a_milestone_ends_on_its_outcome(ready: None) -> None:
    steps = [
        {"key": "hold", "type": "wait", "until": {"milestone": "activated", "state": "achieved"},
         "timeout": {"days": 3}, "next": "thanks", "timeout_next": "help"},
        {"key": "thanks", "type": "exit"},
        {"key": "help", "type": "exit", "outcome": "exited"},
    ]  # fmt: skip
    live({"kind": "stage_changed", "to": "onboarding"}, steps)
    customer = CustomerFactory()
    on_stage_changed(
        sender=None, changes=[StageChangeRecord(customer.pk, "new", "onboarding", NOW)]
    )
    enrollments_advance(now=NOW)
    achieved = OutcomeRecord(9, 1, 1, "activated", "customer", customer.pk, "achieved", False,
                             NOW + DAY)  # fmt: skip

    exits_apply(entries_from_outcomes([achieved]), now=NOW + DAY)
    enrollments_advance(now=NOW + DAY)

    assert Enrollment.objects.get().current_step == "thanks"
