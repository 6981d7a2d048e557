"""``manage.py source_create NAME``: make a write key and print it once, on the last line."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError, transaction

from customers.models import Source
from customers.services import source_create


class Command(BaseCommand):
    help = "Create a source and print its write key. Only a hash is stored: copy the key now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="A unique name, e.g. 'web app'.")

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        name = name.strip()
        limit = Source._meta.get_field("name").max_length or 0
        if not name or len(name) > limit:
            raise CommandError(f"The name must be 1 to {limit} characters.")
        try:
            with transaction.atomic():
                created = source_create(name=name)
        except IntegrityError as exc:
            raise CommandError(f"A source named “{name}” already exists.") from exc
        self.stdout.write(
            f"Created source “{name}” (id {created.id}). Its write key follows; it is shown "
            "only this once."
        )
        self.stdout.write(created.key)
