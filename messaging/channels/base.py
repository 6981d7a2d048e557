"""The one small interface every channel backend implements.

A backend turns one ``Outgoing`` (already rendered, already allowed by the delivery policy)
into one provider call and says what happened: ``Sent`` with the provider's id, or it raises
``TransientError`` (worth retrying: network, timeout, 5xx, 429) or ``PermanentError``
(the provider refused this message for good: bad address, unregistered token, 4xx). Backends
never touch the database and never decide policy; the send service claims the message row
before calling ``send`` and records the result after (DESIGN.md §2.2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True, slots=True)
class Outgoing:
    """One rendered message on one channel to one address."""

    message_id: int
    idempotency_key: str  # stable across retries: passed to providers that support one
    channel: str  # "email" | "sms" | "push" | "in_app" | "webhook"
    to: str  # email address, E.164 phone, device token, customer id (in-app) or URL
    content: Mapping[str, Any]  # the rendered fields of the channel (see messaging.rendering)
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)  # email only
    platform: str = ""  # push: "ios" | "android" | "web"


@dataclasses.dataclass(frozen=True, slots=True)
class Sent:
    provider_id: str = ""


class SendError(Exception):
    """A provider call that did not send; ``reason`` is short and safe to store."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason[:500]
        self.retry_after = retry_after


class TransientError(SendError):
    """Retry later with backoff (network error, timeout, 5xx, 429)."""


class PermanentError(SendError):
    """Never retry; ``is_bad_address`` marks a hard bounce / invalid or unregistered
    address, which suppresses the address."""

    def __init__(self, reason: str, *, is_bad_address: bool = False) -> None:
        super().__init__(reason)
        self.is_bad_address = is_bad_address


class Backend(Protocol):
    #: The provider deduplicates on ``Outgoing.idempotency_key``: a message whose send
    #: outcome is unknown (crash between claim and record) may safely be sent again.
    supports_idempotency: bool

    def send(self, message: Outgoing) -> Sent: ...
