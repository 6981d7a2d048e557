"""``manage.py journeys_demo_seed``: the demo journeys, live, with the demo customers in them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from journeys.demo import DemoNotReady, journeys_demo_seed


class Command(BaseCommand):
    help = (
        "Create the demo journeys (SaaS activated and missed activation, e-commerce second "
        "purchase, fintech spending streak) with their templates, take them live, enroll the "
        "milestones demo's customers whose current state triggers them and take the first "
        "steps. Needs milestones_demo_seed first. Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Seed even with DEBUG off (the demo adds live journeys and sends messages).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "DEBUG is off: this looks like a real deployment, and the journeys demo adds "
                "live journeys and sends messages. Pass --force to seed anyway."
            )
        try:
            result = journeys_demo_seed()
        except DemoNotReady as exc:
            raise CommandError(f"Journeys demo: {exc}.") from exc
        self.stdout.write(
            f"Journeys demo: {len(result.enrollments)} journeys "
            f"({result.journeys_created} created this run), "
            f"{result.templates_created} templates created."
        )
        self.stdout.write(
            f"Made {result.enrolled} enrollments this run; the runner advanced "
            f"{result.advanced} enrollments."
        )
        for key, states in result.enrollments.items():
            shown = ", ".join(f"{count} {state}" for state, count in states.items()) or "none"
            self.stdout.write(f"  {key}: {shown}")
        decided = ", ".join(f"{count} {what}" for what, count in result.messages.items())
        self.stdout.write(f"Journey messages: {decided or 'none'}.")
