"""Coalesced wake-ups: at most one waiting wake-up per drain task.

Work is rows (DESIGN.md §2.1); a task only wakes a worker to drain them, in batches. Queuing
one task per commit floods the broker under load — each finds the rows its predecessor
already took, and work behind them waits its turn (Celery moves ~1,000 tasks/s here). So a
commit queues a drain task only if none is waiting: ``wake`` sets a short-lived flag in Redis
and queues the task when it set it; the task clears the flag as it starts (``woken``), so a
commit after that start queues the next one and nothing committed is left unseen. A flag
whose task was lost expires after ``_TTL`` seconds, and beat's periodic ticks drain
meanwhile. Without a Redis broker (the demo), or eagerly run tasks, every wake queues.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Final

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

_PREFIX: Final = "milepost:wake:"
_TTL: Final = 30


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _redis() -> redis.Redis | None:
    url: str = settings.CELERY_BROKER_URL
    if settings.CELERY_TASK_ALWAYS_EAGER or not url.startswith(("redis://", "rediss://")):
        return None
    return _client(url)


def wake(task: Any) -> None:
    """Queue ``task`` (a Celery task taking no arguments) unless a wake-up is waiting."""
    client = _redis()
    if client is not None:
        try:
            if not client.set(_PREFIX + task.name, b"1", nx=True, ex=_TTL):
                return
        except redis.RedisError:
            logger.warning("wake-up flag for %s unavailable; queuing anyway", task.name)
    try:
        task.delay()
    except Exception:
        woken(task)  # nothing is waiting: the next commit must try again
        raise


def woken(task: Any) -> None:
    """Called by ``task`` as it starts draining: the next commit queues a new wake-up."""
    client = _redis()
    if client is None:
        return
    try:
        client.delete(_PREFIX + task.name)
    except redis.RedisError:
        logger.warning("wake-up flag for %s could not be cleared", task.name)


def drain(task: Any, work: Callable[[], int], rounds: int) -> int:
    """The body of a drain task: clear its wake-up flag, run up to ``rounds`` batches of
    ``work`` (each returns how much it did), then queue ``task`` again if there may be more,
    so one busy queue never pins a worker process. Returns how much was done."""
    woken(task)
    done = 0
    for _ in range(rounds):
        did = work()
        done += did
        if did == 0:
            return done
    task.delay()
    return done


def wakes_forget() -> None:
    """Clear every flag (tests: a flag must not outlive the test that set it)."""
    client = _redis()
    if client is not None:
        keys = list(client.scan_iter(match=_PREFIX + "*"))
        if keys:
            client.delete(*keys)
