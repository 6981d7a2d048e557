"""The outcome sweep: an outcome whose signal was lost still enrolls, from a durable cursor
over the gap-free outcomes feed (committed rows: these tests commit)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.db import connection
from django.utils import timezone

from customers.models import Customer, Event
from customers.signals import IngestedEvent
from journeys.enrollment import enroll, entries_from_outcomes
from journeys.models import Enrollment, Journey, SweepCursor
from journeys.receivers import on_events_ingested, on_stage_changed
from journeys.services import journey_go_live, journey_save
from journeys.sweep import events_sweep, outcomes_sweep, stage_changes_sweep
from milestones.evaluation import xact_id
from milestones.models import MilestoneDefinition, MilestoneOutcome, StageChange
from milestones.signals import OutcomeRecord, StageChangeRecord
from tests.factories import CustomerFactory, EventFactory
from tests.journeys.conftest import MISSED, STEPS

pytestmark = pytest.mark.django_db(transaction=True)

GRACE = dt.timedelta(seconds=60)


def live() -> Journey:
    journey = journey_save(key="setup-nudge", name="Setup nudge", trigger=MISSED, steps=STEPS)
    journey_go_live(journey_id=journey.pk)
    return journey


def lost_outcome(customer: Customer, recorded_at: dt.datetime) -> MilestoneOutcome:
    """An outcome committed without its signal (as after a crash right after commit)."""
    definition = MilestoneDefinition.objects.get(key="activated")
    outcome: MilestoneOutcome = MilestoneOutcome.objects.create(
        version_id=definition.active_version_id, definition=definition, unit="customer",
        subject_id=customer.pk, kind="missed", occurred_at=recorded_at, recorded_at=recorded_at,
        xact_id=xact_id(),
    )  # fmt: skip
    outcome.refresh_from_db()
    settle(outcome)
    return outcome


def settle(outcome: MilestoneOutcome) -> None:
    """Wait until every transaction older than the outcome's has ended: the feed serves a row
    only then (a transaction elsewhere in the cluster, e.g. another test run, holds it back)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            (xmin,) = cursor.fetchone()
        if outcome.xact_id is not None and xmin > outcome.xact_id:
            return
        time.sleep(0.05)
    raise AssertionError("older transactions did not end within 30 s")


def test_the_first_sweep_starts_at_the_end_of_the_feed_and_replays_no_history(
    ready: None,
) -> None:
    live()
    lost_outcome(CustomerFactory(), timezone.now())

    swept = outcomes_sweep(now=timezone.now() + 2 * GRACE)

    assert (swept, Enrollment.objects.count(), SweepCursor.objects.count()) == (0, 0, 1)


def test_an_outcome_whose_signal_was_lost_enrolls_once_after_the_grace(ready: None) -> None:
    # given
    live()
    outcomes_sweep()  # the cursor exists from here on
    customer = CustomerFactory()
    recorded = timezone.now()
    outcome = lost_outcome(customer, recorded)

    # when / then: not before the grace (its signal may still be on its way)
    assert outcomes_sweep(now=recorded + GRACE - dt.timedelta(seconds=1)) == 0
    assert Enrollment.objects.count() == 0
    assert outcomes_sweep(now=recorded + GRACE) == 1
    assert outcomes_sweep(now=recorded + 2 * GRACE) == 0  # the cursor moved past it

    enrollment = Enrollment.objects.get()
    assert (enrollment.customer_id, enrollment.entry_key) == (customer.pk, f"outcome:{outcome.pk}")
    cursor = SweepCursor.objects.get()
    assert (cursor.xact_id, cursor.last_id) == (outcome.xact_id, outcome.pk)


def test_an_outcome_its_signal_handed_on_is_not_enrolled_twice(ready: None) -> None:
    live()
    outcomes_sweep()
    customer = CustomerFactory()
    recorded = timezone.now()
    outcome = lost_outcome(customer, recorded)
    record = OutcomeRecord(
        outcome.pk, outcome.definition_id, outcome.version_id, "activated", "customer",
        customer.pk, "missed", False, recorded,
    )  # fmt: skip
    enroll(entries_from_outcomes([record]))  # the signal did arrive

    assert outcomes_sweep(now=recorded + GRACE) == 1

    assert Enrollment.objects.count() == 1


def test_a_journey_live_after_the_outcome_was_recorded_does_not_take_it_late(
    ready: None,
) -> None:
    outcomes_sweep()
    recorded = timezone.now() - dt.timedelta(minutes=5)
    lost_outcome(CustomerFactory(), recorded)
    live()

    assert outcomes_sweep(now=timezone.now() + GRACE) == 1

    assert Enrollment.objects.count() == 0


# --- Events ---------------------------------------------------------------------------------


def event_journey() -> None:
    journey = journey_save(
        key="upgrade-thanks", name="Upgrade thanks",
        trigger={"kind": "event", "event": "Plan Upgraded"}, steps=STEPS,
    )  # fmt: skip
    journey_go_live(journey_id=journey.pk)


def test_an_event_whose_ingest_hook_was_lost_enrolls_once_after_the_grace(ready: None) -> None:
    # given: a live journey triggered by an event; the sweep's cursor and first mark are set
    event_journey()
    start = timezone.now()
    assert events_sweep(now=start) == 0  # the cursor starts at the end of the events
    lost = EventFactory(name="Plan Upgraded", received_at=start)
    EventFactory(name="Report Created", received_at=start)  # no journey cares
    assert events_sweep(now=start) == 0  # marks the events ingested so far

    # when / then: nothing before the grace has passed since the mark
    assert events_sweep(now=start + GRACE - dt.timedelta(seconds=1)) == 0
    assert events_sweep(now=start + GRACE) == 1
    assert events_sweep(now=start + 3 * GRACE) == 0  # the next mark has nothing new

    enrollment = Enrollment.objects.get()
    assert (enrollment.customer_id, enrollment.entry_key) == (lost.customer_id, f"event:{lost.pk}")


def test_an_event_its_hook_handed_on_is_not_enrolled_twice(ready: None) -> None:
    event_journey()
    start = timezone.now()
    events_sweep(now=start)
    event = EventFactory(name="Plan Upgraded", received_at=start)
    on_events_ingested(
        sender=None,
        events=[IngestedEvent(event.pk, event.customer_id, None, "track", event.name, start)],
    )
    events_sweep(now=start)

    assert events_sweep(now=start + GRACE) == 1

    assert Enrollment.objects.count() == 1


def test_more_than_a_batch_up_to_the_mark_is_read_over_several_rounds(ready: None) -> None:
    # given: five lost events a journey is triggered by, marked; the sweep reads two a round
    event_journey()
    start = timezone.now()
    events_sweep(now=start)
    lost = [EventFactory(name="Plan Upgraded", received_at=start) for _ in range(5)]
    events_sweep(now=start)  # the mark
    after_mark = EventFactory(name="Plan Upgraded", received_at=start)

    # when: rounds after the grace, two events each, until the mark is reached
    rounds = [events_sweep(now=start + GRACE, batch=2) for _ in range(4)]

    # then: 2 + 2 + 1 up to the mark, then a new mark (which waits its own grace)
    assert rounds == [2, 2, 1, 0]
    keys = set(Enrollment.objects.values_list("entry_key", flat=True))
    assert keys == {f"event:{e.pk}" for e in lost}
    cursor = SweepCursor.objects.get(name="events")
    assert (cursor.last_id, cursor.mark_id) == (lost[-1].pk, after_mark.pk)
    assert events_sweep(now=start + 2 * GRACE, batch=2) == 1


def test_with_no_journey_caring_about_events_the_sweep_reads_none(ready: None) -> None:
    start = timezone.now()
    events_sweep(now=start)
    EventFactory(name="Plan Upgraded", received_at=start)
    events_sweep(now=start)

    assert events_sweep(now=start + GRACE) == 0

    cursor = SweepCursor.objects.get(name="events")
    assert (cursor.last_id, cursor.marked_at) == (Event.objects.get().pk, start + GRACE)


# --- Stage changes --------------------------------------------------------------------------


def test_a_stage_change_whose_signal_was_lost_enrolls_once_and_matches_the_signals_key(
    ready: None,
) -> None:
    # given: a journey triggered by moving to "at_risk"; one change signalled, one lost
    journey = journey_save(
        key="win-back", name="Win back", trigger={"kind": "stage_changed", "to": "at_risk"},
        steps=STEPS,
    )  # fmt: skip
    journey_go_live(journey_id=journey.pk)
    start = timezone.now()
    stage_changes_sweep(now=start)
    signalled, lost = CustomerFactory(), CustomerFactory()
    for customer in (signalled, lost):
        StageChange.objects.create(
            customer=customer, from_stage="active", to_stage="at_risk", changed_at=start
        )
    StageChange.objects.create(
        customer=lost, from_stage="at_risk", to_stage="churned", changed_at=start
    )  # no journey cares
    on_stage_changed(
        sender=None, changes=[StageChangeRecord(signalled.pk, "active", "at_risk", start)]
    )
    stage_changes_sweep(now=start)  # marks

    # when
    assert stage_changes_sweep(now=start + GRACE) == 2

    # then: the lost one is enrolled, under the key its signal would have made
    assert sorted(Enrollment.objects.values_list("customer_id", "entry_key")) == sorted(
        (pk, f"stage:{pk}:at_risk:{start.isoformat()}") for pk in (signalled.pk, lost.pk)
    )
