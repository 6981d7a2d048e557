"""The Celery app: JSON only, late acks, queues by concern (DESIGN.md §4).

Tasks are named ``<app>.<operation>``; the app prefix picks the queue, so a slow channel
never starves milestone evaluation. Every task must be idempotent because acks are late
and a task whose worker dies is redelivered.
"""

from __future__ import annotations

import logging.config
import os
from typing import Any

from celery import Celery, signals
from django.db import close_old_connections
from kombu import Exchange, Queue

from config.logs import request_id_publish, task_context_enter, task_context_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

QUEUES = (
    "ingest",
    "evaluate",
    "journeys",
    "messages.email",
    "messages.sms",
    "messages.push",
    "maintenance",
)

# Task-name prefix -> queue. The longest matching prefix wins (see ``route_task``).
ROUTES = {
    "customers.": "ingest",
    "milestones.": "evaluate",
    "journeys.": "journeys",
    "messaging.email.": "messages.email",
    "messaging.sms.": "messages.sms",
    "messaging.push.": "messages.push",
    "messaging.due": "maintenance",
    "messaging.": "messages.email",
    "consent.": "maintenance",
    "maintenance.": "maintenance",
}


def route_task(
    name: str, args: object, kwargs: object, options: object, **_: object
) -> dict[str, str]:
    for prefix in sorted(ROUTES, key=len, reverse=True):
        if name.startswith(prefix):
            return {"queue": ROUTES[prefix]}
    return {"queue": "maintenance"}


app = Celery("milepost")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_ignore_result=True,
    # Each queue on its own direct exchange and routing key: a bare Queue(name) would inherit
    # the default queue's exchange and key, and a task routed anywhere would reach them all.
    task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
    task_default_queue="maintenance",
    task_default_exchange="maintenance",
    task_default_routing_key="maintenance",
    task_routes=(route_task,),
    worker_send_task_events=True,
    task_send_sent_event=True,
    broker_connection_retry_on_startup=True,
    beat_scheduler="django_celery_beat.schedulers:DatabaseScheduler",
    timezone="UTC",
    enable_utc=True,
)
# Celery's Django fix-up closes every database connection before and after every task,
# which costs a new PostgreSQL connection (a backend process) per task: at a few hundred
# small tasks a second that is most of the work. Connections are handled as Django handles
# them around a request instead: reused up to CONN_MAX_AGE, closed when unusable or after
# an error (CONN_HEALTH_CHECKS checks a reused one first).
app.conf.CELERY_DB_REUSE_MAX = 2**62  # the fix-up closes only every 2**63 tasks: never


@signals.task_prerun.connect
@signals.task_postrun.connect
def _connections_tidy(task: Any = None, **kwargs: Any) -> None:
    if task is None or not getattr(task.request, "is_eager", False):
        close_old_connections()


@signals.worker_process_init.connect
def _collector_tune(**kwargs: Any) -> None:
    from config.collector import collector_tune

    collector_tune()


# Log lines name their task, and the request whose work it is (config/logs.py).
signals.before_task_publish.connect(request_id_publish)
signals.task_prerun.connect(task_context_enter)
signals.task_postrun.connect(task_context_exit)


@signals.setup_logging.connect
def _logging_configure(**kwargs: Any) -> None:
    # Workers and beat log through LOGGING (LOG_LEVEL, LOG_FORMAT, the context filter) like
    # the web: left alone, Celery replaces the root logger's handlers with its own format and
    # gives task loggers a handler of their own.
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


app.autodiscover_tasks()
