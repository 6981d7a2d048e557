"""Definition statistics, a subject's milestones and backfills, read in bounded queries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from milestones.models import (
    Backfill,
    MilestoneDefinition,
    MilestoneVersion,
    Progress,
    ProgressState,
    Unit,
)
from milestones.selectors import (
    DefinitionStats,
    backfill_latest,
    definition_stats,
    subject_labels,
    subject_progress,
)
from milestones.services import definition_update
from tests.factories import AccountFactory, CustomerFactory
from tests.milestones.conftest import T0

pytestmark = pytest.mark.django_db

HOUR = dt.timedelta(hours=1)
NO_COUNTS = {"in_progress": 0, "achieved": 0, "missed": 0, "ineligible": 0}

Make = Callable[..., MilestoneDefinition]


def _progress(
    definition: MilestoneDefinition,
    state: str,
    *,
    took: dt.timedelta | None = None,
    version: MilestoneVersion | None = None,
    subject_id: int | None = None,
    unit: str = Unit.CUSTOMER,
) -> Progress:
    version = version or definition.active_version
    assert version is not None
    return Progress.objects.create(
        version=version,
        definition=definition,
        unit=unit,
        subject_id=subject_id or Progress.objects.count() + 1,
        state=state,
        anchor_at=T0,
        achieved_at=None if took is None else T0 + took,
    )


def _achieved(definition: MilestoneDefinition, *hours: float) -> None:
    for amount in hours:
        _progress(definition, ProgressState.ACHIEVED, took=amount * HOUR)


@pytest.fixture(params=["percentile_cont", "portable"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of computing percentiles, the portable one forced on PostgreSQL too."""
    if request.param == "portable":
        monkeypatch.setattr(connection, "vendor", "sqlite")
    return str(request.param)


def test_counts_by_state_and_the_completion_rate_of_the_active_version(
    milestone: Make, engine: str
) -> None:
    # given
    definition = milestone("activated")
    _achieved(definition, 1, 2, 3)
    _progress(definition, ProgressState.MISSED)
    _progress(definition, ProgressState.IN_PROGRESS)
    _progress(definition, ProgressState.IN_PROGRESS)
    _progress(definition, ProgressState.INELIGIBLE)

    # when
    stats = definition_stats([definition.pk])[definition.pk]

    # then
    assert stats.counts == {"in_progress": 2, "achieved": 3, "missed": 1, "ineligible": 1}
    assert (stats.achieved, stats.missed, stats.total) == (3, 1, 7)
    assert stats.completion_rate == 0.75


def test_median_and_p90_interpolate_between_rows_like_percentile_cont(
    milestone: Make, engine: str
) -> None:
    odd, even = milestone("odd"), milestone("even")
    _achieved(odd, 4, 1, 2)  # sorted 1, 2, 4: p90 sits at 1.8 -> 2h + 0.8 * 2h
    _achieved(even, 8, 1, 4, 2)  # sorted 1, 2, 4, 8: median at 1.5, p90 at 2.7

    stats = definition_stats([odd.pk, even.pk])

    assert (stats[odd.pk].median, stats[odd.pk].p90) == (2 * HOUR, dt.timedelta(minutes=216))
    assert (stats[even.pk].median, stats[even.pk].p90) == (3 * HOUR, dt.timedelta(minutes=408))


def test_a_single_achievement_is_both_the_median_and_the_p90(milestone: Make, engine: str) -> None:
    definition = milestone("activated")
    _achieved(definition, 5)

    stats = definition_stats([definition.pk])[definition.pk]

    assert (stats.median, stats.p90) == (5 * HOUR, 5 * HOUR)


def test_times_span_days_and_keep_their_microseconds(milestone: Make, engine: str) -> None:
    definition = milestone("activated")
    for took in (dt.timedelta(days=2, microseconds=10), dt.timedelta(days=4, microseconds=30)):
        _progress(definition, ProgressState.ACHIEVED, took=took)

    stats = definition_stats([definition.pk])[definition.pk]

    assert stats.median == dt.timedelta(days=3, microseconds=20)


def test_late_achievements_count_as_achieved_and_are_timed(milestone: Make, engine: str) -> None:
    definition = milestone("activated")
    late = _progress(definition, ProgressState.ACHIEVED, took=10 * HOUR)
    Progress.objects.filter(pk=late.pk).update(is_late=True, missed_at=T0 + HOUR)
    _progress(definition, ProgressState.MISSED)

    stats = definition_stats([definition.pk])[definition.pk]

    assert (stats.achieved, stats.missed, stats.completion_rate) == (1, 1, 0.5)
    assert stats.median == 10 * HOUR


def test_only_the_active_version_counts_once_a_definition_is_versioned(
    milestone: Make, engine: str
) -> None:
    # given
    definition = milestone("activated")
    first = definition.active_version
    _achieved(definition, 1, 1, 1)
    _progress(definition, ProgressState.MISSED)
    definition_update(
        definition=definition,
        condition={"type": "event_count", "event": "Task Done", "at_least": 2},
    )
    _achieved(definition, 6)

    # when
    stats = definition_stats([definition.pk])[definition.pk]

    # then
    assert definition.active_version != first
    assert stats.counts == {**NO_COUNTS, "achieved": 1}
    assert (stats.completion_rate, stats.median) == (1.0, 6 * HOUR)


def test_definitions_do_not_share_their_rows(milestone: Make, engine: str) -> None:
    fast, slow = milestone("fast"), milestone("slow")
    _achieved(fast, 1, 1)
    _achieved(slow, 9, 9, 9)
    _progress(slow, ProgressState.MISSED)

    stats = definition_stats([fast.pk, slow.pk])

    assert (stats[fast.pk].median, stats[fast.pk].completion_rate) == (HOUR, 1.0)
    assert (stats[slow.pk].median, stats[slow.pk].completion_rate) == (9 * HOUR, 0.75)


def test_no_outcome_yet_means_no_rate_and_no_times(milestone: Make, engine: str) -> None:
    started = milestone("started")
    _progress(started, ProgressState.IN_PROGRESS)
    _progress(started, ProgressState.INELIGIBLE)
    draft = milestone("draft", activate=False)

    stats = definition_stats([started.pk, draft.pk, 999_999])

    assert stats[started.pk] == DefinitionStats(
        counts={**NO_COUNTS, "in_progress": 1, "ineligible": 1}
    )
    assert stats[draft.pk] == DefinitionStats(counts=NO_COUNTS)
    assert stats[999_999] == DefinitionStats(counts=NO_COUNTS)
    assert (stats[started.pk].completion_rate, stats[started.pk].median) == (None, None)


def test_all_missed_is_a_zero_completion_rate_with_no_times(milestone: Make) -> None:
    definition = milestone("activated")
    _progress(definition, ProgressState.MISSED)

    stats = definition_stats([definition.pk])[definition.pk]

    assert (stats.completion_rate, stats.median, stats.p90) == (0.0, None, None)


def test_no_ids_ask_nothing(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        assert definition_stats([]) == {}


@pytest.mark.parametrize(("vendor", "queries"), [("postgresql", 1), ("sqlite", 2)])
def test_statistics_take_a_fixed_number_of_queries_however_many_definitions(
    milestone: Make,
    django_assert_num_queries: Any,
    monkeypatch: pytest.MonkeyPatch,
    vendor: str,
    queries: int,
) -> None:
    # given
    if vendor == "postgresql" and connection.vendor != "postgresql":
        pytest.skip("percentile_cont is PostgreSQL's")
    definitions = [milestone(f"milestone_{n}") for n in range(12)]
    for n, definition in enumerate(definitions):
        _achieved(definition, *range(1, n + 2))
        _progress(definition, ProgressState.MISSED)
    monkeypatch.setattr(connection, "vendor", vendor)

    # when
    with django_assert_num_queries(queries):
        stats = definition_stats(d.pk for d in definitions)

    # then: n + 1 achievements of 1..n+1 hours have their median at (n + 2) / 2 hours
    assert [stats[d.pk].median for d in definitions] == [
        dt.timedelta(hours=(n + 2) / 2) for n in range(12)
    ]
    assert [stats[d.pk].achieved for d in definitions] == list(range(1, 13))


# --- A subject's milestones, labels, backfills -------------------------------------------


def test_a_subjects_progress_lists_current_versions_first_then_by_key(milestone: Make) -> None:
    # given
    customer = CustomerFactory()
    beta, alpha = milestone("beta"), milestone("alpha")
    old_beta = _progress(beta, ProgressState.MISSED, subject_id=customer.pk)
    definition_update(
        definition=beta, condition={"type": "event_count", "event": "Task Done", "at_least": 3}
    )
    new_beta = _progress(beta, ProgressState.IN_PROGRESS, subject_id=customer.pk)
    new_alpha = _progress(alpha, ProgressState.ACHIEVED, took=HOUR, subject_id=customer.pk)
    _progress(alpha, ProgressState.ACHIEVED, took=HOUR, subject_id=customer.pk + 1)
    per_account = milestone("gamma", unit=Unit.ACCOUNT)
    _progress(per_account, ProgressState.ACHIEVED, subject_id=customer.pk, unit=Unit.ACCOUNT)

    # when
    rows = subject_progress(unit=Unit.CUSTOMER, subject_id=customer.pk)

    # then
    assert rows == [new_alpha, new_beta, old_beta]


def test_subject_labels_name_customers_and_accounts_in_one_query(
    django_assert_num_queries: Any,
) -> None:
    known, anonymous = CustomerFactory(external_id="user-7"), CustomerFactory(external_id=None)
    account = AccountFactory(external_id="acme")

    with django_assert_num_queries(2):
        customers = subject_labels(unit=Unit.CUSTOMER, subject_ids=[known.pk, anonymous.pk, 0])
        accounts = subject_labels(unit=Unit.ACCOUNT, subject_ids=[account.pk])

    assert customers == {
        known.pk: "user-7",
        anonymous.pk: f"anonymous #{anonymous.pk}",
        0: "customer #0",
    }
    assert accounts == {account.pk: "acme"}


def test_the_latest_backfill_is_the_newest_of_any_version(milestone: Make) -> None:
    definition = milestone("activated")
    first = Backfill.objects.get(version=definition.active_version)
    definition_update(
        definition=definition,
        condition={"type": "event_count", "event": "Task Done", "at_least": 2},
    )
    second = Backfill.objects.get(version=definition.active_version)
    milestone("other")

    assert first.created_at <= second.created_at
    assert backfill_latest(definition_id=definition.pk) == second
    assert backfill_latest(definition_id=milestone("draft", activate=False).pk) is None
