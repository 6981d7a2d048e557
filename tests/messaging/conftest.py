"""Messaging fixtures: topics, one active template per channel, a reachable customer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from consent.models import Topic
from customers.models import Customer
from messaging.channels.registry import backends_reset
from messaging.models import Template
from messaging.templating import template_activate, template_save
from tests.factories import CustomerFactory, DeviceFactory

EMAIL_FIELDS = {
    "subject": "Welcome, {{ customer.first_name | default('there') }}",
    "preheader": "",
    "html": '<p>Hi {{ customer.first_name | default("there") }}</p>'
    '<a href="https://example.com/start?a=1&amp;b=2">Start</a>'
    '<a href="{{ links.unsubscribe }}" data-notrack>Unsubscribe</a>',
    "text": "",
}
CHANNEL_FIELDS: dict[str, dict[str, Any]] = {
    "email": EMAIL_FIELDS,
    "sms": {"body": "Hi {{ customer.first_name | default('there') }}: 3 tips inside"},
    "push": {"title": "Tips", "body": "3 tips", "deep_link": "app://tips", "data": {}},
    "in_app": {"title": "Tips", "body": "3 tips", "cta_label": "Open", "cta_url": "app://tips"},
}


@pytest.fixture(autouse=True)
def _fresh_backends() -> Iterator[None]:
    backends_reset()
    yield
    backends_reset()


@pytest.fixture
def topics(db: None) -> dict[str, Topic]:
    return {
        "tips": Topic.objects.create(key="tips", name="Tips"),
        "receipts": Topic.objects.create(key="receipts", name="Receipts", is_transactional=True),
    }


@pytest.fixture
def make_template(topics: dict[str, Topic]) -> Callable[..., Template]:
    def _make(
        key: str, channel: str, *, topic: str = "tips", fields: dict[str, Any] | None = None
    ) -> Template:
        template = template_save(
            key=key,
            name=key,
            channel=channel,
            topic=topics[topic],
            default_locale="en",
            variants={"en": fields or CHANNEL_FIELDS[channel]},
        )
        template_activate(template_id=template.pk)
        template.refresh_from_db()
        return template

    return _make


@pytest.fixture
def templates(make_template: Callable[..., Template]) -> dict[str, Template]:
    return {channel: make_template(f"tips-{channel}", channel) for channel in CHANNEL_FIELDS}


@pytest.fixture
def customer(db: None) -> Customer:
    found = CustomerFactory(
        email="ada@example.com",
        phone="+14155550100",
        time_zone="UTC",
        region="US",
        traits={"first_name": "Ada"},
    )
    DeviceFactory(customer=found, platform="ios", token="tok-ios")
    return found
