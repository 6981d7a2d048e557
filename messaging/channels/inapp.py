"""In-app: the message row is the inbox entry, served by Milepost's own REST API, so sending
is recording and there is no provider to call."""

from __future__ import annotations

from messaging.channels.base import Outgoing, Sent


class InAppBackend:
    supports_idempotency = True  # nothing leaves the database: sending twice shows one row

    def send(self, message: Outgoing) -> Sent:
        return Sent(provider_id="")
