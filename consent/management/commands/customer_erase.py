"""``manage.py customer_erase ID --yes``: erase a customer (GDPR erasure request)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.gdpr import customer_erase
from customers.models import Customer


class Command(BaseCommand):
    help = (
        "Erase a customer: events, identities, devices, consent records and milestone state "
        "are deleted, messages are anonymised, every address is kept only as a hashed "
        "suppression. Cannot be undone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("customer_id", type=int)
        parser.add_argument("--yes", action="store_true", help="Confirm: this cannot be undone.")

    def handle(self, *args: Any, customer_id: int, yes: bool, **options: Any) -> None:
        if not yes:
            raise CommandError("Erasing cannot be undone: pass --yes to confirm.")
        try:
            summary = customer_erase(customer_id=customer_id)
        except Customer.DoesNotExist as exc:
            raise CommandError(f"There is no customer {customer_id}.") from exc
        self.stdout.write(
            f"Erased customer {customer_id}: {summary.events} events deleted, "
            f"{summary.suppressed_addresses} addresses suppressed by hash, "
            f"{summary.messages_blanked} messages anonymised."
        )
