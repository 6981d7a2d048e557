"""New enrollments take their first steps right after the commit that enrolled them, in the
same process; whatever that cannot do, the woken runner task does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from journeys import receivers
from journeys.models import Enrollment
from journeys.receivers import on_outcomes_recorded
from journeys.services import journey_go_live, journey_save
from messaging.channels.registry import backends_reset
from messaging.models import Message
from messaging.tasks import sms_send_task
from milestones.signals import OutcomeRecord
from tests.factories import CustomerFactory
from tests.journeys.conftest import MISSED, STEPS

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(ready: None) -> None:
    journey = journey_save(key="setup-nudge", name="Setup nudge", trigger=MISSED, steps=STEPS)
    journey_go_live(journey_id=journey.pk)


@pytest.fixture
def wakes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    woken: list[str] = []
    monkeypatch.setattr(receivers, "wake", lambda task: woken.append(task.name))
    return woken


def outcome(**fields: Any) -> OutcomeRecord:
    customer = CustomerFactory(**fields)
    return OutcomeRecord(
        1, 1, 1, "activated", "customer", customer.pk, "missed", False, customer.created_at
    )


def test_an_outcome_gets_the_journeys_first_message_without_a_task_hop(
    live: None, wakes: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        on_outcomes_recorded(sender=None, outcomes=[outcome()])

    enrollment = Enrollment.objects.get()
    assert (enrollment.state, Message.objects.get().idempotency_key) == (
        "completed",
        f"journey:{enrollment.pk}:nudge:1",
    )
    assert wakes == []


@pytest.fixture
def null_sms(settings: Any) -> Iterator[None]:
    settings.MESSAGING_BACKENDS = {
        **settings.MESSAGING_BACKENDS, "sms": "messaging.channels.null.NullBackend"
    }  # fmt: skip
    backends_reset()
    yield
    backends_reset()


def test_the_first_message_is_sent_right_there_too(
    live: None,
    null_sms: None,
    wakes: list[str],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handed: list[list[int]] = []
    monkeypatch.setattr(sms_send_task, "delay", lambda ids: handed.append(ids))

    with django_capture_on_commit_callbacks(execute=True):
        on_outcomes_recorded(sender=None, outcomes=[outcome(phone="+14155550100", region="US")])

    message = Message.objects.get()
    assert (message.status, message.channel, message.provider_id) == ("sent", "sms", "null-1")
    assert (handed, wakes) == ([], [])


def test_with_advancing_on_entry_off_the_runner_task_is_woken(
    live: None, wakes: list[str], django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.JOURNEYS_ADVANCE_ON_ENTRY = False

    with django_capture_on_commit_callbacks(execute=True):
        on_outcomes_recorded(sender=None, outcomes=[outcome()])

    assert (Enrollment.objects.get().state, Message.objects.count()) == ("active", 0)
    assert wakes == ["journeys.enrollments_advance"]


def test_a_failure_advancing_leaves_the_enrollment_due_and_wakes_the_runner(
    live: None,
    wakes: list[str],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(**kwargs: Any) -> int:
        raise RuntimeError("database went away")

    monkeypatch.setattr(receivers, "enrollments_advance", broken)

    with django_capture_on_commit_callbacks(execute=True):
        on_outcomes_recorded(sender=None, outcomes=[outcome()])

    assert Enrollment.objects.get().state == "active"
    assert wakes == ["journeys.enrollments_advance"]
