"""Backfill: evaluate every existing subject of a version from history.

On PostgreSQL, when the condition compiles (``milestones.backfill_sql``), subjects are walked
in id-ordered chunks of ``CHUNK``, each chunk one transaction: lock the chunk's stored
progress rows, aggregate its history in one statement, judge each subject with the live
evaluator's own rules (``_FromSql`` reuses ``evaluation._Run._apply`` with the condition's
results built from the statement's numbers), and write progress rows and outcomes set-based
(``INSERT … ON CONFLICT``). Subjects whose numbers SQL cannot vouch for (see
``backfill_sql``), and every subject of a condition that does not compile, are evaluated by
the live evaluator itself (``pairs_evaluate``). Outside a transaction, ``_workers()`` chunks
run at once on their own connections.

Safe alongside live evaluation: stored rows are locked in subject order as the evaluator
locks them, a row the evaluator inserted after that lock is left to it (and so are its
outcomes), outcomes are unique, and deadlocks are retried. Re-runnable: a second run finds
the work done and records nothing new. The ``_catch_up`` at the end queues every subject
with events received since activation, so anything live evaluation and the backfill saw
differently is evaluated again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, Final, TypeVar

import psycopg
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from customers.models import Account, Customer, Event
from milestones.backfill_sql import NotCompilable, Plan, Shape
from milestones.conditions import EventFact, Result
from milestones.eligibility import SubjectProfile
from milestones.evaluation import (
    _UTC,
    Subject,
    _deadline,
    _Run,
    outcomes_publish,
    pairs_evaluate,
    pending_add,
)
from milestones.models import (
    Backfill,
    BackfillStatus,
    MilestoneOutcome,
    MilestoneVersion,
    OutcomeKind,
    Progress,
    Unit,
)
from milestones.registry import CompiledVersion, Registry, compile_version, registry
from milestones.signals import OutcomeRecord
from milestones.sql import PROGRESS_COLUMNS, OutcomeRow, Row
from milestones.stages import stages_refresh

logger = logging.getLogger(__name__)

BATCH: Final = 1_000  # subjects per transaction on the Python path
CHUNK: Final = 10_000  # subjects per statement and transaction on the SQL path
_ATTEMPTS: Final = 5
_RETRIED: Final = frozenset({"40P01", "40001"})  # deadlock, serialization failure
_CATCH_UP_SLACK: Final = dt.timedelta(hours=1)

Progressed = Callable[[Backfill], None]
T = TypeVar("T")


def backfill_run(*, backfill_id: int, on_progress: Progressed | None = None) -> Backfill:
    """Run one queued backfill to the end. Idempotent: a finished backfill is left alone,
    and running a version's backfill again records no second outcome."""
    with transaction.atomic():
        backfill = Backfill.objects.select_for_update().get(pk=backfill_id)
        if backfill.status == BackfillStatus.DONE:
            return backfill
        version = MilestoneVersion.objects.select_related("definition").get(pk=backfill.version_id)
        model = Account if version.unit == Unit.ACCOUNT else Customer
        last_id = model.objects.aggregate(last=Max("pk"))["last"] or 0
        compiled = compile_version(version, version.definition.key)
        plan = _plan(compiled)
        backfill.status, backfill.started_at = BackfillStatus.RUNNING, timezone.now()
        backfill.total = model.objects.filter(pk__lte=last_id).count()
        backfill.processed = backfill.achieved = backfill.missed = 0
        backfill.method, backfill.error = ("sql" if plan else "python"), ""
        backfill.finished_at = None
        backfill.save()
        MilestoneVersion.objects.filter(pk=version.pk, started_through_id__lt=last_id).update(
            started_through_id=last_id
        )
    try:
        if plan is not None:
            # Other connections cannot see a caller's uncommitted rows: inside a transaction
            # (a test, a caller's atomic block) every chunk runs on this connection.
            workers = 1 if connection.in_atomic_block else _workers()
            _Walk(backfill, compiled, plan, on_progress).run(model, last_id, workers)
        else:
            _walk(backfill, version, model, last_id, on_progress)
        _catch_up(version)
    except Exception as exc:
        Backfill.objects.filter(pk=backfill.pk).update(
            status=BackfillStatus.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
        )
        logger.exception("backfill %s failed", backfill.pk)
        raise
    backfill.status, backfill.finished_at = BackfillStatus.DONE, timezone.now()
    backfill.save(update_fields=["status", "finished_at"])
    return backfill


def _workers() -> int:
    """Chunks run at once: PostgreSQL does most of a chunk's work, so two keep a 2-core
    machine busy while this process builds the next chunk's rows."""
    return max(1, settings.MILESTONES_BACKFILL_WORKERS)


def _plan(version: CompiledVersion) -> Plan | None:
    """The SQL plan of a live version on PostgreSQL, or ``None`` for the Python path."""
    if connection.vendor != "postgresql" or version.id not in registry().versions:
        return None
    shape = Shape(
        version_id=version.id,
        unit_is_account=version.is_account,
        anchor=version.anchor,
        anchor_event=version.anchor_event,
        window=version.window,
    )
    try:
        return Plan(shape, version.condition, zones=_zones)
    except NotCompilable as reason:
        logger.info("backfill of %s runs in Python: %s", version.key, reason)
        return None


def _zones() -> dict[str, str]:
    """Each customer time zone name -> the zone the evaluator uses (``Customer.zone``: UTC
    when empty or unknown), for the names PostgreSQL knows that zone by. A name missing here
    leaves its subjects to the Python evaluator."""
    names = Customer.objects.order_by().values_list("time_zone", flat=True).distinct()
    used = {name: Customer(time_zone=name).zone.key for name in names}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM pg_timezone_names WHERE name = ANY(%s)",
            [sorted(set(used.values()))],
        )
        known = {row[0] for row in cursor.fetchall()} | {"UTC"}
    return {name: zone for name, zone in used.items() if zone in known}


def _bound_cursor() -> psycopg.Cursor[Any]:
    """A cursor with server-side parameter binding on the connection Django uses (same
    transaction). Django's cursors quote parameters into the SQL text in Python, which for
    a chunk's arrays of ten thousand values costs more than the statement itself."""
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def _retrying(work: Callable[[], T]) -> T:
    """Run ``work`` in a transaction, again after a deadlock or serialization failure."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return work()
        except (OperationalError, IntegrityError) as exc:
            code = getattr(exc.__cause__, "sqlstate", None)
            if code not in _RETRIED or attempt == _ATTEMPTS:
                raise
            logger.warning("backfill chunk rolled back by %s (attempt %d)", code, attempt)
            time.sleep(random.uniform(0.05, 0.2) * attempt)  # noqa: S311
    raise AssertionError("unreachable")


# --- The Python path ----------------------------------------------------------------------


def _walk(
    backfill: Backfill,
    version: MilestoneVersion,
    model: type[Customer] | type[Account],
    last_id: int,
    on_progress: Progressed | None,
) -> None:
    for ids in _chunks(model, last_id, BATCH):
        pairs = [(version.pk, pk) for pk in ids]
        summary = _retrying(partial(pairs_evaluate, pairs))
        _advance(backfill, len(ids), summary.achieved, summary.missed, on_progress)


def _ranges(model: type[Customer] | type[Account], last_id: int) -> Iterator[tuple[int, int, int]]:
    """``(after, through, subjects)`` of each chunk of the SQL path."""
    after = 0
    for ids in _chunks(model, last_id, CHUNK):
        yield after, ids[-1], len(ids)
        after = ids[-1]


def _chunks(model: type[Customer] | type[Account], last_id: int, size: int) -> Iterable[list[int]]:
    after = 0
    while True:
        ids = list(
            model.objects.filter(pk__gt=after, pk__lte=last_id)
            .order_by("pk")
            .values_list("pk", flat=True)[:size]
        )
        if not ids:
            return
        yield ids
        after = ids[-1]


def _advance(
    backfill: Backfill, processed: int, achieved: int, missed: int, on_progress: Progressed | None
) -> None:
    backfill.processed += processed
    backfill.achieved += achieved
    backfill.missed += missed
    backfill.save(update_fields=["processed", "achieved", "missed"])
    if on_progress is not None:
        on_progress(backfill)


# --- The SQL path -------------------------------------------------------------------------

_FIELDS: Final = tuple(name for name, _ in PROGRESS_COLUMNS)  # what the evaluator writes
_TABLES: Final = {
    "event": Event._meta.db_table,
    "customer": Customer._meta.db_table,
    "account": Account._meta.db_table,
    "progress": Progress._meta.db_table,
}
_LEAVES_AT: Final = 9  # the statement's leaf columns start after the subject's nine
_NO_TRAITS: Final[Mapping[str, object]] = {}


class _FromSql(_Run):
    """The live evaluator's judgement of one row (``_Run._apply``: states, deadlines, late
    achievements, eligibility, refinement of an achieved row), with the condition's results
    taken from the statement instead of evaluated from loaded events."""

    def __init__(self, found: Registry, now: dt.datetime) -> None:
        super().__init__(found, now)
        self.results: dict[int, tuple[dt.datetime, Result, Result]] = {}

    def _found(self, subject_id: int, end: dt.datetime) -> Result:
        range_end, by_end, by_last = self.results[subject_id]
        return by_end if end == range_end else by_last

    def condition_result(
        self,
        version: CompiledVersion,
        row: Row,
        subject: Subject,
        events: Sequence[EventFact],
        milestones: Mapping[str, dt.datetime],
        end: dt.datetime,
    ) -> Result:
        return self._found(row.subject_id, end)


@dataclasses.dataclass(slots=True)
class _Chunk:
    """What one chunk's transaction decided and wrote."""

    rows: list[tuple[Row, bool]] = dataclasses.field(default_factory=list)  # (row, is new)
    changed_state: set[int] = dataclasses.field(default_factory=set)
    in_python: list[int] = dataclasses.field(default_factory=list)
    achieved: int = 0
    missed: int = 0


class _Walk:
    def __init__(
        self,
        backfill: Backfill,
        version: CompiledVersion,
        plan: Plan,
        on_progress: Progressed | None,
    ) -> None:
        self.backfill = backfill
        self.version = version
        self.plan = plan
        self.on_progress = on_progress

    def run(self, model: type[Customer] | type[Account], last_id: int, workers: int) -> None:
        """Chunks in id order; with ``workers > 1`` that many run at once, each on its own
        connection, and progress is counted as they finish, oldest first."""
        ranges = _ranges(model, last_id)
        if workers <= 1:
            for after, through, size in ranges:
                self._count(size, _retrying(partial(self._chunk, after, through)))
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backfill") as pool:
            running: deque[tuple[Future[_Chunk], int]] = deque()
            try:
                for after, through, size in ranges:
                    running.append((pool.submit(self._on_own_connection, after, through), size))
                    if len(running) > workers:
                        future, done = running.popleft()
                        self._count(done, future.result())
                while running:
                    future, done = running.popleft()
                    self._count(done, future.result())
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise

    def _count(self, size: int, chunk: _Chunk) -> None:
        _advance(self.backfill, size, chunk.achieved, chunk.missed, self.on_progress)

    def _on_own_connection(self, after: int, through: int) -> _Chunk:
        try:
            return _retrying(partial(self._chunk, after, through))
        finally:
            connection.close()  # this thread's connection; the next chunk opens its own

    def _chunk(self, after: int, through: int) -> _Chunk:
        now = timezone.now()
        run = _FromSql(registry(), now)
        with connection.cursor() as cursor:
            # Compiling a chunk's statement to machine code costs more than it saves.
            cursor.execute("SET LOCAL jit = off")
        stored = self._lock(after, through)
        statement = self.plan.statement(
            after=after, through=through, horizon=now + run.tolerance, tables=_TABLES
        )
        chunk = _Chunk()
        with _bound_cursor() as cursor:
            cursor.execute(statement.sql, statement.params, binary=True)
            for found in cursor.fetchall():
                self._judge(run, found, stored.get(found[0]), now, chunk)
        self._write(run, chunk, now)
        if chunk.in_python:
            summary = pairs_evaluate([(self.version.id, s) for s in chunk.in_python], now=now)
            chunk.achieved += summary.achieved
            chunk.missed += summary.missed
        return chunk

    def _lock(self, after: int, through: int) -> dict[int, Row]:
        """The chunk's stored rows, locked in subject order (the evaluator's order)."""
        names = ("id", "version_id", "definition_id", "unit", "subject_id", *_FIELDS)
        rows = (
            Progress.objects.select_for_update()
            .filter(version_id=self.version.id, subject_id__gt=after, subject_id__lte=through)
            .order_by("subject_id")
            .values_list(*names, "created_at")
        )
        found = {}
        for values in rows:
            row = Row(**dict(zip((*names, "created_at"), values, strict=True)))
            found[row.subject_id] = row
        return found

    def _judge(
        self,
        run: _FromSql,
        found: Sequence[Any],
        stored: Row | None,
        now: dt.datetime,
        chunk: _Chunk,
    ) -> None:
        subject_id, fresh_anchor, range_end, zone_known = found[:4]
        plan_, region, status, created_at, stage = found[4:_LEAVES_AT]
        by_end, by_last = self.plan.numbers(found, _LEAVES_AT)
        result, last = self.plan.result(by_end), self.plan.result(by_last)
        if not zone_known or result is None or last is None:
            chunk.in_python.append(subject_id)
            return
        run.results[subject_id] = (range_end, result, last)
        row = stored or Row(
            id=None,
            version_id=self.version.id,
            definition_id=self.version.definition_id,
            unit=self.version.unit,
            subject_id=subject_id,
            anchor_at=fresh_anchor,
            deadline_at=_deadline(self.version, fresh_anchor),
            created_at=now,
            updated_at=now,
        )
        profile = SubjectProfile(
            plan=plan_, region=region, status=status, created_at=created_at, lifecycle_stage=stage
        )
        subject = Subject(_UTC, created_at, _NO_TRAITS, profile)
        before = row.state
        if run._apply(self.version, row, subject, fresh_anchor, {}, {}) or stored is None:
            row.evaluated_at = row.updated_at = now
            chunk.rows.append((row, stored is None))
            if row.state != before or stored is None:
                chunk.changed_state.add(subject_id)

    # -- writing ---------------------------------------------------------------------------

    def _write(self, run: _FromSql, chunk: _Chunk, now: dt.datetime) -> None:
        written = self._upsert(chunk.rows) if chunk.rows else set()
        records = self._outcomes(
            [outcome for outcome, _ in run.outcomes if outcome.subject_id in written], now
        )
        for record in records:
            if record.kind == OutcomeKind.ACHIEVED:
                chunk.achieved += 1
            else:
                chunk.missed += 1
        achieved = {r.subject_id for r in records if r.kind == OutcomeKind.ACHIEVED}
        dependents = registry().dependents.get(self.version.key, ())
        pending_add({(other.id, s) for other in dependents for s in achieved})
        changed = chunk.changed_state & written
        if self.version.unit == Unit.CUSTOMER and changed:
            active = {v.id: v.key for v in registry().versions.values()}
            stages_refresh(changed, active_versions=active, cause="milestone backfill")
        outcomes_publish(records)

    def _upsert(self, rows: Sequence[tuple[Row, bool]]) -> set[int]:
        """Insert new rows and update the stored (locked) ones; returns the subjects written.
        A row another transaction inserted since the lock is its own: left alone."""
        table = Progress._meta.db_table
        columns = ", ".join(_FIELDS)
        updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in _FIELDS)
        types = {
            "state": "text",
            "anchor_at": "timestamptz",
            "deadline_at": "timestamptz",
            "achieved_at": "timestamptz",
            "missed_at": "timestamptz",
            "is_late": "boolean",
            "done": "int",
            "total": "int",
            "label": "text",
            "detail": "text",
            "ineligible_reason": "text",
            "evaluated_at": "timestamptz",
            "updated_at": "timestamptz",
        }
        arrays = ", ".join(f"%({name})b::{types[name]}[]" for name in _FIELDS)
        values = ", ".join(
            f"u.{name}::jsonb" if name == "detail" else f"u.{name}" for name in _FIELDS
        )
        sql = f"""
INSERT INTO {table} AS p (version_id, definition_id, unit, subject_id, {columns}, created_at)
SELECT %(version)s, %(definition)s, %(unit)s, u.subject_id, {values}, u.updated_at
FROM unnest(%(subject)b::bigint[], {arrays}) AS u(subject_id, {columns})
ON CONFLICT (version_id, subject_id) DO UPDATE SET {updates}
WHERE p.id = ANY(%(locked)b::bigint[])
RETURNING subject_id
"""  # noqa: S608 - the table and columns are the model's; every value is a parameter
        params: dict[str, Any] = {
            "version": self.version.id,
            "definition": self.version.definition_id,
            "unit": self.version.unit,
            "subject": [row.subject_id for row, _ in rows],
            "locked": [row.id for row, new in rows if not new],
        }
        for name in _FIELDS:
            params[name] = [getattr(row, name) for row, _ in rows]
        params["detail"] = [json.dumps(row.detail) for row, _ in rows]
        with _bound_cursor() as cursor:
            cursor.execute(sql, params)
            return {subject_id for (subject_id,) in cursor.fetchall()}

    def _outcomes(self, outcomes: Sequence[OutcomeRow], now: dt.datetime) -> list[OutcomeRecord]:
        """Record the outcomes; those recorded before (a re-run) are skipped, not repeated."""
        if not outcomes:
            return []
        table = MilestoneOutcome._meta.db_table
        sql = f"""
INSERT INTO {table} (version_id, definition_id, unit, subject_id, kind, is_late, occurred_at,
                     recorded_at, xact_id)
SELECT %(version)s, %(definition)s, %(unit)s, u.subject_id, u.kind, u.is_late, u.occurred_at,
       %(now)s, pg_current_xact_id()::text::bigint
FROM unnest(%(subject)b::bigint[], %(kind)b::text[], %(is_late)b::boolean[],
            %(occurred_at)b::timestamptz[]) AS u(subject_id, kind, is_late, occurred_at)
ORDER BY u.subject_id, u.kind
ON CONFLICT (version_id, subject_id, kind) DO NOTHING
RETURNING id, subject_id, kind, is_late, occurred_at
"""  # noqa: S608
        params: dict[str, Any] = {
            "version": self.version.id,
            "definition": self.version.definition_id,
            "unit": self.version.unit,
            "now": now,
            "subject": [o.subject_id for o in outcomes],
            "kind": [str(o.kind) for o in outcomes],
            "is_late": [o.is_late for o in outcomes],
            "occurred_at": [o.occurred_at for o in outcomes],
        }
        with _bound_cursor() as cursor:
            cursor.execute(sql, params)
            inserted = cursor.fetchall()
        return [
            OutcomeRecord(
                id=pk,
                definition_id=self.version.definition_id,
                version_id=self.version.id,
                key=self.version.key,
                unit=self.version.unit,
                subject_id=subject_id,
                kind=kind,
                is_late=is_late,
                occurred_at=occurred_at,
            )
            for pk, subject_id, kind, is_late, occurred_at in sorted(
                inserted, key=lambda r: (r[1], r[2])
            )
        ]


def _catch_up(version: MilestoneVersion) -> None:
    """Queue subjects with matching events received since activation: web processes learn of
    a new version within MILESTONES_REGISTRY_SECONDS, and events in that gap got no pending
    row of their own.

    ``received_at`` has no index, so the scan starts after the newest event received well
    before that moment (found walking the primary key backwards): an event id is taken when
    its ingest transaction inserts, within moments of its ``received_at``, so no event
    received since can have a smaller id unless an ingest sat ``_CATCH_UP_SLACK`` between
    receiving and inserting."""
    compiled = compile_version(version, version.definition.key)
    since = (version.activated_at or timezone.now()) - dt.timedelta(
        seconds=settings.MILESTONES_REGISTRY_SECONDS + 5
    )
    column = "account_id" if version.unit == Unit.ACCOUNT else "customer_id"
    boundary = (
        Event.objects.filter(received_at__lt=since - _CATCH_UP_SLACK)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )
    subjects = (
        Event.objects.filter(
            pk__gt=boundary or 0, received_at__gte=since, name__in=sorted(compiled.event_names)
        )
        .exclude(**{f"{column}__isnull": True})
        .values_list(column, flat=True)
        .distinct()
    )
    pending_add({(version.pk, int(s)) for s in subjects.iterator(chunk_size=5000)})
