"""Reads for operations: the broker and its queues, pending work's lag, recent counts and
the beat heartbeats. /readyz, /metrics and the ops console (ops/console.py) use them.

Every read stays cheap however large the tables grow, because a scrape or a load balancer
runs them every few seconds:

- each lag is one ``ORDER BY … LIMIT 1`` on the index its worker claims by (the primary key
  of pending evaluations; ``progress_due``; ``enrollment_due``; ``message_in_flight``;
  ``message_deferred_due``), so it reads one row when the work is keeping up;
- events ingested is the event id sequence's last value: constant time, no table read;
- the recent counts cover only a trailing window, found on the primary key: rows are
  numbered in the order they are created, so the window is the ids after the newest row
  older than it, and a count reads the window's rows and no others;
- the broker reads open one connection and send one command (or one pipeline), the connect
  and the answer each bounded by ``BROKER_TIMEOUT_SECONDS`` and never retried; an
  unreachable broker is reported, never raised.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Mapping
from typing import Final

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, Max, Q
from django.utils import timezone
from kombu import Connection
from kombu.transport.redis import PRIORITY_STEPS
from kombu.transport.redis import Channel as RedisChannel
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.celery import QUEUES
from config.plans import planned_each_time
from config.windows import newest_id_before
from customers.models import Event
from journeys.models import Enrollment, EnrollmentState
from messaging.models import Message, MessageStatus
from milestones.evaluation import pending_oldest_age
from milestones.models import MilestoneOutcome, OutcomeKind, Progress, ProgressState
from ops.models import BeatHeartbeat

logger = logging.getLogger(__name__)

#: No broker read waits longer than this to connect, nor this again for an answer.
BROKER_TIMEOUT_SECONDS: Final = 1.0
#: Beat processes read at most (the table keeps a day of them; normally one or two).
HEARTBEATS_READ: Final = 20

#: The kinds of pending work whose lag is measured: stable label values.
EVALUATIONS: Final = "milestone_evaluations"
DEADLINES: Final = "missed_deadlines"
ENROLLMENTS: Final = "journey_enrollments"
OUTBOX: Final = "outbox"
DEFERRED: Final = "deferred_messages"
WORK: Final = (EVALUATIONS, DEADLINES, ENROLLMENTS, OUTBOX, DEFERRED)


@dataclasses.dataclass(frozen=True, slots=True)
class Probe:
    """A dependency's answer: whether it works, and a short human-readable detail."""

    ok: bool
    detail: str


# --- The database and the broker ------------------------------------------------------------


def database_ping() -> Probe:
    """A trivial query on the default database."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as error:
        logger.warning("readiness: database unavailable: %s", error)
        return Probe(ok=False, detail=f"unavailable ({type(error).__name__})")
    return Probe(ok=True, detail=f"{connection.vendor} answered")


def broker_ping(*, timeout: float = BROKER_TIMEOUT_SECONDS) -> Probe:
    """Connect to the Celery broker and ping it, waiting at most ``timeout`` for each."""
    url = broker_url()
    if not is_redis_url(url):
        return _kombu_ping(url, timeout)
    try:
        with _redis_client(url, timeout) as client:
            client.ping()
    except (redis.RedisError, OSError, ValueError) as error:
        return _broker_failed(error, timeout)
    return Probe(ok=True, detail="redis answered PING")


@dataclasses.dataclass(frozen=True, slots=True)
class QueueDepths:
    """Messages waiting per Celery queue; ``depths`` is empty when ``ok`` is false."""

    ok: bool
    detail: str
    depths: Mapping[str, int] = dataclasses.field(default_factory=dict)


def queue_depths(*, timeout: float = BROKER_TIMEOUT_SECONDS) -> QueueDepths:
    """Messages waiting in each queue of ``config.celery.QUEUES``: the lengths of the Redis
    lists kombu keeps per queue and priority step, in one pipelined round trip. Messages a
    worker has taken but not acknowledged are not waiting (kombu holds them aside)."""
    url = broker_url()
    if not is_redis_url(url):
        return QueueDepths(ok=False, detail="unavailable: queue depths need a Redis broker")
    keys = {queue: _queue_keys(queue) for queue in QUEUES}
    try:
        with _redis_client(url, timeout) as client, client.pipeline(transaction=False) as pipe:
            for names in keys.values():
                for name in names:
                    pipe.llen(name)
            lengths = iter(pipe.execute())
    except (redis.RedisError, OSError, ValueError) as error:
        failed = _broker_failed(error, timeout)
        return QueueDepths(ok=False, detail=failed.detail)
    depths = {queue: sum(int(next(lengths)) for _ in names) for queue, names in keys.items()}
    return QueueDepths(ok=True, detail="redis answered", depths=depths)


def _queue_keys(queue: str) -> list[str]:
    """The Redis lists kombu's Redis transport keeps ``queue`` in: the queue's own name for
    priority 0 and ``<queue><sep><step>`` for each other priority step, all behind the
    optional global key prefix (kombu.transport.redis.Channel._q_for_pri)."""
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    configured = options.get("priority_steps")
    steps = [int(s) for s in configured] if isinstance(configured, list | tuple) else PRIORITY_STEPS
    sep = str(options.get("sep", RedisChannel.sep))
    prefix = str(options.get("global_keyprefix", ""))
    return [prefix + (f"{queue}{sep}{step}" if step else queue) for step in steps]


def broker_redis(*, timeout: float = BROKER_TIMEOUT_SECONDS) -> redis.Redis | None:
    """A new client of the broker's Redis, ``timeout`` bounding the connect and each answer,
    never retrying; None when the broker is not Redis (the demo's filesystem broker)."""
    url = broker_url()
    return _redis_client(url, timeout) if is_redis_url(url) else None


def broker_url() -> str:
    # A failover list ("redis://a;redis://b") is tried in order by kombu: read the first.
    url: str = settings.CELERY_BROKER_URL
    return url.split(";", 1)[0].strip()


def is_redis_url(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "unix://"))


def _redis_client(url: str, timeout: float) -> redis.Redis:
    """A new client each time: a pooled connection Redis dropped would fail the next read
    once, and a check must not retry (each retry would add its own timeout)."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _kombu_ping(url: str, timeout: float) -> Probe:
    """Any other transport (the demo's filesystem broker): connect through kombu, once."""
    try:
        with Connection(url, connect_timeout=timeout) as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, timeout=math.ceil(timeout))
    except Exception as error:  # each transport raises its own errors
        return _broker_failed(error, timeout)
    return Probe(ok=True, detail=f"{url.split(':', 1)[0]} broker connected")


def _broker_failed(error: BaseException, timeout: float) -> Probe:
    logger.warning("broker unavailable: %s", error)
    if isinstance(error, redis.TimeoutError | TimeoutError):
        return Probe(ok=False, detail=f"unavailable: no answer within {timeout:g} s")
    return Probe(ok=False, detail=f"unavailable ({type(error).__name__})")


# --- Pending work ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Lag:
    """How long the oldest due item of one kind of pending work has waited."""

    work: str
    oldest_due_at: dt.datetime | None  # None: nothing is due
    seconds: float  # 0.0 when nothing is due


def pending_lags(*, now: dt.datetime | None = None) -> list[Lag]:
    """The lag of each kind of pending work (``WORK``), one indexed row read each."""
    now = now or timezone.now()
    due = {
        EVALUATIONS: _evaluation_due(now),
        DEADLINES: _deadline_due(now),
        ENROLLMENTS: _enrollment_due(now),
        OUTBOX: _outbox_due(now),
        DEFERRED: _deferred_due(now),
    }
    return [
        Lag(work=work, oldest_due_at=at, seconds=_seconds_since(at, now))
        for work, at in due.items()
    ]


def _seconds_since(at: dt.datetime | None, now: dt.datetime) -> float:
    return 0.0 if at is None else max(0.0, (now - at).total_seconds())


def _evaluation_due(now: dt.datetime) -> dt.datetime | None:
    # Due as soon as written; the oldest by id (the primary key), as the reconciler reads it.
    age = pending_oldest_age(now)
    return None if age is None else now - age


def _deadline_due(now: dt.datetime) -> dt.datetime | None:
    # The missed sweep takes a deadline once the grace period after it has passed.
    grace = dt.timedelta(seconds=settings.MILESTONES_SWEEP_GRACE_SECONDS)
    deadline = (
        Progress.objects.filter(
            state=ProgressState.IN_PROGRESS, deadline_at__isnull=False, deadline_at__lte=now - grace
        )
        .order_by("deadline_at")  # progress_due
        .values_list("deadline_at", flat=True)
        .first()
    )
    return None if deadline is None else deadline + grace


def _enrollment_due(now: dt.datetime) -> dt.datetime | None:
    return (
        Enrollment.objects.filter(
            state__in=(EnrollmentState.ACTIVE, EnrollmentState.WAITING), next_run_at__lte=now
        )
        .order_by("next_run_at")  # enrollment_due
        .values_list("next_run_at", flat=True)
        .first()
    )


def _outbox_due(now: dt.datetime) -> dt.datetime | None:
    """The queued message a send task takes next (least recently touched, among those due):
    due since it was queued, or since its retry time."""
    found = (
        Message.objects.filter(status=MessageStatus.QUEUED)
        .filter(Q(send_after__isnull=True) | Q(send_after__lte=now))
        .order_by("updated_at")  # message_in_flight
        .values_list("send_after", "updated_at")
        .first()
    )
    return None if found is None else found[0] or found[1]


def _deferred_due(now: dt.datetime) -> dt.datetime | None:
    # Quiet hours and retries handed back: the messaging.due tick decides them again.
    return (
        Message.objects.filter(status=MessageStatus.DEFERRED, send_after__lte=now)
        .order_by("send_after")  # message_deferred_due
        .values_list("send_after", flat=True)
        .first()
    )


# --- Counts ---------------------------------------------------------------------------------


def events_ingested() -> int:
    """Events ingested so far, read from the event id sequence (PostgreSQL): constant time
    where ``count(*)`` would scan the whole table. It runs ahead of the row count by the ids
    spent on replays skipped as duplicates (``ON CONFLICT DO NOTHING`` draws an id first)
    and on rolled-back batches, and never goes back when events are erased — what a
    Prometheus counter needs. Elsewhere (SQLite) the largest id, read off the primary key."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, 'id')::regclass)",
                [Event._meta.db_table],
            )
            row = cursor.fetchone()
        return int(row[0] or 0) if row else 0
    return int(Event.objects.aggregate(last=Max("pk"))["last"] or 0)


def outcomes_recent(*, since: dt.datetime) -> dict[str, int]:
    """Milestone outcomes recorded since ``since``, by kind (every kind, 0 when none)."""
    floor = newest_id_before(MilestoneOutcome, "recorded_at", since)
    with planned_each_time():
        rows = (
            MilestoneOutcome.objects.filter(pk__gt=floor, recorded_at__gte=since)
            .order_by()
            .values_list("kind")
            .annotate(count=Count("*"))
        )
        found: dict[str, int] = dict(rows)
    return {kind: found.get(kind, 0) for kind in OutcomeKind.values}


# --- Beat -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Heartbeat:
    """One beat process's heartbeats: the first and the latest."""

    origin: str
    first_at: dt.datetime
    last_at: dt.datetime


def beat_heartbeats() -> list[Heartbeat]:
    """The beat processes heard from, latest first."""
    rows = BeatHeartbeat.objects.order_by("-last_at").values_list("origin", "first_at", "last_at")[
        :HEARTBEATS_READ
    ]
    return [Heartbeat(origin=o, first_at=first, last_at=last) for o, first, last in rows]
