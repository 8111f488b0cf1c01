"""The pipeline with a real compiler and real runs (marked slow: they take seconds)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course import lessons, pipeline, site, store
from course.layout import Layout

pytestmark = pytest.mark.slow


def test_lesson_3_measures_plausible_figures(scratch_layout: Layout) -> None:
    set_path = pipeline.open_set(scratch_layout)
    lesson = lessons.find(scratch_layout, 3)
    report = pipeline.measure_lesson(scratch_layout, lesson, set_path, progress=lambda line: None)
    assert report.failures == []
    measured = store.read_json(set_path / "03-timing.json")["measurements"]
    for stdin in ("tty", "file", "devnull", "pipe"):
        stamp = measured[f"03-timing/stamp-pair.{stdin}"]
        read = measured[f"03-timing/read.{stdin}"]
        assert stamp["status"] == read["status"] == "ok"
        assert stamp["min"] > 0, "the stamp pair itself takes time"
        # read figures have the stamp pair subtracted: the raw read costs more than the pair
        assert read["overhead"]["ticks"] == stamp["min"]
        assert read["min"] > 0
        assert read["min"] <= read["median"] <= read["p90"] <= read["p99"] <= read["max"]
        assert read["samples"] == 200000
        assert sum(read["histogram"]["counts"]) + read["histogram"]["above"] == read["samples"]
    info = store.read_json(set_path / "set.json")
    assert info["machine"]["tsc_hz"] > 1e8, "the TSC rate was measured and recorded"
    assert set(report.stored["sources"]) >= {"code/user/03-timing/usystime.c", "code/user/common/stamp.h"}


def test_unchanged_inputs_reuse_results_and_changed_ones_rerun(scratch_layout: Layout) -> None:
    set_path = pipeline.open_set(scratch_layout)
    lesson = lessons.find(scratch_layout, 1)
    first = pipeline.measure_lesson(scratch_layout, lesson, set_path, progress=lambda line: None)
    second = pipeline.measure_lesson(scratch_layout, lesson, set_path, progress=lambda line: None)
    forced = pipeline.measure_lesson(scratch_layout, lesson, set_path, force=True, progress=lambda line: None)
    assert not first.cached and second.cached and not forced.cached
    assert second.stored["measured_at"] == first.stored["measured_at"]


def _mini_course(tmp_path: Path, program: str, toml: str) -> Layout:
    root = tmp_path / "course"
    (root / "lessons").mkdir(parents=True)
    (root / "conf.py").write_text("")
    (root / "lessons" / "01-mini.md").write_text("# Mini\n")
    code = root / "code" / "user" / "01-mini"
    code.mkdir(parents=True)
    (root / "code" / "user" / "common").mkdir()
    (code / "lesson.toml").write_text(toml)
    (code / "prog.c").write_text(program)
    return Layout(root)


GOOD = r"""#include <stdio.h>
int main(void) { printf("course: measure x unit=ticks samples=2\ncourse: hist x 5x2\n"); return 0; }
"""


def test_a_failed_build_keeps_earlier_results_and_records_the_log(tmp_path: Path) -> None:
    layout = _mini_course(tmp_path, GOOD, '[[run]]\nprogram = "prog"\n')
    set_path = pipeline.open_set(layout)
    lesson = lessons.find(layout, 1)
    assert pipeline.measure_lesson(layout, lesson, set_path, progress=lambda line: None).failures == []
    (lesson.code_dir / "prog.c").write_text("int main(void) { return syntax error; }\n")
    report = pipeline.measure_lesson(layout, lesson, set_path, progress=lambda line: None)
    assert [f["step"] for f in report.failures] == ["build"]
    assert "error" in report.failures[0]["log"]
    stored = store.read_json(set_path / "01-mini.json")
    assert stored["measurements"]["01-mini/x"]["min"] == 5, "the earlier figure is kept"


def test_a_crashing_or_hanging_program_is_a_recorded_failure(tmp_path: Path) -> None:
    crash = "#include <stdlib.h>\nint main(void) { abort(); }\n"
    layout = _mini_course(tmp_path, crash, '[[run]]\nprogram = "prog"\n')
    set_path = pipeline.open_set(layout)
    report = pipeline.measure_lesson(layout, lessons.find(layout, 1), set_path, progress=lambda line: None)
    assert report.failures[0]["step"] == "run" and "exited with -6" in report.failures[0]["message"]

    hang = "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n"
    layout = _mini_course(tmp_path / "hang", hang, '[[run]]\nprogram = "prog"\ntimeout = 1\n')
    set_path = pipeline.open_set(layout)
    report = pipeline.measure_lesson(layout, lessons.find(layout, 1), set_path, progress=lambda line: None)
    assert "stopped (timeout)" in report.failures[0]["message"]


def test_unknown_lesson_on_the_command_line_lists_the_lessons(course_root: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "invoke", "lesson", "99"], cwd=course_root, capture_output=True, text=True
    )
    assert finished.returncode == 2
    assert "there is no lesson 99; the lessons are: 1 (01-user-kernel), 2 (02-read-path), 3" in finished.stderr


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz (dot) not installed: run invoke setup")
def test_the_whole_site_builds_without_a_warning(scratch_layout: Layout, course_root: Path) -> None:
    """Measure every lesson here for real, then build the site with -W from those results."""
    shutil.copytree(course_root / "results" / "reference-2000", scratch_layout.results / "reference-2000")
    set_path = pipeline.open_set(scratch_layout)
    for lesson in lessons.discover(scratch_layout):
        if lesson.has_code:
            report = pipeline.measure_lesson(scratch_layout, lesson, set_path, progress=lambda line: None)
            assert report.failures == []
    site.build_site(scratch_layout, strict=True, current_set=set_path.name)
    page = (scratch_layout.html / "lessons" / "03-timing.html").read_text()
    assert "course-value" in page and "<svg" in page
    assert (scratch_layout.html / "docs" / "api.html").read_text().count("course.store") > 1
