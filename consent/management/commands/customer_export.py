"""``manage.py customer_export ID [--output FILE]``: everything held about a customer, JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.gdpr import customer_export
from customers.models import Customer


class Command(BaseCommand):
    help = "Export everything Milepost holds about a customer as JSON (GDPR access request)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("customer_id", type=int)
        parser.add_argument("--output", help="Write to this file instead of standard output.")

    def handle(self, *args: Any, customer_id: int, output: str | None, **options: Any) -> None:
        try:
            data = customer_export(customer_id=customer_id)
        except Customer.DoesNotExist as exc:
            raise CommandError(f"There is no customer {customer_id}.") from exc
        body = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        if output:
            Path(output).write_bytes(body)
            self.stderr.write(f"Wrote {len(body):,} bytes to {output}.")
        else:
            self.stdout.write(body.decode())
