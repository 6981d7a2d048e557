"""Moving running enrollments of older versions to the journey's active version.

Going live never moves anyone: enrollments finish on the version they started on. This is the
explicit step a marketer takes after fixing a journey, for the customers already in it. An
enrollment moves when its current step's key exists in the active version's graph; it then
carries on from the step of that key as the active version defines it. Everyone else stays
on their version (their step is gone, or the customer already has an enrollment in the
active version for the same entry), and so do finished and held-out enrollments.

A waiting enrollment keeps the moment its wait started: a wait of the new version ends
(or times out) counted from then, and a step that is no longer a wait runs now. All in one
transaction, with the journey locked against going live meanwhile and the enrollments locked
in id-ordered batches (the runner skips locked rows; exits wait for them); one change-log row
records what moved.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from typing import Any, Final

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from journeys.graph import DurationWait, Graph, LocalTimeWait, UntilWait, timeout_at, wait_until
from journeys.models import (
    Enrollment,
    EnrollmentState,
    Journey,
    JourneyChange,
    JourneyStatus,
    JourneyVersion,
)
from journeys.runner import version_graph
from journeys.services import JourneyInvalid

_RUNNING: Final = (EnrollmentState.ACTIVE, EnrollmentState.WAITING)
_BATCH: Final = 500
_FIELDS: Final = ["version", "state", "next_run_at", "updated_at"]
ACTION: Final = "migrated enrollments"


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int  # the number of the version they moved to
    moved: int
    stayed: int
    moved_from: dict[int, int]  # older version number -> enrollments moved from it
    stayed_at: dict[str, int]  # "v<number> <step key>" -> enrollments that stay there


def enrollments_migrate(
    *,
    journey_id: int,
    user: AbstractBaseUser | None = None,
    now: dt.datetime | None = None,
) -> Migration:
    """Move the journey's running enrollments of older versions whose current step exists in
    the active version to it; returns what moved and what stayed. Raises ``JourneyInvalid``
    for a journey with no active version or an archived one. Running it again moves nothing
    new (it is idempotent)."""
    now = now or timezone.now()
    with transaction.atomic():
        journey = (
            Journey.objects.select_for_update(of=("self",))
            .select_related("active_version")
            .get(pk=journey_id)
        )
        target = journey.active_version
        if target is None:
            raise JourneyInvalid("the journey has never gone live: there is no version to move to")
        if journey.status == JourneyStatus.ARCHIVED:
            raise JourneyInvalid("an archived journey's enrollments stay where they are")
        graph = version_graph(target)
        moved_from: Counter[int] = Counter()
        stayed_at: Counter[str] = Counter()
        after = 0
        while True:
            batch = _batch(journey.pk, target.pk, after)
            if not batch:
                break
            after = batch[-1].pk
            moved = _move_batch(batch, target, graph, now, moved_from, stayed_at)
            Enrollment.objects.bulk_update(moved, _FIELDS)
        result = Migration(
            version=target.number,
            moved=sum(moved_from.values()),
            stayed=sum(stayed_at.values()),
            moved_from=dict(sorted(moved_from.items())),
            stayed_at=dict(sorted(stayed_at.items())),
        )
        JourneyChange.objects.create(
            journey=journey,
            action=ACTION,
            changes=_change(result),
            user_id=user.pk if user is not None else None,
            at=now,
        )
    return result


def _batch(journey_id: int, target_id: int, after: int) -> list[Enrollment]:
    return list(
        Enrollment.objects.select_for_update(of=("self",))
        .filter(journey_id=journey_id, state__in=_RUNNING, pk__gt=after)
        .exclude(version_id=target_id)
        .select_related("version", "customer")
        .order_by("pk")[:_BATCH]
    )


def _move_batch(
    batch: list[Enrollment],
    target: JourneyVersion,
    graph: Graph,
    now: dt.datetime,
    moved_from: Counter[int],
    stayed_at: Counter[str],
) -> list[Enrollment]:
    keys = {step.key for step in graph.steps}
    # The same entry cannot enroll a customer twice in one version (a unique constraint).
    taken = set(
        Enrollment.objects.filter(
            version_id=target.pk, customer_id__in={e.customer_id for e in batch}
        ).values_list("customer_id", "entry_key")
    )
    moved = []
    for enrollment in batch:
        if enrollment.current_step not in keys or (
            (enrollment.customer_id, enrollment.entry_key) in taken
        ):
            stayed_at[f"v{enrollment.version.number} {enrollment.current_step}"] += 1
            continue
        moved_from[enrollment.version.number] += 1
        _move(enrollment, target, graph, now)
        moved.append(enrollment)
        taken.add((enrollment.customer_id, enrollment.entry_key))
    return moved


def _move(enrollment: Enrollment, target: JourneyVersion, graph: Graph, now: dt.datetime) -> None:
    enrollment.version, enrollment.updated_at = target, now
    if enrollment.state != EnrollmentState.WAITING:
        return  # due at its step: the runner carries it out as the new version defines it
    step = graph.step(enrollment.current_step)
    started = enrollment.step_started_at or enrollment.entered_at
    if isinstance(step, UntilWait):
        enrollment.next_run_at = timeout_at(step, started)
    elif isinstance(step, DurationWait | LocalTimeWait):
        enrollment.next_run_at = wait_until(step, started, enrollment.customer.time_zone)
    else:
        enrollment.state, enrollment.next_run_at = EnrollmentState.ACTIVE, now


def _change(result: Migration) -> dict[str, Any]:
    return {
        "to_version": result.version,
        "moved": result.moved,
        "stayed": result.stayed,
        "moved_from": {f"v{number}": count for number, count in result.moved_from.items()},
        "stayed_at": result.stayed_at,
    }
