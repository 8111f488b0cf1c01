"""Charts drawn with matplotlib from stored figures at build time, inlined as SVG.

Every chart comes with the figures it draws as rows (``Chart.header``, ``Chart.rows``): the
page shows them as a table, the text equivalent a screen reader reads instead of the picture.

Text stays text (``svg.fonttype: none``), so the labels can be read, searched and measured in the
page, and the axes, ticks and labels are drawn in ``currentColor``: the chart follows the theme's
light or dark text colour. Labels come from result sets, which are untrusted: matplotlib escapes
what it writes, and mathtext is off so a ``$`` in a label is a dollar, not TeX.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import statistics
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING

from course.sphinxext.chartcache import cached

# matplotlib is imported where a chart is drawn: an unchanged site build draws none, and importing
# it would be a third of that build's time.
if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Okabe and Ito's colour-blind-safe palette (without its black and yellow, unreadable on one of the two themes).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9")

#: Drawn where the text colour goes, then replaced by ``currentColor`` (an odd grey nobody picks by chance).
INK = "#010203"

#: The chart's width in CSS px at its natural size. With FONT, the smallest text, a chart shown
#: down to MIN_WIDTH px (the CSS keeps it no narrower) still has labels of 10 px or more.
WIDTH = 460  # with FONT, MIN_WIDTH is 354 px: a chart fits a 390 px phone's text column (358 px)
FONT = 13
MIN_WIDTH = math.ceil(WIDTH * 10 / FONT)


@dataclass(frozen=True)
class Chart:
    """An SVG chart and its figures as a table: the text equivalent of the picture."""

    svg: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class Bar:
    """One bar: a value of one series (a result set) for one group (a measurement)."""

    group: str
    series: str
    value: float | None
    label: str  # the figure as printed beside the bar
    note: str = ""  # where it comes from: in the figures' table
    colour: int = 0  # index in PALETTE: the same set keeps its colour in every chart
    unit: str = ""  # bars of different units (real, emulated, icount ticks) never share a scale
    panel: str = ""  # the title of the panel (and scale) the bar is drawn in; it names the unit (default: the unit)


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib as mpl

    rc = {
        "svg.fonttype": "none",  # text as <text>, not glyph outlines
        "text.parse_math": False,  # a label's $ is a dollar sign
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans"],  # one name in each label's style, not matplotlib's list of ten
        "font.size": FONT,
        "axes.edgecolor": INK,
        "axes.labelcolor": INK,
        "axes.titlecolor": INK,
        "axes.titlesize": FONT,
        "axes.titleweight": "bold",
        "axes.titlelocation": "left",
        "axes.labelsize": FONT,
        "xtick.color": INK,
        "ytick.color": INK,
        "xtick.labelsize": FONT,
        "ytick.labelsize": FONT,
        "text.color": INK,
        "axes.facecolor": "none",
        "figure.facecolor": "none",
        "savefig.facecolor": "none",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "grid.color": INK,
        "grid.alpha": 0.2,
    }
    with mpl.rc_context(rc):
        yield


def _number(value: float, _position: object = None) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:,.2g}"


def _svg(figure: Figure, title: str, rows: list) -> str:
    """The figure as an inline <svg>: no XML prologue, sized in CSS px, its ink the page's text colour."""
    import matplotlib as mpl

    out = io.StringIO()
    salt = hashlib.sha256(repr((title, rows)).encode()).hexdigest()[:12]  # stable ids, distinct between charts
    with mpl.rc_context({"svg.hashsalt": salt}):
        figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    svg = out.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = svg.replace(INK.lower(), "currentColor").replace(INK, "currentColor")
    # matplotlib sizes in pt at 72 dpi: the same numbers in px give the SVG its natural size in the page.
    svg = re.sub(r'(width|height)="([\d.]+)pt"', r'\1="\2"', svg, count=2)
    svg = re.sub(r"<metadata>.*?</metadata>|<title>.*?</title>", "", svg, flags=re.DOTALL)  # matplotlib's own
    # Ids unique in the page: two charts on one page would otherwise both have "axes_1" and clip paths alike.
    svg = re.sub(r'id="([^"]+)"', rf'id="c{salt}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#c{salt}-\1)", svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#c{salt}-\1"', svg)
    opening = f'<svg class="course-chart" role="img" aria-label="{escape(title)}" style="min-width: {MIN_WIDTH}px"'
    svg = svg.replace("<svg", opening, 1)
    head_end = svg.index(">") + 1
    return svg[:head_end] + f"<title>{escape(title)}</title>" + svg[head_end:]


def _wrap(label: str) -> str:
    """A row's name on lines short enough to leave the bars most of the width (names come from the sets)."""
    return textwrap.fill(label, 22, break_long_words=True, break_on_hyphens=False)


def _row_names(inside: list[Bar]) -> tuple[list[str], str]:
    """Each bar's row name, and what the panel's sets have in common (empty if one set or nothing).

    The name is the bar's measurement, and its set too where the panel holds several sets. Only
    what tells the sets apart goes into the row ("6.1-rt" of "QEMU -icount, Debian 6.1-rt guest
    (...)"); what they share is said once, in the panel's title.
    """
    series = list(dict.fromkeys(bar.series for bar in inside))
    if len(series) < 2:
        return [_wrap(bar.group) for bar in inside], ""
    short, shared = _distinct_parts(series)
    return [_wrap(f"{bar.group} · {short[bar.series]}") for bar in inside], shared


def _distinct_parts(names: list[str]) -> tuple[dict[str, str], str]:
    """Each name without the words all of them begin and end with, and those words around an ellipsis."""
    words = [name.split(" ") for name in names]
    head = 0
    while all(len(w) > head + 1 for w in words) and len({w[head] for w in words}) == 1:
        head += 1
    tail = 0
    while all(len(w) > head + tail + 1 for w in words) and len({w[-1 - tail] for w in words}) == 1:
        tail += 1
    if not head and not tail:
        return {name: name for name in names}, ""
    short = {name: " ".join(w[head : len(w) - tail]) for name, w in zip(names, words, strict=True)}
    if len(set(short.values())) < len(names):  # never two sets under one name
        return {name: name for name in names}, ""
    shared = " ".join([*words[0][:head], "…", *words[0][len(words[0]) - tail :]])
    return short, shared


@cached  # drawn again only when what it shows, or this module, changed
def bar_chart(bars: list[Bar], title: str) -> Chart:
    """Horizontal bars grouped by measurement, one panel (and scale) per unit, each bar labelled.

    Bars share a scale only inside a panel, and each panel is titled with its unit: emulated
    ticks drawn on the axis of real ones (or of icount ticks) would compare what cannot be
    compared, and two bars of different units side by side read as a comparison whatever
    their scales. A figure in another unit therefore gets a row in a panel of its own.
    Each bar is named by its row (its measurement, and its set where a panel holds several),
    never by its colour alone.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    header = ("measurement", "result set", "figure", "panel (unit)", "what it is")
    if not bars:  # nothing measured yet (a fresh set, a new lab host): say so instead of drawing
        return Chart(f'<p class="course-chart-empty">{escape(title)}: no figures to draw yet.</p>', header, [])
    panels = list(dict.fromkeys(bar.panel or bar.unit for bar in bars))
    rows = [(bar.group, bar.series, bar.label, bar.panel or bar.unit, bar.note) for bar in bars]
    inside_each = [[bar for bar in bars if (bar.panel or bar.unit) == panel] for panel in panels]
    named = [_row_names(inside) for inside in inside_each]
    labels_each = [labels for labels, _ in named]
    # Each panel as tall as its rows, a row as tall as its longest (wrapped) name.
    heights = [len(names) * max(name.count("\n") + 1 for name in names) + 1.5 for names in labels_each]
    with _style():
        figure = Figure(figsize=(WIDTH / 72, (sum(heights) * 24 + len(panels) * 64) / 72), layout="constrained")
        axes = figure.subplots(len(panels), 1, squeeze=False, height_ratios=heights)
        for ax, panel, inside, (labels, shared) in zip(axes[:, 0], panels, inside_each, named, strict=True):
            top = max((bar.value for bar in inside if bar.value is not None), default=0.0) or 1.0
            widest = 0
            for row, bar in enumerate(inside):
                if bar.value is None:  # not run or failed: said, not drawn
                    ax.text(0, row, " " + bar.label, va="center", style="italic")
                    continue
                colour = PALETTE[bar.colour % len(PALETTE)]
                ax.barh(row, bar.value, height=0.7, color=colour)
                # The axis names the unit: beside the bar, the number alone (the table keeps the whole label).
                figure_text = bar.label.removesuffix(" " + bar.unit) if bar.unit else bar.label
                ax.text(bar.value, row, " " + figure_text, va="center")
                widest = max(widest, len(figure_text) + 1)
            ax.set_yticks(range(len(inside)), labels)
            ax.set_ylim(len(inside) - 0.5, -0.5)
            # Room after the longest bar for its figure: about 0.6 em a character, in a plot about 60 % of the width.
            room = min(0.6, widest * FONT * 0.6 / (WIDTH * 0.6))
            ax.set_xlim(0, top / (1 - room))
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.xaxis.set_major_formatter(FuncFormatter(_number))
            ax.grid(axis="x")
            ax.set_title(f"{panel}: {shared}" if shared else panel, wrap=True)
            ax.set_xlabel(panel.split(":")[0].split(" (")[0])  # the unit, without the machine
            ax.tick_params(axis="y", length=0)
        svg = _svg(figure, title, rows)
    return Chart(svg, header, rows)


@cached  # drawn again only when what it shows, or this module, changed
def histogram_chart(
    histogram: dict, unit: str, title: str, subtracted: float = 0, maximum: float | None = None
) -> Chart:
    """The distribution of one measurement: equal bins up to its p99, and the tail beyond as one bar.

    The count axis is logarithmic, so the rare slow samples of the tail stay visible beside the
    thousands of the peak; the samples above the 99th percentile are one last bar, labelled with
    how many they are (and up to where, when the maximum is known).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    counts: list[int] = histogram["counts"]
    start, step = histogram["start"], histogram["width"]
    above = histogram.get("above", 0)
    rows = [
        (f"{start + i * step:,.0f} to {start + (i + 1) * step:,.0f}", f"{count:,}") for i, count in enumerate(counts)
    ]
    end = start + len(counts) * step
    beyond = f"above {end:,.0f}" + (f" (up to {maximum:,.0f})" if maximum is not None else "")
    rows.append((beyond, f"{above:,}"))
    with _style():
        figure = Figure(figsize=(WIDTH / 72, 300 / 72), layout="constrained")
        ax = figure.subplots()
        edges = [start + i * step for i in range(len(counts))]
        ax.bar(edges, counts, width=step, align="edge", color=PALETTE[0])
        tail_width = max(step, (end - start) / 12)  # the overflow bin, drawn apart from the equal bins
        gap = tail_width / 2
        if above:
            ax.bar(
                end + gap,
                above,
                width=tail_width,
                align="edge",
                color=PALETTE[3],
                edgecolor=INK,
                hatch="//",
            )
        ax.text(end + gap + tail_width / 2, max(above, 1), f"{above:,}\n> p99", ha="center", va="bottom")
        ax.set_yscale("log")
        ax.set_ylim(0.7, max([*counts, above, 1]) * 4)
        ax.yaxis.set_major_formatter(FuncFormatter(_number))
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(FuncFormatter(_number))
        ax.set_xlim(start - step, end + gap + tail_width * 1.6)
        ax.set_ylabel("samples (log scale)")
        note = f"; {subtracted:,.0f} subtracted (the stamp pair)" if subtracted else ""
        ax.set_xlabel(f"{unit}{note}")
        ax.grid(axis="y")
        svg = _svg(figure, title, rows)
    return Chart(svg, (f"{unit}", "samples"), rows)


@dataclass(frozen=True)
class Line:
    """One probe over one run: its value at each moment, drawn as a percentage of its own median."""

    label: str
    seconds: list[float]
    values: list[float]
    colour: int = 0


@cached  # drawn again only when what it shows, or this module, changed
def timeline_chart(lines: list[Line], title: str) -> Chart:
    """Several probes of one run, one panel each, on a shared time axis and a shared scale.

    Each probe is drawn as a percentage of its own median, so probes of different sizes (an
    empty read, a loop of additions) become comparable: whether they rise and fall at the same
    moments is what the chart is for. Points beyond the pooled 1st and 99th percentiles are
    clipped to their panel rather than stretching the scale.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    lines = [line for line in lines if line.values]
    relative = [[value / (statistics.median(line.values) or 1) * 100 for value in line.values] for line in lines]
    pooled = sorted(percent for series in relative for percent in series) or [100.0]
    low = math.floor(min(90.0, pooled[len(pooled) // 100]) / 10) * 10
    high = math.ceil(max(110.0, pooled[len(pooled) * 99 // 100]) / 10) * 10
    end = max((second for line in lines for second in line.seconds), default=0.0) or 1.0
    rows = []
    for line, series in zip(lines, relative, strict=True):
        ordered = sorted(series)
        rows.append(
            (
                line.label,
                f"{len(series):,}",
                f"{_number(statistics.median(line.values))}",
                f"{ordered[0]:.0f} %",
                f"{ordered[-1]:.0f} %",
            )
        )
    header = ("probe", "points", "median", "lowest, % of median", "highest, % of median")
    with _style():
        figure = Figure(figsize=(WIDTH / 72, (len(lines) * 130 + 50) / 72), layout="constrained")
        axes = figure.subplots(max(1, len(lines)), 1, squeeze=False, sharex=True)
        for ax, line, series in zip(axes[:, 0], lines, relative, strict=True):
            clipped = [min(high, max(low, percent)) for percent in series]
            colour = PALETTE[line.colour % len(PALETTE)]
            ax.plot(line.seconds, clipped, color=colour, linewidth=1.2)
            ax.axhline(100, color=INK, linewidth=0.8, linestyle="--", alpha=0.6)  # the probe's median
            ax.set_ylim(low, high)
            ax.set_xlim(0, end)
            ax.set_yticks([low, 100, high], [f"{low:.0f} %", "100 %", f"{high:.0f} %"])
            ax.set_title(line.label)
        axes[-1, 0].set_xlabel("seconds into the run")
        axes[-1, 0].xaxis.set_major_locator(MaxNLocator(5, steps=[1, 2, 5, 10]))
        axes[-1, 0].xaxis.set_major_formatter(FuncFormatter(lambda s, _p: f"{s:g} s"))
        svg = _svg(figure, title, rows)
    return Chart(svg, header, rows)
