"""The role that places one figure, and what the table and chart directives share to show figures."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from html import escape

from docutils import nodes
from sphinx.util.docutils import SphinxRole

from course.publish.sphinxext import charts
from course.publish.sphinxext.base import (
    CourseMixin,
    course_value,
    table_row,
    value_text,
)
from course.publish.sphinxext.data import FIELDS, Lookup, describe, format_value, to_ns
from course.results.store import ResultSet

#: The unit of a real time-stamp counter (user space, KVM, the host's kernel): time, convertible to ns.
REAL_TICKS = "ticks"

#: Lesson 3's measurement of how far the counter jumps when it moves: histogram bins are multiples of it.
STEP = "03-timing/tsc-step"

#: How a chart's panel names each unit.
UNIT_TITLES = {
    "ns": "nanoseconds",
    "ticks": "ticks of the time-stamp counter",
    "emulated ticks": "emulated ticks (host time spent emulating)",
    "icount ticks": "icount ticks (guest instructions, the same on every host)",
}


def real_ns(measurement: dict, field: str = "min") -> float | None:
    """``field`` of ``measurement`` in nanoseconds, or None when it is not a figure of real time.

    The unit decides, not whether a rate was recorded: emulated ticks count the emulator's time
    and icount ticks count instructions, so neither has nanoseconds to compare with anything.
    """
    unit = measurement.get("unit", REAL_TICKS)
    value = measurement.get(field)
    if value is None or measurement.get("status", "ok") != "ok":
        return None
    if unit == "ns":
        return value
    if unit != REAL_TICKS:
        return None
    return measurement.get(f"{field}_ns") or to_ns(value, measurement.get("tsc_hz"))


def ratio_to_2000(now: dict | None, then: dict | None) -> float | None:
    """How many times as long the 2000 figure took as ``now``: minima in ns, both real time, or None."""
    now_ns = real_ns(now) if now else None
    then_ns = real_ns(then) if then else None
    return then_ns / now_ns if now_ns and then_ns else None


def basis_unit(result_set: ResultSet, measurement: dict) -> str:
    """The unit a figure counts in: its own, or for a percentage the unit of the figures it was computed from.

    A share of emulated time, a share of instructions and a share of real time are all "%", and
    still three different things: a table of one unit keeps them apart.
    """
    unit = measurement.get("unit", REAL_TICKS)
    for _ in range(4):  # a percentage of a percentage at most, and never round a loop an imported set may hold
        sources = measurement.get("from") or []
        source = result_set.measurement(sources[0]) if unit == "%" and sources and isinstance(sources[0], str) else None
        if not isinstance(source, dict):
            break
        measurement, unit = source, source.get("unit", REAL_TICKS)
    return str(unit)


def reference_set(sets: list[ResultSet]) -> ResultSet | None:
    return next((s for s in sets if s.kind == "reference"), None)


#: What the class's column is, below a table that has one.
CLASS_NOTE = (
    "The class: the {sets} other machines' figures in one column, each machine's own minimum (or the field shown) "
    "taken as one figure, then the smallest, the median and the largest of them. Figures of real time are "
    "compared in nanoseconds (a tick is each machine's own); emulated and icount figures (and percentages "
    "computed from them) are never pooled. "
    "The machines page lists every set, each with its own page and every figure."
)


#: Below a table whose class has no figure to pool (emulated or icount ticks only).
CLASS_ON_PAGES = (
    "The {sets} other machines' figures of this table were emulated or counted in instructions (QEMU TCG or "
    "icount), which is not time, and are never pooled: each is on its machine's page, which the machines page lists."
)


def class_figure(measurement: dict | None, field: str) -> tuple[float, str] | None:
    """One machine's figure as the class pools it: real time in ns, another unit as it is, or None.

    Ticks never: a real tick is a slice of one machine's time (pooled once in ns), and emulated or icount
    ticks are not time at all (the guest kernels have their own columns).
    """
    if not measurement or measurement.get("status", "ok") != "ok":
        return None
    # Only where time is real: the host, its kernel, a KVM guest. Emulated or counted in a guest (or misspelt),
    # a percentage of such figures too: no time to pool.
    runner = measurement.get("runner", "host")
    if runner not in ("host", "host-kernel") and not (runner == "vm" and measurement.get("acceleration") == "kvm"):
        return None
    unit = measurement.get("unit", REAL_TICKS)
    if unit in (REAL_TICKS, "ns"):
        ns = real_ns(measurement, field)
        return (ns, "ns") if ns is not None else None
    value = measurement.get(field)
    if "ticks" in unit or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value), unit


@dataclass(frozen=True)
class ClassSpread:
    """The class's figures for one measurement: smallest, median, largest, in one unit, over ``count`` sets.

    ``other_unit`` sets had the figure in another unit than the row's: left out, and said.
    """

    low: float
    median: float
    high: float
    unit: str
    count: int
    other_unit: int = 0


def class_spread(
    measurements: list[dict | None], field: str, anchors: list[dict | None] | None = None
) -> ClassSpread | None:
    """The class's spread of ``field`` in the unit the row is meant to have, the others left out and counted.

    The row's unit is that of its first anchor with a figure (this machine's, then the reference's: what the
    course itself measured), else the unit most of the class has; never what one set says (a single set
    in ns would otherwise drop every other set's figure).
    """
    figures = [found for m in measurements if (found := class_figure(m, field))]
    if not figures:
        return None
    own = [found[1] for m in anchors or [] if (found := class_figure(m, field))]
    unit = own[0] if own else Counter(unit for _, unit in figures).most_common(1)[0][0]
    values = sorted(value for value, of in figures if of == unit)
    if not values:
        return None
    return ClassSpread(values[0], statistics.median(values), values[-1], unit, len(values), len(figures) - len(values))


def class_cell(spread: ClassSpread | None, sets: int) -> nodes.Node:
    """The class's cell (:func:`class_spread`): its median first, then its smallest and largest and how many sets
    have the figure."""
    if spread is None:
        return nodes.Text("—")
    median = nodes.inline(classes=["course-class-median"], text=f"median {format_value(spread.median, spread.unit)}")
    rest = nodes.inline(classes=["course-spread"])
    other = f" ({spread.other_unit} in another unit left out)" if spread.other_unit else ""
    rest += nodes.Text(
        f"min {format_value(spread.low, spread.unit)} · max {format_value(spread.high, spread.unit)} · "
        f"{spread.count} of {sets} sets{other}"
    )
    return nodes.inline("", "", median, nodes.raw("", "<br/>", format="html"), rest)


def own_figures(
    found: list[tuple[str, Lookup | None]], current_id: str, sets: dict[str, ResultSet]
) -> list[dict | None]:
    """This machine's measurement of a row, then the reference's: what sets the unit the class pools in."""
    mine = [lookup.measurement for i, lookup in found if lookup and i == current_id]
    reference = [lookup.measurement for i, lookup in found if lookup and i in sets and sets[i].kind == "reference"]
    return [*mine, *reference]


class MeasureRole(CourseMixin, SphinxRole):
    """``{measure}`[set@]id[:field][-ns]```: one stored figure, inline.

    ``:vs-2000`` gives how many times as long the article's figure for the same measurement took
    (its minimum in ns over this set's), computed here so that no ratio is ever typed.
    """

    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        target = self.text.strip()
        set_id, _, rest = target.rpartition("@")
        measurement_id, _, field = rest.partition(":")
        field = field or "min"
        if field == "vs-2000":
            return self._ratio(target, measurement_id, set_id)
        in_ns = field == "ns" or field.endswith("-ns")
        field = "min" if field == "ns" else field.removesuffix("-ns")
        if field not in FIELDS and field not in ("samples", "overhead"):
            self.warn(f"unknown field {field!r} in {target!r}; use one of {', '.join(FIELDS)}", "syntax")
            return [nodes.problematic(self.rawtext, self.rawtext)], []
        lookup = self.check(measurement_id, set_id)
        if lookup is None or lookup.measurement is None:
            return [nodes.problematic(self.rawtext, f"[missing: {target}]")], []
        measurement = lookup.measurement
        unit = measurement.get("unit", REAL_TICKS)
        if in_ns and measurement.get("status") == "ok" and unit not in (REAL_TICKS, "ns", f"{REAL_TICKS}/byte"):
            self.warn(f"{target!r} is in {unit}, which have no nanoseconds; show it in its own unit", "units")
            return [nodes.problematic(self.rawtext, f"[no ns: {target}]")], []
        if field == "samples":
            text = f"{measurement.get('samples', 0):,}"
        elif field == "overhead":
            text = format_value((measurement.get("overhead") or {}).get("ticks", 0), unit)
        else:
            text = value_text(measurement, field, in_ns)
        node = course_value(
            self.rawtext,
            text,
            title=describe(lookup, field, in_ns),
            measurement=measurement_id,
            set_id=lookup.result_set.id,
            field=field + ("-ns" if in_ns else ""),
        )
        return [node], []

    def _ratio(self, target: str, measurement_id: str, set_id: str) -> tuple[list[nodes.Node], list]:
        lookup = self.check(measurement_id, set_id)
        if lookup is None or lookup.measurement is None:
            return [nodes.problematic(self.rawtext, f"[missing: {target}]")], []
        reference = reference_set(self.data.shown()) or reference_set(list(self.data.sets.values()))
        then = reference.measurement(measurement_id) if reference else None
        if reference is not None:
            self.use(self.data.find(measurement_id, reference.id))
        ratio = ratio_to_2000(lookup.measurement, then)
        if ratio is None:
            unit = lookup.measurement.get("unit", REAL_TICKS)
            if then is None:
                why = "the 2000 reference has no figure for it"
            elif unit not in (REAL_TICKS, "ns"):
                why = f"its figure is in {unit}, which compare with nothing of 2000"
            else:
                why = "one of the two figures has no nanoseconds"
            self.warn(f"cannot compare {measurement_id!r} with 2000: {why}", "units")
            return [nodes.problematic(self.rawtext, f"[no ratio: {target}]")], []
        text = f"{ratio:.1f} times"
        assert then is not None and reference is not None  # a ratio needs both figures
        title = (
            f"{format_value(real_ns(then) or 0, 'ns')} in 2000 ({reference.label}) over "
            f"{format_value(real_ns(lookup.measurement) or 0, 'ns')} on {lookup.result_set.label}: "
            "minima, in nanoseconds"
        )
        node = course_value(
            self.rawtext, text, title=title, measurement=measurement_id, set_id=lookup.result_set.id, field="vs-2000"
        )
        return [node], []


def legend(entries: list[tuple[int, str]]) -> nodes.Node:
    """The sets a chart draws, each with its colour: the same colour for a set in every chart of the site."""
    items = "".join(
        f'<li><span class="course-swatch" style="background: {charts.PALETTE[colour % len(charts.PALETTE)]}"></span>'
        f"{escape(name)}</li>"
        for colour, name in dict.fromkeys(entries)
    )
    return nodes.raw("", f'<ul class="course-legend">{items}</ul>', format="html")


def chart_figure(
    chart: charts.Chart,
    caption: str,
    entries: list[tuple[int, str]] | None = None,
    classes: tuple[str, ...] = ("course-chart",),
) -> nodes.container:
    """A drawn chart as the page shows it: the picture, its legend (when ``entries`` are given), its caption,
    and its figures as a folded table."""
    figure = nodes.container(classes=list(classes))
    figure += nodes.raw("", chart.svg, format="html")
    if entries is not None:
        figure += legend(entries)
    if caption:
        figure += nodes.paragraph(text=caption, classes=["course-chart-caption"])
    figure += figures_table(chart)
    return figure


def figures_table(chart: charts.Chart) -> nodes.Node:
    """The chart's figures as a table, folded under the chart: what a screen reader reads instead of the picture.

    Docutils escapes every cell, so the labels of a result set reach the page as text.
    """
    table = nodes.table(classes=["course-table", "course-chart-table"])
    group = nodes.tgroup(cols=len(chart.header))
    table += group
    for _ in chart.header:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    head += table_row(list(chart.header))
    group += head
    body = nodes.tbody()
    for row in chart.rows:
        body += table_row(list(row))
    group += body
    fold = nodes.container(classes=["course-chart-data"])
    fold += nodes.raw("", "<details><summary>The chart's figures, as a table</summary>", format="html")
    fold += table
    fold += nodes.raw("", "</details>", format="html")
    return fold


def panel_title(unit: str, series: str) -> str:
    """The title of the chart panel of ``unit``: it names the unit, and the machine when the unit is its own.

    A real or an emulated tick is a slice of one machine's time: ticks of two machines share no
    scale (2000's counted the cycles of a 500 MHz CPU). Nanoseconds and icount ticks (instructions,
    the same on every host) are one unit wherever they were measured.
    """
    title = UNIT_TITLES.get(unit, unit)
    if "ticks" in unit and not unit.startswith("icount"):
        return f"{title}: {series}"
    return title
