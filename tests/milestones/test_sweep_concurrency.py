"""The missed sweep with several sweepers at once, each on its own connection (committed
rows, real concurrent transactions): every due row is missed exactly once, and customers
whose stage two sweepers move at once end in the right stage without a deadlock."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from customers.models import Customer
from milestones import sweep
from milestones.models import (
    LifecycleStage,
    MilestoneDefinition,
    MilestoneOutcome,
    Progress,
    ProgressState,
    StageChange,
)
from tests.factories import CustomerFactory
from tests.milestones.conftest import T0

pytestmark = pytest.mark.django_db(transaction=True)

Make = Callable[..., MilestoneDefinition]
DAY = dt.timedelta(days=1)


def _due(definition: MilestoneDefinition, customers: list[Customer]) -> None:
    Progress.objects.bulk_create(
        Progress(
            version_id=definition.active_version_id,
            definition=definition,
            unit="customer",
            subject_id=customer.pk,
            anchor_at=T0 - DAY,
            deadline_at=T0 + dt.timedelta(minutes=index),
        )
        for index, customer in enumerate(customers)
    )


def test_two_sweepers_miss_every_due_row_exactly_once(milestone: Make, settings: Any) -> None:
    definition = milestone(window=DAY)
    customers = CustomerFactory.create_batch(40)
    _due(definition, customers)

    result = sweep.deadlines_sweep(now=T0 + 2 * DAY, batch=3, workers=2)

    assert result.missed == 40
    assert result.is_done is True
    assert result.batches >= 14  # 40 rows in batches of 3, plus each sweeper's short last one
    kinds = Counter(MilestoneOutcome.objects.values_list("subject_id", "kind"))
    assert kinds == Counter({(c.pk, "missed"): 1 for c in customers})
    assert set(Progress.objects.values_list("state", flat=True)) == {ProgressState.MISSED}


def test_sweepers_moving_the_same_customers_stages_at_once_do_not_deadlock(
    milestone: Make,
) -> None:
    setup, invoice = milestone("setup", window=DAY), milestone("invoice", window=DAY)
    LifecycleStage.objects.create(
        key="churned",
        name="Churned",
        priority=10,
        rules=[
            {"milestone": "setup", "state": "missed"},
            {"milestone": "invoice", "state": "missed"},
        ],
    )
    LifecycleStage.objects.create(
        key="at_risk",
        name="At risk",
        priority=20,
        rules=[{"milestone": "setup", "state": "missed"}],
    )
    customers = CustomerFactory.create_batch(30)
    _due(setup, customers)
    _due(invoice, customers)

    result = sweep.deadlines_sweep(now=T0 + 2 * DAY, batch=4, workers=2)

    assert result.missed == 60
    assert set(Customer.objects.values_list("lifecycle_stage", flat=True)) == {"churned"}
    # Each customer's history is a path from "new" to "churned", never a stale double step.
    for customer in customers:
        path = list(
            StageChange.objects.filter(customer=customer)
            .order_by("id")
            .values_list("from_stage", "to_stage")
        )
        assert path in ([("new", "churned")], [("new", "at_risk"), ("at_risk", "churned")])
