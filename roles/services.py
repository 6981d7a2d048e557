"""Make the role groups match ``roles.definitions.ROLES``."""

from __future__ import annotations

from collections.abc import Iterable

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from roles.definitions import ADMIN_ONLY_MODELS, ROLES, Role


def role_permissions(role: Role, available: Iterable[tuple[str, str]]) -> set[str]:
    """The permissions ("app_label.codename") ``role`` holds, of ``available`` (pairs of a
    permission and its model, "app_label.model"). A grant that does not exist raises:
    a renamed model must not silently take a right away."""
    known = dict(available)
    if role.everything:
        return set(known)
    missing = sorted(role.grants - known.keys())
    if missing:
        raise ImproperlyConfigured(f"roles: unknown permissions {', '.join(missing)}")
    viewed = {
        permission
        for permission, model in known.items()
        if permission.split(".", 1)[1].startswith("view_")
        and model.split(".", 1)[0] in role.views
        and model not in ADMIN_ONLY_MODELS
    }
    return viewed | set(role.grants)


def roles_sync(*, using: str = "default") -> dict[str, int]:
    """Create or update each role's group to hold exactly its permissions; returns how
    many each holds. Idempotent; runs after every ``migrate``."""
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    permissions = {
        f"{p.content_type.app_label}.{p.codename}": p
        for p in Permission.objects.using(using).select_related("content_type")
    }
    available = [
        (label, f"{p.content_type.app_label}.{p.content_type.model}")
        for label, p in permissions.items()
    ]
    held: dict[str, int] = {}
    with transaction.atomic(using=using):
        for name, role in ROLES.items():
            wanted = role_permissions(role, available)
            group, _ = Group.objects.using(using).get_or_create(name=name)
            group.permissions.set([permissions[label] for label in wanted])
            held[name] = len(wanted)
    return held
