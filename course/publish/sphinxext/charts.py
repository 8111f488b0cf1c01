"""Charts drawn from stored figures at build time, written directly as inline SVG (:mod:`course.publish.sphinxext.svg`).

Every chart comes with the figures it draws as rows (``Chart.header``, ``Chart.rows``): the
page shows them as a table, the text equivalent a screen reader reads instead of the picture.

Text stays text (``<text>``), so the labels can be read, searched and measured in the page, and
the axes, ticks and labels are drawn in ``currentColor``: the chart follows the theme's light or
dark text colour. Labels come from result sets, which are untrusted: the writer escapes every
text, drops control characters and bounds its length; nothing is interpreted (a ``$`` is a dollar).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

from course.publish.sphinxext.chart_parts import (
    COSTS_MORE,
    FONT,
    GAP,
    LINE,
    MIN_WIDTH,
    PALETTE,
    ROW,
    SAVED,
    TICK,
    WIDTH,
    Bar,
    Share,
    chart_salt,
    diverging_scale,
    diverging_ticks,
    empty_chart,
    figure_text,
    plot_width,
    row_names,
    side_of,
    signed_percent,
    x_axis,
    y_axis,
)
from course.publish.sphinxext.chartcache import cached
from course.publish.sphinxext.svg import Canvas, Chart, Scale, bounded, log_ticks, text_width, ticks, wrap


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
    header = ("measurement", "result set", "figure", "panel (unit)", "what it is")
    if not bars:  # nothing measured yet (a fresh set, a new lab host): say so instead of drawing
        return empty_chart(title, header, [])
    panels = list(dict.fromkeys(bar.panel or bar.unit for bar in bars))
    rows = [(bar.group, bar.series, bar.label, bar.panel or bar.unit, bar.note) for bar in bars]
    inside_each = [[bar for bar in bars if (bar.panel or bar.unit) == panel] for panel in panels]
    named = [row_names(inside) for inside in inside_each]
    # The axis names the unit: beside the bar, the number alone (the table keeps the whole label).
    figures = [
        [" " + bar.label.removesuffix(" " + bar.unit) if bar.unit else " " + bar.label for bar in inside]
        for inside in inside_each
    ]
    left = max(text_width(line, FONT) for names, _ in named for name in names for line in name) + GAP + TICK
    tops = [max((b.value for b in inside if b.value is not None), default=0.0) or 1.0 for inside in inside_each]
    # Every panel's longest bar drawn as long (each panel has its own scale), the axes aligned, and
    # short enough for every figure to fit after its bar.
    width = WIDTH - left - 24
    longest = min(
        0.92 * width,
        *(
            plot_width(left, [(bar.value or 0.0, text) for bar, text in zip(inside, texts, strict=True)], top)
            for inside, texts, top in zip(inside_each, figures, tops, strict=True)
        ),
    )
    scales = [Scale(0, top * width / longest, left, left + width) for top in tops]
    canvas, salt, y = Canvas(WIDTH, FONT), chart_salt(title, rows), 2.0
    title_x = min(left, WIDTH - 200)  # over the bars; under a wide column of names, further left
    for count, (panel, inside, (names, shared), texts, x) in enumerate(
        zip(panels, inside_each, named, figures, scales, strict=True), 1
    ):
        canvas.raw(f'<g class="course-chart-panel" id="{salt}-panel-{count}">')
        start = canvas.mark()  # the panel's grid goes here, under its title, bars and figures
        for line in wrap(bounded(f"{panel}: {shared}" if shared else panel, 400), WIDTH - title_x - 8, FONT, bold=True):
            canvas.text(title_x, y + LINE / 2, line, bold=True)
            y += LINE
        y += 4
        # Each row as tall as the panel's longest (wrapped) name; a bar at most two lines thick.
        pitch = max(ROW, max(len(name) for name in names) * LINE + 8)
        thickness = min(0.7 * pitch, 28)
        bottom = y + len(inside) * pitch
        x_axis(canvas, x, ticks(0, x.high, 4, inside=True), y, bottom, figure_text, behind=start)
        canvas.line(left, y, left, bottom)
        for row, (bar, name, text) in enumerate(zip(inside, names, texts, strict=True)):
            middle = y + (row + 0.5) * pitch
            for n, line in enumerate(name):
                canvas.text(left - GAP, middle + (n - (len(name) - 1) / 2) * LINE, line, anchor="end")
            if bar.value is None:  # not run or failed: said, not drawn
                canvas.text(left, middle, " " + bar.label, italic=True, halo=True)
                continue
            end = x(max(bar.value, 0))
            canvas.rect(left, middle - thickness / 2, end - left, thickness, PALETTE[bar.colour % len(PALETTE)])
            canvas.text(end, middle, text, halo=True)
        unit = panel.split(":")[0].split(" (")[0]  # the unit, without the machine
        canvas.text(left + width / 2, bottom + TICK + LINE * 1.5 + 1, unit, anchor="middle")
        canvas.raw("</g>")
        y = bottom + TICK + 2 * LINE + 14
    return Chart(canvas.svg(y - 10, title, MIN_WIDTH), header, rows)


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
    note = f"; {subtracted:,.0f} subtracted (the stamp pair)" if subtracted else ""
    x_label = [f"{unit}{note}"] + ([f"bins of {step_width:,.1f}, whole steps of the counter"] if step else [])
    tail_width = max(step_width, (end - start) / 12)  # the overflow bin, drawn apart from the equal bins
    gap = tail_width / 2
    counted = Scale(0.7, max([*counts, above, 1]) * 4, 0, 0, log=True)
    count_ticks = log_ticks(counted.low, counted.high)
    left = LINE + GAP + max(text_width(figure_text(value), FONT) for value in count_ticks) + TICK + 2
    top, height = LINE + 8, 300 + LINE * len(x_label)
    bottom = height - TICK - LINE * (len(x_label) + 1) - 6
    x = Scale(start - step_width, end + gap + tail_width * 1.6, left, WIDTH - 10)
    y = Scale(counted.low, counted.high, bottom, top, log=True)
    canvas, salt = Canvas(WIDTH, FONT), chart_salt(title, rows)
    canvas.text(x.end, LINE / 2 + 2, f"hatched: {tail}", anchor="end")
    y_axis(canvas, y, count_ticks, left, x.end, figure_text, behind=0)
    canvas.text(LINE / 2, (top + bottom) / 2, "samples (log scale)", anchor="middle", rotate=True)
    for i, count in enumerate(counts):
        if count > 0:
            edge = start + i * step_width
            canvas.rect(x(edge), y(count), x(edge + step_width) - x(edge), bottom - y(count), PALETTE[0])
    if above:
        hatch = f"{salt}-hatch"
        canvas.raw(
            f'<defs><pattern id="{hatch}" width="6" height="6" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><path d="M0 0V6" stroke="currentColor"/></pattern></defs>'
        )
        left_edge, right_edge = x(end + gap), x(end + gap + tail_width)
        for fill in (PALETTE[3], f"url(#{hatch})"):
            canvas.rect(left_edge, y(above), right_edge - left_edge, bottom - y(above), fill, ' stroke="currentColor"')
    values = ticks(x.low, x.high, 5, inside=True)
    x_axis(canvas, x, values, top, bottom, figure_text, grid=False)
    for n, line in enumerate(x_label):
        canvas.text((x.start + x.end) / 2, bottom + TICK + LINE * (1.5 + n) + 1, line, anchor="middle")
    return Chart(canvas.svg(height, title, MIN_WIDTH), (f"{unit}", "samples"), rows)


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
                f"{figure_text(statistics.median(line.values))}",
                f"{ordered[0]:.0f} %",
                f"{ordered[-1]:.0f} %",
            )
        )
    header = ("probe", "points", "median", "lowest, % of median", "highest, % of median")
    percent = [float(low), 100.0, float(high)]
    left = max(text_width(f"{value:.0f} %", FONT) for value in percent) + TICK + GAP
    canvas, salt, panel = Canvas(WIDTH, FONT), chart_salt(title, rows), 130
    seconds = ticks(0, end, 5, steps=(1, 2, 5, 10), inside=True)
    for count, (line, series) in enumerate(zip(lines, relative, strict=True), 1):
        top = (count - 1) * panel + LINE + 8
        bottom = top + panel - LINE - 22
        x, y = Scale(0, end, left, WIDTH - 14), Scale(low, high, bottom, top)
        canvas.raw(f'<g class="course-chart-panel" id="{salt}-panel-{count}">')
        canvas.text(left, top - LINE / 2 - 2, line.label, bold=True)
        canvas.line(left, top, left, bottom)
        for value in percent:
            canvas.line(left - TICK, y(value), left, y(value))
            canvas.text(left - TICK - 2, y(value), f"{value:.0f} %", anchor="end")
        canvas.line(left, y(100), x.end, y(100), opacity=0.6, dash="4 3", width=0.8)  # the probe's median
        x_axis(canvas, x, seconds, top, bottom, (lambda s: f"{s:g} s") if count == len(lines) else None, grid=False)
        points = [(x(s), y(min(high, max(low, p)))) for s, p in zip(line.seconds, series, strict=False)]
        canvas.path(points, PALETTE[line.colour % len(PALETTE)], width=1.2, css_class="probe")
        canvas.raw("</g>")
    height = len(lines) * panel + 14
    canvas.text((left + WIDTH - 14) / 2, height - LINE / 2 - 2, "seconds into the run", anchor="middle")
    return Chart(canvas.svg(height, title, MIN_WIDTH), header, rows)


@dataclass(frozen=True)
class Group:
    """One question's answer across eras: a saving, named the same way for 2000 and today."""

    title: str
    how: str = ""  # how each era measured it, in a few words, drawn under the title
    shares: tuple[Share, ...] = ()


#: The largest share an answer chart draws, in per cent: a saving is at most 100 %, and a cost of a
#: million per cent (ten thousand times the time) is no measured figure but a damaged or forged one.
ABSURD_PERCENT = 1e6

#: Shares closer to zero than this are drawn at zero: no scale has room for 1e-320 % beside 0.
TINY_PERCENT = 1e-300


def absurd_share(value: float) -> bool:
    """Whether ``value`` (a share in per cent) is no figure an answer chart can show."""
    return not math.isfinite(value) or abs(value) > ABSURD_PERCENT


def _drawable(share: Share) -> Share:
    if share.value is None:
        return share
    if absurd_share(share.value):
        return dataclasses.replace(share, value=None, label=f"left out: {share.label} is no saving")
    if abs(share.value) < TINY_PERCENT:
        return dataclasses.replace(share, value=0.0)
    return share


@cached  # drawn again only when what it shows, or this module, changed
def answer_chart(groups: list[Group], title: str, axis: str, unit: str = "%") -> Chart:
    """Figures of one unit, 2000 beside today, on one scale for every group (0 to 100 % for savings in %).

    Each group is a question's answer (a saving), its title above its bars and, under the title,
    how each era measured it; each bar is a result set, named on its row and coloured as the set
    is everywhere. A set with no figure gets its reason in italics on its row, never a bar.

    A negative saving (the new way costs more) diverges: every bar grows from a zero line, a
    negative one to the left with its figure at its end, on an axis bounded by round values
    just past the data, its sides named under the ticks ("costs more", "saved").
    """
    header = ("figure", "result set", "value", "what it is")
    rows = [(group.title, share.series, share.label, share.note) for group in groups for share in group.shares]
    # A share no saving can be (nan, inf, a cost of a million per cent; the directive warns of it) is left
    # out, and one too small to tell from zero is drawn at zero: either would make the scale nan or zero wide.
    groups = [dataclasses.replace(group, shares=tuple(_drawable(share) for share in group.shares)) for group in groups]
    shares = [share for group in groups for share in group.shares]
    if not any(share.value is not None for share in shares):
        return empty_chart(title, header, rows)
    left = max(text_width(bounded(share.series, 40), FONT) for share in shares) + GAP + TICK
    measured = [share.value for share in shares if share.value is not None]
    diverging = unit == "%" and min(measured) < 0
    if diverging:
        values = diverging_ticks(min(measured), max(0.0, *measured))
        label = signed_percent
        x = diverging_scale(left, values, shares, label)
        # The table, read instead of the picture, says which side each figure is on.
        sides = [side_of(share.value) for group in groups for share in group.shares]
        rows = [(*row[:2], row[2] + side, *row[3:]) for row, side in zip(rows, sides, strict=True)]
    else:
        if unit == "%":
            values, label = [0.0, 25.0, 50.0, 75.0, 100.0], (lambda value: f"{value:.0f} %")
        else:
            values, label = ticks(0, max(measured) or 1, 4), figure_text
        ends = [(share.value or 0.0, " " + share.label) for share in shares]
        x = Scale(0, values[-1], left, left + plot_width(left, ends, values[-1]))
    zero = x(0)
    room = WIDTH - left - 16  # titles, how each era measured, reasons: from the axis nearly to the edge
    canvas, y = Canvas(WIDTH, FONT), 6.0
    spans: list[tuple[float, float]] = []
    reasons: list[tuple[float, float]] = []  # the rows of a reason in words: the grid stops above and resumes below
    start = canvas.mark()  # the grid goes here, drawn last but under every bar and figure
    for group in groups:
        for line in wrap(bounded(group.title, 400), room, FONT, bold=True):
            canvas.text(left, y + LINE / 2, line, bold=True)
            y += LINE + 2
        for line in wrap(bounded(group.how, 400), room, FONT) if group.how else []:
            canvas.text(left, y + LINE / 2, line, faint=True)
            y += LINE
        y += 3
        bars_top = y
        for share in group.shares:
            canvas.text(left - GAP, y + 10, bounded(share.series, 40), anchor="end")
            if share.value is None:  # the reason, on as many lines as it needs, beside its set's name
                row_top = y
                for line in wrap(bounded(share.label, 400), room - 4, FONT):
                    canvas.text(left + 4, y + 10, line, italic=True, halo=True)
                    y += LINE
                y += 5
                reasons.append((row_top, y))
                continue
            end = x(max(share.value, 0) if not diverging else share.value)
            colour = PALETTE[share.colour % len(PALETTE)]
            if end < zero:  # a cost: the bar grows left of zero, its figure at its end
                canvas.rect(end, y + 2, zero - end, 16, colour)
                canvas.text(end - text_width(" ", FONT), y + 10, share.label, anchor="end", halo=True)
            else:
                canvas.rect(zero, y + 2, end - zero, 16, colour)
                canvas.text(end, y + 10, " " + share.label, halo=True)
            y += 21
        spans.append((bars_top, y + 6))
        y += 12
    bottom = y - 6
    x_axis(canvas, x, values, 0, bottom, label, grid=False)
    # The grid and the axis run beside the bars only, never through a group's title, its note or a reason.
    spans[-1] = (spans[-1][0], bottom)
    for span in spans:
        for top, end in _apart_from(span, reasons):
            for value in values:
                canvas.line(x(value), top, x(value), end, opacity=0.2, behind=start)
                start += 1
        # The zero line left of every reason runs on; one in the middle (diverging) stops short of it too.
        for top, end in _apart_from(span, reasons) if diverging else [span]:
            canvas.line(zero, top, zero, end)
    below = bottom + TICK + LINE * 1.5 + 1
    if diverging:  # which way is which, on either side of zero, then what the axis counts
        canvas.text(zero - GAP, below, COSTS_MORE, anchor="end")
        canvas.text(zero + GAP, below, SAVED)
        below += LINE
    canvas.text((x.start + x.end) / 2, below, axis, anchor="middle")
    height = bottom + TICK + 2 * LINE + 6 + (LINE if diverging else 0)
    return Chart(canvas.svg(height, title, MIN_WIDTH), header, rows)


def _apart_from(span: tuple[float, float], gaps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The pieces of ``span`` (top, bottom) outside every one of ``gaps``, top to bottom, none empty."""
    pieces, top = [], span[0]
    for gap_top, gap_end in sorted(gaps):
        if gap_end <= top or gap_top >= span[1]:
            continue
        pieces.append((top, gap_top))
        top = gap_end
    pieces.append((top, span[1]))
    return [(start, end) for start, end in pieces if end > start]


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
    what: str = "median, measured"  # what its points are, in the figures' table


#: matplotlib's names of line styles, as SVG dashes; and its markers, as SVG shapes around (0, 0).
DASHES = {"-": "", "--": "6 4", ":": "1.5 3", "-.": "6 3 1.5 3"}
MARKERS = {
    "o": '<circle r="2.8" fill="{colour}"/>',
    "s": '<rect x="-2.6" y="-2.6" width="5.2" height="5.2" fill="none" stroke="{colour}" stroke-width="1.2"/>',
    "^": '<path d="M0 -3.4L3 2.2H-3Z" fill="none" stroke="{colour}" stroke-width="1.2"/>',
}


#: Dashes for a second (third...) line of the same style and colour (the article's 2 and 3 ticks a byte): told apart.
OTHER_DASHES = ("2 3", "10 3 2 3", "12 5")


def _dashes(drawn: list[SizeSeries]) -> list[str]:
    """Each series' dash: its style's, or another one where an earlier series has its style and colour."""
    seen: dict[tuple[str, int], int] = {}
    dashes = []
    for one in drawn:
        before = seen.get((one.line, one.colour), 0)
        if one.slope is not None:  # a marker alone (a best figure) draws no line
            seen[(one.line, one.colour)] = before + 1
        dashes.append(DASHES.get(one.line, "") if not before else OTHER_DASHES[(before - 1) % len(OTHER_DASHES)])
    return dashes


#: Points a fitted line is drawn through: the line is straight in bytes and ns, so on the log ns axis it
#: is a curve, and a segment between its two ends would put every byte count between them wrong.
SAMPLES = 64


def _marker(canvas: Canvas, x: float, y: float, marker: str, colour: str) -> None:
    shape = MARKERS.get(marker, MARKERS["o"]).format(colour=colour)
    canvas.raw(f'<g transform="translate({x:.2f} {y:.2f})">{shape}</g>')


@cached  # drawn again only when what it shows, or this module, changed
def size_chart(series: list[SizeSeries], title: str) -> Chart:
    """Cost against read size: the measured points and each fitted line, nanoseconds on a log scale.

    The log scale keeps 2000's microseconds and today's hundreds of nanoseconds readable on one
    axis; each line is the model ``intercept + slope * bytes`` (linear x), drawn through
    :data:`SAMPLES` points so that it reads right at every size, not only at its two ends (a
    straight segment on the log axis would not).
    """
    header = ("read", "bytes", "nanoseconds", "what it is")
    rows: list[tuple[str, ...]] = []
    for one in series:
        rows += [(one.label, f"{size:,.0f}", f"{ns:,.0f}", one.what) for size, ns in one.points]
        if one.slope is not None and one.intercept is not None:
            per_byte = f"{one.slope:.3f}".rstrip("0").rstrip(".")  # 4, not 4.000; 0.021 kept
            rows.append((one.label, "per byte", per_byte, f"fitted line: {one.intercept:,.0f} ns + slope"))
    drawn = [one for one in series if one.points or one.slope is not None]
    if not drawn:
        return empty_chart(title, header, rows)
    end = max((size for one in drawn for size, _ in one.points), default=4096.0) or 4096.0

    def fitted(one: SizeSeries) -> list[tuple[float, float]]:
        """The model ``intercept + slope * bytes`` sampled along x: on a log y axis it is a curve, not a segment."""
        if one.slope is None or one.intercept is None:
            return []
        return [(size, one.intercept + one.slope * size) for size in (end * i / SAMPLES for i in range(SAMPLES + 1))]

    shown = [ns for one in drawn for _, ns in [*one.points, *fitted(one)] if ns > 0] or [1.0]
    # As matplotlib's autoscale would: the data's span, and 5 % of it (in decades) above and below.
    lowest, highest = math.log10(min(shown)), math.log10(max(shown))
    margin = (highest - lowest) * 0.05 or 0.1
    low, high = 10 ** (lowest - margin), 10 ** (highest + margin)
    ns_ticks = log_ticks(low, high, (1, 2, 5))
    if len(ns_ticks) < 3:  # a span of less than a decade (400 to 1,000 ns): every whole step, or one label reads alone
        ns_ticks = log_ticks(low, high, tuple(range(1, 10)))
    left = LINE + GAP + max(text_width(figure_text(value), FONT) for value in ns_ticks) + TICK + 2
    legend = [wrap(bounded(one.label), WIDTH - left - 40, FONT) for one in drawn]
    top, bottom = 10.0, 250.0
    x, y = Scale(0, end * 1.02, left, WIDTH - 14), Scale(low, high, bottom, top, log=True)
    canvas = Canvas(WIDTH, FONT)
    y_axis(canvas, y, ns_ticks, left, x.end, figure_text, behind=0)
    canvas.text(LINE / 2, (top + bottom) / 2, "ns (log scale)", anchor="middle", rotate=True)
    x_axis(canvas, x, ticks(0, x.high, 5, inside=True), top, bottom, figure_text, grid=False)
    canvas.text((x.start + x.end) / 2, bottom + TICK + LINE * 1.5 + 1, "bytes read", anchor="middle")
    dashes = _dashes(drawn)
    for one, dash in zip(drawn, dashes, strict=True):
        colour = PALETTE[one.colour % len(PALETTE)]
        # Only the model's points inside the plot: a point off the log axis (zero, negative, out of range) is left out.
        line = [(x(a), y(b)) for a, b in fitted(one) if low <= b <= high]
        if len(line) > 1:
            canvas.path(line, colour, width=1.5, dash=dash)
        for size, ns in one.points:
            _marker(canvas, x(size), y(ns), one.marker, colour)
    # The legend under the axis: each series' line and marker, then its name.
    row = bottom + TICK + 2 * LINE + 14
    for one, names, dash in zip(drawn, legend, dashes, strict=True):
        colour = PALETTE[one.colour % len(PALETTE)]
        if one.slope is not None:
            canvas.path([(left, row), (left + 28, row)], colour, width=1.5, dash=dash)
        if one.points:
            _marker(canvas, left + 14, row, one.marker, colour)
        for name in names:
            canvas.text(left + 36, row, name)
            row += LINE
        row += 4
    return Chart(canvas.svg(row, title, MIN_WIDTH), header, rows)
