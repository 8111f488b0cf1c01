"""``{course-answer}``: a lesson's answer as one chart, 2000 beside today in one unit (percent).

Each item is a saving named once, the same way for both eras, with the figure that answers it in
each kind of set::

    - skipping entry and exit
      how 2000: sys_read() called directly; host: the invalid call over the empty read (ns)
      2000 06-skipping-layers/saving-percent.ksys-read.tty
      host 03-timing/saving-percent.entry-exit.tty
      guests 06-skipping-layers/saving-percent.ksys-read.tty
      today not measurable: why (instead of host and guests)

``2000`` is the reference set, ``host`` this machine's own kernel (never a guest's figure),
``guests`` every set of the kernel matrix under ``tcg-icount`` (instructions, the same on every
host). Emulated (TCG) figures never appear: they move with the host from run to run.
"""

from __future__ import annotations

from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives

from course import guest_kernels
from course.sphinxext import charts
from course.sphinxext.base import MeasurementsDirective, value_text
from course.sphinxext.data import describe, format_value, shown_from
from course.sphinxext.figures import figures_table, legend
from course.store import ResultSet

KINDS = ("how", "2000", "host", "guests", "today")


class CourseAnswer(MeasurementsDirective):
    """The lesson's answer: each saving in percent, the article's figure beside today's on one 0-100 % scale."""

    option_spec: ClassVar[dict] = {"caption": directives.unchanged, "axis": directives.unchanged}

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
                    for result_set in self._sets(kind):
                        share = self._share(result_set, rest)
                        if share is not None:
                            shares.append(share)
                            entries.append((share.colour, legend_name(result_set)))
            groups.append(charts.Group(title, how, tuple(shares)))
        with shown_from(self.data.current):
            chart = charts.answer_chart(groups, caption or "the answer", self.options.get("axis", "percent"))
        figure = nodes.container(classes=["course-chart", "course-answer"])
        figure += nodes.raw("", chart.svg, format="html")
        figure += legend(entries)
        if caption:
            figure += nodes.paragraph(text=caption, classes=["course-chart-caption"])
        figure += figures_table(chart)
        return [figure]

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
        if measurement.get("unit") != "%" or measurement.get("status") != "ok":
            text = value_text(measurement, "value", False)
            if measurement.get("status") == "ok":
                self.warn(f"{key!r} of {result_set.id!r} is in {measurement.get('unit')}, not in percent", "units")
            return charts.Share(series, None, text, colour, describe(lookup, "value"))  # type: ignore[arg-type]
        value = measurement["value"]
        return charts.Share(series, value, format_value(value, "%"), colour, describe(lookup, "value"))  # type: ignore[arg-type]


def short_name(result_set: ResultSet) -> str:
    """A set's name on a bar's row: "2000", "host 6.18", "6.1-rt guest"."""
    if result_set.kind == "reference":
        return "2000"
    guest = result_set.info.get("guest") or {}
    if guest:
        return f"{guest.get('name', '?')} guest"
    release = str(result_set.machine.get("kernel_release", ""))
    return "host " + ".".join(release.split(".")[:2]) if release else "host"


def legend_name(result_set: ResultSet) -> str:
    """What a set's figures are, in a few words: where they ran, on which kernel, in which unit."""
    release = result_set.machine.get("kernel_release", "?")
    if result_set.kind == "reference":
        return "2000: " + result_set.label.removeprefix("2000: ") + f", Linux {release}, TSC cycles"
    guest = result_set.info.get("guest") or {}
    if guest:
        return f"{short_name(result_set)}: Debian {guest.get('release', '?')}, instructions counted (QEMU icount)"
    return f"{short_name(result_set)}: this machine's own kernel {release}, real time from user space"
