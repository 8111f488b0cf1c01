"""The SVG charts: drawn from data, escaped, and never comparing incomparable units on one scale."""

from __future__ import annotations

import re

import pytest

from course.sphinxext.charts import Bar, Line, bar_chart, histogram_chart, timeline_chart


def _widths(svg: str) -> list[float]:
    return [float(w) for w in re.findall(r'<rect x="190" y="[\d.]+" width="([\d.]+)"', svg)]


def _panels(svg: str) -> dict[str, str]:
    """Each panel's title and what it draws."""
    panel = r'<g class="course-chart-panel">.*?class="course-chart-panel-title">([^<]*)</text>(.*?)</g>'
    return dict(re.findall(panel, svg))


def test_each_unit_is_drawn_in_a_panel_of_its_own_titled_with_it() -> None:
    svg = bar_chart(
        [
            Bar("tty", "this machine", 936, "936 emulated ticks", unit="emulated ticks"),
            Bar("tty", "icount", 353, "353 icount ticks", unit="icount ticks", colour=1),
        ],
        "t",
    )
    panels = _panels(svg)
    assert list(panels) == ["emulated ticks", "icount ticks"]
    assert "936 emulated ticks" in panels["emulated ticks"] and "353" not in panels["emulated ticks"]
    assert "353 icount ticks" in panels["icount ticks"] and "936" not in panels["icount ticks"]
    assert all(">tty<" in drawn for drawn in panels.values()), "the measurement is named again in each panel"
    assert _widths(svg) == [360.0, 360.0], "each panel has its own scale"


def test_a_panel_is_titled_as_asked_and_holds_only_its_bars() -> None:
    svg = bar_chart(
        [
            Bar("tty", "2000", 474, "474 ticks", unit="ticks", panel="ticks, 2000"),
            Bar("tty", "now", 1234, "1,234 ticks", unit="ticks", panel="ticks, now", colour=1),
        ],
        "t",
    )
    panels = _panels(svg)
    assert list(panels) == ["ticks, 2000", "ticks, now"]
    assert "1,234" not in panels["ticks, 2000"] and "474" not in panels["ticks, now"]


def test_bars_of_one_unit_share_a_scale() -> None:
    svg = bar_chart([Bar("a", "s", 100, "100 ns", unit="ns"), Bar("b", "s", 50, "50 ns", unit="ns")], "t")
    assert _widths(svg) == [360.0, 180.0]


def test_a_figure_that_was_not_run_is_written_not_drawn() -> None:
    svg = bar_chart([Bar("f-op-read", "s", None, "not run (no ->read)")], "t")
    assert _widths(svg) == [] and "not run (no -&gt;read)" in svg


def test_text_is_escaped() -> None:
    svg = bar_chart([Bar("<script>", "a & b", 1, "1 tick", note='"quoted"')], "<title>")
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "a &amp; b" in svg


def test_histogram_counts_every_bin_and_says_what_was_subtracted() -> None:
    svg = histogram_chart({"start": 100, "width": 10, "counts": [1, 5, 2], "above": 3}, "ticks", "h", subtracted=26)
    assert svg.count("<rect") == 3
    assert "26 subtracted: the stamp pair" in svg and "3 samples above the 99th percentile" in svg


def _points(svg: str) -> list[list[tuple[float, float]]]:
    return [
        [tuple(float(v) for v in point.split(",")) for point in found.split()]
        for found in re.findall(r'<polyline points="([^"]+)"', svg)
    ]


def test_a_timeline_draws_each_probe_against_its_own_median() -> None:
    seconds = [0.0, 1.0, 2.0]
    svg = timeline_chart(
        [Line("read", seconds, [500, 500, 600], 1), Line("wide", seconds, [3000, 3000, 3600], 2)], "<probes>"
    )
    read, wide = _points(svg)
    offset = wide[0][1] - read[0][1]  # the second panel sits below the first
    assert offset > 0
    shifted = [value for x, y in read for value in (x, y + offset)]
    assert shifted == pytest.approx([value for point in wide for value in point]), "moving alike draws alike"
    assert read[0][1] == read[1][1] > read[2][1]  # 100 %, 100 %, then higher up its panel
    assert [x for x, _ in read] == [50.0, 290.0, 530.0]  # the time axis spans the run
    assert "&lt;probes&gt;" in svg and ">100 %<" in svg


def test_a_timeline_clips_outliers_to_the_frame() -> None:
    svg = timeline_chart([Line("read", [float(s) for s in range(200)], [100.0] * 199 + [10_000.0])], "t")
    (line,) = _points(svg)
    assert min(y for _, y in line) >= 20  # the one preempted window stays inside its panel
    assert ">110 %<" in svg  # and does not stretch the scale
