"""The kernel matrix on the site: the same figures across guest kernels, and where one read's path changed.

- ``{course-kernels}``: one row per guest kernel of the matrix (``invoke run --guest-kernels``),
  one column per figure named in the content (``<measurement id> <label>``, as ``course-table``),
  each cell the figure and its change from the baseline kernel in percent; then the same as a
  chart. The sets are found by their ``guest`` record (``set.json``), not by name.
- ``{course-trace-diff}``: lesson 2's call graphs of one read (captures named in the content)
  compared between two guest kernels: the functions added, removed and moved (called from
  elsewhere), and the whole graphs as one unified diff.

A change in percent compares a figure with the baseline kernel's only where both are icount
ticks under the same acceleration (:func:`course.kernel.guest_kernels.change_percent`): like for like,
never across units.
"""

from __future__ import annotations

from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

from course.kernel import guest_kernels, tracediff
from course.publish.sphinxext import charts
from course.publish.sphinxext.base import (
    CourseMixin,
    MeasurementsDirective,
    course_value,
    entries,
    table_row,
    value_text,
)
from course.publish.sphinxext.context import machine_link
from course.publish.sphinxext.data import Lookup, describe, format_value, shown_from, shown_text
from course.publish.sphinxext.figures import UNIT_TITLES, chart_figure
from course.results.store import ResultSet

#: The command that measures the kernel matrix, for the reader of a page that lacks it.
MATRIX_COMMAND = "invoke run --guest-kernels 6.1,6.12,6.1-rt --acceleration tcg-icount"


def _guest(result_set: ResultSet) -> dict:
    return guest_kernels.matrix_guest(result_set)


def kernel_cell(directive: SphinxDirective, result_set: ResultSet, cpu: bool = True) -> nodes.inline:
    """The kernel's name, linked to its set's page, and below it its release, preemption model (and CPU)."""
    guest = _guest(result_set)
    cell = nodes.inline()
    cell += machine_link(directive, result_set.id, guest.get("name", result_set.id))
    facts = [guest.get("release"), guest.get("preemption"), guest.get("cpu_model") if cpu else None]
    cell += nodes.raw("", "<br/>", format="html")
    cell += nodes.inline(text=" · ".join(fact for fact in facts if fact), classes=["course-spread"])
    return cell


def _cpus(sets: list[ResultSet]) -> set[str]:
    """The CPUs QEMU showed the guests of ``sets`` (as each guest's kernel reported it)."""
    return {_guest(result_set).get("cpu_model") or "not recorded" for result_set in sets}


class CourseKernels(MeasurementsDirective):
    """The named figures of every guest kernel of the matrix, with the change from the baseline kernel."""

    option_spec: ClassVar[dict] = {
        "caption": directives.unchanged,
        "field": lambda arg: directives.choice(arg, ("min", "median")),
        "acceleration": lambda arg: directives.choice(arg, tuple(guest_kernels.SET_ACCELERATION)),
        "baseline": directives.unchanged,
    }

    def run(self) -> list[nodes.Node]:
        acceleration = self.options.get("acceleration", "tcg-icount")
        sets = guest_kernels.guest_sets(self.data.shown(), acceleration)
        rows = self.rows()
        for result_set in sets:
            for key, _ in rows:
                self.use(self.data.find(key, result_set.id))
        if not sets:
            self.use(None)
            self.warn(f"no result set of the kernel matrix under {acceleration}; run `{MATRIX_COMMAND}`", "missing")
            # The command as a literal: a paragraph's "--" would become a dash.
            said = nodes.paragraph("", "[missing: the kernel matrix; run ", nodes.literal(text=MATRIX_COMMAND))
            said += nodes.Text("]")
            return [said]
        wanted = self.options.get("baseline", guest_kernels.BASELINE)
        baseline = next((s for s in sets if _guest(s).get("name") == wanted), None)
        field = self.options.get("field", "median")
        caption = self.options.get("caption", "")
        out: list[nodes.Node] = [self._table(sets, rows, baseline, field, caption)]
        out.append(
            nodes.paragraph(
                classes=["course-table-note"],
                text=(
                    f"Each cell: the {field} of the samples, stamp pair subtracted, measured in that kernel's own "
                    f"boot, and in parentheses its change from {wanted} in percent of {wanted}'s figure. A change is "
                    "given only between icount ticks under one acceleration: instructions counted against "
                    "instructions counted, never across units."
                    + (f" QEMU showed every guest the CPU {next(iter(cpus))}." if len(cpus := _cpus(sets)) == 1 else "")
                ),
            )
        )
        with shown_from(sets[0]):
            chart = self._chart(sets, rows, baseline, field, caption)
        return [*out, chart] if chart is not None else out

    def _figure(self, result_set: ResultSet, key: str, baseline: ResultSet | None, field: str) -> tuple[str, str, dict]:
        """One figure's text, its change from the baseline's ("" if none) and the measurement ({} if none)."""
        measurement = result_set.measurement(key) or {}
        if not measurement:
            return "—", "", {}
        if measurement.get("status") != "ok":
            return value_text(measurement, field, False), "", measurement
        text = format_value(measurement[field], measurement.get("unit", "ticks"))
        change = guest_kernels.change_percent(measurement, baseline.measurement(key) if baseline else None, field)
        if change is None or result_set is baseline:
            return text, "", measurement
        return text, f"{change:+.1f} %", measurement

    def _table(
        self, sets: list[ResultSet], rows: list[tuple[str, str]], baseline: ResultSet | None, field: str, caption: str
    ) -> nodes.table:
        table = nodes.table(classes=["course-table", "course-kernels"])
        if caption:
            table += nodes.title(text=caption)
        group = nodes.tgroup(cols=1 + len(rows))
        table += group
        for _ in range(1 + len(rows)):
            group += nodes.colspec(colwidth=1)
        units = {
            m.get("unit") for s in sets for key, _ in rows if (m := s.measurement(key)) and m.get("status") == "ok"
        }
        unit = units.pop() if len(units) == 1 else ""
        head = nodes.thead()
        head += table_row([f"guest kernel ({unit})" if unit else "guest kernel", *(label for _, label in rows)])
        group += head
        body = nodes.tbody()
        group += body
        for result_set in sets:
            # The CPU QEMU showed the guest is in the note below when every guest saw the same one.
            cells: list[nodes.Node | str] = [kernel_cell(self, result_set, cpu=len(_cpus(sets)) > 1)]
            with shown_from(result_set):
                for key, _ in rows:
                    text, change, measurement = self._figure(result_set, key, baseline, field)
                    if measurement.get("status") != "ok":
                        cells.append(nodes.emphasis(text=text) if measurement else nodes.Text(text))
                        continue
                    lookup = Lookup(result_set, measurement, result_set.lesson_file(key.split("/", 1)[0]))
                    # The unit is the table's (one acceleration, one unit), said in its header: the cell keeps
                    # the figure, and under it the change.
                    number = text.split(" ", 1)[0] if unit else text
                    cell = nodes.inline()
                    cell += course_value(
                        number,
                        number,
                        title=describe(lookup, field),
                        measurement=key,
                        set_id=result_set.id,
                        field=field,
                    )
                    if change:
                        cell += nodes.raw("", "<br/>", format="html")
                        cell += nodes.inline(text=f"({change})", classes=["course-spread", "course-change"])
                    cells.append(cell)
            body += table_row(cells)
        return table

    def _chart(
        self, sets: list[ResultSet], rows: list[tuple[str, str]], baseline: ResultSet | None, field: str, caption: str
    ) -> nodes.Node | None:
        """The same figures as bars: one group per figure, one bar per kernel, one panel per unit (None: no figure)."""
        bars = []
        # Grouped by figure, the kernels side by side: the chart compares kernels, one figure at a time.
        for key, label in rows:
            for result_set in sets:
                colour = self.data.colour_of(result_set.id)  # the set's colour in every chart of the site
                name = _guest(result_set).get("name", result_set.id)
                text, change, measurement = self._figure(result_set, key, baseline, field)
                if not measurement:
                    continue
                # The panel names the unit: the bar's label is the figure and its change.
                text = (
                    text.split(" ", 1)[0] + (f" ({change})" if change else "")
                    if measurement.get("status") == "ok"
                    else text
                )
                unit = measurement.get("unit", "ticks")
                value = measurement.get(field) if measurement.get("status") == "ok" else None
                note = f"{name}, {result_set.label}: {key}"
                panel = UNIT_TITLES.get(unit, unit)
                bars.append(charts.Bar(label, name, value, text, note, colour, unit=unit, panel=panel))
        if not bars:
            return None
        chart = charts.bar_chart(bars, caption or "kernel versions")
        return chart_figure(
            chart, caption, [(bar.colour, f"{bar.series}: {_guest_label(sets, bar.series)}") for bar in bars]
        )


def _guest_label(sets: list[ResultSet], name: str) -> str:
    """The label of the set whose guest kernel is called ``name`` (a legend's words)."""
    return next((s.label for s in sets if _guest(s).get("name", s.id) == name), name)


def moved_text(lost: list[str], gained: list[str]) -> str:
    """How a function's callers changed: "from a() to b()", "also from b()", "no longer from a()"."""

    def named(callers: list[str]) -> str:
        return ", ".join(f"{caller}()" if caller else "the top of the graph" for caller in callers)

    if lost and gained:
        return f"from {named(lost)} to {named(gained)}"
    return f"also from {named(gained)}" if gained else f"no longer from {named(lost)}"


class CourseTraceDiff(CourseMixin, SphinxDirective):
    """Lesson 2's call graphs of one read, compared between two guest kernels of the matrix.

    Content: one capture id per line, with a label (``02-read-path/trace.tty terminal``). With
    ``:summary:``, a table lists per capture the functions added, removed and moved; without it,
    each capture's two graphs are shown whole, as one unified diff.
    """

    has_content = True
    option_spec: ClassVar[dict] = {
        "from": directives.unchanged,
        "to": directives.unchanged,
        "acceleration": lambda arg: directives.choice(arg, tuple(guest_kernels.SET_ACCELERATION)),
        "summary": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        acceleration = self.options.get("acceleration", "tcg-icount")
        old_name = self.options.get("from", guest_kernels.BASELINE)
        new_name = self.options.get("to", "6.12")
        sets = {_guest(s).get("name"): s for s in guest_kernels.guest_sets(self.data.shown(), acceleration)}
        old, new = sets.get(old_name), sets.get(new_name)
        captures = entries(self.content)
        for result_set in (old, new):
            if result_set is not None:
                for capture_id, _ in captures:
                    file = result_set.lesson_file(capture_id.split("/", 1)[0])
                    self.use(Lookup(result_set, None, file if file.is_file() else None))
        if old is None or new is None:
            self.use(None)
            missing = old_name if old is None else new_name
            self.warn(
                f"no result set of guest kernel {missing} under {acceleration}; run `{MATRIX_COMMAND}`", "missing"
            )
            return [nodes.paragraph(text=f"[missing: the call graphs of guest kernel {missing}]")]
        if not captures:
            self.warn("no call graph named; put one capture id per line in the directive", "syntax")
            return []
        old_title = f"{old_name} ({_guest(old).get('release', '?')})"
        new_title = f"{new_name} ({_guest(new).get('release', '?')})"
        rows: list[list] = []
        blocks: list[nodes.Node] = []
        for capture_id, label in captures:
            before, after = old.capture(capture_id), new.capture(capture_id)
            if before is None or after is None:
                where = old if before is None else new
                self.warn(
                    f"output {capture_id!r} missing from result set {where.id!r}; run `{MATRIX_COMMAND}`", "missing"
                )
                rows.append([label or capture_id, "—", "—", "—"])
                continue
            found = tracediff.compare(before["text"], after["text"], old_title, new_title)
            rows.append([label or capture_id, *self._summary(found)])
            blocks.append(self._diff(label or capture_id, found, old_title, new_title))
        if "summary" not in self.options:
            return blocks
        table = nodes.table(classes=["course-table", "course-trace-diff"])
        table += nodes.title(text=f"The path of one empty read: {new_title} against {old_title}")
        group = nodes.tgroup(cols=4)
        table += group
        for _ in range(4):
            group += nodes.colspec(colwidth=1)
        head = nodes.thead()
        head += table_row(["file", f"added in {new_name}", f"removed (only in {old_name})", "moved (another caller)"])
        group += head
        body = nodes.tbody()
        for row in rows:
            body += table_row(row)
        group += body
        return [table]

    @staticmethod
    def _summary(found: tracediff.TraceDiff) -> list[nodes.Node]:
        """Three cells: the functions added, removed and moved, each a literal, or "none"."""

        def names(items: list[str]) -> nodes.Node:
            if not items:
                return nodes.emphasis(text="none")
            cell = nodes.inline()
            for index, name in enumerate(items):
                cell += nodes.literal(text=f"{name}()")
                if index < len(items) - 1:
                    cell += nodes.Text(", ")
            return cell

        moved = nodes.inline() if found.moved else nodes.emphasis(text="none")
        for index, (name, lost, gained) in enumerate(found.moved):
            moved += nodes.literal(text=f"{name}()")
            moved += nodes.Text(": " + moved_text(lost, gained) + ("; " if index < len(found.moved) - 1 else ""))
        return [names(found.added), names(found.removed), moved]

    @staticmethod
    def _diff(label: str, found: tracediff.TraceDiff, old_title: str, new_title: str) -> nodes.Node:
        """The two graphs as one unified diff: '-' only in the old kernel, '+' only in the new one."""
        # A graph is kernel output: shown as a literal block, never read as markup.
        text = shown_text("\n".join(found.diff)) if found.diff else "(the two call graphs are the same)"
        container = nodes.container(classes=["literal-block-wrapper", "course-output"], literal_block=True)
        container += nodes.caption(text=f"{label}: - {old_title}, + {new_title}")
        container += nodes.literal_block(text, text, language="diff")
        return container
