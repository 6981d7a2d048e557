"""Reads with business meaning: definition statistics, a subject's milestones, backfills.

Statistics are computed in SQL over each definition's *active* version (the progress of a
retired version is history, not the milestone's current performance), in a fixed number of
queries however many definitions are asked for: one on PostgreSQL (``percentile_cont``), two
elsewhere (window functions pick the two rows around each percentile).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Final

from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    Q,
    QuerySet,
    Window,
)
from django.db.models.functions import RowNumber

from customers.models import Account, Customer
from milestones.models import Backfill, Progress, ProgressState, Unit

#: The percentiles of time-to-milestone reported per definition.
MEDIAN: Final = 0.5
P90: Final = 0.9
SUBJECT_PROGRESS_SHOWN: Final = 100


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DefinitionStats:
    """How a definition's active version performs: progress rows by state and time to it.

    ``median`` and ``p90`` are over ``achieved_at - anchor_at`` of achieved rows (late ones
    included), interpolated linearly between rows like PostgreSQL's ``percentile_cont``.
    """

    counts: Mapping[str, int]
    median: dt.timedelta | None = None
    p90: dt.timedelta | None = None

    @property
    def achieved(self) -> int:
        return self.counts.get(ProgressState.ACHIEVED, 0)

    @property
    def missed(self) -> int:
        return self.counts.get(ProgressState.MISSED, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def completion_rate(self) -> float | None:
        """Achieved out of the subjects with an outcome; ``None`` before any outcome."""
        decided = self.achieved + self.missed
        return None if decided == 0 else self.achieved / decided


def _no_counts() -> dict[str, int]:
    return dict.fromkeys(ProgressState.values, 0)


class _PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``."""

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        # A float literal, never user input: formatting it into the SQL is safe.
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def time_to_milestone() -> ExpressionWrapper[Any]:
    """A progress row's time from anchor to achievement."""
    return ExpressionWrapper(F("achieved_at") - F("anchor_at"), output_field=DurationField())


_ACHIEVED: Final = Q(state=ProgressState.ACHIEVED, achieved_at__isnull=False)


def definition_stats(definition_ids: Iterable[int]) -> dict[int, DefinitionStats]:
    """Statistics of each definition's active version; every id asked for gets an entry
    (all zeros for a draft, an unknown id, or a version nobody has started yet)."""
    ids = sorted(set(definition_ids))
    if not ids:
        return {}
    rows = Progress.objects.filter(
        definition_id__in=ids, version_id=F("definition__active_version_id")
    ).order_by()
    if connection.vendor == "postgresql":
        found = _stats_percentile_cont(rows)
    else:
        found = _stats_portable(rows)
    return {pk: found.get(pk) or DefinitionStats(counts=_no_counts()) for pk in ids}


def _stats_percentile_cont(rows: QuerySet[Progress]) -> dict[int, DefinitionStats]:
    duration = time_to_milestone()
    per_state = {
        f"state_{state}": Count("id", filter=Q(state=state)) for state in ProgressState.values
    }
    grouped = rows.values("definition_id").annotate(
        **per_state,
        median=_PercentileCont(duration, MEDIAN, filter=_ACHIEVED, output_field=DurationField()),
        p90=_PercentileCont(duration, P90, filter=_ACHIEVED, output_field=DurationField()),
    )
    return {
        row["definition_id"]: DefinitionStats(
            counts={state: row[f"state_{state}"] for state in ProgressState.values},
            median=row["median"],
            p90=row["p90"],
        )
        for row in grouped
    }


def _stats_portable(rows: QuerySet[Progress]) -> dict[int, DefinitionStats]:
    """Counts in one query; in a second, only the rows either side of each percentile."""
    counts: dict[int, dict[str, int]] = defaultdict(_no_counts)
    for row in rows.values("definition_id", "state").annotate(n=Count("id")):
        counts[row["definition_id"]][row["state"]] = row["n"]
    timed = _rows_around_percentiles(rows)
    return {
        pk: DefinitionStats(
            counts=state_counts,
            median=timed[pk].percentile(MEDIAN) if pk in timed else None,
            p90=timed[pk].percentile(P90) if pk in timed else None,
        )
        for pk, state_counts in counts.items()
    }


@dataclasses.dataclass(slots=True)
class _Sorted:
    """Some of a definition's sorted times to milestone: ``{0-based position: time}``."""

    size: int
    times: dict[int, dt.timedelta] = dataclasses.field(default_factory=dict)

    def percentile(self, fraction: float) -> dt.timedelta:
        position = fraction * (self.size - 1)
        below = math.floor(position)
        if position == below:
            return self.times[below]
        return self.times[below] + (self.times[below + 1] - self.times[below]) * (position - below)


def _rows_around_percentiles(rows: QuerySet[Progress]) -> dict[int, _Sorted]:
    """The (at most 4) rows of each definition that its percentiles interpolate between.

    Percentile ``p`` of ``n`` sorted values sits at position ``p * (n - 1)`` (0-based); the
    rows needed are those less than one position away from it.
    """
    duration = time_to_milestone()
    ranked = rows.filter(_ACHIEVED).annotate(
        duration=duration,
        row=Window(
            RowNumber(),
            partition_by=[F("definition_id")],
            order_by=[duration.asc(), F("id").asc()],
        ),
        size=Window(Count("id"), partition_by=[F("definition_id")]),
    )
    near = Q()
    for fraction in (MEDIAN, P90):
        position = ExpressionWrapper((F("size") - 1) * fraction, output_field=FloatField())
        # row = position + 1 (1-based), so this is |row - 1 - position| < 1.
        near |= Q(row__gt=position, row__lt=position + 2)
    found: dict[int, _Sorted] = {}
    for definition_id, row, size, duration_value in ranked.filter(near).values_list(
        "definition_id", "row", "size", "duration"
    ):
        found.setdefault(definition_id, _Sorted(size)).times[row - 1] = duration_value
    return found


# --- A subject's milestones, labels, backfills --------------------------------------------


def subject_progress(*, unit: str, subject_id: int) -> list[Progress]:
    """One customer's (or account's) progress rows, current versions first, then by key.

    Rows of retired versions are kept as history and shown after the current ones; at most
    ``SUBJECT_PROGRESS_SHOWN`` rows, in one query.
    """
    rows = (
        Progress.objects.filter(unit=unit, subject_id=subject_id)
        .select_related("definition", "version")
        .order_by(F("version__retired_at").asc(nulls_first=True), "definition__key", "-id")
    )
    return list(rows[:SUBJECT_PROGRESS_SHOWN])


def subject_labels(*, unit: str, subject_ids: Iterable[int]) -> dict[int, str]:
    """Display names for subjects (external ids, or ``anonymous #id``), in one query."""
    ids = set(subject_ids)
    if not ids:
        return {}
    model = Account if unit == Unit.ACCOUNT else Customer
    found = dict(model.objects.filter(pk__in=ids).values_list("pk", "external_id"))
    return {pk: (found[pk] or f"anonymous #{pk}") if pk in found else f"{unit} #{pk}" for pk in ids}


def backfill_latest(*, definition_id: int) -> Backfill | None:
    """The most recently requested backfill of any version of the definition."""
    return (
        Backfill.objects.filter(version__definition_id=definition_id)
        .select_related("version", "requested_by")
        .order_by("-created_at", "-id")
        .first()
    )
