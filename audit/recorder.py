"""Records an ``AuditEntry`` for every save and delete of an audited model.

``pre_save`` reads the row as stored (one query by primary key; audited rows are
configuration, saved rarely), ``post_save`` compares it with what was written, and
``post_delete`` keeps the deleted row's values. A save that changes nothing audited (only
``updated_at``, say) records nothing; a save whose ``update_fields`` are all excluded costs
no query either (an API token's ``last_used_at``). Bulk ``QuerySet.update`` sends no
signals, so audited models are changed through ``save`` (the services do this).
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models.signals import post_delete, post_save, pre_save

from audit.context import actor
from audit.models import AuditAction, AuditEntry
from audit.registry import AUDITED, Audited, audited
from config.logs import request_id_var

_BEFORE = "_audit_before"
HIDDEN = "(hidden)"


def connect() -> None:
    """Listen to the audited models only: saves of everything else (progress, messages,
    enrollments) never reach these receivers."""
    for label in AUDITED:
        model = apps.get_model(label)
        pre_save.connect(_pre_save, sender=model, dispatch_uid=f"audit.pre_save.{label}")
        post_save.connect(_post_save, sender=model, dispatch_uid=f"audit.post_save.{label}")
        post_delete.connect(_post_delete, sender=model, dispatch_uid=f"audit.post_delete.{label}")


def _fields(model: type[models.Model], spec: Audited) -> list[models.Field[Any, Any]]:
    return [
        f for f in model._meta.concrete_fields if f.name not in spec.exclude and not f.primary_key
    ]


def jsonable(value: Any) -> Any:
    """A field value as the trail stores it (JSON)."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _snapshot(instance: models.Model, fields: Iterable[models.Field[Any, Any]]) -> dict[str, Any]:
    return {f.name: jsonable(f.value_from_object(instance)) for f in fields}


def _pre_save(
    sender: type[models.Model],
    instance: models.Model,
    raw: bool = False,
    using: str = "default",
    update_fields: Iterable[str] | None = None,
    **kwargs: Any,
) -> None:
    spec = audited(sender)
    if spec is None or raw:
        return
    fields = _fields(sender, spec)
    if update_fields is not None:
        wanted = set(update_fields)
        fields = [f for f in fields if f.name in wanted or f.attname in wanted]
        if not fields:
            return
    before = None
    if instance.pk is not None:
        row = sender._base_manager.using(using).filter(pk=instance.pk).first()
        before = _snapshot(row, fields) if row is not None else None
    instance.__dict__[_BEFORE] = (before, fields)


def _post_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool = False,
    raw: bool = False,
    using: str = "default",
    **kwargs: Any,
) -> None:
    spec = audited(sender)
    pending = instance.__dict__.pop(_BEFORE, None)
    if spec is None or raw or pending is None:
        return
    before, fields = pending
    after = _snapshot(instance, fields)
    if before is None:
        changes = {name: {"to": value} for name, value in after.items() if value not in ("", None)}
        action = AuditAction.CREATED
    else:
        changes = {
            name: {"from": before[name], "to": value}
            for name, value in after.items()
            if before[name] != value
        }
        action = AuditAction.CHANGED
        if not changes:
            return
    _record(instance, action, _hide(changes, spec), using)


def _post_delete(
    sender: type[models.Model], instance: models.Model, using: str = "default", **kwargs: Any
) -> None:
    spec = audited(sender)
    if spec is None:
        return
    values = _snapshot(instance, _fields(sender, spec))
    changes = {name: {"from": value} for name, value in values.items() if value not in ("", None)}
    _record(instance, AuditAction.DELETED, _hide(changes, spec), using)


def _hide(changes: dict[str, dict[str, Any]], spec: Audited) -> dict[str, dict[str, Any]]:
    return {
        name: dict.fromkeys(change, HIDDEN) if name in spec.secret else change
        for name, change in changes.items()
    }


def _record(instance: models.Model, action: str, changes: dict[str, Any], using: str) -> None:
    user, label = actor()
    AuditEntry.objects.using(using).create(
        actor=user,
        actor_label=label[:150],
        action=action,
        content_type=ContentType.objects.db_manager(using).get_for_model(instance),
        object_id=str(instance.pk),
        object_label=str(instance)[:200],
        changes=changes,
        request_id=request_id_var.get() or "",
    )
