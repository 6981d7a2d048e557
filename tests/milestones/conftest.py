"""Fixtures for the milestones tests: definitions made and activated through the services."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from milestones.models import MilestoneDefinition
from milestones.services import definition_activate, definition_create

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)  # a Monday


@pytest.fixture
def milestone(
    db: None, django_capture_on_commit_callbacks: Any
) -> Callable[..., MilestoneDefinition]:
    """Create and activate a definition; the activation backfill is not run."""

    def _make(
        key: str = "activated", *, activate: bool = True, **fields: Any
    ) -> MilestoneDefinition:
        fields.setdefault("name", key.replace("_", " ").title())
        fields.setdefault("kind", "onboarding")
        fields.setdefault("condition", {"type": "event_count", "event": "Task Done", "at_least": 1})
        definition = definition_create(key=key, **fields)
        if activate:
            definition_activate(definition=definition)
        return definition

    return _make
