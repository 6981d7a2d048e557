"""Choosing a backend per channel from MESSAGING_BACKENDS; the in-app and null backends."""

from __future__ import annotations

from typing import Any

import pytest

from messaging.channels.base import PermanentError, Sent
from messaging.channels.email import EmailBackend
from messaging.channels.inapp import InAppBackend
from messaging.channels.null import NullBackend
from messaging.channels.push import PushBackend
from messaging.channels.registry import backend_for, backends_reset
from messaging.channels.sms import SmsBackend
from messaging.channels.webhook import WebhookBackend
from tests.messaging.channels.messages import outgoing


@pytest.mark.parametrize(
    ("channel", "backend_class"),
    [
        ("email", EmailBackend),
        ("sms", SmsBackend),
        ("push", PushBackend),
        ("in_app", InAppBackend),
        ("webhook", WebhookBackend),
    ],
)
def test_each_channel_has_its_default_backend(channel: str, backend_class: type) -> None:
    assert type(backend_for(channel)) is backend_class


def test_one_instance_per_channel_until_reset() -> None:
    first = backend_for("sms")

    assert backend_for("sms") is first
    backends_reset()
    assert backend_for("sms") is not first


def test_the_setting_chooses_the_class(settings: Any) -> None:
    settings.MESSAGING_BACKENDS = {"email": "messaging.channels.null.NullBackend"}

    assert type(backend_for("email")) is NullBackend


def test_a_channel_without_a_backend_is_not_configured(settings: Any) -> None:
    settings.MESSAGING_BACKENDS = {"email": "messaging.channels.null.NullBackend"}

    with pytest.raises(PermanentError) as raised:
        backend_for("sms")

    assert raised.value.reason == "not configured: MESSAGING_BACKENDS has no 'sms' backend"


def test_in_app_records_nothing_anywhere_else() -> None:
    backend = InAppBackend()

    assert backend.send(outgoing(channel="in_app", to="7")) == Sent(provider_id="")
    assert backend.supports_idempotency is True


def test_the_null_backend_counts_its_sends() -> None:
    backend = NullBackend()

    sent = [backend.send(outgoing()) for _ in range(3)]

    assert sent == [Sent("null-1"), Sent("null-2"), Sent("null-3")]
    assert backend.sent_count == 3
    assert backend.supports_idempotency is True
