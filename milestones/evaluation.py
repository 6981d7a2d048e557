"""Evaluation: from new facts to committed progress and outcomes, in micro-batches.

The flow (DESIGN.md §2.1, §2.4):

1. ``pending_record`` runs *inside* the ingest transaction (through the ``events_stored``
   hook) and writes one ``PendingEvaluation`` row per (version, subject) the new events can
   affect: the wake-up is as durable as the events.
2. After commit, one ``evaluate`` task per ingested batch runs ``pending_evaluate``, which
   claims a bounded batch of pending rows with ``SKIP LOCKED``, deletes them, and evaluates
   every claimed pair from scratch, all in one transaction.
3. ``pairs_evaluate`` locks the pairs' progress rows in (version, subject) order, then reads
   the events — so a second worker on the same pair waits, and then sees everything the
   first saw and more. Evaluating from history makes it order-independent and idempotent;
   outcomes are unique rows, recorded only on a state change seen under the row lock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import random
import time
import zoneinfo
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Func, Min
from django.utils import timezone

from config.durability import commit_async
from customers.models import Account, Customer, Event
from customers.signals import IngestedEvent
from milestones import sql
from milestones.conditions import EventFact, Facts, Result, evaluate
from milestones.eligibility import SubjectProfile, ineligibility
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
from milestones.registry import CompiledVersion, Registry, registry
from milestones.signals import OutcomeRecord, outcomes_recorded
from milestones.sql import OutcomeRow, Row
from milestones.stages import stages_refresh

logger = logging.getLogger(__name__)

_ATTEMPTS = 4
_UTC = ZoneInfo("UTC")
_PROGRESS_FIELDS = tuple(name for name, _ in sql.PROGRESS_COLUMNS)

Pair = tuple[int, int]  # (version id, subject id)


@dataclasses.dataclass(slots=True)
class Summary:
    pairs: int = 0
    evaluated: int = 0
    achieved: int = 0
    missed: int = 0
    ineligible: int = 0

    def add(self, other: Summary) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


class CurrentXactId(Func):
    """The id of the running transaction (PostgreSQL), as a bigint."""

    template = "(pg_current_xact_id()::text::bigint)"
    arity = 0


def xact_id() -> Func | None:
    return CurrentXactId() if connection.vendor == "postgresql" else None


# --- 1. Recording what may have changed ---------------------------------------------------


def pending_record(events: Sequence[IngestedEvent]) -> int:
    """In the caller's transaction: a pending row per (version, subject) ``events`` can
    affect. Costs no query when no active milestone reads these events."""
    pairs = affected_pairs(registry(), events)
    pending_add(pairs)
    return len(pairs)


def affected_pairs(found: Registry, events: Iterable[IngestedEvent]) -> set[Pair]:
    pairs: set[Pair] = set()
    if not found.versions:
        return pairs
    for event in events:
        for version in found.affected(event.name, event.type):
            subject = event.account_id if version.is_account else event.customer_id
            if subject is not None:
                pairs.add((version.id, subject))
    return pairs


def pending_add(pairs: Collection[Pair]) -> None:
    if pairs:
        sql.pending_insert(pairs, timezone.now())


# --- 2. Claiming pending work -------------------------------------------------------------


def pending_evaluate(*, limit: int | None = None) -> Summary:
    """Claim up to ``limit`` pending pairs and evaluate them in one transaction.

    Retries deadlocks and serialization failures; returns an empty summary when nothing is
    pending (or everything pending is claimed by other workers)."""
    size = limit or settings.MILESTONES_EVALUATE_BATCH
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with transaction.atomic():
                commit_async()  # derived work: see config/durability.py
                pairs = _claim(size)
                summary = pairs_evaluate(pairs) if pairs else Summary()
                return summary
        except (OperationalError, IntegrityError) as exc:
            code = getattr(exc.__cause__, "sqlstate", None)
            if code not in {"40P01", "40001"} or attempt == _ATTEMPTS:
                raise
            logger.warning("evaluation rolled back by %s (attempt %d)", code, attempt)
            time.sleep(random.uniform(0.01, 0.05) * attempt)  # noqa: S311
    raise AssertionError("unreachable")


def _claim(limit: int) -> set[Pair]:
    """Take up to ``limit`` pending rows, then every other pending row of the same subjects
    on any active milestone of their unit: one claim reads a subject's history once for all
    its milestones, and a busy pair queued by several ingested batches is evaluated once."""
    table = PendingEvaluation._meta.db_table
    if connection.vendor != "postgresql":  # SQLite has one writer at a time: nothing to skip.
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id"  # noqa: S608
                " LIMIT %s) RETURNING version_id, subject_id",
                [limit],
            )
            pairs = {(int(v), int(s)) for v, s in cursor.fetchall()}
        for version_id, subject_id in pairs:
            PendingEvaluation.objects.filter(version_id=version_id, subject_id=subject_id).delete()
        return pairs
    claimed = sql.execute(
        # = ANY(ARRAY(...)), not IN (...): the planner may turn IN into a scan of the table.
        f"DELETE FROM {table} WHERE id = ANY(ARRAY(SELECT id FROM {table} ORDER BY id"  # noqa: S608
        " LIMIT %s FOR UPDATE SKIP LOCKED)) RETURNING version_id, subject_id",
        [limit],
    )
    pairs = {(int(v), int(s)) for v, s in claimed}
    for versions, subjects in _siblings(registry(), pairs):
        rest = sql.execute(
            f"DELETE FROM {table} WHERE id = ANY(ARRAY(SELECT id FROM {table}"  # noqa: S608
            " WHERE subject_id = ANY(%s) AND version_id = ANY(%s) FOR UPDATE SKIP LOCKED))"
            " RETURNING version_id, subject_id",
            [subjects, versions],
        )
        pairs.update((int(v), int(s)) for v, s in rest)
    return pairs


def _siblings(found: Registry, pairs: Iterable[Pair]) -> list[tuple[list[int], list[int]]]:
    """Per unit: (its active versions, the claimed subjects of that unit)."""
    subjects: dict[bool, set[int]] = defaultdict(set)
    for version_id, subject_id in pairs:
        version = found.versions.get(version_id)
        if version is not None:
            subjects[version.is_account].add(subject_id)
    return [
        (
            sorted(v.id for v in found.versions.values() if v.is_account == is_account),
            sorted(ids),
        )
        for is_account, ids in sorted(subjects.items())
    ]


def pending_oldest_age(now: dt.datetime | None = None) -> dt.timedelta | None:
    oldest = PendingEvaluation.objects.order_by("id").values_list("created_at", flat=True).first()
    return None if oldest is None else (now or timezone.now()) - oldest


# --- 3. Evaluating pairs ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Subject:
    zone: ZoneInfo
    created_at: dt.datetime
    traits: Mapping[str, object]
    profile: SubjectProfile


def pairs_evaluate(pairs: Iterable[Pair], *, now: dt.datetime | None = None) -> Summary:
    """Evaluate ``pairs`` from history and record changes. Must run inside a transaction.

    Pairs of versions that are no longer active, or of subjects that no longer exist (merged
    away), are dropped."""
    now = now or timezone.now()
    found = registry()
    wanted: dict[int, set[int]] = defaultdict(set)
    for version_id, subject_id in pairs:
        if version_id in found.versions:
            wanted[version_id].add(subject_id)
    if wanted:
        # The registry is a few seconds stale in other processes: drop versions retired since.
        live = set(
            MilestoneVersion.objects.filter(
                pk__any=list(wanted), retired_at__isnull=True
            ).values_list("pk", flat=True)
        )
        wanted = {v: ids for v, ids in wanted.items() if v in live}
    if not wanted:
        return Summary()
    run = _Run(found, now)
    return run.evaluate(wanted)


class _Run:
    """One evaluation transaction's working set."""

    def __init__(self, found: Registry, now: dt.datetime) -> None:
        self.registry = found
        self.now = now
        self.grace = dt.timedelta(seconds=settings.MILESTONES_SWEEP_GRACE_SECONDS)
        self.tolerance = dt.timedelta(seconds=settings.INGEST_FUTURE_TOLERANCE_SECONDS)
        self.trial_plans = frozenset(settings.MILESTONES_TRIAL_PLANS)
        self.outcomes: list[tuple[OutcomeRow, CompiledVersion]] = []
        self.started: set[Pair] = set()
        self.summary = Summary()

    def evaluate(self, wanted: Mapping[int, set[int]]) -> Summary:
        versions = [self.registry.versions[v] for v in sorted(wanted)]
        subjects = self._subjects(versions, wanted)
        anchors = self._anchors(versions, wanted, subjects)
        # Lock the existing rows in one ordered statement; a started pair without a row is
        # judged in memory and inserted once, with its final values (in the same order).
        rows = self._lock(versions, wanted, subjects)
        fresh = self._fresh(versions, wanted, rows, anchors)
        self.started = set(fresh)
        rows.update(fresh)
        self.summary.pairs = sum(len(ids) for ids in wanted.values())
        if rows:
            self._evaluate_rows(versions, rows, subjects, anchors)
        self._finish()
        return self.summary

    # -- loading ---------------------------------------------------------------------------

    def _subjects(
        self, versions: Sequence[CompiledVersion], wanted: Mapping[int, set[int]]
    ) -> dict[tuple[str, int], Subject]:
        ids: dict[str, set[int]] = defaultdict(set)
        for version in versions:
            ids[version.unit] |= wanted[version.id]
        subjects: dict[tuple[str, int], Subject] = {}
        for unit, unit_ids in ids.items():
            subjects.update(
                ((unit, pk), subject) for pk, subject in subjects_load(unit, unit_ids).items()
            )
        return subjects

    def _lock(
        self,
        versions: Sequence[CompiledVersion],
        wanted: Mapping[int, set[int]],
        subjects: Mapping[tuple[str, int], Subject],
    ) -> dict[Pair, Row]:
        pairs = [
            (version.id, s)
            for version in versions
            for s in wanted[version.id]
            if (version.unit, s) in subjects
        ]
        return {(row.version_id, row.subject_id): row for row in sql.progress_lock(pairs)}

    def _anchors(
        self,
        versions: Sequence[CompiledVersion],
        wanted: Mapping[int, set[int]],
        subjects: Mapping[tuple[str, int], Subject],
    ) -> dict[Pair, dt.datetime]:
        anchors: dict[Pair, dt.datetime] = {}
        for version in versions:
            ids = [s for s in wanted[version.id] if (version.unit, s) in subjects]
            if version.anchor == Anchor.SIGNUP:
                for s in ids:
                    anchors[(version.id, s)] = subjects[(version.unit, s)].created_at
            elif version.anchor == Anchor.EVENT:
                firsts = first_events(version, ids)
                anchors.update(((version.id, s), at) for s, at in firsts.items())
            else:
                other = self.registry.by_key.get(version.anchor_milestone)
                if other is not None:
                    found = achievements([other.id], ids)
                    anchors.update(((version.id, s), at) for (_, s), at in found.items())
        return anchors

    def _fresh(
        self,
        versions: Sequence[CompiledVersion],
        wanted: Mapping[int, set[int]],
        rows: Mapping[Pair, Row],
        anchors: Mapping[Pair, dt.datetime],
    ) -> dict[Pair, Row]:
        """New rows, not yet stored, for pairs whose clock has started."""
        return {
            (version.id, s): Row(
                id=None,
                version_id=version.id,
                definition_id=version.definition_id,
                unit=version.unit,
                subject_id=s,
                anchor_at=anchors[(version.id, s)],
                deadline_at=_deadline(version, anchors[(version.id, s)]),
                created_at=self.now,
                updated_at=self.now,
            )
            for version in versions
            for s in sorted(wanted[version.id])
            if (version.id, s) in anchors and (version.id, s) not in rows
        }

    # -- evaluating ------------------------------------------------------------------------

    def _evaluate_rows(
        self,
        versions: Sequence[CompiledVersion],
        rows: Mapping[Pair, Row],
        subjects: Mapping[tuple[str, int], Subject],
        anchors: Mapping[Pair, dt.datetime],
    ) -> None:
        by_unit: dict[str, list[CompiledVersion]] = defaultdict(list)
        for version in versions:
            by_unit[version.unit].append(version)
        changed: list[Row] = []
        stage_customers: set[int] = set()
        stage_keys: set[str] = set()
        for unit, unit_versions in by_unit.items():
            pairs = [pair for pair in rows if self.registry.versions[pair[0]].unit == unit]
            if not pairs:
                continue
            by_name = _by_name(_events(unit, unit_versions, pairs, rows, anchors))
            milestones_of = self._milestones(unit_versions, sorted({s for _, s in pairs}))
            for pair in sorted(pairs):
                version = self.registry.versions[pair[0]]
                row = rows[pair]
                subject = subjects[(unit, pair[1])]
                milestones = milestones_of.get(pair[1], {})
                # Only the events this version reads: the pure core scans what it is given.
                named = by_name.get(pair[1], {})
                events = {pair[1]: [e for name in version.event_names for e in named.get(name, ())]}
                before = row.state
                is_new = pair in self.started
                if (
                    self._apply(version, row, subject, anchors.get(pair), events, milestones)
                    or is_new
                ):
                    row.evaluated_at = row.updated_at = self.now
                    changed.append(row)
                    if unit == Unit.CUSTOMER and (row.state != before or is_new):
                        stage_customers.add(pair[1])
                        stage_keys.add(version.key)
        stored = [row for row in changed if row.id is not None]
        if stored:
            sql.progress_write(stored)
        self._insert_fresh([row for row in changed if row.id is None])
        if stage_customers:
            active = {v.id: v.key for v in self.registry.versions.values()}
            stages_refresh(
                stage_customers,
                active_versions=active,
                cause="milestone evaluation",
                changed_keys=stage_keys,
            )

    def _insert_fresh(self, fresh: Sequence[Row]) -> set[Pair]:
        """Insert new rows with their final values. A pair another worker inserted first
        lost the race: its judgement here is dropped and the pair is queued again, to be
        judged against the winner's row. Returns the lost pairs."""
        if not fresh:
            return set()
        inserted = sql.progress_insert(fresh)
        lost = {(row.version_id, row.subject_id) for row in fresh} - inserted
        if lost:
            kept = []
            for outcome, version in self.outcomes:
                if (outcome.version_id, outcome.subject_id) not in lost:
                    kept.append((outcome, version))
                elif outcome.kind == OutcomeKind.ACHIEVED:
                    self.summary.achieved -= 1
                else:
                    self.summary.missed -= 1
            self.outcomes = kept
            self.summary.ineligible -= sum(
                1
                for row in fresh
                if (row.version_id, row.subject_id) in lost
                and row.state == ProgressState.INELIGIBLE
            )
            pending_add(lost)
        return lost

    def _milestones(
        self, versions: Sequence[CompiledVersion], subject_ids: Sequence[int]
    ) -> dict[int, dict[str, dt.datetime]]:
        """When each subject achieved the milestones these versions' conditions wait for."""
        keys = set().union(*(v.milestone_keys for v in versions))
        others = [self.registry.by_key[k].id for k in sorted(keys) if k in self.registry.by_key]
        found: dict[int, dict[str, dt.datetime]] = defaultdict(dict)
        for (version_id, subject_id), at in achievements(others, subject_ids).items():
            found[subject_id][self.registry.versions[version_id].key] = at
        return found

    def _apply(
        self,
        version: CompiledVersion,
        row: Row,
        subject: Subject,
        anchor: dt.datetime | None,
        events: Mapping[int, list[EventFact]],
        milestones: Mapping[str, dt.datetime],
    ) -> bool:
        """Bring ``row`` up to date; returns whether anything changed.

        Once an outcome is recorded the anchor and deadline are frozen: they are what the
        outcome was judged against. Before that, an anchor event that arrives late moves them.
        """
        self.summary.evaluated += 1
        original = {name: getattr(row, name) for name in _PROGRESS_FIELDS}
        found = events.get(row.subject_id, ())
        if row.state == ProgressState.ACHIEVED:
            if version.window is None and anchor is not None and anchor < row.anchor_at:
                # With no deadline an earlier anchor only adds counted events: nothing
                # already handed on is contradicted, so the row follows history.
                row.anchor_at = anchor
            self._refine(version, row, subject, found, milestones)
        elif row.state == ProgressState.MISSED:
            self._judge(version, row, subject, found, milestones)
        else:
            if anchor is not None:
                row.anchor_at, row.deadline_at = anchor, _deadline(version, anchor)
            reason = ineligibility(
                version.eligibility,
                subject.profile,
                anchor_at=row.anchor_at,
                trial_plans=self.trial_plans,
            )
            if reason is not None:
                row.state, row.ineligible_reason = ProgressState.INELIGIBLE, reason
                self.summary.ineligible += 1
            else:
                self._judge(version, row, subject, found, milestones)
        if all(getattr(row, name) == original[name] for name in _PROGRESS_FIELDS):
            return False
        row.evaluated_at = row.updated_at = self.now
        return True

    def condition_result(
        self,
        version: CompiledVersion,
        row: Row,
        subject: Subject,
        events: Sequence[EventFact],
        milestones: Mapping[str, dt.datetime],
        end: dt.datetime,
    ) -> Result:
        """The condition over ``[anchor, end]``. The SQL backfill overrides this one method
        to answer from its aggregation; every rule about states stays here."""
        facts = Facts(
            events=events,
            zone=subject.zone,
            start=min(row.anchor_at, end),
            end=end,
            traits=subject.traits,
            milestones=milestones,
        )
        return evaluate(version.condition, facts)

    def _result(
        self,
        version: CompiledVersion,
        row: Row,
        subject: Subject,
        events: Sequence[EventFact],
        milestones: Mapping[str, dt.datetime],
        end: dt.datetime,
    ) -> Result:
        result = self.condition_result(version, row, subject, events, milestones, end)
        row.done, row.total = result.progress.done, result.progress.total
        row.label = result.progress.label[:300]
        row.detail = _detail(result)
        row.ineligible_reason = ""
        return result

    def _judge(
        self,
        version: CompiledVersion,
        row: Row,
        subject: Subject,
        events: Sequence[EventFact],
        milestones: Mapping[str, dt.datetime],
    ) -> None:
        """Judge an open or missed row. Events may carry times up to the ingest tolerance
        ahead of the server clock, so "now" reaches that far."""
        was_missed = row.state == ProgressState.MISSED
        horizon = self.now + self.tolerance
        end = horizon
        if not was_missed and row.deadline_at is not None:
            end = min(end, row.deadline_at)
        result = self._result(version, row, subject, events, milestones, end)
        if result.achieved_at is not None:
            self._achieve(version, row, result.achieved_at, is_late=was_missed)
        elif was_missed:
            pass
        elif row.deadline_at is not None and self.now >= row.deadline_at + self.grace:
            row.state, row.missed_at = ProgressState.MISSED, row.deadline_at
            self._outcome(version, row, OutcomeKind.MISSED, row.deadline_at)
            # Whatever already happened after the deadline is a late achievement, now: the
            # result must not depend on whether those events were evaluated before or after.
            late = self._result(version, row, subject, events, milestones, horizon)
            if late.achieved_at is not None:
                self._achieve(version, row, late.achieved_at, is_late=True)
        else:
            row.state = ProgressState.IN_PROGRESS

    def _achieve(
        self, version: CompiledVersion, row: Row, achieved_at: dt.datetime, *, is_late: bool
    ) -> None:
        row.state, row.achieved_at, row.is_late = ProgressState.ACHIEVED, achieved_at, is_late
        self._outcome(version, row, OutcomeKind.ACHIEVED, achieved_at)

    def _refine(
        self,
        version: CompiledVersion,
        row: Row,
        subject: Subject,
        events: Sequence[EventFact],
        milestones: Mapping[str, dt.datetime],
    ) -> None:
        """An achieved row stays achieved; an earlier event that arrived late can only move
        the moment of achievement back, on the progress row and on its outcome."""
        assert row.achieved_at is not None  # noqa: S101 - achieved rows have the moment
        end = row.achieved_at
        earlier = self.condition_result(version, row, subject, events, milestones, end).achieved_at
        if earlier is not None and earlier < row.achieved_at:
            row.achieved_at = earlier
            MilestoneOutcome.objects.filter(
                version_id=version.id, subject_id=row.subject_id, kind=OutcomeKind.ACHIEVED
            ).update(occurred_at=earlier)

    def _outcome(
        self, version: CompiledVersion, row: Row, kind: str, occurred_at: dt.datetime
    ) -> None:
        outcome = OutcomeRow(
            version_id=version.id,
            definition_id=version.definition_id,
            unit=version.unit,
            subject_id=row.subject_id,
            kind=kind,
            is_late=row.is_late,
            occurred_at=occurred_at,
            recorded_at=self.now,
        )
        self.outcomes.append((outcome, version))
        if kind == OutcomeKind.ACHIEVED:
            self.summary.achieved += 1
        else:
            self.summary.missed += 1

    # -- recording -------------------------------------------------------------------------

    def _finish(self) -> None:
        if not self.outcomes:
            return
        sql.outcomes_insert([outcome for outcome, _ in self.outcomes])
        records = [outcome_record(outcome, version.key) for outcome, version in self.outcomes]
        dependents: set[Pair] = set()
        for outcome, version in self.outcomes:
            if outcome.kind == OutcomeKind.ACHIEVED:
                for other in self.registry.dependents.get(version.key, ()):
                    dependents.add((other.id, outcome.subject_id))
        pending_add(dependents)
        outcomes_publish(records)


def outcome_record(outcome: OutcomeRow, key: str) -> OutcomeRecord:
    assert outcome.id is not None  # noqa: S101 - recorded before it is handed on
    return OutcomeRecord(
        id=outcome.id,
        definition_id=outcome.definition_id,
        version_id=outcome.version_id,
        key=key,
        unit=outcome.unit,
        subject_id=outcome.subject_id,
        kind=outcome.kind,
        is_late=outcome.is_late,
        occurred_at=outcome.occurred_at,
    )


def outcomes_publish(records: list[OutcomeRecord]) -> None:
    """Hand outcomes on after commit: the one hook other apps (journeys) listen to."""
    if records:
        transaction.on_commit(
            partial(outcomes_recorded.send, sender=MilestoneOutcome, outcomes=records)
        )


# --- Loading helpers ----------------------------------------------------------------------


_CUSTOMER_FIELDS = (
    "pk", "time_zone", "created_at", "traits", "plan", "region", "status", "lifecycle_stage",
    "email", "phone", "locale",
)  # fmt: skip
_ACCOUNT_FIELDS = ("pk", "created_at", "traits", "plan", "region", "status", "name")


def subjects_load(unit: str, ids: Collection[int]) -> dict[int, Subject]:
    """What evaluation reads about each subject (missing ids are absent: merged away)."""
    if not ids:
        return {}
    if unit == Unit.ACCOUNT:
        rows = Account.objects.filter(pk__in=list(ids)).values(*_ACCOUNT_FIELDS)
        return {row["pk"]: _account_subject(row) for row in rows}
    rows = Customer.objects.filter(pk__in=list(ids)).values(*_CUSTOMER_FIELDS)
    return {row["pk"]: _customer_subject(row) for row in rows}


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return _UTC


def _customer_subject(row: Mapping[str, Any]) -> Subject:
    traits: dict[str, object] = {
        name: row[name]
        for name in ("plan", "region", "status", "lifecycle_stage", "email", "phone", "locale")
    }
    traits.update(row["traits"] or {})
    profile = SubjectProfile(
        plan=row["plan"],
        region=row["region"],
        status=row["status"],
        created_at=row["created_at"],
        lifecycle_stage=row["lifecycle_stage"],
    )
    return Subject(_zone(row["time_zone"]), row["created_at"], traits, profile)


def _account_subject(row: Mapping[str, Any]) -> Subject:
    traits: dict[str, object] = {name: row[name] for name in ("plan", "region", "status", "name")}
    traits.update(row["traits"] or {})
    profile = SubjectProfile(
        plan=row["plan"], region=row["region"], status=row["status"], created_at=row["created_at"]
    )
    return Subject(_UTC, row["created_at"], traits, profile)


def _subject_column(unit: str) -> str:
    return "account_id" if unit == Unit.ACCOUNT else "customer_id"


def first_events(version: CompiledVersion, subject_ids: Sequence[int]) -> dict[int, dt.datetime]:
    column = _subject_column(version.unit)
    rows = (
        Event.objects.filter(**{f"{column}__in": subject_ids}, name=version.anchor_event)
        .values(column)
        .annotate(first=Min("occurred_at"))
        .values_list(column, "first")
    )
    return {int(s): first for s, first in rows}


def achievements(version_ids: Sequence[int], subject_ids: Sequence[int]) -> dict[Pair, Any]:
    if not version_ids or not subject_ids:
        return {}
    rows = Progress.objects.filter(
        version_id__in=version_ids, subject_id__in=subject_ids, achieved_at__isnull=False
    ).values_list("version_id", "subject_id", "achieved_at")
    return {(v, s): at for v, s, at in rows}


def _events(
    unit: str,
    versions: Sequence[CompiledVersion],
    pairs: Sequence[Pair],
    rows: Mapping[Pair, Row],
    anchors: Mapping[Pair, dt.datetime],
) -> dict[int, list[EventFact]]:
    """The events of ``pairs``' subjects that the versions read, since the earliest anchor
    (stored or just recomputed: an earlier anchor event may have arrived late)."""
    names = frozenset().union(*(v.event_names for v in versions))
    since = min(
        min(rows[pair].anchor_at, anchors.get(pair, rows[pair].anchor_at)) for pair in pairs
    )
    return events_load(unit, names, sorted({s for _, s in pairs}), since)


def _by_name(
    events: Mapping[int, list[EventFact]],
) -> dict[int, dict[str, list[EventFact]]]:
    grouped: dict[int, dict[str, list[EventFact]]] = {}
    for subject_id, facts in events.items():
        names: dict[str, list[EventFact]] = defaultdict(list)
        for fact in facts:
            names[fact.name].append(fact)
        grouped[subject_id] = names
    return grouped


def events_load(
    unit: str, names: Collection[str], subject_ids: Sequence[int], since: dt.datetime
) -> dict[int, list[EventFact]]:
    """Subjects' events with these names from ``since`` on, as facts, by subject id."""
    found: dict[int, list[EventFact]] = defaultdict(list)
    if not names or not subject_ids:
        return found
    rows = sql.events_fetch(_subject_column(unit), subject_ids, sorted(names), since)
    for subject, customer_id, name, occurred_at, properties in rows:
        found[subject].append(
            EventFact(
                name=name,
                occurred_at=occurred_at,
                customer_id=customer_id,
                properties=properties or {},
            )
        )
    return found


def _deadline(version: CompiledVersion, anchor: dt.datetime) -> dt.datetime | None:
    return None if version.window is None else anchor + version.window


def _detail(result: Result) -> dict[str, object]:
    detail: dict[str, object] = {
        "label": result.progress.label,
        "done": result.progress.done,
        "total": result.progress.total,
        "achieved_at": result.achieved_at.isoformat() if result.achieved_at else None,
    }
    if result.children:
        detail["children"] = [_detail(child) for child in result.children]
    return detail


def customer_merged(*, source_id: int, target_id: int) -> int:
    """After a merge the target owns the source's events: re-evaluate the target on every
    active customer milestone, and drop the source's open progress (its outcomes stay)."""
    with transaction.atomic():
        Progress.objects.filter(
            unit=Unit.CUSTOMER,
            subject_id=source_id,
            state__in=[ProgressState.IN_PROGRESS, ProgressState.INELIGIBLE],
        ).delete()
        pairs = {(v.id, target_id) for v in registry().versions.values() if not v.is_account}
        pending_add(pairs)
    return len(pairs)
