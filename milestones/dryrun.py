"""Dry run: who would qualify now, and who would have missed, for a (draft) definition.

Reads history with the live evaluator's loaders and the pure condition core, and writes
nothing: no progress, no outcomes, no locks. Subjects are read in id-ordered batches up to
``limit`` (the answer says when it stopped early), so memory stays bounded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Final

from django.conf import settings
from django.utils import timezone

from customers.models import Account, Customer
from milestones import evaluation
from milestones.conditions import Facts, evaluate
from milestones.eligibility import ineligibility
from milestones.models import Anchor, MilestoneDefinition, MilestoneVersion, Progress, Unit
from milestones.registry import CompiledVersion, compile_version, registry
from milestones.services import VERSIONED_FIELDS, definition_validate

BUCKETS: Final = ("achieved", "missed", "in_progress", "ineligible", "not_started")
_BATCH: Final = 1_000


@dataclasses.dataclass(slots=True, kw_only=True)
class DryRun:
    subjects: int = 0
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    samples: dict[str, list[int]] = dataclasses.field(
        default_factory=lambda: {bucket: [] for bucket in BUCKETS}
    )
    is_truncated: bool = False
    evaluated_at: dt.datetime | None = None


def definition_dry_run(
    *,
    definition: MilestoneDefinition,
    now: dt.datetime | None = None,
    limit: int = 50_000,
    sample_size: int = 10,
) -> DryRun:
    """Evaluate the definition's working copy against history for up to ``limit`` subjects.

    Raises ``DefinitionInvalid`` when the working copy does not validate."""
    definition_validate(definition)
    snapshot = {name: getattr(definition, name) for name in VERSIONED_FIELDS}
    draft = MilestoneVersion(pk=0, definition=definition, number=0, **snapshot)
    version = compile_version(draft, definition.key)
    now = now or timezone.now()
    result = DryRun(evaluated_at=now)
    model = Account if version.unit == Unit.ACCOUNT else Customer
    after = 0
    while result.subjects < limit:
        size = min(_BATCH, limit - result.subjects)
        ids = list(
            model.objects.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:size]
        )
        if not ids:
            return result
        for subject_id, bucket in _judge_batch(version, ids, now):
            result.counts[bucket] += 1
            if len(result.samples[bucket]) < sample_size:
                result.samples[bucket].append(subject_id)
        result.subjects += len(ids)
        after = ids[-1]
    result.is_truncated = model.objects.filter(pk__gt=after).exists()
    return result


def _judge_batch(
    version: CompiledVersion, ids: Sequence[int], now: dt.datetime
) -> list[tuple[int, str]]:
    subjects = _subjects(version.unit, ids)
    anchors = _anchors(version, ids, subjects)
    started = [s for s in ids if s in anchors]
    if not started:
        return [(s, "not_started") for s in ids]
    since = min(anchors.values())
    events = evaluation.events_load(version.unit, version.event_names, started, since)
    milestones = _milestones(version, started)
    trial_plans = frozenset(settings.MILESTONES_TRIAL_PLANS)
    judged = []
    for subject_id in ids:
        anchor = anchors.get(subject_id)
        if anchor is None:
            judged.append((subject_id, "not_started"))
            continue
        subject = subjects[subject_id]
        reason = ineligibility(
            version.eligibility, subject.profile, anchor_at=anchor, trial_plans=trial_plans
        )
        if reason is not None:
            judged.append((subject_id, "ineligible"))
            continue
        deadline = None if version.window is None else anchor + version.window
        end = now if deadline is None else min(now, deadline)
        facts = Facts(
            events=events.get(subject_id, []),
            zone=subject.zone,
            start=min(anchor, end),
            end=end,
            traits=subject.traits,
            milestones=milestones.get(subject_id, {}),
        )
        if evaluate(version.condition, facts).is_achieved:
            judged.append((subject_id, "achieved"))
        elif deadline is not None and deadline <= now:
            judged.append((subject_id, "missed"))
        else:
            judged.append((subject_id, "in_progress"))
    return judged


def _subjects(unit: str, ids: Sequence[int]) -> dict[int, evaluation.Subject]:
    return evaluation.subjects_load(unit, ids)


def _anchors(
    version: CompiledVersion, ids: Sequence[int], subjects: dict[int, evaluation.Subject]
) -> dict[int, dt.datetime]:
    if version.anchor == Anchor.SIGNUP:
        return {s: subjects[s].created_at for s in ids if s in subjects}
    if version.anchor == Anchor.EVENT:
        return evaluation.first_events(version, ids)
    other = registry().by_key.get(version.anchor_milestone)
    if other is None:
        return {}
    return {s: at for (_, s), at in evaluation.achievements([other.id], ids).items()}


def _milestones(version: CompiledVersion, ids: Sequence[int]) -> dict[int, dict[str, dt.datetime]]:
    found = registry()
    others = {found.by_key[k].id: k for k in version.milestone_keys if k in found.by_key}
    mapped: dict[int, dict[str, dt.datetime]] = {}
    rows = Progress.objects.filter(
        version_id__in=list(others), subject_id__in=ids, achieved_at__isnull=False
    ).values_list("version_id", "subject_id", "achieved_at")
    for version_id, subject_id, at in rows:
        if at is not None:
            mapped.setdefault(subject_id, {})[others[version_id]] = at
    return mapped
