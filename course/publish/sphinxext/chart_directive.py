"""``{course-chart}``: figures drawn as a chart, with the table of what it draws."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives

from course.publish.sphinxext import charts
from course.publish.sphinxext.base import (
    MeasurementsDirective,
    how_to_measure,
    value_text,
)
from course.publish.sphinxext.data import CLASS, FIELDS, describe, format_value, shown_from
from course.publish.sphinxext.figures import (
    REAL_TICKS,
    STEP,
    chart_figure,
    class_spread,
    own_figures,
    panel_title,
    real_ns,
)
from course.results.store import ResultSet


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
