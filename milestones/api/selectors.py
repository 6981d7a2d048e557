"""Reads behind the milestones API, each at a fixed number of queries per page: related rows are
joined or prefetched, and counts are one aggregate."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping

from django.db import connection
from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    Count,
    F,
    Func,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)

from customers.models import Account, Customer
from milestones.models import (
    MilestoneDefinition,
    MilestoneOutcome,
    MilestoneVersion,
    Progress,
    ProgressState,
    Unit,
)

#: The working-copy fields a dry run can preview without saving.
PREVIEW_FIELDS = (
    "condition",
    "anchor",
    "anchor_event",
    "anchor_milestone",
    "window",
    "eligibility",
)


# --- Definitions ------------------------------------------------------------------------------


def definitions_listed() -> QuerySet[MilestoneDefinition]:
    """Definitions by key, with the parent, the active version and both users joined in."""
    return MilestoneDefinition.objects.select_related(
        "parent", "active_version", "created_by", "updated_by"
    ).order_by("key")


def definitions_with_versions() -> QuerySet[MilestoneDefinition]:
    """``definitions_listed`` plus every version, newest first, in one extra query."""
    return definitions_listed().prefetch_related(
        Prefetch("versions", queryset=MilestoneVersion.objects.order_by("-number"))
    )


def definition_for_key(*, key: str) -> MilestoneDefinition | None:
    return MilestoneDefinition.objects.filter(key=key).first()


def progress_counts(*, version_id: int) -> dict[str, int]:
    """How many subjects are in each progress state on a version: one aggregate query."""
    counts: dict[str, int] = Progress.objects.filter(version_id=version_id).aggregate(
        **{state: Count("id", filter=Q(state=state)) for state in ProgressState.values}
    )
    return counts


def definition_preview(
    definition: MilestoneDefinition, overrides: Mapping[str, object]
) -> MilestoneDefinition:
    """An unsaved copy of ``definition`` whose working copy has ``overrides`` applied.

    Only for reading (a dry run): the copy keeps the primary key, so saving it would
    overwrite the definition."""
    unknown = sorted(set(overrides) - set(PREVIEW_FIELDS))
    if unknown:
        raise ValueError(f"{unknown[0]} cannot be previewed")
    preview = copy.copy(definition)
    for name, value in overrides.items():
        setattr(preview, name, value)
    return preview


# --- A subject's progress ---------------------------------------------------------------------


def subject_exists(*, unit: str, subject_id: int) -> bool:
    model = Account if unit == Unit.ACCOUNT else Customer
    return model.objects.filter(pk=subject_id).exists()


def subject_progress(*, unit: str, subject_id: int) -> QuerySet[Progress]:
    """One subject's progress on every version it was evaluated on (retired ones included),
    by definition key and newest version first; served by the (unit, subject_id) index."""
    return (
        Progress.objects.filter(unit=unit, subject_id=subject_id)
        .select_related("definition", "version")
        .order_by("definition__key", "-version__number")
    )


# --- The outcomes feed ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FeedPosition:
    """A reader's place in the outcomes feed: just after the row ``(xact_id, id)``."""

    xact_id: int | None
    id: int


class SnapshotXmin(Func):
    """The oldest transaction still running when the statement's snapshot was taken
    (PostgreSQL). Every transaction with a smaller id has committed or aborted, so no row with
    a smaller ``xact_id`` can appear after this statement."""

    template = "(pg_snapshot_xmin(pg_current_snapshot())::text::bigint)"
    arity = 0
    output_field = BigIntegerField()


def outcomes_feed(
    *,
    definition_key: str | None = None,
    kind: str | None = None,
    unit: str | None = None,
    subject_id: int | None = None,
) -> QuerySet[MilestoneOutcome]:
    """Outcomes in feed order, ``(xact_id, id)``, narrowed by the given filters.

    On PostgreSQL only rows of transactions older than the snapshot's xmin are served. Rows
    are numbered when inserted but become visible when their transaction commits, in another
    order; below xmin every transaction has finished, so the served prefix never grows in the
    middle and a cursor past a row can never miss one that commits later. The price: a long
    transaction anywhere in the cluster holds newer outcomes back (it delays, never loses).
    Without PostgreSQL (SQLite, one writer at a time) ``xact_id`` is NULL and rows go by id.
    """
    outcomes = MilestoneOutcome.objects.annotate(
        definition_key=F("definition__key"),
        version_number=F("version__number"),
        subject_external_id=_subject_external_id(),
    )
    if connection.vendor == "postgresql":
        outcomes = outcomes.filter(xact_id__lt=SnapshotXmin())
    if definition_key is not None:
        outcomes = outcomes.filter(definition__key=definition_key)
    if kind is not None:
        outcomes = outcomes.filter(kind=kind)
    if unit is not None:
        outcomes = outcomes.filter(unit=unit)
    if subject_id is not None:
        outcomes = outcomes.filter(subject_id=subject_id)
    # NULLs first, as ``outcomes_after`` expects: SQLite's default; PostgreSQL serves none.
    # (An explicit NULLS FIRST would keep PostgreSQL off the ``outcome_feed`` index.)
    return outcomes.order_by("xact_id", "id")


def outcomes_after(
    outcomes: QuerySet[MilestoneOutcome], position: FeedPosition
) -> QuerySet[MilestoneOutcome]:
    """The rows of ``outcomes`` after ``position`` in feed order. ``xact_id >= x`` is the
    index range (``outcome_feed``); the exclusion drops the few rows of that one transaction
    already read."""
    if position.xact_id is None:
        return outcomes.filter(Q(xact_id__isnull=False) | Q(id__gt=position.id))
    return outcomes.filter(xact_id__gte=position.xact_id).exclude(
        xact_id=position.xact_id, id__lte=position.id
    )


def _subject_external_id() -> Case:
    def external_id(model: type[Customer] | type[Account]) -> Subquery:
        subject = model.objects.filter(pk=OuterRef("subject_id")).order_by()
        return Subquery(subject.values("external_id")[:1])

    return Case(
        When(unit=Unit.CUSTOMER, then=external_id(Customer)),
        When(unit=Unit.ACCOUNT, then=external_id(Account)),
        default=Value(None),
        output_field=CharField(),
    )
