"""The machines: a page per result set, the overview comparing them, the mitigation list."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

from docutils import nodes
from docutils.utils import normalize_language_tag
from docutils.utils.smartquotes import educate_tokens, smartchars
from docutils.writers._html_base import HTMLTranslator
from sphinx.util.docutils import SphinxDirective

from course.kernel import guest_kernels
from course.publish.sphinxext import depends
from course.publish.sphinxext.base import CourseMixin, MeasurementsDirective, simple_table, table_row, value_text
from course.publish.sphinxext.context import host_kind, machine_link
from course.publish.sphinxext.data import Lookup, format_value, shown_from
from course.publish.sphinxext.figures import real_ns
from course.publish.sphinxext.setdata import cell_text_of, course_data_link, figure_anchor, file_names, measurements
from course.results import fingerprint
from course.results.store import ResultSet


class CourseMachine(CourseMixin, SphinxDirective):
    """One result set's page: its machine's full provenance and every figure it holds."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        result_set = self.data.sets.get(self.arguments[0])
        if result_set is None:
            self.warn(f"no result set {self.arguments[0]!r}", "missing")
            return []
        with shown_from(result_set):
            return self._page(result_set)

    def _page(self, result_set: ResultSet) -> list[nodes.Node]:
        # Reached from the machines overview's list and from every figure's link, not from the sidebar: with a
        # class of 60, a toctree of the machine pages would list them all on every page of the site.
        self.env.metadata[self.env.docname]["orphan"] = True
        for name in result_set.lessons:
            self.use(Lookup(result_set, None, result_set.lesson_file(name)))
        self.use_set_info(result_set)  # its provenance: the TSC rate in hertz, the date
        out: list[nodes.Node] = []
        if result_set.id == self.data.current_id:
            # Whether it is itself a VM, from its provenance: a reader must not take a guest's ticks for bare metal.
            said = host_kind(result_set.id, result_set.machine)
            if self.data.current_is_this_machine:
                out.append(nodes.paragraph(text=f"This is the machine that built this site: {said}."))
            else:  # the newest measured set stands in: worded so that NameTheMachine leaves it as it is
                sentence = nodes.paragraph(
                    text="The machine that built this site has no result set yet: the site shows this one, the "
                    f"newest measured set ({said}), in its place. "
                )
                sentence += nodes.literal("invoke generate", "invoke generate", classes=["course-command"])
                sentence += nodes.Text(" measures that machine into a set of its own.")
                out.append(sentence)
        fields = nodes.field_list()
        for name, value in provenance(result_set):
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
        out += kernel_runs(result_set)
        out.append(nodes.rubric(text="Every figure of this set"))
        out.append(self._downloads(result_set))
        headers = ["measurement", "min (or value)", "in ns", "median", "median in ns", "samples", "measured"]
        rows, anchors, reasons = [], [], set()
        for _, key, measurement in measurements(result_set):
            anchors.append(figure_anchor(key))
            when = str(measurement.get("measured_at", ""))[:19]
            if measurement.get("status") != "ok":  # "not run (why)" or "failed (why)" where the figure would be
                reasons.add(len(rows))
                rows.append([key, value_text(measurement, "min", False), "", "", "", "", when])
                continue
            field = "min" if measurement.get("min") is not None else "value" if "value" in measurement else "mean"
            # The ns a lesson shows for a figure are on its row too: only for real ticks (and ns themselves).
            first_ns = real_ns(measurement, field)
            rows.append(
                [
                    key,
                    value_text(measurement, field, False),
                    format_value(first_ns, "ns") if first_ns is not None else "",
                    cell_text_of(measurement, "median"),
                    cell_text_of(measurement, "median-ns"),
                    f"{measurement['samples']:,}" if isinstance(measurement.get("samples"), int) else "",
                    when,
                ]
            )
        # A column empty for the whole set (the article printed no medians) only takes a phone's width.
        used = [i for i, header in enumerate(headers) if i == 0 or any(row[i] for row in rows)]
        table = simple_table([headers[i] for i in used], [])
        table["classes"].append("course-figures")
        # Each row is the target of the links of its figure on the lessons' pages, and the cells of a
        # median or of nanoseconds the targets of links to those (on a phone, a row is wider than the screen).
        cell_fields = {"in ns": "min-ns", "median": "median", "median in ns": "median-ns"}
        fields = [cell_fields.get(headers[i], "") for i in used]
        body = [
            [(row[i], f"{anchor}~{field}" if field and row[i] else "") for i, field in zip(used, fields, strict=True)]
            for row, anchor in zip(rows, anchors, strict=True)
        ]
        rows_html = body_rows(anchors, body, self._smart_text(), reasons)
        table.next_node(nodes.tbody).append(nodes.raw("", rows_html, format="html"))
        out.append(table)
        return out

    def _smart_text(self) -> Callable[[str], str]:
        """What Sphinx's smart quotes would make of a cell's text (the rows are HTML, which they skip)."""
        language = self.state.document.settings.language_code
        if not self.config.smartquotes or not any(tag in smartchars.quotes for tag in normalize_language_tag(language)):
            return str
        action = self.config.smartquotes_action

        def smart(text: str) -> str:
            if not any(mark in text for mark in _SMART_MARKS):  # most cells: a figure, a date, an id
                return text
            return "".join(educate_tokens([("plain", text)], attr=action, language=language))

        return smart

    def _downloads(self, result_set: ResultSet) -> nodes.paragraph:
        """Links to the set's measurements as files; ``_link_values`` turns each target into a URI."""
        paragraph = nodes.paragraph(text="Download every measurement of this set: ", classes=["course-data"])
        for number, (form, name) in enumerate(file_names(result_set.id).items()):
            if number:
                paragraph += nodes.Text(" or ")
            paragraph += course_data_link(form, form, target=f"{self.config.course_machines_page}/{name}")
        paragraph += nodes.Text(" (one row a measurement, with its unit, statistics, and when and how it was taken).")
        return paragraph


class CourseMachinePages(CourseMixin, SphinxDirective):
    """A link to every set's page, titled as the page is: the machine pages are in no toctree (see ``_page``)."""

    def run(self) -> list[nodes.Node]:
        items = nodes.bullet_list(classes=["course-machine-pages"])
        for result_set in self.data.with_pages():
            self.use(Lookup(result_set, None, None))  # its label titles the link: a new label, a new list
            paragraph = nodes.paragraph()
            paragraph += machine_link(self, result_set.id, self.set_title(result_set.id).strip() or result_set.id)
            items += nodes.list_item("", paragraph)
        if not items.children:
            self.use(None)  # listed again when a set appears
            return [nodes.paragraph(text="No result set is stored yet.")]
        return [items]


def body_rows(
    anchors: list[str],
    rows: list[list[tuple[str, str]]],
    smart: Callable[[str], str] = str,
    reasons: Collection[int] = (),
) -> str:
    """A table's body rows as the HTML writer would write their nodes: each row with its id, each cell (text, id).

    The figures of 60 sets are some 20,000 rows: as nodes, every transform of every build walked
    them (some 400,000 nodes), and the pages took most of a clean build. As HTML they are one node; the
    text is escaped as the writer escapes it, and the search still indexes it (Sphinx strips the tags).
    A row of ``reasons`` says why it has no figure: its reason spans the figure columns, and wraps there
    (figures never wrap: a reason of 288 characters in one line made the table three screens wide).
    """
    lines = []
    for number, (anchor, cells) in enumerate(zip(anchors, rows, strict=True)):
        parity = "row-even" if number % 2 == 0 else "row-odd"  # the header row is the first, odd
        tds = [f"<td{_id(cell_id)}><p>{_escaped(smart(text))}</p></td>" for text, cell_id in cells]
        if number in reasons and len(cells) > 3:
            reason = _escaped(smart(cells[1][0]))
            tds[1:-1] = [f'<td class="course-reason" colspan="{len(cells) - 2}"><p>{reason}</p></td>']
        lines.append(f'<tr class="{parity}"{_id(anchor)}>' + "\n".join(tds) + "\n</tr>\n")
    return "".join(lines)


def _escaped(text: str) -> str:
    return text.translate(HTMLTranslator.special_characters)


#: What smart quotes may change in a text: quotes, ellipses, dashes, backticks, and backslash escapes.
_SMART_MARKS = ("'", '"', "..", ". .", "--", "`", "\\")

#: What the writer makes a space in an attribute's value.
_WHITESPACE = re.compile(r"[\n\r\t\v\f]")


def _id(anchor: str) -> str:
    return f' id="{_escaped(_WHITESPACE.sub(" ", anchor))}"' if anchor else ""


def kernel_runs(result_set: ResultSet) -> list[nodes.Node]:
    """Where each kernel lesson of the set ran, with the runner's own record of why.

    A lesson says why in a sentence; the record (a KVM probe's last console line, often an
    assertion in QEMU's source) is kept here, for whoever wants to repeat or report it.
    """
    rows = []
    for name, data in sorted(result_set.lessons.items()):
        run = data.get("kernel_run") or {}
        if not run:
            continue
        why = run.get("why") or run.get("unavailable") or run.get("failed") or ""
        # Literal: QEMU's words as printed (quotes and all), to be searched for or quoted in a bug report.
        record = nodes.literal(text=why) if why else ""
        rows.append([name, run.get("runner", ""), run.get("acceleration", ""), run.get("guest_kernel", ""), record])
    if not rows:
        return []
    headers = ["lesson", "runner", "acceleration", "guest kernel", "why, as the runner recorded it"]
    out = [nodes.rubric(text="Where the kernel figures were measured"), simple_table(headers, rows)]
    guest = guest_machine(result_set)
    if guest:
        out.append(nodes.rubric(text="The guest, as it reported itself"))
        out.append(
            nodes.paragraph(
                text="The kernel figures, and the user-space figures the guest measured beside them, come from "
                "this guest: its own kernel, the CPU it was shown and the mitigations its kernel applied, "
                "not this machine's."
            )
        )
        fields = [("CPU", guest.get("cpu_model")), ("kernel", guest.get("kernel_release"))]
        fields.append(("TSC flags", ", ".join(guest.get("tsc_flags", []))))
        out.append(simple_table(["", "the guest's"], [[name, str(value or "?")] for name, value in fields]))
        if guest.get("mitigations"):
            out.append(mitigation_list(guest))
    return out


def guest_machine(result_set: ResultSet) -> dict:
    """The guest's own provenance, as the most recent kernel lesson of the set recorded it (or nothing)."""
    runs = [data.get("kernel_run") or {} for _, data in sorted(result_set.lessons.items())]
    guests = [run["guest_machine"] for run in runs if run.get("guest_machine")]
    return guests[-1] if guests else {}


def only_in_guest(result_set: ResultSet) -> bool:
    """Every lesson of the set was measured in a VM (an icount set): its provenance is the guest's."""
    runners = {data.get("runner") for data in result_set.lessons.values()}
    return runners == {"vm"} and bool(guest_machine(result_set))


def mitigation_list(machine: dict) -> nodes.bullet_list:
    """Each file of /sys/devices/system/cpu/vulnerabilities as the machine reported it."""
    items = nodes.bullet_list()
    for name, state in (machine.get("mitigations") or {}).items():
        item = nodes.paragraph()
        item += nodes.literal(text=name)
        item += nodes.Text(f": {state}")
        items += nodes.list_item("", item)
    return items


class CourseMitigations(CourseMixin, SphinxDirective):
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


#: What a guest's TSC counts, where the set was measured only in a guest: its rate is no figure of the guest.
GUEST_CLOCKS = {
    "tcg-icount": "counts instructions (icount)",
    "tcg": "emulated (the host's time spent emulating)",
}


def machine_summary(result_set) -> dict[str, str]:
    """The short description of a set's machine used in the overview."""
    machine = result_set.machine
    clock = ""
    if only_in_guest(result_set):
        # Nothing of this set ran on the host's kernel: describe the guest it was measured in.
        guest = guest_machine(result_set)
        machine = {**guest, "virtualization": f"guest of {machine.get('virtualization', '?')}", "tsc_hz": None}
        accelerations = {(data.get("kernel_run") or {}).get("acceleration") for data in result_set.lessons.values()}
        clock = GUEST_CLOCKS.get(accelerations.pop(), "") if len(accelerations) == 1 else ""
    mitigations = machine.get("mitigations") or {}
    states = [state.split(":")[0].split(";")[0].strip() for state in mitigations.values()]
    counted = ", ".join(f"{states.count(s)} {s.lower()}" for s in dict.fromkeys(states)) if states else "not recorded"
    rate = machine.get("tsc_hz")
    invariant = {"constant_tsc", "nonstop_tsc"} <= set(machine.get("tsc_flags", []))
    return {
        "cpu": machine.get("cpu_model", "?"),
        "kernel": machine.get("kernel_release", "?"),
        "virtualization": machine.get("virtualization", "?"),
        "tsc": clock or tsc_text(rate) + (", invariant" if invariant else ""),
        "mitigations": counted,
    }


#: What the overview shows of a set's ``set.json`` beyond its identity: the TSC rate as it is written there.
SUMMARY_VIEW = "hardware-summary"
depends.register(SUMMARY_VIEW, lambda info: tsc_text((info.get("machine") or {}).get("tsc_hz")))

#: What the overview shows of one figure: its cell (the argument is the 2000 figure's ns, or "").
CELL_VIEW = "hardware-cell"


def tsc_text(rate: float | None) -> str:
    return f"{rate / 1e9:.2f} GHz" if rate else "?"


def hardware_cell(measurement: dict | None, then_ns: float | None) -> str:
    """ns and the ratio to 2000 (when ``then_ns`` is given); ticks (each set's page has them) only without ns.

    A 500 MHz CPU's cycles and an invariant TSC's ticks are different clocks: the overview sets only
    nanoseconds side by side, which also keeps its columns within a laptop's text column.
    """
    if not measurement:
        return "—"
    field = "min" if measurement.get("min") is not None else "value"  # the article's breakdown is one figure
    now_ns = real_ns(measurement, field) if measurement.get("status") == "ok" else None
    if now_ns is None:  # emulated and icount ticks, whatever rate was recorded; or "not run (why)"
        return value_text(measurement, field, False)
    text = format_value(now_ns, "ns")
    if then_ns and now_ns:
        text += f" / {then_ns / now_ns:.1f} times faster"
    return text


depends.register_figure(CELL_VIEW, lambda measurement, then: hardware_cell(measurement, float(then) if then else None))


class CourseHardware(MeasurementsDirective):
    """Every result set in one table: the machine, and chosen figures in ticks, in ns and against 2000.

    Content lines name the figures to compare (``<measurement id> <label>``), as in ``course-table``;
    ``<id>|<2000 id>`` takes the 2000 row's figure from another measurement of the reference set (the
    article's breakdown of a call it never timed). The mitigations follow the first figure, which they
    change first.
    """

    def run(self) -> list[nodes.Node]:
        figures = [(*key.partition("|")[::2], label) for key, label in self.rows()]
        reference = next((s for s in self.data.shown() if s.kind == "reference"), None)
        # The answer first: the figures against 2000, the mitigations beside the first, then what the machine was.
        # "vs 2000" only over a column where the article has a figure to be compared with.
        compared = {key: bool(reference and reference.measurement(then or key)) for key, then, _ in figures}
        # Each machine's best (its minimum, as the lessons' tables give first); a lesson's box gives the median.
        headers = ["set", *(f"{label} (best, ns{' / vs 2000' if compared[key] else ''})" for key, _, label in figures)]
        headers.insert(2, "mitigations")
        headers += ["kernel", "CPU (virtualization; TSC)"]  # one column: the table fits a laptop's text column
        table = simple_table(headers, [])
        table["classes"].append("course-machines-overview")  # its long headers get room on a phone (course.css)
        body = table.next_node(nodes.tbody)
        guests_apart = 0
        for result_set in self.data.shown():
            # By what the row shows, not by file: a rerun rewrites set.json and every sample, and often
            # leaves a minimum and the TSC rate to two decimals as they were.
            self.use_set_info(result_set, SUMMARY_VIEW)
            summary = machine_summary(result_set)
            cells: list = [machine_link(self, result_set.id, self.set_title(result_set.id))]
            for key, then_key, _ in figures:
                own = then_key if then_key and result_set is reference else key
                lookup = self.data.find(own, result_set.id)
                then = reference.measurement(then_key or key) if reference and result_set is not reference else None
                then_ns = real_ns(then, "min" if then.get("min") is not None else "value") if then else None
                argument = repr(then_ns) if then_ns else ""
                self.use_figure(lookup, own, CELL_VIEW, argument)
                cells.append(hardware_cell(lookup.measurement if lookup else None, then_ns))
            if only_in_guest(result_set) and all(cell == "—" for cell in cells[1:]):
                guests_apart += 1  # a row of dashes: its instruction counts are on its own page
                continue
            cells.insert(2, summary["mitigations"])
            cells += [summary["kernel"], f"{summary['cpu']} ({summary['virtualization']}; TSC {summary['tsc']})"]
            body += table_row(cells)
        note = nodes.paragraph(
            classes=["course-table-note"],
            text=(
                "best: each machine's fastest call (its minimum, as a lesson's answer gives it; the box "
                "'In this lesson' quotes the median). "
                "vs 2000: how many times faster than the article's figure for the same call, comparing nanoseconds "
                "(ticks are not comparable: the article's 500 MHz CPU counted core cycles, "
                "an invariant TSC counts time). "
                "Emulated and icount ticks have no nanoseconds and are not compared. " + self._left_out(guests_apart)
            ),
        )
        # On a phone its columns run past the screen: a hint right above says so while they do (course-tables.js).
        hint = nodes.paragraph(
            classes=["course-scroll-hint"],
            text=f"The table has {len(headers)} columns: it scrolls sideways, each set's name kept at the left.",
        )
        return [hint, table, note, *(self._mitigations_apart(*figures[0][::2]) if figures else [])]

    def _left_out(self, guests_apart: int = 0) -> str:
        """Which stored sets the table leaves out, and why: each still has its page below."""
        shown = {s.id for s in self.data.shown()}
        apart = [s for s in self.data.with_pages() if s.id not in shown]
        if not apart and not guests_apart:
            return f"The table shows every stored set ({len(shown)})."
        other_boots = sum(1 for s in apart if guest_kernels.other_hardware(s))
        reasons = []
        if guests_apart:
            reasons.append(
                f"{guests_apart} were measured only in a guest and hold none of these figures (their instruction "
                "counts are on their pages)"
            )
        if other_boots:
            reasons.append(
                f"{other_boots} are the guests of lesson 8's mitigations section, booted on another CPU model or "
                "with mitigations=off (beside the default guests here, they would show each kernel twice)"
            )
        if len(apart) > other_boots:
            reasons.append(f"{len(apart) - other_boots} were not chosen for the tables (invoke site --sets)")
        return (
            f"It shows {len(shown) - guests_apart} of the {len(shown) + len(apart)} stored sets: of the others, "
            + "; ".join(reasons)
            + ". Each has its page below."
        )

    def _mitigations_apart(self, key: str, label: str) -> list[nodes.Node]:
        """This machine's first figure against the other hosts', with the vulnerability files where they differ.

        Read from each machine's own files; which difference accounts for the gap is left to the reader.
        """
        current = self.data.current
        if current is None or only_in_guest(current):
            return []
        mine = current.measurement(key)
        mine_ns = real_ns(mine) if mine else None
        states = current.machine.get("mitigations") or {}
        others = []
        for other in self.data.shown():
            if other is current or other.kind == "reference" or only_in_guest(other):
                continue
            theirs = other.measurement(key)
            their_ns = real_ns(theirs) if theirs else None
            their_states = other.machine.get("mitigations") or {}
            if not mine_ns or not their_ns or not states or not their_states:
                continue
            differ = sorted(
                name for name in set(states) | set(their_states) if states.get(name) != their_states.get(name)
            )
            files = ", ".join(differ) if differ else "none"
            others.append(f"{other.label} ({format_value(their_ns, 'ns')}): {files}")
        if not mine_ns or not others:
            return []
        text = (
            f"{label[:1].upper() + label[1:]}: {format_value(mine_ns, 'ns')} on {self.set_title(current.id)}. "
            "The vulnerability files in which each other host's kernel differs from this machine's: "
            + "; ".join(others)
            + ". A mitigation that works on every crossing (lesson 8 lists what each does) changes this figure "
            "first; that a given difference accounts for a gap is our inference, not a measurement."
        )
        return [nodes.paragraph(classes=["course-table-note"], text=text)]


def provenance(result_set) -> list[tuple[str, str]]:
    machine = result_set.machine
    rows = [("set id", result_set.id), ("kind", result_set.kind)]
    if result_set.info.get("citation"):
        rows.append(("source", result_set.info["citation"]))
    # Which CPU beyond its model name (a generic "AMD EPYC" is two generations); not recorded by older sets.
    identity = [str(machine.get(key) or "unknown") for key in fingerprint.CPU_IDENTITY]
    if any(part != "unknown" for part in identity):
        machine = {**machine, "cpu_identity": ", ".join(identity)}
    for key, name in (
        ("cpu_model", "CPU"),
        ("cpu_identity", "CPU vendor, family, model, stepping"),
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
        if only_in_guest(result_set):
            # Every figure came from the guest (its own section below): these fields are the host's.
            name = f"host {name}"
        rows.append((name, f"{value:,}" if isinstance(value, int) else str(value)))
    rows.append(("last measured", result_set.updated() or "unknown"))
    return rows
