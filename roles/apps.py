from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class RolesConfig(AppConfig):
    name = "roles"
    verbose_name = "Roles"

    def ready(self) -> None:
        post_migrate.connect(_sync, sender=self, dispatch_uid="roles.sync")


def _sync(using: str = "default", **kwargs: Any) -> None:
    from roles.services import roles_sync

    roles_sync(using=using)
