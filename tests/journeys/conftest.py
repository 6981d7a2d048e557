"""Journeys fixtures: the template and milestone a journey names, active."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from consent.models import Topic
from journeys.receivers import exit_events_forget
from messaging.templating import template_activate, template_save
from milestones.services import definition_activate, definition_create

STEPS = [
    {"key": "nudge", "type": "send", "templates": ["setup-help"], "next": "done"},
    {"key": "done", "type": "exit"},
]
MISSED = {"kind": "milestone_missed", "milestone": "activated"}


@pytest.fixture(autouse=True)
def _fresh_exit_events() -> Iterator[None]:
    """The per-process cache of exit event names must not leak between tests."""
    exit_events_forget()
    yield
    exit_events_forget()


@pytest.fixture
def ready(django_capture_on_commit_callbacks: Any) -> None:
    """The template and the milestone a journey names, both active."""
    topic = Topic.objects.create(key="tips", name="Tips")
    template = template_save(
        key="setup-help", name="Setup help", channel="sms", topic=topic, default_locale="en",
        variants={"en": {"body": "Need a hand with setup?"}},
    )  # fmt: skip
    template_activate(template_id=template.pk)
    definition = definition_create(
        key="activated", name="Activated", kind="onboarding",
        condition={"type": "event_count", "event": "Task Done", "at_least": 1},
    )  # fmt: skip
    definition_activate(definition=definition)
