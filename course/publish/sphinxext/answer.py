"""``{course-answer}``: a lesson's answer as one chart, 2000 beside today in one unit (percent).

Each item is a saving named once, the same way for both eras, with the figure that answers it in
each kind of set::

    - skipping entry and exit
      how 2000: sys_read() called directly; host: the invalid call over the empty read (ns)
      2000 06-skipping-layers/saving-percent.ksys-read.tty
      host 03-timing/saving-percent.entry-exit.tty
      guests 06-skipping-layers/saving-percent.ksys-read.tty
      today not measurable: why (instead of host and guests)

Words after a figure's id name what the figure stands in for on its bar's row (``host <id> invalid call``).

``2000`` is the reference set, ``host`` this machine's own kernel (never a guest's figure),
``guests`` every set of the kernel matrix under ``tcg-icount`` (instructions, the same on every
host). Emulated (TCG) figures never appear: they move with the host from run to run.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives

from course.kernel import guest_kernels
from course.publish.sphinxext import charts
from course.publish.sphinxext.base import MeasurementsDirective, value_text
from course.publish.sphinxext.data import describe, format_value, shown_from
from course.publish.sphinxext.figures import chart_figure, real_ns
from course.results.store import ResultSet

KINDS = ("how", "2000", "host", "guests", "today")


class CourseAnswer(MeasurementsDirective):
    """The lesson's answer: each saving in percent, 2000 beside today on one 0-100 % scale (a cost: from zero, left)."""

    option_spec: ClassVar[dict] = {
        "caption": directives.unchanged,
        "axis": directives.unchanged,
        # percent (a share of the same kind of thing), or nanoseconds (real time only: 2000's and a host's)
        "unit": lambda arg: directives.choice(arg, ("%", "ns")),
    }

    def run(self) -> list[nodes.Node]:
        caption = self.options.get("caption", "")
        items = self._items()
        if items is None:
            return []
        groups, entries = [], []
        for title, lines in items:
            shares, how = [], ""
            for kind, rest in lines:
                if kind == "how":
                    how = rest
                elif kind == "today":
                    shares.append(charts.Share("today", None, rest, note="not measured today: " + rest))
                else:
                    # Words after the figure's id go on its bar's row: a stand-in says so where it is drawn.
                    key, _, standing_for = rest.partition(" ")
                    for result_set in self._sets(kind):
                        share = self._share(result_set, key)
                        if share is not None and standing_for.strip():
                            share = dataclasses.replace(share, series=f"{share.series}: {standing_for.strip()}")
                        if share is not None:
                            shares.append(share)
                            entries.append((share.colour, legend_name(result_set)))
            groups.append(charts.Group(title, how, tuple(shares)))
        with shown_from(self.data.current):
            unit = self.options.get("unit", "%")
            chart = charts.answer_chart(groups, caption or "the answer", self.options.get("axis", unit), unit)
        return [chart_figure(chart, caption, entries, ("course-chart", "course-answer"))]

    def _items(self) -> list[tuple[str, list[tuple[str, str]]]] | None:
        """The content as (saving, [(kind, rest of the line)]); a line it cannot read is a warning."""
        items: list[tuple[str, list[tuple[str, str]]]] = []
        for line in self.content:
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if text.startswith("- "):
                items.append((text[2:].strip(), []))
                continue
            kind, _, rest = text.partition(" ")
            if kind not in KINDS or not items or not rest.strip():
                self.warn(f"cannot read {text!r}: a saving is '- name', then lines '<{'|'.join(KINDS)}> ...'", "syntax")
                return None
            items[-1][1].append((kind, rest.strip()))
        if not items:
            self.warn("no saving listed; start each with '- name'", "syntax")
            return None
        return items

    def _sets(self, kind: str) -> list[ResultSet]:
        if kind == "2000":
            return [s for s in self.data.lesson_sets() if s.kind == "reference"]
        if kind == "host":
            return [self.data.current] if self.data.current else []
        return guest_kernels.guest_sets(self.data.lesson_sets(), "tcg-icount")

    def _share(self, result_set: ResultSet, key: str) -> charts.Share | None:
        """The set's figure for ``key``; only this machine's must exist (a missing one says how to measure it)."""
        lookup = self.check(key, result_set.id) if result_set.id == self.data.current_id else None
        if lookup is None:
            lookup = self.data.find(key, result_set.id)
            self.use(lookup)
        measurement = lookup.measurement if lookup else None
        colour = self.data.colour_of(result_set.id)
        series = short_name(result_set)
        if measurement is None:
            if result_set.id != self.data.current_id:
                return None
            return charts.Share(series, None, f"not measured yet: run invoke lesson {int(key[:2])}", colour)
        if self.options.get("unit") == "ns" and measurement.get("status") == "ok":
            field = "value" if measurement.get("value") is not None else "min"
            ns = real_ns(measurement, field)
            if ns is None:
                self.warn(f"{key!r} of {result_set.id!r} is in {measurement.get('unit')}, which have no ns", "units")
                return charts.Share(series, None, f"no nanoseconds ({measurement.get('unit')})", colour)
            # Drawn as printed (format_value): the TSC rate, measured again on every run, turns unchanged ticks into
            # nanoseconds that differ in the tenth digit; the chart's key, and so its picture, must not.
            ns = round(ns, 1 if ns < 100 else 0)
            return charts.Share(series, ns, format_value(ns, "ns"), colour, describe(lookup, field, True))  # type: ignore[arg-type]
        if measurement.get("unit") != "%" or measurement.get("status") != "ok":
            text = value_text(measurement, "value", False)
            if measurement.get("status") == "ok":
                self.warn(f"{key!r} of {result_set.id!r} is in {measurement.get('unit')}, not in percent", "units")
            return charts.Share(series, None, text, colour, describe(lookup, "value"))  # type: ignore[arg-type]
        value = measurement["value"]
        if charts.absurd_share(value):  # an imported set's: nan, inf or 1e308 % would break the chart's scale
            self.warn(
                f"{key!r} of {result_set.id!r} is {value!r} %, no saving: left out of the chart "
                f"(a share is finite and within {charts.ABSURD_PERCENT:g} %)",
                "units",
            )
            return charts.Share(series, None, f"left out: {value!r} % is no saving", colour)
        return charts.Share(series, value, format_value(value, "%"), colour, describe(lookup, "value"))  # type: ignore[arg-type]


def short_name(result_set: ResultSet) -> str:
    """A set's name on a bar's row: "2000", "host 6.18" ("host VM 6.18" when it is a VM), "6.1-rt guest"."""
    if result_set.kind == "reference":
        return "2000"
    guest = result_set.info.get("guest") or {}
    if guest:
        return f"{guest.get('name', '?')} guest"
    # A reader takes "host" for bare hardware: a host that is itself a VM says so on every bar.
    host = "host VM" if result_set.machine.get("hypervisor") else "host"
    release = str(result_set.machine.get("kernel_release", ""))
    return f"{host} " + ".".join(release.split(".")[:2]) if release else host


def legend_name(result_set: ResultSet) -> str:
    """What a set's figures are, in a few words: where they ran, on which kernel, in which unit."""
    release = result_set.machine.get("kernel_release", "?")
    if result_set.kind == "reference":
        return "2000: " + result_set.label.removeprefix("2000: ") + f", Linux {release}, TSC cycles"
    guest = result_set.info.get("guest") or {}
    if guest:
        return f"{short_name(result_set)}: Debian {guest.get('release', '?')}, instructions counted (QEMU icount)"
    vm = ", itself a virtual machine (TSC read under a hypervisor)" if result_set.machine.get("hypervisor") else ""
    return f"{short_name(result_set)}: this machine's own kernel {release}{vm}, real time from user space"


class CourseSizeLine(MeasurementsDirective):
    """Cost against read size on this machine, with the fitted line, and the article's cost a byte beside it.

    Content lines: ``<measurement template with {size}> <slope measurement> <label>``, and one
    ``2000 <empty read> <ticks a byte, low> <ticks a byte, high>`` for the article's figures; a line
    ``best <bytes> <measurement> <label>`` marks this machine's minimum of one size, the figure the
    article's best-of-N compares with (the medians and their line are another statistic).
    """

    option_spec: ClassVar[dict] = {"caption": directives.unchanged, "sizes": directives.unchanged_required}

    def run(self) -> list[nodes.Node]:
        caption = self.options.get("caption", "")
        sizes = [int(size) for size in self.options["sizes"].replace(",", " ").split()]
        series: list[charts.SizeSeries] = []
        entries: list[tuple[int, str]] = []
        current = self.data.current
        for line in self.content:
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if words[0] == "2000":
                series += self._article(words[1:], entries)
                continue
            if words[0] == "best":
                series += self._best(words[1:], entries)
                continue
            template, slope_key, label = words[0], words[1], " ".join(words[2:])
            points = []
            for size in sizes:
                lookup = self.check(template.format(size=size))
                ns = real_ns(lookup.measurement, "median") if lookup and lookup.measurement else None
                if ns is not None:
                    points.append((float(size), ns))
            slope = self.check(slope_key)
            fitted = slope.measurement if slope and slope.measurement else {}
            per_byte = ns_per_byte(fitted)
            rate = fitted.get("tsc_hz")
            start = fitted["intercept"] / rate * 1e9 if rate and fitted.get("intercept") is not None else None
            colour = self.data.colour_of(current.id) if current else 1
            kinds = sum(1 for one in series if one.line != "--")  # the kinds of file drawn so far
            style = (("-", "o"), (":", "s"), ("-.", "^"))[kinds % 3]
            series.append(
                charts.SizeSeries(f"{label}, host", tuple(points), per_byte, start, colour, style[0], style[1])
            )
            entries.append((colour, legend_name(current) if current else "host: this machine's own kernel"))
        with shown_from(current):
            chart = charts.size_chart(series, caption or "cost against read size")
        return [chart_figure(chart, caption, entries)]

    def _best(self, words: list[str], entries: list[tuple[int, str]]) -> list[charts.SizeSeries]:
        """This machine's minimum of one size, a marker alone: what sits beside the article's best-of-N figures."""
        if len(words) < 3 or not words[0].isdigit():
            self.warn("a best line names the size, the measurement and its label", "syntax")
            return []
        lookup = self.check(words[1])
        ns = real_ns(lookup.measurement, "min") if lookup and lookup.measurement else None
        if ns is None:
            return []
        current = self.data.current
        colour = self.data.colour_of(current.id) if current else 1
        entries.append((colour, legend_name(current) if current else "host: this machine's own kernel"))
        label = f"{' '.join(words[2:])}, host"
        what = "minimum (best of the samples), measured"
        return [charts.SizeSeries(label, ((float(words[0]), ns),), None, None, colour, "-", "^", what)]

    def _article(self, keys: list[str], entries: list[tuple[int, str]]) -> list[charts.SizeSeries]:
        """The article's empty read with two to three ticks a byte on top: two dashed lines, its figures only."""
        if len(keys) != 3:
            self.warn("a 2000 line names the empty read and the two costs a byte", "syntax")
            return []
        found = [self.check(key, "reference-2000") for key in keys]
        figures = [lookup.measurement if lookup else None for lookup in found]
        if not all(figures):
            return []
        read = real_ns(figures[0])  # type: ignore[arg-type]
        lines = []
        for figure in figures[1:]:
            per_byte = ns_per_byte(figure)  # type: ignore[arg-type]
            label = f"2000: {format_value(read or 0, 'ns')} + {figure['value']:g} ticks a byte"  # type: ignore[index]
            lines.append(charts.SizeSeries(label, (), per_byte, read, self.data.colour_of("reference-2000"), "--"))
        colour = self.data.colour_of("reference-2000")
        entries.append((colour, "2000: the article's empty read of a terminal plus two to three ticks a byte"))
        return lines


def ns_per_byte(measurement: dict) -> float | None:
    """A cost a byte in real ticks as nanoseconds a byte; None for emulated or icount ticks, or without a rate."""
    rate = measurement.get("tsc_hz")
    if measurement.get("unit") != "ticks/byte" or not rate or measurement.get("value") is None:
        return None
    return measurement["value"] / rate * 1e9
