"""Task outcomes counted per task name and minute in Redis by the Celery signal receivers,
read back over the last hour."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from typing import Any

import pytest
import time_machine
from celery import signals

from ops.selectors import broker_redis
from ops.task_counts import (
    KEEP_SECONDS,
    TaskCount,
    TaskCounts,
    minute_key,
    on_task_failure,
    on_task_retry,
    on_task_success,
    task_counts_read,
    task_counts_tally,
)
from tests.ops.conftest import T0

pytestmark = pytest.mark.usefixtures("task_counts_cleared")

MINUTE = dt.timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class Sender:
    """What Celery sends its task signals from: the task (hashable, named)."""

    name: str


SEND = Sender(name="messaging.email.send")
EVALUATE = Sender(name="milestones.evaluate")
LAST_HOUR = "the last 60 minutes"


def test_each_outcome_is_counted_per_task_name(clock: time_machine.Traveller) -> None:
    # when
    on_task_success(sender=SEND)
    on_task_success(sender=SEND)
    on_task_failure(sender=SEND)
    on_task_retry(sender=EVALUATE)
    on_task_success(sender=EVALUATE)

    # then: by task name
    assert task_counts_read() == TaskCounts(
        ok=True,
        detail=LAST_HOUR,
        counts=(
            TaskCount(task="messaging.email.send", succeeded=2, failed=1, retried=0),
            TaskCount(task="milestones.evaluate", succeeded=1, failed=0, retried=1),
        ),
    )


def test_the_receivers_are_connected_to_celerys_signals(clock: time_machine.Traveller) -> None:
    signals.task_success.send(sender=SEND, result=None)
    signals.task_failure.send(sender=SEND, task_id="1", exception=ValueError())
    signals.task_retry.send(sender=SEND, request=None, reason="later", einfo=None)

    assert task_counts_read().counts == (
        TaskCount(task="messaging.email.send", succeeded=1, failed=1, retried=1),
    )


def test_the_window_is_the_last_sixty_minutes_across_the_hour(
    clock: time_machine.Traveller,
) -> None:
    # given: one success in the minute of 12:00, two in the minute of 12:30
    clock.move_to(T0 + dt.timedelta(seconds=30))
    on_task_success(sender=SEND)
    clock.move_to(T0 + 30 * MINUTE)
    on_task_success(sender=SEND)
    on_task_success(sender=SEND)

    def succeeded_at(at: dt.datetime) -> int:
        clock.move_to(at)
        found = task_counts_read().counts
        return found[0].succeeded if found else 0

    # then: 12:00 counts until 12:59:59 (its minute is the window's oldest), not from 13:00
    assert succeeded_at(T0 + 59 * MINUTE + dt.timedelta(seconds=59)) == 3
    assert succeeded_at(T0 + 60 * MINUTE) == 2
    assert succeeded_at(T0 + 89 * MINUTE + dt.timedelta(seconds=59)) == 2
    assert succeeded_at(T0 + 90 * MINUTE) == 0


def test_a_minutes_counts_expire_two_hours_after_its_last_task(
    clock: time_machine.Traveller,
) -> None:
    on_task_success(sender=SEND)

    client = broker_redis()
    assert client is not None
    with client:
        assert client.hgetall(minute_key(T0)) == {b"messaging.email.send|succeeded": b"1"}
        assert client.ttl(minute_key(T0)) == KEEP_SECONDS == 7200


def test_a_task_is_never_failed_by_its_count_when_redis_is_down(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    caplog.set_level(logging.DEBUG, logger="ops.task_counts")

    # when
    started = time.monotonic()
    on_task_success(sender=SEND)
    on_task_failure(sender=SEND)
    elapsed = time.monotonic() - started

    # then: nothing raised, nothing waited, only debug lines
    assert elapsed < 0.5
    assert [(r.levelname, r.getMessage()[:45]) for r in caplog.records] == [
        ("DEBUG", "task count of messaging.email.send (succeeded"),
        ("DEBUG", "task count of messaging.email.send (failed) d"),
    ]
    assert task_counts_read() == TaskCounts(ok=False, detail="unavailable (ConnectionError)")


def test_nothing_is_counted_without_a_redis_broker(settings: Any) -> None:
    settings.CELERY_BROKER_URL = "filesystem://"

    on_task_success(sender=SEND)

    assert task_counts_read() == TaskCounts(
        ok=False, detail="unavailable: task counts need a Redis broker"
    )


def test_reading_an_empty_hour_finds_no_task(clock: time_machine.Traveller) -> None:
    assert task_counts_read() == TaskCounts(ok=True, detail=LAST_HOUR, counts=())


def test_the_tally_adds_minutes_up_by_name_and_skips_unknown_fields() -> None:
    minutes = [
        {b"b.task|succeeded": b"2", b"a.task|failed": b"1"},
        {b"b.task|succeeded": b"3", b"b.task|retried": b"1", b"a.task|lost": b"9", b"x": b"1"},
    ]

    assert task_counts_tally(minutes) == (
        TaskCount(task="a.task", succeeded=0, failed=1, retried=0),
        TaskCount(task="b.task", succeeded=5, failed=0, retried=1),
    )
