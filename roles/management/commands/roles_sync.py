from typing import Any

from django.core.management.base import BaseCommand

from roles.definitions import ROLES
from roles.services import roles_sync


class Command(BaseCommand):
    help = "Create or update the role groups (Marketer, Analyst, Ops, Admin) and their permissions."

    def handle(self, *args: Any, **options: Any) -> None:
        held = roles_sync()
        for name, count in held.items():
            self.stdout.write(f"{name}: {count} permissions — {ROLES[name].description}")
