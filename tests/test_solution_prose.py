"""Prose that gives a solution away (a ``course-solution-prose`` block): in the full edition only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from course.publish import edition
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
ANSWER = "pread-at-offset-zero"


def _warnings(app) -> list[str]:
    """The build's warnings, less the one a project without result sets always has."""
    return [line for line in app._warning.getvalue().splitlines() if line.strip() and "course.no-set" not in line]


@pytest.mark.sphinx("html", testroot="course-editions")
def test_the_full_edition_shows_the_block(app) -> None:
    app.build()
    page = (Path(app.outdir) / "index.html").read_text()
    assert ANSWER in page and "the hint every edition keeps" in page and "The next exercise" in page
    assert _warnings(app) == []


@pytest.mark.sphinx(
    "html", testroot="course-editions", srcdir="course-editions-student", confoverrides={"course_edition": "student"}
)
def test_the_student_edition_leaves_the_block_out_of_the_page_and_the_search(app) -> None:
    app.build()
    built = Path(app.outdir)
    assert ANSWER not in (built / "index.html").read_text()
    assert "the hint every edition keeps" in (built / "index.html").read_text()
    assert "pread" not in (built / "searchindex.js").read_text(), "the search index never saw the block"
    files = [path for path in built.rglob("*") if path.is_file()]
    leaks = [path.relative_to(built) for path in files if ANSWER in path.read_text("latin-1")]
    assert leaks == [], "no file of the student site holds it (a page's copied MyST source did)"
    assert _warnings(app) == []


def test_a_page_loses_each_block_and_keeps_the_rest() -> None:
    page = (ROOT / "tests" / "roots" / "test-course-editions" / "index.md").read_text()
    cut = edition.without_solution_prose(page)
    assert ANSWER not in cut and edition.SOLUTION_PROSE not in cut
    assert "the hint every edition keeps.\n\n2. The next exercise" in cut, cut
    # Backtick fences too, and a longer fence closes only with as many of its characters.
    nested = "a\n````{course-solution-prose}\n```c\nint x;\n```\n````\nb\n"
    assert edition.without_solution_prose(nested) == "a\nb\n"
    with pytest.raises(edition.EditionError, match=r"lessons/x.md, line 2: a course-solution-prose block is never"):
        edition.without_solution_prose("a\n:::{course-solution-prose}\nthe answer\n", "lessons/x.md")


@pytest.mark.parametrize(
    "page",
    [
        "a\n\n:::{course-solution-prose} SECRET on the opening line\nSECRET\n:::\n\nb\n",
        "a\n\n::: {course-solution-prose}\nSECRET\n:::\n\nb\n",
        "a\n\n~~~{course-solution-prose}\nSECRET\n~~~\n\nb\n",
        "a\r\n\r\n:::{course-solution-prose}\r\nSECRET\r\n:::\r\n\r\nb\r\n",
        "a\n\n:::{course-solution-prose}\nSECRET\n::: \nb\n",
    ],
)
def test_every_form_myst_reads_as_the_block_is_cut(page: str) -> None:
    """MyST reads each of these as the directive (the student site hides it): a student copy must cut it too."""
    cut = edition.without_solution_prose(page)
    assert "SECRET" not in cut and "a" in cut and "b" in cut, repr(cut)


def test_a_block_the_cut_cannot_reach_is_refused_not_kept() -> None:
    inside = "a\n\n::::{note}\n:::{course-solution-prose}\nSECRET\n:::\n::::\n\nb\n"
    with pytest.raises(edition.EditionError, match=r"lessons/x.md: a course-solution-prose block inside the \{note\}"):
        edition.without_solution_prose(inside, "lessons/x.md")


def test_no_lesson_gives_lesson_3s_solution_away_in_the_student_edition() -> None:
    """Lesson 3's exercise named the system call its solution uses; that sentence is the full edition's now."""
    page = (ROOT / "lessons" / "03-timing.md").read_text()
    exercise = page[page.index("**Write a variant.**") : page.index("4. `usystime`")]
    student = edition.without_solution_prose(exercise)
    assert "uses {man2}`pread`" in exercise, "the full edition keeps it"
    assert not re.search(r"pread", student), student
    assert "Lesson 7" in student and "read_one_byte()" in student, "the exercise and its hint stay"


@pytest.mark.slow
def test_a_student_copy_has_no_solution_prose_in_its_pages(tmp_path: Path) -> None:
    copy, _ = edition.student_copy(Layout(ROOT), tmp_path / "class")
    pages = {path.relative_to(copy).as_posix(): path.read_text() for path in copy.glob("lessons/*.md")}
    assert pages and not [name for name, text in pages.items() if "{" + edition.SOLUTION_PROSE + "}" in text]
    assert "uses {man2}`pread`" not in pages["lessons/03-timing.md"]
    lesson_9 = pages["lessons/09-khttpd.md"]
    assert "solutions/exercise-zerocopy.c" not in lesson_9, "lesson 9's folded answer is cut"
    assert "`send_page_zerocopy()`" in lesson_9, "its exercise stays"
    assert "{course-code} code/kernel/09-khttpd/exercise-zerocopy.c" in lesson_9, "and the stub to fill in"


def test_the_guide_documents_the_block() -> None:
    guide = (ROOT / "docs" / "instructors.md").read_text()
    assert "`:::{course-solution-prose}`" in guide and "student copy" in guide
    assert edition.without_solution_prose(guide) == guide, "the guide names the block without opening one"
