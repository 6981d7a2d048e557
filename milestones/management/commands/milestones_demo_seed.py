"""``manage.py milestones_demo_seed``: demo milestones, stages and the events that drive them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from milestones.demo import milestones_demo_seed


class Command(BaseCommand):
    help = (
        "Create and activate the demo milestones (SaaS activation with its micro-milestones, "
        "second purchase within 45 days, 4-week spending streak) and lifecycle stages, send "
        "their events through ingest and evaluate them. Idempotent: a second run stores and "
        "evaluates nothing new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Seed even with DEBUG off (the demo adds customers, events and live milestones).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "DEBUG is off: this looks like a real deployment, and the milestones demo adds "
                "demo customers, events and active milestones. Pass --force to seed anyway."
            )
        result = milestones_demo_seed()
        self.stdout.write(
            f"Milestones demo: {len(result.outcomes)} milestones "
            f"({result.definitions_created} created this run), "
            f"{result.stages_created} lifecycle stages created."
        )
        self.stdout.write(
            f"This run sent {result.messages_sent} messages through ingest; "
            f"{result.events_stored} were new (replays are skipped)."
        )
        self.stdout.write(
            f"Evaluated {result.pairs_evaluated} pending (milestone, customer) pairs and ran "
            f"{result.backfills_run} activation backfills; the sweep recorded "
            f"{result.swept_missed} missed."
        )
        for key, states in result.progress.items():
            outcomes = result.outcomes[key]
            shown = ", ".join(f"{count} {state}" for state, count in states.items()) or "none"
            self.stdout.write(
                f"  {key}: {shown} "
                f"(outcomes: {outcomes.get('achieved', 0)} achieved, "
                f"{outcomes.get('missed', 0)} missed)"
            )
        if result.source_key is not None:
            self.stdout.write(
                f"Created source “{result.source_name}”. Its write key, shown only this once:"
            )
            self.stdout.write(f"  {result.source_key}")
