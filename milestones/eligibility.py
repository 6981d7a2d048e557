"""Who a milestone applies to: validated eligibility rules and the check. Pure (no ORM).

Rules are a JSON object; every field is optional and all given fields must hold::

    {"plans": ["pro", "team"], "regions": ["eu"], "statuses": ["active"],
     "stages": ["new", "onboarding"], "billing": "trial" | "paid",
     "tenure": "new" | "returning", "new_days": 30}

``billing`` reads the plan: a plan listed in ``settings.MILESTONES_TRIAL_PLANS`` is a trial.
``tenure`` compares signup with the milestone's anchor: a subject that signed up less than
``new_days`` (default 30) before the anchor is new, anyone else is returning. An ineligible
subject gets a reason code, the first rule that failed: ``plan``, ``region``, ``status``,
``stage``, ``billing`` or ``tenure``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Mapping
from typing import Final, Literal

from milestones.conditions import ConditionError

Billing = Literal["trial", "paid"]
Tenure = Literal["new", "returning"]

_LISTS: Final = ("plans", "regions", "statuses", "stages")
_FIELDS: Final = frozenset({*_LISTS, "billing", "tenure", "new_days"})
_MAX_VALUES: Final = 200


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Eligibility:
    plans: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    stages: frozenset[str] = frozenset()
    billing: Billing | None = None
    tenure: Tenure | None = None
    new_days: int = 30

    @property
    def is_everyone(self) -> bool:
        return self == Eligibility(new_days=self.new_days)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SubjectProfile:
    """What eligibility reads about a customer or an account (accounts have no stage)."""

    plan: str
    region: str
    status: str
    created_at: dt.datetime
    lifecycle_stage: str | None = None


def parse_eligibility(data: object, *, has_stage: bool = True) -> Eligibility:
    """Validate rules decoded from JSON; raises ``ConditionError`` naming the bad field."""
    if data is None:
        return Eligibility()
    if not isinstance(data, Mapping):
        raise ConditionError("$", "eligibility must be an object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ConditionError(f"$.{unknown[0]}", "is not an eligibility rule")
    if not has_stage and data.get("stages"):
        raise ConditionError("$.stages", "accounts have no lifecycle stage")
    values = {name: _strings(data.get(name), f"$.{name}") for name in _LISTS}
    return Eligibility(
        plans=values["plans"],
        regions=values["regions"],
        statuses=values["statuses"],
        stages=values["stages"],
        billing=_choice(data.get("billing"), "$.billing", ("trial", "paid")),  # type: ignore[arg-type]
        tenure=_choice(data.get("tenure"), "$.tenure", ("new", "returning")),  # type: ignore[arg-type]
        new_days=_days(data.get("new_days", 30)),
    )


def ineligibility(
    rules: Eligibility,
    profile: SubjectProfile,
    *,
    anchor_at: dt.datetime,
    trial_plans: Collection[str],
) -> str | None:
    """The reason code of the first rule ``profile`` fails, or ``None`` when eligible."""
    if rules.plans and profile.plan not in rules.plans:
        return "plan"
    if rules.regions and profile.region not in rules.regions:
        return "region"
    if rules.statuses and profile.status not in rules.statuses:
        return "status"
    if rules.stages and profile.lifecycle_stage not in rules.stages:
        return "stage"
    if rules.billing is not None and (profile.plan in trial_plans) != (rules.billing == "trial"):
        return "billing"
    if rules.tenure is not None:
        is_new = anchor_at - profile.created_at < dt.timedelta(days=rules.new_days)
        if is_new != (rules.tenure == "new"):
            return "tenure"
    return None


def _strings(value: object, path: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConditionError(path, "must be a list of strings")
    if len(value) > _MAX_VALUES:
        raise ConditionError(path, f"may list at most {_MAX_VALUES} values")
    return frozenset(value)


def _choice(value: object, path: str, allowed: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if value not in allowed:
        raise ConditionError(path, f"must be one of {', '.join(allowed)}")
    return str(value)


def _days(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3650:
        raise ConditionError("$.new_days", "must be a whole number of days from 1 to 3650")
    return value
