"""Per-step counts and lift of a journey, over all its versions or one of them.

Per step key:

- *entered*: enrollments that reached the step: those with a step run there (written when a
  step is carried out or a wait ends) plus those whose current step it is without one yet
  (waiting there, due there, or ended there by an exit rule);
- *waiting*: enrollments waiting there now;
- *sent*, *pending*, *suppressed* and *failed* by reason: the messages the step asked for,
  read through ``StepRun.message_id``;
- *exited*: enrollments that finished there (completed at an exit step or left by an exit
  rule); *converted*: enrollments that reached the step and met the goal.

The lift compares the goal conversion rate (``converted_at`` set / enrolled) of customers
in the journey with that of the held-out control group: relative, ``test / holdout - 1``,
shown only when both groups have at least ``min_sample`` enrollments. All counts are a
fixed number of grouped queries, whatever the number of enrollments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Final, TypeAlias

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery

from journeys.graph import Graph, GraphError, graph_parse
from journeys.models import Enrollment, EnrollmentState, Journey, JourneyVersion, StepRun
from messaging.models import Message, MessageStatus

#: Enrollments each group needs before a lift is worth reading.
LIFT_MIN_SAMPLE: Final = 100
SENT: Final = frozenset(
    {
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
        MessageStatus.OPENED,
        MessageStatus.CLICKED,
        MessageStatus.COMPLAINED,
        MessageStatus.BOUNCED,
    }
)
PENDING: Final = frozenset({MessageStatus.QUEUED, MessageStatus.DEFERRED, MessageStatus.SENDING})
FAILED: Final = frozenset({MessageStatus.FAILED, MessageStatus.UNCONFIRMED})
_FINISHED: Final = (EnrollmentState.COMPLETED, EnrollmentState.EXITED)


@dataclasses.dataclass(slots=True)
class StepCounts:
    key: str
    type: str  # "" for a step only older versions have
    entered: int = 0
    waiting: int = 0
    sent: int = 0
    pending: int = 0
    suppressed: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> count
    failed: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> count
    exited: int = 0
    converted: int = 0


#: A step's counts by key, made on first use.
_At: TypeAlias = Callable[[str], StepCounts]


@dataclasses.dataclass(frozen=True, slots=True)
class Lift:
    test_enrolled: int
    test_converted: int
    holdout_enrolled: int
    holdout_converted: int
    min_sample: int

    @property
    def test_rate(self) -> float | None:
        return _rate(self.test_converted, self.test_enrolled)

    @property
    def holdout_rate(self) -> float | None:
        return _rate(self.holdout_converted, self.holdout_enrolled)

    @property
    def is_enough(self) -> bool:
        return min(self.test_enrolled, self.holdout_enrolled) >= self.min_sample

    @property
    def lift(self) -> float | None:
        """``test rate / holdout rate - 1``; None without enough data or holdout conversions."""
        test, holdout = self.test_rate, self.holdout_rate
        if not self.is_enough or test is None or not holdout:
            return None
        return test / holdout - 1

    @property
    def sentence(self) -> str:
        counts = (
            f"in the journey {_percent(self.test_rate)} ({self.test_converted} of "
            f"{self.test_enrolled}), held out {_percent(self.holdout_rate)} "
            f"({self.holdout_converted} of {self.holdout_enrolled})"
        )
        if not self.is_enough:
            return (
                f"Not enough data: a lift needs at least {self.min_sample} enrollments in each "
                f"group. Converted so far: {counts}."
            )
        lift = self.lift
        if lift is None:
            return (
                f"No held-out customer has converted yet, so there is no lift to compute. "
                f"Converted: {counts}."
            )
        return f"Lift {lift:+.1%}. Converted: {counts}."


@dataclasses.dataclass(frozen=True, slots=True)
class JourneyReport:
    version: int | None  # the version number reported on; None for all versions
    has_goal: bool
    enrolled: int
    steps: tuple[StepCounts, ...]
    lift: Lift


def journey_report(
    *,
    journey: Journey,
    version: JourneyVersion | None = None,
    min_sample: int = LIFT_MIN_SAMPLE,
) -> JourneyReport:
    """Counts for ``version``'s enrollments, or for every version's when it is None. Steps
    come in the order of that version's graph (or of the active version, else the working
    copy), then any step only older versions have, by key."""
    enrollments = Enrollment.objects.filter(journey_id=journey.pk)
    runs = StepRun.objects.filter(enrollment__journey_id=journey.pk)
    if version is not None:
        enrollments = enrollments.filter(version_id=version.pk)
        runs = runs.filter(enrollment__version_id=version.pk)
    shown = version or journey.active_version
    graph = _graph(shown.steps if shown is not None else journey.steps)
    steps: dict[str, StepCounts] = {}

    def at(key: str) -> StepCounts:
        if key not in steps:
            steps[key] = StepCounts(key, "")
        return steps[key]

    for step in graph.steps if graph is not None else ():
        steps[step.key] = StepCounts(step.key, step.type)
    known = len(steps)
    _count_runs(runs, at)
    _count_positions(enrollments, at)
    _count_messages(runs, at)
    extra = sorted(list(steps)[known:])
    ordered = [*list(steps.values())[:known], *(steps[key] for key in extra)]
    goal = shown.goal if shown is not None else journey.goal
    lift, enrolled = _lift(enrollments, min_sample)
    return JourneyReport(
        version=None if version is None else version.number,
        has_goal=goal is not None,
        enrolled=enrolled,
        steps=tuple(ordered),
        lift=lift,
    )


def _graph(raw: object) -> Graph | None:
    try:
        return graph_parse(raw)
    except GraphError:
        return None  # a working copy mid-edit: the steps still show, by key


def _count_runs(runs: QuerySet[StepRun], at: _At) -> None:
    rows = runs.values("step_key").annotate(
        entered=Count("enrollment", distinct=True),
        converted=Count(
            "enrollment", distinct=True, filter=Q(enrollment__converted_at__isnull=False)
        ),
    )
    for row in rows:
        counts = at(row["step_key"])
        counts.entered += row["entered"]
        counts.converted += row["converted"]


def _count_positions(enrollments: QuerySet[Enrollment], at: _At) -> None:
    """Where enrollments are now, or ended: those with no run at their current step yet
    entered it too."""
    ran_here = StepRun.objects.filter(
        enrollment_id=OuterRef("pk"), step_key=OuterRef("current_step")
    )
    rows = (
        enrollments.exclude(current_step="")
        .annotate(ran_here=Exists(ran_here))
        .values("current_step", "state", "ran_here")
        .annotate(total=Count("pk"), converted=Count("pk", filter=Q(converted_at__isnull=False)))
        .order_by()
    )
    for row in rows:
        counts = at(row["current_step"])
        if not row["ran_here"]:
            counts.entered += row["total"]
            counts.converted += row["converted"]
        if row["state"] == EnrollmentState.WAITING:
            counts.waiting += row["total"]
        elif row["state"] in _FINISHED:
            counts.exited += row["total"]


def _count_messages(runs: QuerySet[StepRun], at: _At) -> None:
    message = Message.objects.filter(pk=OuterRef("message_id"))
    rows = (
        runs.filter(message_id__isnull=False)
        .annotate(
            message_status=Subquery(message.values("status")[:1]),
            message_reason=Subquery(message.values("reason")[:1]),
        )
        .values("step_key", "message_status", "message_reason")
        .annotate(total=Count("pk"))
        .order_by()
    )
    for row in rows:
        counts = at(row["step_key"])
        status, reason, total = row["message_status"], row["message_reason"] or "", row["total"]
        if status in SENT:
            counts.sent += total
        elif status in PENDING:
            counts.pending += total
        elif status == MessageStatus.SUPPRESSED:
            counts.suppressed[reason] = counts.suppressed.get(reason, 0) + total
        elif status in FAILED:
            counts.failed[reason] = counts.failed.get(reason, 0) + total


def _lift(enrollments: QuerySet[Enrollment], min_sample: int) -> tuple[Lift, int]:
    held = Q(state=EnrollmentState.HOLDOUT)
    converted = Q(converted_at__isnull=False)
    totals: Mapping[str, int] = enrollments.aggregate(
        test=Count("pk", filter=~held),
        test_converted=Count("pk", filter=~held & converted),
        holdout=Count("pk", filter=held),
        holdout_converted=Count("pk", filter=held & converted),
    )
    lift = Lift(
        test_enrolled=totals["test"],
        test_converted=totals["test_converted"],
        holdout_enrolled=totals["holdout"],
        holdout_converted=totals["holdout_converted"],
        min_sample=min_sample,
    )
    return lift, totals["test"] + totals["holdout"]


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"
