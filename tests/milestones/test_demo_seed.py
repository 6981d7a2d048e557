from __future__ import annotations

import datetime as dt
import io
from collections import Counter

import pytest
import time_machine
from django.core.management import CommandError, call_command

from customers.models import Customer, Event, Source
from milestones.models import (
    Backfill,
    BackfillStatus,
    ChangeAction,
    DefinitionChange,
    DefinitionStatus,
    LifecycleStage,
    MilestoneDefinition,
    MilestoneOutcome,
    MilestoneVersion,
    PendingEvaluation,
    Progress,
    StageChange,
)

pytestmark = pytest.mark.django_db

# The seeded data set (random.Random(7)) seen from one fixed moment; every figure below was
# cross-checked against a plain reading of the generated calls. A change to milestones/demo.py
# changes them.
NOW = dt.datetime(2026, 3, 11, 12, 0, tzinfo=dt.UTC)
MESSAGES = 399
CUSTOMERS = 72  # 30 team app trials, 24 shoppers, 18 budgeting app users


def _seed(*args: str) -> list[str]:
    out = io.StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("milestones_demo_seed", *args, stdout=out)
    return out.getvalue().splitlines()


def _outcomes() -> Counter[tuple[str, str, bool]]:
    return Counter(
        MilestoneOutcome.objects.values_list("definition__key", "kind", "is_late").iterator()
    )


def _progress() -> Counter[tuple[str, str]]:
    return Counter(Progress.objects.values_list("definition__key", "state").iterator())


OUTCOMES = {
    ("workspace-created", "achieved", False): 29,
    ("teammate-invited", "achieved", False): 21,
    ("first-task-completed", "achieved", False): 16,
    ("team-activated", "achieved", False): 12,
    ("team-activated", "missed", False): 16,
    ("team-activated", "achieved", True): 4,
    ("second-purchase", "achieved", False): 6,
    ("second-purchase", "missed", False): 7,
    ("weekly-spending-check", "achieved", False): 6,
}
PROGRESS = {
    ("workspace-created", "achieved"): 29,
    ("workspace-created", "in_progress"): 1,
    ("workspace-created", "ineligible"): 42,
    ("teammate-invited", "achieved"): 21,
    ("teammate-invited", "in_progress"): 9,
    ("teammate-invited", "ineligible"): 42,
    ("first-task-completed", "achieved"): 16,
    ("first-task-completed", "in_progress"): 14,
    ("first-task-completed", "ineligible"): 42,
    ("team-activated", "achieved"): 16,
    ("team-activated", "missed"): 12,
    ("team-activated", "in_progress"): 2,
    ("team-activated", "ineligible"): 42,
    ("second-purchase", "achieved"): 6,
    ("second-purchase", "missed"): 7,
    ("second-purchase", "in_progress"): 11,
    ("weekly-spending-check", "achieved"): 6,
    ("weekly-spending-check", "in_progress"): 12,
    ("weekly-spending-check", "ineligible"): 54,
}


def test_it_creates_and_activates_six_milestones_through_the_services() -> None:
    _seed("--force")

    definitions = {
        key: (status, parent, number)
        for key, status, parent, number in MilestoneDefinition.objects.values_list(
            "key", "status", "parent__key", "active_version__number"
        )
    }
    assert definitions == {
        "workspace-created": (DefinitionStatus.ACTIVE, "team-activated", 1),
        "teammate-invited": (DefinitionStatus.ACTIVE, "team-activated", 1),
        "first-task-completed": (DefinitionStatus.ACTIVE, "team-activated", 1),
        "team-activated": (DefinitionStatus.ACTIVE, None, 1),
        "second-purchase": (DefinitionStatus.ACTIVE, None, 1),
        "weekly-spending-check": (DefinitionStatus.ACTIVE, None, 1),
    }
    assert MilestoneVersion.objects.count() == 6
    assert Counter(DefinitionChange.objects.values_list("action", flat=True)) == {
        ChangeAction.CREATED: 6,
        ChangeAction.EDITED: 3,  # the micro-milestones linked to their north star
        ChangeAction.ACTIVATED: 6,
    }
    north_star = MilestoneVersion.objects.get(definition__key="team-activated")
    assert (north_star.window, north_star.anchor) == (dt.timedelta(days=5), "signup")
    second = MilestoneVersion.objects.get(definition__key="second-purchase")
    assert (second.window, second.anchor, second.anchor_event) == (
        dt.timedelta(days=45),
        "event",
        "Order Completed",
    )


def test_its_events_go_through_ingest_and_are_evaluated_to_the_end() -> None:
    _seed("--force")

    assert Customer.objects.count() == CUSTOMERS
    assert Event.objects.count() == MESSAGES
    assert Source.objects.get().name == "Milestones demo"
    assert PendingEvaluation.objects.count() == 0
    backfills = Backfill.objects.values_list("status", "processed")
    assert Counter(backfills) == {(BackfillStatus.DONE, CUSTOMERS): 6}


def test_it_leaves_achieved_missed_late_and_in_progress_subjects() -> None:
    _seed("--force")

    assert _outcomes() == OUTCOMES
    assert _progress() == PROGRESS


def test_the_north_star_moves_customers_between_lifecycle_stages() -> None:
    _seed("--force")

    assert list(LifecycleStage.objects.values_list("key", "priority")) == [
        ("at_risk", 10),
        ("active", 20),
        ("onboarding", 30),
    ]
    assert Counter(Customer.objects.values_list("lifecycle_stage", flat=True)) == {
        "active": 16,
        "at_risk": 12,
        "onboarding": 2,
        "new": 42,
    }
    assert Counter(StageChange.objects.values_list("from_stage", "to_stage")) == {
        # The 4 late activations are missed and achieved in the same evaluation.
        ("new", "active"): 16,
        ("new", "at_risk"): 12,
        ("new", "onboarding"): 2,
    }


def test_it_reports_what_it_did_and_prints_the_new_write_key_once() -> None:
    lines = _seed("--force")

    assert lines[:3] == [
        "Milestones demo: 6 milestones (6 created this run), 3 lifecycle stages created.",
        f"This run sent {MESSAGES} messages through ingest; {MESSAGES} were new "
        "(replays are skipped).",
        "Evaluated 245 pending (milestone, customer) pairs and ran 6 activation backfills; "
        "the sweep recorded 0 missed.",
    ]
    assert lines[3:9] == [
        "  workspace-created: 29 achieved, 1 in_progress, 42 ineligible "
        "(outcomes: 29 achieved, 0 missed)",
        "  teammate-invited: 21 achieved, 9 in_progress, 42 ineligible "
        "(outcomes: 21 achieved, 0 missed)",
        "  first-task-completed: 16 achieved, 14 in_progress, 42 ineligible "
        "(outcomes: 16 achieved, 0 missed)",
        "  team-activated: 16 achieved, 2 in_progress, 42 ineligible, 12 missed "
        "(outcomes: 16 achieved, 16 missed)",
        "  second-purchase: 6 achieved, 11 in_progress, 7 missed (outcomes: 6 achieved, 7 missed)",
        "  weekly-spending-check: 6 achieved, 12 in_progress, 54 ineligible "
        "(outcomes: 6 achieved, 0 missed)",
    ]
    assert lines[9] == "Created source “Milestones demo”. Its write key, shown only this once:"
    assert lines[10].strip().startswith("mpw_")
    assert len(lines) == 11


def test_a_second_run_stores_and_evaluates_nothing_new() -> None:
    _seed("--force")
    message_ids = set(Event.objects.values_list("message_id", flat=True))
    changes = DefinitionChange.objects.count()

    lines = _seed("--force")

    assert lines[:3] == [
        "Milestones demo: 6 milestones (0 created this run), 0 lifecycle stages created.",
        f"This run sent {MESSAGES} messages through ingest; 0 were new (replays are skipped).",
        "Evaluated 0 pending (milestone, customer) pairs and ran 0 activation backfills; "
        "the sweep recorded 0 missed.",
    ]
    assert not any("mpw_" in line for line in lines)
    assert set(Event.objects.values_list("message_id", flat=True)) == message_ids
    assert (MilestoneDefinition.objects.count(), MilestoneVersion.objects.count()) == (6, 6)
    assert DefinitionChange.objects.count() == changes
    assert Backfill.objects.count() == 6
    assert (LifecycleStage.objects.count(), Source.objects.count()) == (3, 1)
    assert _outcomes() == OUTCOMES
    assert _progress() == PROGRESS
    assert StageChange.objects.count() == 30


def test_it_refuses_to_seed_a_deployment_with_debug_off() -> None:
    with pytest.raises(CommandError, match="DEBUG is off"):
        _seed()

    assert MilestoneDefinition.objects.count() == 0
    assert LifecycleStage.objects.count() == 0
    assert (Event.objects.count(), Source.objects.count()) == (0, 0)
