"""The charts: written as SVG from data, escaped, readable, and never comparing incomparable units on one scale."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import xml.etree.ElementTree as ET
from html import unescape
from pathlib import Path

import pytest
from sphinx.testing.util import SphinxTestApp

from course.publish.sphinxext.charts import (
    FONT,
    MIN_WIDTH,
    PALETTE,
    WIDTH,
    Bar,
    Line,
    bar_chart,
    histogram_chart,
    rebin,
    timeline_chart,
)


def _texts(svg: str) -> list[str]:
    """Each text drawn, unescaped, a no-break space read as a space."""
    return [unescape(text).replace("\xa0", " ") for text in re.findall(r"<text [^>]*>([^<]*)</text>", svg)]


def _panels(svg: str) -> dict[str, list[str]]:
    """Each panel's title (its bold text) and the texts drawn in it."""
    found = {}
    for chunk in svg.split('<g class="course-chart-panel"')[1:]:
        chunk = chunk.split("</g>", 1)[0]
        title = re.findall(r'<text [^>]*font-weight="bold"[^>]*>([^<]*)</text>', chunk)
        assert title, "every panel is titled"
        found[unescape(" ".join(title))] = _texts(chunk)  # a long title wraps onto several lines
    return found


def _bars(svg: str) -> list[tuple[float, float, float]]:
    """Each bar drawn in one of the palette's colours: where it starts, how long it is, the height of its middle."""
    fills = "|".join(PALETTE)
    found = re.findall(rf'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" fill="(?:{fills})"/>', svg)
    return [(float(x), float(w), float(y) + float(h) / 2) for x, y, w, h in found]


def _bar_widths(svg: str) -> list[float]:
    """The length of each bar drawn in one of the palette's colours."""
    return [round(width, 1) for _, width, _ in _bars(svg)]


def _text_at(svg: str, text: str) -> tuple[float, float]:
    """Where ``text`` (drawn exactly so, escaped) starts: its x and the height of its middle."""
    found = re.search(rf'<text x="([\d.]+)" y="([\d.]+)"[^>]*>{re.escape(text)}</text>', svg)
    assert found, f"{text!r} is drawn"
    return float(found[1]), float(found[2])


def test_each_unit_is_drawn_in_a_panel_of_its_own_titled_with_it() -> None:
    chart = bar_chart(
        [
            Bar("tty", "this machine", 936, "936 emulated ticks", unit="emulated ticks"),
            Bar("tty", "icount", 353, "353 icount ticks", unit="icount ticks", colour=1),
        ],
        "t",
    )
    panels = _panels(chart.svg)
    assert list(panels) == ["emulated ticks", "icount ticks"]
    emulated, icount = " ".join(panels["emulated ticks"]), " ".join(panels["icount ticks"])
    assert " 936" in panels["emulated ticks"] and "353" not in emulated  # the axis names the unit
    assert " 353" in panels["icount ticks"] and "936" not in icount
    assert all("tty" in drawn for drawn in panels.values()), "the measurement is named again in each panel"
    first, second = _bar_widths(chart.svg)
    assert first == second, "each panel has its own scale"


def test_a_panel_is_titled_as_asked_and_holds_only_its_bars() -> None:
    chart = bar_chart(
        [
            Bar("tty", "2000", 474, "474 ticks", unit="ticks", panel="ticks, 2000"),
            Bar("tty", "now", 1234, "1,234 ticks", unit="ticks", panel="ticks, now", colour=1),
        ],
        "t",
    )
    panels = _panels(chart.svg)
    assert list(panels) == ["ticks, 2000", "ticks, now"]
    assert " 474" in panels["ticks, 2000"] and " 1,234" not in panels["ticks, 2000"]
    assert " 1,234" in panels["ticks, now"] and " 474" not in panels["ticks, now"]


def test_bars_of_one_unit_share_a_scale_with_real_axes() -> None:
    chart = bar_chart([Bar("a", "s", 100, "100 ns", unit="ns"), Bar("b", "s", 50, "50 ns", unit="ns")], "t")
    long, short = _bar_widths(chart.svg)
    assert long == pytest.approx(2 * short, abs=0.2)
    texts = _texts(chart.svg)
    assert "0" in texts and "ns" in texts, "an x axis with tick labels and its unit"


def test_each_bar_is_named_in_words_not_by_colour_alone() -> None:
    chart = bar_chart(
        [Bar("read", "2000", 948, "948 ns", unit="ns"), Bar("read", "now", 617, "617 ns", unit="ns", colour=1)], "t"
    )
    texts = _texts(chart.svg)
    assert "read · 2000" in texts and "read · now" in texts
    assert ("read", "now", "617 ns", "ns", "") in chart.rows, "the figures as a table for a screen reader"


def test_a_figure_that_was_not_run_is_written_not_drawn() -> None:
    chart = bar_chart([Bar("f-op-read", "s", None, "not run (no ->read)")], "t")
    assert _bar_widths(chart.svg) == [] and " not run (no ->read)" in _texts(chart.svg)


def test_text_is_escaped_and_a_dollar_is_only_a_dollar() -> None:
    chart = bar_chart([Bar("<script>", "a & b", 1, "$1 tick$", note='"quoted"')], "<title>")
    svg = chart.svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;title&gt;" in svg
    assert " $1 tick$" in _texts(svg)
    ET.fromstring(svg)  # well-formed: no label closes an element or opens one


def test_the_axes_and_text_follow_the_themes_text_colour_and_stay_readable() -> None:
    chart = bar_chart([Bar("a", "s", 100, "100 ns", unit="ns")], "t")
    assert 'fill="currentColor"' in chart.svg and 'stroke="currentColor"' in chart.svg and "#000" not in chart.svg
    assert f'width="{WIDTH}"' in chart.svg and f"min-width: {MIN_WIDTH}px" in chart.svg
    sizes = [float(size) for size in re.findall(r'font-size="([\d.]+)"', chart.svg)]
    assert min(sizes) * MIN_WIDTH / WIDTH >= 10, "at its narrowest, no label is under 10 px"
    assert min(sizes) == FONT


def test_two_charts_of_one_page_share_no_id() -> None:
    one = bar_chart([Bar("a", "s", 100, "100 ns", unit="ns")], "one")
    two = bar_chart([Bar("a", "s", 100, "100 ns", unit="ns")], "two")
    ids = re.findall(r'id="([^"]+)"', one.svg)
    assert ids and not set(ids) & set(re.findall(r'id="([^"]+)"', two.svg))
    assert all(f"#{target}" for target in re.findall(r"url\(#([^)]+)\)", one.svg) if target in ids)


def test_histogram_has_a_count_axis_and_shows_the_tail_with_its_count() -> None:
    chart = histogram_chart(
        {"start": 100, "width": 10, "counts": [1, 5000, 2], "above": 3}, "ticks", "h", subtracted=26, maximum=900
    )
    texts = _texts(chart.svg)
    assert "samples (log scale)" in texts and "1,000" in texts, "a logarithmic count axis"
    assert "ticks; 26 subtracted (the stamp pair)" in texts
    assert "hatched: 3 samples above p99, maximum 900" in texts, "the tail in words, not where a tick value goes"
    assert chart.rows == [
        ("100 to 110", "1"),
        ("110 to 120", "5,000"),
        ("120 to 130", "2"),
        ("above p99 (130), maximum 900", "3"),
    ]


def test_histogram_bins_are_whole_counter_steps() -> None:
    """A counter moving in steps of 24.5 ticks: 1-tick bins would be spikes with empty bins between them."""
    counts = [0] * 100
    for value, count in ((0, 1000), (24, 600), (49, 300), (73, 40), (98, 2)):
        counts[value] = count
    stored = {"start": 49, "width": 1, "counts": counts, "above": 5}
    binned = rebin(stored, 24.5)
    assert (binned["width"] / 24.5).is_integer(), "every bin a whole number of steps"
    assert binned["counts"] == [1000, 600, 300, 40, 2], "one bin per step, no empty bin between two of them"
    chart = histogram_chart(stored, "ticks", "h", step=24.5)
    assert [row[1] for row in chart.rows[:-1]] == ["1,000", "600", "300", "40", "2"]
    assert "bins of 24.5, whole steps of the counter" in " ".join(_texts(chart.svg))


def _lines(svg: str) -> list[list[tuple[float, float]]]:
    """Each probe's line, as the points of its path (drawn in a palette colour)."""
    fills = "|".join(PALETTE)
    paths = re.findall(rf'<path d="([^"]+)" fill="none" stroke="(?:{fills})"', svg)
    return [[(float(x), float(y)) for x, y in re.findall(r"([\d.]+) ([\d.]+)", path)] for path in paths]


def test_a_timeline_draws_each_probe_against_its_own_median() -> None:
    seconds = [0.0, 1.0, 2.0]
    chart = timeline_chart(
        [Line("read", seconds, [500, 500, 600], 1), Line("wide", seconds, [3000, 3000, 3600], 2)], "<probes>"
    )
    read, wide = _lines(chart.svg)
    offset = wide[0][1] - read[0][1]  # the second panel sits below the first
    assert offset > 0
    shifted = [value for x, y in read for value in (x, y + offset)]
    assert shifted == pytest.approx([value for point in wide for value in point], abs=0.5), "moving alike draws alike"
    assert read[0][1] == read[1][1] > read[2][1]  # 100 %, 100 %, then higher up its panel
    assert read[1][0] - read[0][0] == pytest.approx(read[2][0] - read[1][0], abs=0.02)  # linear time (px to 0.01)
    assert "&lt;probes&gt;" in chart.svg and "100 %" in _texts(chart.svg)
    assert list(_panels(chart.svg)) == ["read", "wide"], "each probe is named by its panel's title"
    assert chart.rows[0] == ("read", "3", "500", "100 %", "120 %")


def test_a_timeline_clips_outliers_to_the_frame() -> None:
    chart = timeline_chart([Line("read", [float(s) for s in range(200)], [100.0] * 199 + [10_000.0])], "t")
    (line,) = _lines(chart.svg)
    top = min(y for _, y in line)
    assert "110 %" in _texts(chart.svg)  # the one preempted window does not stretch the scale
    assert top == pytest.approx(min(y for _, y in line if y <= top + 0.01))


def test_a_chart_with_no_figures_says_so_instead_of_failing() -> None:
    chart = bar_chart([], "Median <cost>")
    assert "no figures to draw yet" in chart.svg and "&lt;cost&gt;" in chart.svg and chart.rows == []


def test_a_panel_of_several_sets_names_each_row_by_what_tells_its_set_apart() -> None:
    kernels = ["6.1", "6.12", "6.1-rt"]
    bars = [
        Bar(
            group,
            f"QEMU -icount, Debian {kernel} guest (deterministic path lengths)",
            value,
            f"{value} icount ticks",
            unit="icount ticks",
            panel="icount ticks",
        )
        for group in ("kernel_read, tty", "read_iter, tty")
        for value, kernel in zip((2000, 2100, 2600), kernels, strict=True)
    ]
    chart = bar_chart(bars, "Kernel reads")
    texts = " ".join(_texts(chart.svg))
    for kernel in kernels:
        assert f"kernel_read, tty · {kernel}" in texts
    assert texts.count("deterministic path lengths") == 1, "what the sets share is said once, in the title"
    (title,) = _panels(chart.svg)
    assert "QEMU -icount, Debian 6.1, 6.12 or 6.1-rt guest" in title  # what differs listed, never an ellipsis
    assert "…" not in title
    # The table under the chart keeps each set's whole name.
    assert {row[1] for row in chart.rows} == {bar.series for bar in bars}


def test_a_long_set_name_never_leaves_the_dot_before_it_alone_on_a_line() -> None:
    bars = [
        Bar("empty read(), terminal", name, value, f"{value} ns", unit="ns")
        for name, value in (("2000: Rubini's 500 MHz PC", 948), ("amd-epyc-6.18.44-fc-v1272-vm (this machine)", 701))
    ]
    lines = [text.strip() for text in _texts(bar_chart(bars, "t").svg)]
    assert any(line.endswith("·") for line in lines), "the name is wrapped after the dot"
    assert "·" not in lines, "the dot stays with the word before it"


def test_every_bar_is_drawn_to_scale_on_the_row_of_its_name_with_its_figure_after_it() -> None:
    bars = [Bar("terminal", "s", 812, "812 ns", unit="ns"), Bar("pipe", "s", 203, "203 ns", unit="ns", colour=1)]
    svg = bar_chart(bars, "t").svg
    (start, long, long_middle), (start_again, short, short_middle) = _bars(svg)
    assert start == start_again and long == pytest.approx(4 * short, abs=0.2), "one scale from one axis"
    name_x, name_y = _text_at(svg, "terminal")
    figure_x, figure_y = _text_at(svg, " 812")
    assert name_x < start and name_y == long_middle, "the name left of its bar, on its row"
    assert figure_x == pytest.approx(start + long, abs=0.01) and figure_y == long_middle, "the figure just after it"
    assert _text_at(svg, " 203")[1] == short_middle > long_middle, "the bars in the order given, top down"
    assert f'fill="{PALETTE[1]}"' in svg, "each bar in its set's colour"
    ticks = [float(text.replace(",", "")) for text in _texts(svg) if re.fullmatch(r"[\d,]+", text)]
    assert ticks == sorted(ticks) and ticks[0] == 0 and len(ticks) >= 3, "an axis from 0, in round values"
    for tick in ticks:  # each where its value is, on the bars' scale
        assert _text_at(svg, f"{tick:,.0f}")[0] == pytest.approx(start + long * tick / 812, abs=0.02)


def test_a_hostile_label_is_escaped_bounded_and_loses_its_control_characters() -> None:
    from course.publish.sphinxext.svg import MOST

    hostile = "<svg onload=alert(1)>&amp;" + "x" * 5000 + "\x1b[31m\u2028end"
    chart = bar_chart([Bar(hostile, hostile, 5, hostile, unit="ns", panel=hostile)], hostile)
    root = ET.fromstring(chart.svg)  # still one well-formed element: nothing of the label became markup
    assert root.tag.endswith("svg") and not [e for e in root.iter() if e.tag.endswith("script") or "onload" in e.attrib]
    assert "\x1b" not in chart.svg and "\u2028" not in chart.svg
    assert all(len(text) <= MOST for text in _texts(chart.svg)), "every drawn text is bounded"
    assert len(chart.svg) < 20_000, "a 5,000-character label does not make a chart of its size"
    assert chart.rows[0][0] == hostile, "the figures' table (escaped by docutils) keeps the whole label"


def test_every_kind_of_chart_is_well_formed_svg_titled_for_a_screen_reader() -> None:
    from course.publish.sphinxext.charts import Group, Share, SizeSeries, answer_chart, size_chart

    drawn = {
        "bars": bar_chart([Bar("a", "s", 1, "1 ns", unit="ns")], "bars & co"),
        "histogram": histogram_chart({"start": 0, "width": 1, "counts": [3, 4], "above": 1}, "ticks", "histogram"),
        "timeline": timeline_chart([Line("read", [0.0, 1.0], [1.0, 2.0])], "timeline"),
        "answer": answer_chart([Group("g", "", (Share("2000", 50.0, "50 %"),))], "answer", "saved, %"),
        "size": size_chart([SizeSeries("host", ((1.0, 500.0), (4096.0, 900.0)), 0.1, 500.0)], "size"),
    }
    for name, chart in drawn.items():
        root = ET.fromstring(chart.svg)
        svg = "{http://www.w3.org/2000/svg}"
        assert root.get("role") == "img" and root.get("aria-label") == root.find(f"{svg}title").text, name
        assert root.get("viewBox") == f"0 0 {WIDTH} {root.get('height')}", f"{name}: scales with its column"
    assert ET.fromstring(drawn["bars"].svg).get("aria-label") == "bars & co"


def test_a_long_title_is_read_whole_by_a_screen_reader_and_a_hostile_one_is_bounded() -> None:
    from course.publish.sphinxext.charts import SizeSeries, size_chart

    title = (
        "Cost of a read against its size, in nanoseconds: this machine's medians from the page cache with the line "
        "fitted to them, and the article's empty read plus its two to three ticks a byte"
    )
    for chart in (
        bar_chart([Bar("a", "s", 1, "1 ns", unit="ns")], title),
        size_chart([SizeSeries("h", ((1.0, 2.0),))], title),
    ):
        root = ET.fromstring(chart.svg)
        assert root.get("aria-label") == root.find("{http://www.w3.org/2000/svg}title").text == title, "never cut"
    hostile = ET.fromstring(bar_chart([Bar("a", "s", 1, "1 ns", unit="ns")], "x" * 5000).svg).get("aria-label")
    assert len(hostile) <= 400 and hostile.endswith("…")


def test_an_answer_chart_draws_each_share_to_scale_from_0_to_100_percent() -> None:
    from course.publish.sphinxext.charts import Group, Share, answer_chart

    groups = [Group("saved", "how", (Share("2000", 60.0, "60.0 %"), Share("today", 15.0, "15.0 %", 2)))]
    svg = answer_chart(groups, "t", "saved, %").svg
    zero, hundred = _text_at(svg, "0 %")[0], _text_at(svg, "100 %")[0]
    (start, then, _), (_, now, _) = _bars(svg)
    assert start == pytest.approx(zero, abs=0.01)
    assert then == pytest.approx(0.6 * (hundred - zero), abs=0.05) and now == pytest.approx(
        0.15 * (hundred - zero), abs=0.05
    )
    assert _text_at(svg, "2000")[1] < _text_at(svg, "today")[1], "each set named on its row, in order"


#: Answer charts whose shares are all positive, as drawn before negative shares diverged (commit dd0c3a1).
BEFORE_DIVERGING = Path(__file__).parent / "data" / "answer-charts-all-positive.json"


def _answer_charts_before() -> dict[str, str]:
    return json.loads(BEFORE_DIVERGING.read_text(encoding="utf-8"))


def test_an_all_positive_answer_chart_is_drawn_byte_for_byte_as_before() -> None:
    """Lessons 1, 4, 6 and 8 keep their charts: only a negative share draws a diverging one."""
    from course.publish.sphinxext.charts import Group, Share, answer_chart

    percent = [
        Group(
            "skipping entry and exit",
            "how 2000: sys_read() called directly; host: the invalid call",
            (
                Share("2000", 61.5, "61.5 %", 0, "the article's"),
                Share("host 6.18: invalid call", 12.25, "12.25 %", 1),
                Share("6.1 guest", 0.0, "0.00 %", 2),
            ),
        ),
        Group(
            "skipping the descriptor",
            "",
            (Share("2000", 3.4, "3.40 %", 0), Share("today", None, "not measurable: the module cannot load here")),
        ),
    ]
    nanoseconds = [
        Group(
            "the way in and out",
            "how both",
            (Share("2000", 1234.0, "1,234 ns", 0), Share("host 6.18", 56.0, "56 ns", 1)),
        )
    ]
    before = _answer_charts_before()
    assert answer_chart(percent, "percent & co", "saved, %").svg == before["percent"]
    assert answer_chart(nanoseconds, "ns", "nanoseconds", "ns").svg == before["ns"]


def test_a_negative_share_diverges_left_of_a_zero_line_on_an_axis_bounded_by_the_data() -> None:
    from course.publish.sphinxext.charts import Group, Share, answer_chart

    groups = [
        Group(
            "against read() + write()",
            "",
            (Share("6.1 guest", 0.43, "0.43 %", 2), Share("6.12 guest", 2.05, "2.05 %", 4)),
        ),
        Group(
            "against sendfile()",
            "",
            (Share("6.1 guest", -3.29, "-3.29 %", 2), Share("6.12 guest", -1.71, "-1.71 %", 4)),
        ),
    ]
    chart = answer_chart(groups, "t", "% of the user-space server's request")
    svg = chart.svg
    ET.fromstring(svg)
    zero, two = _tick_label(svg, "0 %", "middle")[0], _tick_label(svg, "+2 %", "middle")[0]
    assert _tick_label(svg, "-4 %", "middle") and _tick_label(svg, "+4 %", "middle"), "a round bound past the data"
    assert "100 %" not in _texts(svg), "not the 0-100 % axis: a share of 2 % would be a sliver"
    px = (two - zero) / 2  # a percentage point
    drawn = re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="16" fill="(#\w+)"/>', svg)
    (saved, _, saved_fill), (more, _, more_fill), (cost, cost_width, cost_fill), (less, less_width, less_fill) = drawn
    assert float(saved) == pytest.approx(zero, abs=0.01) and float(more) == pytest.approx(zero, abs=0.01)
    for start, width, value in ((cost, cost_width, 3.29), (less, less_width, 1.71)):
        assert float(start) + float(width) == pytest.approx(zero, abs=0.02), "a cost ends at zero"
        assert float(start) == pytest.approx(zero - value * px, abs=0.05), "and runs left, to scale"
    assert (saved_fill, more_fill) == (cost_fill, less_fill) == (PALETTE[2], PALETTE[4]), "each kernel its colour"
    figure = re.search(r'<text x="([\d.]+)" y="[\d.]+" dy="0.35em" [^>]*text-anchor="end">-3.29 %</text>', svg)
    assert figure and float(figure[1]) < float(cost), "its figure at its end, left of the bar"
    costs_more, saved_words = _text_at(svg, "\u2190 costs more"), _text_at(svg, "saved \u2192")
    assert costs_more[0] < zero < saved_words[0] and costs_more[1] == saved_words[1], "each side named, under zero"
    assert [row[2] for row in chart.rows] == [
        "0.43 % (saved)",
        "2.05 % (saved)",
        "-3.29 % (costs more)",
        "-1.71 % (costs more)",
    ]


@pytest.mark.sphinx("html", testroot="course-answer")
def test_on_a_page_a_negative_share_is_a_bar_left_of_zero_and_an_all_positive_chart_is_unchanged(
    app: SphinxTestApp,
) -> None:
    app.build()
    assert app._warning.getvalue() == ""
    page = (Path(app.outdir) / "index.html").read_text(encoding="utf-8")
    savings, both = re.findall(r"<svg.*?</svg>", page, re.S)
    assert savings == _answer_charts_before()["site"], "the chart of savings alone is drawn as before"
    zero = _tick_label(both, "0 %", "middle")[0]
    bars = _bars(both)
    assert len(bars) == 4
    for start, width, _ in bars[:2]:  # against read() + write(): saved
        assert start == pytest.approx(zero, abs=0.01) and width > 0
    for start, width, _ in bars[2:]:  # against sendfile(): the kernel server costs more
        assert start < zero and start + width == pytest.approx(zero, abs=0.02)
    table = page.split("Savings and costs</p>", 1)[1].split("</table>", 1)[0]
    assert "-3.20 % (costs more)" in table and "2.50 % (saved)" in table, "the table says which side"


def test_a_size_chart_marks_each_measured_point_and_draws_each_fitted_line() -> None:
    from course.publish.sphinxext.charts import SizeSeries, size_chart

    today = SizeSeries("page cache, host", ((1.0, 800.0), (2048.0, 850.0), (4096.0, 900.0)), 0.025, 800.0, 1)
    then = SizeSeries("2000: 948 ns + 2 ticks a byte", (), 4.0, 948.0, 0, "--")
    svg = size_chart([today, then], "size").svg
    assert svg.count(f'<circle r="2.8" fill="{PALETTE[1]}"/>') == 3 + 1, "three points, and one in the legend"
    lines = _lines(svg)
    fitted, article = lines[0], lines[1]  # in the plot; then their samples in the legend
    assert article[-1][1] < fitted[-1][1], "4 ns a byte climbs higher on the chart"
    assert 'stroke-dasharray="6 4"' in svg, "the article's line dashed"
    assert {"page cache, host", "2000: 948 ns + 2 ticks a byte", "bytes read", "ns (log scale)"} <= set(_texts(svg))


def test_the_articles_two_lines_are_told_apart_by_their_dashes() -> None:
    """2 and 3 ticks a byte share the 2000 colour: the second has a dash of its own, in the plot and the legend."""
    from course.publish.sphinxext.charts import SizeSeries, size_chart

    low = SizeSeries("2000: 948 ns + 2 ticks a byte", (), 4.0, 948.0, 0, "--")
    high = SizeSeries("2000: 948 ns + 3 ticks a byte", (), 6.0, 948.0, 0, "--")
    svg = size_chart([low, high], "size").svg
    assert svg.count('stroke-dasharray="6 4"') == 2 and svg.count('stroke-dasharray="2 3"') == 2, svg


def test_a_size_chart_says_which_points_are_minima_beside_the_medians() -> None:
    """A best-of-the-samples mark sits beside the article's best-of-N; its table row says it is a minimum."""
    from course.publish.sphinxext.charts import SizeSeries, size_chart

    medians = SizeSeries("page cache, host", ((0.0, 470.0), (4096.0, 900.0)), 0.025, 800.0, 1)
    best = SizeSeries("empty read, best, host", ((0.0, 421.0),), None, None, 1, "-", "^", "minimum, measured")
    chart = size_chart([medians, best], "size")
    assert ("page cache, host", "0", "470", "median, measured") in chart.rows
    assert ("empty read, best, host", "0", "421", "minimum, measured") in chart.rows
    assert chart.svg.count('<path d="M0 -3.4L3 2.2H-3Z"') == 1 + 1, "its own marker, and one in the legend"


GRID = re.compile(r'<path d="[^"]+" fill="none" stroke="currentColor" stroke-opacity="0.2"/>')
BAR = re.compile(r"<rect |<circle |<text [^>]*course-chart-halo")


def test_every_grid_is_drawn_before_the_bars_and_figures_of_its_panel() -> None:
    from course.publish.sphinxext.charts import Group, Share, SizeSeries, answer_chart, size_chart

    drawn = {
        "bars": bar_chart(
            [Bar("a", "s", 39_956, "39,956", unit="ns"), Bar("b", "s", 2, "2 ticks", unit="ticks")], "bars"
        ),
        "histogram": histogram_chart({"start": 0, "width": 1, "counts": [3, 40], "above": 1}, "ticks", "histogram"),
        "answer": answer_chart(
            [Group("g", "how", (Share("2000", 50.0, "50 %"),)), Group("h", "", (Share("2000", 60.0, "60 %"),))],
            "answer",
            "saved, %",
        ),
        "size": size_chart([SizeSeries("host", ((1.0, 500.0), (4096.0, 900.0)), 0.1, 500.0)], "size"),
    }
    for name, chart in drawn.items():
        panels = chart.svg.split('<g class="course-chart-panel"')[1:] or [chart.svg]
        for panel in panels:
            grid, first = list(GRID.finditer(panel)), BAR.search(panel)
            assert grid and first, f"{name}: a grid and something drawn on it"
            assert grid[-1].start() < first.start(), f"{name}: every grid line under the panel's bars and figures"
    assert 'class="course-chart-halo"> 39,956' in drawn["bars"].svg, "a bar's figure ringed: a grid line stops short"


@pytest.mark.parametrize("other", [60.0, -3.0], ids=["from 0 to 100 %", "diverging"])
def test_a_reason_in_words_has_no_grid_line_or_zero_line_through_it(other: float) -> None:
    """Lesson 6's "not timed: ..." on its row: the lines stop above its first line and resume below its last."""
    from course.publish.sphinxext.charts import Group, Share, answer_chart

    reason = "not timed: no module runs in this machine's kernel, and an emulated guest's clock times the emulator"
    shares = (Share("2000", other, f"{other} %", 0), Share("today", None, reason), Share("guest", 20.0, "20 %", 2))
    svg = answer_chart([Group("calling the method as well", "", shares)], "t", "saved, %").svg
    lines = [
        (float(x), float(y)) for x, y in re.findall(r'<text x="([\d.]+)" y="([\d.]+)"[^>]*font-style="italic"', svg)
    ]
    assert len(lines) >= 2, "a reason on two lines or more"
    left, top, bottom = lines[0][0], lines[0][1] - 8, lines[-1][1] + 8  # the text's box, 13 px type
    vertical = re.findall(r'<path d="M([\d.]+) ([\d.]+) L\1 ([\d.]+)" fill="none" stroke="currentColor"', svg)
    assert vertical, "a grid is drawn"
    for x, start, end in ((float(x), float(a), float(b)) for x, a, b in vertical):
        if x >= left:  # a line the text could cross (the zero line at the left of the text may run on)
            assert end <= top or start >= bottom, f"a line at x={x} crosses the reason ({start} to {end})"
    assert [x for x, _, _ in vertical if float(x) > left], "the grid runs beside the bars"


def _tick_label(svg: str, text: str, anchor: str) -> tuple[float, float]:
    """Where the tick label ``text`` of one axis is drawn: the y axis's end at their tick, the x axis's are centred."""
    label = rf'<text x="([\d.]+)" y="([\d.]+)" dy="0.35em" text-anchor="{anchor}">{re.escape(text)}</text>'
    found = re.search(label, svg)
    assert found, f"{text!r} labels a tick"
    return float(found[1]), float(found[2])


def test_a_linear_model_on_the_log_axis_is_a_curve_through_what_its_formula_says() -> None:
    from course.publish.sphinxext.charts import SizeSeries, size_chart

    today = SizeSeries("page cache, host", ((1.0, 800.0), (4096.0, 900.0)), 0.025, 800.0, 1)
    then = SizeSeries("2000: 948 ns + 4 ns a byte", (), 4.0, 948.0, 0, "--")
    svg = size_chart([today, then], "size").svg
    article = _lines(svg)[1]
    assert len(article) > 30, "sampled along x, not one straight segment between its ends"
    # The axes' own scales, read from their tick labels: x linear in bytes, y logarithmic in ns.
    x0, x1000 = _tick_label(svg, "0", "middle")[0], _tick_label(svg, "1,000", "middle")[0]
    y1000, y10000 = _tick_label(svg, "1,000", "end")[1], _tick_label(svg, "10,000", "end")[1]
    for size in (1000.0, 2000.0):
        at = x0 + (x1000 - x0) * size / 1000
        # The path's height where it crosses ``at``, between the two samples around it.
        (xa, ya), (xb, yb) = next((a, b) for a, b in itertools.pairwise(article) if a[0] <= at <= b[0])
        drawn = ya + (yb - ya) * (at - xa) / (xb - xa)
        ns = 10 ** (3 + (drawn - y1000) / (y10000 - y1000))
        assert ns == pytest.approx(948 + 4 * size, rel=0.01), f"at {size:,.0f} bytes the line reads {ns:,.0f} ns"


def test_a_size_chart_over_less_than_a_decade_still_labels_several_values() -> None:
    from course.publish.sphinxext.charts import SizeSeries, size_chart

    svg = size_chart([SizeSeries("host", ((0.0, 471.0), (4096.0, 930.0)), 0.1, 500.0)], "size").svg
    labels = re.findall(r'text-anchor="end">([\d,]+)</text>', svg)
    assert len(labels) >= 3, f"the ns axis is readable: {labels}"


def test_axis_values_are_round_and_cover_the_data() -> None:
    from course.publish.sphinxext.svg import log_ticks, ticks

    assert ticks(0, 948, 4) == [0, 250, 500, 750, 1000]
    assert ticks(0, 421, 4) == [0, 250, 500], "the tightest round end past the longest bar"
    assert ticks(24.5, 135, 5, inside=True) == [40, 60, 80, 100, 120], "only values on the axis"
    assert log_ticks(0.7, 20_000) == [1, 10, 100, 1000, 10_000]
    assert log_ticks(300, 5000, (1, 2, 5)) == [500, 1000, 2000, 5000]


@pytest.mark.parametrize(("low", "high"), [(0, 5e-324), (9e18, 9e18 + 1e-3), (1e-310, 2e-310)])
def test_axis_values_of_a_span_too_small_for_round_steps_are_its_ends(low: float, high: float) -> None:
    """A subnormal figure or a bin that moves nothing once crashed in ``math.log10(0)``."""
    from course.publish.sphinxext.svg import ticks

    values = ticks(low, high, 5, inside=True)
    assert len(values) == 2 and values[0] == low and values[-1] >= low
    assert ticks(low, high, 4)[0] == low


def test_a_charts_key_changes_when_the_parts_every_chart_is_drawn_with_change(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The axes and sizes live beside the charts (chart_parts): editing them draws every chart again."""
    from course.publish.sphinxext import chart_parts, chartcache

    bars = [Bar("read", "this machine", 1234.0, "1,234 ticks", unit="ticks")]
    chartcache._code_digest.cache_clear()
    key = chartcache.chart_key(bar_chart, (bars, "title"), {})
    edited = tmp_path / "chart_parts.py"
    edited.write_text(Path(chart_parts.__file__).read_text() + "\n# an axis, edited\n")
    monkeypatch.setattr(chart_parts, "__file__", str(edited))
    chartcache._code_digest.cache_clear()
    try:
        assert chartcache.chart_key(bar_chart, (bars, "title"), {}) != key
    finally:
        chartcache._code_digest.cache_clear()


def _coordinates(svg: str) -> list[str]:
    return re.findall(r'(?:x|y|x1|x2|y1|y2|width|height)="([^"]*)"', svg) + re.findall(r'd="([^"]*)"', svg)


@pytest.mark.parametrize("values", [[-4e-11, 1e-11, 2e-11], [-1e-300, 1e-300], [-1.23456e-10, 3e-11], [-5e-324, 1.0]])
def test_a_diverging_chart_of_tiny_shares_has_distinct_round_ticks(values: list[float]) -> None:
    """Ticks rounded to ten places once all became 0: a zero-wide scale, ZeroDivisionError, no site."""
    from course.publish.sphinxext.charts import Group, Share, answer_chart

    shares = tuple(Share(f"set {i}", v, f"{v!r} %", colour=i) for i, v in enumerate(values))
    svg = answer_chart([Group("saving", "", shares)], "tiny", "percent").svg
    ET.fromstring(svg)
    assert not any(re.search(r"nan|inf", value) for value in _coordinates(svg))
    labels = re.findall(r'text-anchor="middle">([^<]*) %<', svg)  # the ticks' labels, under the axis
    assert len(labels) == len(set(labels)), f"ticks that read alike: {labels}"


@pytest.mark.parametrize("value", [1e308, -1e308, float("nan"), float("inf"), -float("inf"), -5e6])
def test_an_absurd_share_is_left_out_of_the_chart_never_drawn_as_nan(value: float) -> None:
    from course.publish.sphinxext.charts import Group, Share, absurd_share, answer_chart

    assert absurd_share(value)
    shares = (Share("forged", value, f"{value!r} %", colour=0), Share("real", -2.0, "-2.00 %", colour=1))
    chart = answer_chart([Group("saving", "", shares)], "absurd", "percent")
    ET.fromstring(chart.svg)
    assert not any(re.search(r"nan|inf", coordinate) for coordinate in _coordinates(chart.svg))
    assert f"left out: {value!r} % is no saving" in _texts(chart.svg)
    assert "-2 %" in _texts(chart.svg), "the real share keeps its diverging scale"


def test_a_small_percentage_keeps_two_significant_digits() -> None:
    from course.publish.sphinxext.data import format_value

    assert format_value(-0.004, "%") == "-0.004 %" and format_value(-1e-12, "%") == "-1e-12 %"
    assert format_value(0.0, "%") == "0.00 %" and format_value(0.43, "%") == "0.43 %"
    assert format_value(-3.29, "%") == "-3.29 %" and format_value(61.5, "%") == "61.5 %"


def test_a_count_of_one_takes_the_singular() -> None:
    """io_uring's server makes one system call a request: "1 call", not "1 calls"."""
    from course.publish.sphinxext.data import format_value

    assert format_value(1.0, "calls") == "1 call" and format_value(2.0, "calls") == "2 calls"
    assert format_value(1.0, "bytes") == "1 byte" and format_value(1.0, "icount ticks") == "1 icount tick"
    assert format_value(1.0, "s") == "1.0 s" and format_value(1.0, "MHz") == "1 MHz"


def test_a_ratio_keeps_its_hundredths() -> None:
    """The lab's two hosts over one is 1.49 against a goal of 1.5: rounded whole, the site said "1 x (goal 2 x)"."""
    from course.publish.sphinxext.data import format_value

    assert format_value(1.49, "x") == "1.49 x" and format_value(1.5, "x") == "1.50 x"


def test_on_a_page_an_absurd_share_is_a_warning_and_a_row_not_a_bar(tmp_path: Path) -> None:
    """An imported set's cost of 5e6 % squeezed every real bar to nothing: now the build says what it left out."""
    from sphinx.testing.util import SphinxTestApp

    source = tmp_path / "src"
    shutil.copytree(Path(__file__).parent / "roots" / "test-course-answer", source)
    forged = source / "results" / "qemu-icount-debian-6.1" / "09-khttpd.json"
    data = json.loads(forged.read_text())
    data["measurements"]["09-khttpd/saving-percent.sendfile"]["value"] = -5e6
    forged.write_text(json.dumps(data))
    app = SphinxTestApp("html", srcdir=source, builddir=tmp_path / "out")
    try:
        app.build()
        warnings = app._warning.getvalue()
    finally:
        app.cleanup()
    assert "-5000000.0 %, no saving: left out of the chart" in warnings
    page = (tmp_path / "out" / "html" / "index.html").read_text(encoding="utf-8")
    assert 'width="nan"' not in page and "left out: -5000000.0 % is no saving" in page


def test_the_kernel_guests_come_in_the_kernels_order() -> None:
    """6.1, 6.12, 6.1-rt in every chart and table, as the answers name them, not by id (6.1, 6.1-rt, 6.12)."""
    from course.publish.sphinxext.data import _kernel_order
    from course.results.store import ResultSet

    def guest(kernel: str) -> ResultSet:
        return ResultSet(f"qemu-icount-debian-{kernel}", Path("."), {"guest": {"name": kernel}})

    sets = [guest("6.1-rt"), guest("6.12"), guest("6.1"), ResultSet("amd-epyc-vm", Path("."), {})]
    assert [s.id for s in sorted(sets, key=_kernel_order)] == [
        "amd-epyc-vm",
        "qemu-icount-debian-6.1",
        "qemu-icount-debian-6.12",
        "qemu-icount-debian-6.1-rt",
    ]
