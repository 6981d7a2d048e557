"""``manage.py apitoken_create USERNAME NAME``: make an API token, print it once, last line."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.models import ApiToken
from customers.services import api_token_create


class Command(BaseCommand):
    help = "Create an API token acting as USERNAME and print it. Only a hash is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="The user the token acts as.")
        parser.add_argument("name", help="What the token is for, e.g. 'ci'.")

    def handle(self, *args: Any, username: str, name: str, **options: Any) -> None:
        user_model = get_user_model()
        user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"There is no user “{username}”.")
        if not user.is_active:
            raise CommandError(f"User “{username}” is inactive; their tokens would not work.")
        name = name.strip()
        limit = ApiToken._meta.get_field("name").max_length or 0
        if not name or len(name) > limit:
            raise CommandError(f"The name must be 1 to {limit} characters.")
        if ApiToken.objects.filter(user=user, name=name, is_active=True).exists():
            raise CommandError(f"User “{username}” already has an active token named “{name}”.")
        created = api_token_create(user=user, name=name)
        self.stdout.write(
            f"Created API token “{name}” for “{username}” (id {created.id}). The token follows; "
            "it is shown only this once."
        )
        self.stdout.write(created.key)
