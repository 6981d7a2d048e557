"""Eligibility rules: validation that names the bad rule, and the first failing reason."""

from __future__ import annotations

import datetime as dt

import pytest

from milestones.conditions import ConditionError
from milestones.eligibility import Eligibility, SubjectProfile, ineligibility, parse_eligibility

SIGNUP = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def profile(**fields: object) -> SubjectProfile:
    values: dict[str, object] = {
        "plan": "pro",
        "region": "eu",
        "status": "active",
        "created_at": SIGNUP,
        "lifecycle_stage": "onboarding",
    }
    values.update(fields)
    return SubjectProfile(**values)  # type: ignore[arg-type]


def check(
    rules: dict[str, object], subject: SubjectProfile, *, days_after_signup: int = 1
) -> str | None:
    return ineligibility(
        parse_eligibility(rules),
        subject,
        anchor_at=SIGNUP + dt.timedelta(days=days_after_signup),
        trial_plans={"trial"},
    )


def test_no_rules_means_everyone() -> None:
    assert parse_eligibility({}).is_everyone
    assert parse_eligibility(None) == Eligibility()
    assert check({}, profile(plan="", region="")) is None


@pytest.mark.parametrize(
    ("rules", "fields", "reason"),
    [
        ({"plans": ["team"]}, {}, "plan"),
        ({"regions": ["us"]}, {}, "region"),
        ({"statuses": ["active"]}, {"status": "blocked"}, "status"),
        ({"stages": ["new"]}, {}, "stage"),
        ({"billing": "trial"}, {}, "billing"),
        ({"billing": "paid"}, {"plan": "trial"}, "billing"),
        ({"plans": ["team"], "regions": ["us"]}, {}, "plan"),
    ],
)
def test_the_first_failing_rule_is_the_reason(
    rules: dict[str, object], fields: dict[str, object], reason: str
) -> None:
    assert check(rules, profile(**fields)) == reason


@pytest.mark.parametrize(
    ("rules", "fields"),
    [
        ({"plans": ["pro", "team"]}, {}),
        ({"regions": ["eu"], "statuses": ["active"], "stages": ["onboarding"]}, {}),
        ({"billing": "trial"}, {"plan": "trial"}),
        ({"billing": "paid"}, {}),
    ],
)
def test_matching_rules_are_eligible(rules: dict[str, object], fields: dict[str, object]) -> None:
    assert check(rules, profile(**fields)) is None


def test_tenure_compares_signup_with_the_anchor() -> None:
    assert check({"tenure": "new"}, profile(), days_after_signup=29) is None
    assert check({"tenure": "new"}, profile(), days_after_signup=30) == "tenure"
    assert check({"tenure": "returning"}, profile(), days_after_signup=30) is None
    assert check({"tenure": "new", "new_days": 7}, profile(), days_after_signup=7) == "tenure"


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ([], "$", "eligibility must be an object"),
        ({"plan": ["pro"]}, "$.plan", "is not an eligibility rule"),
        ({"plans": "pro"}, "$.plans", "must be a list of strings"),
        ({"plans": [1]}, "$.plans", "must be a list of strings"),
        ({"billing": "free"}, "$.billing", "must be one of trial, paid"),
        ({"tenure": "old"}, "$.tenure", "must be one of new, returning"),
        ({"new_days": 0}, "$.new_days", "must be a whole number of days from 1 to 3650"),
        ({"new_days": True}, "$.new_days", "must be a whole number of days from 1 to 3650"),
        ({"regions": ["x"] * 201}, "$.regions", "may list at most 200 values"),
    ],
)
def test_invalid_rules_are_refused_with_their_path(data: object, path: str, message: str) -> None:
    with pytest.raises(ConditionError) as refused:
        parse_eligibility(data)

    assert (refused.value.path, refused.value.message) == (path, message)


def test_accounts_cannot_filter_on_stage() -> None:
    with pytest.raises(ConditionError) as refused:
        parse_eligibility({"stages": ["new"]}, has_stage=False)

    assert refused.value.path == "$.stages"
