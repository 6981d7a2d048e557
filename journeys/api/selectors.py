"""Reads behind the journeys API, each at a fixed number of queries per page: related rows are
joined or prefetched, and enrollment counts are one aggregate for the whole page."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, JSONField, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import JSONObject

from journeys.models import Enrollment, EnrollmentState, Journey, JourneyVersion, StepRun
from messaging.models import Message

# --- Journeys ---------------------------------------------------------------------------------


def journeys_listed() -> QuerySet[Journey]:
    """Journeys by key, with the active version joined in."""
    return Journey.objects.select_related("active_version").order_by("key")


def journeys_with_versions() -> QuerySet[Journey]:
    """``journeys_listed`` plus every version (and who made it), newest first, in one extra
    query."""
    versions = JourneyVersion.objects.select_related("created_by").order_by("-number")
    return journeys_listed().prefetch_related(Prefetch("versions", queryset=versions))


def enrollment_counts(*, version_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Enrollments per state on each of the versions, every state present (zero included):
    one aggregate over the ``(version, customer, entry_key)`` index."""
    wanted = set(version_ids)
    counts = {version_id: dict.fromkeys(EnrollmentState.values, 0) for version_id in wanted}
    if not wanted:
        return counts
    rows = (
        Enrollment.objects.filter(version_id__in=wanted)
        .order_by()
        .values_list("version_id", "state")
        .annotate(total=Count("id"))
    )
    for version_id, state, total in rows:
        counts[version_id][state] = total
    return counts


# --- A customer's enrollments -----------------------------------------------------------------


def customer_enrollments(*, customer_id: int) -> QuerySet[Enrollment]:
    """The customer's enrollments (newest first once paginated), with journey and version
    joined in and the step runs prefetched in the order they ran. A run that handed a send
    to the outbox carries its message's id, status, channel and reason as ``message``."""
    message = Message.objects.filter(pk=OuterRef("message_id")).values(
        summary=JSONObject(id="id", status="status", channel="channel", reason="reason")
    )
    runs = StepRun.objects.annotate(
        message=Subquery(message[:1], output_field=JSONField())
    ).order_by("at", "id")
    return (
        Enrollment.objects.filter(customer_id=customer_id)
        .select_related("journey", "version")
        .prefetch_related(Prefetch("runs", queryset=runs))
    )
