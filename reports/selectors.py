"""The dashboard's reads: each one statement (two for a window found on the primary key),
grouped in SQL, over a window that an index finds, whatever the size of the tables.

- Windows on append-only tables whose timestamp has no index (events by ``received_at``,
  messages by ``created_at``) are found on the primary key, as ``ops.selectors`` finds them:
  rows are numbered in the order they are written, so the window is the ids after the newest
  row older than its start; finding that id walks the key backwards through the window's
  rows only, and the count reads those rows and no others.
- Outcomes are read on ``outcome_report`` (definition, kind, occurred_at), one index range
  per definition and kind.
- Cohorts are the subjects created in a window, found on the customers' ``created_at``
  index (accounts have none: their table is read whole, and is small); whether each
  achieved a milestone is one probe of ``outcome_unique_subject_kind`` (subject first) or,
  when the planner finds it cheaper, one pass over the milestone's achievements on
  ``outcome_report``.
- Time to milestone reads the achieved progress rows whose achievement falls in the window;
  the window is also stated as a semi-join to ``outcome_report`` so that the planner can
  start from the window and probe ``progress_unique_subject`` per achiever rather than read
  every achiever the milestone ever had (``progress_definition_state``), when that is cheaper.

Every statement runs planned for its values (``config.plans.planned_each_time``, entered by
the caller): a generic plan cannot see how recent a window's start is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Sequence

from django.db.models import (
    Count,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Window,
)
from django.db.models.functions import RowNumber, TruncWeek

from config.windows import newest_id_before
from customers.models import Account, Customer, Event
from journeys.models import Journey
from milestones.models import (
    MilestoneDefinition,
    MilestoneOutcome,
    OutcomeKind,
    Progress,
    ProgressState,
    Unit,
)
from milestones.selectors import time_to_milestone

# --- Choices --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class DefinitionRow:
    id: int
    key: str
    name: str
    status: str
    unit: str
    parent_id: int | None


def definition_rows() -> list[DefinitionRow]:
    """Every milestone definition, by key (a configuration table: tens of rows)."""
    rows = MilestoneDefinition.objects.order_by("key").values_list(
        "id", "key", "name", "status", "unit", "parent_id"
    )
    return [DefinitionRow(*row) for row in rows]


def journeys_with_versions() -> list[Journey]:
    """Every journey with its active version, by name (a configuration table)."""
    return list(Journey.objects.select_related("active_version").order_by("name", "id"))


# --- Headline counts ------------------------------------------------------------------------


def events_received(*, since: dt.datetime, until: dt.datetime) -> int:
    """Events received (ingested) from ``since`` to ``until``."""
    floor = newest_id_before(Event, "received_at", since)
    return Event.objects.filter(
        pk__gt=floor, received_at__gte=since, received_at__lte=until
    ).count()


def outcomes_occurred(
    *, definition_ids: Collection[int], since: dt.datetime, until: dt.datetime
) -> dict[str, int]:
    """Outcomes of the definitions that occurred from ``since`` to ``until``, by kind (each
    kind, 0 when none): achievements (late ones included) and deadlines missed."""
    found: dict[str, int] = {}
    if definition_ids:
        rows = (
            MilestoneOutcome.objects.filter(
                definition_id__in=sorted(definition_ids),
                kind__in=OutcomeKind.values,
                occurred_at__gte=since,
                occurred_at__lte=until,
            )
            .order_by()
            .values_list("kind")
            .annotate(count=Count("*"))
        )
        found = dict(rows)
    return {kind: found.get(kind, 0) for kind in OutcomeKind.values}


# --- Cohorts --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class CohortRow:
    week: dt.datetime  # Monday 00:00 UTC
    size: int
    achieved: int


def cohort_completion(
    *, definition_id: int, unit: str, start: dt.datetime, end: dt.datetime
) -> list[CohortRow]:
    """Subjects (customers or accounts, as ``unit``) created from ``start`` to ``end``, by the
    ISO week (UTC) of their creation: how many, and how many have achieved the definition
    (any version, late included). Only weeks with subjects have a row."""
    achieved = MilestoneOutcome.objects.filter(
        subject_id=OuterRef("pk"), definition_id=definition_id, kind=OutcomeKind.ACHIEVED
    )
    rows = (
        _created(unit, start, end)
        .annotate(week=TruncWeek("created_at", tzinfo=dt.UTC))
        .order_by()
        .values("week")
        .annotate(size=Count("pk"), achieved=Count("pk", filter=Q(Exists(achieved))))
        .order_by("week")
    )
    return [CohortRow(row["week"], row["size"], row["achieved"]) for row in rows]


def cohort_achievers(
    *, definition_ids: Collection[int], unit: str, start: dt.datetime, end: dt.datetime
) -> dict[int, int]:
    """Of the subjects created from ``start`` to ``end``, how many achieved each definition
    (every id asked for has an entry)."""
    found: dict[int, int] = {}
    if definition_ids:
        rows = (
            MilestoneOutcome.objects.filter(
                definition_id__in=sorted(definition_ids),
                kind=OutcomeKind.ACHIEVED,
                unit=unit,
                subject_id__in=_created(unit, start, end).values("pk"),
            )
            .order_by()
            .values_list("definition_id")
            .annotate(count=Count("subject_id", distinct=True))
        )
        found = dict(rows)
    return {pk: found.get(pk, 0) for pk in definition_ids}


def cohort_size(*, unit: str, start: dt.datetime, end: dt.datetime) -> int:
    return _created(unit, start, end).count()


def _created(
    unit: str, start: dt.datetime, end: dt.datetime
) -> QuerySet[Customer] | QuerySet[Account]:
    window = Q(created_at__gte=start, created_at__lte=end)
    if unit == Unit.ACCOUNT:
        return Account.objects.filter(window).order_by()
    return Customer.objects.filter(window).order_by()


# --- Time to milestone ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SortedSample:
    """``size`` times to milestone, of which ``values`` holds those at the 0-based sorted
    positions asked for."""

    size: int
    values: dict[int, dt.timedelta]


def _achievers(definition_id: int, since: dt.datetime, until: dt.datetime) -> QuerySet[Progress]:
    """Progress rows of the definition (any version) achieved from ``since`` to ``until``."""
    in_window = MilestoneOutcome.objects.filter(
        definition_id=definition_id,
        kind=OutcomeKind.ACHIEVED,
        occurred_at__gte=since,
        occurred_at__lte=until,
        subject_id=OuterRef("subject_id"),
        version_id=OuterRef("version_id"),
    )
    return (
        Progress.objects.filter(
            definition_id=definition_id,
            state=ProgressState.ACHIEVED,
            achieved_at__gte=since,
            achieved_at__lte=until,
        )
        .filter(Exists(in_window))
        .order_by()
    )


def time_to_milestone_sample(
    *, definition_id: int, since: dt.datetime, until: dt.datetime, positions: Sequence[float]
) -> SortedSample:
    """How many achieved the definition from ``since`` to ``until`` and, sorted by time to
    milestone (``achieved_at - anchor_at``), the times at the first and last positions and
    at those either side of each fraction of ``positions`` (see ``stats.percentile``)."""
    duration = time_to_milestone()
    ranked = _achievers(definition_id, since, until).annotate(
        duration=duration,
        row=Window(RowNumber(), order_by=[duration.asc(), F("id").asc()]),
        size=Window(Count("id")),
    )
    near = Q(row=1) | Q(row=F("size"))
    for fraction in positions:
        position = ExpressionWrapper((F("size") - 1) * fraction, output_field=FloatField())
        # 1-based row = position + 1: the rows less than one position away from it.
        near |= Q(row__gt=position, row__lt=position + 2)
    size, values = 0, {}
    for row, total, value in ranked.filter(near).values_list("row", "size", "duration"):
        size, values[row - 1] = total, value
    return SortedSample(size=size, values=values)


def time_to_milestone_below(
    *, definition_id: int, since: dt.datetime, until: dt.datetime, edges: Sequence[dt.timedelta]
) -> list[int]:
    """For each edge, how many achieved the definition from ``since`` to ``until`` in less
    time than it."""
    if not edges:
        return []
    below = {
        f"below_{n}": Count("id", filter=Q(achieved_at__lt=F("anchor_at") + edge))
        for n, edge in enumerate(edges)
    }
    found = _achievers(definition_id, since, until).aggregate(**below)
    return [int(found[f"below_{n}"]) for n in range(len(edges))]
