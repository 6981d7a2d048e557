"""The evaluator's bulk writes, as one statement each with one parameter per column set.

Django's ``bulk_create`` binds every field of every row as its own parameter and converts
each in Python; for a batch of 500 progress rows that cost ten times the database work. On
PostgreSQL these send the rows as one JSON document (or arrays) bound server-side; elsewhere
(the SQLite demo) they fall back to the ORM.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

import orjson
from django.db import connection
from psycopg.types.datetime import TimestamptzBinaryLoader
from psycopg.types.json import set_json_loads

from config.plans import planned_each_time
from customers.ingest.sql import PreparedCursor
from customers.models import Event
from milestones.models import MilestoneOutcome, PendingEvaluation, Progress, ProgressState

#: The progress columns the evaluator writes, with their PostgreSQL types.
PROGRESS_COLUMNS: Final = (
    ("state", "varchar"),
    ("anchor_at", "timestamptz"),
    ("deadline_at", "timestamptz"),
    ("achieved_at", "timestamptz"),
    ("missed_at", "timestamptz"),
    ("is_late", "boolean"),
    ("done", "integer"),
    ("total", "integer"),
    ("label", "varchar"),
    ("detail", "jsonb"),
    ("ineligible_reason", "varchar"),
    ("evaluated_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)
_KEY_COLUMNS: Final = (
    ("version_id", "bigint"),
    ("definition_id", "bigint"),
    ("unit", "varchar"),
    ("subject_id", "bigint"),
    ("created_at", "timestamptz"),
)
_PROGRESS = Progress._meta.db_table
_OUTCOME = MilestoneOutcome._meta.db_table
_PENDING = PendingEvaluation._meta.db_table


def execute(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` on PostgreSQL with server-side binding and binary results."""
    connection.ensure_connection()
    wrap = connection._prepare_cursor  # type: ignore[attr-defined]
    with wrap(_BinaryCursor(connection.connection)) as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []


class _BinaryCursor(PreparedCursor):
    """Binary results with psycopg's own loaders: Django's timestamptz loader re-localises
    every value in Python, and the json module is several times slower than orjson."""

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        set_json_loads(orjson.loads, self)
        self.adapters.register_loader("timestamptz", TimestamptzBinaryLoader)

    def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> _BinaryCursor:
        super().execute(query, params, prepare=prepare, binary=True if binary is None else binary)
        return self


@dataclasses.dataclass(slots=True, kw_only=True)
class Row:
    """A progress row as the evaluator works on it (a model instance costs 20x more)."""

    id: int | None
    version_id: int
    definition_id: int
    unit: str
    subject_id: int
    state: str = ProgressState.IN_PROGRESS
    anchor_at: dt.datetime
    deadline_at: dt.datetime | None = None
    achieved_at: dt.datetime | None = None
    missed_at: dt.datetime | None = None
    is_late: bool = False
    done: int = 0
    total: int = 1
    label: str = ""
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)
    ineligible_reason: str = ""
    evaluated_at: dt.datetime | None = None
    updated_at: dt.datetime
    created_at: dt.datetime


_ROW_FIELDS: Final = tuple(field.name for field in dataclasses.fields(Row))


def progress_lock(pairs: Collection[tuple[int, int]]) -> list[Row]:
    """Lock the progress rows of ``pairs`` in (version, subject) order and read them."""
    if not pairs:
        return []
    ordered = sorted(pairs)
    if connection.vendor != "postgresql":
        found: list[Row] = []
        by_version: dict[int, list[int]] = {}
        for version_id, subject_id in ordered:
            by_version.setdefault(version_id, []).append(subject_id)
        for version_id, subject_ids in by_version.items():
            query = Progress.objects.filter(version_id=version_id, subject_id__in=subject_ids)
            found.extend(
                Row(**values) for values in query.order_by("subject_id").values(*_ROW_FIELDS)
            )
        return found
    names = ", ".join(f"p.{name}" for name in _ROW_FIELDS)
    with planned_each_time():  # a join to arrays (config/plans.py)
        rows = execute(
            f"SELECT {names} FROM {_PROGRESS} p"  # noqa: S608
            " JOIN unnest(%s::bigint[], %s::bigint[]) AS t(v, s)"
            " ON p.version_id = t.v AND p.subject_id = t.s"
            " ORDER BY p.version_id, p.subject_id FOR UPDATE OF p",
            [[v for v, _ in ordered], [s for _, s in ordered]],
        )
    return [Row(**dict(zip(_ROW_FIELDS, values, strict=True))) for values in rows]


EventRow = tuple[int, int, str, dt.datetime, dict[str, Any] | None]


def events_fetch(
    column: str, subject_ids: Sequence[int], names: Sequence[str], since: dt.datetime
) -> list[EventRow]:
    """(subject, customer_id, name, occurred_at, properties) of the subjects' events."""
    if connection.vendor != "postgresql":
        query = Event.objects.filter(
            **{f"{column}__in": subject_ids}, name__in=names, occurred_at__gte=since
        ).values_list(column, "customer_id", "name", "occurred_at", "properties")
        return list(query)
    assert column in ("customer_id", "account_id")  # noqa: S101 - never user input
    return execute(
        f"SELECT {column}, customer_id, name, occurred_at, properties"  # noqa: S608
        f" FROM {Event._meta.db_table} WHERE {column} = ANY(%s) AND name = ANY(%s)"
        " AND occurred_at >= %s",
        [list(subject_ids), list(names), since],
    )


def _record_type(columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{name} {kind}" for name, kind in columns)


def _document(rows: Sequence[dict[str, Any]]) -> str:
    return orjson.dumps(rows).decode()


def pending_insert(pairs: Collection[tuple[int, int]], at: dt.datetime) -> None:
    ordered = sorted(pairs)
    if connection.vendor != "postgresql":
        PendingEvaluation.objects.bulk_create(
            [PendingEvaluation(version_id=v, subject_id=s, created_at=at) for v, s in ordered],
            batch_size=1000,
        )
        return
    # A pair already waiting, unclaimed, needs no second row: lock it FOR KEY SHARE so no
    # evaluator can claim it (their FOR UPDATE SKIP LOCKED passes over it) until this
    # transaction's events are committed and visible. A row an evaluator has claimed is
    # locked FOR UPDATE and skipped here, so the pair gets a new row.
    execute(
        "WITH t(v, s) AS (SELECT * FROM unnest(%s::bigint[], %s::bigint[])),"  # noqa: S608
        f" held AS MATERIALIZED (SELECT q.version_id, q.subject_id FROM {_PENDING} q"
        " JOIN t ON q.version_id = t.v AND q.subject_id = t.s"
        " FOR KEY SHARE OF q SKIP LOCKED)"
        f" INSERT INTO {_PENDING} (version_id, subject_id, created_at)"
        " SELECT v, s, %s FROM t WHERE NOT EXISTS"
        " (SELECT 1 FROM held WHERE held.version_id = t.v AND held.subject_id = t.s)",
        [[v for v, _ in ordered], [s for _, s in ordered], at],
    )


def _progress_values(row: Row) -> dict[str, Any]:
    return {name: getattr(row, name) for name, _ in PROGRESS_COLUMNS}


def progress_insert(rows: Sequence[Row]) -> set[tuple[int, int]]:
    """Insert new progress rows in (version, subject) order; a row that exists, or that
    another transaction inserts first, is left to it. Returns the pairs inserted here."""
    if connection.vendor != "postgresql":
        existing = set(
            Progress.objects.filter(
                version_id__in={row.version_id for row in rows},
                subject_id__in={row.subject_id for row in rows},
            ).values_list("version_id", "subject_id")
        )
        fields = [name for name in _ROW_FIELDS if name != "id"]
        fresh = [row for row in rows if (row.version_id, row.subject_id) not in existing]
        Progress.objects.bulk_create(
            [Progress(**{name: getattr(row, name) for name in fields}) for row in fresh],
            ignore_conflicts=True,
        )
        return {(row.version_id, row.subject_id) for row in fresh}
    columns = (*_KEY_COLUMNS, *PROGRESS_COLUMNS)
    names = ", ".join(name for name, _ in columns)
    document = [
        {
            "version_id": row.version_id,
            "definition_id": row.definition_id,
            "unit": row.unit,
            "subject_id": row.subject_id,
            "created_at": row.created_at,
            **_progress_values(row),
        }
        for row in rows
    ]
    inserted = execute(
        f"INSERT INTO {_PROGRESS} ({names}) SELECT {names}"  # noqa: S608
        f" FROM jsonb_to_recordset(%s::jsonb) AS r({_record_type(columns)})"
        " ORDER BY version_id, subject_id ON CONFLICT (version_id, subject_id) DO NOTHING"
        " RETURNING version_id, subject_id",
        [_document(document)],
    )
    return {(int(v), int(s)) for v, s in inserted}


def progress_write(rows: Sequence[Row]) -> None:
    """Write the evaluator's columns of existing (locked) progress rows by id."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        for row in rows:
            Progress.objects.filter(pk=row.id or 0).update(**_progress_values(row))
        return
    columns = (("id", "bigint"), *PROGRESS_COLUMNS)
    assignments = ", ".join(f"{name} = r.{name}" for name, _ in PROGRESS_COLUMNS)
    document = [{"id": row.id, **_progress_values(row)} for row in rows]
    with planned_each_time():  # a join to a JSON document (config/plans.py)
        execute(
            f"UPDATE {_PROGRESS} AS p SET {assignments}"  # noqa: S608
            f" FROM jsonb_to_recordset(%s::jsonb) AS r({_record_type(columns)})"
            # The id array keeps the plan on the primary key (runner.enrollments_write).
            " WHERE p.id = r.id AND p.id = ANY(%s::bigint[])",
            [_document(document), [row.id for row in rows]],
        )


@dataclasses.dataclass(slots=True, kw_only=True)
class OutcomeRow:
    """An outcome as the evaluator records it (a model instance costs several times more)."""

    version_id: int
    definition_id: int
    unit: str
    subject_id: int
    kind: str
    is_late: bool
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    id: int | None = None
    xact_id: int | None = None


def outcomes_insert(outcomes: Sequence[OutcomeRow]) -> None:
    """Insert outcomes and set their ids. The unique (version, subject, kind) constraint is
    the last line of defence: a duplicate raises, rolling the evaluation back."""
    if not outcomes:
        return
    if connection.vendor != "postgresql":
        fields = [f.name for f in dataclasses.fields(OutcomeRow) if f.name != "id"]
        created = MilestoneOutcome.objects.bulk_create(
            [MilestoneOutcome(**{name: getattr(o, name) for name in fields}) for o in outcomes]
        )
        for outcome, model in zip(outcomes, created, strict=True):
            outcome.id = model.pk
        return
    columns = (
        ("version_id", "bigint"),
        ("definition_id", "bigint"),
        ("unit", "varchar"),
        ("subject_id", "bigint"),
        ("kind", "varchar"),
        ("is_late", "boolean"),
        ("occurred_at", "timestamptz"),
        ("recorded_at", "timestamptz"),
    )
    names = ", ".join(name for name, _ in columns)
    document = [{name: getattr(o, name) for name, _ in columns} for o in outcomes]
    returned = execute(
        f"INSERT INTO {_OUTCOME} ({names}, xact_id)"  # noqa: S608
        f" SELECT {names}, pg_current_xact_id()::text::bigint"
        f" FROM jsonb_to_recordset(%s::jsonb) AS r({_record_type(columns)})"
        " RETURNING id, version_id, subject_id, kind, xact_id",
        [_document(document)],
    )
    ids = {(v, s, k): (pk, xact) for pk, v, s, k, xact in returned}
    for outcome in outcomes:
        outcome.id, outcome.xact_id = ids[(outcome.version_id, outcome.subject_id, outcome.kind)]
