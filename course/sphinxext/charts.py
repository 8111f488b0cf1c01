"""Charts as inline SVG, drawn from stored figures at build time (no plotting library needed)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from html import escape

#: One colour per series, readable on light and dark backgrounds, the reference first.
PALETTE = ("#8c6d31", "#3b6fb6", "#c4572a", "#4c9a5f", "#7a5195", "#b8860b")


@dataclass(frozen=True)
class Bar:
    """One bar: a value of one series (a result set) for one group (a measurement)."""

    group: str
    series: str
    value: float | None
    label: str  # the figure as printed beside the bar
    note: str = ""  # hover text
    colour: int = 0  # index in PALETTE: the same set keeps its colour in every chart
    unit: str = ""  # bars of different units (real, emulated, icount ticks) never share a scale
    panel: str = ""  # the title of the panel (and scale) the bar is drawn in; it names the unit (default: the unit)


def bar_chart(bars: list[Bar], title: str) -> str:
    """Horizontal bars grouped by measurement, one colour per result set, one panel per scale.

    Bars share a scale only inside a panel, and each panel is titled with its unit: emulated
    ticks drawn on the axis of real ones (or of icount ticks) would compare what cannot be
    compared, and two bars of different units side by side read as a comparison whatever
    their scales. A figure in another unit therefore gets a row in a panel of its own.
    """
    bar_height, gap, left, width, heading = 14, 10, 190, 360, 22
    panels = list(dict.fromkeys(bar.panel or bar.unit for bar in bars))
    series = list(dict.fromkeys(bar.series for bar in bars))
    body: list[str] = []
    y = 6
    for panel in panels:
        inside = [bar for bar in bars if (bar.panel or bar.unit) == panel]
        top = max((bar.value for bar in inside if bar.value is not None), default=0.0) or 1.0
        body.append(
            f'<g class="course-chart-panel"><text x="0" y="{y + 14}" font-weight="bold" '
            f'class="course-chart-panel-title">{escape(panel)}</text>'
        )
        y += heading
        for group in dict.fromkeys(bar.group for bar in inside):
            body.append(f'<text x="0" y="{y + bar_height}" class="course-chart-group">{escape(group)}</text>')
            for name in series:
                bar = next((b for b in inside if b.group == group and b.series == name), None)
                if bar is None:  # a set without this measurement (or in another unit) takes no row here
                    continue
                colour = PALETTE[bar.colour % len(PALETTE)]
                if bar.value is not None:
                    length = max(1.0, bar.value / top * width)
                    body.append(
                        f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{bar_height - 2}" fill="{colour}">'
                        f"<title>{escape(bar.note or bar.label)}</title></rect>"
                        f'<text x="{left + length + 4:.1f}" y="{y + bar_height - 3}">{escape(bar.label)}</text>'
                    )
                else:
                    body.append(
                        f'<text x="{left}" y="{y + bar_height - 3}" class="course-chart-missing">'
                        f"{escape(bar.label)}</text>"
                    )
                y += bar_height
            y += gap
        body.append("</g>")
    for name in series:
        colour = PALETTE[next(b.colour for b in bars if b.series == name) % len(PALETTE)]
        body.append(
            f'<rect x="0" y="{y + 4}" width="10" height="10" fill="{colour}"/>'
            f'<text x="16" y="{y + 13}">{escape(name)}</text>'
        )
        y += 20
    return _open(left + width + 170, y + 10, title) + "".join(body) + "</svg>"


def histogram_chart(histogram: dict, unit: str, title: str, subtracted: float = 0) -> str:
    """The distribution of one measurement: equal bins up to its p99, the rest counted apart."""
    counts: list[int] = histogram["counts"]
    start, step = histogram["start"], histogram["width"]
    left, bottom, width, plot_height = 50, 180, 480, 150
    peak = max(counts, default=1) or 1
    column = width / max(1, len(counts))
    out = [_open(left + width + 20, bottom + 40, title)]
    for index, count in enumerate(counts):
        high = count / peak * plot_height
        low_edge = start + index * step
        out.append(
            f'<rect x="{left + index * column:.1f}" y="{bottom - high:.1f}" width="{max(1.0, column - 1):.1f}" '
            f'height="{high:.1f}" fill="{PALETTE[1]}"><title>{low_edge:,.0f}-{low_edge + step - 1:,.0f} '
            f"{escape(unit)}: {count:,} samples</title></rect>"
        )
    out.append(f'<line x1="{left}" y1="{bottom}" x2="{left + width}" y2="{bottom}" stroke="currentColor"/>')
    for fraction in (0, 0.5, 1):
        value = start + fraction * len(counts) * step
        out.append(
            f'<text x="{left + fraction * width:.1f}" y="{bottom + 16}" text-anchor="middle">{value:,.0f}</text>'
        )
    note = f" ({subtracted:,.0f} subtracted: the stamp pair)" if subtracted else ""
    out.append(
        f'<text x="{left + width / 2}" y="{bottom + 34}" text-anchor="middle">{escape(unit)}{note}; '
        f"{histogram.get('above', 0):,} samples above the 99th percentile not drawn</text>"
    )
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True)
class Line:
    """One probe over one run: its value at each moment, drawn as a percentage of its own median."""

    label: str
    seconds: list[float]
    values: list[float]
    colour: int = 0


def timeline_chart(lines: list[Line], title: str) -> str:
    """Several probes of one run, one panel each, on a shared time axis and a shared scale.

    Each probe is drawn as a percentage of its own median, so probes of different sizes (an
    empty read, a loop of additions) become comparable: whether they rise and fall at the same
    moments is what the chart is for. Points beyond the pooled 1st and 99th percentiles are
    clipped to their panel rather than stretching the scale.
    """
    lines = [line for line in lines if line.values]
    left, width, panel, gap = 50, 480, 70, 26
    relative = [[value / (statistics.median(line.values) or 1) * 100 for value in line.values] for line in lines]
    pooled = sorted(percent for series in relative for percent in series) or [100.0]
    low = math.floor(min(90.0, pooled[len(pooled) // 100]) / 10) * 10
    high = math.ceil(max(110.0, pooled[len(pooled) * 99 // 100]) / 10) * 10
    end = max((second for line in lines for second in line.seconds), default=0.0) or 1.0
    out = [_open(left + width + 20, len(lines) * (panel + gap) + 24, title)]
    for index, (line, series) in enumerate(zip(lines, relative, strict=True)):
        top = gap - 6 + index * (panel + gap)

        def y(percent: float, top: float = top) -> float:
            return top + (high - min(high, max(low, percent))) / (high - low) * panel

        colour = PALETTE[line.colour % len(PALETTE)]
        out.append(f'<text x="{left}" y="{top - 6}" fill="{colour}">{escape(line.label)}</text>')
        for percent in (low, 100, high):
            dashed = ' stroke-dasharray="4 3"' if percent == 100 else ""  # the probe's median
            out.append(
                f'<line x1="{left}" y1="{y(percent):.1f}" x2="{left + width}" y2="{y(percent):.1f}" '
                f'stroke="currentColor" stroke-opacity="0.3"{dashed}/>'
                f'<text x="{left - 4}" y="{y(percent) + 4:.1f}" text-anchor="end">{percent:.0f} %</text>'
            )
        points = " ".join(f"{left + s / end * width:.1f},{y(p):.1f}" for s, p in zip(line.seconds, series, strict=True))
        out.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.2">'
            f"<title>{escape(line.label)}</title></polyline>"
        )
    bottom = len(lines) * (panel + gap) + 4
    for fraction in (0, 0.5, 1):
        out.append(
            f'<text x="{left + fraction * width:.1f}" y="{bottom + 12}" text-anchor="middle">'
            f"{fraction * end:.1f} s</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _open(width: float, height: float, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="course-chart" role="img" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
        f'font-size="12" font-family="sans-serif" fill="currentColor">'
        f"<title>{escape(title)}</title>"
    )
