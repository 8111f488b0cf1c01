"""The role and directives that put stored figures on a page (see :mod:`course.sphinxext`)."""

from __future__ import annotations

import fnmatch
from html import escape
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective, SphinxRole

from course.sphinxext import charts
from course.sphinxext.data import FIELDS, CourseData, Lookup, data_of, describe, format_value, to_ns
from course.store import ResultSet

logger = logging.getLogger(__name__)


class course_value(nodes.Inline, nodes.TextElement):
    """A stored value in running text; rendered as a link to its result set, with a hover note.

    ``data-measurement``, ``data-set`` and ``data-field`` (``min``, ``median-ns``, ...) name
    the stored figure the text shows, so a reader's tool (or the browser test) can check it.
    """


def visit_course_value(translator, node: course_value) -> None:
    href = node.get("href", "")
    tag = f'<a class="course-value" href="{escape(href)}"' if href else '<span class="course-value"'
    translator.body.append(
        f'{tag} title="{escape(node["title"])}" data-measurement="{escape(node["measurement"])}"'
        f' data-set="{escape(node["set_id"])}" data-field="{escape(node.get("field", "min"))}">'
    )


def depart_course_value(translator, node: course_value) -> None:
    translator.body.append("</a>" if node.get("href") else "</span>")


class _CourseMixin:
    """What the role and the directives share: the data, dependencies, warnings."""

    env: object
    config: object

    @property
    def data(self) -> CourseData:
        return data_of(self.env)  # type: ignore[arg-type]

    def use(self, lookup: Lookup | None) -> None:
        """Record that this page shows data from ``lookup``'s files."""
        docs = getattr(self.env, "course_docs", None)
        if docs is None:
            docs = self.env.course_docs = set()  # type: ignore[attr-defined]
        docs.add(self.env.docname)  # type: ignore[attr-defined]
        if lookup is not None:
            for path in (lookup.result_set.path / "set.json", lookup.file):
                if path is not None and path.is_file():
                    self.env.note_dependency(str(path))  # type: ignore[attr-defined]

    def check(self, measurement_id: str, set_id: str = "") -> Lookup | None:
        """Find a measurement of this machine's set (or ``set_id``), warning if it is missing or stale."""
        lookup = self.data.find(measurement_id, set_id)
        self.use(lookup)
        wanted = set_id or self.data.current_id
        if lookup is None:
            self.warn(
                f"no result set {wanted!r} for {measurement_id!r}; sets: {', '.join(self.data.sets) or 'none'}",
                "missing",
            )
        elif lookup.measurement is None:
            self.warn(
                f"measurement {measurement_id!r} missing from result set {wanted!r}; "
                f"run `{how_to_measure(measurement_id)}` to measure it",
                "missing",
            )
        elif lookup.result_set.id == self.data.current_id:
            changed = self.data.stale_sources(lookup.measurement)
            if changed:
                self.warn(
                    f"measurement {measurement_id!r} is stale: {', '.join(changed)} changed since it was "
                    f"measured; run `{how_to_measure(measurement_id)}`",
                    "stale",
                )
        return lookup

    def set_title(self, set_id: str) -> str:
        result_set = self.data.sets[set_id]
        mark = " (this machine)" if set_id == self.data.current_id else ""
        return result_set.label + mark

    def current_lesson(self, lesson: str) -> tuple[ResultSet, dict] | None:
        """This machine's stored file of ``lesson`` (empty if none), recorded as a dependency of the page."""
        result_set = self.data.current
        if result_set is None:
            return None
        file = result_set.lesson_file(lesson)
        self.use(Lookup(result_set, None, file if file.is_file() else None))
        return result_set, result_set.lessons.get(lesson, {})

    def warn(self, message: str, subtype: str) -> None:
        logger.warning("course: " + message, location=self.get_location(), type="course", subtype=subtype)  # type: ignore[attr-defined]


def how_to_measure(measurement_id: str) -> str:
    """The command that (re)measures a measurement: its lesson's, or the benchmarks'."""
    prefix = measurement_id.split("/", 1)[0]
    if prefix[:2].isdigit():
        return f"invoke lesson {int(prefix[:2])}"
    return "invoke bench"


def value_text(measurement: dict, field: str, in_ns: bool) -> str:
    """The text of one figure, or why there is none."""
    if measurement.get("status") == "skipped":
        return f"not run ({measurement.get('reason', 'no reason given')})"
    if measurement.get("status") == "failed":
        return f"failed ({measurement.get('reason', 'see the failure above')})"
    raw = measurement.get(field)
    if raw is None:
        return f"no {field}"
    if in_ns:
        ns = measurement.get(f"{field}_ns") or to_ns(raw, measurement.get("tsc_hz"))
        return format_value(ns, "ns") if ns is not None else "no TSC rate"
    return format_value(raw, measurement.get("unit", "ticks"))


class MeasureRole(_CourseMixin, SphinxRole):
    """``{measure}`[set@]id[:field][-ns]```: one stored figure, inline."""

    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        target = self.text.strip()
        set_id, _, rest = target.rpartition("@")
        measurement_id, _, field = rest.partition(":")
        field = field or "min"
        in_ns = field == "ns" or field.endswith("-ns")
        field = "min" if field == "ns" else field.removesuffix("-ns")
        if field not in FIELDS and field not in ("samples", "overhead"):
            self.warn(f"unknown field {field!r} in {target!r}; use one of {', '.join(FIELDS)}", "syntax")
            return [nodes.problematic(self.rawtext, self.rawtext)], []
        lookup = self.check(measurement_id, set_id)
        if lookup is None or lookup.measurement is None:
            return [nodes.problematic(self.rawtext, f"[missing: {target}]")], []
        measurement = lookup.measurement
        if field == "samples":
            text = f"{measurement.get('samples', 0):,}"
        elif field == "overhead":
            text = format_value((measurement.get("overhead") or {}).get("ticks", 0), "ticks")
        else:
            text = value_text(measurement, field, in_ns)
        node = course_value(
            self.rawtext,
            text,
            title=describe(lookup, field),
            measurement=measurement_id,
            set_id=lookup.result_set.id,
            field=field + ("-ns" if in_ns else ""),
        )
        return [node], []


def _entries(content: list[str]) -> list[tuple[str, str]]:
    """Directive content lines ``<measurement id or glob> [label]``."""
    entries = []
    for line in content:
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, label = line.strip().partition(" ")
            entries.append((key, label.strip()))
    return entries


class _MeasurementsDirective(_CourseMixin, SphinxDirective):
    has_content = True

    def rows(self) -> list[tuple[str, str]]:
        """Each measurement named (globs expanded over every shown set), with its label."""
        known = sorted(
            {key for s in self.data.shown() for data in s.lessons.values() for key in data.get("measurements", {})}
        )
        rows: list[tuple[str, str]] = []
        for key, label in _entries(self.content):
            if any(ch in key for ch in "*?["):
                matches = fnmatch.filter(known, key)
                if not matches:
                    self.warn(f"no measurement matches {key!r}", "missing")
                rows += [(match, match.split("/", 1)[1]) for match in matches]
            else:
                rows.append((key, label or key.split("/", 1)[1]))
        if not rows:
            self.warn("no measurements listed; put one measurement id per line in the directive", "syntax")
        return rows

    def lookups(self, key: str) -> list[tuple[str, Lookup | None]]:
        """The measurement in every shown set; only this machine's set must have it (unless ``:optional:``)."""
        found = []
        for result_set in self.data.shown():
            if result_set.id == self.data.current_id and "optional" not in self.options:
                found.append((result_set.id, self.check(key)))
            else:
                lookup = self.data.find(key, result_set.id)
                self.use(lookup)
                found.append((result_set.id, lookup))
        if not self.data.current:
            self.check(key)  # warns: there is nothing of this machine to show
        return found


class CourseTable(_MeasurementsDirective):
    """Measurements down, result sets across: min / median and the spread, optionally in nanoseconds.

    With ``:field:``, each cell shows that one field (a benchmark's ``value``, a peer's ``mean``),
    and its goal when the measurement has one.
    """

    option_spec: ClassVar[dict] = {
        "caption": directives.unchanged,
        "ns": directives.flag,
        "field": lambda arg: directives.choice(arg, tuple(FIELDS)),
        # Figures that only some runs make (invoke bench): missing is "not measured", not a warning.
        "optional": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        rows = self.rows()
        looked = [(key, label, self.lookups(key)) for key, label in rows]
        # One column per set: the reference and this machine always, the others where they have a figure.
        keep = [
            result_set.id
            for result_set in self.data.shown()
            if result_set.kind == "reference"
            or result_set.id == self.data.current_id
            or any(dict(found)[result_set.id] and dict(found)[result_set.id].measurement for _, _, found in looked)
        ]
        in_ns = "ns" in self.options
        table = nodes.table(classes=["course-table"])
        if self.options.get("caption"):
            table += nodes.title(text=self.options["caption"])
        group = nodes.tgroup(cols=1 + len(keep))
        table += group
        for _ in range(1 + len(keep)):
            group += nodes.colspec(colwidth=1)
        head = nodes.thead()
        group += head
        head += self._row(["measurement", *(self.set_title(i) for i in keep)])
        body = nodes.tbody()
        group += body
        field = self.options.get("field")
        for key, label, found in looked:
            cells: list[nodes.Node | str] = [nodes.literal(text=label)]
            for set_id, lookup in found:
                if set_id in keep:
                    cells.append(self._single(key, lookup, field, in_ns) if field else self._cell(key, lookup, in_ns))
            body += self._row(cells)
        if field:
            return [table]
        note = nodes.paragraph(
            classes=["course-table-note"],
            text=(
                "Each cell: minimum / median of the samples, the stamp pair's own cost subtracted, and below "
                "them the 90th and 99th percentiles (the spread). "
                "The 2000 figures are Rubini's (Linux Magazine, 2000): a best-of-N on a Pentium III "
                "whose TSC counted core clock cycles; today's invariant TSC ticks at a fixed rate."
            ),
        )
        return [table, note]

    def _cell(self, key: str, lookup: Lookup | None, in_ns: bool) -> nodes.Node:
        if lookup is None or lookup.measurement is None:
            return nodes.Text("—")
        measurement = lookup.measurement
        if measurement.get("status") != "ok":
            return nodes.emphasis(text=value_text(measurement, "min", False))
        text = value_text(measurement, "min", False)
        if measurement.get("median") is not None:
            text += " / " + value_text(measurement, "median", False).split(" ")[0]
        if in_ns and (measurement.get("tsc_hz") or measurement.get("min_ns")):
            text += f" ({value_text(measurement, 'min', True)})"
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
        if measurement.get("goal") is not None:
            met = "met" if measurement[field] <= measurement["goal"] else "not met"
            text += f" (goal ≤ {format_value(measurement['goal'], measurement['unit'])}: {met})"
        return course_value(
            text, text, title=describe(lookup, field), measurement=key, set_id=lookup.result_set.id, field=field
        )

    @staticmethod
    def _row(cells: list) -> nodes.row:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            paragraph = nodes.paragraph()
            paragraph += cell if isinstance(cell, nodes.Node) else nodes.Text(cell)
            entry += paragraph
            row += entry
        return row


class CourseChart(_MeasurementsDirective):
    """Bars of min (or median) across result sets; with ``:histogram:``, one measurement's distribution."""

    option_spec: ClassVar[dict] = {
        "caption": directives.unchanged,
        "field": lambda arg: directives.choice(arg, ("min", "median")),
        "histogram": directives.flag,
        "ns": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        caption = self.options.get("caption", "")
        svg = self._histogram(caption) if "histogram" in self.options else self._bars(caption)
        if svg is None:
            return []
        figure = nodes.container(classes=["course-chart"])
        figure += nodes.raw("", svg, format="html")
        if caption:
            figure += nodes.paragraph(text=caption, classes=["course-chart-caption"])
        return [figure]

    def _histogram(self, caption: str) -> str | None:
        rows = self.rows()
        if len(rows) != 1:
            self.warn("a histogram shows exactly one measurement", "syntax")
            return None
        lookup = self.check(rows[0][0])
        if lookup is None or lookup.measurement is None or "histogram" not in lookup.measurement:
            return None
        measurement = lookup.measurement
        return charts.histogram_chart(
            measurement["histogram"],
            measurement.get("unit", "ticks"),
            caption or rows[0][0],
            subtracted=(measurement.get("overhead") or {}).get("ticks", 0),
        )

    def _bars(self, caption: str) -> str:
        field = self.options.get("field", "min")
        in_ns = "ns" in self.options
        bars = []
        colours = {result_set.id: index for index, result_set in enumerate(self.data.shown())}
        for key, label in self.rows():
            for set_id, lookup in self.lookups(key):
                measurement = lookup.measurement if lookup else None
                series = self.set_title(set_id)
                colour = colours[set_id]
                if measurement is None:
                    continue
                if measurement.get("status") != "ok":
                    bars.append(charts.Bar(label, series, None, value_text(measurement, field, in_ns), colour=colour))
                    continue
                value = measurement.get(field)
                if value is None:  # the 2000 figures are minima only
                    continue
                if in_ns:
                    value = measurement.get(f"{field}_ns") or to_ns(value, measurement.get("tsc_hz"))
                bars.append(
                    charts.Bar(
                        label,
                        series,
                        value,
                        value_text(measurement, field, in_ns),
                        describe(lookup, field),
                        colour,
                        unit="ns" if in_ns else measurement.get("unit", "ticks"),
                    )
                )
        return charts.bar_chart(bars, caption or "measurements")


class CourseOutput(_CourseMixin, SphinxDirective):
    """A captured block of output (a run, a disassembly), with the command that produced it."""

    required_arguments = 1
    option_spec: ClassVar[dict] = {"set": directives.unchanged, "language": directives.unchanged}

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
        block = nodes.literal_block(capture["text"], capture["text"], language=self.options.get("language", "text"))
        container = nodes.container(classes=["literal-block-wrapper", "course-output"], literal_block=True)
        caption = nodes.caption(
            text=f"$ {capture.get('command', '')}   [{result_set.label}, {capture.get('measured_at', '')}]"
        )
        container += caption
        container += block
        return [container]


class CourseFailures(_CourseMixin, SphinxDirective):
    """The failures of a lesson's last run on this machine, each with its log; nothing when it went well."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        found = self.current_lesson(self.arguments[0])
        if found is None:
            return []
        out: list[nodes.Node] = []
        for failure in found[1].get("failures", []):
            box = nodes.admonition(classes=["course-failure", "error"])
            box += nodes.title(text=f"Failed: {failure['step']} {failure['what']}")
            box += nodes.paragraph(
                text=f"{failure['message']} ({failure['at']}). "
                "Figures below from earlier runs are kept with their own dates."
            )
            if failure.get("log"):
                box += nodes.literal_block(failure["log"], failure["log"])
            out.append(box)
        return out


class CourseMachine(_CourseMixin, SphinxDirective):
    """One result set's page: its machine's full provenance and every figure it holds."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        result_set = self.data.sets.get(self.arguments[0])
        if result_set is None:
            self.warn(f"no result set {self.arguments[0]!r}", "missing")
            return []
        for name in result_set.lessons:
            self.use(Lookup(result_set, None, result_set.lesson_file(name)))
        self.use(Lookup(result_set, None, None))
        out: list[nodes.Node] = []
        if result_set.id == self.data.current_id:
            out.append(nodes.paragraph(text="This is the machine that built this site."))
        fields = nodes.field_list()
        for name, value in _provenance(result_set):
            field = nodes.field()
            field += nodes.field_name(text=name)
            body = nodes.field_body()
            body += nodes.paragraph(text=value)
            field += body
            fields += field
        out.append(fields)
        if result_set.machine.get("mitigations"):
            out.append(nodes.rubric(text="CPU vulnerabilities and their mitigations"))
            out.append(mitigation_list(result_set.machine))
        out.append(nodes.rubric(text="Every figure of this set"))
        rows = []
        for lesson in sorted(result_set.lessons):
            for key, measurement in sorted(result_set.lessons[lesson].get("measurements", {}).items()):
                if measurement.get("status") != "ok":
                    rows.append([key, measurement.get("status", ""), "", "", measurement.get("reason", "")[:80], ""])
                    continue
                field = "min" if measurement.get("min") is not None else "value" if "value" in measurement else "mean"
                rows.append(
                    [
                        key,
                        measurement.get("unit", ""),
                        value_text(measurement, field, False),
                        value_text(measurement, "median", False) if measurement.get("median") is not None else "",
                        f"{measurement['samples']:,}" if isinstance(measurement.get("samples"), int) else "",
                        str(measurement.get("measured_at", ""))[:19],
                    ]
                )
        out.append(_simple_table(["measurement", "unit", "min (or value)", "median", "samples", "measured"], rows))
        return out


def mitigation_list(machine: dict) -> nodes.bullet_list:
    """Each file of /sys/devices/system/cpu/vulnerabilities as the machine reported it."""
    items = nodes.bullet_list()
    for name, state in (machine.get("mitigations") or {}).items():
        item = nodes.paragraph()
        item += nodes.literal(text=name)
        item += nodes.Text(f": {state}")
        items += nodes.list_item("", item)
    return items


class CourseMitigations(_CourseMixin, SphinxDirective):
    """This machine's CPU vulnerabilities and what its kernel does about each, beside its figures."""

    def run(self) -> list[nodes.Node]:
        result_set = self.data.current
        if result_set is None:
            return []
        self.use(Lookup(result_set, None, None))
        if not result_set.machine.get("mitigations"):
            return [nodes.paragraph(text=f"{result_set.label} recorded no vulnerability files.")]
        lead = nodes.paragraph(
            text=f"As {result_set.label} reported them when it was measured (/sys/devices/system/cpu/vulnerabilities):"
        )
        return [lead, mitigation_list(result_set.machine)]


def machine_summary(result_set) -> dict[str, str]:
    """The short description of a set's machine used in the overview."""
    machine = result_set.machine
    mitigations = machine.get("mitigations") or {}
    states = [state.split(":")[0].split(";")[0].strip() for state in mitigations.values()]
    counted = ", ".join(f"{states.count(s)} {s.lower()}" for s in dict.fromkeys(states)) if states else "not recorded"
    rate = machine.get("tsc_hz")
    invariant = {"constant_tsc", "nonstop_tsc"} <= set(machine.get("tsc_flags", []))
    return {
        "cpu": machine.get("cpu_model", "?"),
        "kernel": machine.get("kernel_release", "?"),
        "virtualization": machine.get("virtualization", "?"),
        "tsc": (f"{rate / 1e9:.2f} GHz" if rate else "?") + (", invariant" if invariant else ""),
        "mitigations": counted,
    }


class CourseHardware(_MeasurementsDirective):
    """Every result set in one table: the machine, and chosen figures in ticks, in ns and against 2000.

    Content lines name the figures to compare (``<measurement id> <label>``), as in ``course-table``.
    """

    def run(self) -> list[nodes.Node]:
        figures = self.rows()
        reference = next((s for s in self.data.shown() if s.kind == "reference"), None)
        headers = ["set", "CPU", "kernel", "virtualization", "TSC", "mitigations"]
        headers += [f"{label} (ticks / ns / vs 2000)" for _, label in figures]
        table = _simple_table(headers, [])
        body = table.next_node(nodes.tbody)
        for result_set in self.data.shown():
            self.use(Lookup(result_set, None, None))
            summary = machine_summary(result_set)
            link = addnodes.pending_xref(
                "",
                nodes.inline(text=self.set_title(result_set.id)),
                refdomain="std",
                reftype="doc",
                reftarget=f"/{self.config.course_machines_page}/{result_set.id}",
                refexplicit=True,
                refdoc=self.env.docname,
            )
            cells: list = [
                link,
                summary["cpu"],
                summary["kernel"],
                summary["virtualization"],
                summary["tsc"],
                summary["mitigations"],
            ]
            for key, _ in figures:
                lookup = self.data.find(key, result_set.id)
                self.use(lookup)
                cells.append(self._compare(lookup, reference.measurement(key) if reference else None, reference))
            body += CourseTable._row(cells)
        note = nodes.paragraph(
            classes=["course-table-note"],
            text=(
                "vs 2000: how many times faster than the article's figure for the same call, comparing nanoseconds "
                "(ticks are not comparable: the Pentium III counted core cycles, an invariant TSC counts time). "
                "Emulated and icount ticks have no nanoseconds and are not compared."
            ),
        )
        return [table, note]

    def _compare(self, lookup: Lookup | None, then: dict | None, reference) -> str:
        measurement = lookup.measurement if lookup else None
        if not measurement:
            return "—"
        if measurement.get("status") != "ok":
            return value_text(measurement, "min", False)
        text = value_text(measurement, "min", False)
        now_ns = to_ns(measurement.get("min"), measurement.get("tsc_hz"))
        if now_ns is not None:
            text += f" / {format_value(now_ns, 'ns')}"
            then_ns = to_ns(then.get("min"), then.get("tsc_hz")) if then else None
            if then_ns and lookup and lookup.result_set is not reference and now_ns > 0:
                text += f" / {then_ns / now_ns:.1f} times faster"
        return text


def _provenance(result_set) -> list[tuple[str, str]]:
    machine = result_set.machine
    rows = [("set id", result_set.id), ("kind", result_set.kind)]
    if result_set.info.get("citation"):
        rows.append(("source", result_set.info["citation"]))
    for key, name in (
        ("cpu_model", "CPU"),
        ("microcode", "microcode"),
        ("tsc_hz", "TSC rate (Hz)"),
        ("tsc_flags", "TSC flags"),
        ("kernel_release", "kernel"),
        ("virtualization", "virtualization"),
        ("compiler", "compiler"),
        ("os", "system"),
    ):
        value = machine.get(key)
        if value in (None, "", []):
            continue
        if isinstance(value, list):
            value = ", ".join(value)
        rows.append((name, f"{value:,}" if isinstance(value, int) else str(value)))
    rows.append(("last measured", result_set.updated() or "unknown"))
    return rows


#: What a reader must know about kernel figures, by where they were measured.
KERNEL_RUN_TEXT = {
    "tcg": (
        "These kernel figures come from software emulation (QEMU TCG): the module ran in a virtual machine "
        "whose processor is a program. Its ticks count the emulator's time, not CPU cycles, and are not "
        "comparable with the user-space figures of this machine or with the 2000 ones. What they still show "
        "is relative: which variant runs the longer path, and by roughly how much."
    ),
    "tcg-icount": (
        "These kernel figures come from software emulation in deterministic mode (QEMU -icount): the virtual "
        "clock advances with each guest instruction, so a tick is proportional to instructions executed and "
        "the same module gives the same figures on every boot. They measure path length, not time."
    ),
    "kvm": (
        "These kernel figures come from a virtual machine with hardware virtualisation (KVM): rdtsc does not "
        "leave the guest, so the ticks are the host processor's own, as in user space."
    ),
    "host-kernel": (
        "These kernel figures come from the modules loaded into the running kernel of the measured machine, "
        "as the article did."
    ),
}


class CourseKernelRun(_CourseMixin, SphinxDirective):
    """Where a lesson's kernel figures were measured (VM and acceleration, or host), said plainly."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        lesson = self.arguments[0]
        found = self.current_lesson(lesson)
        if found is None:
            return []
        result_set, data = found
        run = data.get("kernel_run")
        if not run:
            self.warn(f"no kernel run recorded for {lesson!r} in result set {result_set.id!r}", "missing")
            return []
        box = nodes.admonition(classes=["course-kernel-run", "note"])
        box += nodes.title(text="Where these kernel figures come from")
        if "unavailable" in run:
            box += nodes.paragraph(text=f"Not run on {result_set.label}: {run['unavailable']}")
            return [box]
        acceleration = run.get("acceleration", "")
        text = KERNEL_RUN_TEXT.get(acceleration, f"Measured with {acceleration}.")
        box += nodes.paragraph(text=text)
        details = f"Runner: {run.get('runner')}; kernel: {run.get('guest_kernel')}; acceleration: {acceleration}"
        if run.get("why"):
            details += f" ({run['why']})"
        box += nodes.paragraph(text=details + ".")
        return [box]


def tick_context(machine: dict) -> list[str]:
    """What a tick means on ``machine``, in sentences a reader can check against /proc/cpuinfo."""
    flags = set(machine.get("tsc_flags", []))
    rate = machine.get("tsc_hz")
    rate_text = f"{rate / 1e9:.2f} GHz" if rate else "an unmeasured rate"
    out = []
    if {"constant_tsc", "nonstop_tsc"} <= flags:
        out.append(
            f"The time-stamp counter of {machine.get('cpu_model', 'this CPU')} is invariant (constant_tsc, "
            f"nonstop_tsc): it ticks at a fixed {rate_text} whatever the core's clock, so a tick is a slice of "
            "time, not a cycle. The article's Pentium III counted core cycles: compare nanoseconds, or ratios "
            "within one machine, rather than raw ticks."
        )
    else:
        out.append(
            f"The time-stamp counter here is not marked invariant: ticks may follow the core clock ({rate_text} "
            "measured), as the article's did, and change with frequency scaling."
        )
    if machine.get("hypervisor"):
        out.append(
            f"This machine is a virtual machine ({machine.get('virtualization', 'vm')}): the hypervisor may offset "
            "or scale the counter, and other guests share the CPU, which widens the distribution's tail."
        )
    else:
        out.append("This machine runs on bare hardware: no hypervisor stands between the program and the counter.")
    return out


class CourseContext(_CourseMixin, SphinxDirective):
    """What a tick means on the machine of this page's figures (invariant TSC, hypervisor), said plainly."""

    def run(self) -> list[nodes.Node]:
        result_set = self.data.current
        if result_set is None:
            return []
        self.use(Lookup(result_set, None, None))
        box = nodes.admonition(classes=["course-context", "note"])
        box += nodes.title(text=f"What a tick is on {result_set.label}")
        for sentence in tick_context(result_set.machine):
            box += nodes.paragraph(text=sentence)
        return [box]


class CourseRunReport(_CourseMixin, SphinxDirective):
    """The execution report: each lesson's last run (when, where, how long, cached steps, failures)."""

    def run(self) -> list[nodes.Node]:
        result_set = self.data.current
        if result_set is None:
            return [nodes.paragraph(text="No result set of this machine yet: run invoke generate.")]
        out: list[nodes.Node] = []
        rows = []
        for name, data in sorted(result_set.lessons.items()):
            if "steps" not in data:
                continue
            self.use(Lookup(result_set, None, result_set.lesson_file(name)))
            where = data.get("runner", "host")
            kernel = data.get("kernel_run") or {}
            if kernel.get("acceleration"):
                where += f" ({kernel['acceleration']}, {kernel.get('guest_kernel')})"
            elif kernel.get("unavailable"):
                where += f" (not run: {kernel['unavailable']})"
            seconds = sum(step["seconds"] for step in data["steps"])
            cached = sum(1 for step in data["steps"] if step.get("cached"))
            failures = data.get("failures", [])
            rows.append(
                [
                    name,
                    data.get("measured_at", ""),
                    where,
                    f"{seconds:.2f} s",
                    f"{cached} of {len(data['steps'])}",
                    str(len(failures)) if failures else "none",
                ]
            )
        out.append(_simple_table(["lesson", "last run", "where", "time in steps", "steps reused", "failures"], rows))
        return out


def _simple_table(headers: list[str], rows: list[list[str]]) -> nodes.table:
    table = nodes.table(classes=["course-table"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for _ in headers:
        group += nodes.colspec(colwidth=1)
    head, body = nodes.thead(), nodes.tbody()
    group += head
    group += body
    head += CourseTable._row(headers)
    for row in rows:
        body += CourseTable._row(row)
    return table
