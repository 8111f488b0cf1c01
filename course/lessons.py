"""Lesson discovery: which lessons exist and what the pipeline does for each.

A lesson is a page ``lessons/NN-slug.md``; its programs live in ``code/user/NN-slug/``
with a ``lesson.toml`` saying how to run them (see ``docs/measuring.md``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from course.layout import Layout

LESSON_PAGE = re.compile(r"^(?P<number>\d{2})-(?P<slug>[a-z0-9-]+)\.md$")

#: The kinds of standard input a program can be run with.
STDIN_KINDS = ("devnull", "file", "pipe", "tty", "zero", "socket")


class LessonError(ValueError):
    """A lesson or its ``lesson.toml`` is not usable; the message says how to fix it."""


@dataclass(frozen=True)
class RunSpec:
    """Run one program, once per kind of standard input, and parse what it prints.

    ``files`` opens kinds of file beside standard input for one run of the program, which
    names them in its measurements (``read.tty``): figures it takes in interleaved rounds see
    the same moments of the machine, so they can be compared with each other.
    """

    program: str
    args: tuple[str, ...] = ()
    stdin: tuple[str, ...] = ("devnull",)
    timeout: float = 120.0
    libs: tuple[str, ...] = ()  # linker flags, such as -luring
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class DisassembleSpec:
    """Capture the disassembly of one symbol, from a lesson program or a shared library."""

    id: str
    symbol: str
    program: str | None = None
    library: str | None = None


@dataclass(frozen=True)
class ExerciseSpec:
    """A variant for the student to write, measured beside its reference solution.

    ``program`` is the student's TODO-marked copy, ``solution`` the course's answer (a path
    below the lesson's folder, without ``.c``); both print a ``course: check`` line.
    """

    name: str
    program: str
    solution: str
    args: tuple[str, ...] = ()
    stdin: tuple[str, ...] = ("devnull",)


@dataclass(frozen=True)
class ModuleSpec:
    """Load one kernel module once per kind of standard input, and parse what it logs.

    ``measures`` names every measurement the module reports, so that a run that cannot
    happen (no VM, no module loading) can still say, for each, why it was not run.
    """

    name: str
    measures: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    stdin: tuple[str, ...] = ("devnull",)
    expect: str = "load"  # or "build-error": the compiler's refusal is the result (lesson 5)


@dataclass(frozen=True)
class Lesson:
    """One lesson: its page and the code the pipeline builds and runs for it."""

    number: int
    name: str  # "03-timing": the prefix of every measurement id of the lesson
    title: str
    page: Path
    code_dir: Path
    runs: tuple[RunSpec, ...] = ()
    disassemblies: tuple[DisassembleSpec, ...] = ()
    programs: tuple[str, ...] = field(default=())
    kernel_dir: Path | None = None
    modules: tuple[ModuleSpec, ...] = ()
    derived: tuple[dict, ...] = ()  # [[derive]] entries, computed after the runs (course.derive)
    exercises: tuple[ExerciseSpec, ...] = ()

    @property
    def has_code(self) -> bool:
        return bool(self.runs or self.disassemblies or self.modules or self.exercises)

    def source(self, program: str) -> Path:
        return self.code_dir / f"{program}.c"


def discover(layout: Layout) -> list[Lesson]:
    """Every lesson of the course, in order."""
    lessons = []
    for page in sorted(layout.lessons.glob("*.md")):
        match = LESSON_PAGE.match(page.name)
        if not match:
            continue
        name = page.stem
        code_dir = layout.user_code / name
        runs, disassemblies, _ = _read_spec(code_dir / "lesson.toml")
        derived = _derive_specs(code_dir / "lesson.toml")
        exercises = _exercise_specs(code_dir / "lesson.toml")
        kernel_dir = layout.kernel_code / name
        modules = _read_spec(kernel_dir / "lesson.toml")[2]
        for module in modules:
            if not (kernel_dir / f"{module.name}.c").is_file():
                raise LessonError(f"{kernel_dir / 'lesson.toml'}: module {module.name!r} has no source {module.name}.c")
        programs = sorted(p.stem for p in code_dir.glob("*.c")) if code_dir.is_dir() else []
        for spec in [*runs, *(d for d in disassemblies if d.program)]:
            program = spec.program
            if program not in programs:
                raise LessonError(
                    f"{code_dir / 'lesson.toml'}: program {program!r} has no source "
                    f"{program}.c in {code_dir}; add it or fix the name"
                )
        lessons.append(
            Lesson(
                number=int(match["number"]),
                name=name,
                title=_title_of(page),
                page=page,
                code_dir=code_dir,
                runs=tuple(runs),
                disassemblies=tuple(disassemblies),
                programs=tuple(programs),
                kernel_dir=kernel_dir if modules else None,
                modules=tuple(modules),
                derived=tuple(derived),
                exercises=tuple(exercises),
            )
        )
    return lessons


def find(layout: Layout, number: int) -> Lesson:
    """The lesson numbered ``number``, or an error listing the lessons there are."""
    lessons = discover(layout)
    for lesson in lessons:
        if lesson.number == number:
            return lesson
    listing = ", ".join(f"{lesson.number} ({lesson.name})" for lesson in lessons)
    raise LessonError(f"there is no lesson {number}; the lessons are: {listing}")


def _title_of(page: Path) -> str:
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return page.stem


def _read_spec(path: Path) -> tuple[list[RunSpec], list[DisassembleSpec], list[ModuleSpec]]:
    if not path.is_file():
        return [], [], []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise LessonError(f"{path}: not valid TOML ({error})") from error
    unknown = set(data) - {"run", "disassemble", "module", "derive", "exercise"}
    if unknown:
        raise LessonError(f"{path}: unknown section(s) {sorted(unknown)}; use [[run]], [[disassemble]] or [[module]]")
    runs = [_run_spec(path, entry) for entry in data.get("run", [])]
    disassemblies = [_disassemble_spec(path, entry) for entry in data.get("disassemble", [])]
    modules = [_module_spec(path, entry) for entry in data.get("module", [])]
    return runs, disassemblies, modules


def _derive_specs(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    entries = tomllib.loads(path.read_text(encoding="utf-8")).get("derive", [])
    for entry in entries:
        if "name" not in entry or ("expression" not in entry and entry.get("kind") != "slope"):
            raise LessonError(f'{path}: a [[derive]] entry needs a name and an expression (or kind = "slope")')
        if entry.get("kind") == "slope" and not {"points", "sizes"} <= set(entry):
            raise LessonError(f"{path}: [[derive]] {entry['name']!r}: a slope needs points and sizes")
    return entries


def _exercise_specs(path: Path) -> list[ExerciseSpec]:
    if not path.is_file():
        return []
    specs = []
    for entry in tomllib.loads(path.read_text(encoding="utf-8")).get("exercise", []):
        if not {"name", "program", "solution"} <= set(entry):
            raise LessonError(f"{path}: an [[exercise]] needs name, program and solution")
        for key in ("program", "solution"):
            if not (path.parent / f"{entry[key]}.c").is_file():
                raise LessonError(f"{path}: exercise {entry['name']!r}: no source {entry[key]}.c in {path.parent}")
        specs.append(
            ExerciseSpec(
                name=entry["name"],
                program=entry["program"],
                solution=entry["solution"],
                args=tuple(str(arg) for arg in entry.get("args", [])),
                stdin=_file_kinds(path, entry),
            )
        )
    return specs


def _file_kinds(
    path: Path, entry: dict, key: str = "stdin", default: tuple[str, ...] = ("devnull",)
) -> tuple[str, ...]:
    kinds = tuple(entry.get(key, default))
    bad = [kind for kind in kinds if kind not in STDIN_KINDS]
    if bad:
        raise LessonError(f"{path}: unknown {key} kind(s) {bad}; choose from {list(STDIN_KINDS)}")
    return kinds


def _module_spec(path: Path, entry: dict) -> ModuleSpec:
    if "name" not in entry:
        raise LessonError(f'{path}: a [[module]] entry needs name = "..."')
    expect = entry.get("expect", "load")
    if expect not in ("load", "build-error"):
        raise LessonError(f"{path}: module {entry['name']!r}: expect must be load or build-error, not {expect!r}")
    return ModuleSpec(
        name=entry["name"],
        measures=tuple(entry.get("measures", [])),
        expect=expect,
        params=tuple(str(param) for param in entry.get("params", [])),
        stdin=_file_kinds(path, entry),
    )


def _run_spec(path: Path, entry: dict) -> RunSpec:
    if "program" not in entry:
        raise LessonError(f'{path}: a [[run]] entry needs program = "name"')
    stdin, files = _file_kinds(path, entry), _file_kinds(path, entry, "files", ())
    if files and len(stdin) > 1:
        raise LessonError(f"{path}: run {entry['program']!r}: give files or several stdin kinds, not both")
    return RunSpec(
        program=entry["program"],
        args=tuple(str(arg) for arg in entry.get("args", [])),
        stdin=stdin,
        timeout=float(entry.get("timeout", 120.0)),
        libs=tuple(str(flag) for flag in entry.get("libs", [])),
        files=files,
    )


def _disassemble_spec(path: Path, entry: dict) -> DisassembleSpec:
    if "id" not in entry or "symbol" not in entry:
        raise LessonError(f"{path}: a [[disassemble]] entry needs id and symbol")
    if ("program" in entry) == ("library" in entry):
        raise LessonError(f"{path}: [[disassemble]] {entry['id']!r} needs exactly one of program or library")
    return DisassembleSpec(
        id=entry["id"], symbol=entry["symbol"], program=entry.get("program"), library=entry.get("library")
    )
