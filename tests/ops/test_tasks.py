"""The beat heartbeat: the task records its sender, the service keeps the table tiny."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from celery.utils.nodenames import anon_nodename
from django.conf import settings
from django_celery_beat.schedulers import ModelEntry

from config.celery import app, route_task
from ops.models import BeatHeartbeat
from ops.services import heartbeat_record
from ops.tasks import beat_heartbeat_task
from tests.ops.conftest import T0

SECOND = dt.timedelta(seconds=1)


def rows() -> list[tuple[str, dt.datetime, dt.datetime]]:
    return list(
        BeatHeartbeat.objects.order_by("origin").values_list("origin", "first_at", "last_at")
    )


@pytest.mark.django_db
def test_a_heartbeat_records_its_origins_first_and_latest_beat(
    clock: time_machine.Traveller,
) -> None:
    heartbeat_record(origin="gen101@beat-1")
    clock.move_to(T0 + 15 * SECOND)
    heartbeat_record(origin="gen101@beat-1")

    assert rows() == [("gen101@beat-1", T0, T0 + 15 * SECOND)]


@pytest.mark.django_db
def test_each_beat_process_has_its_own_row(clock: time_machine.Traveller) -> None:
    heartbeat_record(origin="gen101@beat-1", now=T0 - 30 * SECOND)
    heartbeat_record(origin="gen202@beat-2")

    assert rows() == [
        ("gen101@beat-1", T0 - 30 * SECOND, T0 - 30 * SECOND),
        ("gen202@beat-2", T0, T0),
    ]


@pytest.mark.django_db
def test_a_beat_silent_for_a_day_is_forgotten(clock: time_machine.Traveller) -> None:
    heartbeat_record(origin="gen101@beat-1", now=T0 - dt.timedelta(days=1, seconds=1))
    heartbeat_record(origin="gen202@beat-1", now=T0 - dt.timedelta(days=1))

    heartbeat_record(origin="gen303@beat-1")

    assert [origin for origin, _, _ in rows()] == ["gen202@beat-1", "gen303@beat-1"]


@pytest.mark.django_db
def test_the_task_records_a_heartbeat_now(clock: time_machine.Traveller) -> None:
    beat_heartbeat_task.apply()

    # run eagerly, a task has no sender node name
    assert rows() == [("unknown", T0, T0)]


def test_the_heartbeat_goes_to_the_maintenance_queue() -> None:
    assert route_task("maintenance.beat_heartbeat", (), {}, {}) == {"queue": "maintenance"}


@pytest.mark.django_db
def test_the_database_scheduler_sends_the_heartbeat_every_15_seconds_expiring_after_60() -> None:
    # as DatabaseScheduler.update_from_dict stores each CELERY_BEAT_SCHEDULE entry
    name = "maintenance-beat-heartbeat"
    entry = ModelEntry.from_entry(name, app=app, **settings.CELERY_BEAT_SCHEDULE[name])

    assert (entry.task, entry.schedule.run_every, entry.options["expires"]) == (
        "maintenance.beat_heartbeat",
        15 * SECOND,
        60,
    )


@pytest.fixture
def maintenance_worker(transactional_db: None) -> Iterator[threading.Event]:
    ran = threading.Event()

    def on_postrun(sender: Any = None, **kwargs: Any) -> None:
        if getattr(sender, "name", "") == "maintenance.beat_heartbeat":
            ran.set()

    app.control.purge()
    task_postrun.connect(on_postrun, weak=False)
    try:
        with start_worker(
            app, queues=["maintenance"], pool="solo", perform_ping_check=False, shutdown_timeout=10
        ):
            yield ran
    finally:
        task_postrun.disconnect(on_postrun)
        app.control.purge()


def test_a_heartbeat_sent_through_the_broker_records_the_senders_node_name(
    maintenance_worker: threading.Event,
) -> None:
    # when: this process sends the heartbeat, as beat does
    beat_heartbeat_task.delay()

    # then: a worker on the maintenance queue records it under this process's node name
    assert maintenance_worker.wait(timeout=10)
    assert [origin for origin, _, _ in rows()] == [anon_nodename()]
