"""Each result set's measurements as files to download (JSON and CSV), and the anchor of each figure's row.

A reader who wants to redo a comparison needs the figures, not a screenshot of a table: the
machine page of each set links a JSON file (every measurement whole, as stored) and a CSV file
(one row a measurement, the columns of the fields the set has). Both are written beside the page in
the HTML output, from the same loaded sets the pages show, and only when their bytes change.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import math
import re
from collections.abc import Set
from html import escape
from pathlib import Path

from docutils import nodes

from course.publish.sphinxext import depends
from course.publish.sphinxext.data import format_value
from course.publish.sphinxext.figures import real_ns
from course.results import store
from course.results.child import Meanwhile
from course.results.store import ResultSet

#: The CSV's columns, in order: what the figure is, its statistics, and how and where it was taken.
CSV_COLUMNS = (
    "set",
    "lesson",
    "measurement",
    "status",
    "unit",
    "min",
    "median",
    "p90",
    "p99",
    "max",
    "value",
    "samples",
    "calls_per_sample",
    "tsc_hz",
    "min_ns",
    "median_ns",
    "stamp_pair_subtracted",
    "runner",
    "acceleration",
    "guest_kernel",
    "measured_at",
    "command",
    "how",
    "reason",
    "note",
    "source",
)

#: Columns every CSV has; the others only where some measurement of the set has that field.
KEY_COLUMNS = ("set", "lesson", "measurement", "status")

#: Characters that make a spreadsheet read a cell as a formula (CSV injection): text from an
#: imported set starting with one of them is prefixed with an apostrophe, which shows it as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class course_data_link(nodes.Inline, nodes.TextElement):
    """A link to one of a set's data files, which exist in the HTML output only (not in the sources).

    ``target`` is the file's path in the output; its URI relative to the page is set when the
    page is written (``href``). Not a docutils reference, which the link checker would look
    for among the sources.
    """


def _in_a_book(translator) -> bool:
    """An EPUB holds no data file (JSON and CSV are no EPUB media types): the name stays, unlinked."""
    return translator.builder.name == "epub"


def visit_course_data_link(translator, node: course_data_link) -> None:
    if _in_a_book(translator):
        translator.body.append('<span class="course-data-file">')
        return
    translator.body.append(f'<a class="reference course-data-file" href="{escape(node.get("href", ""))}" download="">')


def depart_course_data_link(translator, node: course_data_link) -> None:
    translator.body.append("</span>" if _in_a_book(translator) else "</a>")


def figure_anchor(measurement_id: str) -> str:
    """The HTML id of a measurement's row on its set's page.

    Letters, digits, ``.``, ``-`` and ``/`` stay as they are (ids read like the measurement);
    anything else, ``_`` included, becomes ``_<hex>_``, so two measurements never share an id
    and the id needs no escaping in a URL fragment.
    """
    return "figure-" + re.sub(r"[^A-Za-z0-9./-]", lambda found: f"_{ord(found[0]):x}_", measurement_id)


#: The fields of a figure that have a cell of their own on the set's page, after its row's own.
CELL_FIELDS = ("min-ns", "median", "median-ns")


def figure_target(measurement_id: str, field: str, measurement: dict) -> str:
    """Where a link to ``field`` of a measurement lands: its own cell where it has one, else its row.

    A cell's id is the row's plus ``~field``: ``figure_anchor`` writes ``~`` as an escape, so no
    measurement's row can have that id.
    """
    anchor = figure_anchor(measurement_id)
    return f"{anchor}~{field}" if cell_text_of(measurement, field) else anchor


def cell_text_of(measurement: dict, field: str) -> str:
    """What the set's page shows in the cell of ``field`` (one of ``CELL_FIELDS``); empty if nothing."""
    if field not in CELL_FIELDS or measurement.get("status", "ok") != "ok":
        return ""
    name = field.removesuffix("-ns")
    if measurement.get(name) is None:
        return ""
    if field.endswith("-ns"):
        ns = real_ns(measurement, name)
        return format_value(ns, "ns") if ns is not None else ""
    return format_value(measurement[name], measurement.get("unit", "ticks"))


def measurements(result_set: ResultSet) -> list[tuple[str, str, dict]]:
    """``(lesson, measurement id, measurement)`` of every measurement the site shows, sorted by lesson and id.

    Only the measurement that the lessons' pages find under an id is listed (``ResultSet.measurement``:
    the file its id names, else the reference file). A copy of it in another lesson's file, which a
    hand-made set may hold, would be a second row with the same anchor, where a figure's link
    could land on a number the page does not show.
    """
    found = [
        (key.split("/", 1)[0], key, measurement)
        for data in result_set.lessons.values()
        for key, measurement in data.get("measurements", {}).items()
        if result_set.measurement(key) is measurement
    ]
    return sorted(found, key=lambda item: item[:2])


def as_json(result_set: ResultSet) -> str:
    """The set's machine and every measurement whole, one object each with its id and lesson."""
    content = {
        "set": result_set.id,
        "label": result_set.label,
        "kind": result_set.kind,
        "citation": result_set.info.get("citation", ""),
        "machine": result_set.machine,
        "measurements": [
            {**measurement, "id": key, "lesson": lesson} for lesson, key, measurement in measurements(result_set)
        ],
    }
    return json.dumps(content, indent=1, sort_keys=False, ensure_ascii=False) + "\n"


def as_csv(result_set: ResultSet) -> str:
    """One row a measurement: the columns of ``CSV_COLUMNS``, empty where a measurement has no such field."""
    out = io.StringIO()
    # Every cell quoted: where a spreadsheet splits on ";" (locales with a decimal comma), an unquoted
    # cell "a;=HYPERLINK(...)" would become two, the second a formula.
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    rows = []
    listed = measurements(result_set)
    step = counter_step(listed)
    for lesson, key, measurement in listed:
        row = {
            **measurement,
            "set": result_set.id,
            "lesson": lesson,
            "measurement": key,
            "min_ns": ns_text(real_ns(measurement, "min"), measurement, step),
            "median_ns": ns_text(real_ns(measurement, "median"), measurement, step),
            "stamp_pair_subtracted": (measurement.get("overhead") or {}).get("ticks"),
        }
        rows.append({column: _cell(row.get(column)) for column in CSV_COLUMNS})
    # A set that has no medians (the article printed minima only) gets no column of empty cells.
    columns = [c for c in CSV_COLUMNS if c in KEY_COLUMNS or any(row[c] for row in rows)]
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row[column] for column in columns])
    return out.getvalue()


#: The measurement of the counter's step (lesson 3's tscstep.c), in ticks.
STEP_MEASUREMENT = "03-timing/tsc-step"


def counter_step(listed: list[tuple[str, str, dict]]) -> float:
    """The set's counter step in ticks (lesson 3's measurement, at least 1), or 1 where it was not measured."""
    for _, key, measurement in listed:
        if key == STEP_MEASUREMENT and measurement.get("status") == "ok" and measurement.get("median"):
            return max(1.0, float(measurement["median"]))
    return 1.0


def ns_text(ns: float | None, measurement: dict, step_ticks: float) -> str | None:
    """``ns`` with the decimals the counter can tell apart, never more: a 10 ns step gets whole ns.

    A sample timing several calls (``calls_per_sample``) divides the step by their number; the
    raw ticks stay exact in their own columns.
    """
    rate = measurement.get("tsc_hz")
    if ns is None or not rate:
        return None if ns is None else f"{ns:.0f}"
    resolution = step_ticks * 1e9 / float(rate) / max(1, int(measurement.get("calls_per_sample") or 1))
    decimals = max(0, math.floor(-math.log10(resolution))) if resolution > 0 else 0
    return f"{ns:.{decimals}f}"


def _cell(value: object) -> str:
    """A CSV cell: numbers as written by Python, text kept from being read as a spreadsheet formula."""
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))  # a whole number of ticks, as the page shows it
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def file_names(set_id: str) -> dict[str, str]:
    """The download files of a set, by format, as named beside its page."""
    return {"JSON": f"{set_id}.json", "CSV": f"{set_id}.csv"}


def texts(sets: list[ResultSet]) -> dict[str, str]:
    """Each set's download files, by file name: their text."""
    wanted: dict[str, str] = {}
    for result_set in sets:
        names = file_names(result_set.id)
        wanted[names["JSON"]] = as_json(result_set)
        wanted[names["CSV"]] = as_csv(result_set)
    return wanted


class TextsMeanwhile(Meanwhile[dict[str, str]]):
    """:func:`texts` computed in a forked process while the build goes on (its pages are written).

    A class's 80 sets take over a second to turn into JSON and CSV (Python's JSON encoder is pure Python
    when it indents), which the build's main process spent alone at its very end, one core idle. The texts
    run to megabytes, far more than a pipe holds: the process ends with the build (:class:`Meanwhile`).
    """

    def __init__(self, sets: list[ResultSet]) -> None:
        self.sets = sets
        super().__init__(lambda: texts(sets))

    def result(self) -> dict[str, str]:
        """The texts; computed here after all when the process could not give them (its error is raised here)."""
        got = super().result()
        return got if isinstance(got, dict) else texts(self.sets)


@functools.cache
def _making_code() -> bytes:
    """The version of the code that turns a loaded set into its download files: this extension's (the number that
    rereads every page) and the result store's, which reads the sets. A change to either makes every set's files anew.
    """
    store_code = hashlib.sha256()
    for path in sorted(Path(store.__file__).parent.glob("*.py")):
        store_code.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{depends.code_version()} {store_code.hexdigest()}".encode()


def digest(result_set: ResultSet) -> str:
    """What a set's download files are made from: the bytes of its files and the version of the code that reads and
    writes them (:func:`_making_code`)."""
    made_from = hashlib.sha256(_making_code() + b"\0")
    for path in (result_set.path / store.SET_FILE, *store.result_files(result_set.path)):
        made_from.update(path.name.encode() + b"\0")
        with contextlib.suppress(OSError):  # a file gone since the load: the digest differs, the files are made
            made_from.update(path.read_bytes())
        made_from.update(b"\0")
    return made_from.hexdigest()


def write(
    folder: Path, sets: list[ResultSet], wanted: dict[str, str] | None = None, unchanged: Set[str] = frozenset()
) -> None:
    """Write each set's files into ``folder`` (the machine pages' folder of the HTML output).

    A file is rewritten only when its text changes, and files of sets no longer shown are
    removed; nothing else in the folder is touched. ``wanted``: the sets' :func:`texts`, when computed already.
    ``unchanged``: ids of sets whose files this folder holds from a build of the same :func:`digest`; their
    texts are not made again (a student's rerun changes one set of twenty).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if wanted is None:
        there = {s.id for s in sets if all((folder / name).is_file() for name in file_names(s.id).values())}
        wanted = texts([s for s in sets if s.id not in unchanged or s.id not in there])
    shown = {name for s in sets for name in file_names(s.id).values()}
    for old in [*folder.glob("*.json"), *folder.glob("*.csv")]:
        if old.name not in shown:
            old.unlink()
    for name, text in wanted.items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            store.write_text(path, text)
