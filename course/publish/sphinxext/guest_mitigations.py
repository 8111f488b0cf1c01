"""``{course-guest-mitigations}``: what the mitigations add to a call, counted in instructions in each guest kernel.

Each guest kernel of the matrix is booted twice with the CPU model named in ``:cpu:`` (one its
kernel treats as affected) under ``tcg-icount``: as it boots by default, and with
``mitigations=off`` (``invoke run --guest-kernels ... --guest-cpu MODEL`` and again with
``--guest-append mitigations=off``). The directive shows, for each figure named in the content
(``<measurement id> <label>``), the two counts side by side and their difference, as a table and
as a chart, then what each guest's kernel said in its own ``/sys/devices/system/cpu/vulnerabilities``.

Instruction counts only: a count is the same on every host, but it is no time (a page-table
switch or a ``verw`` is one instruction and hundreds of cycles); the page says so, and the
directive never sets these counts beside ticks.
"""

from __future__ import annotations

from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives

from course.kernel import guest_kernels
from course.publish.sphinxext import charts
from course.publish.sphinxext.base import MeasurementsDirective, course_value, simple_table, value_text, wrappable
from course.publish.sphinxext.context import machine_link
from course.publish.sphinxext.data import Lookup, describe, format_value, shown_from
from course.publish.sphinxext.figures import chart_figure
from course.publish.sphinxext.machines import guest_machine
from course.results.store import ResultSet

#: The parameter that turns the mitigations off, as ``--guest-append`` passes it.
OFF = "mitigations=off"

#: The chart's panel: what its bars are.
ADDED = "instructions added, % of the call with mitigations on"

#: The two boots of each kernel, as the page names them.
STATES = ("mitigations on (default)", OFF)


def command(cpu: str) -> str:
    """What measures the sets this directive reads."""
    base = f"invoke run --guest-kernels 6.1,6.12,6.1-rt --acceleration tcg-icount --lesson 4 --guest-cpu {cpu}"
    return f"{base}, then the same with --guest-append {OFF}"


def pairs(sets: list[ResultSet], cpu: str) -> list[tuple[str, ResultSet | None, ResultSet | None]]:
    """(kernel name, default boot's set, mitigations=off boot's set) for each kernel shown ``cpu``, matrix order."""
    found: dict[str, list[ResultSet | None]] = {}
    for result_set in sorted(sets, key=lambda s: s.id):
        guest = guest_kernels.matrix_guest(result_set)
        if guest.get("acceleration") != "tcg-icount" or guest.get("cpu_requested") != cpu:
            continue
        parameters = guest.get("kernel_parameters") or ""
        if parameters not in ("", OFF):
            continue
        both = found.setdefault(guest.get("name", result_set.id), [None, None])
        # Two sets claiming one boot are a build warning (guest_kernels.duplicate_guests); the first by id is shown.
        slot = 1 if parameters == OFF else 0
        if both[slot] is None:
            both[slot] = result_set
    order = list(guest_kernels.KERNELS)
    names = sorted(found, key=lambda name: (order.index(name) if name in order else len(order), name))
    return [(name, found[name][0], found[name][1]) for name in names]


def difference(on: dict | None, off: dict | None, field: str) -> tuple[float, float] | None:
    """(on - off, its percent of on) where both are icount ticks measured; None otherwise (never across units)."""
    if not on or not off or on.get("status") != "ok" or off.get("status") != "ok":
        return None
    if on.get("unit") != "icount ticks" or off.get("unit") != "icount ticks":
        return None
    if on.get(field) is None or off.get(field) is None or not on[field]:
        return None
    gap = on[field] - off[field]
    return gap, 100 * gap / on[field]


def vulnerable_files(result_set: ResultSet | None) -> list[tuple[str, str]]:
    """The guest's own vulnerability files that are not "Not affected", as its kernel wrote them."""
    if result_set is None:
        return []
    mitigations = guest_machine(result_set).get("mitigations") or {}
    return [(name, state) for name, state in sorted(mitigations.items()) if state != "Not affected"]


class CourseGuestMitigations(MeasurementsDirective):
    """Per guest kernel, the named figures with mitigations on and off, their difference, and the guest's own list."""

    option_spec: ClassVar[dict] = {
        "cpu": directives.unchanged_required,
        "caption": directives.unchanged,
        "field": lambda arg: directives.choice(arg, ("min", "median")),
    }

    def run(self) -> list[nodes.Node]:
        cpu = self.options.get("cpu", "")
        field = self.options.get("field", "median")
        caption = self.options.get("caption", "")
        rows = self.rows()
        kernels = pairs(self.data.with_pages(), cpu)
        for _, on, off in kernels:
            for result_set in (on, off):
                for key, _ in rows if result_set else ():
                    self.use(self.data.find(key, result_set.id))
        if not kernels:
            self.use(None)
            self.warn(f"no guest sets shown the CPU {cpu!r}; run `{command(cpu)}`", "missing")
            said = nodes.paragraph("", "[missing: the guests' mitigations; run ", nodes.literal(text=command(cpu)))
            said += nodes.Text("]")
            return [said]
        out: list[nodes.Node] = [self._table(kernels, rows, field, caption)]
        with shown_from(next(s for _, on, off in kernels for s in (on, off) if s)):
            out.append(self._chart(kernels, rows, field, cpu))
        out.append(self._vulnerabilities(kernels, cpu))
        return out

    def _cell(self, result_set: ResultSet | None, key: str, field: str) -> nodes.Node:
        measurement = result_set.measurement(key) if result_set else None
        if not measurement:
            return nodes.Text("—")
        if measurement.get("status") != "ok":
            return nodes.emphasis(text=value_text(measurement, field, False))
        text = format_value(measurement[field], measurement.get("unit", "ticks"))
        lookup = Lookup(result_set, measurement, result_set.lesson_file(key.split("/", 1)[0]))
        return course_value(
            text, text, title=describe(lookup, field), measurement=key, set_id=result_set.id, field=field
        )

    def _table(self, kernels, rows, field: str, caption: str) -> nodes.table:
        headers = ["guest kernel"]
        for _, label in rows:
            # Headers wrap after "mitigations=": the table fits a laptop's text column.
            headers += [f"{label}: {STATES[0]}", wrappable(f"{label}: {OFF}"), f"{label}: on minus off"]
        table = simple_table(headers, [])
        if caption:
            table.insert(0, nodes.title(text=caption))
        body = table.next_node(nodes.tbody)
        for name, on, off in kernels:
            cells: list[nodes.Node] = []
            first = nodes.paragraph()
            first += machine_link(self, on.id, name) if on else nodes.Text(name)
            if off:
                first += nodes.Text(" (")
                first += machine_link(self, off.id, OFF)
                first += nodes.Text(")")
            cells.append(first)
            for key, _ in rows:
                cells += [self._cell(on, key, field), self._cell(off, key, field)]
                gap = difference(on.measurement(key) if on else None, off.measurement(key) if off else None, field)
                cells.append(nodes.Text(f"{gap[0]:+,.0f} ({gap[1]:.1f} %)" if gap else "—"))
            row = nodes.row()
            for cell in cells:
                entry = nodes.entry()
                entry += cell if isinstance(cell, nodes.paragraph) else nodes.paragraph("", "", cell)
                row += entry
            body += row
        return table

    def _chart(self, kernels, rows, field: str, cpu: str) -> nodes.Node:
        """The table's point at a glance: the share of each call's instructions the mitigations add, one bar a kernel.

        Both boots' counts stay in the table above; a bar is their difference over the count with them on.
        """
        # Each kernel in its own colour: that of its default boot, as every other chart of the site draws it.
        default_boots = guest_kernels.guest_sets(self.data.with_pages(), "tcg-icount")
        colours = {guest_kernels.matrix_guest(s).get("name"): self.data.colour_of(s.id) for s in default_boots}
        bars = []
        for key, label in rows:
            for name, on, off in kernels:
                gap = difference(on.measurement(key) if on else None, off.measurement(key) if off else None, field)
                if gap is None:
                    continue
                note = f"({on.label}) - ({off.label}), over the first: {key}, {field}"
                bars.append(
                    charts.Bar(
                        label,
                        name,
                        gap[1],
                        f"{gap[1]:.1f} %",
                        note,
                        colours.get(name, self.data.colour_of(on.id)),
                        "%",
                        ADDED,
                    )
                )
        caption = (
            f"What the mitigations add to one call in each guest kernel, in percent of its instructions with them on "
            f"(QEMU -icount, {cpu}, {field}s; both counts are in the table above)"
        )
        return chart_figure(charts.bar_chart(bars, caption), caption)

    def _vulnerabilities(self, kernels, cpu: str) -> nodes.Node:
        """What each guest's kernel wrote in its own vulnerability files, booted by default and with mitigations=off."""
        items = nodes.bullet_list()
        for name, on, off in kernels:
            for state, result_set in zip(STATES, (on, off), strict=True):
                if result_set is None:
                    continue
                files = vulnerable_files(result_set)
                item = nodes.paragraph()
                item += nodes.strong(text=f"{name}, {state}: ")
                item += nodes.Text(
                    "; ".join(f"{file}: {said}" for file, said in files) if files else "every file says Not affected"
                )
                items += nodes.list_item("", item)
        lead = nodes.paragraph(
            text=f"What each guest's kernel wrote in its own /sys/devices/system/cpu/vulnerabilities when QEMU showed "
            f'it the CPU {cpu} (the files that do not say "Not affected"):'
        )
        container = nodes.container(classes=["course-guest-vulnerabilities"])
        container += lead
        container += items
        return container
