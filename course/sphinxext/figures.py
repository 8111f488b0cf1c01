"""The role and directives that place figures: one value, a table, a chart, a captured output."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass, replace
from html import escape
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective, SphinxRole

from course.sphinxext import charts
from course.sphinxext.base import (
    CourseMixin,
    MeasurementsDirective,
    course_value,
    how_to_measure,
    table_row,
    value_text,
)
from course.sphinxext.data import CLASS, FIELDS, Lookup, describe, format_value, shown_from, shown_text, to_ns
from course.store import ResultSet

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


class CourseTable(MeasurementsDirective):
    """Measurements down, result sets across: min / median and the spread, optionally in nanoseconds.

    With ``:field:``, each cell shows that one field (a benchmark's ``value``, a peer's ``mean``),
    and its goal when the measurement has one. With ``:vs-2000:``, a column right after this
    machine's gives the ratio of the 2000 figure to this machine's, both minima in nanoseconds:
    across eras the table compares time, never raw ticks. With ``:unit:``, only the sets whose
    figures here are in that unit have a column (a percentage by the unit it was computed from):
    one table, one unit, whatever clocks the sets ran on.
    """

    option_spec: ClassVar[dict] = {
        "caption": directives.unchanged,
        "ns": directives.flag,
        "vs-2000": directives.flag,
        "field": lambda arg: directives.choice(arg, tuple(FIELDS)),
        # ticks, emulated ticks, icount ticks, ns: a table of one unit (see basis_unit)
        "unit": directives.unchanged_required,
        # Figures that only some runs make (invoke bench): missing is "not measured", not a warning.
        "optional": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        rows = self.rows()
        looked = [(key, label, self.lookups(key)) for key, label in rows]
        in_ns = "ns" in self.options
        ratio = "vs-2000" in self.options
        # One column per set: this machine's always, the reference where the ratio needs it, and the
        # others (the reference too) where they have a figure: a column of dashes only takes room.
        kept = [
            result_set
            for result_set in self.sets_here()
            if (result_set.kind == "reference" and ratio)
            or result_set.id == self.data.current_id
            or any(dict(found)[result_set.id] and dict(found)[result_set.id].measurement for _, _, found in looked)
        ]
        if self.options.get("unit"):  # one unit a table: a set whose figures here are in another has no column
            kept = [s for s in kept if self._has_unit(s, looked, self.options["unit"])]
        # Beyond a handful of machines, the others are one column: the class (every set keeps its page).
        own, pooled = self.data.compared(kept)
        keep = [result_set.id for result_set in own]
        pooled_ids = {result_set.id for result_set in pooled}
        class_figures = {
            key: [lookup.measurement for set_id, lookup in found if set_id in pooled_ids and lookup]
            for key, _, found in looked
        }
        anchors = {key: own_figures(found, self.data.current_id, self.data.sets) for key, _, found in looked}
        spreads = {
            key: class_spread(figures, self.options.get("field") or "min", anchors[key])
            for key, figures in class_figures.items()
        }
        # A class column of dashes only takes room: the class's figures here are all ticks of no time.
        with_class = any(spreads.values())
        columns = 1 + len(keep) + with_class + ratio
        with_2000 = any(self.data.sets[set_id].kind == "reference" for set_id in keep)
        table = nodes.table(classes=["course-table"])
        if self.options.get("caption"):
            table += nodes.title(text=self.options["caption"])
        group = nodes.tgroup(cols=columns)
        table += group
        for _ in range(columns):
            group += nodes.colspec(colwidth=1)
        head = nodes.thead()
        group += head
        # The ratio sits beside the two figures it divides: right after this machine's column.
        at = 1 + (keep.index(self.data.current_id) + 1 if self.data.current_id in keep else len(keep))
        columns_found = {
            set_id: [lookup.measurement for _, _, found in looked for i, lookup in found if i == set_id and lookup]
            for set_id in keep
        }
        titles: list[nodes.Node | str] = ["measurement", *(self.column_title(i, columns_found[i]) for i in keep)]
        titles += [self._class_title(len(pooled))] if with_class else []
        if ratio:
            titles.insert(at, "2000 ÷ this machine (ns)")
        head += table_row(titles)
        body = nodes.tbody()
        group += body
        field = self.options.get("field")
        for key, label, found in looked:
            cells: list[nodes.Node | str] = [nodes.literal(text=label)]
            for set_id, lookup in found:
                if set_id in keep:
                    with shown_from(self.data.sets.get(set_id)):
                        cells.append(
                            self._single(key, lookup, field, in_ns) if field else self._cell(key, lookup, in_ns)
                        )
            if with_class:
                cells.append(class_cell(spreads[key], len(pooled)))
            if ratio:
                cells.insert(at, self._ratio(key, dict(found)))
            body += table_row(cells)
        if pooled:
            text = CLASS_NOTE if with_class else CLASS_ON_PAGES
            note = nodes.paragraph(classes=["course-table-note"], text=text.format(sets=len(pooled)))
            return [table, note] if field else [table, note, *self._note(ratio, with_2000)]
        if field:
            return [table]
        return [table, *self._note(ratio, with_2000)]

    @staticmethod
    def _has_unit(result_set: ResultSet, looked: list, unit: str) -> bool:
        """Whether any figure of ``result_set`` in this table counts in ``unit``."""
        figures = [lookup.measurement for _, _, found in looked for i, lookup in found if i == result_set.id and lookup]
        return any(m and m.get("status", "ok") == "ok" and basis_unit(result_set, m) == unit for m in figures)

    def _class_title(self, count: int) -> nodes.Node:
        """The class's column title, linked to the machines page, where each of its sets has its row and page."""
        title = nodes.inline()
        title += nodes.Text(f"the class: {count} other machines, ")
        title += addnodes.pending_xref(
            "",
            nodes.inline(text="each on its page"),
            refdomain="std",
            reftype="doc",
            reftarget="/" + self.config.course_machines_page.rstrip("/"),
            refexplicit=True,
            refwarn=True,
        )
        return title

    def _note(self, ratio: bool, with_2000: bool) -> list[nodes.Node]:
        """What the cells are, said once a page: a later table adds only what it shows anew (2000, the ratio)."""
        sentences = [
            "Each cell: minimum / median of the samples, the stamp pair's own cost subtracted (a stamp "
            "pair's own row is that cost), and below them the 90th and 99th percentiles (the spread)."
        ]
        if with_2000:
            sentences.append(
                'The 2000 figures are Rubini\'s (Linux Magazine, 2000): a best-of-N on his "500MHz box" '
                "(a Pentium-class CPU, whose TSC counted core clock cycles); "
                "today's invariant TSC ticks at a fixed rate."
            )
        if ratio:
            sentences.append(
                "Across the two, compare nanoseconds: the column after this machine's divides the 2000 "
                "minimum by this machine's, both in ns (2 means the call took twice as long in 2000). "
                "Ticks compare within one machine only."
            )
        said = self.env.temp_data.setdefault("course_table_notes", set())  # this page's, read once
        new = [sentence for sentence in sentences if sentence not in said]
        said.update(new)
        return [nodes.paragraph(classes=["course-table-note"], text=" ".join(new))] if new else []

    def _ratio(self, key: str, found: dict[str, Lookup | None]) -> nodes.Node:
        """This machine's figure against 2000's, in ns; a dash when either is missing or not real time."""
        reference = reference_set(self.data.shown())
        now = found.get(self.data.current_id)
        then = found.get(reference.id) if reference else None
        value = ratio_to_2000(now.measurement if now else None, then.measurement if then else None)
        if value is None or now is None or then is None:
            return nodes.Text("—")
        title = (
            f"{format_value(real_ns(then.measurement or {}) or 0, 'ns')} in 2000 over "
            f"{format_value(real_ns(now.measurement or {}) or 0, 'ns')} on {now.result_set.label}: minima"
        )
        text = f"{value:.1f} times"
        return course_value(text, text, title=title, measurement=key, set_id=now.result_set.id, field="vs-2000")

    def _cell(self, key: str, lookup: Lookup | None, in_ns: bool) -> nodes.Node:
        if lookup is None or lookup.measurement is None:
            return nodes.Text("—")
        measurement = lookup.measurement
        if measurement.get("status") != "ok":
            return nodes.emphasis(text=value_text(measurement, "min", False))
        text = value_text(measurement, "min", False)
        # Emulated and icount ticks have no ns, rate or not; a figure already in ns needs no second one.
        ns = real_ns(measurement) if in_ns and measurement.get("unit", REAL_TICKS) == REAL_TICKS else None
        if ns is not None:
            text += f" ({format_value(ns, 'ns')})"  # beside the minimum it converts, not after the median
        if measurement.get("median") is not None:
            text += " / " + value_text(measurement, "median", False).split(" ")[0]
        value = course_value(text, text, title=describe(lookup, "min"), measurement=key, set_id=lookup.result_set.id)
        if measurement.get("p90") is None:
            return value
        spread = nodes.inline(classes=["course-spread"])
        spread += nodes.Text(f"p90 {measurement['p90']:,.0f} · p99 {measurement['p99']:,.0f}")
        return nodes.inline("", "", value, nodes.raw("", "<br/>", format="html"), spread)

    def _single(self, key: str, lookup: Lookup | None, field: str, in_ns: bool) -> nodes.Node:
        if lookup is None or lookup.measurement is None:
            if lookup is not None and lookup.result_set.id == self.data.current_id and "optional" in self.options:
                return nodes.emphasis(text=f"not measured yet: run {how_to_measure(key)}")
            return nodes.Text("—")
        measurement = lookup.measurement
        text = value_text(measurement, field, in_ns)
        if measurement.get("status") != "ok":
            return nodes.emphasis(text=text)
        # A goal is compared with the figure shown; a measurement without that figure shows no verdict.
        if measurement.get("goal") is not None and measurement.get(field) is not None:
            met = "met" if measurement[field] <= measurement["goal"] else "not met"
            text += f" (goal ≤ {format_value(measurement['goal'], measurement['unit'])}: {met})"
        # A figure shown in ns names its field so: its link and its check convert as the page did.
        shown_ns = in_ns and measurement.get("unit", REAL_TICKS) == REAL_TICKS
        return course_value(
            text,
            text,
            title=describe(lookup, field, shown_ns),
            measurement=key,
            set_id=lookup.result_set.id,
            field=field + ("-ns" if shown_ns else ""),
        )


class CourseChart(MeasurementsDirective):
    """Bars of min (or median) across result sets; with ``:histogram:``, one measurement's distribution;
    with ``:timeline:``, this machine's measurements that keep a timeline, over one run."""

    option_spec: ClassVar[dict] = {
        "caption": directives.unchanged,
        "field": lambda arg: directives.choice(arg, ("min", "median")),
        "histogram": directives.flag,
        "timeline": directives.flag,
        "ns": directives.flag,
        # Figures that only some runs make (invoke bench): missing is "not measured", not a warning.
        "optional": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        caption = self.options.get("caption", "")
        self._legend: list[tuple[int, str]] = []
        if "histogram" in self.options:
            svg = self._histogram(caption)
        elif "timeline" in self.options:
            rows = self.rows()
            svg = self._timeline(rows, caption)
            if svg is None and "optional" in self.options and rows:
                text = f"not measured yet: run {how_to_measure(rows[0][0])}"
                return [nodes.paragraph("", "", nodes.emphasis(text=text))]
        else:
            svg = self._bars(caption)
        if svg is None:
            return []
        return [chart_figure(svg, caption, self._legend or None)]

    def _histogram(self, caption: str) -> charts.Chart | None:
        rows = self.rows()
        if len(rows) != 1:
            self.warn("a histogram shows exactly one measurement", "syntax")
            return None
        lookup = self.check(rows[0][0])
        if lookup is None or lookup.measurement is None or "histogram" not in lookup.measurement:
            return None
        measurement = lookup.measurement
        with shown_from(lookup.result_set):
            return charts.histogram_chart(
                measurement["histogram"],
                measurement.get("unit", "ticks"),
                caption or rows[0][0],
                subtracted=(measurement.get("overhead") or {}).get("ticks", 0),
                maximum=measurement.get("max"),
                step=self._counter_step(lookup.result_set, measurement),
            )

    def _counter_step(self, result_set: ResultSet, measurement: dict) -> float | None:
        """The counter's step on the set's machine (lesson 3's tscstep), for real ticks of one sample each."""
        if measurement.get("unit", REAL_TICKS) != REAL_TICKS or measurement.get("calls_per_sample", 1) != 1:
            return None
        step = result_set.measurement(STEP)
        self.use(self.data.find(STEP, result_set.id))
        return step.get("median") if step and step.get("status") == "ok" else None

    def _timeline(self, rows: list[tuple[str, str]], caption: str) -> charts.Chart | None:
        lines = []
        for colour, (key, label) in enumerate(rows, start=1):
            lookup = self.current_lookup(key)
            timeline = (lookup.measurement or {}).get("timeline") if lookup else None
            if timeline is None:
                if lookup is not None and lookup.measurement is not None and "optional" not in self.options:
                    self.warn(f"measurement {key!r} keeps no timeline to draw", "syntax")
                continue
            lines.append(charts.Line(label, timeline["seconds"], timeline["values"], colour))
        with shown_from(self.data.current):  # the timelines are this machine's
            return charts.timeline_chart(lines, caption or "timeline") if lines else None

    def _bars(self, caption: str) -> charts.Chart:
        """One bar per set and measurement, each in the panel of its unit (see ``panel_title``)."""
        field = self.options.get("field", "min")
        in_ns = "ns" in self.options
        bars = []
        rows = [(key, label, self.lookups(key)) for key, label in self.rows()]
        # Beyond a handful of machines, the others are one bar a figure: the class's median.
        with_figures = [
            s
            for s in self.sets_here()
            if any(lookup and lookup.measurement for _, _, found in rows for i, lookup in found if i == s.id)
        ]
        pooled = {s.id for s in self.data.compared(with_figures)[1]}
        for _key, label, found in rows:
            for set_id, lookup in found:
                measurement = lookup.measurement if lookup else None
                if measurement is None or set_id in pooled:
                    continue
                series = self.column_title(set_id, [measurement])  # a guest's bar names its guest, not "this machine"
                colour = self.data.colour_of(set_id)
                if self.in_lesson and measurement.get("unit") == "emulated ticks":
                    # Emulated time moves with the host from run to run: the machine pages keep it, a lesson's chart
                    # answers with figures that compare (real time, instructions, 2000).
                    continue
                if measurement.get("status") != "ok":
                    bars.append(charts.Bar(label, series, None, value_text(measurement, field, in_ns), colour=colour))
                    continue
                value = measurement.get(field)
                if value is None:  # the 2000 figures are minima only
                    continue
                unit = measurement.get("unit", REAL_TICKS)
                ns = real_ns(measurement, field) if in_ns else None
                if ns is not None:  # drawn as printed: a rate measured again must not make unchanged ticks a new chart
                    value, unit = round(ns, 1 if ns < 100 else 0), "ns"
                elif in_ns and unit in (REAL_TICKS, "ns"):
                    bars.append(charts.Bar(label, series, None, "no TSC rate", colour=colour))
                    continue
                # A figure without nanoseconds (emulated, icount ticks) keeps its own unit, in a panel of its own.
                bars.append(
                    charts.Bar(
                        label,
                        series,
                        value,
                        format_value(value, unit),
                        describe(lookup, field),
                        colour,
                        unit=unit,
                        panel=panel_title(unit, series),
                    )
                )
            if pooled:
                figures = [lookup.measurement for i, lookup in found if i in pooled and lookup]
                bars += self._class_bar(label, figures, own_figures(found, self.data.current_id, self.data.sets))
        self._legend = [(bar.colour, bar.series) for bar in bars]
        panels = {bar.series: bar.panel for bar in bars if bar.panel}
        # A figure not run takes its row in its set's panel, or in one of its own.
        bars = [bar if bar.panel else replace(bar, panel=panels.get(bar.series, "not measured")) for bar in bars]
        return charts.bar_chart(bars, caption or "measurements")

    def _class_bar(self, label: str, measurements: list[dict | None], anchors: list[dict | None]) -> list[charts.Bar]:
        """The class's bar for one measurement: its median, in ns (or its own unit), never in ticks."""
        field = self.options.get("field", "min")
        spread = class_spread(measurements, field, anchors)
        if spread is None:
            return []
        series = f"the class ({len(measurements)} machines): median"
        low, high = format_value(spread.low, spread.unit), format_value(spread.high, spread.unit)
        note = (
            f"the {FIELDS[field]} of each machine: median over {spread.count} machines; smallest {low}, largest {high}"
        )
        if spread.other_unit:
            note += f"; {spread.other_unit} in another unit left out"
        return [
            charts.Bar(
                label,
                series,
                spread.median,
                format_value(spread.median, spread.unit),
                note,
                self.data.colour_of(CLASS),
                unit=spread.unit,
                panel=panel_title(spread.unit, series),
            )
        ]


#: How a guest ran, in a column's title.
HOW_IT_RAN = {"tcg": "QEMU TCG, emulated", "tcg-icount": "QEMU icount", "kvm": "KVM"}


def ran_where(measurements: list[dict | None]) -> str:
    """Where a column's kernel figures ran when that was a guest: "Debian 6.1.0-57-amd64 guest, QEMU TCG, emulated"."""
    guests = {
        (m.get("guest_kernel", "?"), m.get("acceleration", "?"))
        for m in measurements
        if m and m.get("runner") == "vm" and m.get("status") == "ok"
    }
    if len(guests) != 1:
        return ""
    kernel, acceleration = guests.pop()
    return f"guest kernel {kernel} ({HOW_IT_RAN.get(acceleration, acceleration)})"


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


#: What a recorded command's standard input was, where the record names a kind of file rather than a path.
STDIN_WORDS = {
    "devnull": "/dev/null",
    "file": "a disk file",
    "pipe": "an empty pipe",
    "socket": "a socket pair",
    "tty": "a pseudo-terminal",
    "zero": "/dev/zero",
    "(empty pipe)": "an empty pipe",
    "(pseudo-terminal)": "a pseudo-terminal",
    "(socket pair)": "a socket pair",
    "stdin.txt": "a disk file the pipeline wrote, stdin.txt",
}

_STDIN = re.compile(
    r"\s<\s(devnull|file|pipe|socket|tty|zero|stdin\.txt|\((?:empty pipe|pseudo-terminal|socket pair)\))(?=\s|$)"
)


def command_parts(command: str) -> tuple[str, str]:
    """A recorded command as what runs if copied, and what is said about it in words.

    The record keeps notes beside the command (the files the pipeline opened, a comment, the
    kernel it built for) and names some standard inputs by kind ("< devnull", "< (empty pipe)"):
    copied, these give a shell error. They become words; the command keeps what a shell runs.
    """
    notes = []
    runnable = command
    if "   # " in runnable:
        runnable, comment = runnable.split("   # ", 1)
        notes.append(comment.strip())
    found = re.search(r"\s+\((files open: [^)]*|kernel [^)]*)\)\s*$", runnable)
    if found:
        runnable = runnable[: found.start()]
        what = found[1]
        opened = what.removeprefix("files open: ")
        notes.insert(0, f"the pipeline also opened {opened} (COURSE_FILES)" if what.startswith("files") else what)
    stdin = _STDIN.search(runnable)
    if stdin:
        runnable = runnable[: stdin.start()] + runnable[stdin.end() :]
        notes.insert(0, f"standard input: {STDIN_WORDS[stdin[1]]}")
    if " M=... " in runnable:
        runnable = runnable.replace(" M=... ", ' M="$PWD" ')
        notes.append("in a copy of the module's folder")
    return runnable.strip(), "; ".join(notes)


class CourseOutput(CourseMixin, SphinxDirective):
    """A captured block of output (a run, a disassembly), with the command that produced it."""

    required_arguments = 1
    option_spec: ClassVar[dict] = {
        "set": directives.unchanged,
        "language": directives.unchanged,
        # Long lines (a compiler's messages) wrap instead of scrolling out of sight, even at 1400 px.
        "wrap": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        capture_id = self.arguments[0]
        set_id = self.options.get("set", "") or self.data.current_id
        result_set = self.data.sets.get(set_id)
        if result_set is None:
            self.warn(f"no result set {set_id!r} for output {capture_id!r}", "missing")
            return [nodes.paragraph(text=f"[missing output: {capture_id}]")]
        file = result_set.lesson_file(capture_id.split("/", 1)[0])
        self.use(Lookup(result_set, None, file if file.is_file() else None))
        capture = result_set.capture(capture_id)
        if capture is None:
            self.warn(
                f"output {capture_id!r} missing from result set {set_id!r}; run the lesson to capture it", "missing"
            )
            return [nodes.paragraph(text=f"[missing output: {capture_id}]")]
        # What a program printed may hold any character: controls are shown as escapes (\x1b), not written raw.
        text = shown_text(capture["text"])
        block = nodes.literal_block(text, text, language=self.options.get("language", "text"))
        classes = ["literal-block-wrapper", "course-output"] + (["course-wrap"] if "wrap" in self.options else [])
        container = nodes.container(classes=classes, literal_block=True)
        # The command is a literal: smart quotes leave it alone (`--` stays two hyphens) and it can be copied.
        runnable, description = command_parts(shown_text(capture.get("command", "")))
        caption = nodes.caption()
        if runnable.startswith("insmod "):
            # It ran in the disposable VM: never offered as a command to copy into this machine's shell.
            caption += nodes.Text("In the disposable VM: ")
            caption += nodes.literal(runnable, runnable)
        else:
            caption += nodes.Text("$ ")
            caption += nodes.literal(runnable, runnable, classes=["course-command"])
        if description:
            caption += nodes.Text(f"   ({description})")  # words, not part of the command: never copied with it
        caption += nodes.Text(shown_text(f"   [{result_set.label}, {capture.get('measured_at', '')}]"))
        container += caption
        container += block
        return [container]
