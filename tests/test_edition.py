"""The student edition: no solution in its pages or downloads; the student copy of the repository builds and runs."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from course.measure import lessons
from course.publish import edition, site
from course.results.layout import Layout

if TYPE_CHECKING:
    from tests.conftest import StudentCheckout

ROOT = Path(__file__).resolve().parents[1]


def solutions_and_exercises() -> dict[str, tuple[Path, Path]]:
    """Every solution of the course with the exercise it answers: each ``[[exercise]]``'s program, and each kernel
    lesson's ``solutions/exercise-NAME.c`` (lesson 9's, which its module includes in place of the student's file)."""
    pairs: dict[str, tuple[Path, Path]] = {}
    for lesson in lessons.discover(Layout(ROOT)):
        for spec in lesson.exercises:
            assert spec.solution is not None
            pairs[spec.solution] = (lesson.source(spec.solution), lesson.source(spec.program))
    for solution in sorted((ROOT / "code" / "kernel").glob("*/solutions/*")):
        pairs[solution.relative_to(ROOT).as_posix()] = (solution, solution.parent.parent / solution.name)
    assert "code/kernel/09-khttpd/solutions/exercise-zerocopy.c" in pairs, "lesson 9's answer is a solution file"
    return pairs


def solution_lines() -> dict[str, list[str]]:
    """Each solution's own lines of code or comment: those its exercise and the files beside it do not have (and
    do not hold: a line is looked for as a part of the text), of at least 20 characters."""
    found: dict[str, list[str]] = {}
    for name, (solution, exercise) in solutions_and_exercises().items():
        beside = "\n".join(path.read_text() for path in sorted(exercise.parent.iterdir()) if path.is_file())
        own = [line.strip() for line in solution.read_text().splitlines()]
        found[name] = [line for line in own if len(line) >= 20 and line not in beside]
    assert len(found) >= 4 and all(found.values()), found
    return found


def text_of(path: Path) -> str:
    """A built file as a reader sees it: HTML without its tags (Pygments cuts a line into spans), entities decoded."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".html":
        text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return text


def solutions_in(tree: Path) -> list[str]:
    """Every (file, line) of a solution found anywhere in a built tree."""
    wanted = [line for lines in solution_lines().values() for line in lines]
    hits = []
    binary = (".png", ".svg", ".ico", ".woff2")
    for path in sorted(p for p in tree.rglob("*") if p.is_file() and p.suffix not in binary):
        text = text_of(path)
        hits += [f"{path.relative_to(tree)}: {line}" for line in wanted if line in text]
    return hits


def test_a_solution_is_a_file_in_a_solutions_folder() -> None:
    assert edition.is_solution("code/user/03-timing/solutions/exercise-onebyte.c")
    assert not edition.is_solution("code/user/03-timing/exercise-onebyte.c")
    assert not edition.is_solution("solutions")
    assert not edition.is_solution("tests/roots/test-course/code/user/03-timing/solutions/exercise-one.c")


def test_lesson_toml_loses_only_its_solution_lines() -> None:
    text = (ROOT / "code/user/03-timing/lesson.toml").read_text()
    stripped = edition.without_solutions(text)
    assert "solution =" not in stripped and "solutions/" not in stripped
    assert stripped.count("[[run]]") == text.count("[[run]]") and 'program = "exercise-onebyte"' in stripped


@pytest.mark.slow
def test_the_student_edition_has_no_solution_source_and_the_full_one_does(
    tmp_path: Path, checkout_site, published: Path
) -> None:
    # The student edition's own folder is apart from the full one's.
    layout = Layout(ROOT, results_dir=ROOT / "results", build_dir=tmp_path / "build")
    assert site.html_folder(layout, "student") == tmp_path / "build" / "student" / "html"
    # Its pages are the session's published site (conftest.py: ``invoke publish --strict``, the student edition, built
    # with -W): what a class reads online, one build for these checks and test_publish.py's.
    student = published / "html"
    assert solutions_in(student) == []
    page = (student / "lessons" / "03-timing.html").read_text()
    assert "exercise-onebyte.c" in page and "uses pread" not in text_of(student / "lessons" / "03-timing.html")
    # Lesson 3's solution, prose and code, is a course-solution-prose block: gone. Lesson 1's code says why it is.
    assert "not part of the student edition" in (student / "lessons" / "01-user-kernel.html").read_text()

    # The check can fail: the full edition (its own folder) does show them, folded and as downloads. It is the
    # session's build of this checkout (conftest.py, with no warning): its own edition, whose command is edition "full".
    assert site.sphinx_command(checkout_site, strict=True) == site.sphinx_command(
        checkout_site, strict=True, edition_name="full"
    )
    found = solutions_in(checkout_site.html)
    assert any(hit.startswith("lessons/03-timing.html") for hit in found), found
    assert any(hit.startswith("_downloads/") for hit in found), found
    # Lesson 9's kernel exercise too: its answer folded on the page and its solution file a download, here only.
    assert any(hit.startswith("lessons/09-khttpd.html") and "sock_sendmsg" in hit for hit in found), found
    assert any(hit.startswith("_downloads/") and "/exercise-zerocopy.c: " in hit for hit in found), found
    lesson_9 = text_of(student / "lessons" / "09-khttpd.html")
    assert "exercise-zerocopy.c" in lesson_9 and "return -EOPNOTSUPP;" in lesson_9, "the stub is shown, to fill in"


@pytest.mark.slow
def test_the_student_copy_has_one_commit_no_solution_and_runs_lesson_3(
    class_copy: StudentCheckout, lesson_3_in_a_student_checkout: StudentCheckout
) -> None:
    # Both made once for the session (conftest.py): the copy by ``invoke student-copy``, then a student's checkout
    # of it where ``invoke lesson 3`` ran; the grading walkthrough works on in copies of them.
    copy = class_copy.path
    assert class_copy.ran == [["student-copy", str(copy)]]
    finished = class_copy.output
    assert finished.returncode == 0, finished.stderr
    assert "solution files left out" in finished.stdout
    log = subprocess.run(["git", "-C", str(copy), "log", "--format=%H"], capture_output=True, text=True, check=True)
    assert len(log.stdout.split()) == 1, "no history is carried: one commit"
    tracked = subprocess.run(["git", "-C", str(copy), "ls-files"], capture_output=True, text=True, check=True).stdout
    assert not [path for path in tracked.splitlines() if path.startswith("code/") and "solutions/" in path]
    assert "code/user/03-timing/exercise-onebyte.c" in tracked
    assert not list((copy / "code").rglob("solutions"))
    # Lesson 9's exercise is a kernel module's: the copy has its stub, and no line of its answer anywhere.
    assert "code/kernel/09-khttpd/exercise-zerocopy.c" in tracked
    assert solutions_in(copy / "code") == [] and solutions_in(copy / "lessons") == []
    assert edition.of_checkout(copy) == "student"

    # The student's own checkout: lesson 3 reruns, its exercise is checked (no solution beside it), the site builds.
    checkout = lesson_3_in_a_student_checkout.path
    assert lesson_3_in_a_student_checkout.ran[-1][:2] == ["lesson", "3"]
    ran = lesson_3_in_a_student_checkout.output
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "exercises (edit the TODO" in ran.stdout
    # Where the rerun's time went, each share on its own line (invoke bench reads both).
    assert re.search(r"^built and measured in \d+\.\d s\nsite updated in \d+\.\d s: ", ran.stdout, re.MULTILINE)
    stored = [json.loads(path.read_text()) for path in (checkout / "results").glob("*/03-timing.json")]
    mine = [data for data in stored if "yours" in data.get("exercises", {}).get("onebyte", {})]
    fresh = [data for data in mine if "solution" not in data["exercises"]["onebyte"]]
    assert fresh, "the student's run checked the variant, with no solution to run"
    assert fresh[0]["exercises"]["onebyte"]["yours"]["status"] in ("not yet", "cannot be checked here")
    assert (checkout / "build" / "html" / "lessons" / "03-timing.html").is_file()
    assert solutions_in(checkout / "build" / "html") == []

    # A full edition needs the solutions: refused there, in one line.
    refused = subprocess.run(
        [sys.executable, "-m", "invoke", "site", "--edition", "full"], cwd=checkout, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "student copy" in refused.stderr


def test_a_student_copy_is_refused_inside_the_checkout_or_over_files(tmp_path: Path) -> None:
    with pytest.raises(edition.EditionError, match="inside the course's checkout"):
        edition.student_copy(Layout(ROOT), ROOT / "build" / "class")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(edition.EditionError, match="not an empty folder"):
        edition.student_copy(Layout(ROOT), tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_a_student_copy_where_none_can_be_written_is_one_escaped_line(tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "invoke", "student-copy", "/proc/x"], cwd=ROOT, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert refused.stderr.strip().splitlines() == [
        "error: cannot write a student copy at /proc/x (No such file or directory); choose a folder you may write to"
    ]
    (tmp_path / "taken\nerror: all fine\x1b[2J").mkdir()
    (tmp_path / "taken\nerror: all fine\x1b[2J" / "notes.txt").write_text("mine")
    with pytest.raises(edition.EditionError) as taken:
        edition.student_copy(Layout(ROOT), tmp_path / "taken\nerror: all fine\x1b[2J")
    assert "\n" not in str(taken.value) and "\x1b" not in str(taken.value) and "taken\\nerror" in str(taken.value)
