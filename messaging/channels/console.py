"""A backend that prints what it would send, like Django's console email backend: the demo's
SMS and push when no provider is configured. Never for production (nothing is delivered)."""

from __future__ import annotations

import sys

import orjson

from messaging.channels.base import Outgoing, Sent


class ConsoleBackend:
    supports_idempotency = True  # nothing leaves the machine: printing twice harms nobody

    def send(self, message: Outgoing) -> Sent:
        body = orjson.dumps(dict(message.content), option=orjson.OPT_INDENT_2).decode()
        sys.stdout.write(f"--- {message.channel} to {message.to} (message {message.message_id})\n")
        sys.stdout.write(f"{body}\n")
        sys.stdout.flush()
        return Sent(provider_id=f"console-{message.message_id}")
