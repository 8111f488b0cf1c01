"""The pages to write handed over a few at a time in a parallel build; reading cut as Sphinx cuts it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sphinx.util._pathlib import _StrPath
from sphinx.util.parallel import ParallelTasks, make_chunks

from course.publish.sphinxext import writebatches

PAGES = 24


def _project(folder: Path) -> _StrPath:
    names = [f"page{number:02}" for number in range(PAGES)]
    toctree = "\n".join(f"   {name}" for name in names)
    (folder / "index.rst").write_text(f"Home\n====\n\n.. toctree::\n\n{toctree}\n", encoding="utf-8")
    for name in names:
        (folder / f"{name}.rst").write_text(f"{name}\n{'=' * len(name)}\n\nText of {name}.\n", encoding="utf-8")
    extensions = ["course.publish.sphinxext.writebatches"]
    (folder / "conf.py").write_text(f"extensions = {extensions!r}\n", encoding="utf-8")
    return _StrPath(folder)


def test_a_parallel_build_writes_in_short_runs_and_reads_as_sphinx_cuts(
    make_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[list] = []
    add_task = ParallelTasks.add_task
    monkeypatch.setattr(
        ParallelTasks,
        "add_task",
        lambda self, func, arg=None, result=None: handed.append(arg) or add_task(self, func, arg, result),
    )
    app = make_app("html", srcdir=_project(tmp_path), freshenv=True, parallel=2)
    app.build()
    assert "WARNING" not in app.warning.getvalue()
    read = [run for run in handed if run and isinstance(run[0], str)]
    written = [run for run in handed if run and isinstance(run[0], tuple)]
    assert [len(run) for run in read] == [len(run) for run in make_chunks(sorted(app.env.found_docs), 2)]
    assert sorted(name for run in written for name, _ in run) == sorted(app.env.found_docs)[1:], "all but the first"
    assert [len(run) for run in written] == [writebatches.PAGES_A_RUN] * (PAGES // writebatches.PAGES_A_RUN)
    assert len(make_chunks(sorted(app.env.found_docs)[1:], 1)) < len(written), "Sphinx's own runs were longer"
    assert (Path(app.outdir) / "page23.html").is_file()
    assert writebatches._writing is False, "after the build, runs are Sphinx's again"


def test_outside_the_writing_phase_the_runs_are_sphinxs() -> None:
    names = [str(number) for number in range(43)]
    assert writebatches.chunks(names, 2) == make_chunks(names, 2)
