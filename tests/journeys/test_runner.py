"""The runner: due enrollments advance through sends, waits, branches, splits and updates,
hand sends to the outbox with the step run's key, and never send twice."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from consent.models import Topic
from customers.models import Customer
from journeys.enrollment import enroll, entries_from_outcomes
from journeys.graph import SplitStep, graph_parse, split_variant
from journeys.models import Enrollment, Journey, StepRun
from journeys.receivers import on_outcomes_recorded
from journeys.runner import enrollments_advance, step_run_key
from journeys.services import journey_go_live, journey_pause, journey_save
from messaging.models import Message
from messaging.templating import template_activate, template_save
from milestones.models import StageChange
from milestones.signals import OutcomeRecord
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SEND_WAIT_EXIT = [
    {"key": "nudge", "type": "send", "templates": ["setup-help"], "next": "pause"},
    {"key": "pause", "type": "wait", "duration": {"days": 2}, "next": "done"},
    {"key": "done", "type": "exit"},
]


def live(steps: list[dict[str, Any]], **fields: Any) -> Journey:
    journey = journey_save(
        key=fields.pop("key", "setup-nudge"),
        name="Setup nudge",
        trigger=fields.pop("trigger", {"kind": "milestone_missed", "milestone": "activated"}),
        steps=steps,
        **fields,
    )
    journey_go_live(journey_id=journey.pk)
    journey.refresh_from_db()
    return journey


def outcome(customer: Customer, outcome_id: int = 1) -> OutcomeRecord:
    return OutcomeRecord(
        outcome_id, 1, 1, "activated", "customer", customer.pk, "missed", False, NOW
    )


@pytest.fixture
def customer(db: None) -> Customer:
    return CustomerFactory(phone="+14155550100", time_zone="UTC", plan="pro")


def test_a_send_goes_to_the_outbox_with_the_step_runs_key_then_the_wait_then_the_end(
    ready: None, customer: Customer
) -> None:
    live(SEND_WAIT_EXIT)
    (enrollment,) = enroll(entries_from_outcomes([outcome(customer)]), now=NOW)

    assert enrollments_advance(now=NOW) == 1

    message = Message.objects.get()
    key = step_run_key(enrollment.pk, "nudge")
    assert (message.idempotency_key, message.status, message.journey_key) == (
        key,
        "queued",
        "setup-nudge",
    )
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.current_step, enrollment.next_run_at) == (
        "waiting",
        "pause",
        NOW + 2 * DAY,
    )
    assert list(StepRun.objects.values_list("step_key", "message_id")) == [("nudge", message.pk)]

    assert enrollments_advance(now=NOW + DAY) == 0
    assert enrollments_advance(now=NOW + 2 * DAY) == 1

    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.finished_at, enrollment.next_run_at) == (
        "completed",
        NOW + 2 * DAY,
        None,
    )
    assert list(StepRun.objects.order_by("id").values_list("step_key", flat=True)) == [
        "nudge",
        "pause",
        "done",
    ]
    assert Message.objects.count() == 1


def test_the_outcome_signal_enrolls_and_running_again_sends_nothing_twice(
    ready: None, customer: Customer, django_capture_on_commit_callbacks: Any
) -> None:
    live(SEND_WAIT_EXIT)
    with django_capture_on_commit_callbacks() as wake:
        on_outcomes_recorded(sender=None, outcomes=[outcome(customer)])
        on_outcomes_recorded(sender=None, outcomes=[outcome(customer)])

    enrollments_advance()
    enrollments_advance()

    assert Enrollment.objects.count() == 1
    assert Message.objects.count() == 1
    assert len(wake) == 1  # the runner was woken for the one new enrollment


def test_a_paused_journey_does_not_advance_and_a_held_out_customer_gets_nothing(
    ready: None, customer: Customer
) -> None:
    journey = live(SEND_WAIT_EXIT)
    enroll(entries_from_outcomes([outcome(customer)]), now=NOW)
    journey_pause(journey_id=journey.pk)

    assert enrollments_advance(now=NOW) == 0

    held = live(SEND_WAIT_EXIT, key="all-held", holdout_percent=50)
    everyone = CustomerFactory.create_batch(10, phone="+14155550101")
    enroll(entries_from_outcomes([outcome(c, c.pk) for c in everyone]), now=NOW)
    enrollments_advance(now=NOW)
    held_out = Enrollment.objects.filter(journey=held, state="holdout")
    assert held_out.exists()
    assert not Message.objects.filter(customer__in=[e.customer_id for e in held_out]).exists()


def test_branches_splits_and_updates_follow_the_customer(ready: None, customer: Customer) -> None:
    live(
        [
            {
                "key": "which",
                "type": "branch",
                "branches": [{"when": {"trait": "plan", "op": "eq", "value": "pro"}, "next": "ab"}],
                "else": "done",
            },
            {
                "key": "ab",
                "type": "split",
                "variants": [
                    {"name": "A", "weight": 1, "next": "mark"},
                    {"name": "B", "weight": 1, "next": "mark"},
                ],
            },
            {"key": "mark", "type": "update", "set_stage": "nurtured", "next": "done"},
            {"key": "done", "type": "exit"},
        ]
    )
    (enrollment,) = enroll(entries_from_outcomes([outcome(customer)]), now=NOW)

    enrollments_advance(now=NOW)

    enrollment.refresh_from_db()
    split = graph_parse(enrollment.version.steps).step("ab")
    assert isinstance(split, SplitStep)
    expected = split_variant("setup-nudge", "ab", customer.pk, split.variants).name
    assert (enrollment.state, enrollment.variants) == ("completed", {"ab": expected})
    assert list(StepRun.objects.order_by("id").values_list("step_key", flat=True)) == [
        "which",
        "ab",
        "mark",
        "done",
    ]
    customer.refresh_from_db()
    assert customer.lifecycle_stage == "nurtured"
    assert list(StageChange.objects.values_list("to_stage", "cause")) == [
        ("nurtured", "journey update step")
    ]


def test_a_branch_after_an_update_sees_the_update_and_traits_are_written(
    ready: None, customer: Customer
) -> None:
    # given: set a trait and a stage, then branch on both in the same run
    live(
        [
            {"key": "mark", "type": "update", "set_traits": {"tier": "gold"},
             "set_stage": "nurtured", "next": "which"},
            {
                "key": "which",
                "type": "branch",
                "branches": [
                    {"when": {"all": [{"trait": "tier", "op": "eq", "value": "gold"},
                                      {"stage": "nurtured"}]}, "next": "gold"},
                ],
                "else": "done",
            },
            {"key": "gold", "type": "exit", "outcome": "completed"},
            {"key": "done", "type": "exit", "outcome": "exited"},
        ]
    )  # fmt: skip
    enroll(entries_from_outcomes([outcome(customer)]), now=NOW)

    enrollments_advance(now=NOW)

    assert StepRun.objects.get(step_key="which").result == {"next": "gold"}
    customer.refresh_from_db()
    assert (customer.traits["tier"], customer.lifecycle_stage) == ("gold", "nurtured")


def test_a_send_after_an_update_renders_the_update(ready: None, customer: Customer) -> None:
    topic = Topic.objects.get(key="tips")
    body = "{{ customer.tier | default('none') }} / {{ customer.lifecycle_stage }}"
    template = template_save(
        key="tier-note", name="Tier note", channel="sms", topic=topic, default_locale="en",
        variants={"en": {"body": body}},
    )  # fmt: skip
    template_activate(template_id=template.pk)
    live(
        [
            {"key": "mark", "type": "update", "set_traits": {"tier": "gold"},
             "set_stage": "nurtured", "next": "note"},
            {"key": "note", "type": "send", "templates": ["tier-note"], "next": "done"},
            {"key": "done", "type": "exit"},
        ]
    )  # fmt: skip
    other = CustomerFactory(phone="+14155550101", time_zone="UTC", traits={"tier": "silver"})
    live(
        [
            {"key": "note", "type": "send", "templates": ["tier-note"], "next": "done"},
            {"key": "done", "type": "exit"},
        ],
        key="plain",
        trigger={"kind": "milestone_achieved", "milestone": "activated"},
    )
    achieved = OutcomeRecord(2, 1, 1, "activated", "customer", other.pk, "achieved", False, NOW)
    enroll(entries_from_outcomes([outcome(customer), achieved]), now=NOW)

    assert enrollments_advance(now=NOW) == 2

    bodies = dict(Message.objects.values_list("customer_id", "rendered__body"))
    assert bodies == {customer.pk: "gold / nurtured", other.pk: "silver / new"}
