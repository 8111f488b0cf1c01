"""Tables that scale: with a class of 60 imported sets, a table shows the reference, this machine and one
column for the class (smallest, median, largest, how many sets), and every set keeps its page."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest
from sphinx.testing.util import SphinxTestApp

from course.publish import site
from course.publish.sphinxext import progress as sphinx_progress
from course.publish.sphinxext import table_directive
from course.publish.sphinxext.data import SETS_IN_FULL
from course.publish.sphinxext.figures import class_figure
from course.results import progress
from course.results.class_sets import factor, import_class
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
real_rows = progress.rows


def _tables(html: str) -> list[str]:
    return re.findall(r'<table class="[^"]*course-table(?! course-chart-table)[^"]*".*?</table>', html, re.S)


def _cells(row: str) -> list[str]:
    return [
        unescape(re.sub(r"<[^>]+>", " ", cell)).split() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
    ]


def _rows(table: str) -> list[list[str]]:
    return [[" ".join(cell) for cell in _cells(row)] for row in re.findall(r"<tr[^>]*>.*?</tr>", table, re.S)]


def _class_app(make_app, app: SphinxTestApp, count: int, **options) -> SphinxTestApp:
    import_class(Path(app.srcdir) / "results", "other-machine", count)
    built = make_app("html", srcdir=app.srcdir, **options)
    built.build()
    return built


@pytest.mark.sphinx("html", testroot="course", srcdir="course-class-of-60")
def test_sixty_imported_sets_make_one_class_column_with_its_spread(make_app, app: SphinxTestApp) -> None:
    built = _class_app(make_app, app, 60)
    html = (Path(built.outdir) / "index.html").read_text(encoding="utf-8")
    table = _tables(html)[0]
    rows = _rows(table)
    head = rows[0]
    # measurement, 2000, this machine, the ratio of those two, the class: never a column a set.
    assert len(head) == 5, head
    assert head[1].startswith("2000 reference") and "this machine" in head[2]
    assert head[3].startswith("2000 ÷ this machine") and head[4] == "the class: 61 other machines, each on its page"
    assert 'href="machines.html"' in table.split("</thead>")[0], "the class's title links the machines page"
    assert "Student" not in table and "Other machine" not in table
    # Other machine: 3,000 ticks at 3 GHz (1,000 ns); student i: that times factor(i).
    pooled = [1000.0] + [1000.0 * factor(i) for i in range(1, 61)]
    tty = next(row for row in rows if row[0] == "terminal")
    expected = (
        f"median {statistics.median(pooled):,.0f} ns min {min(pooled):,.0f} ns · "
        f"max {max(pooled):,.0f} ns · 61 of 61 sets"
    )
    assert tty[4] == expected
    # The chart beside it: a bar for the reference, this machine and the class's median, never one a student.
    chart = unescape(html.split("Canned bars", 1)[1].split("</details>", 1)[0])
    legend = re.findall(r"</span>([^<]*)</li>", html.split('<ul class="course-legend">', 1)[1].split("</ul>", 1)[0])
    assert legend == ["2000 reference", "Canned machine (this machine)", "the class (61 machines): median"]
    assert "Student" not in chart
    assert f"the minimum of each machine: median over 61 machines; smallest {min(pooled):,.0f} ns" in chart
    # Every set keeps its page, and the machines page lists every set.
    pages = Path(built.outdir) / "machines"
    assert all((pages / f"student-{i:02d}.html").is_file() for i in range(1, 61))
    assert "course:" not in built._warning.getvalue(), built._warning.getvalue()


@pytest.mark.sphinx("html", testroot="course", srcdir="course-class-of-3")
def test_a_handful_of_sets_keep_a_column_each(make_app, app: SphinxTestApp) -> None:
    # The reference, this machine, the other machine and the students: SETS_IN_FULL sets in all.
    built = _class_app(make_app, app, SETS_IN_FULL - 3)
    head = _rows(_tables((Path(built.outdir) / "index.html").read_text(encoding="utf-8"))[0])[0]
    assert len(head) == 1 + SETS_IN_FULL + 1, head
    assert not any(title.startswith("the class") for title in head)


@pytest.mark.sphinx("html", testroot="course", srcdir="course-class-spread-once")
def test_a_tables_class_spread_is_computed_once_a_row(make_app, app: SphinxTestApp, monkeypatch) -> None:
    """Once to know whether the table has a class column, once more for its cell: the same figures twice."""
    asked: list[list] = []  # the figure lists themselves, kept alive: two asks of one list are one id
    real = table_directive.class_spread
    monkeypatch.setattr(
        table_directive,
        "class_spread",
        lambda found, field, anchors=None: asked.append(found) or real(found, field, anchors),
    )
    built = _class_app(make_app, app, SETS_IN_FULL)
    html = (Path(built.outdir) / "index.html").read_text(encoding="utf-8")
    assert any("the class:" in _rows(table)[0][-1] for table in _tables(html)), "a table with a class column"
    assert asked and len({id(found) for found in asked}) == len(asked), "each row's class figures spread once"


@pytest.mark.sphinx("html", testroot="course", srcdir="course-class-units")
def test_the_class_pools_only_figures_of_time(make_app, app: SphinxTestApp) -> None:
    """Emulated and icount ticks are not time: a class cell never pools them, even beside a rate."""
    built = _class_app(make_app, app, 60)
    kernel = (Path(built.outdir) / "kernel.html").read_text(encoding="utf-8")
    rows = _rows(_tables(kernel)[0])
    # Every machine of the class counted this read in icount ticks: nothing to pool, no column of dashes.
    assert rows[0] == ["measurement", "2000 reference", "Canned machine (this machine)"], rows[0]
    assert "figures of this table were emulated or counted in instructions" in unescape(kernel)


def test_invoke_site_sets_names_a_set_that_is_not_stored(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "reference-2000", results / "reference-2000")
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "site", "--sets", "reference-2000,lab-pc-99"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "INVOKE_COURSE_RESULTS": str(results), "INVOKE_COURSE_BUILD": str(tmp_path / "build")},
    )
    assert done.returncode == 2
    assert "--sets: no stored result set 'lab-pc-99'" in done.stderr and "invoke results" in done.stderr
    assert not (tmp_path / "build" / "html").exists(), "nothing is built for a wrong name"


def test_invoke_site_sets_takes_only_what_the_site_loads_and_shortens_a_long_name(tmp_path: Path) -> None:
    layout = Layout(ROOT, results_dir=tmp_path / "results")
    shutil.copytree(ROOT / "results" / "reference-2000", layout.results / "reference-2000")
    shutil.copytree(ROOT / "results" / "reference-2000", layout.results / ".import-x1")  # an import's staging
    (layout.results / "no-set-json").mkdir()
    assert site.chosen_sets(layout, "reference-2000") == ["reference-2000"]
    for name in (".import-x1", "no-set-json"):
        with pytest.raises(site.SiteError, match=f"no stored result set '{re.escape(name)}'"):
            site.chosen_sets(layout, f"reference-2000,{name}")
    with pytest.raises(site.SiteError) as refused:
        site.chosen_sets(layout, "x" * 5000)
    assert len(str(refused.value)) < 300 + len(str(layout.results)) and "xxx...'" in str(refused.value)


def test_chosen_sets_reach_sphinx_as_course_sets(tmp_path: Path) -> None:
    layout = Layout(ROOT, results_dir=tmp_path / "results", build_dir=tmp_path / "build")
    for name in ("reference-2000", "lab-pc-07", "lab-pc-08"):
        shutil.copytree(ROOT / "results" / "reference-2000", layout.results / name)  # a set: its set.json, valid
    chosen = site.chosen_sets(layout, " lab-pc-07, lab-pc-08,")
    assert chosen == ["lab-pc-07", "lab-pc-08"]
    command = site.sphinx_command(layout, sets=chosen)
    assert command[command.index("course_sets=lab-pc-07,lab-pc-08") - 1] == "-D"
    assert not any(word.startswith("course_sets") for word in site.sphinx_command(layout))


def test_the_progress_table_is_read_once_a_build_and_again_in_the_next(tmp_path: Path, monkeypatch) -> None:
    results = tmp_path / "results"
    shutil.copytree(ROOT / "tests/roots/test-course/results/other-machine", results / "student-01")
    info = json.loads((results / "student-01" / "set.json").read_text())
    (results / "student-01" / "set.json").write_text(json.dumps({**info, "imported": {"at": "now", "archive": "x"}}))
    lesson_file = results / "student-01" / "03-timing.json"
    lesson = json.loads(lesson_file.read_text())
    lesson["exercises"] = {"onebyte": {"yours": {"status": "works"}}}
    lesson_file.write_text(json.dumps(lesson))
    reads = []
    monkeypatch.setattr(progress, "rows", lambda folder, sets=None: reads.append(folder) or real_rows(folder, sets))
    sphinx_progress.new_build(None)  # type: ignore[arg-type]
    first = sphinx_progress.rows_of(results)
    # The second and third asks of a build take the table as read: no file is looked at again, not even its date.
    moved = results.rename(tmp_path / "moved")
    assert sphinx_progress.rows_of(results) is first and len(reads) == 1, "one read a build"
    moved.rename(results)
    lesson["exercises"]["onebyte"]["yours"]["status"] = "failed"
    lesson_file.write_text(json.dumps(lesson))
    sphinx_progress.new_build(None)  # type: ignore[arg-type]
    rows, _, _ = sphinx_progress.rows_of(results)
    assert len(reads) == 2 and rows[0].cells["03-timing/onebyte"].status == "failed"


@pytest.mark.sphinx("html", testroot="course-progress", srcdir="course-progress-one-load")
def test_the_progress_page_takes_the_sets_the_build_loaded(app: SphinxTestApp, make_app, monkeypatch) -> None:
    """A build reads the result sets once: the progress rows come from the sets the site loaded for its pages."""
    from course.results import store

    results = Path(app.srcdir) / "results"
    shutil.copytree(ROOT / "tests/roots/test-course/results/other-machine", results / "student-01")
    info = json.loads((results / "student-01" / "set.json").read_text())
    (results / "student-01" / "set.json").write_text(json.dumps({**info, "imported": {"at": "now", "archive": "x"}}))
    lesson = json.loads((results / "student-01" / "03-timing.json").read_text())
    lesson["exercises"] = {"onebyte": {"yours": {"status": "works"}}}
    (results / "student-01" / "03-timing.json").write_text(json.dumps(lesson))
    loads: list[Path] = []
    real_load_all = store.load_all
    monkeypatch.setattr(
        store, "load_all", lambda folder, *more, **named: loads.append(folder) or real_load_all(folder, *more, **named)
    )
    built = make_app("html", srcdir=Path(app.srcdir), freshenv=True)  # set up after the set is there
    built.build()
    assert loads == [results], "one load a build"
    assert "student-01" in (Path(built.outdir) / "progress.csv").read_text(), "the self-reported row, from that load"


def test_a_figure_emulated_or_counted_in_a_guest_is_never_pooled_even_as_a_percentage() -> None:
    share = {"unit": "%", "value": 52.7, "status": "ok", "derived": True}
    assert class_figure(share, "value") == (52.7, "%")
    assert class_figure({**share, "runner": "vm", "acceleration": "tcg"}, "value") is None
    assert class_figure({**share, "runner": "vm", "acceleration": "tcg-icount"}, "value") is None
    real = {"unit": "ticks", "min": 3000, "tsc_hz": 3e9, "status": "ok"}
    assert class_figure(real, "min") == (1000.0, "ns")
    assert class_figure({**real, "runner": "vm", "acceleration": "kvm"}, "min") == (1000.0, "ns"), "KVM runs in time"
    assert class_figure({"unit": "emulated ticks", "min": 936, "tsc_hz": 3e9, "status": "ok"}, "min") is None
    assert class_figure({**real, "status": "skipped"}, "min") is None
