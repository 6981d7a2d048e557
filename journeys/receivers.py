"""Receivers connected in ``JourneysConfig.ready``: milestone outcomes enroll customers."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F

from config.cache import cached
from config.wake import wake
from customers.models import Event
from customers.signals import IngestedEvent
from journeys.enrollment import Entry, enroll, entries_from_outcomes
from journeys.exits import exits_apply
from journeys.models import Journey, JourneyStatus, JourneyVersion
from journeys.notices import outcome_payloads, wants, webhooks_write
from journeys.runner import enrollments_advance, version_graph
from milestones.signals import OutcomeRecord, StageChangeRecord

logger = logging.getLogger(__name__)


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


@cached(Journey, JourneyVersion)
def _event_names() -> frozenset[str]:
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
    return frozenset(found)


def event_names() -> frozenset[str]:
    """Event names some live journey is triggered by, exits on or waits for, cached per
    process (config/cache.py): this runs after every ingest batch and must cost nothing
    when no journey cares about events."""
    return _event_names.get()


def exit_events_forget() -> None:
    _event_names.forget()


def on_events_ingested(sender: Any, events: list[IngestedEvent], **kwargs: Any) -> None:
    """Events a live journey cares about: they end running enrollments that exit on them or
    wait for them, and enroll customers in journeys they trigger."""
    names = event_names()
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
    # This runs in the ingest request: the new enrollments' steps are the runner's work.
    events_handle(entries, advance_here=False)


def events_handle(entries: list[Entry], *, advance_here: bool = True) -> None:
    """End the running enrollments the events satisfy (exit criteria, until-waits) and
    enroll in the journeys they trigger. Idempotent (``event:<id>`` entry keys), so the
    event sweep may hand the same events on again."""
    exits_apply(entries)
    _enroll_and_wake(entries, advance_here=advance_here)


def on_stage_changed(sender: Any, changes: list[StageChangeRecord], **kwargs: Any) -> None:
    """A lifecycle stage change enrolls customers in the journeys it triggers."""
    _enroll_and_wake([stage_entry(c.customer_id, c.to_stage, c.changed_at) for c in changes])


def stage_entry(
    customer_id: int,
    to_stage: str,
    changed_at: dt.datetime,
    *,
    recorded_at: dt.datetime | None = None,
) -> Entry:
    """A stage change as an entry; the signal and the sweep make the same key."""
    return Entry(
        customer_id, "stage_changed", to_stage,
        f"stage:{customer_id}:{to_stage}:{changed_at.isoformat()}", changed_at,
        recorded_at=recorded_at,
    )  # fmt: skip


def _enroll_and_wake(entries: list[Entry], *, advance_here: bool = True) -> None:
    """Enroll, then (after commit) take the new enrollments' first steps right here — in a
    worker: a customer who just achieved a milestone gets the journey's first message
    without another task hop, sent right here too as far as inline sending allows — or,
    with ``advance_here`` off (a web request), wake the
    runner. Whatever advancing here does not finish, the runner task picks up."""
    made = enroll(entries)
    active = [e.pk for e in made if e.state == "active"]
    if active and advance_here:
        transaction.on_commit(partial(_advance_now, active))
    elif active:
        transaction.on_commit(_runner_wake)


def _runner_wake() -> None:
    from journeys.tasks import enrollments_advance_task

    wake(enrollments_advance_task)


def _advance_now(ids: list[int]) -> None:
    try:
        if settings.JOURNEYS_ADVANCE_ON_ENTRY:
            for start in range(0, len(ids), settings.JOURNEYS_ADVANCE_BATCH):
                chunk = ids[start : start + settings.JOURNEYS_ADVANCE_BATCH]
                enrollments_advance(ids=chunk, send_here=True)
            return
    except Exception:
        logger.exception("advancing %d new enrollments failed; the runner will", len(ids))
    _runner_wake()
