"""Exits and goals, checked continuously: when a customer's milestone outcome or event
matches a journey's exit criteria, their running enrollment ends at once (not when its wait
ends); when it is the journey's goal within its window, the enrollment converts — held-out
enrollments included, so test and control conversion can be compared."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.cache import cached
from config.durability import commit_async
from config.wake import wake
from journeys.enrollment import Entry
from journeys.graph import UntilEvent, UntilWait, until_matches
from journeys.models import (
    Enrollment,
    EnrollmentState,
    JourneyVersion,
    StepRun,
    StepRunStatus,
    WebhookEvent,
)
from journeys.notices import enrollment_payloads, wants, webhooks_write
from journeys.rules import window_days

_RUNNING = (EnrollmentState.ACTIVE, EnrollmentState.WAITING)
_KINDS = frozenset({"event", "milestone_achieved", "milestone_missed"})


@cached(JourneyVersion)
def _watched() -> tuple[frozenset[str], frozenset[str]]:
    """The event names and milestone keys that some journey version's goal, exit rules or
    until-waits watch (every version: old ones may still have running enrollments), cached
    per process (config/cache.py). An entry about anything else cannot end, convert or wake
    an enrollment, so it costs no query; one a stale process passes over is handed on
    again by the sweeps."""
    from journeys.runner import version_graph

    events: set[str] = set()
    milestones: set[str] = set()
    for version in JourneyVersion.objects.only("steps", "goal", "exit_when"):
        goal = version.goal or {}
        if goal.get("milestone"):
            milestones.add(str(goal["milestone"]))
        for rule in version.exit_when or []:
            if isinstance(rule, dict) and "event" in rule:
                events.add(str(rule["event"]))
            elif isinstance(rule, dict) and rule.get("milestone"):
                milestones.add(str(rule["milestone"]))
        for step in version_graph(version).steps:
            if not isinstance(step, UntilWait):
                continue
            if isinstance(step.until, UntilEvent):
                events.add(step.until.event)
            else:
                milestones.add(step.until.milestone)
    return frozenset(events), frozenset(milestones)


def _exit_rule_matches(rule: dict[str, object], entry: Entry) -> bool:
    if "event" in rule:
        return entry.kind == "event" and rule["event"] == entry.subject
    state = rule.get("state", "achieved")
    return entry.kind == f"milestone_{state}" and rule.get("milestone") == entry.subject


def _converts(goal: dict[str, object] | None, enrollment: Enrollment, entry: Entry) -> bool:
    if not goal or enrollment.converted_at is not None:
        return False
    if entry.kind != "milestone_achieved" or goal.get("milestone") != entry.subject:
        return False
    within = dt.timedelta(days=window_days(goal.get("within"), "goal.within"))
    return enrollment.entered_at <= entry.at <= enrollment.entered_at + within


def _until_met(enrollment: Enrollment, entry: Entry, runs: list[StepRun]) -> bool:
    """An until-wait whose event or milestone state ``entry`` is: it ends now and the
    enrollment takes the wait's ``next`` (its timeout branch is for when nothing came)."""
    from journeys.runner import step_run_key, version_graph

    step = version_graph(enrollment.version).step(enrollment.current_step)
    if not isinstance(step, UntilWait):
        return False
    if entry.at < (enrollment.step_started_at or enrollment.entered_at):
        return False
    states = {entry.subject: entry.kind.removeprefix("milestone_")}
    is_event = entry.kind == "event"
    if not until_matches(
        step,
        event_name=entry.subject if is_event else "",
        properties=entry.properties if is_event else {},
        milestone_states={} if is_event else states,
    ):
        return False
    runs.append(
        StepRun(
            enrollment=enrollment,
            step_key=step.key,
            idempotency_key=step_run_key(enrollment.pk, step.key),
            status=StepRunStatus.DONE,
            result={"until": "met", "by": f"{entry.kind} {entry.subject}"},
            at=entry.at,
        )
    )
    enrollment.current_step, enrollment.step_started_at = step.next, entry.at
    return True


def exits_apply(entries: Sequence[Entry], *, now: dt.datetime | None = None) -> int:
    """End or convert the customers' enrollments that ``entries`` satisfy; returns how many
    enrollments changed. Idempotent: an ended enrollment is not ended again, a converted one
    keeps its first conversion time."""
    now = now or timezone.now()
    events, milestones = _watched.get()
    by_customer: dict[int, list[Entry]] = {}
    for entry in entries:
        watched = events if entry.kind == "event" else milestones
        if entry.kind in _KINDS and entry.subject in watched:
            by_customer.setdefault(entry.customer_id, []).append(entry)
    if not by_customer:
        return 0
    changed: list[Enrollment] = []
    runs: list[StepRun] = []
    with transaction.atomic():
        commit_async()  # derived work: see config/durability.py
        enrollments = (
            Enrollment.objects.select_for_update(of=("self",))
            .filter(customer_id__any=sorted(by_customer))
            # A finished enrollment can still convert, never exit; one that has converted too
            # is done with (and not locked).
            .filter(Q(state__in=_RUNNING) | Q(converted_at__isnull=True))
            .exclude(state=EnrollmentState.FAILED)
            .select_related("version", "journey")
            .order_by("pk")
        )
        converted: list[Enrollment] = []
        for enrollment in enrollments:
            was_converted = enrollment.converted_at is not None
            if _apply(enrollment, by_customer[enrollment.customer_id], now, runs):
                changed.append(enrollment)
                if not was_converted and enrollment.converted_at is not None:
                    converted.append(enrollment)
        Enrollment.objects.bulk_update(
            changed,
            [
                "state", "finished_at", "next_run_at", "exit_reason", "converted_at",
                "current_step", "step_started_at", "updated_at",
            ],
        )  # fmt: skip
        StepRun.objects.bulk_create(runs, ignore_conflicts=True)
        if converted and wants(WebhookEvent.JOURNEY_CONVERTED):
            webhooks_write(enrollment_payloads(converted, WebhookEvent.JOURNEY_CONVERTED))
        if any(e.state == EnrollmentState.ACTIVE for e in changed):
            transaction.on_commit(_wake)
    return len(changed)


def _wake() -> None:
    from journeys.tasks import enrollments_advance_task

    wake(enrollments_advance_task)


def _apply(
    enrollment: Enrollment, entries: list[Entry], now: dt.datetime, runs: list[StepRun]
) -> bool:
    version = enrollment.version
    changed = False
    for entry in entries:
        if entry.at < enrollment.entered_at:
            continue  # what happened before the customer entered does not end this pass
        if _converts(version.goal, enrollment, entry):
            enrollment.converted_at, changed = entry.at, True
        if enrollment.state not in _RUNNING:
            continue
        for rule in version.exit_when or []:
            if _exit_rule_matches(rule, entry):
                enrollment.state, enrollment.finished_at = EnrollmentState.EXITED, now
                enrollment.next_run_at = None
                enrollment.exit_reason = f"exit: {entry.kind} {entry.subject}"[:200]
                changed = True
                break
        if enrollment.state == EnrollmentState.WAITING and _until_met(enrollment, entry, runs):
            enrollment.state, enrollment.next_run_at = EnrollmentState.ACTIVE, now
            changed = True
    if changed:
        enrollment.updated_at = now
    return changed
