"""Compiling the lessons' user-space programs, only when their inputs changed."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from course.measure.lesson_fields import LIB_FLAG
from course.measure.lessons import Lesson
from course.results.fingerprint import compiler_version
from course.results.layout import Layout

#: Optimised as a real program would be; warnings shown, never fatal on a newer compiler.
CFLAGS = ("-O2", "-Wall", "-Wextra", "-g")


class BuildError(RuntimeError):
    """A program that did not compile; ``log`` holds the compiler's output."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class Program:
    """A compiled program and what it was made from."""

    name: str
    binary: Path
    sources: dict[str, str]  # path relative to the checkout -> sha256
    compiler: str
    cflags: tuple[str, ...]
    rebuilt: bool

    @property
    def inputs_hash(self) -> str:
        """One hash of everything that shapes the binary."""
        text = "\n".join([*(f"{k}={v}" for k, v in sorted(self.sources.items())), self.compiler, *self.cflags])
        return hashlib.sha256(text.encode()).hexdigest()


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def program_sources(layout: Layout, lesson: Lesson, program: str) -> dict[str, str]:
    """The program's own source and the shared headers it may include, with their hashes."""
    files = [lesson.source(program), *sorted((layout.user_code / "common").glob("*.h"))]
    return {str(path.relative_to(layout.root)): file_hash(path) for path in files}


def require_compiler(cc: str) -> None:
    if shutil.which(cc) is None:
        raise BuildError(
            f"no C compiler {cc!r} on PATH; install one with: apt-get install build-essential "
            "(the README's first command does this)"
        )


def build_program(layout: Layout, lesson: Lesson, program: str, cc: str = "cc", libs: tuple[str, ...] = ()) -> Program:
    """Compile one program into ``build/``, or reuse the binary if nothing it depends on changed.

    ``libs`` are linker flags (``-luring``) from the program's ``[[run]]`` entry.
    """
    # lesson.toml checks libs; checked again here because every caller hands them to cc as they are.
    for flag in libs:
        if not re.fullmatch(LIB_FLAG, flag):
            raise BuildError(
                f"libs entry {flag!r} for {program} is not a library flag: give only -lNAME items, like -luring"
            )
    require_compiler(cc)
    sources = program_sources(layout, lesson, program)
    built = Program(
        name=program,
        binary=layout.build / "code" / lesson.name / program,
        sources=sources,
        compiler=compiler_version(cc),
        cflags=(*CFLAGS, *libs),
        rebuilt=False,
    )
    stamp = built.binary.with_suffix(".inputs")
    if built.binary.is_file() and stamp.is_file() and stamp.read_text() == built.inputs_hash:
        return built
    built.binary.parent.mkdir(parents=True, exist_ok=True)
    command = [cc, *CFLAGS, "-o", str(built.binary), str(lesson.source(program)), *libs]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise BuildError(
            f"{lesson.source(program).relative_to(layout.root)} did not compile (exit {finished.returncode})",
            log=" ".join(command) + "\n" + finished.stdout + finished.stderr,
        )
    stamp.write_text(built.inputs_hash)
    return Program(**{**built.__dict__, "rebuilt": True})
