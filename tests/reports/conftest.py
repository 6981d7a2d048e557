"""Reports fixtures: a frozen clock, staff users, and a seeded dataset whose every figure
and series the tests know exactly (tests/conftest.py empties the dashboard cache).

The clock stands at ``NOW``, Wednesday 11 March 2026 12:00 UTC: today starts at 00:00,
this ISO week (2026-W11) on Monday 9 March, and the twelve cohort weeks on Monday
22 December 2025 (2025-W52; 2026-W01 starts on 29 December 2025).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, cast

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Permission

from consent.models import Topic
from customers.models import Customer, Source
from journeys.models import (
    Enrollment,
    EnrollmentState,
    Journey,
    JourneyVersion,
    StepRun,
    StepRunStatus,
)
from journeys.runner import step_run_key
from journeys.services import journey_go_live, journey_pause, journey_save
from messaging.models import Message
from messaging.templating import template_activate, template_save
from milestones.models import (
    MilestoneDefinition,
    MilestoneOutcome,
    MilestoneVersion,
    OutcomeKind,
    Progress,
    ProgressState,
)
from milestones.services import definition_activate, definition_create, definition_update
from tests.factories import CustomerFactory, EventFactory, SourceFactory

NOW = dt.datetime(2026, 3, 11, 12, 0, tzinfo=dt.UTC)
TODAY = dt.datetime(2026, 3, 11, tzinfo=dt.UTC)
THIS_WEEK = dt.datetime(2026, 3, 9, tzinfo=dt.UTC)
SINCE = dt.datetime(2025, 12, 22, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
TICK = dt.timedelta(microseconds=1)
CONDITION = {"type": "event_count", "event": "Task Done", "at_least": 1}
STEPS: list[dict[str, Any]] = [
    {"key": "nudge", "type": "send", "templates": ["setup-help"], "next": "pause"},
    {"key": "pause", "type": "wait", "duration": {"days": 2}, "next": "done"},
    {"key": "done", "type": "exit"},
]
MISSED = {"kind": "milestone_missed", "milestone": "activated"}
GOAL = {"milestone": "activated", "within": {"days": 14}}


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    """The clock stands still at ``NOW``; tests move it with ``clock.move_to``."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def staff_with(username: str, *permissions: str) -> AbstractUser:
    """A staff user holding exactly ``permissions`` ("app_label.codename")."""
    user: AbstractUser = get_user_model().objects.create_user(username=username, is_staff=True)
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def customer(created_at: dt.datetime, **fields: Any) -> Customer:
    return cast(Customer, CustomerFactory(created_at=created_at, **fields))  # type: ignore[no-untyped-call]


def milestone(key: str, **fields: Any) -> MilestoneDefinition:
    """A definition made and activated through the services (the backfill is not run)."""
    fields.setdefault("name", key.replace("-", " ").title())
    fields.setdefault("kind", "onboarding")
    fields.setdefault("condition", CONDITION)
    definition = definition_create(key=key, **fields)
    definition_activate(definition=definition)
    return definition


def achieve(
    definition: MilestoneDefinition,
    subject: Customer,
    *,
    at: dt.datetime,
    anchor: dt.datetime | None = None,
    version: MilestoneVersion | None = None,
) -> None:
    """The progress row and outcome evaluation writes for an achievement at ``at``."""
    version = version or definition.active_version
    assert version is not None
    Progress.objects.create(
        version=version, definition=definition, unit=definition.unit, subject_id=subject.pk,
        state=ProgressState.ACHIEVED, anchor_at=anchor or subject.created_at, achieved_at=at,
    )  # fmt: skip
    MilestoneOutcome.objects.create(
        version=version, definition=definition, unit=definition.unit, subject_id=subject.pk,
        kind=OutcomeKind.ACHIEVED, occurred_at=at, recorded_at=at,
    )  # fmt: skip


def miss(definition: MilestoneDefinition, subject: Customer, *, at: dt.datetime) -> None:
    """The progress row and outcome the missed sweep writes for a deadline at ``at``."""
    version = definition.active_version
    assert version is not None
    Progress.objects.create(
        version=version, definition=definition, unit=definition.unit, subject_id=subject.pk,
        state=ProgressState.MISSED, anchor_at=subject.created_at, deadline_at=at, missed_at=at,
    )  # fmt: skip
    MilestoneOutcome.objects.create(
        version=version, definition=definition, unit=definition.unit, subject_id=subject.pk,
        kind=OutcomeKind.MISSED, occurred_at=at, recorded_at=at,
    )  # fmt: skip


def message(status: str, created_at: dt.datetime, reason: str = "", **fields: Any) -> Message:
    n = Message.objects.count()
    return Message.objects.create(
        idempotency_key=f"test:{n}", channels=["email"], topic=Topic.objects.get(key="tips"),
        status=status, reason=reason, created_at=created_at, **fields,
    )  # fmt: skip


def _enrollment(
    journey: Journey, version: JourneyVersion, state: str, step: str, *, converted: bool = False
) -> Enrollment:
    n = Enrollment.objects.count()
    return Enrollment.objects.create(
        version=version, journey=journey, customer=customer(SINCE - 90 * DAY),
        entry_key=f"outcome:{n}", state=state, current_step=step, entered_at=NOW - HOUR,
        converted_at=NOW if converted else None,
    )  # fmt: skip


def _run(enrollment: Enrollment, step: str, sent: tuple[str, str] | None = None) -> None:
    key = step_run_key(enrollment.pk, step)
    message_id = None
    if sent is not None:
        status, reason = sent
        message_id = message(status, NOW - HOUR, reason, customer=enrollment.customer).pk
    StepRun.objects.create(
        enrollment=enrollment, step_key=step, idempotency_key=key, status=StepRunStatus.DONE,
        message_id=message_id, at=NOW - HOUR,
    )  # fmt: skip


@pytest.fixture
def definitions(db: None, django_capture_on_commit_callbacks: Any) -> dict[str, Any]:
    """The north star ``activated`` (v2 active) with two active micro-milestones, a draft
    one and one measured on accounts; a top-level milestone without micro-milestones."""
    activated = milestone("activated", name="Activated")
    v1 = activated.active_version
    definition_update(definition=activated, condition={**CONDITION, "at_least": 2})
    activated.refresh_from_db()
    found = {
        "activated": activated,
        "activated_v1": v1,
        "first_report": milestone("first-report", name="First report", parent=activated),
        "invited_team": milestone("invited-team", name="Invited team", parent=activated),
        "purchase": milestone("second-purchase", name="Second purchase", kind="value"),
        "team_plan": milestone("team-plan", name="Team plan", parent=activated, unit="account"),
    }
    found["draft"] = definition_create(
        key="old-idea", name="Old idea", kind="onboarding", condition=CONDITION, parent=activated
    )
    return found


@pytest.fixture
def journeys(definitions: dict[str, Any]) -> dict[str, Journey]:
    """``setup-nudge`` live (v1), ``winback`` a draft, ``upsell`` paused."""
    topic = Topic.objects.create(key="tips", name="Tips")
    template = template_save(
        key="setup-help", name="Setup help", channel="sms", topic=topic, default_locale="en",
        variants={"en": {"body": "Need a hand with setup?"}},
    )  # fmt: skip
    template_activate(template_id=template.pk)
    nudge = journey_save(key="setup-nudge", name="Setup nudge", trigger=MISSED, steps=STEPS,
                         goal=GOAL, holdout_percent=10)  # fmt: skip
    journey_go_live(journey_id=nudge.pk)
    winback = journey_save(key="winback", name="Winback", trigger=MISSED, steps=STEPS)
    upsell = journey_save(key="upsell", name="Upsell", trigger=MISSED, steps=STEPS)
    journey_go_live(journey_id=upsell.pk)
    journey_pause(journey_id=upsell.pk)
    nudge.refresh_from_db()
    return {"setup-nudge": nudge, "winback": winback, "upsell": upsell}


@pytest.fixture
def seeded(
    clock: time_machine.Traveller, definitions: dict[str, Any], journeys: dict[str, Journey]
) -> dict[str, Any]:
    """The dataset every exact figure of the tests comes from (see each test)."""
    activated, first_report = definitions["activated"], definitions["first_report"]
    invited_team, purchase = definitions["invited_team"], definitions["purchase"]

    # Events: ids in the order received; three today, two before.
    source: Source = SourceFactory()  # type: ignore[no-untyped-call]
    anyone = customer(SINCE - 400 * DAY)
    for received_at in (TODAY - HOUR * 14, TODAY - TICK, TODAY, TODAY + 8 * HOUR, NOW - TICK):
        EventFactory(source=source, customer=anyone, received_at=received_at,
                     occurred_at=received_at)  # fmt: skip

    # Messages: one last week, then this week's: three sent (another three below, by the
    # journey: one delivered, two suppressed), one queued, two suppressed, one failed.
    message("sent", THIS_WEEK - TICK)
    for status, reason in (
        ("sent", ""), ("opened", ""), ("queued", ""), ("suppressed", "no_consent"),
        ("suppressed", "frequency_cap"), ("failed", "bad_address"),
    ):  # fmt: skip
        message(status, THIS_WEEK + HOUR, reason)

    # Cohorts (created_at, UTC): one just before the window, one at its first instant
    # (2025-W52), two in 2026-W01 (one of them on Monday 5 Jan in Auckland), four in
    # 2026-W10, two in this week.
    c = {
        "before": customer(SINCE - TICK),
        "w52": customer(SINCE),
        "w01a": customer(dt.datetime(2025, 12, 29, tzinfo=dt.UTC)),
        "w01b": customer(
            dt.datetime(2026, 1, 4, 23, 30, tzinfo=dt.UTC), time_zone="Pacific/Auckland"
        ),
        **{f"w10{n}": customer(dt.datetime(2026, 3, 2, 9 + n, tzinfo=dt.UTC)) for n in range(4)},
        "w11a": customer(THIS_WEEK),
        "w11b": customer(NOW - HOUR),
    }
    # The north star, times to it in hours: 2, 4, 6 and 10 (from signup) by cohort members
    # and "before"; 12, 20, 26, 30, 44 and 300 by six customers older than the window (from
    # an event).
    achieve(activated, c["w52"], at=SINCE + 2 * HOUR, version=definitions["activated_v1"])
    achieve(activated, c["w01a"], at=c["w01a"].created_at + 4 * HOUR)
    achieve(activated, c["w100"], at=c["w100"].created_at + 6 * HOUR)
    achieve(activated, c["before"], at=c["before"].created_at + 10 * HOUR)
    for took in (12, 20, 26, 30, 44):
        anchor = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
        achieve(activated, customer(SINCE - 60 * DAY), anchor=anchor, at=anchor + took * HOUR)
    anchor = dt.datetime(2026, 2, 20, tzinfo=dt.UTC)
    achieve(activated, customer(SINCE - 60 * DAY), anchor=anchor, at=anchor + 300 * HOUR)
    # Before the window: neither in the histogram nor in a cohort.
    old = customer(SINCE - 30 * DAY)
    achieve(activated, old, at=SINCE - TICK)
    miss(activated, c["w101"], at=THIS_WEEK)  # missed this week, at its first instant
    miss(activated, c["w102"], at=THIS_WEEK - 8 * DAY)

    # Micro-milestones: first report by five of the cohort (and by "old"), invited team by two.
    for name in ("w52", "w01a"):
        achieve(first_report, c[name], at=c[name].created_at + 24 * HOUR)
    achieve(first_report, c["w101"], at=THIS_WEEK - TICK)
    achieve(first_report, c["w11a"], at=THIS_WEEK + 10 * HOUR)
    achieve(first_report, c["w11b"], at=NOW - TICK)
    achieve(first_report, old, at=SINCE + HOUR)
    achieve(invited_team, c["w52"], at=SINCE + 48 * HOUR)
    achieve(invited_team, c["w100"], at=c["w100"].created_at + 48 * HOUR)
    miss(invited_team, c["w102"], at=THIS_WEEK + 24 * HOUR)
    achieve(purchase, c["w100"], at=THIS_WEEK + 32 * HOUR)

    # The live journey (v1): four customers in it, two held out.
    nudge = journeys["setup-nudge"]
    v1 = nudge.active_version
    assert v1 is not None
    waiting = _enrollment(nudge, v1, EnrollmentState.WAITING, "pause", converted=True)
    _run(waiting, "nudge", ("delivered", ""))
    completed = _enrollment(nudge, v1, EnrollmentState.COMPLETED, "done")
    _run(completed, "nudge", ("suppressed", "no_consent"))
    _run(completed, "pause")
    _run(completed, "done")
    exited = _enrollment(nudge, v1, EnrollmentState.EXITED, "pause")
    _run(exited, "nudge", ("suppressed", "unreachable"))
    _enrollment(nudge, v1, EnrollmentState.ACTIVE, "nudge")
    _enrollment(nudge, v1, EnrollmentState.HOLDOUT, "", converted=True)
    _enrollment(nudge, v1, EnrollmentState.HOLDOUT, "")
    return {"customers": c, **definitions, "journeys": journeys}
