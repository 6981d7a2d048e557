"""Tasks for the scale-out test (test_workers.py), imported by its worker processes with
``celery worker --include tests.ops.probes``. Each records in Redis the node name of the
worker that ran it; the names route them to evaluate and messages.email like production's."""

from __future__ import annotations

from typing import Any, Final

from celery import Task

from config.celery import app
from ops.selectors import broker_redis

PREFIX: Final = "milepost:ops:test:ran:"


@app.task(name="milestones.ops_scale_probe", bind=True, ignore_result=True)
def evaluate_probe(self: Task[Any, Any], token: str) -> None:
    _record(self, token)


@app.task(name="messaging.email.ops_scale_probe", bind=True, ignore_result=True)
def email_probe(self: Task[Any, Any], token: str) -> None:
    _record(self, token)


def _record(task: Task[Any, Any], token: str) -> None:
    client = broker_redis()
    assert client is not None
    with client:
        client.set(f"{PREFIX}{token}", str(task.request.hostname), ex=600)
