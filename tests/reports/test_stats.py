"""The dashboard's pure arithmetic: UTC calendar windows, percentiles, bins, funnels."""

from __future__ import annotations

import datetime as dt

import pytest

from reports.stats import (
    Edges,
    FunnelStep,
    Stage,
    bin_counts,
    bin_edges,
    cohort_weeks,
    day_start,
    duration_label,
    funnel,
    nice_width,
    percent,
    percentile,
    week_label,
    week_start,
)

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)
TICK = dt.timedelta(microseconds=1)


def test_today_and_this_week_start_at_midnight_utc_whatever_the_offset() -> None:
    # Sunday 8 March 2026 23:30 in New York is Monday 9 March 03:30 UTC.
    moment = dt.datetime(2026, 3, 8, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-4)))

    assert day_start(moment) == dt.datetime(2026, 3, 9, tzinfo=UTC)
    assert week_start(moment) == dt.datetime(2026, 3, 9, tzinfo=UTC)
    assert week_start(dt.datetime(2026, 3, 9, tzinfo=UTC) - TICK) == dt.datetime(
        2026, 3, 2, tzinfo=UTC
    )


def test_iso_weeks_are_labelled_by_their_iso_year() -> None:
    assert week_label(dt.datetime(2025, 12, 29, tzinfo=UTC)) == "2026-W01"
    assert week_label(dt.datetime(2021, 1, 4, tzinfo=UTC)) == "2021-W01"
    assert week_label(dt.datetime(2020, 12, 28, tzinfo=UTC)) == "2020-W53"


def test_cohort_weeks_end_with_the_current_one() -> None:
    weeks = cohort_weeks(dt.datetime(2026, 1, 7, 15, tzinfo=UTC), count=3)

    assert weeks == (
        dt.datetime(2025, 12, 22, tzinfo=UTC),
        dt.datetime(2025, 12, 29, tzinfo=UTC),
        dt.datetime(2026, 1, 5, tzinfo=UTC),
    )
    assert [week_label(week) for week in weeks] == ["2025-W52", "2026-W01", "2026-W02"]


def test_percentiles_interpolate_between_the_nearest_rows() -> None:
    values = {n: n * HOUR for n in range(5)}  # 0 h .. 4 h

    assert percentile(values, 5, 0.5) == 2 * HOUR
    assert percentile(values, 5, 0.9) == dt.timedelta(hours=3, minutes=36)
    assert percentile({0: HOUR, 1: 2 * HOUR}, 2, 0.5) == 90 * MINUTE
    assert percentile({0: HOUR}, 1, 0.9) == HOUR


@pytest.mark.parametrize(
    ("span", "width"),
    [
        (dt.timedelta(0), dt.timedelta(seconds=1)),
        (dt.timedelta(seconds=95), dt.timedelta(seconds=10)),
        (135 * HOUR, 24 * HOUR),
        (10 * 24 * HOUR, 24 * HOUR),
        (100 * 24 * HOUR, 14 * 24 * HOUR),
        (301 * 24 * HOUR, 60 * 24 * HOUR),
    ],
)
def test_bin_widths_are_round_durations(span: dt.timedelta, width: dt.timedelta) -> None:
    assert nice_width(span) == width


def test_bins_cover_every_value_when_the_tail_is_short() -> None:
    edges = bin_edges(minimum=10 * 24 * HOUR, maximum=12 * 24 * HOUR, p90=11 * 24 * HOUR)

    # 2 days over 10 bins: 6 h wide, from the minimum, the last edge above the maximum
    assert edges == Edges(
        edges=tuple(10 * 24 * HOUR + n * 6 * HOUR for n in range(10)), overflow=False
    )
    assert edges.position(11 * 24 * HOUR) == 4.0


def test_a_long_tail_goes_to_one_overflow_bin() -> None:
    edges = bin_edges(minimum=2 * HOUR, maximum=300 * HOUR, p90=69.6 * HOUR)

    assert edges == Edges(edges=tuple(n * 24 * HOUR for n in range(7)), overflow=True)
    assert bin_counts(edges, 10, [6, 9, 9, 9, 9, 9]) == (6, 3, 0, 0, 0, 0, 1)


def test_equal_values_make_one_bin() -> None:
    edges = bin_edges(minimum=HOUR, maximum=HOUR, p90=HOUR)

    assert edges == Edges(edges=(HOUR, HOUR + dt.timedelta(seconds=1)), overflow=False)
    assert bin_counts(edges, 3, [3]) == (3,)


def test_never_more_than_twelve_bins() -> None:
    for minutes in range(1, 3000, 7):
        edges = bin_edges(minimum=37 * MINUTE, maximum=minutes * MINUTE + 37 * MINUTE,
                          p90=minutes * MINUTE)  # fmt: skip
        assert len(edges.edges) - 1 + edges.overflow <= 12


def test_a_funnel_reports_what_each_step_lost() -> None:
    steps = funnel([Stage("in", 10), Stage("a", 4, "note"), Stage("b", 6), Stage("c", 0)])

    assert steps == (
        FunnelStep("in", 10, "", None, None, 1.0),
        FunnelStep("a", 4, "note", 6, 0.6, 0.4),
        FunnelStep("b", 6, "", -2, -0.5, 0.6),
        FunnelStep("c", 0, "", 6, 1.0, 0.0),
    )
    assert funnel([Stage("in", 0), Stage("a", 0)]) == (
        FunnelStep("in", 0, "", None, None, None),
        FunnelStep("a", 0, "", 0, None, None),
    )
    assert funnel([]) == ()


def test_durations_read_in_their_two_largest_units() -> None:
    assert [
        duration_label(value)
        for value in (
            dt.timedelta(0), dt.timedelta(seconds=45), dt.timedelta(minutes=12, seconds=30),
            dt.timedelta(hours=3, minutes=5, seconds=59), 16 * HOUR,
            dt.timedelta(days=2, hours=21, minutes=36), dt.timedelta(days=14), -90 * MINUTE,
        )
    ] == ["0s", "45s", "12m 30s", "3h 5m", "16h", "2d 21h", "14d", "-1h 30m"]  # fmt: skip
    assert (percent(None), percent(1 / 3), percent(1.0)) == ("—", "33.3%", "100.0%")
