"""Per-step counts and lift of a journey on a known dataset: every count exact."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import pytest

from consent.models import Topic
from customers.models import Customer
from journeys.models import (
    Enrollment,
    EnrollmentState,
    Journey,
    JourneyVersion,
    StepRun,
    StepRunStatus,
)
from journeys.reports import Lift, StepCounts, journey_report
from journeys.runner import step_run_key
from journeys.services import journey_go_live, journey_save
from messaging.models import Message
from tests.factories import CustomerFactory
from tests.journeys.conftest import MISSED

pytestmark = pytest.mark.django_db


def _customer(**fields: Any) -> Customer:
    return cast(Customer, CustomerFactory(**fields))  # type: ignore[no-untyped-call]


NOW = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)
V1: list[dict[str, Any]] = [
    {"key": "nudge", "type": "send", "templates": ["setup-help"], "next": "pause"},
    {"key": "pause", "type": "wait", "duration": {"days": 2}, "next": "done"},
    {"key": "done", "type": "exit"},
]
V2: list[dict[str, Any]] = [
    {"key": "hello", "type": "send", "templates": ["setup-help"], "next": "pause"},
    *V1[1:],
]
GOAL: dict[str, Any] = {"milestone": "activated", "within": {"days": 14}}


def _enrollment(
    journey: Journey,
    version: JourneyVersion,
    state: str,
    step: str,
    *,
    converted: bool = False,
    number: int = 0,
) -> Enrollment:
    customer: Customer = _customer()
    return Enrollment.objects.create(
        version=version, journey=journey, customer=customer, entry_key=f"outcome:{number}",
        state=state, current_step=step, entered_at=NOW,
        converted_at=NOW + dt.timedelta(days=1) if converted else None,
    )  # fmt: skip


def _run(enrollment: Enrollment, step: str, message: tuple[str, str] | None = None) -> None:
    key = step_run_key(enrollment.pk, step)
    message_id = None
    if message is not None:
        status, reason = message
        message_id = Message.objects.create(
            idempotency_key=key, customer=enrollment.customer, channels=["sms"],
            channel="sms" if status != "suppressed" else "", topic=Topic.objects.get(key="tips"),
            status=status, reason=reason,
        ).pk  # fmt: skip
    StepRun.objects.create(
        enrollment=enrollment, step_key=step, idempotency_key=key, status=StepRunStatus.DONE,
        message_id=message_id, at=NOW,
    )  # fmt: skip


@pytest.fixture
def dataset(ready: None) -> dict[str, Any]:
    """v1: four customers in the journey, two held out; v2: one customer at a step v1 lacks."""
    journey = journey_save(key="setup-nudge", name="Setup nudge", trigger=MISSED, steps=V1,
                           goal=GOAL, holdout_percent=10)  # fmt: skip
    v1 = journey_go_live(journey_id=journey.pk)
    # converted, waiting at pause after an SMS was delivered
    waiting = _enrollment(journey, v1, EnrollmentState.WAITING, "pause", converted=True)
    _run(waiting, "nudge", ("delivered", ""))
    # went the whole way; its SMS was stopped for consent
    completed = _enrollment(journey, v1, EnrollmentState.COMPLETED, "done")
    _run(completed, "nudge", ("suppressed", "no_consent"))
    _run(completed, "pause")
    _run(completed, "done")
    # left by an exit rule while waiting; no phone
    exited = _enrollment(journey, v1, EnrollmentState.EXITED, "pause")
    _run(exited, "nudge", ("suppressed", "unreachable"))
    # just entered, not run yet
    _enrollment(journey, v1, EnrollmentState.ACTIVE, "nudge")
    _enrollment(journey, v1, EnrollmentState.HOLDOUT, "", converted=True)
    _enrollment(journey, v1, EnrollmentState.HOLDOUT, "")
    journey_save(key=journey.key, steps=V2)
    v2 = journey_go_live(journey_id=journey.pk)
    later = _enrollment(journey, v2, EnrollmentState.WAITING, "pause")
    _run(later, "hello", ("queued", ""))
    journey.refresh_from_db()
    return {"journey": journey, "v1": v1, "v2": v2}


def test_counts_per_step_of_one_version_are_exact(dataset: dict[str, Any]) -> None:
    report = journey_report(journey=dataset["journey"], version=dataset["v1"], min_sample=2)

    assert (report.version, report.has_goal, report.enrolled) == (1, True, 6)
    assert report.steps == (
        StepCounts("nudge", "send", entered=4, sent=1,
                   suppressed={"no_consent": 1, "unreachable": 1}, converted=1),
        StepCounts("pause", "wait", entered=3, waiting=1, exited=1, converted=1),
        StepCounts("done", "exit", entered=1, exited=1),
    )  # fmt: skip


def test_the_lift_compares_test_and_holdout_conversion(dataset: dict[str, Any]) -> None:
    report = journey_report(journey=dataset["journey"], version=dataset["v1"], min_sample=2)

    assert report.lift == Lift(
        test_enrolled=4, test_converted=1, holdout_enrolled=2, holdout_converted=1, min_sample=2
    )
    assert (report.lift.test_rate, report.lift.holdout_rate, report.lift.lift) == (
        0.25,
        0.5,
        -0.5,
    )
    assert report.lift.sentence == (
        "Lift -50.0%. Converted: in the journey 25.0% (1 of 4), held out 50.0% (1 of 2)."
    )


def test_under_the_minimum_sample_the_lift_says_not_enough_data(dataset: dict[str, Any]) -> None:
    report = journey_report(journey=dataset["journey"], version=dataset["v1"])

    assert (report.lift.is_enough, report.lift.lift) == (False, None)
    assert report.lift.sentence == (
        "Not enough data: a lift needs at least 100 enrollments in each group. Converted so "
        "far: in the journey 25.0% (1 of 4), held out 50.0% (1 of 2)."
    )


def test_no_holdout_conversion_means_no_lift() -> None:
    lift = Lift(test_enrolled=5, test_converted=2, holdout_enrolled=5, holdout_converted=0,
                min_sample=5)  # fmt: skip

    assert (lift.is_enough, lift.lift) == (True, None)
    assert lift.sentence == (
        "No held-out customer has converted yet, so there is no lift to compute. Converted: "
        "in the journey 40.0% (2 of 5), held out 0.0% (0 of 5)."
    )


def test_all_versions_add_up_in_the_live_versions_order_then_older_steps(
    dataset: dict[str, Any],
) -> None:
    report = journey_report(journey=dataset["journey"], min_sample=2)

    assert (report.version, report.enrolled) == (None, 7)
    assert report.steps == (
        StepCounts("hello", "send", entered=1, pending=1),
        StepCounts("pause", "wait", entered=4, waiting=2, exited=1, converted=1),
        StepCounts("done", "exit", entered=1, exited=1),
        StepCounts("nudge", "", entered=4, sent=1,
                   suppressed={"no_consent": 1, "unreachable": 1}, converted=1),
    )  # fmt: skip
    assert (report.lift.test_enrolled, report.lift.holdout_enrolled) == (5, 2)


def test_a_journey_without_enrollments_or_goal_reports_zeros(ready: None) -> None:
    journey = journey_save(key="quiet", name="Quiet", trigger=MISSED, steps=V1)

    report = journey_report(journey=journey)

    assert (report.has_goal, report.enrolled) == (False, 0)
    assert report.steps == (
        StepCounts("nudge", "send"),
        StepCounts("pause", "wait"),
        StepCounts("done", "exit"),
    )
    assert report.lift.sentence == (
        "Not enough data: a lift needs at least 100 enrollments in each group. Converted so "
        "far: in the journey — (0 of 0), held out — (0 of 0)."
    )


def test_the_report_takes_a_fixed_number_of_queries(
    dataset: dict[str, Any], django_assert_num_queries: Any
) -> None:
    journey = Journey.objects.select_related("active_version").get(pk=dataset["journey"].pk)

    with django_assert_num_queries(4):
        journey_report(journey=journey)
