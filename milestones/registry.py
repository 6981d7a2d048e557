"""The active milestone versions, parsed once and indexed by what can change them.

Ingest asks "which (version, subject) pairs can these events affect?" on every batch, so the
index is cached per process for ``MILESTONES_REGISTRY_SECONDS``; a change made in this
process clears it at once (``registry_clear``), other processes see it within the TTL. The
backfill that follows an activation covers events ingested during that gap.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping

from django.conf import settings
from django.db.models import F

from config.cache import Cached
from milestones.conditions import (
    AllOf,
    AnyOf,
    Attribute,
    Condition,
    event_names,
    milestone_keys,
    parse_condition,
)
from milestones.eligibility import Eligibility, parse_eligibility
from milestones.models import (
    Anchor,
    DefinitionStatus,
    MilestoneDefinition,
    MilestoneVersion,
    Unit,
)

#: Event types whose arrival can change traits, so conditions on traits are re-checked.
PROFILE_TYPES = frozenset({"identify", "group"})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CompiledVersion:
    id: int
    definition_id: int
    key: str
    number: int
    unit: str
    condition: Condition
    anchor: str
    anchor_event: str
    anchor_milestone: str
    window: dt.timedelta | None
    eligibility: Eligibility
    event_names: frozenset[str]  # the condition's events and the anchor event
    milestone_keys: frozenset[str]  # milestones the condition or the anchor waits for
    reads_traits: bool

    @property
    def is_account(self) -> bool:
        return self.unit == Unit.ACCOUNT


def compile_version(version: MilestoneVersion, key: str) -> CompiledVersion:
    condition = parse_condition(version.condition)
    names = set(event_names(condition))
    keys = set(milestone_keys(condition))
    if version.anchor == Anchor.EVENT:
        names.add(version.anchor_event)
    if version.anchor == Anchor.MILESTONE:
        keys.add(version.anchor_milestone)
    return CompiledVersion(
        id=version.pk,
        definition_id=version.definition_id,
        key=key,
        number=version.number,
        unit=version.unit,
        condition=condition,
        anchor=version.anchor,
        anchor_event=version.anchor_event,
        anchor_milestone=version.anchor_milestone,
        window=version.window,
        eligibility=parse_eligibility(version.eligibility, has_stage=version.unit == Unit.CUSTOMER),
        event_names=frozenset(names),
        milestone_keys=frozenset(keys),
        reads_traits=_reads_traits(condition),
    )


def _reads_traits(condition: Condition) -> bool:
    match condition:
        case Attribute():
            return True
        case AllOf(children) | AnyOf(children):
            return any(_reads_traits(child) for child in children)
        case _:
            return False


@dataclasses.dataclass(frozen=True, slots=True)
class Registry:
    versions: Mapping[int, CompiledVersion]
    by_event: Mapping[str, tuple[CompiledVersion, ...]]
    by_key: Mapping[str, CompiledVersion]
    dependents: Mapping[str, tuple[CompiledVersion, ...]]  # key -> versions waiting for it
    on_profile: tuple[CompiledVersion, ...]

    @classmethod
    def build(cls, versions: Iterable[CompiledVersion]) -> Registry:
        by_event: defaultdict[str, list[CompiledVersion]] = defaultdict(list)
        dependents: defaultdict[str, list[CompiledVersion]] = defaultdict(list)
        listed = sorted(versions, key=lambda v: v.id)
        for version in listed:
            for name in version.event_names:
                by_event[name].append(version)
            for key in version.milestone_keys:
                dependents[key].append(version)
        return cls(
            versions={v.id: v for v in listed},
            by_event={name: tuple(found) for name, found in by_event.items()},
            by_key={v.key: v for v in listed},
            dependents={key: tuple(found) for key, found in dependents.items()},
            on_profile=tuple(v for v in listed if v.reads_traits),
        )

    def affected(self, name: str, type_: str) -> tuple[CompiledVersion, ...]:
        found = self.by_event.get(name, ())
        if type_ in PROFILE_TYPES and self.on_profile:
            return tuple({v.id: v for v in (*found, *self.on_profile)}.values())
        return found


def registry() -> Registry:
    """The active versions, from a per-process cache of ``MILESTONES_REGISTRY_SECONDS``."""
    return _registry.get()


def registry_load() -> Registry:
    rows = MilestoneVersion.objects.filter(
        definition__status=DefinitionStatus.ACTIVE, definition__active_version_id=F("pk")
    ).values_list("pk", "definition__key")
    versions = MilestoneVersion.objects.in_bulk([pk for pk, _ in rows])
    return Registry.build(compile_version(versions[pk], key) for pk, key in rows)


_registry = Cached(
    registry_load,
    models=(MilestoneDefinition, MilestoneVersion),
    seconds=lambda: float(settings.MILESTONES_REGISTRY_SECONDS),
)


def registry_clear() -> None:
    _registry.forget()
