"""Lifecycle stages: rules that map a customer's milestone states to one stage.

``stage_for`` is pure. ``stages_refresh`` is the service the evaluator and the sweep call, in
their transaction, for the customers whose milestone states just changed: it moves each
customer's stage, writes the history row, and publishes ``stage_changed`` on commit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from functools import partial
from typing import Final

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from config.cache import cached
from config.plans import planned_each_time
from customers.models import Customer
from milestones.conditions import ConditionError
from milestones.models import LifecycleStage, Progress, StageChange, Unit
from milestones.signals import StageChangeRecord, stage_changed
from milestones.sql import execute as sql_execute

#: States a stage rule can ask for; ``not_started`` has no progress row, ``not_achieved`` is
#: anything but achieved (including not started).
RULE_STATES: Final = frozenset(
    {"achieved", "missed", "in_progress", "ineligible", "not_started", "not_achieved"}
)


@dataclasses.dataclass(frozen=True, slots=True)
class StageRule:
    stage: str
    requirements: tuple[tuple[str, str], ...]  # (milestone key, state)


def parse_stage_rules(rules: object) -> tuple[tuple[str, str], ...]:
    """Validate a stage's ``rules`` JSON; raises ``ConditionError`` naming the bad item."""
    if not isinstance(rules, list) or not rules:
        raise ConditionError("$", "must be a non-empty list of {milestone, state} objects")
    parsed = []
    for index, item in enumerate(rules):
        path = f"$[{index}]"
        if not isinstance(item, dict) or set(item) != {"milestone", "state"}:
            raise ConditionError(path, 'must be an object with "milestone" and "state"')
        key, state = item["milestone"], item["state"]
        if not isinstance(key, str) or not key:
            raise ConditionError(f"{path}.milestone", "must be a milestone key")
        if state not in RULE_STATES:
            raise ConditionError(
                f"{path}.state", f"must be one of {', '.join(sorted(RULE_STATES))}"
            )
        parsed.append((key, str(state)))
    return tuple(parsed)


def stage_for(states: Mapping[str, str], rules: Sequence[StageRule], default: str) -> str:
    """The first stage (rules in priority order) whose every requirement holds."""
    for rule in rules:
        if all(_holds(states.get(key), wanted) for key, wanted in rule.requirements):
            return rule.stage
    return default


def _holds(state: str | None, wanted: str) -> bool:
    if wanted == "not_started":
        return state is None
    if wanted == "not_achieved":
        return state != "achieved"
    return state == wanted


def stage_rules() -> list[StageRule]:
    return _stage_rules.get()


@cached(LifecycleStage)
def _stage_rules() -> list[StageRule]:
    """The active stages' rules, cached per process (config/cache.py)."""
    return [
        StageRule(stage.key, parse_stage_rules(stage.rules))
        for stage in LifecycleStage.objects.filter(is_active=True).order_by("priority", "key")
    ]


def stages_refresh(
    customer_ids: Collection[int],
    *,
    active_versions: Mapping[int, str],
    cause: str,
    changed_keys: Collection[str] | None = None,
) -> list[StageChangeRecord]:
    """Recompute the stage of ``customer_ids`` from their progress on ``active_versions``
    (version id -> milestone key). Runs in the caller's transaction; customers are locked in
    id order so two workers never write one customer's stage from stale states. When the
    caller says which milestones changed, nothing is read unless a rule names one of them."""
    rules = stage_rules() if customer_ids else []
    named = {key for rule in rules for key, _ in rule.requirements}
    if changed_keys is not None and named.isdisjoint(changed_keys):
        return []
    if not rules:
        return []
    # Only the milestones a rule names decide a stage: read nothing else.
    read = [version_id for version_id, key in active_versions.items() if key in named]
    current, states = _locked_states(sorted(set(customer_ids)), read, active_versions)
    now = timezone.now()
    default = settings.MILESTONES_DEFAULT_STAGE
    changes = [
        StageChangeRecord(pk, current[pk], stage, now)
        for pk in current
        if (stage := stage_for(states[pk], rules, default)) != current[pk]
    ]
    _stages_apply(changes, cause=cause[:200])
    return changes


_CUSTOMER = Customer._meta.db_table
_PROGRESS = Progress._meta.db_table
_STAGE_CHANGE = StageChange._meta.db_table

# Lock the customers in id order (an id array: a 20,000-id IN list costs more to build than
# to run), then read their states in a second statement. Under READ COMMITTED a statement
# reads from the snapshot it started with, so states read in the locking statement itself
# could predate a transaction that held the lock and committed an achievement while this
# one waited — and the stage written from them would undo that transaction's.
_LOCK_SQL = f"""
SELECT c.id, c.lifecycle_stage FROM {_CUSTOMER} c
WHERE c.id = ANY(%(ids)s::bigint[]) ORDER BY c.id FOR NO KEY UPDATE
"""  # noqa: S608 - table names from the models; every value is a parameter

_STATES_SQL = f"""
SELECT p.subject_id, p.version_id, p.state FROM {_PROGRESS} p
WHERE p.unit = 'customer' AND p.subject_id = ANY(%(ids)s::bigint[])
    AND p.version_id = ANY(%(read)s::bigint[])
"""  # noqa: S608 - table names from the models; every value is a parameter

_STAGES_APPLY_SQL = f"""
WITH t AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(from)s::text[], %(to)s::text[])
        AS t(id, from_stage, to_stage)
), moved AS (
    UPDATE {_CUSTOMER} c SET lifecycle_stage = t.to_stage FROM t WHERE c.id = t.id
)
INSERT INTO {_STAGE_CHANGE} (customer_id, from_stage, to_stage, changed_at, cause)
SELECT id, from_stage, to_stage, %(now)s, %(cause)s FROM t ORDER BY id
"""  # noqa: S608 - table names from the models; every value is a parameter


def _locked_states(
    ids: list[int], read: list[int], active_versions: Mapping[int, str]
) -> tuple[dict[int, str], dict[int, dict[str, str]]]:
    """Each customer's current stage and its states by milestone key, customers locked."""
    current: dict[int, str] = {}
    states: dict[int, dict[str, str]] = {}
    if connection.vendor == "postgresql":
        current = dict(sql_execute(_LOCK_SQL, {"ids": ids}))
        states = {pk: {} for pk in current}
        if read and current:
            for pk, version_id, state in sql_execute(
                _STATES_SQL, {"ids": list(current), "read": read}
            ):
                states[pk][active_versions[version_id]] = state
        return current, states
    current = dict(
        Customer.objects.select_for_update(no_key=True)
        .filter(pk__in=ids)
        .order_by("pk")
        .values_list("pk", "lifecycle_stage")
    )
    states = {pk: {} for pk in current}
    progress = Progress.objects.filter(
        unit=Unit.CUSTOMER, subject_id__in=list(current), version_id__in=read
    ).values_list("subject_id", "version_id", "state")
    for subject_id, version_id, state in progress:
        states[subject_id][active_versions[version_id]] = state
    return current, states


def _stages_apply(changes: Sequence[StageChangeRecord], *, cause: str) -> None:
    if not changes:
        return
    if connection.vendor == "postgresql":
        with planned_each_time():  # a join to arrays (config/plans.py)
            sql_execute(
                _STAGES_APPLY_SQL,
                {
                    "ids": [c.customer_id for c in changes],
                    "from": [c.from_stage for c in changes],
                    "to": [c.to_stage for c in changes],
                    "now": changes[0].changed_at,
                    "cause": cause,
                },
            )
    else:
        by_stage: dict[str, list[int]] = {}
        for change in changes:
            by_stage.setdefault(change.to_stage, []).append(change.customer_id)
        for stage, ids in by_stage.items():
            Customer.objects.filter(pk__in=ids).update(lifecycle_stage=stage)
        StageChange.objects.bulk_create(
            StageChange(
                customer_id=c.customer_id,
                from_stage=c.from_stage,
                to_stage=c.to_stage,
                changed_at=c.changed_at,
                cause=cause,
            )
            for c in changes
        )
    transaction.on_commit(partial(stage_changed.send, sender=StageChange, changes=list(changes)))


def stages_set(stages: Mapping[int, str], *, cause: str) -> list[StageChangeRecord]:
    """Set customers' stages explicitly (a journey's update step), with history and the
    ``stage_changed`` signal; a customer already in that stage is left alone. Customers are
    locked in id order, as ``stages_refresh`` does."""
    current = dict(
        Customer.objects.select_for_update(no_key=True)
        .filter(pk__in=sorted(stages))
        .order_by("pk")
        .values_list("pk", "lifecycle_stage")
    )
    now = timezone.now()
    changes = [
        StageChangeRecord(pk, current[pk], stages[pk], now)
        for pk in current
        if current[pk] != stages[pk]
    ]
    _stages_apply(changes, cause=cause[:200])
    return changes
