"""Periodic, set-based work: the missed-deadline sweep, starting new subjects, reconciling.

Deadlines are indexed rows (``progress_due``), never ETA tasks: a beat tick claims due rows
in bounded batches with ``FOR UPDATE SKIP LOCKED`` and turns them into missed outcomes in one
statement per batch, so any number of workers can sweep at once and memory does not grow
with the number of pending deadlines.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from customers.models import Account, Customer, Event
from milestones.evaluation import (
    outcomes_publish,
    pending_add,
    pending_oldest_age,
    xact_id,
)
from milestones.models import (
    Anchor,
    MilestoneOutcome,
    MilestoneVersion,
    OutcomeKind,
    PendingEvaluation,
    Progress,
    ProgressState,
    Unit,
)
from milestones.registry import registry
from milestones.signals import OutcomeRecord
from milestones.sql import execute as sql_execute
from milestones.stages import stages_refresh

logger = logging.getLogger(__name__)

_LOOKBACK = 5_000


@dataclasses.dataclass(frozen=True, slots=True)
class SweepResult:
    missed: int
    batches: int
    is_done: bool  # False when the time budget ran out with due rows left


def deadlines_sweep(
    *,
    now: dt.datetime | None = None,
    batch: int | None = None,
    budget_seconds: float = 50.0,
    clock: Callable[[], float] | None = None,
    workers: int | None = None,
) -> SweepResult:
    """Record a missed outcome for every open progress row whose deadline (plus the grace
    period) has passed, in batches of ``batch`` rows, one transaction each.

    A row with a pending evaluation is left for the evaluator, which judges it with the
    events that arrived in time. ``workers`` sweepers (default
    ``MILESTONES_SWEEP_WORKERS``) run at once on their own connections, each claiming its
    own batches with ``SKIP LOCKED``: most of a batch's cost is PostgreSQL's, so two keep a
    2-core database busy. Stops after ``budget_seconds`` so a beat tick never overlaps the
    next one for long; the next tick continues."""
    import time

    tick = clock or time.monotonic
    size = batch or settings.MILESTONES_SWEEP_BATCH
    cutoff = (now or timezone.now()) - dt.timedelta(seconds=settings.MILESTONES_SWEEP_GRACE_SECONDS)
    count = max(1, workers or settings.MILESTONES_SWEEP_WORKERS)
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        # Other connections cannot see a caller's uncommitted rows (a test, a caller's
        # atomic block), and SQLite takes one writer at a time: sweep on this connection.
        count = 1
    sweeper = partial(_sweep_loop, cutoff, size, now, tick() + budget_seconds, tick)
    if count == 1:
        return sweeper()
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="sweep") as pool:
        running = [pool.submit(_on_own_connection, sweeper) for _ in range(count)]
        parts = [future.result() for future in running]
    return SweepResult(
        missed=sum(p.missed for p in parts),
        batches=sum(p.batches for p in parts),
        is_done=all(p.is_done for p in parts),
    )


def _on_own_connection(sweeper: Callable[[], SweepResult]) -> SweepResult:
    try:
        return sweeper()
    finally:
        connection.close()  # this thread's connection


def _sweep_loop(
    cutoff: dt.datetime,
    size: int,
    now: dt.datetime | None,
    stop_at: float,
    tick: Callable[[], float],
) -> SweepResult:
    """Batches until one comes back short (nothing left that another sweeper has not
    claimed) or the clock passes ``stop_at``."""
    missed = batches = 0
    while tick() < stop_at:
        with transaction.atomic():
            found = _sweep_batch(cutoff, size, now or timezone.now())
        batches += 1
        missed += found
        if found < size:
            return SweepResult(missed=missed, batches=batches, is_done=True)
    return SweepResult(missed=missed, batches=batches, is_done=False)


def _sweep_batch(cutoff: dt.datetime, size: int, now: dt.datetime) -> int:
    if connection.vendor == "postgresql":
        rows = _sweep_batch_sql(cutoff, size, now)
    else:
        rows = _sweep_batch_orm(cutoff, size, now)
    if not rows:
        return 0
    found = registry()
    records = [
        OutcomeRecord(
            id=pk,
            definition_id=definition_id,
            version_id=version_id,
            key=found.versions[version_id].key if version_id in found.versions else "",
            unit=unit,
            subject_id=subject_id,
            kind=OutcomeKind.MISSED,
            is_late=False,
            occurred_at=occurred_at,
        )
        for pk, version_id, definition_id, unit, subject_id, occurred_at in rows
    ]
    customers = {r.subject_id for r in records if r.unit == Unit.CUSTOMER}
    if customers:
        active = {v.id: v.key for v in found.versions.values()}
        stages_refresh(
            customers,
            active_versions=active,
            cause="milestone missed",
            changed_keys={r.key for r in records},
        )
    outcomes_publish(records)
    return len(rows)


_SWEEP_SQL = """
WITH due AS (
    -- The partial index in deadline order, stopping at the batch size, so the cost of a batch
    -- does not grow with the number of due rows. OFFSET 0 keeps the pending check a per-row
    -- filter: as an anti-join the planner would sort every due row instead.
    SELECT p.id FROM {progress} p
    WHERE p.state = 'in_progress' AND p.deadline_at IS NOT NULL AND p.deadline_at < %(cutoff)s
      AND NOT EXISTS (
          SELECT 1 FROM {pending} q
          WHERE q.version_id = p.version_id AND q.subject_id = p.subject_id
          OFFSET 0
      )
    ORDER BY p.deadline_at
    LIMIT %(size)s
    FOR UPDATE SKIP LOCKED
), missed AS (
    UPDATE {progress} p
    SET state = 'missed', missed_at = p.deadline_at, updated_at = %(now)s
    WHERE p.id = ANY(ARRAY(SELECT id FROM due))  -- by primary key, never a scan of the table
    RETURNING p.version_id, p.definition_id, p.unit, p.subject_id, p.deadline_at
), late AS (
    -- Subjects that did it after the deadline (before this sweep): the evaluator records
    -- their late achievement, as it would had it seen those events after the sweep.
    INSERT INTO {pending} (version_id, subject_id, created_at)
    SELECT m.version_id, m.subject_id, %(now)s FROM missed m
    CROSS JOIN LATERAL (
        SELECT ARRAY(SELECT jsonb_array_elements_text(%(names)s::jsonb -> m.version_id::text))
            AS names
    ) v
    WHERE (m.unit = 'customer' AND EXISTS (
            SELECT 1 FROM {event} e WHERE e.customer_id = m.subject_id
            AND e.name = ANY(v.names) AND e.occurred_at > m.deadline_at))
       OR (m.unit = 'account' AND EXISTS (
            SELECT 1 FROM {event} e WHERE e.account_id = m.subject_id
            AND e.name = ANY(v.names) AND e.occurred_at > m.deadline_at))
)
INSERT INTO {outcome}
    (version_id, definition_id, unit, subject_id, kind, is_late, occurred_at, recorded_at,
     xact_id)
SELECT version_id, definition_id, unit, subject_id, 'missed', false, deadline_at, %(now)s,
       pg_current_xact_id()::text::bigint
FROM missed
ON CONFLICT (version_id, subject_id, kind) DO NOTHING
RETURNING id, version_id, definition_id, unit, subject_id, occurred_at
"""


def _sweep_batch_sql(cutoff: dt.datetime, size: int, now: dt.datetime) -> list[tuple]:  # type: ignore[type-arg]
    sql = _SWEEP_SQL.format(
        progress=Progress._meta.db_table,
        pending=PendingEvaluation._meta.db_table,
        outcome=MilestoneOutcome._meta.db_table,
        event=Event._meta.db_table,
    )
    names = {str(v.id): sorted(v.event_names) for v in registry().versions.values()}
    params: dict[str, Any] = {
        "cutoff": cutoff,
        "size": size,
        "now": now,
        "names": orjson.dumps(names).decode(),
    }
    # JIT compiling this statement costs more than it saves on a bounded batch.
    sql_execute("SET LOCAL jit = off", [])
    return sql_execute(sql, params)


def _sweep_batch_orm(cutoff: dt.datetime, size: int, now: dt.datetime) -> list[tuple]:  # type: ignore[type-arg]
    """The same, portably (the SQLite demo): select, update, insert."""
    waiting = PendingEvaluation.objects.filter(
        version_id=OuterRef("version_id"), subject_id=OuterRef("subject_id")
    )
    due = list(
        Progress.objects.select_for_update(skip_locked=True)
        .filter(state=ProgressState.IN_PROGRESS, deadline_at__lt=cutoff)
        .exclude(Exists(waiting))
        .order_by("deadline_at")[:size]
    )
    if not due:
        return []
    Progress.objects.filter(pk__in=[row.pk for row in due]).update(
        state=ProgressState.MISSED, missed_at=F("deadline_at"), updated_at=now
    )
    found = registry().versions
    pending_add(
        {
            (row.version_id, row.subject_id)
            for row in due
            if row.version_id in found
            and Event.objects.filter(
                **{"account_id" if row.unit == Unit.ACCOUNT else "customer_id": row.subject_id},
                name__in=sorted(found[row.version_id].event_names),
                occurred_at__gt=row.deadline_at,
            ).exists()
        }
    )
    outcomes = MilestoneOutcome.objects.bulk_create(
        [
            MilestoneOutcome(
                version_id=row.version_id,
                definition_id=row.definition_id,
                unit=row.unit,
                subject_id=row.subject_id,
                kind=OutcomeKind.MISSED,
                occurred_at=row.deadline_at or cutoff,
                recorded_at=now,
                xact_id=xact_id(),
            )
            for row in due
        ]
    )
    return [
        (o.pk, o.version_id, o.definition_id, o.unit, o.subject_id, o.occurred_at) for o in outcomes
    ]


# --- Starting subjects that have no events yet --------------------------------------------


def progress_start(*, batch: int = 10_000) -> int:
    """Queue the evaluation of subjects that signed up after a signup-anchored version's
    backfill, so that a customer who never sends a matching event still gets a deadline
    (and a missed outcome). Set-based and resumable: each version keeps the last subject id
    it has started. Ids are allocated before their transaction commits, so each tick looks
    ``_LOOKBACK`` ids behind that mark for subjects committed late. Returns pairs queued."""
    queued = 0
    for version in registry().versions.values():
        if version.anchor != Anchor.SIGNUP:
            continue
        model = Account if version.unit == Unit.ACCOUNT else Customer
        with transaction.atomic():
            locked = MilestoneVersion.objects.select_for_update().get(pk=version.id)
            started = Progress.objects.filter(version_id=version.id, subject_id=OuterRef("pk"))
            waiting = PendingEvaluation.objects.filter(
                version_id=version.id, subject_id=OuterRef("pk")
            )
            ids = list(
                model.objects.filter(pk__gt=locked.started_through_id - _LOOKBACK)
                .exclude(Exists(started))
                .exclude(Exists(waiting))
                .order_by("pk")
                .values_list("pk", flat=True)[:batch]
            )
            if not ids:
                continue
            pending_add({(version.id, pk) for pk in ids})
            locked.started_through_id = max(locked.started_through_id, ids[-1])
            locked.save(update_fields=["started_through_id"])
            queued += len(ids)
    return queued


def reconcile_needed(*, now: dt.datetime | None = None) -> bool:
    """Whether pending evaluations have waited so long that their wake-up was lost."""
    age = pending_oldest_age(now)
    return age is not None and age >= dt.timedelta(
        seconds=settings.MILESTONES_RECONCILE_AFTER_SECONDS
    )
