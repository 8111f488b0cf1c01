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
    return textwrap.fill(label, 22, break_long_words=False, break_on_hyphens=False)  # a name is never split


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
    # A no-break space ties the dot to the word before it: wrapping never leaves it alone on a line.
    return [_wrap(f"{bar.group}\u00a0· {short[bar.series]}") for bar in inside], shared


def _distinct_parts(names: list[str]) -> tuple[dict[str, str], str]:
    """Each name without the words all of them begin and end with, and those words around the parts that differ."""
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
    # Not an ellipsis, which reads as a title cut short: the parts that differ, listed in the title once.
    parts = list(short.values())
    differing = ", ".join(parts[:-1]) + " or " + parts[-1]
    shared = " ".join([*words[0][:head], differing, *words[0][len(words[0]) - tail :]])
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


def rebin(histogram: dict, step: float, most: int = 30) -> dict:
    """The histogram's counts in bins that are whole multiples of the counter's ``step``.

    A counter that moves in steps of 24.5 ticks puts every sample on a multiple of the step: bins
    of 1 tick draw spikes with empty bins between them, and bins of another width alias against
    the step. Bins of one step, or of two, five, ten ... steps (at most ``most`` bins), do neither.
    """
    counts, start, width = histogram["counts"], histogram["start"], histogram["width"]
    if step <= width or not counts:
        return histogram
    span = len(counts) * width
    factor = next(f for f in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10**6) if span / (f * step) <= most)
    wide = factor * step
    # Edges on the step's grid, so a sample on a multiple of the step never sits on an edge.
    first = start - wide / 2
    binned = [0] * (int((start + span - first) // wide) + 1)
    for index, count in enumerate(counts):
        binned[int((start + index * width - first) // wide)] += count
    while binned and binned[-1] == 0:
        binned.pop()
    return {**histogram, "start": first, "width": wide, "counts": binned}


@cached  # drawn again only when what it shows, or this module, changed
def histogram_chart(
    histogram: dict,
    unit: str,
    title: str,
    subtracted: float = 0,
    maximum: float | None = None,
    step: float | None = None,
) -> Chart:
    """The distribution of one measurement: equal bins up to its p99, and the tail beyond as one bar.

    With the counter's ``step``, the bins are whole multiples of it (see :func:`rebin`). The count
    axis is logarithmic, so the rare slow samples of the tail stay visible beside the thousands of
    the peak; the samples above the 99th percentile are one last bar, labelled "N samples above
    p99, maximum M" in words, never where a figure of the axis would be.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    if step:
        histogram = rebin(histogram, step)
    counts: list[int] = histogram["counts"]
    start, step_width = histogram["start"], histogram["width"]
    above = histogram.get("above", 0)
    rows = [
        (f"{start + i * step_width:,.0f} to {start + (i + 1) * step_width:,.0f}", f"{count:,}")
        for i, count in enumerate(counts)
    ]
    end = start + len(counts) * step_width
    tail = f"{above:,} samples above p99" + (f", maximum {maximum:,.0f}" if maximum is not None else "")
    highest = f", maximum {maximum:,.0f}" if maximum is not None else ""
    rows.append((f"above p99 ({end:,.0f}){highest}", f"{above:,}"))
    with _style():
        figure = Figure(figsize=(WIDTH / 72, 320 / 72), layout="constrained")
        ax = figure.subplots()
        edges = [start + i * step_width for i in range(len(counts))]
        ax.bar(edges, counts, width=step_width, align="edge", color=PALETTE[0], edgecolor="none")
        tail_width = max(step_width, (end - start) / 12)  # the overflow bin, drawn apart from the equal bins
        gap = tail_width / 2
        if above:
            ax.bar(end + gap, above, width=tail_width, align="edge", color=PALETTE[3], edgecolor=INK, hatch="//")
        ax.set_yscale("log")
        ax.set_ylim(0.7, max([*counts, above, 1]) * 4)
        ax.yaxis.set_major_formatter(FuncFormatter(_number))
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(FuncFormatter(_number))
        ax.set_xlim(start - step_width, end + gap + tail_width * 1.6)
        ax.set_ylabel("samples (log scale)")
        note = f"; {subtracted:,.0f} subtracted (the stamp pair)" if subtracted else ""
        bins = f"\nbins of {step_width:,.1f}, whole steps of the counter" if step else ""
        ax.set_xlabel(f"{unit}{note}{bins}")
        ax.set_title(f"hatched: {tail}", loc="right", fontsize=FONT, fontweight="normal")
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


@dataclass(frozen=True)
class Share:
    """One result set's figure in an answer chart: a percentage, or why there is none."""

    series: str  # the set, short, on the bar's row ("2000", "6.1 guest")
    value: float | None
    label: str  # the figure as printed beside the bar, or the reason it is missing
    colour: int = 0  # index in PALETTE: the set's colour in every chart
    note: str = ""  # what the figure is and where it comes from: in the figures' table


@dataclass(frozen=True)
class Group:
    """One question's answer across eras: a saving, named the same way for 2000 and today."""

    title: str
    how: str = ""  # how each era measured it, in a few words, drawn under the title
    shares: tuple[Share, ...] = ()


@cached  # drawn again only when what it shows, or this module, changed
def answer_chart(groups: list[Group], title: str, axis: str, unit: str = "%") -> Chart:
    """Figures of one unit, 2000 beside today, on one scale for every group (0 to 100 % for percentages).

    Each group is a question's answer (a saving), its title above its bars and, under the title,
    how each era measured it; each bar is a result set, named on its row and coloured as the set
    is everywhere. A set with no figure gets its reason in italics on its row, never a bar.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator

    header = ("figure", "result set", "value", "what it is")
    rows = [(group.title, share.series, share.label, share.note) for group in groups for share in group.shares]
    if not any(share.value is not None for group in groups for share in group.shares):
        return Chart(f'<p class="course-chart-empty">{escape(title)}: no figures to draw yet.</p>', header, rows)
    # Rows from the top: a title line, the how lines, then the bars; y grows downwards.
    layout: list[tuple[str, float, object]] = []
    y = 0.0
    for group in groups:
        layout.append(("title", y, group.title))
        y += 1.0
        for line in textwrap.wrap(group.how, 46) if group.how else []:
            layout.append(("how", y - 0.2, line))
            y += 0.8
        for share in group.shares:
            layout.append(("bar", y, share))
            # A missing figure's reason takes the lines it needs, beside its set's name.
            y += 1.0 if share.value is not None else 0.8 * len(textwrap.wrap(share.label, 42)) + 0.2
        y += 0.5
    with _style():
        figure = Figure(figsize=(WIDTH / 72, (y * 21 + 40) / 72), layout="constrained")
        ax = figure.subplots()
        ticks, names = [], []
        for kind, row, item in layout:
            if kind == "title":
                ax.text(0, row, str(item), va="center", weight="bold")
            elif kind == "how":
                ax.text(0, row, str(item), va="center", size=FONT, alpha=0.8)
            else:
                share = item  # type: ignore[assignment]
                assert isinstance(share, Share)
                ticks.append(row)
                names.append(share.series)
                if share.value is None:
                    reason = "\n".join(textwrap.wrap(share.label, 42))
                    ax.text(0, row - 0.4, " " + reason, va="top", style="italic", size=FONT, linespacing=1.1)
                    continue
                ax.barh(row, share.value, height=0.72, color=PALETTE[share.colour % len(PALETTE)])
                ax.text(max(share.value, 0), row, " " + share.label, va="center")
        ax.set_yticks(ticks, names)
        ax.set_ylim(y - 0.4, -0.6)
        if unit == "%":
            ax.set_xlim(0, 100)
            ax.xaxis.set_major_locator(MultipleLocator(25))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _p: f"{value:.0f} %"))
        else:
            top = max(share.value for group in groups for share in group.shares if share.value is not None)
            ax.set_xlim(0, (top or 1) * 1.3)  # room for the longest bar's figure
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.xaxis.set_major_formatter(FuncFormatter(_number))
        ax.grid(axis="x")
        ax.set_xlabel(axis)
        ax.tick_params(axis="y", length=0)
        svg = _svg(figure, title, rows)
    return Chart(svg, header, rows)


@dataclass(frozen=True)
class SizeSeries:
    """One kind of read over its sizes: the medians measured, and the straight line fitted to them (in ns)."""

    label: str
    points: tuple[tuple[float, float], ...]  # (bytes, ns)
    slope: float | None = None  # ns a byte, of the fitted line
    intercept: float | None = None  # ns at 0 bytes, of the fitted line
    colour: int = 0  # the set's colour: two kinds of file of one set differ by their line and marker
    line: str = "-"  # "--" for a line that was not fitted here (the article's figures)
    marker: str = "o"


@cached  # drawn again only when what it shows, or this module, changed
def size_chart(series: list[SizeSeries], title: str) -> Chart:
    """Cost against read size: the measured points and each fitted line, nanoseconds on a log scale.

    The log scale keeps 2000's microseconds and today's hundreds of nanoseconds readable on one
    axis; each line is straight in bytes (linear x), as the fit is.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    header = ("read", "bytes", "nanoseconds", "what it is")
    rows: list[tuple[str, ...]] = []
    for one in series:
        rows += [(one.label, f"{size:,.0f}", f"{ns:,.0f}", "median, measured") for size, ns in one.points]
        if one.slope is not None and one.intercept is not None:
            rows.append((one.label, "per byte", f"{one.slope:.3f}", f"fitted line: {one.intercept:,.0f} ns + slope"))
    drawn = [one for one in series if one.points or one.slope is not None]
    if not drawn:
        return Chart(f'<p class="course-chart-empty">{escape(title)}: no figures to draw yet.</p>', header, rows)
    end = max((size for one in drawn for size, _ in one.points), default=4096.0) or 4096.0
    with _style():
        figure = Figure(figsize=(WIDTH / 72, 320 / 72), layout="constrained")
        ax = figure.subplots()
        for one in drawn:
            colour = PALETTE[one.colour % len(PALETTE)]
            if one.points:
                xs, ys = [p[0] for p in one.points], [p[1] for p in one.points]
                hollow = "none" if one.marker != "o" else "full"  # a second kind of file of the same set: hollow
                ax.plot(xs, ys, one.marker, color=colour, markersize=5, fillstyle=hollow)
            if one.slope is not None and one.intercept is not None:
                ends = [0.0, end]
                line = [one.intercept + one.slope * size for size in ends]
                ax.plot(ends, line, one.line, color=colour, linewidth=1.5, label=one.label)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(_number))
        ax.yaxis.set_minor_formatter(NullFormatter())  # matplotlib's own would be TeX, shown raw here
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(FuncFormatter(_number))
        ax.set_xlim(0, end * 1.02)
        ax.set_xlabel("bytes read")
        ax.set_ylabel("ns (log scale)")
        ax.grid(axis="y", which="both")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=FONT, frameon=False)
        svg = _svg(figure, title, rows)
    return Chart(svg, header, rows)
