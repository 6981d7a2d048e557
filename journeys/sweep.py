"""The outcome sweep: outcomes whose signal was lost still reach journeys and webhooks
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

The cursor starts where the feed ends when the sweep first runs: it catches lost signals from
then on and does not replay history into journeys.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from journeys.models import SweepCursor
from journeys.receivers import outcomes_handle
from milestones.feed import FeedPosition, outcomes_after, outcomes_feed
from milestones.signals import OutcomeRecord

CURSOR = "outcomes"


def outcomes_sweep(*, now: dt.datetime | None = None, batch: int | None = None) -> int:
    """Hand on up to ``batch`` outcomes after the cursor; returns how many."""
    now = now or timezone.now()
    horizon = now - dt.timedelta(seconds=settings.JOURNEYS_SWEEP_GRACE_SECONDS)
    with transaction.atomic():
        cursor = _cursor()
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


def _cursor() -> SweepCursor | None:
    """The locked cursor; on the first run, a new one at the end of the feed (and None: there
    is nothing behind it yet)."""
    cursor = SweepCursor.objects.select_for_update(skip_locked=True).filter(name=CURSOR).first()
    if cursor is not None:
        return cursor
    if SweepCursor.objects.filter(name=CURSOR).exists():
        return None  # another sweeper holds it
    last = outcomes_feed().order_by("-xact_id", "-id").values_list("xact_id", "id").first()
    xact_id, last_id = last if last is not None else (None, 0)
    SweepCursor.objects.get_or_create(
        name=CURSOR, defaults={"xact_id": xact_id, "last_id": last_id}
    )
    return None
