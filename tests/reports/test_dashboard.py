"""The dashboard's figures and series on the seeded dataset (tests/reports/conftest.py):
every number exact, the windows' boundaries included, in a fixed number of statements."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from milestones.models import DefinitionStatus, Unit
from reports.dashboard import (
    Bin,
    ChoiceError,
    Cohort,
    Figures,
    Option,
    TimeToMilestone,
    dashboard_build,
    dashboard_get,
    milestone_default,
)
from reports.selectors import DefinitionRow
from reports.stats import FunnelStep
from tests.factories import AccountFactory
from tests.reports.conftest import (
    DAY,
    HOUR,
    NOW,
    SINCE,
    THIS_WEEK,
    TICK,
    TODAY,
    achieve,
    customer,
    message,
    miss,
)

pytestmark = pytest.mark.django_db

#: Statements of a whole dashboard: definitions, journeys; events (2), messages (2),
#: outcomes; cohorts; time to milestone (2); hierarchy (2); the journey report (4).
DASHBOARD_QUERIES = 16


def _weeks(*cohorts: tuple[str, int, int]) -> dict[str, tuple[int, int]]:
    return {label: (size, achieved) for label, size, achieved in cohorts}


def test_the_headline_figures_are_exact(seeded: dict[str, Any]) -> None:
    dashboard = dashboard_build()

    assert (dashboard.as_of, dashboard.today, dashboard.week, dashboard.since) == (
        NOW,
        TODAY,
        THIS_WEEK,
        SINCE,
    )
    assert dashboard.figures == Figures(
        events_today=3,
        achieved_this_week=3,
        missed_this_week=2,
        live_journeys=1,
        sent_this_week=3,
        suppressed_this_week=4,
        suppressed_by_reason=(("no_consent", 2), ("frequency_cap", 1), ("unreachable", 1)),
    )


def test_the_defaults_are_the_first_active_north_star_and_the_first_live_journey(
    seeded: dict[str, Any],
) -> None:
    dashboard = dashboard_build()

    assert (dashboard.milestone, dashboard.journey) == (
        Option("activated", "Activated"),
        Option("setup-nudge", "Setup nudge"),
    )
    assert [option.key for option in dashboard.milestones] == [
        "activated", "first-report", "invited-team", "old-idea", "second-purchase", "team-plan",
    ]  # fmt: skip
    assert [option.key for option in dashboard.journeys] == ["setup-nudge", "upsell", "winback"]


def test_cohorts_are_the_last_twelve_iso_weeks_in_utc(seeded: dict[str, Any]) -> None:
    dashboard = dashboard_build()

    assert dashboard.cohorts[0] == Cohort(SINCE, size=1, achieved=1)  # its first instant
    assert [cohort.label for cohort in dashboard.cohorts] == [
        "2025-W52",
        *(f"2026-W{n:02d}" for n in range(1, 12)),
    ]
    assert [cohort.week for cohort in dashboard.cohorts] == [SINCE + 7 * DAY * n for n in range(12)]
    # 2026-W01 began on Monday 29 December 2025; the Auckland customer signed up on
    # Sunday 4 January at 23:30 UTC (Monday in Auckland) and counts in it.
    assert {c.label: (c.size, c.achieved) for c in dashboard.cohorts if c.size} == _weeks(
        ("2025-W52", 1, 1), ("2026-W01", 2, 1), ("2026-W10", 4, 1), ("2026-W11", 2, 0)
    )  # fmt: skip
    assert [c.share for c in dashboard.cohorts if c.size] == [1.0, 0.5, 0.25, 0.0]
    assert sum(c.size for c in dashboard.cohorts) == 9


def test_the_time_to_milestone_histogram_has_exact_bins_median_and_p90(
    seeded: dict[str, Any],
) -> None:
    dashboard = dashboard_build()

    # Ten achievers since the window began: 2, 4, 6, 10, 12, 20, 26, 30, 44 and 300 hours
    # (the achievement just before the window is left out; versions 1 and 2 both count).
    ttm = dashboard.time_to_milestone
    assert ttm == TimeToMilestone(
        size=10,
        median=16 * HOUR,  # between 12 h and 20 h
        p90=dt.timedelta(hours=69, minutes=36),  # 44 h + 0.1 x (300 h - 44 h)
        bins=(
            Bin(0 * HOUR, 24 * HOUR, 6),
            Bin(24 * HOUR, 48 * HOUR, 3),
            Bin(48 * HOUR, 72 * HOUR, 0),
            Bin(72 * HOUR, 96 * HOUR, 0),
            Bin(96 * HOUR, 120 * HOUR, 0),
            Bin(120 * HOUR, 144 * HOUR, 0),
            Bin(144 * HOUR, None, 1),
        ),
    )
    assert (ttm.position(16 * HOUR), ttm.position(69.6 * HOUR)) == (2 / 3, 2.9)


def test_the_hierarchy_funnel_counts_the_cohort_at_each_micro_milestone(
    seeded: dict[str, Any],
) -> None:
    dashboard = dashboard_build()

    # Micro-milestones by achievers, most first, the north star last; the draft one and the
    # one measured on accounts are left out.
    assert dashboard.north_star == Option("activated", "Activated")
    assert dashboard.hierarchy == (
        FunnelStep("Signed up (last 12 weeks)", 9, "", None, None, 1.0),
        FunnelStep("First report", 5, "micro-milestone", 4, 4 / 9, 5 / 9),
        FunnelStep("Invited team", 2, "micro-milestone", 3, 3 / 5, 2 / 9),
        FunnelStep("Activated", 3, "north star", -1, -1 / 2, 3 / 9),
    )


def test_a_micro_milestone_shows_its_north_stars_funnel(seeded: dict[str, Any]) -> None:
    dashboard = dashboard_build(milestone="invited-team")

    assert dashboard.milestone == Option("invited-team", "Invited team")
    assert dashboard.north_star == Option("activated", "Activated")
    assert [step.count for step in dashboard.hierarchy] == [9, 5, 2, 3]
    # ... while the cohorts and times are the micro-milestone's own.
    assert {c.label: (c.size, c.achieved) for c in dashboard.cohorts if c.size} == _weeks(
        ("2025-W52", 1, 1), ("2026-W01", 2, 0), ("2026-W10", 4, 1), ("2026-W11", 2, 0)
    )  # fmt: skip
    assert dashboard.time_to_milestone is not None
    assert (dashboard.time_to_milestone.size, dashboard.time_to_milestone.median) == (
        2,
        48 * HOUR,
    )


def test_a_milestone_outside_any_hierarchy_has_no_funnel(seeded: dict[str, Any]) -> None:
    dashboard = dashboard_build(milestone="second-purchase")

    assert (dashboard.north_star, dashboard.hierarchy) == (None, ())
    assert dashboard.time_to_milestone is not None
    assert dashboard.time_to_milestone.size == 1


def test_an_account_milestone_has_cohorts_of_accounts(seeded: dict[str, Any]) -> None:
    # given two accounts created this week (one achieved), one just before the window
    first = AccountFactory(created_at=THIS_WEEK + HOUR)
    AccountFactory(created_at=THIS_WEEK + 2 * HOUR)
    AccountFactory(created_at=SINCE - TICK)
    achieve(seeded["team_plan"], first, at=THIS_WEEK + 3 * HOUR)

    dashboard = dashboard_build(milestone="team-plan")

    assert dashboard.milestone_unit == Unit.ACCOUNT
    assert {c.label: (c.size, c.achieved) for c in dashboard.cohorts if c.size} == {
        "2026-W11": (2, 1)
    }
    assert dashboard.time_to_milestone is not None
    assert (dashboard.time_to_milestone.size, dashboard.time_to_milestone.median) == (1, 2 * HOUR)
    # its north star's funnel counts customers: the account-level step is not in it
    assert dashboard.north_star == Option("activated", "Activated")
    assert [step.label for step in dashboard.hierarchy] == [
        "Signed up (last 12 weeks)", "First report", "Invited team", "Activated",
    ]  # fmt: skip


def test_the_journey_funnel_reuses_the_journey_report(seeded: dict[str, Any]) -> None:
    dashboard = dashboard_build()

    # Entered: the four customers in the journey (the two held out are not).
    assert dashboard.journey_has_goal is True
    assert dashboard.journey_funnel == (
        FunnelStep("Entered", 4, "", None, None, 1.0),
        FunnelStep("nudge (send)", 4, "1 sent · 2 suppressed", 0, 0.0, 1.0),
        FunnelStep("pause (wait)", 3, "1 waiting", 1, 1 / 4, 3 / 4),
        FunnelStep("done (exit)", 1, "", 2, 2 / 3, 1 / 4),
        FunnelStep("Converted", 1, "met the goal", 0, 0.0, 1 / 4),
    )


def test_a_journey_without_enrollments_or_goal_has_a_flat_funnel(
    seeded: dict[str, Any],
) -> None:
    dashboard = dashboard_build(journey="winback")

    assert dashboard.journey == Option("winback", "Winback")
    assert dashboard.journey_has_goal is False
    assert [(step.label, step.count) for step in dashboard.journey_funnel] == [
        ("Entered", 0), ("nudge (send)", 0), ("pause (wait)", 0), ("done (exit)", 0),
    ]  # fmt: skip


def test_an_unknown_key_is_an_error_that_names_it(seeded: dict[str, Any]) -> None:
    with pytest.raises(ChoiceError, match="No milestone has the key 'nope'"):
        dashboard_build(milestone="nope")
    with pytest.raises(ChoiceError, match="No journey has the key 'nope'"):
        dashboard_get(journey="nope")
    with pytest.raises(ChoiceError, match="No milestone has the key"):
        dashboard_get(milestone="a key; DROP TABLE")


def test_an_empty_installation_has_zeros_and_no_charts(db: None, clock: Any) -> None:
    dashboard = dashboard_build()

    assert (dashboard.milestone, dashboard.journey, dashboard.time_to_milestone) == (
        None,
        None,
        None,
    )
    assert dashboard.figures == Figures(0, 0, 0, 0, 0, 0, ())
    assert [(c.size, c.achieved) for c in dashboard.cohorts] == [(0, 0)] * 12
    assert (dashboard.hierarchy, dashboard.journey_funnel) == ((), ())


def test_the_default_milestone_falls_back_in_order() -> None:
    def row(pk: int, status: str, parent: int | None = None) -> DefinitionRow:
        return DefinitionRow(pk, f"key-{pk}", f"Name {pk}", status, Unit.CUSTOMER, parent)

    active, draft = DefinitionStatus.ACTIVE, DefinitionStatus.DRAFT
    # a north star that is itself a micro-milestone comes after a top-level one
    rows = [row(1, active), row(2, active, 3), row(3, active, 4), row(4, active), row(5, active, 4)]
    assert milestone_default(rows) == rows[3]
    assert milestone_default(rows[:3]) == rows[2]  # no top-level north star
    assert milestone_default([row(1, draft), row(2, active, 1)]) == row(2, active, 1)
    assert milestone_default([row(1, draft)]) == row(1, draft)
    assert milestone_default([]) is None


# --- Cost -----------------------------------------------------------------------------------


def test_a_dashboard_costs_a_fixed_number_of_statements(
    seeded: dict[str, Any], django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(DASHBOARD_QUERIES):
        small = dashboard_build()

    # given ten times the customers, outcomes, events and messages
    activated = seeded["activated"]
    for n in range(100):
        someone = customer(SINCE + n * HOUR)
        achieve(activated, someone, at=someone.created_at + (n + 1) * HOUR)
        miss(seeded["invited_team"], someone, at=THIS_WEEK + HOUR)
        message("suppressed", THIS_WEEK + HOUR, f"reason_{n % 7}")

    # then the same statements answer
    with django_assert_num_queries(DASHBOARD_QUERIES):
        large = dashboard_build()
    assert large.figures.suppressed_this_week == small.figures.suppressed_this_week + 100
    assert large.time_to_milestone is not None
    assert large.time_to_milestone.size == 110


# --- Cache ----------------------------------------------------------------------------------


def test_a_computed_dashboard_is_reused_for_the_same_choice_within_the_ttl(
    seeded: dict[str, Any],
    clock: time_machine.Traveller,
    settings: Any,
    django_assert_num_queries: Any,
) -> None:
    settings.REPORTS_CACHE_SECONDS = 60
    first = dashboard_get()

    with django_assert_num_queries(0):
        assert dashboard_get() == first
    clock.move_to(NOW + dt.timedelta(seconds=59))
    with django_assert_num_queries(0):
        assert dashboard_get() == first
    with django_assert_num_queries(DASHBOARD_QUERIES):
        other = dashboard_get(milestone="invited-team")
    assert other.milestone == Option("invited-team", "Invited team")

    clock.move_to(NOW + dt.timedelta(seconds=60))
    with django_assert_num_queries(DASHBOARD_QUERIES):
        assert dashboard_get().as_of == NOW + dt.timedelta(seconds=60)


def test_a_cached_dashboard_is_not_reused_from_another_day_or_the_future(
    seeded: dict[str, Any], clock: time_machine.Traveller, settings: Any
) -> None:
    settings.REPORTS_CACHE_SECONDS = 3600
    clock.move_to(TODAY - TICK)
    yesterday = dashboard_get()
    assert yesterday.figures.events_today == 2  # at 10:00 and at this instant

    # when midnight passes within the TTL, "today" starts again
    clock.move_to(TODAY + dt.timedelta(seconds=10))
    today = dashboard_get()
    assert (today.today, today.figures.events_today) == (TODAY, 1)

    # and a dashboard computed "later" is never served to an earlier clock
    clock.move_to(TODAY + dt.timedelta(seconds=5))
    assert dashboard_get().as_of == TODAY + dt.timedelta(seconds=5)


def test_no_cache_with_a_ttl_of_zero(
    seeded: dict[str, Any], settings: Any, django_assert_num_queries: Any
) -> None:
    settings.REPORTS_CACHE_SECONDS = 0
    dashboard_get()

    with django_assert_num_queries(DASHBOARD_QUERIES):
        dashboard_get()
