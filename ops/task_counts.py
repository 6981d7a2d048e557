"""Task outcomes per task name and minute, kept in the broker's Redis for the ops console.

Workers record each task's success, failure or retry from Celery's signals (connected in
``OpsConfig.ready``): one pipelined round trip per task, ``HINCRBY`` on the minute's hash
(field ``<task name>|<outcome>``) and ``EXPIRE`` so the hash outlives the console's window by
an hour and then goes by itself. Nothing is counted in process (prefork children come and
go); the console reads the last 60 hashes in one pipelined round trip.

Counting is best effort and must never fail or slow a task: the writer's client waits at
most ``WRITE_TIMEOUT_SECONDS`` and never retries, and an unreachable Redis (the task's own
broker, so the worker has bigger trouble) is logged at debug level and the count dropped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Final

import redis
from django.utils import timezone
from redis.backoff import NoBackoff
from redis.retry import Retry

from ops import selectors

logger = logging.getLogger(__name__)

PREFIX: Final = "milepost:ops:tasks:"
#: Minutes the console adds up (the current one included).
WINDOW_MINUTES: Final = 60
#: A minute's hash lives this long after its last write: the window and an hour to spare.
KEEP_SECONDS: Final = 2 * 60 * 60
WRITE_TIMEOUT_SECONDS: Final = 0.25

SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
RETRIED: Final = "retried"
OUTCOMES: Final = (SUCCEEDED, FAILED, RETRIED)
_SEPARATOR: Final = "|"


@dataclasses.dataclass(frozen=True, slots=True)
class TaskCount:
    task: str
    succeeded: int
    failed: int
    retried: int


@dataclasses.dataclass(frozen=True, slots=True)
class TaskCounts:
    """Outcomes per task name over the window, by name; ``counts`` is empty unless ``ok``."""

    ok: bool
    detail: str
    counts: tuple[TaskCount, ...] = ()


def minute_key(at: dt.datetime) -> str:
    """The Redis key of the minute ``at`` falls in (UTC)."""
    return f"{PREFIX}{at.astimezone(dt.UTC):%Y%m%d%H%M}"


def task_outcome_record(task: str, outcome: str, *, now: dt.datetime | None = None) -> None:
    """Count one ``outcome`` of ``task`` in the current minute. Never raises."""
    client = _writer(selectors.broker_url())
    if client is None:
        return
    key = minute_key(now or timezone.now())
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.hincrby(key, f"{task}{_SEPARATOR}{outcome}", 1)
            pipe.expire(key, KEEP_SECONDS)
            pipe.execute()
    except (redis.RedisError, OSError) as error:
        logger.debug("task count of %s (%s) dropped: %s", task, outcome, error)


def task_counts_read(
    *,
    now: dt.datetime | None = None,
    minutes: int = WINDOW_MINUTES,
    timeout: float = selectors.BROKER_TIMEOUT_SECONDS,
) -> TaskCounts:
    """The outcomes of each task in the last ``minutes`` minutes, the current one included,
    read in one pipelined round trip bounded by ``timeout``; unavailable, never raised, when
    Redis does not answer."""
    now = now or timezone.now()
    client = selectors.broker_redis(timeout=timeout)
    if client is None:
        return TaskCounts(ok=False, detail="unavailable: task counts need a Redis broker")
    keys = [minute_key(now - dt.timedelta(minutes=back)) for back in range(minutes)]
    try:
        with client, client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            hashes: list[Mapping[bytes, bytes]] = pipe.execute()
    except (redis.RedisError, OSError) as error:
        logger.warning("task counts unavailable: %s", error)
        return TaskCounts(ok=False, detail=f"unavailable ({type(error).__name__})")
    return TaskCounts(
        ok=True, detail=f"the last {minutes} minutes", counts=task_counts_tally(hashes)
    )


def task_counts_tally(hashes: Iterable[Mapping[bytes, bytes]]) -> tuple[TaskCount, ...]:
    """Add up minute hashes (field ``<task>|<outcome>``, value a count) per task, by name.
    Fields of unknown outcomes are ignored."""
    totals: defaultdict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
    for found in hashes:
        for field, value in found.items():
            task, _, outcome = field.decode().rpartition(_SEPARATOR)
            if task and outcome in OUTCOMES:
                totals[task][outcome] += int(value)
    return tuple(
        TaskCount(
            task=task,
            succeeded=totals[task][SUCCEEDED],
            failed=totals[task][FAILED],
            retried=totals[task][RETRIED],
        )
        for task in sorted(totals)
    )


# --- The signal receivers (connected in OpsConfig.ready) --------------------------------------


def on_task_success(sender: Any = None, **kwargs: Any) -> None:
    _record(sender, SUCCEEDED)


def on_task_failure(sender: Any = None, **kwargs: Any) -> None:
    _record(sender, FAILED)


def on_task_retry(sender: Any = None, **kwargs: Any) -> None:
    _record(sender, RETRIED)


def _record(sender: Any, outcome: str) -> None:
    try:
        task_outcome_record(str(getattr(sender, "name", None) or sender), outcome)
    except Exception as error:  # a count is never worth a task's failure
        logger.debug("task count (%s) dropped: %s", outcome, error)


@functools.cache
def _writer(url: str) -> redis.Redis | None:
    """One client per process and broker URL (its pool reconnects after a fork), or None when
    the broker is not Redis."""
    if not selectors.is_redis_url(url):
        return None
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=WRITE_TIMEOUT_SECONDS,
        socket_timeout=WRITE_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
    )
