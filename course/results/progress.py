"""The class's progress: one row a student, one column an exercise.

Rows come from two places, and say which:

- ``graded``: a grade stored by ``invoke grade`` (:mod:`course.classroom.grading`), from the instructor's
  own run of the student's code in the VM: status, cost against the solution, date, and
  whether the source is the solution's;
- ``self-reported``: an imported result set (``invoke results.import``) whose lessons carry
  an exercise status: what the student's own run said, never checked here.

Shown in the terminal (``invoke results.exercises``), as a CSV file, and on the site's
progress page (``course.publish.sphinxext.progress``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from course.results import store

#: Where grades are kept, inside the results folder: a name no result set can have.
GRADES = "_grades"

#: A grade file larger than this is not one ``invoke grade`` wrote.
MAX_GRADE_BYTES = 1024 * 1024

#: The characters that make a spreadsheet read a cell as a formula (quoted away in the CSV).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Cell:
    """One student's result for one exercise."""

    status: str
    ratio: float | None = None  # the student's cost over the solution's (the first measurement)
    date: str = ""
    same_as_solution: bool = False

    def text(self) -> str:
        parts = [self.status]
        if self.ratio is not None:
            parts.append(f"{self.ratio:.2f}x the solution")
        if self.date:
            parts.append(self.date[:10])
        if self.same_as_solution:
            parts.append("SAME AS THE SOLUTION")
        return ", ".join(parts)


@dataclass
class Row:
    student: str
    kind: str  # "graded" or "self-reported"
    cells: dict[str, Cell] = field(default_factory=dict)  # exercise key ("03-timing/onebyte") -> cell


def _text(value: object, most: int = 100) -> str:
    return value[:most] if isinstance(value, str) else ""


def graded_rows(results: Path) -> tuple[list[Row], list[str]]:
    """The stored grades, and a line for each grade file that cannot be read."""
    rows, problems = [], []
    for path in sorted((results / GRADES).glob("*.json")) if (results / GRADES).is_dir() else []:
        try:
            data = json.loads(store.read_regular(path, MAX_GRADE_BYTES))
            if not isinstance(data, dict) or not isinstance(data.get("exercises"), dict):
                raise ValueError("no exercises")
        except (OSError, ValueError, RecursionError) as error:
            problems.append(f"{path}: not a grade ({str(error)[:100]}); run invoke grade again")
            continue
        row = Row(student=_text(data.get("student")) or path.stem, kind="graded")
        for key, state in data["exercises"].items():
            if not isinstance(state, dict):
                continue
            cost = state.get("cost") if isinstance(state.get("cost"), dict) else {}
            ratios = [c.get("ratio") for c in cost.values() if isinstance(c, dict)]
            ratio = next((r for r in ratios if isinstance(r, (int, float))), None)
            row.cells[_text(key)] = Cell(
                status=_text(state.get("status")) or "?",
                ratio=float(ratio) if ratio is not None else None,
                date=_text(data.get("graded_at"), 40),
                same_as_solution=state.get("same_as_solution") is True,
            )
        rows.append(row)
    return rows, problems


def self_reported_rows(results: Path, sets: dict[str, store.ResultSet] | None = None) -> list[Row]:
    """Each imported set whose lessons say how the student's own variant went (unchecked).

    ``sets``: ``results``' sets as :func:`store.load_all` gave them already (the site's build loads them once).
    """
    rows = []
    for set_id, result_set in (store.load_all(results) if sets is None else sets).items():
        if result_set.kind == "reference" or not result_set.info.get("imported"):
            continue
        row = Row(student=set_id, kind="self-reported")
        for lesson_name, lesson in sorted(result_set.lessons.items()):
            exercises = lesson.get("exercises") if isinstance(lesson, dict) else None
            for name, outcome in (exercises or {}).items():
                yours = outcome.get("yours") if isinstance(outcome, dict) else None
                if isinstance(yours, dict):
                    row.cells[f"{lesson_name}/{name}"] = Cell(
                        status=_text(yours.get("status")) or "?", date=_text(lesson.get("measured_at"), 40)
                    )
        if row.cells:
            rows.append(row)
    return rows


def rows(results: Path, sets: dict[str, store.ResultSet] | None = None) -> tuple[list[Row], list[str], list[str]]:
    """Every row (graded first, then self-reported), the exercise columns in lesson order, and problems."""
    graded, problems = graded_rows(results)
    everything = graded + self_reported_rows(results, sets)
    columns = sorted({key for row in everything for key in row.cells})
    return everything, columns, problems


def as_table(everything: list[Row], columns: list[str]) -> tuple[list[str], list[list[str]]]:
    headers = ["student", "from", *columns]
    body = [
        [row.student, row.kind, *(row.cells[c].text() if c in row.cells else "-" for c in columns)]
        for row in everything
    ]
    return headers, body


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def as_csv(everything: list[Row], columns: list[str]) -> str:
    """One row a student; four columns an exercise: status, cost over the solution's, date, same as the solution."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    header = ["student", "from"]
    for column in columns:
        header += [f"{column} status", f"{column} cost/solution", f"{column} date", f"{column} same as solution"]
    writer.writerow(header)
    for row in everything:
        line = [row.student, row.kind]
        for column in columns:
            cell = row.cells.get(column)
            if cell is None:
                line += ["", "", "", ""]
            else:
                ratio = "" if cell.ratio is None else f"{cell.ratio:.3f}"
                line += [cell.status, ratio, cell.date, "yes" if cell.same_as_solution else "no"]
        writer.writerow([_csv_cell(value) for value in line])
    return out.getvalue()
