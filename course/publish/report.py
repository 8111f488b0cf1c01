"""Terminal output: the tables a student or instructor reads after a run."""

from __future__ import annotations

import re
import shutil
import textwrap
import unicodedata
from collections.abc import Sequence

from course.measure.lesson_run import LessonReport
from course.results.clock import utc_minute
from course.results.shown_text import printable  # report.printable: the tasks' and drivers' spelling


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table with aligned columns (numbers right, text left), every cell printable."""
    shown = [[printable(str(cell)) for cell in row] for row in [headers, *rows]]
    widths = [max(columns(cell) for cell in column) for column in zip(*shown, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for text, width in zip(cells, widths, strict=True):
            out.append(padded(text, width, right=_numeric(text)))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(shown[0]), rule, *(line(row) for row in shown[1:])])


def fitted_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], width: int, wrapped: Sequence[int], whole: bool = False
) -> str:
    """:func:`table` within ``width`` columns: the ``wrapped`` columns share what the others leave, a long cell
    going on over the next lines (broken after a space or a dash where it can be); with ``whole``, a row whose
    cells are too long is their line, unbroken (a name is copied whole), its other cells on the next line."""
    shown = [[printable(str(cell)) for cell in row] for row in [headers, *rows]]
    fixed = sum(max(columns(row[i]) for row in shown) for i in range(len(headers)) if i not in wrapped)
    room = width - fixed - 2 * (len(headers) - 1)
    natural = {i: max(columns(row[i]) for row in shown) for i in wrapped}
    limits = dict(natural)
    while sum(limits.values()) > room and max(limits.values()) > len(max(headers, key=len)):
        widest = max(limits, key=lambda i: limits[i])  # take from the widest column, a character at a time
        limits[widest] -= 1
    lines = []
    alone = {}  # the table's line -> the unbroken cells set on a line before it
    for row in shown[1:]:
        if whole and any(columns(row[i]) > limits[i] for i in wrapped):
            alone[len(lines)] = "  ".join(row[i] for i in wrapped)
            lines.append(["" if i in wrapped else cell for i, cell in enumerate(row)])
            continue
        cells = {i: wrapped_cell(row[i], limits[i]) for i in wrapped}
        for n in range(max(len(cell) for cell in cells.values())):
            lines.append(
                [
                    (cells[i][n] if n < len(cells[i]) else "") if i in wrapped else (cell if n == 0 else "")
                    for i, cell in enumerate(row)
                ]
            )
    out = table(shown[0], lines).splitlines()
    return "\n".join(out[:2] + [text for n, line in enumerate(out[2:]) for text in [alone.get(n), line] if text])


def stacked_table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int, below: str) -> str:
    """:func:`table` within ``width`` columns, each row ``[name, text, *figures]``: the name whole on its line
    (never broken: it is copied into commands), ``text`` under it, indented and wrapped to the first column;
    the figures on the name's line, or on the first line under it when the name is too long to share one."""
    rest = table(headers[1:], [row[2:] for row in rows]).splitlines()
    figures = rest[2:]
    first = max(len(headers[0]), len(below) + 2, width - 2 - len(rest[1]))
    shown = [padded(printable(f"{headers[0]} / {below}"), first), "-" * first]
    lines = [f"{shown[0]}  {rest[0]}", f"{shown[1]}  {rest[1]}"]
    for row, line in zip(rows, figures, strict=True):
        name = printable(str(row[0]))
        under = ["  " + part for part in wrapped_cell(printable(str(row[1])), first - 2)]
        cells = [name, *under]
        if columns(name) > first:  # alone on its line, longer than the column
            lines.append(name)
            cells = under
        for n, cell in enumerate(cells):
            lines.append((padded(cell, first) + "  " + (line if n == 0 else "")).rstrip())
    return "\n".join(lines)


def wrapped_cell(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width``: broken at spaces; a word longer than a line after its dashes
    (``qemu-icount-`` / ``debian-6.1``), a part still longer where it must be."""
    lines: list[str] = []
    for word in text.split():
        if lines and columns(lines[-1]) + 1 + columns(word) <= width:
            lines[-1] += " " + word
            continue
        pieces = [""]
        for part in re.split(r"(?<=-)", word):
            while part:
                if columns(pieces[-1]) + columns(part) <= width:
                    pieces[-1], part = pieces[-1] + part, ""
                elif not pieces[-1]:
                    pieces[-1], part = _cut(part, width)
                else:
                    pieces.append("")
        lines += pieces
    return lines or [""]


def columns(text: str) -> int:
    """How many columns of a terminal ``text`` takes: a wide character (CJK, full-width forms, U+3000) two,
    a combining mark or a zero-width character none (not its number of code points)."""
    if text.isascii():
        return len(text)
    return sum(_columns_of(char) for char in text)


def _columns_of(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def padded(text: str, width: int, right: bool = False) -> str:
    """``text`` filled with spaces to ``width`` columns (:func:`columns`), on the left with ``right``."""
    gap = " " * max(width - columns(text), 0)
    return gap + text if right else text + gap


def _cut(text: str, width: int) -> tuple[str, str]:
    """The longest start of ``text`` within ``width`` columns (one character at least, with its marks), and the rest."""
    taken = 0
    for end, char in enumerate(text):
        taken += _columns_of(char)
        if taken > width and end > 0:
            return text[:end], text[end:]
    return text, ""


def _numeric(text: str) -> bool:
    return text.replace(".", "", 1).replace(",", "").replace("-", "", 1).strip().isdigit()


def figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}".removesuffix(".0")


def single_figure(value: float | None) -> str:
    """A derived or single figure: two decimals below 100."""
    return f"{value:,.2f}" if value is not None and abs(value) < 100 else figure(value)


def nanoseconds(ticks: float | None, tsc_hz: float | None) -> str:
    if ticks is None or not tsc_hz:
        return "-"
    return f"{ticks / tsc_hz * 1e9:,.1f}"


def terminal_width() -> int:
    """The terminal's columns (``COLUMNS`` first), 100 when the output is no terminal."""
    return shutil.get_terminal_size((100, 24)).columns


def lesson_table(report: LessonReport, compare: bool = False, width: int | None = None) -> str:
    """The lesson's measurements within ``width`` columns (the terminal's), named without the lesson's prefix;
    with ``compare``, the previous run's min and median beside each figure measured again, the run dated
    above the table (a kept figure is the previous one: nothing to set beside it)."""
    width = width or terminal_width()
    measured = report.stored.get("measurements", {})
    lessons = {key.split("/", 1)[0] for key in measured}
    prefix = f"{lessons.pop()}/" if len(lessons) == 1 and all("/" in key for key in measured) else ""
    headers = ["measurement", "unit", "min", "median", "p90", "p99", "median ns", "samples"]
    if compare:
        headers += ["prev min", "prev median"]
    rows = []
    notes = []
    old = report.previous.get("measurements", {})
    kept = report.kept_figures
    compared: list[str] = []  # when the figures set beside this run's were measured
    for key, value in sorted(measured.items()):
        # A kept row is the earlier run's figure, not rerun; a derived one from kept figures only says so too.
        name = key.removeprefix(prefix)
        marked = f"{name} (kept)" if key in kept else name
        derived_from_kept = bool(value.get("derived") and kept and set(value.get("from") or ()) <= kept)
        if derived_from_kept:
            marked = f"{name} (from kept)"
        if value.get("status") == "ok" and "min" not in value:  # a derived or single figure
            single = value.get("value", value.get("mean"))
            shown = single_figure(single)
            row = [marked, value.get("unit", ""), shown, "", "", "", "", ""]
        elif value.get("status") != "ok":
            notes.append(printable(f"{name}: {value.get('status', '?')}: {value.get('reason', 'no reason given')}"))
            row = [marked, "", value.get("status", "?"), "", "", "", "", ""]
        else:
            row = [
                marked,
                value.get("unit", "ticks"),
                figure(value["min"]),
                figure(value["median"]),
                figure(value["p90"]),
                figure(value["p99"]),
                nanoseconds(value["median"], value.get("tsc_hz")),
                f"{value['samples']:,}",
            ]
        if compare:
            before = old.get(key, {})
            unit, unit_before = value.get("unit", "ticks"), before.get("unit", "ticks")
            if key in kept or derived_from_kept:  # the previous figure itself: never compared with itself
                row += ["", ""]
            elif (
                before and unit_before != unit
            ):  # another clock (emulated ticks against icount ticks): never side by side
                row += ["-", "-"]
                notes.append(
                    printable(f"{name}: the previous run counted {unit_before}, this one {unit}: not compared")
                )
            elif "min" not in value and "min" not in before and before.get("status") == "ok":  # a single figure
                row += [single_figure(before.get("value", before.get("mean"))), ""]
                compared.append(before.get("measured_at", ""))
            else:
                row += [figure(before.get("min")), figure(before.get("median"))]
                if before.get("min") is not None or before.get("median") is not None:
                    compared.append(before.get("measured_at", ""))
        rows.append(row)
    if not rows:
        captures = sorted(report.stored.get("captures", {}))
        return printable("captured: " + ", ".join(captures)) if captures else "(nothing measured or captured)"
    above = f"measurements of {prefix}" if prefix else "measurements"
    if compare:
        stamps = sorted(stamp for stamp in compared if stamp)
        before = f"the run of {span(stamps)}" if stamps else "the run before"
        above += f"; prev: {before}" if compared else "; no earlier figure to set beside them"
    fitted = fitted_table(headers, rows, width, wrapped=(0,), whole=True)
    wrapped = [textwrap.fill(note, width, subsequent_indent="  ", break_on_hyphens=False) for note in notes]
    return "\n".join([above, fitted, *wrapped])


def span(stamps: Sequence[str]) -> str:
    """Sorted time stamps as one minute, or the first to the last."""
    if stamps[0][:16] == stamps[-1][:16]:
        return utc_minute(stamps[0])
    return f"{utc_minute(stamps[0])} to {utc_minute(stamps[-1])}"


def kept_line(report: LessonReport, width: int | None = None) -> str:
    """What a student's rerun ran again and whose figures it kept from when ("" when reused whole), within
    ``width`` columns (the terminal's); not a word of keeping when it kept nothing."""
    if report.cached:
        return ""
    width = width or terminal_width()
    ran = sorted({step["name"].split(" ")[1] for step in report.steps if step["name"].startswith("run ")})
    ran = [name for name in ran if name not in report.kept]
    exercises = report.stored.get("exercises") or {}
    parts = [
        f"the exercise {name}" + (" and its solution" if "solution" in outcome else "")  # a student copy has none
        for name, outcome in sorted(exercises.items())
    ] + ran
    reran = f"reran {', '.join(parts) or 'nothing'}"
    if not report.kept:
        return _fill(reran, width)
    measured = report.stored.get("measurements", {})
    stamps = sorted(measured[key].get("measured_at", "") for key in report.kept_figures if key in measured)
    count = len(report.kept)
    programs = f"{count} program{'s' if count > 1 else ''}' figures ({', '.join(sorted(report.kept))})"
    return _fill(
        f"{reran}; kept {programs} from {span(stamps)} (sources unchanged); "
        f"invoke lesson {report.lesson.number} --all reruns them",
        width,
    )


def _fill(text: str, width: int) -> str:
    return textwrap.fill(text, width, break_on_hyphens=False, break_long_words=False)


def exercises_table(report: LessonReport) -> str:
    """Each exercise: whether your variant works, and its figure beside the reference solution's."""
    exercises = report.stored.get("exercises") or {}
    if not exercises:
        return ""
    measured = report.stored.get("measurements", {})
    rows = []
    for name, outcome in sorted(exercises.items()):
        yours = outcome.get("yours", {})
        figures = []
        for who in ("exercise", "solution"):
            found = [
                m
                for key, m in sorted(measured.items())
                if key.split("/", 1)[1].startswith(f"{who}.{name}.")
                and m.get("status") == "ok"
                and "stamp-pair" not in key
            ]
            figures.append(f"{found[0]['median']:,.0f} {found[0]['unit']}" if found else "-")
        detail = yours.get("detail", "")
        detail = detail if len(detail) <= 160 else f"{detail[:157]}..."
        rows.append([name, yours.get("status", "?"), figures[0], figures[1], detail])
    return table(["exercise", "your variant", "your median", "solution median", "check says"], rows)


def steps_table(reports: Sequence[LessonReport], site_seconds: float | None = None) -> str:
    """Where the time went: every step of every lesson, the shared VM boot once, and the site build."""
    rows, shared = [], set()
    for report in reports:
        for step in report.steps:
            if step.get("shared"):
                if step["name"] in shared:
                    continue
                shared.add(step["name"])
            owner = "kernel lessons" if step.get("shared") else report.lesson.name
            rows.append([owner, step["name"], f"{step['seconds']:.2f}", "yes" if step["cached"] else ""])
    if site_seconds is not None:
        rows.append(["site", "sphinx-build", f"{site_seconds:.2f}", ""])
    return table(["lesson", "step", "seconds", "cached"], rows)


def failures_text(reports: Sequence[LessonReport]) -> str:
    lines = []
    for report in reports:
        for failure in report.failures:
            line = f"FAILED {report.lesson.name}: {failure['step']} {failure['what']}: {failure['message']}"
            lines.append(printable(line))
    return "\n".join(lines)
