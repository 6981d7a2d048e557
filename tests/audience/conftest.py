"""A customer with a history in every app, made through the apps' services where they exist:
consent set through ``subscription_set``/``suppression_add``, a journey enrolled by an outcome
and advanced by the runner, messages decided by the real delivery policy."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any, cast

import pytest
import time_machine

from consent.models import Preference, RegionPolicy, Topic
from consent.services import Evidence, subscription_set, suppression_add
from customers.models import Customer
from journeys.enrollment import enroll, entries_from_outcomes
from journeys.models import Enrollment, Journey
from journeys.runner import enrollments_advance
from journeys.services import journey_go_live, journey_save
from messaging.models import Message, MessageStatus
from messaging.services import SendRequest, messages_request
from messaging.templating import template_activate, template_save
from milestones.models import MilestoneDefinition, Progress, ProgressState, Unit
from milestones.services import definition_activate, definition_create
from milestones.signals import OutcomeRecord
from tests.factories import AccountFactory, CustomerFactory, DeviceFactory, EventFactory

NOW = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)
STEPS: list[dict[str, Any]] = [
    {"key": "nudge", "type": "send", "templates": ["setup-help"], "next": "pause"},
    {"key": "pause", "type": "wait", "duration": {"days": 2}, "next": "done"},
    {"key": "done", "type": "exit", "outcome": "completed"},
]
FIELDS: dict[str, dict[str, Any]] = {
    "email": {"subject": "Tips", "preheader": "", "html": "<p>Tips</p>", "text": ""},
    "sms": {"body": "Need a hand with setup?"},
    "push": {"title": "Tips", "body": "3 tips", "deep_link": "app://tips", "data": {}},
}


@dataclasses.dataclass(frozen=True)
class Seeded:
    customer: Customer
    enrollment: Enrollment
    journey: Journey
    milestone: MilestoneDefinition
    sent: Message  # tips by email, sent
    journey_sms: Message  # the journey's SMS, stopped by the suppressed phone
    push: Message  # tips by push, stopped: unknown consent in an opt-in region


@pytest.fixture
def frozen() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def topics(db: None) -> dict[str, Topic]:
    return {
        "tips": Topic.objects.create(key="tips", name="Tips"),
        "receipts": Topic.objects.create(key="receipts", name="Receipts", is_transactional=True),
        "old": Topic.objects.create(key="old-news", name="Old news", is_active=False),
    }


def _template(key: str, channel: str, topic: Topic) -> None:
    template = template_save(
        key=key,
        name=key,
        channel=channel,
        topic=topic,
        default_locale="en",
        variants={"en": FIELDS[channel]},
    )
    template_activate(template_id=template.pk)


def _evidence() -> Evidence:
    return Evidence(source="api")


def _outcome(customer: Customer) -> OutcomeRecord:
    return OutcomeRecord(1, 1, 1, "activated", "customer", customer.pk, "missed", False, NOW)


def _customer(**fields: Any) -> Customer:
    return cast(Customer, CustomerFactory(**fields))


@pytest.fixture
def seeded(
    frozen: None, topics: dict[str, Topic], django_capture_on_commit_callbacks: Any
) -> Seeded:
    # The customer: in an opt-in region, with an email, a phone and a push token.
    RegionPolicy.objects.create(region="DE", mode="opt_in")
    account = AccountFactory(external_id="acme", name="Acme Analytics", plan="enterprise")
    customer = _customer(
        external_id="ada",
        email="ada@acme.example",
        phone="+4915112345678",
        region="DE",
        account=account,
    )
    DeviceFactory(customer=customer, platform="ios", token="tok-ios-ada")
    EventFactory(customer=customer, name="Signed Up", occurred_at=NOW - dt.timedelta(days=3))
    EventFactory(customer=customer, name="Report Created", occurred_at=NOW - dt.timedelta(hours=1))

    # Consent: tips opted in by email and SMS, never asked on push; the phone bounced.
    for channel in ("email", "sms"):
        subscription_set(
            customer_id=customer.pk,
            channel=channel,
            topic_keys=["tips"],
            status="opted_in",
            evidence=_evidence(),
        )
    suppression_add(
        kind="phone", address="+4915112345678", reason="hard_bounce", note="carrier: unknown"
    )
    Preference.objects.create(
        customer=customer, max_marketing=3, period_days=7, paused_until=None, updated_at=NOW
    )

    # A milestone in progress, and its journey enrolled by a missed outcome.
    for key, channel in (("tips-email", "email"), ("tips-push", "push")):
        _template(key, channel, topics["tips"])
    _template("setup-help", "sms", topics["tips"])
    milestone = definition_create(
        key="activated",
        name="Activated",
        kind="onboarding",
        condition={"type": "event_count", "event": "Task Done", "at_least": 3},
    )
    definition_activate(definition=milestone)
    assert milestone.active_version is not None
    Progress.objects.create(
        version=milestone.active_version,
        definition=milestone,
        unit=Unit.CUSTOMER,
        subject_id=customer.pk,
        state=ProgressState.IN_PROGRESS,
        anchor_at=NOW - dt.timedelta(days=3),
        deadline_at=NOW + dt.timedelta(days=11),
        done=1,
        total=3,
    )
    journey = journey_save(
        key="setup-nudge",
        name="Setup nudge",
        trigger={"kind": "milestone_missed", "milestone": "activated"},
        steps=STEPS,
    )
    journey_go_live(journey_id=journey.pk)
    (enrollment,) = enroll(entries_from_outcomes([_outcome(customer)]), now=NOW)
    enrollments_advance(now=NOW)
    journey_sms = Message.objects.get(journey_key="setup-nudge")

    # Two more messages, a minute apart, decided by the policy.
    with time_machine.travel(NOW + dt.timedelta(minutes=1), tick=False):
        (sent_id,) = messages_request([SendRequest("tips-1", customer.pk, ("tips-email",))])
    Message.objects.filter(pk=sent_id).update(
        status=MessageStatus.SENT, sent_at=NOW + dt.timedelta(minutes=1)
    )
    with time_machine.travel(NOW + dt.timedelta(minutes=2), tick=False):
        (push_id,) = messages_request([SendRequest("tips-2", customer.pk, ("tips-push",))])
    enrollment.refresh_from_db()
    journey.refresh_from_db()
    return Seeded(
        customer=customer,
        enrollment=enrollment,
        journey=journey,
        milestone=milestone,
        sent=Message.objects.get(pk=sent_id),
        journey_sms=journey_sms,
        push=Message.objects.get(pk=push_id),
    )
