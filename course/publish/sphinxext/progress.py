"""The class's progress page: ``{course-progress}`` (see :mod:`course.results.progress`).

One row a student, one column an exercise: status, cost against the solution, date, and
"same as the solution"; self-reported rows (imported sets, not graded) say so. The same
table is written as ``progress.csv`` at the site's root for download. Grades name students:
the student edition shows none of them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.docutils import SphinxDirective

from course.publish.sphinxext.base import simple_table
from course.publish.sphinxext.data import data_of
from course.publish.sphinxext.setdata import course_data_link
from course.results import progress, store
from course.results.progress import GRADES

#: The CSV's path in the HTML output.
CSV_NAME = "progress.csv"


def results_of(app_or_env_config, srcdir: str | Path) -> Path:
    results = Path(app_or_env_config.course_results_dir)
    return results if results.is_absolute() else Path(srcdir) / results


#: The table of this build, by results folder: a build asks three times (is the page outdated, the page, the
#: CSV), and each read checks every file of every set (60 imported sets: some 2,000 files). Emptied when a
#: build starts (``new_build``): the results do not change while a build reads them.
_READ: dict[Path, tuple[list[progress.Row], list[str], list[str]]] = {}


def rows_of(results: Path, env: BuildEnvironment | None = None) -> tuple[list[progress.Row], list[str], list[str]]:
    """:func:`progress.rows`, read once a build, from the sets the build loaded already when they are ``results``'.

    Loading 60 imported sets a second time (each file parsed again) cost a class's build over half a second.
    """
    if results not in _READ:
        try:
            loaded = data_of(env) if env is not None else None
        except KeyError:  # no data loaded for this environment: the rows read the sets themselves
            loaded = None
        sets = loaded.sets if loaded is not None and loaded.results == results else None
        _READ[results] = progress.rows(results, sets)
    return _READ[results]


def new_build(app: Sphinx) -> None:
    """A build starts: the next ask reads the table again."""
    _READ.clear()


def signature(results: Path, env: BuildEnvironment | None = None) -> str:
    """What the page shows, as a digest: its rows as the table renders them, and any problem it names.

    By content, not by file dates: a rerun rewrites a set's files (and its ``set.json``) whether
    or not a student's row changed, and the page is read again only when the table would differ.
    """
    rows, columns, problems = rows_of(results, env)
    shown = (progress.as_table(rows, columns) if rows else None, problems)
    return hashlib.sha256(repr(shown).encode()).hexdigest()


class CourseProgress(SphinxDirective):
    """The progress table of the class, with its CSV."""

    def run(self) -> list[nodes.Node]:
        docs = self.env.course_progress_docs = getattr(self.env, "course_progress_docs", set())  # type: ignore[attr-defined]
        docs.add(self.env.docname)
        if self.config.course_edition == "student":
            return [nodes.paragraph(text="The class's progress is not part of the student edition of the course.")]
        results = results_of(self.config, self.env.srcdir)
        for path in (results / GRADES).glob("*.json") if (results / GRADES).is_dir() else []:
            self.env.note_dependency(str(path))
        rows, columns, problems = rows_of(results, self.env)
        shown: list[nodes.Node] = [nodes.paragraph(text=f"Problem: {line}") for line in problems]
        if not rows:
            text = "No grades yet: invoke grade FOLDER grades the class's submissions in the VM."
            return [*shown, nodes.paragraph(text=text)]
        headers, body = progress.as_table(rows, columns)
        table = simple_table(headers, body)
        table["classes"].append("course-progress")
        graded = sum(row.kind == "graded" for row in rows)
        note = nodes.paragraph()
        note += nodes.Text(
            f"{graded} students graded in the VM (their code built and run by the instructor), "
            f"{len(rows) - graded} self-reported (an imported set: what the student's own run said, unchecked). "
            "Download the table as "
        )
        note += course_data_link("CSV", "CSV", target=CSV_NAME)
        note += nodes.Text(".")
        return [*shown, note, table]


def outdated(app: Sphinx, env: BuildEnvironment, added: set, changed: set, removed: set) -> list[str]:
    """The progress page is read again when a grade or a set appears, changes or goes."""
    now = signature(results_of(app.config, app.srcdir), env)
    if getattr(env, "course_progress_signature", None) == now:
        return []
    env.course_progress_signature = now  # type: ignore[attr-defined]
    return sorted(getattr(env, "course_progress_docs", set()) & set(env.all_docs))


def forget(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    getattr(env, "course_progress_docs", set()).discard(docname)


def merge(app: Sphinx, env: BuildEnvironment, docnames: set, other: BuildEnvironment) -> None:
    env.course_progress_docs = getattr(env, "course_progress_docs", set()) | (  # type: ignore[attr-defined]
        getattr(other, "course_progress_docs", set()) & docnames
    )


def write_csv(app: Sphinx, exception: Exception | None) -> None:
    """The table as CSV at the output's root, once an HTML build succeeded (never in the student edition)."""
    if exception is not None or app.builder.format != "html" or app.config.course_edition == "student":
        return
    rows, columns, _ = rows_of(results_of(app.config, app.srcdir), app.env)
    store.write_text(Path(app.outdir) / CSV_NAME, progress.as_csv(rows, columns))


def setup(app: Sphinx) -> None:
    """Called from the extension's own setup."""
    app.add_directive("course-progress", CourseProgress)
    app.connect("env-get-outdated", outdated)
    app.connect("env-purge-doc", forget)
    app.connect("env-merge-info", merge)
    app.connect("build-finished", write_csv)
    app.connect("builder-inited", new_build)
