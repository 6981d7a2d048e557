"""Reads behind the milestones API, each at a fixed number of queries per page: related rows are
joined or prefetched, and counts are one aggregate."""

from __future__ import annotations

import copy
from collections.abc import Mapping

from django.db.models import (
    Count,
    Prefetch,
    Q,
    QuerySet,
)

from customers.models import Account, Customer
from milestones.models import (
    MilestoneDefinition,
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
