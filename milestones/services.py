"""Writes on milestone definitions: create, edit, activate (a new immutable version), archive.

Every change writes its ``DefinitionChange`` row in the same transaction (change control).
Evaluation lives in ``milestones.evaluation``, the deadline sweep in ``milestones.sweep``,
backfills in ``milestones.backfill``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from functools import partial
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone

from milestones.conditions import ConditionError, milestone_keys, parse_condition
from milestones.eligibility import parse_eligibility
from milestones.models import (
    Anchor,
    Backfill,
    ChangeAction,
    DefinitionChange,
    DefinitionStatus,
    MilestoneDefinition,
    MilestoneKind,
    MilestoneVersion,
    Unit,
)
from milestones.registry import registry_clear

User = AbstractBaseUser | AnonymousUser

#: The fields a version snapshots; changing one of them on an active definition versions it.
VERSIONED_FIELDS = (
    "unit",
    "condition",
    "anchor",
    "anchor_event",
    "anchor_milestone",
    "window",
    "eligibility",
)
EDITABLE_FIELDS = (*VERSIONED_FIELDS, "name", "description", "kind", "parent")
MAX_WINDOW = dt.timedelta(days=3660)


class DefinitionInvalid(ValueError):
    """The definition cannot be saved or activated; ``errors`` maps a field to a message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = dict(errors)


@dataclasses.dataclass(frozen=True, slots=True)
class Activation:
    version: MilestoneVersion
    backfill: Backfill


def definition_validate(definition: MilestoneDefinition) -> None:
    """Raise ``DefinitionInvalid`` with every problem found in the working copy."""
    errors: dict[str, str] = {}
    keys: frozenset[str] = frozenset()
    try:
        keys = milestone_keys(parse_condition(definition.condition))
    except ConditionError as exc:
        errors["condition"] = str(exc)
    try:
        parse_eligibility(definition.eligibility, has_stage=definition.unit == Unit.CUSTOMER)
    except ConditionError as exc:
        errors["eligibility"] = str(exc)
    if definition.kind not in MilestoneKind.values:
        errors["kind"] = f"must be one of {', '.join(MilestoneKind.values)}"
    if definition.unit not in Unit.values:
        errors["unit"] = f"must be one of {', '.join(Unit.values)}"
    errors.update(_anchor_errors(definition))
    if definition.window is not None and not dt.timedelta(0) < definition.window <= MAX_WINDOW:
        errors["window"] = "must be positive and at most 10 years"
    if definition.anchor == Anchor.MILESTONE and definition.anchor_milestone:
        keys = keys | {definition.anchor_milestone}
    errors.update(_dependency_errors(definition, keys))
    if definition.parent_id is not None and definition.parent_id == definition.pk:
        errors["parent"] = "a milestone cannot be its own parent"
    if errors:
        raise DefinitionInvalid(errors)


def _anchor_errors(definition: MilestoneDefinition) -> dict[str, str]:
    if definition.anchor not in Anchor.values:
        return {"anchor": f"must be one of {', '.join(Anchor.values)}"}
    if definition.anchor == Anchor.EVENT and not definition.anchor_event.strip():
        return {"anchor_event": "name the event that starts the clock"}
    if definition.anchor == Anchor.MILESTONE and not definition.anchor_milestone:
        return {"anchor_milestone": "name the milestone whose achievement starts the clock"}
    return {}


def _dependency_errors(definition: MilestoneDefinition, keys: frozenset[str]) -> dict[str, str]:
    """Referenced milestones must exist, share the unit, and not lead back to this one."""
    if not keys:
        return {}
    if definition.key in keys:
        return {"condition": f"milestone {definition.key!r} cannot depend on itself"}
    found = {d.key: d for d in MilestoneDefinition.objects.filter(key__in=keys)}
    missing = sorted(keys - set(found))
    if missing:
        return {"condition": f"unknown milestone {missing[0]!r}"}
    for key in sorted(found):
        if found[key].unit != definition.unit:
            return {"condition": f"milestone {key!r} is measured per {found[key].unit}"}
    if definition.key in _dependencies_of(keys):
        return {"condition": f"milestone dependencies lead back to {definition.key!r}"}
    return {}


def _dependencies_of(keys: frozenset[str]) -> set[str]:
    """Every key reachable from ``keys`` through conditions and milestone anchors."""
    seen: set[str] = set()
    frontier = set(keys)
    while frontier:
        seen |= frontier
        following: set[str] = set()
        for definition in MilestoneDefinition.objects.filter(key__in=frontier):
            following |= _direct_keys(definition)
        frontier = following - seen
    return seen


def _direct_keys(definition: MilestoneDefinition) -> set[str]:
    try:
        keys = set(milestone_keys(parse_condition(definition.condition)))
    except ConditionError:
        keys = set()
    if definition.anchor == Anchor.MILESTONE and definition.anchor_milestone:
        keys.add(definition.anchor_milestone)
    return keys


def definition_create(*, user: User | None = None, **fields: Any) -> MilestoneDefinition:
    """A new draft definition; raises ``DefinitionInvalid``."""
    now = timezone.now()
    actor = _actor(user)
    definition = MilestoneDefinition(
        created_at=now, updated_at=now, created_by=actor, updated_by=actor, **fields
    )
    definition.status = DefinitionStatus.DRAFT
    definition_validate(definition)
    with transaction.atomic():
        definition.save()
        _record(definition, ChangeAction.CREATED, actor, detail={"fields": sorted(fields)})
    return definition


def definition_update(
    *, definition: MilestoneDefinition, user: User | None = None, **fields: Any
) -> MilestoneDefinition:
    """Edit the working copy. On an active definition, a change to what is evaluated
    (condition, anchor, window, eligibility, unit) activates a new version at once; existing
    progress and outcomes stay with the version that made them."""
    unknown = sorted(set(fields) - set(EDITABLE_FIELDS))
    if unknown:
        raise DefinitionInvalid({unknown[0]: "cannot be edited"})
    with transaction.atomic():
        locked = MilestoneDefinition.objects.select_for_update().get(pk=definition.pk)
        if locked.status == DefinitionStatus.ARCHIVED:
            raise DefinitionInvalid({"status": "an archived milestone cannot be edited"})
        changed = sorted(f for f, v in fields.items() if _differs(getattr(locked, f), v))
        for name in changed:
            setattr(locked, name, fields[name])
        definition_validate(locked)
        if not changed:
            return locked
        actor = _actor(user)
        locked.updated_at, locked.updated_by = timezone.now(), actor
        locked.save()
        _record(locked, ChangeAction.EDITED, actor, detail={"fields": changed})
        if locked.status == DefinitionStatus.ACTIVE and set(changed) & set(VERSIONED_FIELDS):
            _activate(locked, actor)
    _refresh(definition, locked)
    return locked


def _differs(current: object, new: object) -> bool:
    if isinstance(current, MilestoneDefinition) or isinstance(new, MilestoneDefinition):
        return getattr(current, "pk", None) != getattr(new, "pk", None)
    return current != new


def definition_activate(*, definition: MilestoneDefinition, user: User | None = None) -> Activation:
    """Snapshot the working copy as the next version, make it the active one, and queue the
    backfill that evaluates every existing subject from history. The previous active version
    (if any) is retired: it is no longer evaluated, and its rows stay as history."""
    with transaction.atomic():
        locked = MilestoneDefinition.objects.select_for_update().get(pk=definition.pk)
        if locked.status == DefinitionStatus.ARCHIVED:
            raise DefinitionInvalid({"status": "an archived milestone cannot be activated"})
        definition_validate(locked)
        if locked.status == DefinitionStatus.ACTIVE and not _working_copy_changed(locked):
            raise DefinitionInvalid({"status": "this milestone is already active as it is"})
        activation = _activate(locked, _actor(user))
    _refresh(definition, locked)
    return activation


def _working_copy_changed(definition: MilestoneDefinition) -> bool:
    version = definition.active_version
    return version is None or any(
        getattr(version, name) != getattr(definition, name) for name in VERSIONED_FIELDS
    )


def _activate(definition: MilestoneDefinition, actor: Any) -> Activation:
    from milestones.tasks import backfill_run_task  # tasks import services

    now = timezone.now()
    previous = definition.active_version
    if previous is not None:
        MilestoneVersion.objects.filter(pk=previous.pk).update(retired_at=now)
    number = (definition.versions.order_by("-number").values_list("number", flat=True).first()) or 0
    version = MilestoneVersion.objects.create(
        definition=definition,
        number=number + 1,
        created_at=now,
        created_by=actor,
        activated_at=now,
        **{name: getattr(definition, name) for name in VERSIONED_FIELDS},
    )
    definition.active_version = version
    definition.status = DefinitionStatus.ACTIVE
    definition.updated_at, definition.updated_by = now, actor
    definition.save(update_fields=["active_version", "status", "updated_at", "updated_by"])
    action = ChangeAction.ACTIVATED if previous is None else ChangeAction.VERSIONED
    detail = {"number": version.number, "previous": previous.number if previous else None}
    _record(definition, action, actor, version=version, detail=detail)
    backfill = Backfill.objects.create(version=version, requested_by=actor)
    _registry_changed()
    transaction.on_commit(partial(backfill_run_task.delay, backfill.pk))
    return Activation(version=version, backfill=backfill)


def definition_archive(
    *, definition: MilestoneDefinition, user: User | None = None
) -> MilestoneDefinition:
    """Stop evaluating the milestone. Refused while an active milestone depends on it."""
    with transaction.atomic():
        locked = MilestoneDefinition.objects.select_for_update().get(pk=definition.pk)
        if locked.status == DefinitionStatus.ARCHIVED:
            return locked
        dependents = sorted(
            other.key
            for other in MilestoneDefinition.objects.filter(status=DefinitionStatus.ACTIVE)
            if locked.key in _direct_keys(other)
        )
        if dependents:
            raise DefinitionInvalid({"status": f"{dependents[0]!r} depends on this milestone"})
        actor, now = _actor(user), timezone.now()
        if locked.active_version_id is not None:
            MilestoneVersion.objects.filter(pk=locked.active_version_id).update(retired_at=now)
        locked.status = DefinitionStatus.ARCHIVED
        locked.updated_at, locked.updated_by = now, actor
        locked.save(update_fields=["status", "updated_at", "updated_by"])
        _record(locked, ChangeAction.ARCHIVED, actor, version=locked.active_version)
        _registry_changed()
    _refresh(definition, locked)
    return locked


def backfill_request(
    *, definition: MilestoneDefinition, user: User | None = None, enqueue: bool = True
) -> Backfill:
    """Re-run the backfill of the active version (idempotent: outcomes are unique). With
    ``enqueue=False`` the caller runs it in-process (``milestone_backfill --sync``)."""
    from milestones.tasks import backfill_run_task

    if definition.status != DefinitionStatus.ACTIVE or definition.active_version_id is None:
        raise DefinitionInvalid({"status": "only an active milestone can be backfilled"})
    actor = _actor(user)
    with transaction.atomic():
        backfill = Backfill.objects.create(
            version_id=definition.active_version_id, requested_by=actor
        )
        _record(
            definition,
            ChangeAction.BACKFILL,
            actor,
            version=definition.active_version,
            detail={"sync": not enqueue},
        )
        if enqueue:
            transaction.on_commit(partial(backfill_run_task.delay, backfill.pk))
    return backfill


def _registry_changed() -> None:
    # Now, for the rest of this transaction, and again after commit for the next reader.
    registry_clear()
    transaction.on_commit(registry_clear)


def _record(
    definition: MilestoneDefinition,
    action: str,
    actor: Any,
    *,
    version: MilestoneVersion | None = None,
    detail: Mapping[str, object] | None = None,
) -> None:
    DefinitionChange.objects.create(
        definition=definition, version=version, action=action, user=actor, detail=dict(detail or {})
    )


def _actor(user: User | None) -> Any:
    return user if user is not None and user.is_authenticated else None


def _refresh(target: MilestoneDefinition, source: MilestoneDefinition) -> None:
    for field in MilestoneDefinition._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
