"""Lifecycle stages follow milestone states, with history and a hook journeys can react to."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import time_machine
from django.db import transaction

from customers.models import Customer
from milestones.conditions import ConditionError
from milestones.evaluation import pairs_evaluate
from milestones.models import LifecycleStage, MilestoneDefinition, StageChange
from milestones.signals import StageChangeRecord, stage_changed
from milestones.stages import StageRule, parse_stage_rules, stage_for, stages_refresh
from milestones.sweep import deadlines_sweep
from tests.factories import CustomerFactory, EventFactory
from tests.milestones.conftest import T0

pytestmark = pytest.mark.django_db

Make = Callable[..., MilestoneDefinition]
RULES = [
    StageRule("churned", (("activated", "missed"), ("habit", "not_achieved"))),
    StageRule("champion", (("activated", "achieved"), ("habit", "achieved"))),
    StageRule("active", (("activated", "achieved"),)),
    StageRule("onboarding", (("activated", "in_progress"),)),
]


@pytest.mark.parametrize(
    ("states", "stage"),
    [
        ({}, "new"),
        ({"activated": "in_progress"}, "onboarding"),
        ({"activated": "achieved"}, "active"),
        ({"activated": "achieved", "habit": "achieved"}, "champion"),
        ({"activated": "missed"}, "churned"),
        ({"activated": "missed", "habit": "achieved"}, "new"),
        ({"activated": "ineligible"}, "new"),
    ],
)
def test_the_first_stage_whose_rules_all_hold_wins(states: dict[str, str], stage: str) -> None:
    assert stage_for(states, RULES, "new") == stage


def test_not_started_means_no_progress_row() -> None:
    rules = [StageRule("fresh", (("activated", "not_started"),))]
    assert stage_for({}, rules, "new") == "fresh"
    assert stage_for({"activated": "in_progress"}, rules, "new") == "new"


@pytest.mark.parametrize(
    ("rules", "path"),
    [
        ([], "$"),
        ([{"milestone": "a"}], "$[0]"),
        ([{"milestone": "", "state": "achieved"}], "$[0].milestone"),
        ([{"milestone": "a", "state": "done"}], "$[0].state"),
    ],
)
def test_invalid_stage_rules_are_refused_with_their_path(rules: object, path: str) -> None:
    with pytest.raises(ConditionError) as refused:
        parse_stage_rules(rules)

    assert refused.value.path == path


@pytest.fixture
def changes() -> Iterator[list[StageChangeRecord]]:
    seen: list[StageChangeRecord] = []

    def receiver(sender: Any, changes: list[StageChangeRecord], **kwargs: Any) -> None:
        seen.extend(changes)

    stage_changed.connect(receiver)
    yield seen
    stage_changed.disconnect(receiver)


@pytest.fixture
def stages() -> None:
    LifecycleStage.objects.create(
        key="active",
        name="Active",
        priority=10,
        rules=[{"milestone": "activated", "state": "achieved"}],
    )
    LifecycleStage.objects.create(
        key="at_risk",
        name="At risk",
        priority=20,
        rules=[{"milestone": "activated", "state": "missed"}],
    )
    LifecycleStage.objects.create(
        key="onboarding",
        name="Onboarding",
        priority=30,
        rules=[{"milestone": "activated", "state": "in_progress"}],
    )


def test_a_state_change_moves_the_stage_records_history_and_publishes_it(
    milestone: Make,
    stages: None,
    changes: list[StageChangeRecord],
    django_capture_on_commit_callbacks: Any,
) -> None:
    definition = milestone(window=dt.timedelta(days=5))
    customer = CustomerFactory(created_at=T0)
    pair = (definition.active_version_id, customer.pk)
    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False), transaction.atomic():
        pairs_evaluate([pair])  # type: ignore[list-item]
    EventFactory(customer=customer, name="Task Done", occurred_at=T0 + dt.timedelta(hours=2))

    with (
        time_machine.travel(T0 + dt.timedelta(hours=3), tick=False),
        django_capture_on_commit_callbacks(execute=True),
        transaction.atomic(),
    ):
        pairs_evaluate([pair])  # type: ignore[list-item]

    customer.refresh_from_db()
    assert customer.lifecycle_stage == "active"
    history = list(StageChange.objects.order_by("id").values_list("from_stage", "to_stage"))
    assert history == [("new", "onboarding"), ("onboarding", "active")]
    assert [(c.customer_id, c.from_stage, c.to_stage) for c in changes] == [
        (customer.pk, "onboarding", "active")
    ]


def test_a_missed_deadline_moves_the_stage_too(milestone: Make, stages: None) -> None:
    definition = milestone(window=dt.timedelta(days=1))
    customer = CustomerFactory(created_at=T0)
    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False), transaction.atomic():
        pairs_evaluate([(definition.active_version_id, customer.pk)])  # type: ignore[list-item]

    deadlines_sweep(now=T0 + dt.timedelta(days=2))

    assert Customer.objects.get().lifecycle_stage == "at_risk"
    assert (
        StageChange.objects.order_by("-id").values_list("cause", flat=True)[0] == "milestone missed"
    )


def test_without_stage_rules_nothing_is_written(milestone: Make) -> None:
    definition = milestone()
    customer = CustomerFactory(created_at=T0)
    EventFactory(customer=customer, name="Task Done", occurred_at=T0)

    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False), transaction.atomic():
        pairs_evaluate([(definition.active_version_id, customer.pk)])  # type: ignore[list-item]

    assert Customer.objects.get().lifecycle_stage == "new"
    assert not StageChange.objects.exists()


def test_a_change_to_a_milestone_no_rule_names_reads_and_writes_no_stage(
    milestone: Make, stages: None, django_assert_num_queries: Any
) -> None:
    customer = CustomerFactory(created_at=T0)

    with django_assert_num_queries(1):  # the rules, and nothing else
        changes = stages_refresh(
            [customer.pk], active_versions={}, cause="test", changed_keys={"unrelated"}
        )

    assert changes == []
    assert not StageChange.objects.exists()
