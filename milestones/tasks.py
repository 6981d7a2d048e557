"""Celery entry points for milestones: thin shells over one service each (queue: evaluate)."""

from __future__ import annotations

from celery import shared_task

from config.wake import drain, wake
from milestones import backfill, evaluation, sweep


@shared_task(name="milestones.evaluate", ignore_result=True)
def evaluate_task(rounds: int = 20) -> int:
    """Drain pending evaluations: up to ``rounds`` batches, then hand over to a fresh task
    so one busy queue never pins a worker process forever. Returns pairs evaluated."""
    return drain(evaluate_task, lambda: evaluation.pending_evaluate().pairs, rounds)


@shared_task(name="milestones.deadlines_sweep", ignore_result=True)
def deadlines_sweep_task() -> int:
    missed = sweep.deadlines_sweep().missed
    if missed:
        # Subjects who acted after their deadline were queued for their late achievement.
        wake(evaluate_task)
    return missed


@shared_task(name="milestones.progress_start", ignore_result=True)
def progress_start_task() -> int:
    queued = sweep.progress_start()
    if queued:
        wake(evaluate_task)
    return queued


@shared_task(name="milestones.reconcile", ignore_result=True)
def reconcile_task() -> bool:
    """Re-enqueue the evaluator when pending rows have waited too long (a lost wake-up)."""
    if sweep.reconcile_needed():
        wake(evaluate_task)
        return True
    return False


@shared_task(name="milestones.backfill_run", ignore_result=True)
def backfill_run_task(backfill_id: int) -> None:
    backfill.backfill_run(backfill_id=backfill_id)
