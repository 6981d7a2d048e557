"""Moving running enrollments of older versions to the live version: those whose current step
exists there move (waits re-timed from when they started), the others stay; audited."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import pytest
from django.contrib.auth.models import User

from customers.models import Customer
from journeys.migrate import Migration, enrollments_migrate
from journeys.models import (
    Enrollment,
    EnrollmentState,
    Journey,
    JourneyChange,
    JourneyVersion,
)
from journeys.runner import enrollments_advance, step_run_key
from journeys.services import JourneyInvalid, journey_archive, journey_go_live, journey_save
from messaging.models import Message
from tests.factories import CustomerFactory
from tests.journeys.conftest import MISSED

pytestmark = pytest.mark.django_db


def _customer(**fields: Any) -> Customer:
    return cast(Customer, CustomerFactory(**fields))  # type: ignore[no-untyped-call]


NOW = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
V1: list[dict[str, Any]] = [
    {"key": "nudge", "type": "send", "templates": ["setup-help"], "next": "linger"},
    {"key": "linger", "type": "wait", "duration": {"days": 5}, "next": "pause"},
    {"key": "pause", "type": "wait", "duration": {"days": 2}, "next": "hold"},
    {"key": "hold", "type": "wait", "duration": {"days": 1}, "next": "remind"},
    {"key": "remind", "type": "wait", "until_local_time": "10:00", "next": "done"},
    {"key": "done", "type": "exit"},
]
V2: list[dict[str, Any]] = [
    {"key": "nudge", "type": "send", "templates": ["setup-help"], "next": "pause"},
    {"key": "pause", "type": "wait", "duration": {"days": 3}, "next": "hold"},
    {"key": "hold", "type": "wait", "until": {"milestone": "activated", "state": "achieved"},
     "timeout": {"days": 4}, "timeout_next": "remind", "next": "remind"},
    {"key": "remind", "type": "send", "templates": ["setup-help"], "next": "done"},
    {"key": "done", "type": "exit"},
]  # fmt: skip


def _enrollment(version: JourneyVersion, state: str, step: str, **fields: Any) -> Enrollment:
    values: dict[str, Any] = {
        "entry_key": f"outcome:{Enrollment.objects.count()}",
        "step_started_at": NOW - DAY,
        "next_run_at": NOW + DAY,
        "entered_at": NOW - 2 * DAY,
        **fields,
    }
    return Enrollment.objects.create(
        version=version,
        journey=version.journey,
        customer=values.pop("customer", None) or _customer(phone="+14155550100"),
        state=state,
        current_step=step,
        **values,
    )


@pytest.fixture
def journey(ready: None) -> Journey:
    journey = journey_save(key="setup-nudge", name="Setup nudge", trigger=MISSED, steps=V1)
    journey_go_live(journey_id=journey.pk)
    journey.refresh_from_db()
    return journey


def _v2(journey: Journey) -> JourneyVersion:
    journey_save(key=journey.key, steps=V2)
    return journey_go_live(journey_id=journey.pk)


def test_running_enrollments_move_when_their_step_exists_and_waits_are_retimed(
    journey: Journey,
) -> None:
    # given
    v1 = journey.active_version
    assert v1 is not None
    pause = _enrollment(v1, EnrollmentState.WAITING, "pause")
    hold = _enrollment(v1, EnrollmentState.WAITING, "hold")
    remind = _enrollment(v1, EnrollmentState.WAITING, "remind")
    due = _enrollment(v1, EnrollmentState.ACTIVE, "nudge", next_run_at=NOW, step_started_at=NOW)
    linger = _enrollment(v1, EnrollmentState.WAITING, "linger")
    done = _enrollment(v1, EnrollmentState.COMPLETED, "done", next_run_at=None)
    held = _enrollment(v1, EnrollmentState.HOLDOUT, "", next_run_at=None)
    v2 = _v2(journey)
    taken = _enrollment(v1, EnrollmentState.WAITING, "pause", entry_key="outcome:again")
    _enrollment(v2, EnrollmentState.WAITING, "pause", entry_key="outcome:again",
                customer=taken.customer)  # fmt: skip
    admin = User.objects.create_superuser("admin", password="irrelevant")

    # when
    result = enrollments_migrate(journey_id=journey.pk, user=admin, now=NOW)

    # then
    assert result == Migration(
        version=2, moved=4, stayed=2, moved_from={1: 4},
        stayed_at={"v1 linger": 1, "v1 pause": 1},
    )  # fmt: skip
    rows = {
        pk: (number, state, next_run_at)
        for pk, number, state, next_run_at in Enrollment.objects.filter(
            pk__in=[pause.pk, hold.pk, remind.pk, due.pk, linger.pk, done.pk, held.pk, taken.pk]
        ).values_list("pk", "version__number", "state", "next_run_at")
    }
    assert rows == {
        pause.pk: (2, "waiting", NOW - DAY + 3 * DAY),  # 3 days from when it began waiting
        hold.pk: (2, "waiting", NOW - DAY + 4 * DAY),  # an until-wait times out after 4 days
        remind.pk: (2, "active", NOW),  # no longer a wait: the send runs now
        due.pk: (2, "active", NOW),
        linger.pk: (1, "waiting", NOW + DAY),
        done.pk: (1, "completed", None),
        held.pk: (1, "holdout", None),
        taken.pk: (1, "waiting", NOW + DAY),
    }
    change = JourneyChange.objects.get(action="migrated enrollments")
    assert (change.user_id, change.at, change.changes) == (
        admin.pk,
        NOW,
        {"to_version": 2, "moved": 4, "stayed": 2, "moved_from": {"v1": 4},
         "stayed_at": {"v1 linger": 1, "v1 pause": 1}},
    )  # fmt: skip


def test_moved_enrollments_carry_on_in_the_new_version(journey: Journey) -> None:
    # given
    v1 = journey.active_version
    assert v1 is not None
    remind = _enrollment(v1, EnrollmentState.WAITING, "remind")
    _v2(journey)
    enrollments_migrate(journey_id=journey.pk, now=NOW)

    # when
    enrollments_advance(now=NOW)

    # then
    remind.refresh_from_db()
    assert (remind.state, remind.current_step) == ("completed", "done")
    assert list(Message.objects.values_list("idempotency_key", flat=True)) == [
        step_run_key(remind.pk, "remind")
    ]


def test_running_it_again_moves_nothing_more(journey: Journey) -> None:
    v1 = journey.active_version
    assert v1 is not None
    _enrollment(v1, EnrollmentState.WAITING, "pause")
    _enrollment(v1, EnrollmentState.WAITING, "linger")
    _v2(journey)
    enrollments_migrate(journey_id=journey.pk, now=NOW)

    again = enrollments_migrate(journey_id=journey.pk, now=NOW)

    assert again == Migration(
        version=2, moved=0, stayed=1, moved_from={}, stayed_at={"v1 linger": 1}
    )
    assert list(Enrollment.objects.order_by("pk").values_list("version__number", flat=True)) == [
        2,
        1,
    ]


def test_a_journey_never_live_or_archived_is_refused_and_nothing_is_logged(ready: None) -> None:
    draft = journey_save(key="draft", name="Draft", trigger=MISSED, steps=V1)
    archived = journey_save(key="old", name="Old", trigger=MISSED, steps=V1)
    journey_go_live(journey_id=archived.pk)
    journey_archive(journey_id=archived.pk)
    logged = JourneyChange.objects.count()

    with pytest.raises(JourneyInvalid) as never:
        enrollments_migrate(journey_id=draft.pk, now=NOW)
    with pytest.raises(JourneyInvalid) as gone:
        enrollments_migrate(journey_id=archived.pk, now=NOW)

    assert str(never.value) == "the journey has never gone live: there is no version to move to"
    assert str(gone.value) == "an archived journey's enrollments stay where they are"
    assert JourneyChange.objects.count() == logged
