"""What every chart is drawn with: its sizes and colours, its axes, its labels wrapped to fit."""

from __future__ import annotations

import hashlib
import math
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from course.publish.sphinxext.svg import Canvas, Chart, Scale, bounded, text_width

#: Okabe and Ito's colour-blind-safe palette (without its black and yellow, unreadable on one of the two themes).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9")


#: The chart's width in CSS px at its natural size. With FONT, the smallest text, a chart shown
#: down to MIN_WIDTH px (the CSS keeps it no narrower) still has labels of 10 px or more.
WIDTH = 460  # with FONT, MIN_WIDTH is 354 px: a chart fits a 390 px phone's text column (358 px)


FONT = 13


MIN_WIDTH = math.ceil(WIDTH * 10 / FONT)


LINE = 16  # px from one line of text to the next


ROW = 24  # px a row of bars takes at least


GAP = 6  # px between a label and what it labels


TICK = 4  # px a tick mark sticks out of its axis


ROW_NAME = 30  # characters at most on one line of a row's name: the bars keep most of the width


def figure_text(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:,.2g}"


def chart_salt(title: str, rows: list) -> str:
    """A prefix for the chart's ids, stable and distinct between charts: two charts of a page share none."""
    return "c" + hashlib.sha256(repr((title, rows)).encode()).hexdigest()[:12]


def empty_chart(title: str, header: tuple[str, ...], rows: list) -> Chart:
    return Chart(f'<p class="course-chart-empty">{escape(bounded(title))}: no figures to draw yet.</p>', header, rows)


def x_axis(
    canvas: Canvas,
    x: Scale,
    values: list[float],
    top: float,
    bottom: float,
    label: Callable[[float], str] | None,
    grid: bool = True,
    behind: int | None = None,
) -> None:
    """The bottom axis of a plot from ``top`` to ``bottom``: its line, ticks, their labels (if any) and the grid.

    The grid goes at ``behind`` in the canvas's parts (the start of the panel), under whatever the
    panel draws, even what was drawn before the axis.
    """
    canvas.line(x.start, bottom, x.end, bottom)
    under = canvas.mark() if behind is None else behind
    for value in values:
        at = x(value)
        if grid:
            canvas.line(at, top, at, bottom, opacity=0.2, behind=under)
            under += 1
        canvas.line(at, bottom, at, bottom + TICK)
        if label is not None:
            canvas.text(at, bottom + TICK + LINE / 2 + 1, label(value), anchor="middle")


def y_axis(
    canvas: Canvas,
    y: Scale,
    values: list[float],
    left: float,
    right: float,
    label: Callable[[float], str],
    behind: int | None = None,
) -> None:
    """The left axis of a plot: its line, ticks, their labels and a horizontal grid (at ``behind``, as for x)."""
    canvas.line(left, y.start, left, y.end)
    under = canvas.mark() if behind is None else behind
    for value in values:
        at = y(value)
        canvas.line(left, at, right, at, opacity=0.2, behind=under)
        under += 1
        canvas.line(left - TICK, at, left, at)
        canvas.text(left - TICK - 2, at, label(value), anchor="end")


def wrap_label(label: str) -> list[str]:
    """A row's name on lines short enough to leave the bars most of the width (names come from the sets).

    A name is wrapped at its spaces only, never inside a word, unless one word alone is longer
    than :data:`ROW_NAME` characters: that word is cut, and an ellipsis says so.
    """
    lines = textwrap.wrap(bounded(label), 22, break_long_words=False, break_on_hyphens=False) or [""]
    return [line if len(line) <= ROW_NAME else line[: ROW_NAME - 1] + "…" for line in lines]


def plot_width(left: float, ends: list[tuple[float, str]], high: float) -> float:
    """The plot's width from ``left``: the chart's, or less where a bar's figure would not fit after the bar."""
    width = WIDTH - left - 24  # room for half the last tick's label
    for value, text in ends:
        if value > 0:
            width = min(width, (WIDTH - 2 - left - text_width(text, FONT)) * high / value)
    return max(width, 60.0)


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


def row_names(inside: list[Bar]) -> tuple[list[list[str]], str]:
    """Each bar's row name (its lines), and what the panel's sets have in common (empty if one set or nothing).

    The name is the bar's measurement, and its set too where the panel holds several sets. Only
    what tells the sets apart goes into the row ("6.1-rt" of "QEMU -icount, Debian 6.1-rt guest
    (...)"); what they share is said once, in the panel's title.
    """
    series = list(dict.fromkeys(bar.series for bar in inside))
    if len(series) < 2:
        return [wrap_label(bar.group) for bar in inside], ""
    short, shared = distinct_parts(series)
    # A no-break space ties the dot to the word before it: wrapping never leaves it alone on a line.
    return [wrap_label(f"{bar.group}\u00a0· {short[bar.series]}") for bar in inside], shared


def distinct_parts(names: list[str]) -> tuple[dict[str, str], str]:
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


@dataclass(frozen=True)
class Share:
    """One result set's figure in an answer chart: a percentage, or why there is none."""

    series: str  # the set, short, on the bar's row ("2000", "6.1 guest")
    value: float | None
    label: str  # the figure as printed beside the bar, or the reason it is missing
    colour: int = 0  # index in PALETTE: the set's colour in every chart
    note: str = ""  # what the figure is and where it comes from: in the figures' table


#: The two sides of a diverging answer chart's zero line: a negative saving is a cost.
SAVED, COSTS_MORE = "saved \u2192", "\u2190 costs more"


def signed_percent(value: float) -> str:
    """A tick of a diverging axis: its sign says its side (+2 %, 0 %, -2 %)."""
    return f"{value:+g} %" if value else "0 %"


def side_of(value: float | None) -> str:
    """Which side of a diverging chart's zero a figure is on, in words, for its row of the figures' table."""
    if not value:
        return ""
    return " (" + (COSTS_MORE if value < 0 else SAVED).strip("\u2190\u2192 ") + ")"


def diverging_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round ticks from a round bound under ``low`` (< 0) through 0 to one over ``high``: -4, -2, 0, 2, 4."""
    span = (high - low) / most
    if not (sys.float_info.min <= span < math.inf):  # no round steps for it (1e-320, or -1e308 to 1e308)
        return sorted({low, 0.0, high})
    scale = 10 ** math.floor(math.log10(span))
    for step in (s * scale * m for m in (1, 10, 100) for s in (1, 2, 5)):
        first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
        if last - first <= most:
            # Rounded to the step's own precision: to 10 places, ticks of 2e-12 all became 0 (a zero span).
            places = max(10, 1 - math.floor(math.log10(step)))
            values = [round(i * step, places) for i in range(first, last + 1)]
            return values if values[0] < values[-1] else sorted({low, 0.0, high})
    return [low, 0.0, high]  # not reached: a step a hundred times the span holds it in two intervals


def diverging_scale(left: float, values: list[float], shares: list[Share], label: Callable[[float], str]) -> Scale:
    """The widest scale whose zero leaves every figure room at its bar's end, the tick labels and the sides' words.

    Each need is linear in the zero's place ``z`` and the px a unit ``s``: ``z >= a + b * s`` on the
    left, ``z <= c - d * s`` on the right; the largest ``s`` meets the tightest pair of them.
    """
    low, high = values[0], values[-1]
    space = text_width(" ", FONT)
    lefts = [(left, -low), (2 + GAP + text_width(COSTS_MORE, FONT), 0.0), (2 + text_width(label(low), FONT) / 2, -low)]
    rights = [(WIDTH - 2 - GAP - text_width(SAVED, FONT), 0.0), (WIDTH - 2 - text_width(label(high), FONT) / 2, high)]
    for share in shares:
        if share.value is not None and share.value < 0:
            lefts.append((left + GAP + space + text_width(share.label, FONT), -share.value))  # clear of the names
        elif share.value is not None:
            rights.append((WIDTH - 2 - text_width(" " + share.label, FONT), share.value))
    px = min((c - a) / (b + d) for a, b in lefts for c, d in rights if b + d > 0)
    if not high > low:  # no span to draw (a share too small to tell from zero): a plot of 60 px, of one unit
        high = low + 1.0
    px = max(px, 60 / (high - low))  # labels too wide for any scale (a hostile one): a plot of 60 px still
    zero = max(a + b * px for a, b in lefts)
    return Scale(low, high, zero + low * px, zero + high * px)
