"""Receivers connected in ``JourneysConfig.ready``: milestone outcomes enroll customers."""

from __future__ import annotations

import time
from typing import Any

from django.db import transaction
from django.db.models import F

from customers.signals import IngestedEvent
from journeys.enrollment import Entry, enroll, entries_from_outcomes
from journeys.exits import exits_apply
from journeys.models import JourneyStatus, JourneyVersion
from milestones.signals import OutcomeRecord


def on_outcomes_recorded(sender: Any, outcomes: list[OutcomeRecord], **kwargs: Any) -> None:
    """End or convert running enrollments the outcomes satisfy, enroll, then wake the runner
    after commit (the outcomes are already committed)."""
    entries = entries_from_outcomes(outcomes)
    exits_apply(entries)
    made = enroll(entries)
    if any(e.state == "active" for e in made):
        from journeys.tasks import enrollments_advance_task

        transaction.on_commit(enrollments_advance_task.delay)


_EXIT_EVENTS: tuple[float, frozenset[str]] = (0.0, frozenset())
_EXIT_EVENTS_SECONDS = 5.0


def _exit_event_names() -> frozenset[str]:
    """Event names some live journey exits on, cached per process for a few seconds: this
    runs after every ingest batch and must cost nothing when no journey exits on an event."""
    global _EXIT_EVENTS
    expires, names = _EXIT_EVENTS
    if time.monotonic() < expires:
        return names
    names = frozenset(
        str(rule["event"])
        for version in JourneyVersion.objects.filter(
            journey__status=JourneyStatus.LIVE, journey__active_version=F("pk")
        ).values_list("exit_when", flat=True)
        for rule in version or []
        if isinstance(rule, dict) and "event" in rule
    )
    _EXIT_EVENTS = (time.monotonic() + _EXIT_EVENTS_SECONDS, names)
    return names


def exit_events_forget() -> None:
    global _EXIT_EVENTS
    _EXIT_EVENTS = (0.0, frozenset())


def on_events_ingested(sender: Any, events: list[IngestedEvent], **kwargs: Any) -> None:
    """Events a live journey exits on end the customer's running enrollments at once."""
    names = _exit_event_names()
    if not names:
        return
    entries = [
        Entry(e.customer_id, "event", e.name, f"event:{e.id}", e.occurred_at)
        for e in events
        if e.name in names
    ]
    if entries:
        exits_apply(entries)
