"""The SVG charts: accessible names, written values, escaped text, geometry from the data."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from reports.charts import Bar, Marker, bar_chart, count_ticks, funnel_chart, histogram
from reports.stats import Stage, funnel

SVG = "{http://www.w3.org/2000/svg}"


def _root(svg: str) -> ET.Element:
    """Parsed (so well-formed): the charts' own output, not untrusted input."""
    return ET.fromstring(svg)  # noqa: S314


def _texts(svg: str) -> list[str]:
    return [node.text or "" for node in _root(svg).iter(f"{SVG}text")]


def _tooltips(svg: str) -> list[str]:
    return [node.text or "" for node in _root(svg).iter(f"{SVG}title")][1:]


def test_a_bar_chart_is_a_named_image_with_its_values_written() -> None:
    svg = bar_chart(
        chart_id="cohorts", title="Rate <by> week", description="W01 50%; W02 none.",
        bars=[Bar("W01", 0.5, "50%", "2026-W01: 1 of 2"), Bar("W02", None, "", "2026-W02: none")],
        maximum=1.0, ticks=[(0.0, "0%"), (1.0, "100%")],
    )  # fmt: skip

    root = _root(svg)
    assert (root.get("role"), root.get("aria-labelledby")) == ("img", "cohorts-title cohorts-desc")
    assert root.find(f"{SVG}title").text == "Rate <by> week"  # type: ignore[union-attr]
    assert "Rate &lt;by&gt; week" in svg
    assert root.find(f"{SVG}desc").text == "W01 50%; W02 none."  # type: ignore[union-attr]
    assert _texts(svg) == ["0%", "100%", "50%", "W01", "—", "W02"]
    assert _tooltips(svg) == ["2026-W01: 1 of 2", "2026-W02: none"]
    # one bar only (none for no data), half the plot's 180 px tall
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert [(r.get("height"), r.get("y")) for r in bars] == [("90.0", "114.0")]


def test_a_histogram_marks_its_median_and_p90() -> None:
    svg = histogram(
        chart_id="ttm", title="Time", description="d",
        bars=[Bar("0s to 1d", 6, "6", "0s to 1d: 6 of 10"), Bar("1d to 2d", 3, "3", "..."),
              Bar("2d or more", 1, "1", "...")],
        edges=["0s", "1d", "2d", ""],
        markers=[Marker("median 16h", 2 / 3), Marker("p90 2d 21h", 2.9)],
    )  # fmt: skip

    root = _root(svg)
    assert _texts(svg) == ["0", "2", "4", "6", "6", "3", "1", "0s", "1d", "2d",
                           "median 16h", "p90 2d 21h"]  # fmt: skip
    lines = [line for line in root.iter(f"{SVG}line") if line.get("class") == "marker"]
    # 504 px of plot over 3 bins from x = 48: 168 px a bin
    assert [line.get("x1") for line in lines] == ["160.0", "535.2"]
    heights = [r.get("height") for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert heights == ["180.0", "90.0", "30.0"]


def test_a_funnel_writes_each_count_and_what_was_lost() -> None:
    steps = funnel([Stage("Signed up", 9), Stage("First report", 5, "micro-milestone"),
                    Stage("Invited team", 2), Stage("Activated", 3, "north star")])  # fmt: skip

    svg = funnel_chart(chart_id="h", title="Funnel", description="d", steps=steps)

    assert _texts(svg) == [
        "Signed up", "9",
        "↓ 4 dropped off (44.4%)", "First report — micro-milestone", "5 (55.6%)",
        "↓ 3 dropped off (60.0%)", "Invited team", "2 (22.2%)",
        "↑ 1 more than the step above (+50.0%)", "Activated — north star", "3 (33.3%)",
    ]  # fmt: skip
    assert _tooltips(svg) == ["Signed up: 9", "First report: 5 (55.6%)",
                              "Invited team: 2 (22.2%)", "Activated: 3 (33.3%)"]  # fmt: skip
    widths = [r.get("width") for r in _root(svg).iter(f"{SVG}rect")]
    assert widths == ["410.0", "227.8", "91.1", "136.7"]  # 410 px for the largest count


def test_no_script_and_no_external_reference() -> None:
    svg = funnel_chart(chart_id="x", title="<script>", description="&",
                       steps=funnel([Stage('"quoted"', 1)]))  # fmt: skip

    assert "<script" not in svg
    assert not re.search(r"(href|src)=", svg)
    assert "&lt;script&gt;" in svg
    assert "&quot;quoted&quot;" in svg


def test_count_ticks_are_round() -> None:
    assert count_ticks(0) == [0, 1]
    assert count_ticks(3) == [0, 1, 2, 3]
    assert count_ticks(7) == [0, 2, 4, 6, 8]
    assert count_ticks(1234) == [0, 500, 1000, 1500]
