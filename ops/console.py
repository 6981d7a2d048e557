"""What the ops console shows (``ops/admin.py`` renders it, and serves it as JSON every 5 s):
the broker, its queues, the workers, task outcomes of the last hour, pending work's lag, beat
and its schedules, and the newest failed messages.

No read can hold the page. The broker is pinged first (``selectors.broker_ping``: at most
1 s) and, when it does not answer, nothing else asks it: the page says so and still shows
every database-backed section. When it answers, the queue depths and task counts are one
bounded round trip each, and the workers are asked (Celery's ``inspect``, 1 s for their
replies) on a thread of their own while the database is read, then waited for at most
``WORKERS_DEADLINE_SECONDS`` in all. The thread is the backstop for a broker that fails
between the ping and the ``inspect``: kombu publishes the control message through the app's
producer pool with connection retries (measured: 6 s before it gave up on a Redis refusing
connections; still waiting after 40 s on one that accepts and never answers). At most
``WORKERS_IN_FLIGHT`` such queries run at once per process, so stuck threads cannot pile up.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from config.celery import app
from messaging.models import Message, MessageStatus
from messaging.retry import is_retryable
from ops import health, selectors
from ops.selectors import Heartbeat, Lag, Probe, QueueDepths
from ops.task_counts import TaskCounts, task_counts_read

logger = logging.getLogger(__name__)

BROKER_DOWN: Final = "Broker unreachable: queue depths, workers and task counts unavailable"
#: How long workers have to answer ``inspect`` (each of its two broadcasts).
WORKERS_TIMEOUT_SECONDS: Final = 1.0
#: The page waits no longer than this for the workers, however the broker behaves.
WORKERS_DEADLINE_SECONDS: Final = 2.0
WORKERS_IN_FLIGHT: Final = 4
#: Failed messages listed, newest first, among the newest ``FAILED_SCANNED`` messages: the
#: send log has no index on failures, so the read walks the primary key back from the newest
#: message and must stop somewhere however rare failures are.
FAILED_SHOWN: Final = 50
FAILED_SCANNED: Final = 100_000
SCHEDULES_SHOWN: Final = 200

WORK_LABELS: Final[Mapping[str, str]] = {
    selectors.EVALUATIONS: "Milestone evaluations",
    selectors.DEADLINES: "Missed-deadline sweep",
    selectors.ENROLLMENTS: "Journey enrollments due",
    selectors.OUTBOX: "Outbox (queued messages due)",
    selectors.DEFERRED: "Deferred messages due",
}

_inspecting = threading.BoundedSemaphore(WORKERS_IN_FLIGHT)


@dataclasses.dataclass(frozen=True, slots=True)
class Worker:
    hostname: str
    pool: str  # prefork, threads, solo, ...
    concurrency: int | None
    queues: tuple[str, ...]
    prefetch_count: int | None
    tasks_done: int  # since it started, every task name
    uptime_seconds: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Workers:
    """The workers that answered; ``workers`` is empty unless ``ok``."""

    ok: bool
    detail: str
    workers: tuple[Worker, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    task: str
    schedule: str
    enabled: bool
    last_run_at: dt.datetime | None
    total_run_count: int


@dataclasses.dataclass(frozen=True, slots=True)
class FailedMessage:
    id: int
    channel: str
    reason: str
    error: str
    failed_at: dt.datetime | None
    attempts: int
    is_retryable: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Console:
    generated_at: dt.datetime
    broker: Probe
    queues: QueueDepths
    workers: Workers
    task_counts: TaskCounts
    lags: tuple[Lag, ...]
    beat: Probe
    heartbeats: tuple[Heartbeat, ...]
    schedules: tuple[Schedule, ...]
    failed_messages: tuple[FailedMessage, ...]

    @property
    def broker_notice(self) -> str:
        """What to say first when the broker is down ("" while it answers)."""
        return "" if self.broker.ok else f"{BROKER_DOWN} ({self.broker.detail})."

    @property
    def pending(self) -> list[tuple[str, Lag]]:
        """Each kind of pending work's label and lag."""
        return [(WORK_LABELS[lag.work], lag) for lag in self.lags]

    def as_json(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "broker": {"ok": self.broker.ok, "detail": self.broker.detail},
            "broker_notice": self.broker_notice,
            "queues": {
                "ok": self.queues.ok,
                "detail": self.queues.detail,
                "depths": dict(self.queues.depths),
            },
            "workers": {
                "ok": self.workers.ok,
                "detail": self.workers.detail,
                "workers": [_plain(worker) for worker in self.workers.workers],
            },
            "task_counts": {
                "ok": self.task_counts.ok,
                "detail": self.task_counts.detail,
                "tasks": [_plain(count) for count in self.task_counts.counts],
            },
            "pending": [
                {
                    "work": lag.work,
                    "label": label,
                    "oldest_due_at": _iso(lag.oldest_due_at),
                    "lag_seconds": lag.seconds,
                }
                for label, lag in self.pending
            ],
            "beat": {
                "ok": self.beat.ok,
                "detail": self.beat.detail,
                "heartbeats": [_plain(heartbeat) for heartbeat in self.heartbeats],
            },
            "schedules": [_plain(schedule) for schedule in self.schedules],
            "failed_messages": [_plain(message) for message in self.failed_messages],
        }


def console_read(*, now: dt.datetime | None = None) -> Console:
    """Everything the console shows, read now (see the module docstring for the bounds)."""
    now = now or timezone.now()
    broker = selectors.broker_ping()
    asked = WorkersQuery.start(timeout=WORKERS_TIMEOUT_SECONDS) if broker.ok else None
    lags = tuple(selectors.pending_lags(now=now))
    heartbeats = tuple(selectors.beat_heartbeats())
    max_age = dt.timedelta(seconds=settings.READYZ_BEAT_MAX_AGE_SECONDS)
    beat = health.beat_verdict(heartbeats, now=now, max_age=max_age)
    schedules = schedules_read()
    failed = failed_messages_read()
    if asked is None:
        skipped = "skipped: the broker is unreachable"
        queues = QueueDepths(ok=False, detail=skipped)
        workers = Workers(ok=False, detail=skipped)
        counts = TaskCounts(ok=False, detail=skipped)
    else:
        queues = selectors.queue_depths()
        counts = task_counts_read(now=now)
        workers = asked.result(deadline=WORKERS_DEADLINE_SECONDS)
    return Console(
        generated_at=now,
        broker=broker,
        queues=queues,
        workers=workers,
        task_counts=counts,
        lags=lags,
        beat=beat,
        heartbeats=heartbeats,
        schedules=schedules,
        failed_messages=failed,
    )


# --- Workers ----------------------------------------------------------------------------------


def workers_read(
    *,
    timeout: float = WORKERS_TIMEOUT_SECONDS,
    deadline: float = WORKERS_DEADLINE_SECONDS,
) -> Workers:
    """The workers online, their pools and queues; never longer than ``deadline``."""
    return WorkersQuery.start(timeout=timeout).result(deadline=deadline)


class WorkersQuery:
    """``inspect`` running on a daemon thread; ``result`` waits for it up to a deadline
    counted from ``start``."""

    def __init__(self, started: float) -> None:
        self._started = started
        self._done = threading.Event()
        self._answer = Workers(ok=False, detail="not asked")

    @classmethod
    def start(cls, *, timeout: float = WORKERS_TIMEOUT_SECONDS) -> WorkersQuery:
        query = cls(time.monotonic())
        if not _inspecting.acquire(blocking=False):
            query._finish(Workers(ok=False, detail="busy: earlier queries are still waiting"))
            return query
        threading.Thread(
            target=query._run, args=(timeout,), name="ops-console-workers", daemon=True
        ).start()
        return query

    def result(self, *, deadline: float = WORKERS_DEADLINE_SECONDS) -> Workers:
        remaining = deadline - (time.monotonic() - self._started)
        if not self._done.wait(max(0.0, remaining)):
            return Workers(ok=False, detail=f"unavailable: no answer within {deadline:g} s")
        return self._answer

    def _run(self, timeout: float) -> None:
        try:
            answer = workers_inspect(timeout=timeout)
        except Exception as error:  # kombu and each transport raise their own
            logger.warning("workers unavailable: %s", error)
            answer = Workers(ok=False, detail=f"unavailable ({type(error).__name__})")
        finally:
            _inspecting.release()
        self._finish(answer)

    def _finish(self, answer: Workers) -> None:
        self._answer = answer
        self._done.set()


def workers_inspect(*, timeout: float = WORKERS_TIMEOUT_SECONDS) -> Workers:
    """Ask every worker for its statistics (waiting ``timeout`` for the replies: how many
    will come is unknown), then the ones that answered for their queues (back as soon as
    each has). The replies are read on a connection that gives up at once when the broker
    is gone, instead of kombu's default of retrying."""
    with app.connection_for_write(
        connect_timeout=timeout,
        transport_options={
            "max_retries": 0,
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
        },
    ) as connection:
        stats = app.control.inspect(timeout=timeout, connection=connection).stats() or {}
        queues = (
            app.control.inspect(
                timeout=timeout, connection=connection, destination=sorted(stats)
            ).active_queues()
            or {}
            if stats
            else {}
        )
    workers = tuple(worker_parse(name, stats[name], queues.get(name)) for name in sorted(stats))
    return Workers(
        ok=True,
        detail=f"{len(workers)} answered within {timeout:g} s",
        workers=workers,
    )


def worker_parse(hostname: str, stats: Mapping[str, Any], queues: Sequence[Any] | None) -> Worker:
    """One worker from its replies to ``stats`` and ``active_queues`` (the second may be
    missing: a worker that stopped in between)."""
    found = stats.get("pool")
    pool: Mapping[str, Any] = found if isinstance(found, dict) else {}
    implementation = str(pool.get("implementation", ""))  # "celery.concurrency.solo:TaskPool"
    kind = implementation.partition(":")[0].rpartition(".")[2]
    total = stats.get("total")
    return Worker(
        hostname=hostname,
        pool={"thread": "threads"}.get(kind, kind),
        concurrency=_integer(pool.get("max-concurrency")),
        queues=tuple(
            sorted(str(queue["name"]) for queue in queues or () if isinstance(queue, dict))
        ),
        prefetch_count=_integer(stats.get("prefetch_count")),
        tasks_done=sum(int(n) for n in total.values()) if isinstance(total, dict) else 0,
        uptime_seconds=_integer(stats.get("uptime")),
    )


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- The database -----------------------------------------------------------------------------


def schedules_read() -> tuple[Schedule, ...]:
    """Beat's schedules as django-celery-beat stores them, by name. ``last_run_at`` is as
    beat last wrote it back (every few minutes): the heartbeat says whether beat is alive."""
    tasks = PeriodicTask.objects.select_related("interval", "crontab", "solar", "clocked")
    return tuple(
        Schedule(
            name=task.name,
            task=task.task,
            schedule=str(task.interval or task.crontab or task.solar or task.clocked or "none"),
            enabled=task.enabled,
            last_run_at=task.last_run_at,
            total_run_count=task.total_run_count,
        )
        for task in tasks.order_by("name")[:SCHEDULES_SHOWN]
    )


def failed_messages_read(
    *, shown: int = FAILED_SHOWN, scanned: int = FAILED_SCANNED
) -> tuple[FailedMessage, ...]:
    """The newest ``shown`` failed or unconfirmed messages among the newest ``scanned``
    messages, newest first, each marked whether ``messages_retry`` would take it."""
    newest = Message.objects.order_by("-pk").values_list("pk", flat=True).first()
    if newest is None:
        return ()
    rows = (
        Message.objects.filter(
            pk__gt=newest - scanned,
            status__in=(MessageStatus.FAILED, MessageStatus.UNCONFIRMED),
        )
        .order_by("-pk")
        .values_list("pk", "status", "channel", "reason", "error", "failed_at", "attempts")[:shown]
    )
    return tuple(
        FailedMessage(
            id=pk,
            channel=channel,
            reason=reason,
            error=error,
            failed_at=failed_at,
            attempts=attempts,
            is_retryable=is_retryable(status, reason),
        )
        for pk, status, channel, reason, error, failed_at, attempts in rows
    )


# --- JSON -------------------------------------------------------------------------------------


def _plain(row: Any) -> dict[str, Any]:
    return {
        field.name: _iso(value) if isinstance(value, dt.datetime) else value
        for field in dataclasses.fields(row)
        for value in (getattr(row, field.name),)
    }


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()
