"""Receivers connected in ``JourneysConfig.ready``: milestone outcomes enroll customers."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction
from django.db.models import F

from customers.models import Event
from customers.signals import IngestedEvent
from journeys.enrollment import Entry, enroll, entries_from_outcomes
from journeys.exits import exits_apply
from journeys.models import JourneyStatus, JourneyVersion
from journeys.notices import outcome_payloads, wants, webhooks_write
from journeys.runner import version_graph
from milestones.signals import OutcomeRecord, StageChangeRecord


def on_outcomes_recorded(sender: Any, outcomes: list[OutcomeRecord], **kwargs: Any) -> None:
    """The outcomes are committed: hand them on."""
    outcomes_handle(outcomes)


def outcomes_handle(
    outcomes: Sequence[OutcomeRecord], *, recorded_at: Mapping[int, dt.datetime] | None = None
) -> None:
    """Webhooks for the outcomes; end or convert the running enrollments they satisfy;
    enroll; wake the runner after commit. Idempotent, so the sweep may hand the same outcomes
    on again (``recorded_at``: when each was recorded, for outcomes handed on late)."""
    kinds = {f"milestone.{o.kind}" for o in outcomes}
    if any(wants(kind) for kind in kinds):
        webhooks_write(outcome_payloads(outcomes))
    entries = entries_from_outcomes(outcomes, recorded_at)
    exits_apply(entries)
    _enroll_and_wake(entries)


_EVENTS: tuple[float, frozenset[str]] = (0.0, frozenset())
_EVENTS_SECONDS = 5.0


def _event_names() -> frozenset[str]:
    """Event names some live journey is triggered by, exits on or waits for, cached per
    process for a few seconds: this runs after every ingest batch and must cost nothing
    when no journey cares about events."""
    global _EVENTS
    expires, names = _EVENTS
    if time.monotonic() < expires:
        return names
    found: set[str] = set()
    for version in JourneyVersion.objects.filter(
        journey__status=JourneyStatus.LIVE, journey__active_version=F("pk")
    ):
        if version.trigger.get("kind") == "event":
            found.add(str(version.trigger.get("event")))
        found.update(
            str(rule["event"])
            for rule in version.exit_when or []
            if isinstance(rule, dict) and "event" in rule
        )
        found.update(version_graph(version).events())
    names = frozenset(found)
    _EVENTS = (time.monotonic() + _EVENTS_SECONDS, names)
    return names


def exit_events_forget() -> None:
    global _EVENTS
    _EVENTS = (0.0, frozenset())


def on_events_ingested(sender: Any, events: list[IngestedEvent], **kwargs: Any) -> None:
    """Events a live journey cares about: they end running enrollments that exit on them or
    wait for them, and enroll customers in journeys they trigger."""
    names = _event_names()
    if not names:
        return
    wanted = [e for e in events if e.name in names]
    if not wanted:
        return
    properties = dict(
        Event.objects.filter(pk__in=[e.id for e in wanted]).values_list("pk", "properties")
    )
    entries = [
        Entry(
            e.customer_id, "event", e.name, f"event:{e.id}", e.occurred_at,
            properties=properties.get(e.id) or {},
        )
        for e in wanted
    ]  # fmt: skip
    exits_apply(entries)
    _enroll_and_wake(entries)


def on_stage_changed(sender: Any, changes: list[StageChangeRecord], **kwargs: Any) -> None:
    """A lifecycle stage change enrolls customers in the journeys it triggers."""
    entries = [
        Entry(
            c.customer_id, "stage_changed", c.to_stage,
            f"stage:{c.customer_id}:{c.to_stage}:{c.changed_at.isoformat()}", c.changed_at,
        )
        for c in changes
    ]  # fmt: skip
    _enroll_and_wake(entries)


def _enroll_and_wake(entries: list[Entry]) -> None:
    made = enroll(entries)
    if any(e.state == "active" for e in made):
        from journeys.tasks import enrollments_advance_task

        transaction.on_commit(enrollments_advance_task.delay)
