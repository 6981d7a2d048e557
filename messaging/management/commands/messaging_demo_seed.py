"""``manage.py messaging_demo_seed``: demo templates, caps, consent and a round of sends."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from messaging.demo import messaging_demo_seed


class Command(BaseCommand):
    help = (
        "Create and activate demo templates on every channel, frequency caps, a few consent "
        "states, and send one round of onboarding messages to the demo customers through the "
        "delivery policy. Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="Seed even with DEBUG off.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "DEBUG is off: this looks like a real deployment, and the messaging demo sends "
                "messages. Pass --force to seed anyway."
            )
        result = messaging_demo_seed()
        decided = ", ".join(f"{count} {what}" for what, count in result.messages.items())
        self.stdout.write(f"Messaging demo: {result.templates} templates; messages: {decided}.")
