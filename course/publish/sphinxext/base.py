"""What the role and every directive share: the value node, data access, dependencies, warnings."""

from __future__ import annotations

import fnmatch
import re
import shlex
from html import escape, unescape
from typing import Any

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from course.kernel import guest_kernels
from course.publish.sphinxext import depends, published
from course.publish.sphinxext.data import CourseData, Lookup, data_of, format_value, to_ns
from course.results import code_parts, store
from course.results.store import ResultSet

logger = logging.getLogger(__name__)


class course_value(nodes.Inline, nodes.TextElement):
    """A stored value in running text; rendered as a link to its result set, with a hover note.

    ``data-measurement``, ``data-set`` and ``data-field`` (``min``, ``median-ns``, ...) name
    the stored figure the text shows, so a reader's tool (or the browser test) can check it.
    """


def visit_course_value(translator, node: course_value) -> None:
    href = node.get("href", "")
    # A figure is kept on one line; a sentence (why a figure was not run) wraps like the text around it.
    kind = "course-value course-value-words" if len(node.astext()) > 40 else "course-value"
    tag = f'<a class="{kind}" href="{escape(href)}"' if href else f'<span class="{kind}"'
    translator.body.append(
        f'{tag} title="{escape(node["title"])}" data-measurement="{escape(node["measurement"])}"'
        f' data-set="{escape(node["set_id"])}" data-field="{escape(node.get("field", "min"))}">'
    )


def depart_course_value(translator, node: course_value) -> None:
    translator.body.append("</a>" if node.get("href") else "</span>")


class CourseMixin:
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
        if lookup is None:
            return
        # By content, not by date: a rerun rewrites set.json (its TSC rate) and leaves most pages' figures alone.
        depends.note(self.env, lookup.result_set.path / store.SET_FILE, depends.SET)  # type: ignore[arg-type]
        if lookup.file is not None and lookup.measurement_id and lookup.result_set.kind != "reference":
            # One measurement, not its file: a student's rerun rewrites the file and keeps most figures as they were.
            # (A reference set's derived figures are computed from the others as it loads: its whole file counts.)
            depends.note_figure(self.env, lookup.file, depends.MEASUREMENT, lookup.measurement_id)  # type: ignore[arg-type]
        elif lookup.file is not None:
            depends.note(self.env, lookup.file)  # type: ignore[arg-type]

    def use_figure(self, lookup: Lookup | None, measurement_id: str, view: str, argument: str = "") -> None:
        """Record that this page shows ``view`` of one measurement only (see :func:`depends.note_figure`)."""
        if lookup is None:
            self.use(None)
            return
        self.use(Lookup(lookup.result_set, None, None))
        if lookup.file is not None:
            depends.note_figure(self.env, lookup.file, view, measurement_id, argument)  # type: ignore[arg-type]

    def use_set_info(self, result_set: ResultSet, view: str = depends.BYTES) -> None:
        """Record that this page shows more of ``set.json`` than its identity (``view``: the TSC rate, the date)."""
        self.use(Lookup(result_set, None, None))
        depends.note(self.env, result_set.path / store.SET_FILE, view)  # type: ignore[arg-type]

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
        elif self.data.checks_sources(lookup.result_set.id):
            for source_key in lookup.measurement.get("sources", {}):
                if code_parts.is_parts(source_key):  # the course's own Python: its change rereads the page
                    python = self.data.code_root / source_key.partition(code_parts.SEPARATOR)[0]
                    depends.note(self.env, python)  # type: ignore[arg-type]
            changed = self.data.stale_sources(lookup.measurement)
            if changed:
                guest = guest_kernels.matrix_guest(lookup.result_set)
                of_set = f" of {lookup.result_set.id!r}" if guest else ""
                self.warn(
                    f"measurement {measurement_id!r}{of_set} is stale: {', '.join(changed)} changed since it was "
                    f"measured; run `{how_to_measure(measurement_id, guest)}`",
                    "stale",
                )
        return lookup

    @property
    def in_lesson(self) -> bool:
        """Whether the page is a lesson (its charts answer a question) rather than a machine or reference page."""
        return str(self.env.docname).startswith("lessons/")  # type: ignore[attr-defined]

    def sets_here(self) -> list[ResultSet]:
        """The sets this page's tables and charts show: a lesson shows one build of each machine."""
        return self.data.lesson_sets() if self.in_lesson else self.data.shown()

    def set_title(self, set_id: str) -> str:
        result_set = self.data.sets[set_id]
        # A reader takes "this machine" for bare hardware: one that is itself a VM says so in its title.
        vm = ", itself a VM" if result_set.machine.get("hypervisor") else ""
        # The mark as the page will say it (published.NameTheMachine): a chart wraps its titles over lines, and
        # "(this" ending one would escape the rewrite of the words.
        named = published.naming(self.config.course_published, self.data)  # type: ignore[attr-defined]
        mark = f" ({named[1] if named else 'this machine'}{vm})" if set_id == self.data.current_id else ""
        return result_set.label + mark

    def column_title(self, set_id: str, measurements: list[dict | None]) -> str:
        """A column's title: the set, and the guest kernel its figures ran on when a guest ran them.

        A kernel figure of this machine's set comes from a disposable guest: its column names that
        kernel and how QEMU ran it, and the host it ran on by its set's name, never as "this machine"
        (the figure is the guest's). A kernel matrix set names its guest already.
        """
        result_set = self.data.sets[set_id]
        where = "" if result_set.info.get("guest") else ran_where(measurements)
        if where:  # the guest's figure, with the host it ran on by its set's name: never "this machine's"
            return f"{where}, in a VM on the host {result_set.label}"
        return self.set_title(set_id)

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


def how_to_measure(measurement_id: str, guest: dict | None = None) -> str:
    """The command that (re)measures a measurement: its lesson's, or the benchmarks'.

    ``guest``: the set is one of the kernel matrix's (its ``guest`` record), remeasured by its own boot.
    """
    prefix = measurement_id.split("/", 1)[0]
    if not prefix[:2].isdigit():
        return "invoke bench"
    if not guest:
        return f"invoke lesson {int(prefix[:2])}"
    words = ["invoke", "run", "--lesson", str(int(prefix[:2])), "--guest-kernels", str(guest.get("name", "?"))]
    words += ["--acceleration", str(guest.get("acceleration", "?"))]
    if guest.get("cpu_requested"):
        words += ["--guest-cpu", str(guest["cpu_requested"])]
    if guest.get("kernel_parameters"):
        words += ["--guest-append", str(guest["kernel_parameters"])]
    return shlex.join(words)


def value_text(measurement: dict, field: str, in_ns: bool) -> str:
    """The text of one figure, or why there is none."""
    # A word joiner in "->" (a method, "->read"): a narrow cell breaks the line anywhere but inside the arrow.
    if measurement.get("status") == "skipped":
        return f"not run ({measurement.get('reason', 'no reason given')})".replace("->", "-\u2060>")
    if measurement.get("status") == "failed":
        return f"failed ({measurement.get('reason', 'see the failure above')})".replace("->", "-\u2060>")
    raw = measurement.get(field)
    if raw is None:
        return f"no {field}"
    if in_ns:
        ns = measurement.get(f"{field}_ns") or to_ns(raw, measurement.get("tsc_hz"))
        per_byte = str(measurement.get("unit", "")).endswith("/byte")
        return format_value(ns, "ns/byte" if per_byte else "ns") if ns is not None else "no TSC rate"
    return format_value(raw, measurement.get("unit", "ticks"))


def entries(content: list[str]) -> list[tuple[str, str]]:
    """Directive content lines ``<measurement id or glob> [label]``."""
    entries = []
    for line in content:
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, label = line.strip().partition(" ")
            entries.append((key, label.strip()))
    return entries


class MeasurementsDirective(CourseMixin, SphinxDirective):
    has_content = True

    def rows(self) -> list[tuple[str, str]]:
        """Each measurement named (globs expanded over every shown set), with its label."""
        known = sorted(
            {key for s in self.data.shown() for data in s.lessons.values() for key in data.get("measurements", {})}
        )
        rows: list[tuple[str, str]] = []
        for key, label in entries(self.content):
            if any(ch in key for ch in "*?["):
                self._use_measurement_ids()
                matches = fnmatch.filter(known, key)
                if not matches:
                    self.warn(f"no measurement matches {key!r}", "missing")
                rows += [(match, match.split("/", 1)[1]) for match in matches]
            else:
                rows.append((key, label or key.split("/", 1)[1]))
        if not rows:
            self.warn("no measurements listed; put one measurement id per line in the directive", "syntax")
        return rows

    def _use_measurement_ids(self) -> None:
        """Record that a glob's rows depend on which measurements each shown set holds (not on their figures)."""
        for result_set in self.data.shown():
            self.use(Lookup(result_set, None, None))  # its files: a lesson measured for the first time
            for lesson in result_set.lessons:
                depends.note(self.env, result_set.lesson_file(lesson), depends.IDS)  # type: ignore[arg-type]

    def current_lookup(self, key: str) -> Lookup | None:
        """The measurement in this machine's set: it must be there, unless the directive is ``:optional:``."""
        if "optional" not in self.options:
            return self.check(key)
        lookup = self.data.find(key)
        self.use(lookup)
        return lookup

    def lookups(self, key: str) -> list[tuple[str, Lookup | None]]:
        """The measurement in every shown set; only this machine's set must have it (unless ``:optional:``)."""
        found = []
        for result_set in self.sets_here():
            if result_set.id == self.data.current_id:
                found.append((result_set.id, self.current_lookup(key)))
            else:
                lookup = self.data.find(key, result_set.id)
                self.use(lookup)
                found.append((result_set.id, lookup))
        if not self.data.current:
            self.check(key)  # warns: there is nothing of this machine to show
        return found


def table_row(cells: list) -> nodes.row:
    """One table row from text or nodes."""
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        paragraph = nodes.paragraph()
        paragraph += cell if isinstance(cell, nodes.Node) else nodes.Text(cell)
        entry += paragraph
        row += entry
    return row


def wrappable(text: str) -> nodes.Node:
    """``text`` that a narrow column may wrap after an ``=`` (``mitigations=`` / ``off``), never inside a word.

    A ``<wbr/>`` (closed: the EPUB is XHTML) is no character: the text copies and reads as it is.
    """
    parts = text.split("=")
    node = nodes.inline()
    for index, part in enumerate(parts):
        node += nodes.Text(part + ("=" if index < len(parts) - 1 else ""))
        if index < len(parts) - 1:
            node += nodes.raw("", "<wbr/>", format="html")
    return node


def simple_table(headers: list, rows: list[list]) -> nodes.table:
    table = nodes.table(classes=["course-table"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for _ in headers:
        group += nodes.colspec(colwidth=1)
    head, body = nodes.thead(), nodes.tbody()
    group += head
    group += body
    head += table_row(headers)
    for row in rows:
        body += table_row(row)
    return table


def name_graphviz_figures(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Give each Graphviz figure an accessible name: its ``:alt:`` text, already escaped by Sphinx.

    Sphinx places an SVG graph in an ``<object>`` whose only text is a fallback paragraph (the DOT
    source when no ``:alt:`` is given); a screen reader names the object by ``aria-label`` instead.
    """
    body = context.get("body")
    if not body or 'class="graphviz' not in body:
        return
    figure = re.compile(
        r'<object (data="[^"]*" type="image/svg\+xml" class="graphviz[^"]*")>\s*<p class="warning">(.*?)</p>', re.S
    )

    # Sphinx writes a given :alt: unescaped and the DOT source escaped: normalise both to escaped once.
    def named(found: re.Match) -> str:
        alt = escape(unescape(found[2]))
        return f'<object {found[1]} role="img" aria-label="{alt}">\n<p class="warning">{alt}</p>'

    context["body"] = figure.sub(named, body)


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
