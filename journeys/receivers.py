"""Receivers connected in ``JourneysConfig.ready``: milestone outcomes enroll customers."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from journeys.enrollment import enroll, entries_from_outcomes
from milestones.signals import OutcomeRecord


def on_outcomes_recorded(sender: Any, outcomes: list[OutcomeRecord], **kwargs: Any) -> None:
    """Enroll, then wake the runner after commit (the outcomes are already committed)."""
    made = enroll(entries_from_outcomes(outcomes))
    if any(e.state == "active" for e in made):
        from journeys.tasks import enrollments_advance_task

        transaction.on_commit(enrollments_advance_task.delay)
