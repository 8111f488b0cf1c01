"""Lesson discovery: which lessons exist and what the pipeline does for each.

A lesson is a page ``lessons/NN-slug.md``; its programs live in ``code/user/NN-slug/``
with a ``lesson.toml`` saying how to run them (see ``docs/measuring.md``).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from course.measure.lesson_fields import KERNEL_SETTINGS, REQUIRED, SECTIONS, BadValue
from course.results.layout import Layout

LESSON_PAGE = re.compile(r"^(?P<number>\d{2})-(?P<slug>[a-z0-9-]+)\.md$")


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
    below the lesson's folder, without ``.c``); both print a ``course: check`` line. A student
    copy of the course (:mod:`course.publish.edition`) has no solutions: ``solution`` is None there.
    """

    name: str
    program: str
    solution: str | None = None
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
    # A server module (lesson 9): it stays loaded while this user-space client (``NN-slug/name``,
    # a program of ``code/user``) talks to it over loopback in the guest; then it is unloaded.
    client: str = ""
    client_args: tuple[str, ...] = ()

    @property
    def client_lesson(self) -> str:
        return self.client.split("/", 1)[0]

    @property
    def client_name(self) -> str:
        return self.client.split("/", 1)[1]


@dataclass(frozen=True)
class GuestRunSpec:
    """Run another lesson's user-space program in the kernel lesson's own VM boot.

    The modules' figures come from the guest's kernel and clock (emulated ticks under TCG,
    instruction counts under icount); the user-space side they are compared with must come
    from the same boot to be like for like. ``program`` is ``NN-slug/name``, a program of
    ``code/user``; its figures are stored in this lesson as ``user.<program>.<name>``.
    """

    program: str
    args: tuple[str, ...] = ()
    stdin: tuple[str, ...] = ("devnull",)
    files: tuple[str, ...] = ()
    timeout: float = 120.0

    @property
    def lesson(self) -> str:
        return self.program.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.program.split("/", 1)[1]


@dataclass(frozen=True)
class TraceSpec:
    """Trace, with ftrace's ``function_graph`` in the modules' VM boot, one empty read per kind of file.

    ``program`` (``NN-slug/name``, a program of ``code/user``) is run with the tracing folder as
    its argument: it limits tracing to itself, turns it on, marks each read in the trace and
    turns it off. ``graph`` are the functions each call graph starts at (``set_graph_function``;
    those the kernel lacks are left out and recorded), ``notrace`` those whose graphs are left
    out (``set_graph_notrace``: the markers' own writes). Each kind's call graph is stored as the
    capture ``<lesson>/<name>.<kind>``.
    """

    name: str
    program: str
    files: tuple[str, ...]
    graph: tuple[str, ...]
    notrace: tuple[str, ...] = ()
    timeout: float = 60.0

    @property
    def lesson(self) -> str:
        return self.program.split("/", 1)[0]

    @property
    def program_name(self) -> str:
        return self.program.split("/", 1)[1]


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
    derived: tuple[dict, ...] = ()  # [[derive]] entries, computed after the runs (course.results.derive)
    exercises: tuple[ExerciseSpec, ...] = ()
    guest_runs: tuple[GuestRunSpec, ...] = ()  # user-space programs run in the modules' VM boot
    traces: tuple[TraceSpec, ...] = ()  # ftrace call graphs taken in the modules' VM boot
    # boot = "own": under tcg-icount its guest work boots from memory alone, as it does when run alone
    own_boot: bool = False

    @property
    def has_code(self) -> bool:
        return bool(self.runs or self.disassemblies or self.modules or self.exercises or self.traces)

    @property
    def in_vm(self) -> bool:
        """Whether the lesson has work for the kernel runner (modules to load or a trace to take)."""
        return bool(self.modules or self.traces)

    def source(self, program: str) -> Path:
        return self.code_dir / f"{program}.c"


def discover(layout: Layout) -> list[Lesson]:
    """Every lesson of the course, in order; a ``lesson.toml`` with a mistake is refused, naming it."""
    lessons = []
    for page in sorted(layout.lessons.glob("*.md")):
        match = LESSON_PAGE.match(page.name)
        if not match:
            continue
        name = page.stem
        code_dir = layout.user_code / name
        user = _load(code_dir / "lesson.toml", USER_SECTIONS)
        runs = [_run_spec(code_dir / "lesson.toml", entry) for entry in user.get("run", [])]
        disassemblies = [_disassemble_spec(code_dir / "lesson.toml", entry) for entry in user.get("disassemble", [])]
        derived = [spec for entry in user.get("derive", []) for spec in _derive_spec(code_dir / "lesson.toml", entry)]
        exercises = [_exercise_spec(code_dir / "lesson.toml", entry) for entry in user.get("exercise", [])]
        kernel_dir = layout.kernel_code / name
        kernel = _load(kernel_dir / "lesson.toml", KERNEL_SECTIONS)
        settings = _settings(kernel_dir / "lesson.toml")
        modules = [_module_spec(layout, kernel_dir / "lesson.toml", entry) for entry in kernel.get("module", [])]
        guest_runs = [
            _guest_run_spec(layout, kernel_dir / "lesson.toml", entry) for entry in kernel.get("guest_run", [])
        ]
        traces = [_trace_spec(layout, kernel_dir / "lesson.toml", entry) for entry in kernel.get("trace", [])]
        derived += [
            spec for entry in kernel.get("derive", []) for spec in _derive_spec(kernel_dir / "lesson.toml", entry)
        ]
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
                kernel_dir=kernel_dir if modules or traces else None,
                modules=tuple(modules),
                derived=tuple(derived),
                exercises=tuple(exercises),
                guest_runs=tuple(guest_runs),
                traces=tuple(traces),
                own_boot=settings.get("boot") == "own",
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


#: Which sections each lesson.toml holds: the programs' in code/user, the modules' in code/kernel.
USER_SECTIONS = ("run", "disassemble", "derive", "exercise")
KERNEL_SECTIONS = ("module", "guest_run", "trace", "derive")


def _load(path: Path, sections: tuple[str, ...]) -> dict[str, list[dict]]:
    """The entries of a ``lesson.toml``, each key known and each value checked, by section."""
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise LessonError(f"{path}: not valid TOML ({error})") from None
    except UnicodeDecodeError:
        raise LessonError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except OSError as error:
        raise LessonError(f"{path}: cannot be read ({error.strerror}); check its permissions") from None
    listed = ", ".join(f"[[{name}]]" for name in sections)
    for name in data:
        if name in sections or (name in KERNEL_SETTINGS and sections == KERNEL_SECTIONS):
            continue
        if name in KERNEL_SETTINGS:
            raise LessonError(f"{path}: {name} belongs in code/kernel/NN-slug/lesson.toml, beside the modules")
        if name in SECTIONS:
            home = "code/kernel/NN-slug/" if name in ("module", "guest_run", "trace") else "code/user/NN-slug/"
            raise LessonError(f"{path}: [[{name}]] belongs in {home}lesson.toml; this file holds {listed}")
        raise LessonError(f"{path}: unknown section {name!r}{_guess(name, sections)}; this file holds {listed}")
    return {name: _entries(path, name, data.get(name, [])) for name in sections}


def _settings(path: Path) -> dict[str, object]:
    """The settings above the entries of a kernel ``lesson.toml`` (:data:`KERNEL_SETTINGS`), each checked."""
    if not path.is_file():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))  # read by _load first, which refuses a bad file
    try:
        return {name: check(name, data[name]) for name, check in KERNEL_SETTINGS.items() if name in data}
    except BadValue as error:
        raise LessonError(f"{path}: {error}") from None


def _entries(path: Path, section: str, entries: object) -> list[dict]:
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise LessonError(f"{path}: write each {section} entry as a table headed [[{section}]] (two brackets)")
    checks = SECTIONS[section]
    checked = []
    for number, entry in enumerate(entries, start=1):
        first = entry.get(REQUIRED[section][0])
        where = f"{path}: [[{section}]] " + (repr(first) if isinstance(first, str) else f"entry {number}")
        unknown = [key for key in entry if key not in checks]
        if unknown:
            raise LessonError(
                f"{where}: unknown key {unknown[0]!r}{_guess(unknown[0], tuple(checks))}; "
                f"the keys of [[{section}]] are {', '.join(checks)}"
            )
        missing = [key for key in REQUIRED[section] if key not in entry]
        if missing:
            raise LessonError(f"{where} needs {' and '.join(missing)}")
        try:
            checked.append({key: checks[key](key, value) for key, value in entry.items()})
        except BadValue as error:
            raise LessonError(f"{where}: {error}") from None
    return checked


def _guess(name: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _derive_spec(path: Path, entry: dict) -> list[dict]:
    """The entry, or with ``kinds`` one entry per kind of file, ``{kind}`` replaced in each text."""
    _check_derive(path, entry)
    kinds = entry.get("kinds")
    if kinds is None:
        return [entry]
    if "{kind}" not in entry["name"]:
        raise LessonError(f"{path}: [[derive]] {entry['name']!r}: with kinds, the name must put {{kind}} somewhere")
    texts = ("name", "expression", "points")
    return [
        {
            **{k: v for k, v in entry.items() if k != "kinds"},
            **{k: entry[k].replace("{kind}", kind) for k in texts if k in entry},
        }
        for kind in kinds
    ]


def _check_derive(path: Path, entry: dict) -> None:
    if entry.get("kind") == "slope":
        if not {"points", "sizes"} <= set(entry) or {"expression", "unit"} & set(entry):
            raise LessonError(
                f"{path}: [[derive]] {entry['name']!r}: a slope takes points and sizes (no expression or unit)"
            )
    elif "expression" not in entry or {"points", "sizes"} & set(entry):
        raise LessonError(
            f'{path}: [[derive]] {entry["name"]!r} needs an expression, or kind = "slope" with points and sizes'
        )


def _exercise_spec(path: Path, entry: dict) -> ExerciseSpec:
    for key in ("program", "solution"):
        if key in entry and not (path.parent / f"{entry[key]}.c").is_file():
            raise LessonError(f"{path}: exercise {entry['name']!r}: no source {entry[key]}.c in {path.parent}")
    return ExerciseSpec(
        name=entry["name"],
        program=entry["program"],
        solution=entry.get("solution"),
        args=entry.get("args", ()),
        stdin=entry.get("stdin", ("devnull",)),
    )


def _module_spec(layout: Layout, path: Path, entry: dict) -> ModuleSpec:
    client = entry.get("client", "")
    if client and not re.fullmatch(r"\d{2}-[a-z0-9-]+/[A-Za-z0-9_-]+", client):
        raise LessonError(
            f'{path}: [[module]] {entry["name"]!r}: client must be a lesson\'s program, like "09-khttpd/serve", '
            f"not {client!r}"
        )
    if client and not (layout.user_code / f"{client}.c").is_file():
        raise LessonError(f"{path}: [[module]] {entry['name']!r}: no source {client}.c in {layout.user_code}")
    if "client_args" in entry and not client:
        raise LessonError(f"{path}: [[module]] {entry['name']!r}: client_args without a client")
    return ModuleSpec(
        name=entry["name"],
        measures=entry.get("measures", ()),
        expect=entry.get("expect", "load"),
        params=entry.get("params", ()),
        stdin=entry.get("stdin", ("devnull",)),
        client=client,
        client_args=entry.get("client_args", ()),
    )


def _run_spec(path: Path, entry: dict) -> RunSpec:
    stdin, files = entry.get("stdin", ("devnull",)), entry.get("files", ())
    if files and len(stdin) > 1:
        raise LessonError(f"{path}: run {entry['program']!r}: give files or several stdin kinds, not both")
    return RunSpec(
        program=entry["program"],
        args=entry.get("args", ()),
        stdin=stdin,
        timeout=entry.get("timeout", 120.0),
        libs=entry.get("libs", ()),
        files=files,
    )


def _guest_run_spec(layout: Layout, path: Path, entry: dict) -> GuestRunSpec:
    program = entry["program"]
    if not re.fullmatch(r"\d{2}-[a-z0-9-]+/[A-Za-z0-9_-]+", program):
        raise LessonError(
            f'{path}: [[guest_run]] program must be a lesson\'s program, like "03-timing/usystime", not {program!r}'
        )
    if not (layout.user_code / f"{program}.c").is_file():
        raise LessonError(f"{path}: [[guest_run]] {program!r} has no source {program}.c in {layout.user_code}")
    stdin, files = entry.get("stdin", ("devnull",)), entry.get("files", ())
    if files and len(stdin) > 1:
        raise LessonError(f"{path}: [[guest_run]] {program!r}: give files or several stdin kinds, not both")
    return GuestRunSpec(program, entry.get("args", ()), stdin, files, entry.get("timeout", 120.0))


def _trace_spec(layout: Layout, path: Path, entry: dict) -> TraceSpec:
    program = entry["program"]
    if not re.fullmatch(r"\d{2}-[a-z0-9-]+/[A-Za-z0-9_-]+", program):
        raise LessonError(
            f'{path}: [[trace]] {entry["name"]!r}: program must be a lesson\'s program, like "02-read-path/readtrace", '
            f"not {program!r}"
        )
    if not (layout.user_code / f"{program}.c").is_file():
        raise LessonError(f"{path}: [[trace]] {entry['name']!r}: no source {program}.c in {layout.user_code}")
    if not entry["graph"]:
        raise LessonError(f"{path}: [[trace]] {entry['name']!r}: graph must name at least one function to start at")
    return TraceSpec(
        name=entry["name"],
        program=program,
        files=entry["files"],
        graph=entry["graph"],
        notrace=entry.get("notrace", ()),
        timeout=entry.get("timeout", 60.0),
    )


def _disassemble_spec(path: Path, entry: dict) -> DisassembleSpec:
    if ("program" in entry) == ("library" in entry):
        raise LessonError(f"{path}: [[disassemble]] {entry['id']!r} needs exactly one of program or library")
    return DisassembleSpec(
        id=entry["id"], symbol=entry["symbol"], program=entry.get("program"), library=entry.get("library")
    )
