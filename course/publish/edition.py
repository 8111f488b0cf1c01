"""Editions of the course: the full one (with the exercises' solutions) and the students' one.

A solution is any file in a ``solutions/`` folder of ``code/`` (beside the exercises). The
student edition of the site leaves them out of the pages and the downloads
(``course.publish.sphinxext.code``); a student
copy of the repository (:func:`student_copy`) leaves them out of the files, drops the
``solution`` key of each ``[[exercise]]`` and carries no history: one fresh commit.

Prose that gives a solution away sits in a ``course-solution-prose`` block (:data:`SOLUTION_PROSE`):
the student edition leaves it out of the pages, and a student copy out of its files.

A student copy says so in :data:`MARKER` at its root, so that its own builds are the student
edition without being asked, and a full edition (which needs the solutions) is refused there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath

from course.publish.report import printable
from course.results.layout import Layout

EDITIONS = ("full", "student")

#: A file at a student copy's root; its content is the edition.
MARKER = ".course-edition"

#: The folder name that holds an exercise's reference solution.
SOLUTIONS = "solutions"

#: The one line of a lesson.toml that names an exercise's solution (the course writes it so).
_SOLUTION_LINE = re.compile(r'^solution\s*=\s*"[^"\n]*"\s*(#.*)?$', re.MULTILINE)


#: The directive around prose that gives a solution away (the full edition only): a fenced block of its own,
#: ``:::{course-solution-prose}`` to a closing ``:::`` of the same indentation (or with backticks).
SOLUTION_PROSE = "course-solution-prose"


class EditionError(ValueError):
    """An edition that does not exist, or cannot be built from this checkout."""


def is_solution(relative: str | PurePosixPath) -> bool:
    """Whether a path (from the checkout's root) is an exercise's solution: in a ``solutions/`` folder of ``code/``.

    Only the course's code: a test's canned project (``tests/roots/...``) keeps its own.
    """
    parts = PurePosixPath(relative).parts
    return len(parts) > 2 and parts[0] == "code" and SOLUTIONS in parts[1:-1]


def of_checkout(root: Path) -> str:
    """The checkout's own edition: ``student`` in a student copy, else ``full``."""
    marker = root / MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8", errors="replace").strip() == "student":
        return "student"
    return "full"


def chosen(root: Path, wanted: str | None) -> str:
    """The edition to build: ``wanted``, or the checkout's own; a full edition needs the solutions."""
    own = of_checkout(root)
    edition = wanted or own
    if edition not in EDITIONS:
        raise EditionError(f"unknown edition {edition!r}; choose one of {', '.join(EDITIONS)}")
    if edition == "full" and own == "student":
        raise EditionError("this is a student copy: it has no solutions, so no full edition; leave --edition out")
    return edition


def folder_name(root: Path, edition: str) -> str:
    """Where under ``build/`` an edition's site goes: the checkout's own edition in ``html``."""
    return "" if edition == of_checkout(root) else edition


def without_solutions(lesson_toml: str) -> str:
    """A lesson.toml's text with each ``solution = "..."`` line removed (the rest kept as written)."""
    return _SOLUTION_LINE.sub("", lesson_toml).replace("\n\n\n", "\n\n")


def without_solution_prose(page: str, name: str = "the page") -> str:
    """A MyST page's text with each ``course-solution-prose`` block cut out (the rest kept as written).

    The blocks are found by MyST's own parser, so every form it reads as the directive is cut (a ``~~~`` or
    backtick fence, a space after the fence, text on the opening line, CRLF line ends). A block whose closing
    fence is missing is refused (what follows it would be cut too, or kept with the solution), and so is one
    MyST would not see at the top level (inside another directive's block): refused, never kept.
    """
    lines = page.splitlines(keepends=True)
    cut: list[tuple[int, int]] = []
    for token in _fences(page):
        if not _is_solution_prose(token.info):
            continue
        start, end = token.map
        closing = lines[end - 1].strip() if end - 1 > start else ""
        if not closing or set(closing) != {token.markup[0]} or len(closing) < len(token.markup):
            raise EditionError(
                f"{name}, line {start + 1}: a {SOLUTION_PROSE} block is never closed; close it with {token.markup}"
            )
        cut.append((start, end))
    kept: list[str] = []
    index = 0
    for start, end in cut:
        kept += lines[index:start]
        if kept and not kept[-1].strip() and end < len(lines) and not lines[end].strip():
            end += 1  # the blank line after the block goes with it, the one before stays
        index = end
    kept += lines[index:]
    text = "".join(kept)
    for token in _fences(text):
        if token.info.strip().startswith("{") and "{" + SOLUTION_PROSE + "}" in token.content:
            line = token.map[0] + 1
            raise EditionError(
                f"{name}: a {SOLUTION_PROSE} block inside the {token.info.split()[0]} block of line {line} (as it "
                "stands after cutting) cannot be cut; move it out to the top level of the page"
            )
    return text


def _fences(page: str) -> list:
    """The page's fenced blocks (``:::``, backticks, ``~~~``) as MyST's markdown parser reads them, with their lines."""
    from markdown_it.renderer import RendererHTML  # the parser is needed by a student copy only
    from myst_parser.config.main import MdParserConfig
    from myst_parser.parsers.mdit import create_md_parser

    parser = create_md_parser(MdParserConfig(enable_extensions={"colon_fence"}), RendererHTML)
    return [token for token in parser.parse(page) if token.type in ("fence", "colon_fence") and token.map]


def _is_solution_prose(info: str) -> bool:
    return info.strip().startswith("{" + SOLUTION_PROSE + "}")


def tracked_files(root: Path) -> list[str]:
    """The checkout's files under version control (paths from its root), as git lists them."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached"], capture_output=True, check=True
        ).stdout
    except FileNotFoundError:
        raise EditionError("git is not installed; install it with: apt-get install git") from None
    except subprocess.CalledProcessError as error:
        said = error.stderr.decode("utf-8", "replace").strip().splitlines()
        raise EditionError(f"{root} is not a git checkout ({said[0] if said else 'git ls-files failed'})") from None
    return sorted(name for name in listed.decode("utf-8", "surrogateescape").split("\0") if name)


def student_copy(layout: Layout, destination: Path) -> tuple[Path, list[str]]:
    """Write a student copy of the checkout into ``destination`` (new or empty); return it and what was left out.

    The tracked files as they are in the working tree, without the solutions; each lesson.toml
    without its ``solution`` keys (checked by parsing it again); the edition marker; then
    ``git init`` and one commit, so that no history (and no solution in it) is carried.
    """
    root = layout.root
    if of_checkout(root) == "student":
        raise EditionError(f"{root} is already a student copy")
    destination = destination.expanduser().resolve()
    shown = printable(str(destination))  # a name from the command line may hold a newline or an escape
    if destination == root or root in destination.parents:
        raise EditionError(f"{shown} is inside the course's checkout; choose a folder outside it")
    try:
        if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
            raise EditionError(f"{shown} exists and is not an empty folder; choose a new one")
    except OSError as error:
        raise EditionError(f"cannot use {shown} for a student copy ({error.strerror}); choose a new folder") from None
    files = tracked_files(root)
    left_out = [name for name in files if is_solution(name)]
    partial = destination.with_name(f".{destination.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
    except OSError as error:
        raise EditionError(
            f"cannot write a student copy at {shown} ({error.strerror}); choose a folder you may write to"
        ) from None
    try:
        for name in files:
            source = root / name
            if name in left_out or not source.is_file():  # a tracked file deleted in the working tree
                continue
            target = partial / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if PurePosixPath(name).name == "lesson.toml":
                _write_lesson_toml(source, target)
            elif name.endswith(".md"):
                text = source.read_text(encoding="utf-8")
                target.write_text(without_solution_prose(text, name) if SOLUTION_PROSE in text else text, "utf-8")
            else:
                shutil.copy2(source, target)
        (partial / MARKER).write_text("student\n", encoding="utf-8")
        _one_commit(partial)
        if destination.exists():
            destination.rmdir()
        partial.rename(destination)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return destination, left_out


def _write_lesson_toml(source: Path, target: Path) -> None:
    text = without_solutions(source.read_text(encoding="utf-8"))
    parsed = tomllib.loads(text)
    if any("solution" in entry for entry in parsed.get("exercise", [])):
        raise EditionError(f'{source}: a solution key is not on a line of its own; write it as solution = "..."')
    target.write_text(text, encoding="utf-8")


def _one_commit(folder: Path) -> None:
    """``git init`` and a single commit of everything in ``folder``, by a fixed author."""
    identity = ["-c", "user.name=Course", "-c", "user.email=course@localhost", "-c", "commit.gpgsign=false"]
    for command in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", *identity, "commit", "-q", "-m", "The course, student edition (solutions left out)"],
    ):
        finished = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        if finished.returncode != 0:
            raise EditionError(f"{' '.join(command[:2])} failed in the student copy: {finished.stderr.strip()[:300]}")
