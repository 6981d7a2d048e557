"""Celery entry points for journeys: thin shells over one service each (queue: journeys)."""

from __future__ import annotations

from celery import shared_task

from config.wake import drain
from journeys import notices, runner, sweep


@shared_task(name="journeys.enrollments_advance", ignore_result=True)
def enrollments_advance_task(rounds: int = 20) -> int:
    """Advance due enrollments: up to ``rounds`` batches, then hand over to a fresh task so a
    busy queue never pins a worker. Also the beat tick that picks up waits that are over."""
    return drain(enrollments_advance_task, runner.enrollments_advance, rounds)


@shared_task(name="journeys.notices_send", ignore_result=True)
def notices_send_task(rounds: int = 20) -> int:
    """Send due team emails and webhooks (first tries and retries)."""
    return drain(notices_send_task, notices.notices_send, rounds)


@shared_task(name="journeys.outcomes_sweep", ignore_result=True)
def outcomes_sweep_task(rounds: int = 50) -> int:
    """Hand on outcomes whose signal was lost (beat, every minute)."""
    return drain(outcomes_sweep_task, sweep.outcomes_sweep, rounds)


@shared_task(name="journeys.events_sweep", ignore_result=True)
def events_sweep_task(rounds: int = 50) -> int:
    """Hand on events a journey cares about whose ingest hook was lost (beat, every minute)."""
    return drain(events_sweep_task, sweep.events_sweep, rounds)


@shared_task(name="journeys.stage_changes_sweep", ignore_result=True)
def stage_changes_sweep_task(rounds: int = 50) -> int:
    """Hand on stage changes a journey is triggered by whose signal was lost (beat)."""
    return drain(stage_changes_sweep_task, sweep.stage_changes_sweep, rounds)
