"""Celery entry points for journeys: thin shells over one service each (queue: journeys)."""

from __future__ import annotations

from celery import shared_task

from journeys import runner


@shared_task(name="journeys.enrollments_advance", ignore_result=True)
def enrollments_advance_task(rounds: int = 20) -> int:
    """Advance due enrollments: up to ``rounds`` batches, then hand over to a fresh task so a
    busy queue never pins a worker. Also the beat tick that picks up waits that are over."""
    advanced = 0
    for _ in range(rounds):
        claimed = runner.enrollments_advance()
        advanced += claimed
        if claimed == 0:
            return advanced
    enrollments_advance_task.delay()
    return advanced
