"""Prometheus metrics, read at scrape time by a custom collector (nothing is counted in
process: web and worker processes come and go, the database and the broker stay).

Every series comes from one cheap read in ``ops.selectors`` (its docstring says why each is
cheap). A database error fails the scrape, which Prometheus records as ``up == 0``; an
unreachable broker only sets ``milepost_celery_broker_up`` to 0 and drops the queue series.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from django.conf import settings
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from messaging.selectors import messages_by_outcome
from ops import selectors


class MilepostCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        window = settings.METRICS_WINDOW_SECONDS
        since = now - dt.timedelta(seconds=window)
        yield CounterMetricFamily(
            "milepost_events_ingested",
            "Events ingested: the event id sequence's last value (constant time; also counts "
            "ids spent on replays skipped as duplicates and on rolled-back batches).",
            value=selectors.events_ingested(),
        )
        yield GaugeMetricFamily(
            "milepost_metrics_window_seconds",
            "The trailing window of the *_recent metrics (METRICS_WINDOW_SECONDS).",
            value=window,
        )
        yield _outcomes(since)
        yield _messages(since)
        yield _lags(now)
        yield from _queues()
        yield from _beat(now)


def _outcomes(since: dt.datetime) -> Metric:
    family = GaugeMetricFamily(
        "milepost_milestone_outcomes_recent",
        "Milestone outcomes recorded in the trailing window, by kind (achieved, missed).",
        labels=["kind"],
    )
    for kind, count in selectors.outcomes_recent(since=since).items():
        family.add_metric([kind], count)
    return family


def _messages(since: dt.datetime) -> Metric:
    family = GaugeMetricFamily(
        "milepost_messages_recent",
        "Messages created in the trailing window, by current status and reason (why one was "
        "not sent: messaging/reasons.py; empty for the others).",
        labels=["status", "reason"],
    )
    for (status, reason), count in sorted(messages_by_outcome(since=since).items()):
        family.add_metric([status, reason], count)
    return family


def _lags(now: dt.datetime) -> Metric:
    family = GaugeMetricFamily(
        "milepost_pending_lag_seconds",
        "How long the oldest due item of each kind of pending work has waited; 0 when "
        "nothing is due.",
        labels=["work"],
    )
    for lag in selectors.pending_lags(now=now):
        family.add_metric([lag.work], lag.seconds)
    return family


def _queues() -> Iterator[Metric]:
    read = selectors.queue_depths()
    yield GaugeMetricFamily(
        "milepost_celery_broker_up",
        f"1 when the Celery broker answered within {selectors.BROKER_TIMEOUT_SECONDS:g} s.",
        value=1 if read.ok else 0,
    )
    if read.ok:
        family = GaugeMetricFamily(
            "milepost_celery_queue_messages",
            "Messages waiting in each Celery queue, every priority (not those a worker holds "
            "unacknowledged).",
            labels=["queue"],
        )
        for queue, depth in read.depths.items():
            family.add_metric([queue], depth)
        yield family


def _beat(now: dt.datetime) -> Iterator[Metric]:
    heartbeats = selectors.beat_heartbeats()
    max_age = dt.timedelta(seconds=settings.READYZ_BEAT_MAX_AGE_SECONDS)
    yield GaugeMetricFamily(
        "milepost_beat_processes",
        "Beat processes heard from within READYZ_BEAT_MAX_AGE_SECONDS (1 when healthy).",
        value=sum(1 for h in heartbeats if now - h.last_at <= max_age),
    )
    if heartbeats:
        yield GaugeMetricFamily(
            "milepost_beat_heartbeat_age_seconds",
            "Seconds since the latest beat heartbeat ran (absent before the first).",
            value=(now - max(h.last_at for h in heartbeats)).total_seconds(),
        )


def metrics_render(*, accept: str = "") -> tuple[bytes, str]:
    """The exposition (Prometheus text, or OpenMetrics when ``accept`` asks for it) and its
    content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MilepostCollector())
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
