"""Celery entry points for journeys: thin shells over one service each (queue: journeys)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Task, shared_task

from config.wake import woken
from journeys import notices, runner, sweep


@shared_task(name="journeys.enrollments_advance", ignore_result=True)
def enrollments_advance_task(rounds: int = 20) -> int:
    """Advance due enrollments: up to ``rounds`` batches, then hand over to a fresh task so a
    busy queue never pins a worker. Also the beat tick that picks up waits that are over."""
    return _rounds(runner.enrollments_advance, rounds, enrollments_advance_task)


@shared_task(name="journeys.notices_send", ignore_result=True)
def notices_send_task(rounds: int = 20) -> int:
    """Send due team emails and webhooks (first tries and retries)."""
    return _rounds(notices.notices_send, rounds, notices_send_task)


@shared_task(name="journeys.outcomes_sweep", ignore_result=True)
def outcomes_sweep_task(rounds: int = 50) -> int:
    """Hand on outcomes whose signal was lost (beat, every minute)."""
    return _rounds(sweep.outcomes_sweep, rounds, outcomes_sweep_task)


@shared_task(name="journeys.events_sweep", ignore_result=True)
def events_sweep_task(rounds: int = 50) -> int:
    """Hand on events a journey cares about whose ingest hook was lost (beat, every minute)."""
    return _rounds(sweep.events_sweep, rounds, events_sweep_task)


@shared_task(name="journeys.stage_changes_sweep", ignore_result=True)
def stage_changes_sweep_task(rounds: int = 50) -> int:
    """Hand on stage changes a journey is triggered by whose signal was lost (beat)."""
    return _rounds(sweep.stage_changes_sweep, rounds, stage_changes_sweep_task)


def _rounds(work: Callable[[], int], rounds: int, task: Task[..., Any]) -> int:
    """Up to ``rounds`` batches of ``work``, then queue ``task`` again if there is more."""
    woken(task)
    done = 0
    for _ in range(rounds):
        claimed = work()
        done += claimed
        if claimed == 0:
            return done
    task.delay()
    return done
