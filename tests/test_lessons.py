from __future__ import annotations

from pathlib import Path

import pytest

from course.measure import lessons
from course.results.layout import Layout


def test_discovers_the_course_lessons_in_order(course_root: Path) -> None:
    found = lessons.discover(Layout(course_root))
    numbers = [lesson.number for lesson in found]
    assert numbers == sorted(numbers) and {1, 2, 3} <= set(numbers)
    timing = next(lesson for lesson in found if lesson.number == 3)
    assert timing.name == "03-timing"
    assert timing.runs[0].program == "usystime"
    assert set(timing.runs[0].files) == {"tty", "file", "devnull", "pipe", "zero", "socket"}


def test_unknown_lesson_lists_the_lessons(course_root: Path) -> None:
    with pytest.raises(lessons.LessonError, match=r"there is no lesson 99; the lessons are: 1 \(01-user-kernel\)"):
        lessons.find(Layout(course_root), 99)


def _mini_course(tmp_path: Path, toml: str, source: str | None = "prog") -> Layout:
    (tmp_path / "lessons").mkdir()
    (tmp_path / "lessons" / "01-mini.md").write_text("# Mini\n")
    code = tmp_path / "code" / "user" / "01-mini"
    code.mkdir(parents=True)
    (code / "lesson.toml").write_text(toml)
    if source:
        (code / f"{source}.c").write_text("int main(void) { return 0; }\n")
    return Layout(tmp_path)


def test_a_run_of_a_missing_program_names_the_file(tmp_path: Path) -> None:
    layout = _mini_course(tmp_path, '[[run]]\nprogram = "absent"\n')
    with pytest.raises(lessons.LessonError, match=r"program 'absent' has no source absent\.c"):
        lessons.discover(layout)


def test_bad_toml_is_named(tmp_path: Path) -> None:
    layout = _mini_course(tmp_path, "[[run]\n")
    with pytest.raises(lessons.LessonError, match="not valid TOML"):
        lessons.discover(layout)


def test_files_and_several_stdin_kinds_are_refused_together(tmp_path: Path) -> None:
    layout = _mini_course(tmp_path, '[[run]]\nprogram = "prog"\nstdin = ["tty", "file"]\nfiles = ["pipe"]\n')
    with pytest.raises(lessons.LessonError, match="give files or several stdin kinds, not both"):
        lessons.discover(layout)


@pytest.mark.parametrize("key", ["stdin", "files"])
def test_unknown_kind_lists_the_kinds(tmp_path: Path, key: str) -> None:
    layout = _mini_course(tmp_path, f'[[run]]\nprogram = "prog"\n{key} = ["carrier-pigeon"]\n')
    with pytest.raises(lessons.LessonError, match=f"unknown {key} kind"):
        lessons.discover(layout)


def test_disassembly_needs_program_or_library(tmp_path: Path) -> None:
    layout = _mini_course(tmp_path, '[[disassemble]]\nid = "x"\nsymbol = "main"\n')
    with pytest.raises(lessons.LessonError, match="exactly one of program or library"):
        lessons.discover(layout)


def _prose(text: str) -> str:
    """A lesson's words without its code blocks, inline code and roles (a role's figure comes from a result file)."""
    import re

    text = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    text = re.sub(r"\{[a-z0-9-]+\}`[^`]*`", " {figure} ", text)
    return re.sub(r"`[^`]*`", " ", text)


def test_no_lesson_types_an_approximate_measured_figure(course_root: Path) -> None:
    """An "about 300 ticks" or "about 300 of its {figure}" is a figure typed by hand: it comes from a result file."""
    import re

    typed = re.compile(r"\b(?:about|nearly|roughly|around|some) \d[\d,.]*\s+(?:ticks|ns|cycles|instructions|of its)\b")
    found = [
        (path.name, match[0])
        for path in sorted((course_root / "lessons").glob("*.md"))
        for match in typed.finditer(re.sub(r"\s+", " ", _prose(path.read_text(encoding="utf-8"))))
    ]
    assert not found, found


@pytest.mark.parametrize("flag", ["-o", "/tmp/elsewhere", "@/etc/passwd", "-Wl,-o,/tmp/x", "-l", "-lm x"])
def test_libs_other_than_library_flags_are_refused(tmp_path: Path, flag: str) -> None:
    # libs reach cc as they are: "-o PATH" wrote the binary anywhere, "@FILE" put a host file in the build log.
    layout = _mini_course(tmp_path, f'[[run]]\nprogram = "prog"\nlibs = ["-luring", {flag!r}]\n'.replace("'", '"'))
    with pytest.raises(lessons.LessonError, match=r"libs entry .* is not a library flag: give only -lNAME items"):
        lessons.discover(layout)


def test_library_flags_pass(tmp_path: Path) -> None:
    layout = _mini_course(tmp_path, '[[run]]\nprogram = "prog"\nlibs = ["-luring", "-lstdc++", "-lm"]\n')
    assert lessons.discover(layout)[0].runs[0].libs == ("-luring", "-lstdc++", "-lm")


def test_build_program_refuses_a_flag_that_is_not_a_library(tmp_path: Path) -> None:
    from course.measure.build import BuildError, build_program

    layout = _mini_course(tmp_path, '[[run]]\nprogram = "prog"\n')
    lesson = lessons.discover(layout)[0]
    (tmp_path / "secret.txt").write_text("SECRET-WORD\n")
    escaped = tmp_path / "escaped"
    for libs in (("-o", str(escaped)), (f"@{tmp_path / 'secret.txt'}",)):
        with pytest.raises(BuildError, match="is not a library flag") as error:
            build_program(layout, lesson, "prog", libs=libs)
        assert "SECRET-WORD" not in error.value.log
    assert not escaped.exists()
