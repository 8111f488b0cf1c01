"""Sphinx extension: place stored measurements into the course's pages.

Used from MyST:

- ``{measure}`03-timing/read.devnull``: one value inline (``:median``, ``:ns``,
  ``:median-ns`` ... after the id; ``set@`` before it picks a result set);
- ``{course-output}``: a captured output block (a program's output, a disassembly);
- ``{course-table}``: measurements down, result sets across, the 2000 reference first;
- ``{course-chart}``: bars across sets, or the histogram of one measurement;
- ``{course-failures}``: what failed in a lesson's last run, with its log;
- ``{course-machines}``: the provenance of every result set;
- ``{course-kernel-run}``: where a lesson's kernel figures were measured (VM, emulation, host);
- ``{course-context}``: what a tick means on this machine (invariant TSC, hypervisor);
- ``{course-run-report}``: the execution report, each lesson's last run.

A missing value is a warning naming it (a CI build with ``-W`` fails on it), and a
value from sources changed since it was measured is a warning too. Every result file
read is recorded as a dependency, so new results rebuild exactly the pages using them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

from course import __version__
from course.sphinxext.data import CourseData, attach, data_of
from course.sphinxext.directives import (
    CourseChart,
    CourseContext,
    CourseFailures,
    CourseKernelRun,
    CourseMachines,
    CourseOutput,
    CourseRunReport,
    CourseTable,
    MeasureRole,
    course_value,
    depart_course_value,
    visit_course_value,
)

logger = logging.getLogger(__name__)


def _load_data(app: Sphinx) -> None:
    results = Path(app.config.course_results_dir)
    if not results.is_absolute():
        results = Path(app.srcdir) / results
    data = CourseData(results, Path(app.srcdir), app.config.course_current_set, list(app.config.course_sets))
    attach(app.env, data)
    if not data.current:
        logger.warning(
            "course: no measured result set in %s; run `invoke generate` to measure this machine",
            results,
            type="course",
            subtype="no-set",
        )


def _outdated_when_sets_change(app: Sphinx, env: BuildEnvironment, added: set, changed: set, removed: set) -> list[str]:
    """Pages that list result sets must be rebuilt when a set appears or disappears."""
    signature = data_of(env).signature
    if getattr(env, "course_signature", None) == signature:
        return []
    env.course_signature = signature  # type: ignore[attr-defined]
    return sorted(getattr(env, "course_docs", set()) & set(env.all_docs))


def _forget_doc(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    getattr(env, "course_docs", set()).discard(docname)


def _merge(app: Sphinx, env: BuildEnvironment, docnames: set, other: BuildEnvironment) -> None:
    env.course_docs = getattr(env, "course_docs", set()) | (  # type: ignore[attr-defined]
        getattr(other, "course_docs", set()) & docnames
    )


def _link_values(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Point each value at its result set's provenance, with a URI right for this builder."""
    for node in doctree.findall(course_value):
        try:
            page = app.builder.get_relative_uri(docname, app.config.course_machines_page)
            node["href"] = f"{page}#set-{node['set_id']}"
        except Exception:  # builders without pages (linkcheck, text) have no URI to give
            node["href"] = ""


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("course_results_dir", "results", "env", types=[str])
    app.add_config_value("course_current_set", "", "env", types=[str])
    app.add_config_value("course_sets", [], "env", types=[list])
    app.add_config_value("course_machines_page", "docs/machines", "env", types=[str])
    app.add_node(
        course_value,
        html=(visit_course_value, depart_course_value),
        latex=(lambda s, n: None, lambda s, n: None),
        text=(lambda s, n: None, lambda s, n: None),
    )
    app.add_role("measure", MeasureRole())
    app.add_directive("course-output", CourseOutput)
    app.add_directive("course-table", CourseTable)
    app.add_directive("course-chart", CourseChart)
    app.add_directive("course-failures", CourseFailures)
    app.add_directive("course-machines", CourseMachines)
    app.add_directive("course-kernel-run", CourseKernelRun)
    app.add_directive("course-context", CourseContext)
    app.add_directive("course-run-report", CourseRunReport)
    app.connect("builder-inited", _load_data)
    app.connect("env-get-outdated", _outdated_when_sets_change)
    app.connect("env-purge-doc", _forget_doc)
    app.connect("env-merge-info", _merge)
    app.connect("doctree-resolved", _link_values)
    app.add_css_file("course.css")
    static = Path(__file__).parent / "static"
    app.connect("config-inited", lambda a, config: config.html_static_path.append(str(static)))
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
