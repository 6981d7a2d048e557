"""The dashboard as the admin home shows it: its charts drawn (``reports.charts``) and the
rows of their data tables, from a computed ``Dashboard``. No ORM."""

from __future__ import annotations

import dataclasses
import datetime as dt

from django.utils.safestring import SafeString, mark_safe

from milestones.models import Unit
from reports import charts
from reports.dashboard import Bin, Dashboard, TimeToMilestone
from reports.stats import COHORT_WEEKS, duration_label, percent


@dataclasses.dataclass(frozen=True, slots=True)
class BinRow:
    label: str
    count: int


@dataclasses.dataclass(frozen=True, slots=True)
class Panel:
    dashboard: Dashboard
    cohort_chart: SafeString
    time_chart: SafeString | None
    bin_rows: tuple[BinRow, ...]
    median: str
    p90: str
    hierarchy_chart: SafeString | None
    journey_chart: SafeString | None


def panel_draw(dashboard: Dashboard) -> Panel:
    ttm = dashboard.time_to_milestone
    return Panel(
        dashboard=dashboard,
        cohort_chart=_safe(_cohort_chart(dashboard)),
        time_chart=None if ttm is None else _safe(_time_chart(dashboard, ttm)),
        bin_rows=() if ttm is None else tuple(BinRow(_bin_label(b), b.count) for b in ttm.bins),
        median="" if ttm is None or ttm.median is None else duration_label(ttm.median),
        p90="" if ttm is None or ttm.p90 is None else duration_label(ttm.p90),
        hierarchy_chart=_funnel(dashboard, "hierarchy"),
        journey_chart=_funnel(dashboard, "journey"),
    )


def _safe(svg: str) -> SafeString:
    # reports.charts escapes every text it writes.
    return mark_safe(svg)  # noqa: S308


def _subjects(dashboard: Dashboard) -> str:
    return "accounts" if dashboard.milestone_unit == Unit.ACCOUNT else "customers"


def _cohort_chart(dashboard: Dashboard) -> str:
    name = dashboard.milestone.name if dashboard.milestone else "no milestone"
    subjects = _subjects(dashboard)
    bars = [
        charts.Bar(
            label=f"W{cohort.week.isocalendar().week:02d}",
            value=cohort.share,
            text="" if cohort.share is None else f"{cohort.share:.0%}",
            title=f"{cohort.label} (from {cohort.week:%d %b %Y}): {cohort.achieved:,} of "
            f"{cohort.size:,} {subjects} achieved {name} ({percent(cohort.share)})",
        )
        for cohort in dashboard.cohorts
    ]
    return charts.bar_chart(
        chart_id="reports-cohorts",
        title=f"{name}: completion rate by signup week",
        description=f"For each of the last {COHORT_WEEKS} ISO weeks (UTC), the share of the "
        f"{subjects} created that week who have achieved {name}: "
        + "; ".join(f"{c.label} {percent(c.share)}" for c in dashboard.cohorts)
        + ".",
        bars=bars,
        maximum=1.0,
        ticks=[(n / 4, f"{n * 25}%") for n in range(5)],
    )


def _time_chart(dashboard: Dashboard, ttm: TimeToMilestone) -> str:
    name = dashboard.milestone.name if dashboard.milestone else ""
    bars = [
        charts.Bar(
            label=_bin_label(b),
            value=b.count,
            text=f"{b.count:,}",
            title=f"{_bin_label(b)}: {b.count:,} of {ttm.size:,}",
        )
        for b in ttm.bins
    ]
    edges = [duration_label(b.start) for b in ttm.bins]
    last = ttm.bins[-1]
    edges.append("" if last.end is None else duration_label(last.end))
    markers = [
        charts.Marker(f"{label} {duration_label(value)}", ttm.position(value))
        for label, value in (("median", ttm.median), ("p90", ttm.p90))
        if value is not None
    ]
    return charts.histogram(
        chart_id="reports-time-to-milestone",
        title=f"{name}: time from anchor to achievement",
        description=f"{ttm.size:,} achieved since {dashboard.since:%d %b %Y}; median "
        f"{_label(ttm.median)}, p90 {_label(ttm.p90)}. "
        + "; ".join(f"{bar.label}: {bar.value:,}" for bar in bars if bar.value is not None)
        + ".",
        bars=bars,
        edges=edges,
        markers=markers,
    )


def _label(value: dt.timedelta | None) -> str:
    return "—" if value is None else duration_label(value)


def _bin_label(b: Bin) -> str:
    if b.end is None:
        return f"{duration_label(b.start)} or more"
    return f"{duration_label(b.start)} to {duration_label(b.end)}"


def _funnel(dashboard: Dashboard, which: str) -> SafeString | None:
    if which == "hierarchy":
        steps, subject = dashboard.hierarchy, dashboard.north_star
        title = f"{subject.name if subject else ''}: milestone hierarchy funnel"
    else:
        steps, subject = dashboard.journey_funnel, dashboard.journey
        title = f"{subject.name if subject else ''}: journey step funnel"
    if not steps:
        return None
    description = "; ".join(f"{step.label} {step.count:,}" for step in steps) + "."
    return _safe(
        charts.funnel_chart(
            chart_id=f"reports-{which}", title=title, description=description, steps=steps
        )
    )
