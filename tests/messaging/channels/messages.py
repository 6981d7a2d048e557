"""A rendered message to send in the channel tests."""

from __future__ import annotations

from typing import Any

from messaging.channels.base import Outgoing


def outgoing(**fields: Any) -> Outgoing:
    fields.setdefault("message_id", 7)
    fields.setdefault("idempotency_key", "msg-7")
    fields.setdefault("channel", "email")
    fields.setdefault("to", "ada@example.com")
    fields.setdefault("content", {})
    return Outgoing(**fields)
