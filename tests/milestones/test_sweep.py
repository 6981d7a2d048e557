"""The missed-deadline sweep, starting subjects without events, and the reconciler."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import time_machine
from django.db import transaction

from customers.models import Customer
from milestones import sweep
from milestones.evaluation import pending_evaluate
from milestones.models import (
    MilestoneDefinition,
    MilestoneOutcome,
    PendingEvaluation,
    Progress,
    ProgressState,
)
from milestones.signals import OutcomeRecord, outcomes_recorded
from milestones.tasks import reconcile_task
from tests.factories import CustomerFactory, EventFactory
from tests.milestones.conftest import T0

pytestmark = pytest.mark.django_db

Make = Callable[..., MilestoneDefinition]
DAY = dt.timedelta(days=1)


@pytest.fixture
def published() -> Iterator[list[OutcomeRecord]]:
    seen: list[OutcomeRecord] = []

    def receiver(sender: Any, outcomes: list[OutcomeRecord], **kwargs: Any) -> None:
        seen.extend(outcomes)

    outcomes_recorded.connect(receiver)
    yield seen
    outcomes_recorded.disconnect(receiver)


def open_rows(
    definition: MilestoneDefinition, *deadlines: dt.datetime, **fields: Any
) -> list[Progress]:
    rows = []
    for deadline in deadlines:
        customer = CustomerFactory(created_at=deadline - DAY)
        rows.append(
            Progress.objects.create(
                version_id=definition.active_version_id,
                definition=definition,
                unit="customer",
                subject_id=customer.pk,
                anchor_at=deadline - DAY,
                deadline_at=deadline,
                **fields,
            )
        )
    return rows


def test_the_sweep_records_a_missed_outcome_at_the_deadline_for_each_due_row(
    milestone: Make,
    published: list[OutcomeRecord],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.MILESTONES_SWEEP_GRACE_SECONDS = 60
    definition = milestone(window=DAY)
    due, also_due, not_yet = open_rows(
        definition,
        T0 - dt.timedelta(hours=2),
        T0 - dt.timedelta(minutes=2),
        T0 - dt.timedelta(seconds=30),
    )

    with django_capture_on_commit_callbacks(execute=True):
        result = sweep.deadlines_sweep(now=T0)

    assert (result.missed, result.is_done) == (2, True)
    states = dict(Progress.objects.values_list("pk", "state"))
    assert states == {due.pk: "missed", also_due.pk: "missed", not_yet.pk: "in_progress"}
    outcomes = list(
        MilestoneOutcome.objects.order_by("occurred_at").values_list(
            "subject_id", "kind", "occurred_at"
        )
    )
    assert outcomes == [
        (due.subject_id, "missed", due.deadline_at),
        (also_due.subject_id, "missed", also_due.deadline_at),
    ]
    assert MilestoneOutcome.objects.filter(xact_id__isnull=True).count() == 0
    assert sorted((r.subject_id, r.key, r.kind) for r in published) == sorted(
        [(due.subject_id, "activated", "missed"), (also_due.subject_id, "activated", "missed")]
    )
    assert Progress.objects.get(pk=due.pk).missed_at == due.deadline_at


def test_sweeping_again_records_nothing_more(milestone: Make) -> None:
    definition = milestone(window=DAY)
    open_rows(definition, T0 - DAY)
    sweep.deadlines_sweep(now=T0)

    result = sweep.deadlines_sweep(now=T0)

    assert result.missed == 0
    assert MilestoneOutcome.objects.count() == 1


def test_rows_that_are_achieved_ineligible_or_without_deadline_are_left_alone(
    milestone: Make,
) -> None:
    definition = milestone(window=DAY)
    open_rows(definition, T0 - DAY, state=ProgressState.ACHIEVED)
    open_rows(definition, T0 - DAY, state=ProgressState.INELIGIBLE)
    customer = CustomerFactory()
    Progress.objects.create(
        version_id=definition.active_version_id,
        definition=definition,
        unit="customer",
        subject_id=customer.pk,
        anchor_at=T0 - DAY,
    )

    assert sweep.deadlines_sweep(now=T0).missed == 0
    assert not MilestoneOutcome.objects.exists()


def test_a_row_with_a_pending_evaluation_is_left_for_the_evaluator(milestone: Make) -> None:
    definition = milestone(window=DAY)
    (row,) = open_rows(definition, T0 - DAY)
    PendingEvaluation.objects.create(version_id=row.version_id, subject_id=row.subject_id)

    assert sweep.deadlines_sweep(now=T0).missed == 0
    assert Progress.objects.get().state == ProgressState.IN_PROGRESS


def test_the_sweep_works_in_bounded_batches_oldest_deadline_first(milestone: Make) -> None:
    definition = milestone(window=DAY)
    open_rows(definition, *(T0 - dt.timedelta(hours=h) for h in range(2, 7)))

    result = sweep.deadlines_sweep(now=T0, batch=2)

    assert (result.missed, result.batches, result.is_done) == (5, 3, True)


def test_the_sweep_stops_when_its_time_budget_is_spent_and_the_next_run_continues(
    milestone: Make,
) -> None:
    definition = milestone(window=DAY)
    open_rows(definition, *(T0 - dt.timedelta(hours=h) for h in range(2, 7)))
    ticks = itertools.count(0, 10)

    first = sweep.deadlines_sweep(now=T0, batch=2, budget_seconds=25, clock=lambda: next(ticks))

    assert (first.missed, first.batches, first.is_done) == (4, 2, False)
    assert sweep.deadlines_sweep(now=T0, batch=2).missed == 1


def test_the_portable_sweep_marks_the_same_rows(milestone: Make) -> None:
    definition = milestone(window=DAY)
    due, not_yet = open_rows(definition, T0 - DAY, T0 + DAY)
    PendingEvaluation.objects.create(version_id=due.version_id, subject_id=0)

    with transaction.atomic():
        rows = sweep._sweep_batch_orm(T0, 10, T0)

    assert [(r[4], r[5]) for r in rows] == [(due.subject_id, due.deadline_at)]
    assert Progress.objects.get(pk=due.pk).missed_at == due.deadline_at
    assert Progress.objects.get(pk=not_yet.pk).state == "in_progress"


def test_a_signup_anchored_milestone_starts_customers_who_never_send_a_matching_event(
    milestone: Make, settings: Any
) -> None:
    settings.MILESTONES_SWEEP_GRACE_SECONDS = 0
    quiet = CustomerFactory(created_at=T0)
    milestone(window=DAY)

    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False):
        assert sweep.progress_start() == 1
        assert sweep.progress_start() == 0  # already queued
        pending_evaluate()
    with time_machine.travel(T0 + 2 * DAY, tick=False):
        result = sweep.deadlines_sweep()

    assert result.missed == 1
    outcome = MilestoneOutcome.objects.get()
    assert (outcome.subject_id, outcome.kind, outcome.occurred_at) == (quiet.pk, "missed", T0 + DAY)


def test_starting_looks_back_for_subjects_committed_after_a_larger_id(milestone: Make) -> None:
    definition = milestone(window=DAY)
    late, started = CustomerFactory(), CustomerFactory()
    version = definition.active_version
    assert version is not None
    version.started_through_id = started.pk
    version.save()
    Progress.objects.create(
        version=version, definition=definition, unit="customer", subject_id=started.pk, anchor_at=T0
    )

    assert sweep.progress_start() == 1
    assert list(PendingEvaluation.objects.values_list("subject_id", flat=True)) == [late.pk]


def test_the_reconciler_wakes_the_evaluator_only_for_old_pending_rows(
    milestone: Make, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.MILESTONES_RECONCILE_AFTER_SECONDS = 30
    definition = milestone()
    woken: list[bool] = []
    monkeypatch.setattr("milestones.tasks.evaluate_task.delay", lambda: woken.append(True))
    with time_machine.travel(T0, tick=False):
        PendingEvaluation.objects.create(version_id=definition.active_version_id, subject_id=1)

    with time_machine.travel(T0 + dt.timedelta(seconds=29), tick=False):
        assert reconcile_task() is False
    with time_machine.travel(T0 + dt.timedelta(seconds=30), tick=False):
        assert reconcile_task() is True

    assert woken == [True]
    assert Customer.objects.count() == 0


def test_a_subject_who_did_it_after_the_deadline_is_queued_for_its_late_achievement(
    milestone: Make,
) -> None:
    definition = milestone(window=DAY)
    late, idle = open_rows(definition, T0 - DAY, T0 - DAY)
    customer = Customer.objects.get(pk=late.subject_id)
    EventFactory(customer=customer, name="Task Done", occurred_at=T0 - DAY + dt.timedelta(hours=1))
    EventFactory(customer=customer, name="Other", occurred_at=T0)
    other = Customer.objects.get(pk=idle.subject_id)
    EventFactory(customer=other, name="Task Done", occurred_at=T0 - 2 * DAY)  # before: not late

    sweep.deadlines_sweep(now=T0)

    assert list(PendingEvaluation.objects.values_list("subject_id", flat=True)) == [customer.pk]
    with time_machine.travel(T0, tick=False):
        pending_evaluate()
    kinds = MilestoneOutcome.objects.filter(subject_id=customer.pk).order_by("id")
    assert list(kinds.values_list("kind", "is_late")) == [("missed", False), ("achieved", True)]


def test_the_portable_sweep_queues_late_achievers_too(milestone: Make) -> None:
    definition = milestone(window=DAY)
    (late,) = open_rows(definition, T0 - DAY)
    customer = Customer.objects.get(pk=late.subject_id)
    EventFactory(customer=customer, name="Task Done", occurred_at=T0 - DAY + dt.timedelta(hours=1))

    with transaction.atomic():
        sweep._sweep_batch_orm(T0, 10, T0)

    assert list(PendingEvaluation.objects.values_list("subject_id", flat=True)) == [customer.pk]
