"""Dry run: who would qualify now and who would have missed, from history, writing nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import time_machine

from milestones.dryrun import definition_dry_run
from milestones.models import (
    DefinitionChange,
    MilestoneDefinition,
    MilestoneOutcome,
    PendingEvaluation,
    Progress,
)
from milestones.services import DefinitionInvalid
from tests.factories import CustomerFactory, EventFactory
from tests.milestones.conftest import T0

pytestmark = pytest.mark.django_db

Make = Callable[..., MilestoneDefinition]
DAY = dt.timedelta(days=1)


@pytest.fixture
def history() -> dict[str, Any]:
    """Four customers signed up at T0 - 10 days, plus a trial customer."""
    signup = T0 - 10 * DAY
    on_time = CustomerFactory(created_at=signup)
    EventFactory(customer=on_time, name="Task Done", occurred_at=signup + DAY)
    late = CustomerFactory(created_at=signup)
    EventFactory(customer=late, name="Task Done", occurred_at=signup + 6 * DAY)
    never = CustomerFactory(created_at=signup)
    recent = CustomerFactory(created_at=T0 - DAY)
    trial = CustomerFactory(created_at=signup, plan="trial")
    return {"on_time": on_time, "late": late, "never": never, "recent": recent, "trial": trial}


def test_a_draft_is_judged_against_history_without_writing_anything(
    milestone: Make, history: dict[str, Any]
) -> None:
    draft = milestone(activate=False, window=5 * DAY, eligibility={"billing": "paid"})
    changes = DefinitionChange.objects.count()

    with time_machine.travel(T0, tick=False):
        result = definition_dry_run(definition=draft)

    assert result.subjects == 5
    assert result.counts == {
        "achieved": 1,
        "missed": 2,
        "in_progress": 1,
        "ineligible": 1,
        "not_started": 0,
    }
    assert result.samples["achieved"] == [history["on_time"].pk]
    assert result.samples["missed"] == [history["late"].pk, history["never"].pk]
    assert result.samples["in_progress"] == [history["recent"].pk]
    assert result.samples["ineligible"] == [history["trial"].pk]
    assert result.is_truncated is False
    assert not Progress.objects.exists()
    assert not MilestoneOutcome.objects.exists()
    assert not PendingEvaluation.objects.exists()
    assert DefinitionChange.objects.count() == changes


def test_an_event_anchor_leaves_subjects_without_it_not_started(
    milestone: Make, history: dict[str, Any]
) -> None:
    draft = milestone(
        activate=False,
        anchor="event",
        anchor_event="Task Done",
        condition={"type": "event_count", "event": "Task Done", "at_least": 1},
    )

    with time_machine.travel(T0, tick=False):
        result = definition_dry_run(definition=draft)

    assert result.counts["achieved"] == 2
    assert result.counts["not_started"] == 3


def test_the_limit_stops_early_and_says_so(milestone: Make, history: dict[str, Any]) -> None:
    draft = milestone(activate=False)

    with time_machine.travel(T0, tick=False):
        result = definition_dry_run(definition=draft, limit=2, sample_size=1)

    assert (result.subjects, result.is_truncated) == (2, True)
    assert sum(result.counts.values()) == 2
    assert all(len(sample) <= 1 for sample in result.samples.values())


def test_an_invalid_working_copy_is_refused(milestone: Make) -> None:
    draft = milestone(activate=False)
    draft.condition = {"type": "event_count", "event": "x", "at_least": 0}

    with pytest.raises(DefinitionInvalid) as refused:
        definition_dry_run(definition=draft)

    assert list(refused.value.errors) == ["condition"]
    assert refused.value.errors["condition"].startswith("$.at_least:")
