"""The sweeps: outcomes and events whose signal was lost still reach journeys and webhooks
(DESIGN.md §2.1).

``outcomes_recorded`` is sent after commit, so a process that dies between the commit and
the send loses the call while the outcome row stays. The sweep reads the outcomes feed in
``(xact_id, id)`` order — the gap-free order of ``milestones.feed.outcomes_feed``,
which never serves a row that a later commit could put before one already read — from a
durable cursor, and hands every outcome at least ``JOURNEYS_SWEEP_GRACE_SECONDS`` old on
again. Everything downstream is idempotent (an enrollment is unique per entry key, an exit or
a conversion happens once, a notice is unique per key), so outcomes the signal did hand on
cost a few reads and change nothing. A journey that went live after an outcome was recorded
does not take it late.

Events and stage changes have no commit-ordered feed: ``events_sweep`` (and
``stage_changes_sweep``, for stages live journeys are triggered by) marks the highest id, and once
the grace has passed reads the events up to that mark whose names a live journey is
triggered by, exits on or waits for (in SQL, by id range), then sets the next mark. An
ingest transaction lasts milliseconds; one still open a whole grace after the mark could be
passed over. With no live journey caring about events it reads none.

Each cursor starts where its feed ends when its sweep first runs: it catches lost signals
from then on and does not replay history into journeys.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from customers.models import Event
from journeys.enrollment import Entry
from journeys.models import JourneyStatus, JourneyVersion, SweepCursor
from journeys.receivers import event_names, events_handle, outcomes_handle, stage_entry
from milestones.feed import FeedPosition, outcomes_after, outcomes_feed
from milestones.models import StageChange
from milestones.signals import OutcomeRecord

CURSOR = "outcomes"
EVENTS_CURSOR = "events"
STAGES_CURSOR = "stage_changes"


def outcomes_sweep(*, now: dt.datetime | None = None, batch: int | None = None) -> int:
    """Hand on up to ``batch`` outcomes after the cursor; returns how many."""
    now = now or timezone.now()
    horizon = now - dt.timedelta(seconds=settings.JOURNEYS_SWEEP_GRACE_SECONDS)
    with transaction.atomic():
        cursor = _cursor(CURSOR, _feed_end)
        if cursor is None:
            return 0
        position = FeedPosition(cursor.xact_id, cursor.last_id)
        rows = list(
            outcomes_after(outcomes_feed(), position).order_by("xact_id", "id")[
                : batch or settings.JOURNEYS_SWEEP_BATCH
            ]
        )
        taken = []
        for row in rows:
            if row.recorded_at > horizon:
                break  # feed order: everything after it waits for the next tick too
            taken.append(row)
        if not taken:
            return 0
        records = [
            OutcomeRecord(
                id=row.pk,
                definition_id=row.definition_id,
                version_id=row.version_id,
                key=row.definition_key,  # type: ignore[attr-defined]  # annotated by the feed
                unit=row.unit,
                subject_id=row.subject_id,
                kind=row.kind,
                is_late=row.is_late,
                occurred_at=row.occurred_at,
            )
            for row in taken
        ]
        outcomes_handle(records, recorded_at={row.pk: row.recorded_at for row in taken})
        last = taken[-1]
        cursor.xact_id, cursor.last_id, cursor.updated_at = last.xact_id, last.pk, now
        cursor.save(update_fields=["xact_id", "last_id", "updated_at"])
    return len(taken)


def events_sweep(*, now: dt.datetime | None = None, batch: int | None = None) -> int:
    """Hand on the events some live journey cares about among those ingested up to the
    cursor's mark, once the grace has passed since the mark was set; returns how many."""
    return _marked_sweep(EVENTS_CURSOR, Event, _events_read, now=now, batch=batch)


def stage_changes_sweep(*, now: dt.datetime | None = None, batch: int | None = None) -> int:
    """The same for lifecycle stage changes into a stage a live journey is triggered by."""
    return _marked_sweep(STAGES_CURSOR, StageChange, _stage_changes_read, now=now, batch=batch)


def _events_read(after: int, mark: int, size: int) -> tuple[list[int], list[Entry]]:
    names = sorted(event_names())
    if not names:
        return [], []
    rows = list(
        Event.objects.filter(pk__gt=after, pk__lte=mark, name__any=names)
        .order_by("pk")
        .values_list("pk", "customer_id", "name", "occurred_at", "properties", "received_at")[:size]
    )
    entries = [
        Entry(
            customer_id, "event", name, f"event:{pk}", occurred_at,
            properties=properties or {}, recorded_at=received_at,
        )
        for pk, customer_id, name, occurred_at, properties, received_at in rows
    ]  # fmt: skip
    return [row[0] for row in rows], entries


def _stage_changes_read(after: int, mark: int, size: int) -> tuple[list[int], list[Entry]]:
    stages = sorted(
        {
            str(version.trigger.get("to"))
            for version in JourneyVersion.objects.filter(
                journey__status=JourneyStatus.LIVE, journey__active_version=F("pk")
            )
            if version.trigger.get("kind") == "stage_changed"
        }
    )
    if not stages:
        return [], []
    rows = list(
        StageChange.objects.filter(pk__gt=after, pk__lte=mark, to_stage__any=stages)
        .order_by("pk")
        .values_list("pk", "customer_id", "to_stage", "changed_at")[:size]
    )
    return [row[0] for row in rows], [
        stage_entry(customer_id, to_stage, changed_at, recorded_at=changed_at)
        for _, customer_id, to_stage, changed_at in rows
    ]


def _marked_sweep(
    name: str,
    model: type[Event] | type[StageChange],
    read: Callable[[int, int, int], tuple[list[int], list[Entry]]],
    *,
    now: dt.datetime | None,
    batch: int | None,
) -> int:
    """A sweep over a table without commit order: mark its highest id, and once the grace
    has passed read what a journey cares about up to the mark (``read(after, mark, size)``:
    the ids read and their entries), hand it on, and set the next mark."""
    now = now or timezone.now()
    size = batch or settings.JOURNEYS_SWEEP_BATCH
    grace = dt.timedelta(seconds=settings.JOURNEYS_SWEEP_GRACE_SECONDS)

    def end() -> tuple[int | None, int]:
        return None, model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0

    with transaction.atomic():
        cursor = _cursor(name, end)
        if cursor is None:
            return 0
        if cursor.mark_id is None or cursor.marked_at is None or now - cursor.marked_at < grace:
            if cursor.mark_id is None:
                cursor.mark_id, cursor.marked_at = end()[1], now
                cursor.save(update_fields=["mark_id", "marked_at"])
            return 0
        ids, entries = read(cursor.last_id, cursor.mark_id, size)
        if entries:
            events_handle(entries)
        if len(ids) == size:
            cursor.last_id = ids[-1]  # more up to the mark: the next round goes on
        else:  # up to the mark: set the next one
            cursor.last_id = cursor.mark_id
            cursor.mark_id, cursor.marked_at = end()[1], now
        cursor.updated_at = now
        cursor.save(update_fields=["last_id", "mark_id", "marked_at", "updated_at"])
    return len(ids)


def _feed_end() -> tuple[int | None, int]:
    last = outcomes_feed().order_by("-xact_id", "-id").values_list("xact_id", "id").first()
    return last if last is not None else (None, 0)


def _cursor(name: str, end: Callable[[], tuple[int | None, int]]) -> SweepCursor | None:
    """The locked cursor; on the first run, a new one at the end of its feed (and None:
    there is nothing behind it yet)."""
    cursor = SweepCursor.objects.select_for_update(skip_locked=True).filter(name=name).first()
    if cursor is not None:
        return cursor
    if SweepCursor.objects.filter(name=name).exists():
        return None  # another sweeper holds it
    xact_id, last_id = end()
    SweepCursor.objects.get_or_create(name=name, defaults={"xact_id": xact_id, "last_id": last_id})
    return None
