"""``build/sphinx-warnings.txt`` holds the last build's warnings, never an earlier build's crash report."""

from __future__ import annotations

from pathlib import Path

from course.publish import site
from course.results.layout import Layout

#: A Sphinx project of one page, taking the settings the course's build passes with -D.
CONF = """
def setup(app):
    for name in ("course_results_dir", "course_edition", "course_current_set", "course_sets"):
        app.add_config_value(name, "", "env")
"""


def _project(tmp_path: Path, page: str) -> Layout:
    root = tmp_path / "project"
    root.mkdir(exist_ok=True)
    (root / "conf.py").write_text(CONF)
    (root / "index.rst").write_text(page)
    return Layout(root, results_dir=tmp_path / "results", build_dir=tmp_path / "build")


def test_every_build_rewrites_the_warnings_file(tmp_path: Path) -> None:
    layout = _project(tmp_path, "Title\n=====\n\nSee :doc:`missing-page`.\n")
    warnings = layout.build / "sphinx-warnings.txt"
    site.build_site(layout, strict=False)
    assert "missing-page" in warnings.read_text(), "a build that keeps going lists its warnings"
    # A crash report left by a failed build, then the page fixed and a strict build (which used not to pass -w).
    warnings.write_text("Exception occurred:\n  File sphinx/builders/__init__.py ... RecursionError\n")
    _project(tmp_path, "Title\n=====\n\nNo reference now.\n")
    site.build_site(layout, strict=True)
    assert warnings.read_text() == "", "the strict build that passed left no earlier build's report"
    # The same after a non-strict build: the file is this build's alone.
    warnings.write_text("Exception occurred: an old crash\n")
    (layout.root / "index.rst").write_text("Title\n=====\n\nStill no reference.\n")
    site.build_site(layout, strict=False)
    assert "old crash" not in warnings.read_text()
