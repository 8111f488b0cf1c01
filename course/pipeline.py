"""Measuring lessons: build their code, run it, summarize and store the figures.

This is the one place that knows the order of the steps; each step lives in its own
module (:mod:`course.build`, :mod:`course.runners`, :mod:`course.kernel_runs`,
:mod:`course.protocol`, :mod:`course.stats`, :mod:`course.store`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from course import disassemble, fingerprint, protocol, store, validate
from course.build import BuildError, Program, build_program, file_hash
from course.guest_hardware import DEFAULT as DEFAULT_HARDWARE
from course.guest_hardware import GuestHardware
from course.layout import Layout
from course.lessons import Lesson
from course.runners import FLOODED, OUTPUT_LIMIT_BYTES, run_on_host
from course.stats import summarize

Progress = Callable[[str], None]


class MachineError(RuntimeError):
    """This machine cannot measure what the course measures; the message says what to do instead."""


def require_x86_64(architecture: str | None = None) -> None:
    """The programs read the x86 time-stamp counter: refuse, clearly, anywhere else."""
    found = architecture or platform.machine()
    if found not in ("x86_64", "AMD64"):
        raise MachineError(
            f"this machine is {found}, not x86-64: the course's programs read the x86 time-stamp counter "
            "(rdtsc). Measure on an x86-64 machine, or build the site from stored results with: invoke site"
        )


#: Where kernel modules may run, and how the ``vm`` runner may emulate (see :mod:`course.vm`).
KERNEL_RUNNERS = ("vm", "host-kernel", "none")
ACCELERATIONS = ("auto", "kvm", "tcg", "tcg-icount")


class OptionError(ValueError):
    """An option of the command line or configuration that has no meaning; the message lists the valid ones."""


@dataclass(frozen=True)
class KernelOptions:
    """Where kernel modules run: ``vm`` (default), ``host-kernel`` (only when asked by name) or ``none``.

    Checked when made, before anything runs: a typo must not turn into a run that measures nothing.
    """

    runner: str = "vm"
    acceleration: str = "auto"  # auto, kvm, tcg or tcg-icount
    release: str = ""  # the guest kernel; default: the newest installed
    hardware: GuestHardware = DEFAULT_HARDWARE  # the CPU model and kernel parameters the guest is given

    def __post_init__(self) -> None:
        if self.runner not in KERNEL_RUNNERS:
            raise OptionError(
                f"unknown kernel runner {self.runner!r}; choose one of {', '.join(KERNEL_RUNNERS)} (--kernel-runner)"
            )
        if self.acceleration not in ACCELERATIONS:
            raise OptionError(
                f"unknown acceleration {self.acceleration!r}; choose one of {', '.join(ACCELERATIONS)} (--acceleration)"
            )


@dataclass
class LessonReport:
    """What a lesson's run did: its stored file, whether it was reused, its steps."""

    lesson: Lesson
    stored: dict
    previous: dict
    cached: bool
    steps: list[dict] = field(default_factory=list)

    @property
    def failures(self) -> list[dict]:
        return [] if self.cached else self.stored.get("failures", [])


@dataclass
class LessonRun:
    """A lesson being measured: what it produced so far."""

    lesson: Lesson
    previous: dict
    programs: dict[str, Program] = field(default_factory=dict)
    measurements: dict[str, dict] = field(default_factory=dict)
    captures: dict[str, dict] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    tsc_rates: list[float] = field(default_factory=list)
    kernel: dict = field(default_factory=dict)  # runner, acceleration, guest kernel
    sources: dict[str, str] = field(default_factory=dict)
    exercises: dict[str, dict] = field(default_factory=dict)  # name -> {"yours": ..., "solution": ...}
    kernel_only: bool = False  # a kernel matrix's run: only what runs in the guest (course.matrix)

    def fail(self, step: str, what: str, message: str, log: str = "") -> None:
        self.failures.append(failure(step, what, message, log))


#: What must match for a run to add to an existing set: the set belongs to one machine.
SAME_MACHINE = ("cpu_model", "kernel_release", "virtualization")


def open_set(layout: Layout, set_name: str | None = None, label: str | None = None) -> Path:
    """This machine's result set folder, created or refreshed with its provenance.

    A set named after another machine (or the 2000 reference) is refused: a run never
    touches another machine's figures.
    """
    machine = fingerprint.machine()
    path = layout.results / fingerprint.set_name(set_name, machine)
    info: dict = {"kind": "measured", "machine": machine}
    if label:
        info["label"] = label
    previous = store.read_json(path / store.SET_FILE) if (path / store.SET_FILE).is_file() else {}
    refuse_foreign(path, previous)
    if previous.get("guest"):
        # Its figures are one guest kernel's: a run of this machine's default guest would mix kernels in it.
        guest = previous["guest"]
        raise MachineError(
            f"result set {path.name!r} holds the figures of guest kernel {guest.get('name', '?')} "
            f"({guest.get('acceleration', '?')}); measure into it with: invoke run --guest-kernels "
            f"{guest.get('name', '?')} --acceleration {guest.get('acceleration', '?')}"
        )
    theirs = previous.get("machine", {})
    differing = [key for key in SAME_MACHINE if theirs and theirs.get(key) != machine.get(key)]
    if differing:
        described = ", ".join(f"{key} {theirs.get(key)!r}" for key in differing)
        raise MachineError(
            f"result set {path.name!r} belongs to another machine ({described}); "
            "choose another name with --set, or remove that folder if it is yours"
        )
    # The TSC rate is measured by the programs; keep the last one until a new one arrives.
    machine["tsc_hz"] = theirs.get("tsc_hz")
    store.save_set_info(path, info)
    return path


def refuse_foreign(path: Path, previous: dict) -> None:
    """A run never measures into a reference set, nor into one that came by import."""
    if previous.get("kind") == "reference":
        raise MachineError(f"result set {path.name!r} is a reference set; measure into a set of your own (--set)")
    if previous.get("imported"):
        # Its figures came in an archive: reusing them, or adding to them, would pass them off as measured here.
        raise MachineError(
            f"result set {path.name!r} came by import (from {previous['imported'].get('archive', '?')!r}); a run "
            "never measures into an imported set: choose another name with --set, or remove that folder"
        )


def measurement_id(lesson: Lesson, name: str, stdin: str, kinds: tuple[str, ...]) -> str:
    """``03-timing/read.devnull``: lesson, measurement, and the kind of standard input when it varies."""
    return f"{lesson.name}/{name}" + (f".{stdin}" if len(kinds) > 1 else "")


def inputs_key(run: LessonRun, machine: dict, kernel_setting: dict) -> str:
    """A hash of everything that could change the lesson's figures: reuse results only if it matches."""
    lesson = run.lesson
    specs = [
        path.read_text(encoding="utf-8")
        for path in (lesson.code_dir / "lesson.toml", (lesson.kernel_dir or lesson.code_dir) / "lesson.toml")
        if path.is_file()
    ]
    parts = {
        "programs": {name: program.inputs_hash for name, program in sorted(run.programs.items())},
        "sources": run.sources,
        "specs": specs,
        "kernel": machine.get("kernel_version", "") + machine.get("kernel_release", ""),
        "cpu": [machine.get("cpu_model"), machine.get("microcode")],
        # Where modules run, not why (the probe's wording and date would rerun them for nothing).
        "kernel_runner": {k: v for k, v in kernel_setting.items() if k != "why"} if lesson.in_vm else None,
    }
    if run.kernel_only and kernel_setting.get("acceleration") == "tcg-icount":
        # Only the guest runs, and icount ticks count its instructions: this host's kernel and CPU
        # change none of them (the compiler does, through the programs' hashes).
        parts = {**parts, "kernel": "", "cpu": [], "kernel_only": True}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def measure_lessons(
    layout: Layout,
    lessons: list[Lesson],
    set_path: Path,
    *,
    force: bool = False,
    progress: Progress = print,
    kernel: KernelOptions | None = None,
    kernel_only: bool = False,
) -> list[LessonReport]:
    """Build and run the lessons' code and store each lesson's results in ``set_path``.

    A lesson's results are reused, without running anything, when nothing that shapes
    them changed (sources, compiler, flags, kernel, machine), unless ``force`` is set.
    All kernel modules of the lessons that do run share one VM boot. With ``kernel_only``
    (a kernel matrix, :mod:`course.matrix`) only what runs in the guest runs: the modules,
    the guest's programs and the traces; nothing is run or timed on this machine.
    """
    from course import kernel_runs  # the kernel side pulls in the VM machinery only when needed

    require_x86_64()
    kernel = kernel or KernelOptions()
    machine = store.read_json(set_path / store.SET_FILE)["machine"]
    setting = kernel_runs.setting(layout, kernel, progress) if any(lesson.in_vm for lesson in lessons) else {}
    reports: list[LessonReport] = []
    pending: list[LessonRun] = []
    for lesson in lessons:
        previous_path = set_path / f"{lesson.name}.json"
        run = LessonRun(lesson, store.read_json(previous_path) if previous_path.is_file() else {})
        run.kernel_only = kernel_only
        progress(f"lesson {lesson.number} ({lesson.name})")
        if not kernel_only:
            _build_programs(layout, run, progress)
        kernel_runs.build_guest_programs(layout, run, progress)
        run.sources.update(kernel_runs.module_hashes(layout, lesson))
        key = inputs_key(run, machine, setting)
        if (
            not force
            and not run.failures
            and run.previous.get("inputs_key") == key
            and not run.previous.get("failures")
        ):
            progress(f"  reuse  {lesson.name} results (sources, compiler, kernel and machine unchanged)")
            reports.append(LessonReport(lesson, run.previous, run.previous, cached=True, steps=run.steps))
            continue
        run.kernel = {"inputs_key": key}
        if not kernel_only:
            _run_programs(layout, run, progress)
            _run_exercises(layout, run, progress)
            _disassemble(run)
        pending.append(run)

    kernel_lessons = [run for run in pending if run.lesson.in_vm]
    if kernel_lessons:
        kernel_runs.measure(layout, kernel_lessons, kernel, setting, progress)

    for run in pending:
        _derive(run, set_path)
        if run.tsc_rates and not run.lesson.modules and not run.kernel_only:  # a guest's rate is not this machine's
            _record_tsc_rate(set_path, statistics.median(run.tsc_rates))
        stored = store.save_lesson(set_path, run.lesson.name, _lesson_file(run))
        reports.append(LessonReport(run.lesson, stored, run.previous, cached=False, steps=run.steps))
    reports.sort(key=lambda report: report.lesson.number)
    return reports


def measure_lesson(
    layout: Layout,
    lesson: Lesson,
    set_path: Path,
    *,
    force: bool = False,
    progress: Progress = print,
    kernel: KernelOptions | None = None,
) -> LessonReport:
    """One lesson: see :func:`measure_lessons`."""
    return measure_lessons(layout, [lesson], set_path, force=force, progress=progress, kernel=kernel)[0]


def _lesson_file(run: LessonRun) -> dict:
    first = next(iter(run.programs.values()), None)
    return {
        "measured_at": store.now(),
        "runner": "host" if not (run.lesson.modules or run.kernel_only) else run.kernel.get("runner", "vm"),
        "kernel_run": {k: v for k, v in run.kernel.items() if k != "inputs_key"},
        "inputs_key": run.kernel.get("inputs_key", "") if not run.failures else "",
        "compiler": first.compiler if first else fingerprint.compiler_version(),
        "cflags": list(first.cflags) if first else [],
        "sources": {**run.sources, **{p: d for program in run.programs.values() for p, d in program.sources.items()}},
        "measurements": run.measurements,
        "captures": run.captures,
        "failures": run.failures,
        "steps": run.steps,
        "exercises": run.exercises,
    }


def _build_programs(layout: Layout, run: LessonRun, progress: Progress) -> None:
    lesson = run.lesson
    # An exercise's sources belong to the inputs: editing your variant reruns the lesson.
    for spec in lesson.exercises:
        for program in (spec.program, spec.solution):
            if program is None:  # a student copy: no solution
                continue
            source = lesson.source(program)
            run.sources[str(source.relative_to(layout.root))] = file_hash(source)
    libs = {spec.program: spec.libs for spec in lesson.runs}
    names = [spec.program for spec in lesson.runs] + [d.program for d in lesson.disassemblies if d.program]
    for name in dict.fromkeys(names):
        build_into(layout, run, lesson, name, progress, libs=libs.get(name, ()))


def build_into(
    layout: Layout,
    run: LessonRun,
    owner: Lesson,
    name: str,
    progress: Progress,
    *,
    key: str = "",
    step_name: str = "",
    libs: tuple[str, ...] = (),
) -> None:
    """Compile ``owner``'s program ``name`` into ``run.programs[key or name]``, timing the step.

    A program that does not compile is recorded as the run's failure, not raised.
    """
    key = key or name
    started = time.monotonic()
    try:
        run.programs[key] = build_program(layout, owner, name, libs=libs)
    except BuildError as error:
        run.fail("build", key, str(error), error.log)
        progress(f"  build  {key:<20} FAILED: {error}")
        return
    step = timed_step(step_name or f"build {key}", started, cached=not run.programs[key].rebuilt)
    run.steps.append(step)
    progress(f"  build  {key:<20} {step['seconds']:6.2f} s{' (unchanged)' if step['cached'] else ''}")


def _run_programs(layout: Layout, run: LessonRun, progress: Progress) -> None:
    lesson = run.lesson
    for spec in lesson.runs:
        program = run.programs.get(spec.program)
        if program is None:
            continue
        for stdin in spec.stdin:
            started = time.monotonic()
            also = f" files={','.join(spec.files)}" if spec.files else ""
            progress(f"  run    {spec.program:<20} stdin={stdin}{also} ...")
            outcome = run_on_host(
                program.binary,
                spec.args,
                stdin,
                layout.build / "scratch",
                spec.timeout,
                shown_as=os.path.relpath(program.binary, layout.root),
                files=spec.files,
            )
            run.steps.append(timed_step(f"run {spec.program} ({stdin})", started))
            what = f"{spec.program} (stdin={stdin})"
            if not outcome.ok:
                run.fail("run", what, f"{outcome.command} {outcome.ended}", outcome.stdout + outcome.stderr)
                continue
            context = {
                "stdin": stdin,
                **({"files": list(spec.files)} if spec.files else {}),
                "command": outcome.command,
                "exit_status": outcome.exit_status,
                "sources": program.sources,
                "runner": "host",
            }
            parsed = parse_or_fail(run, what, outcome.stdout)
            if parsed is None:
                continue
            record(run, spec.stdin, stdin, parsed, context)
            run.captures[measurement_id(lesson, spec.program, stdin, spec.stdin) + ".output"] = {
                "text": "\n".join(parsed.text).strip("\n"),
                "command": outcome.command,
                "measured_at": store.now(),
            }


#: How long a student's variant (or its solution) may run before it is stopped.
EXERCISE_SECONDS = 120


def stopped_why(stopped: str) -> str:
    """Why a variant was stopped: ``timeout after 120 s``, ``output over 4 MiB``."""
    if stopped == FLOODED:
        return f"output over {OUTPUT_LIMIT_BYTES // (1024 * 1024)} MiB"
    return f"timeout after {EXERCISE_SECONDS:g} s"


def _run_exercises(layout: Layout, run: LessonRun, progress: Progress) -> None:
    """Build and run each exercise's student variant and its solution; record both checks and figures.

    A student's variant that does not compile, crashes or fails its check is the exercise's
    status, not a failure of the course; the solution failing is one.
    """
    lesson = run.lesson
    for spec in lesson.exercises:
        outcome: dict[str, dict] = {}
        for role, program in (("solution", spec.solution), ("yours", spec.program)):
            if program is None:  # a student copy has no solution to measure beside yours
                continue
            prefix = f"{'solution' if role == 'solution' else 'exercise'}.{spec.name}."
            try:
                built = build_program(layout, lesson, program)
            except BuildError as error:
                errors = [line for line in error.log.splitlines() if "error" in line]
                outcome[role] = {"status": "does not compile", "detail": (errors or [str(error)])[0][-300:]}
                if role == "solution":
                    run.fail("build", program, str(error), error.log)
                continue
            for stdin in spec.stdin:
                progress(f"  check  {program:<20} stdin={stdin} ...")
                started = time.monotonic()
                result = run_on_host(
                    built.binary,
                    spec.args,
                    stdin,
                    layout.build / "scratch",
                    EXERCISE_SECONDS,
                    shown_as=os.path.relpath(built.binary, layout.root),
                )
                run.steps.append(timed_step(f"exercise {program} ({stdin})", started))
                parsed, unparsed = None, ""
                if result.ok:
                    try:
                        parsed = protocol.parse(result.stdout)
                    except protocol.ProtocolError as error:  # a student's stray "course:" line
                        unparsed = str(error)
                check = parsed.checks.get(spec.name) if parsed else None
                if result.exit_status == 0 and not result.stopped and result.not_utf8:
                    state = {"status": "not yet", "detail": f"it {result.ended}"[:300]}
                elif result.stopped:  # ran too long or printed too much: why, in the status's own words
                    state = {"status": "stopped", "detail": f"stopped: {stopped_why(result.stopped)}"}
                elif not result.ok:
                    state = {"status": "crashed", "detail": f"{result.command} {result.ended}"[-300:]}
                elif unparsed:
                    state = {"status": "not yet", "detail": f"its output does not parse: {unparsed}"[:300]}
                elif check is None:
                    state = {"status": "not yet", "detail": "the program printed no check line"}
                else:
                    status = {"ok": "works", "fail": "not yet", "na": "cannot be checked here"}[check[0]]
                    state = {"status": status, "detail": check[1]}
                outcome[role] = state
                if role == "solution" and state["status"] not in ("works", "cannot be checked here"):
                    run.fail(
                        "check",
                        program,
                        f"the reference solution fails its own check: {state['detail']}",
                        result.stdout + result.stderr,
                    )
                if parsed is not None:
                    context = {
                        "stdin": stdin,
                        "command": result.command,
                        "exit_status": result.exit_status,
                        "sources": built.sources,
                        "runner": "host",
                    }
                    record(run, spec.stdin, stdin, parsed, context, prefix=prefix)
        run.exercises[spec.name] = outcome


def parse_or_fail(run: LessonRun, what: str, output: str) -> protocol.ProgramOutput | None:
    try:
        return protocol.parse(output)
    except protocol.ProtocolError as error:
        run.fail("parse", what, str(error), output[-4000:])
        return None


def record(
    run: LessonRun,
    kinds: tuple[str, ...],
    stdin: str,
    parsed: protocol.ProgramOutput,
    context: dict,
    unit: str | None = None,
    with_rate: bool = True,
    prefix: str = "",
) -> None:
    """Store the parsed measurements and skips of one run (a program's, or a module load's).

    ``prefix`` goes before each measurement's name (``exercise.int80.``), so that an
    exercise's figures and its solution's stand apart from the lesson's own.
    """
    lesson = run.lesson
    tsc_hz = float(parsed.meta["tsc_hz"]) if parsed.meta.get("tsc_hz") and with_rate else None
    if tsc_hz:
        run.tsc_rates.append(tsc_hz)
    measured_at = store.now()
    meta = {k: v for k, v in parsed.meta.items() if k not in ("tsc_hz", "done")}
    for name, raw in parsed.measurements.items():
        overhead = 0
        if raw.subtract:
            base = parsed.measurements.get(raw.subtract)
            if base is None:
                run.fail("parse", name, f"{name} subtracts unknown measurement {raw.subtract}")
                continue
            overhead = min(base.counts)
        summary = summarize(raw.counts, overhead, raw.per)
        key = measurement_id(lesson, prefix + name, stdin, kinds)
        measurement = {
            "status": "ok",
            "calls_per_sample": raw.per,
            # The runner's unit names what ticks count there; a count of calls or bytes keeps its own.
            "unit": (unit or raw.unit) if raw.unit == "ticks" else raw.unit,
            "samples": summary.samples,
            "min": summary.min,
            "median": summary.median,
            "p90": summary.p90,
            "p99": summary.p99,
            "max": summary.max,
            "overhead": {
                "ticks": overhead,
                "from": measurement_id(lesson, prefix + raw.subtract, stdin, kinds) if raw.subtract else None,
            },
            "histogram": summary.histogram,
            "tsc_hz": tsc_hz if raw.unit == "ticks" else None,  # a count of calls has no nanoseconds
            "measured_at": measured_at,
            "meta": meta,
            **context,
        }
        # What the store would refuse (a minimum below its subtracted stamp pair...) fails this
        # program's parse step here; stored, it would stop the whole run.
        try:
            validate.check_measurement(key, measurement)
        except validate.SchemaError as error:
            run.fail("parse", prefix + name, f"{key} cannot be stored: it {error}")
            continue
        run.measurements[key] = measurement
    for name, reason in parsed.skipped.items():
        run.measurements[measurement_id(lesson, prefix + name, stdin, kinds)] = {
            "status": "skipped",
            "reason": reason,
            "measured_at": measured_at,
            **context,
        }


def _disassemble(run: LessonRun) -> None:
    for spec in run.lesson.disassemblies:
        started = time.monotonic()
        try:
            if spec.program:
                if spec.program not in run.programs:
                    continue
                listing, command = disassemble.of_program(run.programs[spec.program].binary, spec.symbol)
            else:
                listing, command = disassemble.of_library(spec.library or "", spec.symbol)
        except disassemble.DisassemblyError as error:
            run.fail("disassemble", spec.id, str(error))
            continue
        run.captures[f"{run.lesson.name}/{spec.id}"] = {"text": listing, "command": command, "measured_at": store.now()}
        run.steps.append(timed_step(f"disassemble {spec.id}", started))


def _derive(run: LessonRun, set_path: Path) -> None:
    """The lesson's derived figures, from this run's measurements and the set's stored ones."""
    from course import derive

    stored: list[store.ResultSet] = []  # the set is read only for a figure this run did not measure

    def lookup(key: str) -> dict | None:
        found = run.measurements.get(key)
        if found:
            return found
        if not stored:
            stored.append(store.load_set(set_path))
        return stored[0].measurement(key)

    for spec in run.lesson.derived:
        run.measurements[f"{run.lesson.name}/{spec['name']}"] = derive.derive(spec, lookup)


def _record_tsc_rate(set_path: Path, tsc_hz: float) -> None:
    info = store.read_json(set_path / store.SET_FILE)
    info["machine"]["tsc_hz"] = round(tsc_hz)
    store.save_set_info(set_path, info)


def failure(step: str, what: str, message: str, log: str = "") -> dict:
    return {"step": step, "what": what, "message": message, "log": log[-20000:], "at": store.now()}


def timed_step(name: str, started: float, cached: bool = False) -> dict:
    return {"name": name, "seconds": round(time.monotonic() - started, 3), "cached": cached}
