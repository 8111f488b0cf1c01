"""``{course-table}``: figures side by side in a table, one column a result set, the class's spread beside them."""

from __future__ import annotations

import re
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes

from course.publish.sphinxext.base import (
    MeasurementsDirective,
    course_value,
    how_to_measure,
    ran_where,
    table_row,
    value_text,
)
from course.publish.sphinxext.data import FIELDS, Lookup, describe, format_value, shown_from
from course.publish.sphinxext.figures import (
    CLASS_NOTE,
    CLASS_ON_PAGES,
    REAL_TICKS,
    basis_unit,
    class_cell,
    class_spread,
    own_figures,
    ratio_to_2000,
    real_ns,
    reference_set,
)
from course.results.clock import utc_minute
from course.results.store import ResultSet

#: The acceleration that measures in a unit: what to rerun for a table of that unit that has no figures.
ACCELERATION_OF = {"emulated ticks": "tcg", "icount ticks": "tcg-icount"}


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
        if self.options.get("unit") == "emulated ticks":
            # Emulated time is its own host's clock, moving from boot to boot: another machine's guest beside this
            # one's would set two hosts' clocks against each other. Its figures stay on its own page.
            kept = [s for s in kept if s.id == self.data.current_id]
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
        # No set kept (a column's or the class's) has a figure here: say why, never an empty table.
        kept_ids = {result_set.id for result_set in kept}
        shown = [lookup for _, _, found in looked for set_id, lookup in found if set_id in kept_ids and lookup]
        if not any(lookup.measurement for lookup in shown) and "optional" not in self.options:
            return self._not_run(looked)
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
        titles: list[nodes.Node | str] = ["measurement"]
        titles += [self.column_title(i, columns_found[i]) + self._guest_run_date(i, columns_found[i]) for i in keep]
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
        blocks: list[nodes.Node] = [table, *self._same_guest(keep, columns_found)]
        if pooled:
            text = CLASS_NOTE if with_class else CLASS_ON_PAGES
            note = nodes.paragraph(classes=["course-table-note"], text=text.format(sets=len(pooled)))
            return [*blocks, note] if field else [*blocks, note, *self._note(ratio, with_2000)]
        if field:
            return blocks
        return [*blocks, *self._note(ratio, with_2000)]

    def _guest_run_date(self, set_id: str, measurements: list[dict | None]) -> str:
        """When this machine's column was measured, when a guest of its measured it: ", measured 2026-12-05 14:59 UTC".

        Its title says where (the guest kernel, how QEMU ran it, the host); a matrix set names its guest and
        dates its own page. The date is the figures' own (from one minute to another when they span more).
        """
        if set_id != self.data.current_id or self.data.sets[set_id].info.get("guest"):
            return ""
        figures = [m for m in measurements if m and m.get("status", "ok") == "ok"]
        # The figures' own moments; a table of derived figures alone (shares) has the moment they were derived.
        measured = [m for m in figures if not m.get("derived")] or figures
        stamps = sorted(str(m["measured_at"]) for m in measured if m.get("measured_at"))
        if not ran_where(figures) or not stamps:
            return ""
        first, last = utc_minute(stamps[0]), utc_minute(stamps[-1])
        return f", measured {first}" if first == last else f", measured from {first} to {last}"

    def _same_guest(self, keep: list[str], columns_found: dict[str, list]) -> list[nodes.Node]:
        """A note when this machine's column counted in the very guest a kernel set of the table counted in.

        After ``invoke lesson 9 --acceleration tcg-icount`` this machine's column is Debian's 6.1 guest under
        -icount, as ``qemu-icount-debian-6.1`` is: the same instructions whatever the host, so the same counts.
        """
        mine = [m for m in columns_found.get(self.data.current_id, []) if m and m.get("status", "ok") == "ok"]
        guests = {(m.get("guest_kernel"), m.get("acceleration")) for m in mine if m.get("runner") == "vm"}
        if len(guests) != 1 or next(iter(guests))[1] != "tcg-icount":
            return []
        release = next(iter(guests))[0]
        twins = [
            self.data.sets[set_id].label
            for set_id in keep
            if (guest := self.data.sets[set_id].info.get("guest") or {}).get("release") == release
            and guest.get("acceleration") == "tcg-icount"
            and not guest.get("cpu_requested")
            and not guest.get("kernel_parameters")
        ]
        if not twins:
            return []
        text = (
            f"The guest that {self.data.sets[self.data.current_id].label} booted ran kernel {release} under QEMU "
            f"-icount, as {twins[0]} did: -icount counts the guest's instructions whatever the host, so both "
            "columns are expected to hold the same counts."
        )
        return [nodes.paragraph(classes=["course-table-note"], text=text)]

    def _not_run(self, looked: list) -> list[nodes.Node]:
        """A table no set has a figure for: one line that says what was run instead, and a warning.

        After ``invoke lesson 9 --acceleration tcg-icount`` this machine's lesson 9 figures are a guest's
        instruction counts: a table of emulated ticks has none. It says so (in which unit this machine's
        last run counted, where, and the command that measures the table's unit), and the build warns:
        ``invoke site --strict`` fails on a table that shows nothing.
        """
        caption = self.options.get("caption", "this table")
        unit = self.options.get("unit", "")
        keys = [key for key, _, _ in looked]
        current = self.data.current
        mine = [
            lookup.measurement for _, _, found in looked for i, lookup in found if i == self.data.current_id and lookup
        ]
        mine = [m for m in mine if m and m.get("status", "ok") == "ok"]
        command = how_to_measure(keys[0]) if keys else "invoke generate"
        if current is not None and mine and unit:
            counted = " and ".join(sorted({basis_unit(current, m) for m in mine}))
            where = ran_where(mine)  # a guest's: another acceleration measures the table's unit
            acceleration = ACCELERATION_OF.get(unit) if where else None
            if acceleration:
                reason = (
                    f"this machine's last run counted {counted} in a {where}, not {unit}; "
                    f"`{command} --acceleration {acceleration}` measures them"
                )
            else:
                reason = f"this machine's figures of it are in {counted}, not {unit}"
        elif current is not None:
            reason = f"this machine has no figure of it yet; `{command}` measures it"
        else:
            reason = f"no result set here has these figures{f' in {unit}' if unit else ''}"
        self.warn(f"the table {caption!r} has no figures: {reason}", "empty-table")
        paragraph = nodes.paragraph(classes=["course-table-not-run"])
        what = re.sub(r":\s*(minimum|median)[^:]*$", "", caption)  # what the cells would have held goes
        paragraph += nodes.strong(text=f"{what}: not run. ")
        for n, part in enumerate((reason[0].upper() + reason[1:] + ".").split("`")):
            paragraph += nodes.literal(text=part) if n % 2 else nodes.Text(part)  # a command, as the page shows one
        return [paragraph]

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
