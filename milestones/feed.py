"""The outcomes feed: durable outcomes in an order a reader can resume without ever missing a
row (``(xact_id, id)``). Served over REST (``milestones.api``) and read by the journeys'
outcome sweep, which catches outcomes whose signal was lost."""

from __future__ import annotations

import dataclasses

from django.db import connection
from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    F,
    Func,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)

from customers.models import Account, Customer
from milestones.models import MilestoneOutcome, Unit

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
