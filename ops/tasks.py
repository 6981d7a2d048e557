"""Celery entry points for ops (queue: maintenance)."""

from __future__ import annotations

from celery import Task, shared_task

from ops.services import heartbeat_record


@shared_task(name="maintenance.beat_heartbeat", bind=True, ignore_result=True)
def beat_heartbeat_task(self: Task[[], None]) -> None:
    """Beat sends this every 15 s (CELERY_BEAT_SCHEDULE); /readyz reads when it last ran.
    ``origin`` is the node name Celery stamps on a message: the beat process's."""
    heartbeat_record(origin=str(self.request.origin or "unknown"))
