"""The dashboard's arithmetic, on plain values: UTC calendar windows, percentiles between
sorted rows, histogram bins and funnel drop-offs. No ORM, no clock.

Calendar windows are in UTC: "today" starts at 00:00 UTC and a week is an ISO week, starting
on Monday 00:00 UTC, labelled like ``2026-W10``. (Per-customer days and weeks, in the
customer's time zone, are a messaging concern; a dashboard's columns need one calendar.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Final

WEEK: Final = dt.timedelta(days=7)
#: Signup cohorts shown, the current (partial) week included.
COHORT_WEEKS: Final = 12
MEDIAN: Final = 0.5
P90: Final = 0.9
#: A histogram aims at this many bins of equal width (at most two more: see ``bin_edges``).
TARGET_BINS: Final = 10
_MINUTE: Final = 60
_HOUR: Final = 3600
_DAY: Final = 86_400
#: Bin widths a person reads at a glance, in seconds; wider ones are whole multiples of 30 days.
NICE_WIDTHS: Final = (
    1, 2, 5, 10, 15, 30,
    _MINUTE, 2 * _MINUTE, 5 * _MINUTE, 10 * _MINUTE, 15 * _MINUTE, 30 * _MINUTE,
    _HOUR, 2 * _HOUR, 3 * _HOUR, 6 * _HOUR, 12 * _HOUR,
    _DAY, 2 * _DAY, 7 * _DAY, 14 * _DAY, 30 * _DAY,
)  # fmt: skip


# --- Calendar windows -----------------------------------------------------------------------


def day_start(moment: dt.datetime) -> dt.datetime:
    """00:00 UTC of ``moment``'s UTC day."""
    return moment.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def week_start(moment: dt.datetime) -> dt.datetime:
    """Monday 00:00 UTC of ``moment``'s ISO week."""
    day = day_start(moment)
    return day - dt.timedelta(days=day.weekday())


def week_label(monday: dt.datetime) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def cohort_weeks(now: dt.datetime, count: int = COHORT_WEEKS) -> tuple[dt.datetime, ...]:
    """The Mondays of the last ``count`` ISO weeks, oldest first, ``now``'s week last."""
    this_week = week_start(now)
    return tuple(this_week - WEEK * (count - 1 - n) for n in range(count))


# --- Percentiles ----------------------------------------------------------------------------


def percentile(values: Mapping[int, dt.timedelta], size: int, fraction: float) -> dt.timedelta:
    """Percentile ``fraction`` of ``size`` sorted values, of which ``values`` holds (at
    least) those at the 0-based positions either side of ``fraction * (size - 1)``:
    interpolated linearly between them, like PostgreSQL's ``percentile_cont`` and NumPy's
    default."""
    position = fraction * (size - 1)
    below = math.floor(position)
    if position == below:
        return values[below]
    low, high = values[below], values[below + 1]
    return low + (high - low) * (position - below)


# --- Histogram bins -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Edges:
    """Equal-width bins ``[edges[n], edges[n + 1])``; with ``overflow``, one more bin holds
    everything from ``edges[-1]`` on."""

    edges: tuple[dt.timedelta, ...]
    overflow: bool

    @property
    def width(self) -> dt.timedelta:
        return self.edges[1] - self.edges[0]

    def position(self, value: dt.timedelta) -> float:
        """Where ``value`` falls, in bin widths from the first edge."""
        return (value - self.edges[0]) / self.width


def nice_width(span: dt.timedelta, bins: int = TARGET_BINS) -> dt.timedelta:
    """The narrowest width of ``NICE_WIDTHS`` (or whole multiple of 30 days) with which
    ``bins`` bins cover ``span``."""
    needed = span.total_seconds() / bins
    for seconds in NICE_WIDTHS:
        if seconds >= needed:
            return dt.timedelta(seconds=seconds)
    return dt.timedelta(days=30 * math.ceil(needed / (30 * _DAY)))


def bin_edges(*, minimum: dt.timedelta, maximum: dt.timedelta, p90: dt.timedelta) -> Edges:
    """Bins of a nice width from ``minimum`` (rounded down to the width) that show the bulk
    of the values: up to ``maximum``, or, when the tail is long, up to twice the distance
    from ``minimum`` to the p90, with one overflow bin for the rest. At most
    ``TARGET_BINS + 2`` bins, the last regular edge above every value it covers."""
    upper = maximum
    if p90 > minimum:
        upper = min(maximum, p90 + (p90 - minimum))
    width = nice_width(upper - minimum)
    lowest = (minimum // width) * width
    count = (upper - lowest) // width + 1
    edges = tuple(lowest + width * n for n in range(count + 1))
    return Edges(edges=edges, overflow=maximum >= edges[-1])


def bin_counts(edges: Edges, size: int, below: Sequence[int]) -> tuple[int, ...]:
    """Per-bin counts from ``below[n]``, the number of the ``size`` values under
    ``edges.edges[n + 1]`` (the first edge is at or below every value)."""
    counts = [high - low for low, high in zip((0, *below[:-1]), below, strict=True)]
    if edges.overflow:
        counts.append(size - below[-1])
    return tuple(counts)


# --- Funnels --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Stage:
    label: str
    count: int
    note: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class FunnelStep:
    """A stage and what was lost since the previous one (``None`` on the first); ``lost``
    is negative when a stage has more than the one before (steps that are not strictly
    sequential, such as branches or micro-milestones reached in any order)."""

    label: str
    count: int
    note: str = ""
    lost: int | None = None
    lost_rate: float | None = None  # of the previous stage's count; None if that was 0
    of_first: float | None = None  # this stage's count over the first's; None if that was 0


def funnel(stages: Sequence[Stage]) -> tuple[FunnelStep, ...]:
    steps: list[FunnelStep] = []
    first = stages[0].count if stages else 0
    for n, stage in enumerate(stages):
        lost = lost_rate = None
        if n:
            previous = stages[n - 1].count
            lost = previous - stage.count
            lost_rate = rate(lost, previous)
        steps.append(
            FunnelStep(
                label=stage.label,
                count=stage.count,
                note=stage.note,
                lost=lost,
                lost_rate=lost_rate,
                of_first=rate(stage.count, first),
            )
        )
    return tuple(steps)


# --- Formatting -----------------------------------------------------------------------------


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def duration_label(value: dt.timedelta) -> str:
    """Its two largest units, the rest dropped: ``45s``, ``12m 30s``, ``3h 5m``, ``2d 4h``."""
    if value < dt.timedelta(0):
        return f"-{duration_label(-value)}"
    seconds = int(value.total_seconds())
    units = (("d", _DAY), ("h", _HOUR), ("m", _MINUTE), ("s", 1))
    for n, (name, size) in enumerate(units[:-1]):
        if seconds >= size:
            small_name, small_size = units[n + 1]
            rest = (seconds % size) // small_size
            return f"{seconds // size}{name}" + (f" {rest}{small_name}" if rest else "")
    return f"{seconds}s"
