"""Journey writes: a validated working copy with a change log, going live as an immutable
version (templates and milestones checked), pausing and archiving."""

from __future__ import annotations

from typing import Any

import pytest

from journeys.models import Journey, JourneyChange, JourneyVersion
from journeys.services import (
    JourneyInvalid,
    journey_archive,
    journey_go_live,
    journey_pause,
    journey_save,
)
from tests.journeys.conftest import MISSED, STEPS

pytestmark = pytest.mark.django_db


def save(**fields: Any) -> Journey:
    values: dict[str, Any] = {"name": "Setup nudge", "trigger": MISSED, "steps": STEPS}
    return journey_save(key="setup-nudge", **{**values, **fields})


def test_saving_creates_the_working_copy_and_logs_what_changed() -> None:
    journey = save()
    save(priority=5)

    assert (journey.status, journey.active_version_id) == ("draft", None)
    changes = list(JourneyChange.objects.order_by("id").values_list("action", "changes"))
    assert [action for action, _ in changes] == ["created", "edited"]
    assert changes[1][1] == {"priority": [0, 5]}


def test_an_invalid_journey_is_refused_with_the_bad_part_and_nothing_is_written() -> None:
    with pytest.raises(JourneyInvalid, match=r"trigger\.milestone: must be a non-empty string"):
        save(trigger={"kind": "milestone_missed"})
    with pytest.raises(JourneyInvalid, match=r"^steps"):
        save(steps=[{"key": "nudge", "type": "send", "templates": ["setup-help"]}])

    assert (Journey.objects.count(), JourneyChange.objects.count()) == (0, 0)


def test_going_live_needs_active_templates_and_milestones() -> None:
    journey = save()

    with pytest.raises(JourneyInvalid) as refused:
        journey_go_live(journey_id=journey.pk)

    assert str(refused.value) == (
        "template 'setup-help' is not active; milestone 'activated' is not active"
    )
    journey.refresh_from_db()
    assert (journey.status, JourneyVersion.objects.count()) == ("draft", 0)


def test_going_live_snapshots_a_version_and_an_edit_makes_the_next_one(ready: None) -> None:
    journey = save()

    first = journey_go_live(journey_id=journey.pk)
    again = journey_go_live(journey_id=journey.pk)
    save(priority=9)
    second = journey_go_live(journey_id=journey.pk)

    journey.refresh_from_db()
    first.refresh_from_db()
    assert (first.number, again.pk, second.number) == (1, first.pk, 2)
    assert (first.priority, second.priority) == (0, 9)  # the old version is untouched
    assert (journey.status, journey.active_version_id) == ("live", second.pk)


def test_pausing_and_archiving_follow_the_lifecycle(ready: None) -> None:
    journey = save()
    with pytest.raises(JourneyInvalid, match="a draft journey cannot be paused"):
        journey_pause(journey_id=journey.pk)

    journey_go_live(journey_id=journey.pk)
    journey_pause(journey_id=journey.pk)
    journey_archive(journey_id=journey.pk)

    with pytest.raises(JourneyInvalid, match="an archived journey cannot go live"):
        journey_go_live(journey_id=journey.pk)
    actions = list(JourneyChange.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["created", "went live", "paused", "archived"]
