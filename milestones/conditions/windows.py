"""Time-ordered scans: rolling windows and runs of consecutive periods.

Both work on ``(moment, item)`` points and depend only on the multiset of points: points are
sorted by moment alone, and a score is read only after every point at that moment has been
added, so the order of simultaneous points never matters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter, deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Generic, Protocol, TypeVar

Item = TypeVar("Item")
Item_contra = TypeVar("Item_contra", contravariant=True)
Point = tuple[dt.datetime, Item]
#: Counts stay ints (cheap to compare); sums are exact ``Fraction``s.
Score = int | Fraction


class Tally(Protocol[Item_contra]):
    """A running aggregate over the points inside the window."""

    def add(self, item: Item_contra) -> None: ...

    def remove(self, item: Item_contra) -> None: ...

    def score(self) -> Score: ...


class CountTally:
    def __init__(self) -> None:
        self.count = 0

    def add(self, item: object) -> None:
        self.count += 1

    def remove(self, item: object) -> None:
        self.count -= 1

    def score(self) -> Score:
        return self.count


class SumTally:
    """Exact sums (``Fraction``), so adding floats in another order gives the same total."""

    def __init__(self) -> None:
        self.total = Fraction(0)

    def add(self, item: Fraction) -> None:
        self.total += item

    def remove(self, item: Fraction) -> None:
        self.total -= item

    def score(self) -> Score:
        return self.total


class DistinctTally:
    def __init__(self) -> None:
        self.seen: Counter[Hashable] = Counter()

    def add(self, item: Hashable) -> None:
        self.seen[item] += 1

    def remove(self, item: Hashable) -> None:
        self.seen[item] -= 1
        if not self.seen[item]:
            del self.seen[item]

    def score(self) -> Score:
        return len(self.seen)


@dataclasses.dataclass(frozen=True, slots=True)
class Reached:
    """The earliest moment a score reached its target, and the best score seen until then."""

    at: dt.datetime | None
    best: Score


class _Window(Generic[Item]):
    def __init__(self, points: Sequence[Point[Item]], within: dt.timedelta | None) -> None:
        self.points = points
        self.within = within
        self.oldest = 0

    def expire(self, now: dt.datetime, tally: Tally[Item]) -> None:
        """Drop points older than ``now - within``: a point exactly that old stays (inclusive)."""
        if self.within is None:
            return
        while self.points[self.oldest][0] < now - self.within:
            tally.remove(self.points[self.oldest][1])
            self.oldest += 1


def rolling(
    points: Iterable[Point[Item]],
    tally: Tally[Item],
    target: Score,
    within: dt.timedelta | None = None,
) -> Reached:
    """When the tally over ``[t - within, t]`` (or over everything up to ``t``) first reaches
    ``target``, ``t`` being a point's moment; the window is closed at both ends."""
    ordered = sorted(points, key=lambda point: point[0])
    window = _Window(ordered, within)
    best: Score = 0
    for index, (moment, item) in enumerate(ordered):
        tally.add(item)
        if index + 1 < len(ordered) and ordered[index + 1][0] == moment:
            continue
        window.expire(moment, tally)
        best = max(best, tally.score())
        if best >= target:
            return Reached(moment, best)
    return Reached(None, best)


def run_of_periods(
    firsts: Mapping[dt.date, dt.datetime], step: dt.timedelta, length: int
) -> tuple[dt.datetime | None, int]:
    """The earliest moment ``length`` consecutive periods all held a point, and the longest run.

    ``firsts`` maps each period (by its first day) to the moment of its earliest point. A run
    is complete when the last of its periods gets its first point, which is the latest of those
    first moments; that is usually, but (around odd time-zone changes) not always, the last
    period's, so a sliding maximum is kept.
    """
    achieved_at: dt.datetime | None = None
    longest = run = 0
    previous: dt.date | None = None
    latest: deque[tuple[int, dt.datetime]] = deque()  # (position in run, moment), decreasing
    for period in sorted(firsts):
        run = run + 1 if previous is not None and period - previous == step else 1
        if run == 1:
            latest.clear()
        previous = period
        moment = firsts[period]
        while latest and latest[-1][1] <= moment:
            latest.pop()
        latest.append((run, moment))
        while latest[0][0] <= run - length:
            latest.popleft()
        longest = max(longest, run)
        if run >= length and (achieved_at is None or latest[0][1] < achieved_at):
            achieved_at = latest[0][1]
    return achieved_at, longest
