"""Push: APNs for iOS devices, FCM for Android and web, chosen by ``Outgoing.platform``."""

from __future__ import annotations

from messaging.channels.apns import ApnsBackend
from messaging.channels.base import Outgoing, PermanentError, Sent
from messaging.channels.fcm import FcmBackend


class PushBackend:
    # Neither provider dedupes; the dispatcher can only promise what both do.
    supports_idempotency = False

    def __init__(self) -> None:
        self.apns = ApnsBackend()
        self.fcm = FcmBackend()

    def send(self, message: Outgoing) -> Sent:
        if message.platform == "ios":
            return self.apns.send(message)
        if message.platform in ("android", "web"):
            return self.fcm.send(message)
        raise PermanentError(f"unknown push platform {message.platform!r}")
