"""``manage.py demo_seed``: demo data, a write key and an admin login. Safe to run again."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.demo import DEMO_ADMIN_PASSWORD, demo_seed

ADMIN_URL = "http://127.0.0.1:8000/admin/"


class Command(BaseCommand):
    help = (
        "Load demo accounts, customers and events through the ingest path and ensure the "
        "'admin' superuser (password from DEMO_ADMIN_PASSWORD, default 'milepost-demo'). "
        "Idempotent: a second run stores nothing new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Seed even with DEBUG off (the demo creates a superuser with a known password).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "DEBUG is off: this looks like a real deployment, and the demo seed creates a "
                "superuser with a known password. Pass --force to seed anyway."
            )
        password = os.environ.get("DEMO_ADMIN_PASSWORD", DEMO_ADMIN_PASSWORD)
        if not password:
            raise CommandError("DEMO_ADMIN_PASSWORD is set but empty.")
        result = demo_seed(admin_password=password)
        self.stdout.write(
            f"Demo data: {result.accounts} accounts, {result.customers} customers "
            f"({result.anonymous_customers} anonymous), {result.identities} identities, "
            f"{result.devices} devices, {result.events} events."
        )
        self.stdout.write(
            f"This run sent {result.messages_sent} messages through ingest; "
            f"{result.events_stored} were new (replays are skipped)."
        )
        if result.source_key is not None:
            self.stdout.write(
                f"Created source “{result.source_name}”. Its write key, shown only this once:"
            )
            self.stdout.write(f"  {result.source_key}")
        else:
            self.stdout.write(
                f"Source “{result.source_name}” already exists; its write key was printed when "
                "it was created (make another with `manage.py source_create NAME`)."
            )
        self.stdout.write(f"Admin: {ADMIN_URL}")
        self.stdout.write(f"Login: username {result.admin_username}, password {password}")
