"""The reads behind /readyz, /metrics and the ops console."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from messaging.selectors import messages_by_outcome
from ops import selectors
from ops.selectors import Lag, Probe, QueueDepths
from tests.ops import seed
from tests.ops.conftest import T0

pytestmark = pytest.mark.django_db

SECOND = dt.timedelta(seconds=1)
ALL_QUEUES = (
    "ingest",
    "evaluate",
    "journeys",
    "messages.email",
    "messages.sms",
    "messages.push",
    "maintenance",
)


def test_queue_depths_count_every_priority_of_each_queue(empty_queues: None) -> None:
    # given: messages at each of kombu's priority steps land in separate Redis lists
    seed.tasks("maintenance.ops_test_probe", 2)
    seed.tasks("maintenance.ops_test_probe", 1, priority=4)
    seed.tasks("maintenance.ops_test_probe", 1, priority=9)
    seed.tasks("journeys.ops_test_probe", 3, priority=7)
    seed.tasks("messaging.sms.ops_test_probe", 1)

    # when
    read = selectors.queue_depths()

    # then
    assert read == QueueDepths(
        ok=True,
        detail="redis answered",
        depths=dict.fromkeys(ALL_QUEUES, 0) | {"maintenance": 4, "journeys": 3, "messages.sms": 1},
    )


def test_queue_depths_read_zero_for_empty_queues(empty_queues: None) -> None:
    assert selectors.queue_depths().depths == dict.fromkeys(ALL_QUEUES, 0)


def test_queue_depths_are_unavailable_when_the_broker_is_down(settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"

    assert selectors.queue_depths() == QueueDepths(
        ok=False, detail="unavailable (ConnectionError)", depths={}
    )


def test_queue_depths_need_a_redis_broker(settings: Any) -> None:
    settings.CELERY_BROKER_URL = "filesystem://"

    assert selectors.queue_depths() == QueueDepths(
        ok=False, detail="unavailable: queue depths need a Redis broker", depths={}
    )


def test_the_demo_filesystem_broker_is_reachable_without_a_server(settings: Any) -> None:
    settings.CELERY_BROKER_URL = "filesystem://"

    assert selectors.broker_ping() == Probe(ok=True, detail="filesystem broker connected")


def test_pending_lags_name_the_oldest_due_item_of_each_kind(
    clock: time_machine.Traveller,
) -> None:
    seed.everything()

    assert selectors.pending_lags() == [
        Lag(work="milestone_evaluations", oldest_due_at=T0 - 45 * SECOND, seconds=45.0),
        Lag(work="missed_deadlines", oldest_due_at=T0 - 40 * SECOND, seconds=40.0),
        Lag(work="journey_enrollments", oldest_due_at=T0 - 25 * SECOND, seconds=25.0),
        Lag(work="outbox", oldest_due_at=T0 - 90 * SECOND, seconds=90.0),
        Lag(work="deferred_messages", oldest_due_at=T0 - 20 * SECOND, seconds=20.0),
    ]


def test_a_deadline_is_due_only_after_the_sweep_grace(
    clock: time_machine.Traveller, settings: Any
) -> None:
    settings.MILESTONES_SWEEP_GRACE_SECONDS = 60
    seed.progress(seed.milestone(), 1, T0 - 60 * SECOND)

    lags = {lag.work: lag for lag in selectors.pending_lags()}
    clock.move_to(T0 + 15 * SECOND)
    later = {lag.work: lag for lag in selectors.pending_lags()}

    assert lags["missed_deadlines"] == Lag(work="missed_deadlines", oldest_due_at=T0, seconds=0.0)
    assert later["missed_deadlines"] == Lag(work="missed_deadlines", oldest_due_at=T0, seconds=15.0)


def test_a_retry_becomes_outbox_lag_from_its_retry_time(clock: time_machine.Traveller) -> None:
    seed.message(
        "queued", T0 - 10 * 60 * SECOND, updated_at=T0 - 300 * SECOND, send_after=T0 - 30 * SECOND
    )

    lags = {lag.work: lag.seconds for lag in selectors.pending_lags()}

    assert lags["outbox"] == 30.0


def test_nothing_pending_means_no_due_item_and_no_lag(clock: time_machine.Traveller) -> None:
    assert selectors.pending_lags() == [
        Lag(work=work, oldest_due_at=None, seconds=0.0) for work in selectors.WORK
    ]


def test_events_ingested_is_the_event_id_sequence(db: None) -> None:
    seed.events(2, after=5_000_000)

    assert selectors.events_ingested() == 5_000_002


def test_recent_counts_cover_the_window_only(clock: time_machine.Traveller) -> None:
    seed.everything()
    since = T0 - 300 * SECOND

    assert selectors.outcomes_recent(since=since) == {"achieved": 2, "missed": 1}
    assert messages_by_outcome(since=since) == {
        ("sent", ""): 2,
        ("suppressed", "frequency_cap"): 1,
        ("suppressed", "no_consent"): 1,
        ("queued", ""): 2,
        ("deferred", "quiet_hours_deferred"): 1,
    }


def test_recent_counts_are_zero_for_every_outcome_kind_before_any(db: None) -> None:
    assert selectors.outcomes_recent(since=T0) == {"achieved": 0, "missed": 0}
    assert messages_by_outcome(since=T0) == {}
