"""The Celery app's contract: JSON only, late acks, one queue per concern, routed by name."""

from __future__ import annotations

import pytest

from config.celery import QUEUES, app


def test_tasks_are_json_only_and_acknowledged_late() -> None:
    conf = app.conf

    assert (conf.task_serializer, conf.result_serializer, conf.accept_content) == (
        "json",
        "json",
        ["json"],
    )
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost) == (True, True)
    assert conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"


def test_every_queue_has_its_own_exchange_and_routing_key() -> None:
    bindings = {(q.name, q.exchange.name, q.routing_key) for q in app.conf.task_queues}

    assert bindings == {(name, name, name) for name in QUEUES}


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("customers.events_prune", "ingest"),
        ("milestones.evaluate_batch", "evaluate"),
        ("journeys.enrollment_advance", "journeys"),
        ("messaging.email.message_dispatch", "messages.email"),
        ("messaging.sms.message_dispatch", "messages.sms"),
        ("messaging.push.message_dispatch", "messages.push"),
        ("messaging.webhook_receive", "messages.email"),
        ("consent.erase", "maintenance"),
        ("maintenance.beat_heartbeat", "maintenance"),
        ("something.unknown", "maintenance"),
    ],
)
def test_a_task_is_published_to_its_concerns_queue_only(task_name: str, queue: str) -> None:
    route = app.amqp.router.route({}, task_name)

    assert (route["queue"].name, route["queue"].exchange.name, route["queue"].routing_key) == (
        queue,
        queue,
        queue,
    )
