"""Definitions: validation that names the bad node, immutable versions, change control."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import User

from milestones.models import (
    Backfill,
    ChangeAction,
    DefinitionChange,
    DefinitionStatus,
    MilestoneDefinition,
    MilestoneVersion,
    Progress,
)
from milestones.registry import registry
from milestones.services import (
    DefinitionInvalid,
    backfill_request,
    definition_activate,
    definition_archive,
    definition_create,
    definition_update,
)

pytestmark = pytest.mark.django_db

COUNT = {"type": "event_count", "event": "Task Done", "at_least": 1}


@pytest.fixture
def marketer() -> User:
    return User.objects.create_user("marketer", is_staff=True)


def _create(key: str = "activated", **fields: Any) -> MilestoneDefinition:
    fields.setdefault("name", "Activated")
    fields.setdefault("kind", "onboarding")
    fields.setdefault("condition", COUNT)
    return definition_create(key=key, **fields)


def test_a_new_definition_is_a_draft_with_no_version_and_a_created_record(marketer: User) -> None:
    definition = _create(user=marketer)

    assert definition.status == DefinitionStatus.DRAFT
    assert definition.active_version is None
    assert definition.created_by == marketer
    change = DefinitionChange.objects.get()
    assert (change.action, change.user, change.definition) == (
        ChangeAction.CREATED,
        marketer,
        definition,
    )


def test_an_invalid_condition_is_refused_with_the_path_of_the_bad_node() -> None:
    condition = {"type": "all", "conditions": [COUNT, {"type": "event_count", "event": "x"}]}

    with pytest.raises(DefinitionInvalid) as refused:
        _create(condition=condition)

    assert refused.value.errors == {"condition": "$.all[1].at_least: is required"}
    assert not MilestoneDefinition.objects.exists()
    assert not DefinitionChange.objects.exists()


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"anchor": "event"}, {"anchor_event": "name the event that starts the clock"}),
        (
            {"anchor": "milestone"},
            {"anchor_milestone": "name the milestone whose achievement starts the clock"},
        ),
        ({"window": dt.timedelta(0)}, {"window": "must be positive and at most 10 years"}),
        ({"eligibility": {"plan": ["pro"]}}, {"eligibility": "$.plan: is not an eligibility rule"}),
        (
            {"unit": "account", "eligibility": {"stages": ["new"]}},
            {"eligibility": "$.stages: accounts have no lifecycle stage"},
        ),
        (
            {"condition": {"type": "milestone", "key": "nope"}},
            {"condition": "unknown milestone 'nope'"},
        ),
        (
            {"condition": {"type": "milestone", "key": "activated"}},
            {"condition": "milestone 'activated' cannot depend on itself"},
        ),
    ],
)
def test_invalid_fields_are_refused_with_a_message_per_field(
    fields: dict[str, Any], errors: dict[str, str]
) -> None:
    with pytest.raises(DefinitionInvalid) as refused:
        _create(**fields)

    assert refused.value.errors == errors


def test_a_dependency_cycle_is_refused() -> None:
    first = _create("first")
    _create("second", condition={"type": "milestone", "key": "first"})

    with pytest.raises(DefinitionInvalid) as refused:
        definition_update(definition=first, condition={"type": "milestone", "key": "second"})

    assert refused.value.errors == {"condition": "milestone dependencies lead back to 'first'"}
    first.refresh_from_db()
    assert first.condition == COUNT


def test_a_dependency_on_a_milestone_of_another_unit_is_refused() -> None:
    _create("seats", unit="account")

    with pytest.raises(DefinitionInvalid) as refused:
        _create("mine", condition={"type": "milestone", "key": "seats"})

    assert refused.value.errors == {"condition": "milestone 'seats' is measured per account"}


def test_activating_snapshots_version_one_and_queues_its_backfill(
    marketer: User, django_capture_on_commit_callbacks: Any
) -> None:
    definition = _create(window=dt.timedelta(days=5), eligibility={"plans": ["pro"]})

    with django_capture_on_commit_callbacks() as callbacks:
        activation = definition_activate(definition=definition, user=marketer)

    version = activation.version
    assert (version.number, version.condition, version.window, version.eligibility) == (
        1,
        COUNT,
        dt.timedelta(days=5),
        {"plans": ["pro"]},
    )
    assert (version.created_by, version.activated_at is not None, version.retired_at) == (
        marketer,
        True,
        None,
    )
    definition.refresh_from_db()
    assert (definition.status, definition.active_version) == (DefinitionStatus.ACTIVE, version)
    assert activation.backfill.version == version
    assert len(callbacks) == 2  # registry refresh and the backfill task
    assert list(registry().versions) == [version.pk]
    assert (
        DefinitionChange.objects.filter(action=ChangeAction.ACTIVATED, user=marketer).count() == 1
    )


def test_editing_an_active_definition_makes_a_new_version_and_keeps_the_old_rows() -> None:
    # given: version 1 with a subject's progress
    definition = _create()
    first = definition_activate(definition=definition).version
    Progress.objects.create(
        version=first,
        definition=definition,
        unit="customer",
        subject_id=1,
        anchor_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )

    # when
    definition_update(definition=definition, condition={**COUNT, "at_least": 3})

    # then
    definition.refresh_from_db()
    second = definition.active_version
    assert second is not None
    assert (second.number, second.condition["at_least"]) == (2, 3)
    first.refresh_from_db()
    assert first.retired_at is not None
    assert first.condition == COUNT
    assert Progress.objects.get().version == first
    assert list(registry().versions) == [second.pk]
    actions = list(DefinitionChange.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["created", "activated", "edited", "versioned"]
    assert Backfill.objects.filter(version=second).count() == 1


def test_renaming_an_active_definition_does_not_make_a_version() -> None:
    definition = _create()
    definition_activate(definition=definition)

    definition_update(definition=definition, name="Fully activated", description="why")

    assert MilestoneVersion.objects.count() == 1
    assert definition.name == "Fully activated"


def test_activating_an_unchanged_active_definition_is_refused() -> None:
    definition = _create()
    definition_activate(definition=definition)

    with pytest.raises(DefinitionInvalid) as refused:
        definition_activate(definition=definition)

    assert refused.value.errors == {"status": "this milestone is already active as it is"}
    assert MilestoneVersion.objects.count() == 1


def test_archiving_stops_evaluation_and_refuses_further_edits() -> None:
    definition = _create()
    version = definition_activate(definition=definition).version

    definition_archive(definition=definition)

    version.refresh_from_db()
    assert (definition.status, version.retired_at is not None) == (DefinitionStatus.ARCHIVED, True)
    assert registry().versions == {}
    with pytest.raises(DefinitionInvalid):
        definition_update(definition=definition, name="again")
    with pytest.raises(DefinitionInvalid):
        definition_activate(definition=definition)


def test_a_milestone_an_active_one_depends_on_cannot_be_archived() -> None:
    base = _create("base")
    definition_activate(definition=base)
    chained = _create("chained", condition={"type": "milestone", "key": "base"})
    definition_activate(definition=chained)

    with pytest.raises(DefinitionInvalid) as refused:
        definition_archive(definition=base)

    assert refused.value.errors == {"status": "'chained' depends on this milestone"}
    base.refresh_from_db()
    assert base.status == DefinitionStatus.ACTIVE


def test_fields_outside_the_working_copy_cannot_be_edited() -> None:
    definition = _create()

    with pytest.raises(DefinitionInvalid) as refused:
        definition_update(definition=definition, status="active")

    assert refused.value.errors == {"status": "cannot be edited"}


def test_a_backfill_can_be_requested_only_for_an_active_definition(marketer: User) -> None:
    definition = _create()
    with pytest.raises(DefinitionInvalid):
        backfill_request(definition=definition)
    version = definition_activate(definition=definition).version

    backfill = backfill_request(definition=definition, user=marketer)

    assert (backfill.version, backfill.requested_by, backfill.status) == (
        version,
        marketer,
        "queued",
    )
    assert DefinitionChange.objects.filter(action=ChangeAction.BACKFILL).count() == 1
