"""Exercises: a student's TODO variant is built, checked and measured beside its reference solution."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import RUN_SAMPLES, fewer_run_samples

from course import pipeline
from course.measure import host_runs, lessons, protocol
from course.publish import report as report_text
from course.results.layout import Layout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def course_copy(tmp_path: Path) -> Layout:
    """A copy of the course's lessons and code, so a test may play the student and edit a variant (RUN_SAMPLES)."""
    root = tmp_path / "course"
    for part in ("lessons", "code"):
        shutil.copytree(ROOT / part, root / part)
    for lesson_toml in (root / "code" / "user").glob("*/lesson.toml"):
        fewer_run_samples(lesson_toml)
    (root / "conf.py").write_text("")
    return Layout(root)


def test_the_copy_runs_fewer_samples_of_the_lessons_programs_only(course_copy: Layout) -> None:
    lesson = lessons.find(course_copy, 3)
    assert {spec.args[0] for spec in lesson.runs} == {RUN_SAMPLES}
    assert [spec.args for spec in lesson.exercises] == [spec.args for spec in lessons.find(Layout(ROOT), 3).exercises]


def test_at_least_three_lessons_give_a_variant_to_write() -> None:
    with_exercises = [lesson for lesson in lessons.discover(Layout(ROOT)) if lesson.exercises]
    assert len(with_exercises) >= 3
    for lesson in with_exercises:
        for spec in lesson.exercises:
            assert "TODO" in lesson.source(spec.program).read_text(), f"{spec.program} has no TODO for the student"


def _solve(layout: Layout, lesson: lessons.Lesson, spec: lessons.ExerciseSpec) -> None:
    """Play a student who got it right: the variant becomes the solution."""
    solution = lesson.source(spec.solution).read_text().replace('"../../common/stamp.h"', '"../common/stamp.h"')
    lesson.source(spec.program).write_text(solution)


@pytest.mark.parametrize("number", [1, 3, 8])
def test_the_todo_variant_is_not_yet_right_and_the_solved_one_works(course_copy: Layout, number: int) -> None:
    set_path = pipeline.open_set(course_copy)
    lesson = lessons.find(course_copy, number)
    spec = lesson.exercises[0]
    report = pipeline.measure_lesson(course_copy, lesson, set_path, progress=lambda line: None)
    outcome = report.stored["exercises"][spec.name]
    assert outcome["solution"]["status"] in ("works", "cannot be checked here"), outcome
    assert outcome["yours"]["status"] in ("not yet", "cannot be checked here"), outcome
    if outcome["solution"]["status"] == "works":
        assert outcome["yours"]["detail"], "the check says what is wrong"
        solved = [
            k
            for k, m in report.stored["measurements"].items()
            if k.startswith(f"{lesson.name}/solution.{spec.name}.") and m["status"] == "ok"
        ]
        assert solved, "the reference solution is measured"

    _solve(course_copy, lesson, spec)
    # The student's loop (``invoke lesson N``): the lesson's unchanged programs keep their figures, the exercise reruns.
    again = pipeline.measure_lessons(course_copy, [lesson], set_path, keep_unchanged=True, progress=lambda line: None)[
        0
    ]
    assert not again.cached, "editing the variant reruns the lesson"
    yours = again.stored["exercises"][spec.name]["yours"]
    assert yours["status"] == outcome["solution"]["status"], yours
    if yours["status"] == "works":
        mine = [
            m
            for k, m in again.stored["measurements"].items()
            if k.startswith(f"{lesson.name}/exercise.{spec.name}.") and m["status"] == "ok"
        ]
        assert mine and all(m["samples"] > 0 for m in mine), "your variant is measured beside the solution"


def test_a_variant_that_does_not_compile_is_the_exercises_status_not_a_failure(course_copy: Layout) -> None:
    lesson = lessons.find(course_copy, 3)
    spec = lesson.exercises[0]
    lesson.source(spec.program).write_text("int main(void) { return missing_semicolon }\n")
    report = pipeline.measure_lesson(course_copy, lesson, pipeline.open_set(course_copy), progress=lambda line: None)
    assert report.failures == []
    yours = report.stored["exercises"][spec.name]["yours"]
    assert yours["status"] == "does not compile" and "error" in yours["detail"]


def test_check_lines_are_parsed() -> None:
    parsed = protocol.parse("course: check int80 fail returned -38\ncourse: check getcpu na no such call here\n")
    assert parsed.checks == {"int80": ("fail", "returned -38"), "getcpu": ("na", "no such call here")}
    with pytest.raises(protocol.ProtocolError, match="a check is ok, fail or na"):
        protocol.parse("course: check int80 maybe\n")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("for (;;) pause();", "stopped: timeout after 2 s"),
        ('for (;;) puts("a variant that floods its output");', "stopped: output over 4 MiB"),
    ],
    ids=["never-exits", "floods"],
)
def test_a_stopped_variant_says_why(course_copy: Layout, monkeypatch: pytest.MonkeyPatch, body: str, why: str) -> None:
    monkeypatch.setattr(host_runs, "EXERCISE_SECONDS", 2)
    lesson = lessons.find(course_copy, 1)
    spec = lesson.exercises[0]
    lesson.source(spec.program).write_text(f"#include <stdio.h>\n#include <unistd.h>\nint main(void) {{ {body} }}\n")
    report = pipeline.measure_lesson(course_copy, lesson, pipeline.open_set(course_copy), progress=lambda line: None)
    yours = report.stored["exercises"][spec.name]["yours"]
    assert yours == {"status": "stopped", "detail": why}
    table = report_text.exercises_table(report)
    assert "stopped" in table and why in table and "crashed" not in table
