"""The SVG charts: drawn from data, escaped, and never comparing incomparable units on one scale."""

from __future__ import annotations

import re

from course.sphinxext.charts import Bar, bar_chart, histogram_chart


def _widths(svg: str) -> list[float]:
    return [float(w) for w in re.findall(r'<rect x="190" y="[\d.]+" width="([\d.]+)"', svg)]


def test_each_unit_has_its_own_scale() -> None:
    svg = bar_chart(
        [
            Bar("tty", "this machine", 10, "10 ticks", unit="ticks"),
            Bar("tty", "icount", 1000, "1,000 icount ticks", unit="icount ticks", colour=1),
        ],
        "t",
    )
    assert _widths(svg) == [360.0, 360.0], "the largest bar of each unit spans the chart"


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
