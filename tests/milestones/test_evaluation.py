"""The evaluator end to end: ingest writes pending pairs, workers turn them into progress and
exactly-once outcomes, deadlines become missed outcomes, late achievements are told apart."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import time_machine
from django.db import transaction

from customers.ingest.parsing import Limits, parse_batch
from customers.ingest.service import events_ingest
from customers.models import Customer, Source
from customers.services import customers_merge
from milestones.evaluation import pairs_evaluate, pending_evaluate
from milestones.models import (
    MilestoneDefinition,
    MilestoneOutcome,
    PendingEvaluation,
    Progress,
    ProgressState,
)
from milestones.signals import OutcomeRecord, outcomes_recorded
from tests.factories import AccountFactory, CustomerFactory, SourceFactory
from tests.milestones.conftest import T0

pytestmark = pytest.mark.django_db

Make = Callable[..., MilestoneDefinition]
_ids = itertools.count()


@pytest.fixture
def source() -> Source:
    return SourceFactory()


def track(source: Source, user: str, event: str, at: dt.datetime, **properties: Any) -> None:
    """Ingest one track call through the real service, received at ``at``."""
    call = {
        "type": "track",
        "userId": user,
        "event": event,
        "timestamp": at.isoformat(),
        "messageId": f"m-{next(_ids)}",
        "properties": properties,
    }
    with time_machine.travel(at, tick=False):
        parsed = parse_batch(orjson.dumps({"batch": [call]}), at, Limits())
        events_ingest(source_id=source.pk, messages=parsed.messages, received_at=at)


def drain(at: dt.datetime) -> int:
    """Run the evaluator at ``at`` until nothing is pending; returns pairs evaluated."""
    done = 0
    with time_machine.travel(at, tick=False):
        while (summary := pending_evaluate()).pairs:
            done += summary.pairs
    return done


@pytest.fixture
def published() -> Iterator[list[OutcomeRecord]]:
    seen: list[OutcomeRecord] = []

    def receiver(sender: Any, outcomes: list[OutcomeRecord], **kwargs: Any) -> None:
        seen.extend(outcomes)

    outcomes_recorded.connect(receiver)
    yield seen
    outcomes_recorded.disconnect(receiver)


def hours(n: float) -> dt.timedelta:
    return dt.timedelta(hours=n)


ACTIVATION = {
    "type": "all",
    "conditions": [
        {"type": "event_count", "event": "Workspace Created", "at_least": 1},
        {"type": "event_count", "event": "Teammate Invited", "at_least": 1},
        {"type": "event_count", "event": "Task Completed", "at_least": 1},
    ],
}


def test_ingesting_a_matching_event_records_one_pending_pair_in_the_same_transaction(
    milestone: Make, source: Source
) -> None:
    definition = milestone(condition=ACTIVATION)

    track(source, "u1", "Workspace Created", T0)
    track(source, "u1", "Page Viewed", T0)

    customer = Customer.objects.get(external_id="u1")
    pending = list(PendingEvaluation.objects.values_list("version_id", "subject_id"))
    assert pending == [(definition.active_version_id, customer.pk)]


def test_progress_counts_conditions_until_all_are_met_then_records_one_outcome(
    milestone: Make,
    source: Source,
    published: list[OutcomeRecord],
    django_capture_on_commit_callbacks: Any,
) -> None:
    definition = milestone(condition=ACTIVATION, window=dt.timedelta(days=5))
    track(source, "u1", "Workspace Created", T0)
    track(source, "u1", "Teammate Invited", T0 + hours(1))
    drain(T0 + hours(2))
    customer = Customer.objects.get(external_id="u1")
    progress = Progress.objects.get()
    assert (progress.state, progress.done, progress.total, progress.label) == (
        ProgressState.IN_PROGRESS,
        2,
        3,
        "2 of 3 conditions",
    )
    assert progress.deadline_at == customer.created_at + dt.timedelta(days=5)

    track(source, "u1", "Task Completed", T0 + hours(3))
    with django_capture_on_commit_callbacks(execute=True):
        drain(T0 + hours(4))

    progress.refresh_from_db()
    assert (progress.state, progress.achieved_at, progress.done) == (
        ProgressState.ACHIEVED,
        T0 + hours(3),
        3,
    )
    outcome = MilestoneOutcome.objects.get()
    assert (outcome.kind, outcome.is_late, outcome.occurred_at, outcome.subject_id) == (
        "achieved",
        False,
        T0 + hours(3),
        customer.pk,
    )
    assert outcome.xact_id is not None
    assert published == [
        OutcomeRecord(
            id=outcome.pk,
            definition_id=definition.pk,
            version_id=definition.active_version_id,  # type: ignore[arg-type]
            key="activated",
            unit="customer",
            subject_id=customer.pk,
            kind="achieved",
            is_late=False,
            occurred_at=T0 + hours(3),
        )
    ]


def test_evaluating_again_changes_nothing(milestone: Make, source: Source) -> None:
    definition = milestone()
    track(source, "u1", "Task Done", T0)
    drain(T0 + hours(1))
    before = list(Progress.objects.values())
    customer = Customer.objects.get()

    with time_machine.travel(T0 + hours(5), tick=False), transaction.atomic():
        summary = pairs_evaluate([(definition.active_version_id, customer.pk)])  # type: ignore[list-item]

    assert (summary.achieved, summary.evaluated) == (0, 1)  # achieved rows stay achieved
    assert list(Progress.objects.values()) == before
    assert MilestoneOutcome.objects.count() == 1


def test_a_replayed_message_id_does_not_count_twice(milestone: Make, source: Source) -> None:
    milestone(condition={"type": "event_count", "event": "Task Done", "at_least": 2})
    call = {
        "type": "track",
        "userId": "u1",
        "event": "Task Done",
        "timestamp": T0.isoformat(),
        "messageId": "same",
    }
    with time_machine.travel(T0, tick=False):
        for _ in range(2):
            parsed = parse_batch(orjson.dumps({"batch": [call]}), T0, Limits())
            events_ingest(source_id=source.pk, messages=parsed.messages, received_at=T0)
    drain(T0 + hours(1))

    progress = Progress.objects.get()
    assert (progress.state, progress.done) == (ProgressState.IN_PROGRESS, 1)
    assert PendingEvaluation.objects.count() == 0


def test_a_passed_deadline_is_missed_and_a_later_achievement_is_late(
    milestone: Make, source: Source
) -> None:
    milestone(window=dt.timedelta(days=1))
    track(source, "u1", "Page Viewed", T0)  # signs up; nothing that counts
    customer = Customer.objects.get()
    definition_version = MilestoneDefinition.objects.get().active_version_id
    with time_machine.travel(T0 + dt.timedelta(days=2), tick=False), transaction.atomic():
        pairs_evaluate([(definition_version, customer.pk)])  # type: ignore[list-item]
    progress = Progress.objects.get()
    assert (progress.state, progress.missed_at) == (ProgressState.MISSED, progress.deadline_at)

    track(source, "u1", "Task Done", T0 + dt.timedelta(days=3))
    drain(T0 + dt.timedelta(days=3, hours=1))

    progress.refresh_from_db()
    assert (progress.state, progress.is_late, progress.achieved_at) == (
        ProgressState.ACHIEVED,
        True,
        T0 + dt.timedelta(days=3),
    )
    kinds = list(MilestoneOutcome.objects.order_by("id").values_list("kind", "is_late"))
    assert kinds == [("missed", False), ("achieved", True)]


def test_an_event_after_the_deadline_is_a_late_achievement_even_when_seen_with_the_miss(
    milestone: Make, source: Source
) -> None:
    milestone(window=dt.timedelta(days=1))
    track(source, "u1", "Task Done", T0 + dt.timedelta(days=1, seconds=1))
    customer = Customer.objects.get()
    customer.created_at = T0
    customer.save()

    drain(T0 + dt.timedelta(days=1, minutes=2))

    progress = Progress.objects.get()
    assert (progress.state, progress.is_late, progress.missed_at, progress.achieved_at) == (
        ProgressState.ACHIEVED,
        True,
        T0 + dt.timedelta(days=1),
        T0 + dt.timedelta(days=1, seconds=1),
    )
    outcomes = MilestoneOutcome.objects.order_by("id").values_list("kind", "is_late")
    assert list(outcomes) == [("missed", False), ("achieved", True)]


def test_an_earlier_event_that_arrives_late_moves_the_achievement_back(
    milestone: Make, source: Source
) -> None:
    milestone()
    track(source, "u1", "Page Viewed", T0)  # signs up
    track(source, "u1", "Task Done", T0 + hours(5))
    drain(T0 + hours(6))
    track(source, "u1", "Task Done", T0 + hours(1))  # sent from an offline device

    drain(T0 + hours(7))

    progress = Progress.objects.get()
    assert (progress.state, progress.achieved_at) == (ProgressState.ACHIEVED, T0 + hours(1))
    outcome = MilestoneOutcome.objects.get()
    assert outcome.occurred_at == T0 + hours(1)


def test_an_event_a_little_ahead_of_the_server_clock_counts(
    milestone: Make, source: Source, settings: Any
) -> None:
    settings.INGEST_FUTURE_TOLERANCE_SECONDS = 300
    milestone()
    track(source, "u1", "Task Done", T0 + dt.timedelta(minutes=4))

    drain(T0)

    assert Progress.objects.get().achieved_at == T0 + dt.timedelta(minutes=4)


def test_within_the_grace_period_a_passed_deadline_is_not_yet_missed(
    milestone: Make, source: Source, settings: Any
) -> None:
    settings.MILESTONES_SWEEP_GRACE_SECONDS = 60
    milestone(window=dt.timedelta(days=1))
    track(source, "u1", "Page Viewed", T0)
    customer = Customer.objects.get()
    version_id = MilestoneDefinition.objects.get().active_version_id

    with (
        time_machine.travel(T0 + dt.timedelta(days=1, seconds=59), tick=False),
        transaction.atomic(),
    ):
        pairs_evaluate([(version_id, customer.pk)])  # type: ignore[list-item]

    assert Progress.objects.get().state == ProgressState.IN_PROGRESS
    assert not MilestoneOutcome.objects.exists()


def test_an_ineligible_subject_is_recorded_with_its_reason_and_can_become_eligible(
    milestone: Make, source: Source
) -> None:
    definition = milestone(eligibility={"plans": ["pro"]})
    track(source, "u1", "Task Done", T0)
    drain(T0 + hours(1))
    progress = Progress.objects.get()
    assert (progress.state, progress.ineligible_reason) == (ProgressState.INELIGIBLE, "plan")
    assert not MilestoneOutcome.objects.exists()

    customer = Customer.objects.get()
    customer.plan = "pro"
    customer.save()
    with time_machine.travel(T0 + hours(2), tick=False), transaction.atomic():
        pairs_evaluate([(definition.active_version_id, customer.pk)])  # type: ignore[list-item]

    progress.refresh_from_db()
    assert (progress.state, progress.ineligible_reason) == (ProgressState.ACHIEVED, "")
    assert MilestoneOutcome.objects.count() == 1


def test_an_event_anchor_starts_the_clock_at_its_first_occurrence_even_when_it_arrives_late(
    milestone: Make, source: Source
) -> None:
    milestone(
        key="second_purchase",
        anchor="event",
        anchor_event="Order Completed",
        window=dt.timedelta(days=45),
        condition={"type": "event_count", "event": "Order Completed", "at_least": 2},
    )
    track(source, "u1", "Page Viewed", T0)
    drain(T0 + hours(1))
    assert not Progress.objects.exists()  # no anchor, no clock

    track(source, "u1", "Order Completed", T0 + dt.timedelta(days=10))
    drain(T0 + dt.timedelta(days=10, hours=1))
    assert Progress.objects.get().anchor_at == T0 + dt.timedelta(days=10)

    # an earlier order, delivered late, moves the anchor and the deadline back
    track(source, "u1", "Order Completed", T0 + dt.timedelta(days=2))
    drain(T0 + dt.timedelta(days=10, hours=2))

    progress = Progress.objects.get()
    assert (progress.anchor_at, progress.deadline_at, progress.state) == (
        T0 + dt.timedelta(days=2),
        T0 + dt.timedelta(days=47),
        ProgressState.ACHIEVED,
    )
    assert progress.achieved_at == T0 + dt.timedelta(days=10)


def test_achieving_a_milestone_queues_and_achieves_the_milestones_that_wait_for_it(
    milestone: Make, source: Source
) -> None:
    milestone("first_task")
    chained = milestone(
        "north_star",
        condition={
            "type": "all",
            "conditions": [
                {"type": "milestone", "key": "first_task"},
                {"type": "event_count", "event": "Report Shared", "at_least": 1},
            ],
        },
    )
    track(source, "u1", "Report Shared", T0)
    track(source, "u1", "Task Done", T0 + hours(1))

    drain(T0 + hours(2))

    customer = Customer.objects.get()
    states = dict(Progress.objects.values_list("definition__key", "state"))
    assert states == {"first_task": "achieved", "north_star": "achieved"}
    star = Progress.objects.get(definition=chained)
    assert (star.achieved_at, star.subject_id) == (T0 + hours(1), customer.pk)


def test_a_milestone_anchor_starts_the_clock_when_the_other_milestone_is_achieved(
    milestone: Make, source: Source
) -> None:
    milestone("onboarded")
    milestone(
        "habit",
        anchor="milestone",
        anchor_milestone="onboarded",
        window=dt.timedelta(days=7),
        condition={"type": "event_count", "event": "Report Created", "at_least": 2},
    )
    track(source, "u1", "Report Created", T0)  # before the anchor: does not count
    track(source, "u1", "Task Done", T0 + hours(1))
    track(source, "u1", "Report Created", T0 + hours(2))
    drain(T0 + hours(3))

    habit = Progress.objects.get(definition__key="habit")
    assert (habit.anchor_at, habit.deadline_at, habit.done, habit.state) == (
        T0 + hours(1),
        T0 + hours(1) + dt.timedelta(days=7),
        1,
        ProgressState.IN_PROGRESS,
    )


def test_an_account_milestone_counts_distinct_active_customers(
    milestone: Make, source: Source
) -> None:
    definition = milestone(
        "three_seats",
        unit="account",
        condition={
            "type": "distinct_count",
            "event": "Seat Active",
            "of": "customer",
            "at_least": 3,
        },
    )
    account = AccountFactory(created_at=T0 - hours(1))
    people = [CustomerFactory(account=account, external_id=f"p{i}") for i in range(3)]
    for index, person in enumerate([people[0], people[0], people[1], people[2]]):
        track(source, person.external_id, "Seat Active", T0 + hours(index))
    Customer.objects.filter(pk__in=[p.pk for p in people]).update(account=account)

    with time_machine.travel(T0 + hours(5), tick=False), transaction.atomic():
        pairs_evaluate([(definition.active_version_id, account.pk)])  # type: ignore[list-item]

    progress = Progress.objects.get()
    assert (progress.unit, progress.subject_id, progress.state, progress.achieved_at) == (
        "account",
        account.pk,
        ProgressState.ACHIEVED,
        T0 + hours(3),
    )


def test_pairs_of_a_retired_version_are_dropped(milestone: Make, source: Source) -> None:
    from milestones.services import definition_update

    definition = milestone()
    first = definition.active_version_id
    track(source, "u1", "Page Viewed", T0)
    definition_update(
        definition=definition, condition={"type": "event_count", "event": "X", "at_least": 1}
    )
    customer = Customer.objects.get()

    with transaction.atomic():
        summary = pairs_evaluate([(first, customer.pk)])  # type: ignore[list-item]

    assert summary.pairs == 0
    assert not Progress.objects.exists()


def test_a_merge_re_evaluates_the_surviving_customer_with_the_merged_events(
    milestone: Make, source: Source, django_capture_on_commit_callbacks: Any
) -> None:
    milestone(condition={"type": "event_count", "event": "Task Done", "at_least": 2})
    track(source, "u1", "Task Done", T0)
    track(source, "u2", "Task Done", T0 + hours(1))
    drain(T0 + hours(2))
    first, second = Customer.objects.order_by("external_id")

    with django_capture_on_commit_callbacks(execute=True):
        customers_merge(source_id=second.pk, target_id=first.pk)
    drain(T0 + hours(3))

    progress = Progress.objects.get()
    assert (progress.subject_id, progress.state, progress.achieved_at) == (
        first.pk,
        ProgressState.ACHIEVED,
        T0 + hours(1),
    )
