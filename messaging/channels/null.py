"""A backend that sends nothing and counts what it was given: for benchmarks, load tests and
tests of the send path (``MESSAGING_BACKENDS={"email": "messaging.channels.null.NullBackend"}``)."""

from __future__ import annotations

import threading

from messaging.channels.base import Outgoing, Sent


class NullBackend:
    supports_idempotency = True

    def __init__(self) -> None:
        self.sent_count = 0
        self._lock = threading.Lock()

    def send(self, message: Outgoing) -> Sent:
        with self._lock:
            self.sent_count += 1
            return Sent(provider_id=f"null-{self.sent_count}")
