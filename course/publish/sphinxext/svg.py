"""A small SVG writer for the charts: shapes and text placed in CSS px, every text escaped and bounded.

The charts are a few rectangles, lines and labels; writing them directly takes milliseconds where
matplotlib took about two seconds to import in each process that read a page and a fifth of a
second or more to lay out and save each chart. What it did for us is here in a few functions:
the width of a text (DejaVu Sans's advances, the font the charts ask for first; the fallbacks
are narrower, so a label measured here always fits), round tick values (:func:`ticks`,
:func:`log_ticks`) and a scale from data to px (:class:`Scale`).

Texts come from result sets, which are untrusted: every text is XML-escaped, stripped of control
characters and cut to at most :data:`MOST` characters, so a hostile label is neither markup nor a
page-wide line.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from html import escape

#: The charts' font, the one their widths are measured in first; the fallbacks are narrower.
FONT_FAMILY = "'DejaVu Sans', Verdana, Arial, sans-serif"

#: At most this many characters of a text are drawn (the figures' table under the chart keeps it whole).
MOST = 120

#: At most this many characters of a chart's title (its <title> and aria-label, what a screen reader
#: reads and a pointer shows): a caption's whole sentence fits, a hostile one is still bounded.
TITLE_MOST = 400

# DejaVu Sans's advance widths in hundredths of an em, for the printable ASCII characters 32 to 126
# (read from the font file with FreeType); any other character counts as one of the widest.
_ADVANCES = {
    "normal": "32 40 46 84 64 95 78 27 39 39 50 84 32 36 32 34 64 64 64 64 64 64 64 64 64 64 34 34 84 84 84 53 100 "
    "68 69 70 77 63 58 77 75 29 29 66 56 86 75 79 60 79 69 63 61 73 68 99 69 61 69 39 34 39 84 50 50 61 63 55 63 62 "
    "35 63 63 28 28 58 28 97 63 61 63 63 41 52 39 63 59 82 59 59 52 64 34 64 84",
    "bold": "35 46 52 84 70 100 87 31 46 46 52 84 38 42 38 37 70 70 70 70 70 70 70 70 70 70 40 40 84 84 84 58 100 77 "
    "76 73 83 68 68 82 84 37 37 77 64 100 84 85 73 85 77 72 68 81 77 110 77 72 73 46 37 46 84 50 50 67 72 59 72 68 "
    "44 72 71 34 34 67 34 104 71 69 72 72 49 60 48 71 65 92 65 65 58 71 37 71 84",
}
_WIDTHS = {
    weight: dict(zip(map(chr, range(32, 127)), map(int, line.split()), strict=True))
    for weight, line in _ADVANCES.items()
}
_NARROW = {"\u00a0": 32, "·": 32, "\u2013": 50}  # the few non-ASCII characters the charts draw themselves

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufffe\uffff]")


def bounded(text: str, most: int = MOST) -> str:
    """``text`` without control characters, cut to ``most`` characters (an ellipsis says it was cut)."""
    text = _CONTROL.sub("\ufffd", str(text)).replace("\t", " ").replace("\n", " ")
    return text if len(text) <= most else text[: most - 1] + "…"


def text_width(text: str, size: float, bold: bool = False) -> float:
    """The width of ``text`` in px at ``size`` px, as DejaVu Sans draws it (other fonts draw it narrower)."""
    widths = _WIDTHS["bold" if bold else "normal"]
    return sum(widths.get(char) or _NARROW.get(char, 100) for char in text) * size / 100


def wrap(text: str, width: float, size: float, bold: bool = False) -> list[str]:
    """``text`` in lines of at most ``width`` px, broken between words (a word wider than a line is cut)."""
    lines: list[str] = []
    for word in text.split(" "):
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and text_width(joined, size, bold) <= width:
            lines[-1] = joined
            continue
        while text_width(word, size, bold) > width and len(word) > 1:  # a long unbroken word: cut, marked
            cut = max(1, int(len(word) * width / text_width(word, size, bold)) - 1)
            lines.append(word[:cut] + "…")
            word = word[cut:]
        lines.append(word)
    return lines or [""]


def number(value: float) -> str:
    """Compact SVG coordinates: two decimals at most, no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))


def ticks(
    low: float, high: float, most: int, steps: tuple[float, ...] = (1, 2, 2.5, 5, 10), *, inside: bool = False
) -> list[float]:
    """Round values for an axis from ``low`` to ``high``: 0, 250, 500, 750, 1,000.

    By default they run from ``low`` or just under it to ``high`` or just past it, at most ``most``
    intervals, the last as close to ``high`` as a round step allows (a bar chart's axis ends on
    its last tick); ``inside``, the most of them between ``low`` and ``high``, at most ``most`` + 1.
    """
    if high <= low:
        high = low + 1
    interval = (high - low) / most
    if not (sys.float_info.min <= interval < math.inf):  # a span too small for round steps (5e-324, 9e18 + 1e-3)
        return [low, high]
    scale = 10 ** math.floor(math.log10(interval))
    best: list[float] = []
    for step in (s * scale * m for m in (1, 10) for s in steps):
        if inside:
            first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
        else:
            first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
        values = [round(i * step, 10) for i in range(first, last + 1)]
        if last - first <= most and (inside or not best or values[-1] < best[-1]):
            if inside:
                return values
            best = values
    return best or [low, high]


def log_ticks(low: float, high: float, subs: tuple[int, ...] = (1,)) -> list[float]:
    """Powers of ten (times each of ``subs``) between ``low`` and ``high``."""
    found = []
    for power in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        found += [sub * 10.0**power for sub in subs if low <= sub * 10.0**power <= high]
    return found


@dataclass(frozen=True)
class Scale:
    """Data values to px: ``low`` to ``high`` drawn from ``start`` to ``end`` (a logarithmic one with ``log``)."""

    low: float
    high: float
    start: float
    end: float
    log: bool = False

    def __call__(self, value: float) -> float:
        if self.log:
            low, high, value = math.log10(self.low), math.log10(self.high), math.log10(max(value, self.low))
        else:
            low, high = self.low, self.high
        return self.start + (value - low) / ((high - low) or 1) * (self.end - self.start)


@dataclass
class Canvas:
    """The shapes and texts of one chart, in CSS px from its top left corner, written out by :meth:`svg`."""

    width: float
    font: float
    parts: list[str] = field(default_factory=list)

    def text(
        self,
        x: float,
        y: float,
        content: str,
        *,
        anchor: str = "start",
        bold: bool = False,
        italic: bool = False,
        faint: bool = False,
        size: float | None = None,
        rotate: bool = False,
        halo: bool = False,
    ) -> None:
        """One line of text, centred vertically on ``y``; ``anchor`` is start, middle or end.

        With ``halo``, the page's CSS rings the text in the background's colour, so a grid line
        behind it stops short of it instead of striking it through (a bar's figure).
        """
        attributes = f'x="{number(x)}" y="{number(y)}" dy="0.35em"'
        if halo:
            attributes += ' class="course-chart-halo"'
        if anchor != "start":
            attributes += f' text-anchor="{anchor}"'
        if bold:
            attributes += ' font-weight="bold"'
        if italic:
            attributes += ' font-style="italic"'
        if faint:
            attributes += ' opacity="0.8"'
        if size is not None and size != self.font:
            attributes += f' font-size="{number(size)}"'
        if rotate:  # read from bottom to top, along a vertical axis
            attributes += f' transform="rotate(-90 {number(x)} {number(y)})"'
        self.parts.append(f"<text {attributes}>{escape(bounded(content))}</text>")

    def rect(self, x: float, y: float, width: float, height: float, fill: str, extra: str = "") -> None:
        self.parts.append(
            f'<rect x="{number(x)}" y="{number(y)}" width="{number(max(width, 0))}" height="{number(height)}" '
            f'fill="{fill}"{extra}/>'
        )

    def line(
        self,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        *,
        opacity: float = 1,
        dash: str = "",
        width: float = 1,
        behind: int | None = None,
    ) -> None:
        """A straight line in the text's colour: an axis, a tick, a grid or a reference line.

        ``behind``: written at that index of :attr:`parts` rather than last, so that what was drawn
        from there on (a panel's bars and figures) is painted over it (see :meth:`mark`).
        """
        self.path([(x1, y1), (x2, y2)], "currentColor", width=width, dash=dash, opacity=opacity)
        if behind is not None:
            self.parts.insert(behind, self.parts.pop())

    def mark(self) -> int:
        """Where the next part goes: a grid drawn later ``behind`` it is painted under everything after it."""
        return len(self.parts)

    def path(
        self,
        points: list[tuple[float, float]],
        stroke: str,
        *,
        width: float = 1,
        dash: str = "",
        opacity: float = 1,
        css_class: str = "",
    ) -> None:
        """A line through ``points``, unfilled."""
        d = " ".join(f"{'L' if i else 'M'}{number(x)} {number(y)}" for i, (x, y) in enumerate(points))
        extra = f' class="{css_class}"' if css_class else ""
        if width != 1:
            extra += f' stroke-width="{number(width)}"'
        if dash:
            extra += f' stroke-dasharray="{dash}"'
        if opacity != 1:
            extra += f' stroke-opacity="{number(opacity)}"'
        self.parts.append(f'<path d="{d}" fill="none" stroke="{stroke}"{extra}/>')

    def raw(self, markup: str) -> None:
        """Markup written by the chart itself (a group, a pattern), never from data."""
        self.parts.append(markup)

    def svg(self, height: float, title: str, min_width: float) -> str:
        """The chart as an inline <svg>: sized in CSS px, scaling down with the column, inked in the text's colour."""
        width, height = number(self.width), number(math.ceil(height))
        label = escape(bounded(title, TITLE_MOST))  # whole: the browser wraps a tooltip, a screen reader reads on
        return (
            f'<svg class="course-chart" role="img" aria-label="{label}" style="min-width: {number(min_width)}px" '
            f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'font-family="{FONT_FAMILY}" font-size="{number(self.font)}" fill="currentColor">'
            f"<title>{label}</title>" + "".join(self.parts) + "</svg>"
        )


@dataclass(frozen=True)
class Chart:
    """An SVG chart and its figures as a table: the text equivalent of the picture."""

    svg: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
