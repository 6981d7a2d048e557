"""Server-side SVG charts: a bar chart, a histogram with markers, a funnel with drop-offs.

Plain functions from plain values to an SVG string: no JavaScript, no external resource.
Each chart is an ``<svg role="img">`` named by its ``<title>`` and ``<desc>``, writes its
values as text labels (not only as shapes), and gives each bar a ``<title>`` tooltip; the
page shows the same numbers in a data table beside it. Every text is escaped here, so the
result may be inserted into a page as it is. Colours come from CSS classes
(``reports-chart``, ``bar``, ``marker``, ``grid``, ``axis``), with fills that work unstyled.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from html import escape
from typing import Final

from reports.stats import FunnelStep, percent

WIDTH: Final = 560
_PLOT_HEIGHT: Final = 180
_LEFT: Final = 48  # room for the value axis' labels
_RIGHT: Final = 8
_BAR: Final = "#417690"
_MARKER: Final = "#ba2121"
_GRID: Final = "#cccccc"
_MUTED: Final = "#666666"


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    label: str  # under the bar (the category axis)
    value: float | None  # None: no data (nothing is drawn, a dash is written)
    text: str  # written above the bar
    title: str  # the bar's tooltip: the full sentence


@dataclasses.dataclass(frozen=True, slots=True)
class Marker:
    label: str
    position: float  # in bar widths from the left edge of the first bar


def bar_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    bars: Sequence[Bar],
    maximum: float,
    ticks: Sequence[tuple[float, str]],
) -> str:
    """Vertical bars on a value axis from 0 to ``maximum``, gridlines at ``ticks``."""
    top, height = 24, _PLOT_HEIGHT
    body = _value_axis(ticks, maximum, top, height)
    slot = _slot(len(bars))
    for n, bar in enumerate(bars):
        middle = _LEFT + slot * (n + 0.5)
        parts = [f"<title>{escape(bar.title)}</title>"]
        if bar.value is None:
            parts.append(_text(middle, top + height - 4, "—", anchor="middle"))
        else:
            tall = height * _ratio(bar.value, maximum)
            y = top + height - tall
            parts.append(_rect(middle - slot * 0.35, y, slot * 0.7, tall, "bar", _BAR))
            parts.append(_text(middle, y - 4, bar.text, anchor="middle", css="value"))
        parts.append(_text(middle, top + height + 16, bar.label, anchor="middle", css="axis"))
        body.append(f"<g>{''.join(parts)}</g>")
    return _svg(chart_id, title, description, top + height + 26, body)


def histogram(
    *,
    chart_id: str,
    title: str,
    description: str,
    bars: Sequence[Bar],
    edges: Sequence[str],
    markers: Sequence[Marker] = (),
) -> str:
    """Adjacent bars (a count each) over bins whose edges are labelled by ``edges`` (one
    more than the bars; an empty label is not written), with vertical ``markers``."""
    top, height = 14 + 14 * len(markers), _PLOT_HEIGHT
    largest = max((bar.value or 0 for bar in bars), default=0)
    ticks = count_ticks(largest)
    maximum = ticks[-1] if ticks else 1
    body = _value_axis([(tick, f"{tick:,}") for tick in ticks], maximum, top, height)
    slot = _slot(len(bars))
    for n, bar in enumerate(bars):
        left = _LEFT + slot * n
        parts = [f"<title>{escape(bar.title)}</title>"]
        tall = height * _ratio(bar.value or 0, maximum)
        y = top + height - tall
        parts.append(_rect(left + 0.5, y, slot - 1, tall, "bar", _BAR))
        if bar.value:
            parts.append(_text(left + slot / 2, y - 4, bar.text, anchor="middle", css="value"))
        body.append(f"<g>{''.join(parts)}</g>")
    for n, label in enumerate(edges):
        if label:
            x = _LEFT + slot * n
            body.append(_text(x, top + height + 16, label, anchor="middle", css="axis"))
    for n, marker in enumerate(markers):
        x = _LEFT + slot * marker.position
        body.append(
            f'<line class="marker" x1="{x:.1f}" y1="{top - 2}" x2="{x:.1f}" '
            f'y2="{top + height}" stroke="{_MARKER}" stroke-width="2" stroke-dasharray="4 3"/>'
        )
        anchor = "start" if x < WIDTH / 2 else "end"
        shift = 4 if anchor == "start" else -4
        body.append(
            _text(x + shift, 12 + 14 * n, marker.label, anchor=anchor, css="marker", fill=_MARKER)
        )
    return _svg(chart_id, title, description, top + height + 26, body)


def funnel_chart(
    *, chart_id: str, title: str, description: str, steps: Sequence[FunnelStep]
) -> str:
    """One horizontal bar per step (its count, and its share of the first step), with what
    was lost since the step above written between them."""
    row, body = 64, []
    largest = max((step.count for step in steps), default=0)
    room = WIDTH - 150  # the count and share are written after the bar
    for n, step in enumerate(steps):
        y = row * n
        if step.lost is not None:
            body.append(_text(12, y + 12, _lost(step), css="drop", fill=_MUTED))
        name = step.label + (f" — {step.note}" if step.note else "")
        body.append(_text(0, y + 30, name, css="label"))
        wide = room * _ratio(step.count, largest)
        if step.count:
            wide = max(wide, 2)
        share = f" ({percent(step.of_first)})" if n else ""
        parts = [
            f"<title>{escape(f'{step.label}: {step.count:,}{share}')}</title>",
            _rect(0, y + 36, wide, 22, "bar", _BAR),
            _text(wide + 6, y + 52, f"{step.count:,}{share}", css="value"),
        ]
        body.append(f"<g>{''.join(parts)}</g>")
    return _svg(chart_id, title, description, max(row * len(steps), row), body)


def _lost(step: FunnelStep) -> str:
    lost = step.lost or 0
    if lost > 0:
        return f"↓ {lost:,} dropped off ({percent(step.lost_rate)})"
    if lost < 0:
        gained = None if step.lost_rate is None else -step.lost_rate
        return f"↑ {-lost:,} more than the step above (+{percent(gained)})"
    return "↓ no drop-off"


def count_ticks(largest: float, most: int = 5) -> list[int]:
    """0 and evenly spaced round counts (steps of 1, 2 or 5 x 10^n) up to at least
    ``largest``, at most ``most`` + 1 of them; [0, 1] when ``largest`` is 0."""
    if largest <= 0:
        return [0, 1]
    magnitude = 10 ** math.floor(math.log10(largest / most)) if largest > most else 1
    step = next(size * magnitude for size in (1, 2, 5, 10) if size * magnitude * most >= largest)
    return [step * n for n in range(math.ceil(largest / step) + 1)]


def _ratio(value: float, maximum: float) -> float:
    return 0.0 if maximum <= 0 else max(0.0, min(1.0, value / maximum))


def _slot(count: int) -> float:
    return (WIDTH - _LEFT - _RIGHT) / max(count, 1)


def _value_axis(
    ticks: Sequence[tuple[float, str]], maximum: float, top: int, height: int
) -> list[str]:
    body = []
    for value, label in ticks:
        y = top + height - height * _ratio(value, maximum)
        body.append(
            f'<line class="grid" x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH - _RIGHT}" '
            f'y2="{y:.1f}" stroke="{_GRID}" stroke-width="1"/>'
        )
        body.append(_text(_LEFT - 6, y + 4, label, anchor="end", css="axis"))
    return body


def _rect(x: float, y: float, width: float, height: float, css: str, fill: str) -> str:
    return (
        f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{max(width, 0):.1f}" '
        f'height="{max(height, 0):.1f}" fill="{fill}"/>'
    )


def _text(
    x: float, y: float, text: str, *, anchor: str = "start", css: str = "", fill: str = "#333"
) -> str:
    return (
        f'<text class="{css}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" '
        f'fill="{fill}">{escape(text)}</text>'
    )


def _svg(chart_id: str, title: str, description: str, height: int, body: Sequence[str]) -> str:
    ident = escape(chart_id)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="reports-chart" id="{ident}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc" font-family="sans-serif" font-size="13">'
        f'<title id="{ident}-title">{escape(title)}</title>'
        f'<desc id="{ident}-desc">{escape(description)}</desc>'
        f"{''.join(body)}</svg>"
    )
