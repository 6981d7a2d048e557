"""Seeded rows with known timestamps around ``T0`` for the metrics and selector tests.

Rows of each table are created oldest first, as production creates them: the recent-window
counts find the window's start on the primary key."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from django.db import connection

from config.celery import app
from consent.models import Topic
from journeys.models import Enrollment, EnrollmentState, Journey, JourneyVersion
from messaging.models import Message, MessageStatus
from milestones.models import (
    MilestoneDefinition,
    MilestoneOutcome,
    MilestoneVersion,
    PendingEvaluation,
    Progress,
    ProgressState,
)
from tests.factories import CustomerFactory, EventFactory
from tests.ops.conftest import T0

SECOND = dt.timedelta(seconds=1)
MINUTE = dt.timedelta(minutes=1)
_keys = itertools.count()


def events(count: int, *, after: int) -> None:
    """``count`` events whose ids follow ``after`` (the sequence is moved there first)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('customers_event', 'id'), %s)", [after]
        )
    EventFactory.create_batch(count)


def milestone() -> MilestoneVersion:
    definition = MilestoneDefinition.objects.create(
        key="activated",
        name="Activated",
        kind="onboarding",
        condition={"type": "event_count", "event": "Task Done", "at_least": 1},
        window=dt.timedelta(days=7),
    )
    return MilestoneVersion.objects.create(
        definition=definition,
        number=1,
        unit="customer",
        condition=definition.condition,
        anchor="signup",
        window=definition.window,
    )


def outcome(version: MilestoneVersion, subject_id: int, kind: str, at: dt.datetime) -> None:
    MilestoneOutcome.objects.create(
        version=version,
        definition_id=version.definition_id,
        unit="customer",
        subject_id=subject_id,
        kind=kind,
        occurred_at=at,
        recorded_at=at,
    )


def progress(
    version: MilestoneVersion, subject_id: int, deadline_at: dt.datetime, **fields: Any
) -> None:
    Progress.objects.create(
        version=version,
        definition_id=version.definition_id,
        unit="customer",
        subject_id=subject_id,
        anchor_at=deadline_at - dt.timedelta(days=7),
        deadline_at=deadline_at,
        **{"state": ProgressState.IN_PROGRESS, **fields},
    )


def pending(version: MilestoneVersion, subject_id: int, at: dt.datetime) -> None:
    PendingEvaluation.objects.create(version=version, subject_id=subject_id, created_at=at)


def journey() -> JourneyVersion:
    graph: dict[str, Any] = {
        "trigger": {"kind": "milestone_missed", "milestone": "activated"},
        "steps": [{"key": "done", "type": "exit"}],
    }
    found = Journey.objects.create(key="nudge", name="Nudge", **graph)
    return JourneyVersion.objects.create(journey=found, number=1, **graph)


def enrollment(version: JourneyVersion, state: str, next_run_at: dt.datetime) -> None:
    Enrollment.objects.create(
        version=version,
        journey_id=version.journey_id,
        customer=CustomerFactory(),
        entry_key=f"entry-{next(_keys)}",
        state=state,
        next_run_at=next_run_at,
    )


def message(status: str, created_at: dt.datetime, **fields: Any) -> None:
    topic, _ = Topic.objects.get_or_create(key="tips", defaults={"name": "Tips"})
    Message.objects.create(
        idempotency_key=f"message-{next(_keys)}",
        channels=["email"],
        channel="email",
        topic=topic,
        status=status,
        created_at=created_at,
        **{"updated_at": created_at, **fields},
    )


def tasks(name: str, count: int, **options: Any) -> None:
    """``count`` messages of task ``name`` on the broker, published as Celery publishes."""
    for _ in range(count):
        app.send_task(name, **options)


def everything() -> None:
    """Rows of each kind, due and not: what the tests expect is spelled out beside them."""
    events(3, after=1_000_000)

    version = milestone()
    # outcomes: two before the 5-minute window, three in it (one on its first second)
    outcome(version, 1, "achieved", T0 - 10 * MINUTE)
    outcome(version, 2, "missed", T0 - 5 * MINUTE - SECOND)
    outcome(version, 3, "achieved", T0 - 5 * MINUTE)
    outcome(version, 4, "missed", T0 - 2 * MINUTE)
    outcome(version, 5, "achieved", T0 - MINUTE)

    # pending evaluations: the oldest waits 45 s
    pending(version, 1, T0 - 45 * SECOND)
    pending(version, 2, T0 - 5 * SECOND)

    # deadlines (60 s of grace): due 40 s ago; not yet due; achieved long ago
    progress(version, 1, T0 - 100 * SECOND)
    progress(version, 2, T0 - 30 * SECOND)
    progress(version, 3, T0 - dt.timedelta(hours=1), state=ProgressState.ACHIEVED)

    # enrollments: due 25 s ago; due 10 s ago; not yet due; finished
    flow = journey()
    enrollment(flow, EnrollmentState.WAITING, T0 - 25 * SECOND)
    enrollment(flow, EnrollmentState.ACTIVE, T0 - 10 * SECOND)
    enrollment(flow, EnrollmentState.ACTIVE, T0 + MINUTE)
    enrollment(flow, EnrollmentState.COMPLETED, T0 - dt.timedelta(hours=1))

    # messages: two before the window, seven in it
    message(MessageStatus.SENT, T0 - 20 * MINUTE)
    message(MessageStatus.SUPPRESSED, T0 - 6 * MINUTE, reason="no_consent")
    message(MessageStatus.SENT, T0 - 4 * MINUTE)
    message(MessageStatus.SENT, T0 - 3 * MINUTE)
    message(MessageStatus.SUPPRESSED, T0 - 3 * MINUTE, reason="frequency_cap")
    message(MessageStatus.SUPPRESSED, T0 - 2 * MINUTE, reason="no_consent")
    # a retry not due for a minute: touched longest ago, yet not what the sender takes next
    message(
        MessageStatus.QUEUED,
        T0 - 2 * MINUTE,
        updated_at=T0 - 100 * SECOND,
        send_after=T0 + MINUTE,
    )
    message(MessageStatus.QUEUED, T0 - 90 * SECOND)  # due for 90 s
    message(
        MessageStatus.DEFERRED,
        T0 - MINUTE,
        reason="quiet_hours_deferred",
        send_after=T0 - 20 * SECOND,
    )


def broker() -> None:
    """Two tasks waiting on maintenance (one at a higher priority), one on evaluate."""
    tasks("maintenance.ops_test_probe", 1)
    tasks("maintenance.ops_test_probe", 1, priority=5)
    tasks("milestones.ops_test_probe", 1)
