"""One generation of the lessons, top to bottom: plan, build, run on the host, run in the guest, record, derive.

This is the one place that knows the order of the steps; each step lives in its own module
(:mod:`course.measure.host_runs`, :mod:`course.kernel.kernel_runs`, :mod:`course.measure.lesson_run`,
:mod:`course.results.derive`, :mod:`course.results.store`).
"""

from __future__ import annotations

import hashlib
import json
import platform
import statistics
from pathlib import Path

from course.kernel.options import KernelOptions
from course.measure import host_runs, keep
from course.measure.lesson_run import LessonReport, LessonRun, MachineError, Progress
from course.measure.lessons import Lesson
from course.results import code_parts, derive, fingerprint, store
from course.results.layout import Layout


def require_x86_64(architecture: str | None = None) -> None:
    """The programs read the x86 time-stamp counter: refuse, clearly, anywhere else."""
    found = architecture or platform.machine()
    if found not in ("x86_64", "AMD64"):
        raise MachineError(
            f"this machine is {found}, not x86-64: the course's programs read the x86 time-stamp counter "
            "(rdtsc). Measure on an x86-64 machine, or build the site from stored results with: invoke site"
        )


#: What must match for a run to add to an existing set: the set belongs to one machine. The CPU's identity
#: (fingerprint.CPU_IDENTITY) must match too where the set records it: see :func:`machine_differences`.
SAME_MACHINE = ("cpu_model", "kernel_release", "virtualization")


def machine_differences(theirs: dict, machine: dict) -> list[str]:
    """How a set's machine record ``theirs`` differs from ``machine``: one "key 'there' (here 'here')" each.

    Its model name, kernel release and virtualization, and the CPU's vendor, family, model and stepping
    where the set records them: two hosts can share a generic model name ("AMD EPYC"), and a set stored
    before the identity was recorded has none (it is compared as before). No record: no difference.
    """
    if not theirs:
        return []
    keys = [*SAME_MACHINE, *(key for key in fingerprint.CPU_IDENTITY if key in theirs)]
    return [
        f"{key} {theirs.get(key)!r} (here {machine.get(key)!r})" for key in keys if theirs.get(key) != machine.get(key)
    ]


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
    differing = machine_differences(theirs, machine)
    if differing:
        raise MachineError(
            f"result set {path.name!r} belongs to another machine ({', '.join(differing)}); "
            "choose another name with --set, or remove that folder if it is yours"
        )
    refuse_unknown_generation(path, theirs, machine)
    # The TSC rate is measured by the programs; keep the last one until a new one arrives.
    machine["tsc_hz"] = theirs.get("tsc_hz")
    store.save_set_info(path, info)
    return path


def refuse_unknown_generation(path: Path, theirs: dict, machine: dict) -> None:
    """A run never adds to figures of a set stored before sets recorded their CPU's generation (``--set`` its name).

    Its machine may be another host of the same model name and kernel (a cloud VM's "AMD EPYC"): adding this
    machine's figures, and its record over the old one, would leave one set of two CPUs. An empty set is adopted.
    """
    recorded = any(key in theirs for key in fingerprint.CPU_IDENTITY)
    if not theirs or recorded or not fingerprint.cpu_generation(machine) or not any(path.glob("[0-9]*.json")):
        return
    raise MachineError(
        f"result set {path.name!r} was stored before sets recorded their CPU's family, model and stepping, so "
        f"this run cannot tell whether its figures are this machine's (two CPU generations can share the model name "
        f"{theirs.get('cpu_model', '?')!r}); measure into this machine's own set (leave out --set: "
        f"{fingerprint.set_id(machine)!r}), or choose another name with --set"
    )


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


def inputs_key(run: LessonRun, machine: dict, kernel_setting: dict) -> str:
    """A hash of everything that could change the lesson's figures: reuse results only if it matches.

    Its programs and sources, where its modules run, and the same setting a student's rerun
    compares (:func:`setting_key`): a reboot with ``mitigations=off`` reruns it.
    """
    parts = {
        "programs": {name: program.inputs_hash for name, program in sorted(run.programs.items())},
        "sources": run.sources,
        "specs": _specs(run.lesson),
        # Where modules run, not why (the probe's wording and date would rerun them for nothing).
        "kernel_runner": {k: v for k, v in kernel_setting.items() if k != "why"} if run.lesson.in_vm else None,
    }
    if run.kernel_only and kernel_setting.get("acceleration") == "tcg-icount":
        # Only the guest runs, and icount ticks count its instructions: nothing of this host changes
        # them (the compiler does, through the programs' hashes).
        return _digest({**parts, "kernel": "", "cpu": [], "kernel_only": True})
    return _digest({**parts, **_host_setting(machine)})


def setting_key(run: LessonRun, machine: dict) -> str:
    """A hash of what shapes a host lesson's figures apart from each program's own sources.

    Its lesson.toml, the compiler and flags of each program, and this machine's setting
    (:func:`_host_setting`): a rerun keeps a program's stored figures (:mod:`course.measure.keep`)
    only while it matches.
    """
    builds = {name: [program.compiler, *program.cflags] for name, program in sorted(run.programs.items())}
    return _digest({"specs": _specs(run.lesson), "builds": builds, **_host_setting(machine)})


def _host_setting(machine: dict) -> dict:
    """What of this machine shapes every figure measured on it: the one list both keys hash.

    Its kernel and CPU (its model name, microcode, and its vendor, family, model and stepping: a generic
    model name is shared by CPU generations), the kernel's mitigations and command line (a reboot with
    ``mitigations=off``) and the CPU count.
    """
    return {
        "kernel": machine.get("kernel_version", "") + machine.get("kernel_release", ""),
        "cpu": [
            machine.get("cpu_model"),
            machine.get("microcode"),
            *(machine.get(k) for k in fingerprint.CPU_IDENTITY),
        ],
        "mitigations": machine.get("mitigations"),
        "cmdline": fingerprint.kernel_cmdline(),
        "cpu_count": machine.get("cpu_count"),
    }


def _specs(lesson: Lesson) -> list[str]:
    """The lesson's lesson.toml files, user and kernel side, as text."""
    paths = (lesson.code_dir / "lesson.toml", (lesson.kernel_dir or lesson.code_dir) / "lesson.toml")
    return [path.read_text(encoding="utf-8") for path in paths if path.is_file()]


def _digest(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def measure_lessons(
    layout: Layout,
    lessons: list[Lesson],
    set_path: Path,
    *,
    force: bool = False,
    keep_unchanged: bool = False,
    progress: Progress = print,
    kernel: KernelOptions | None = None,
    kernel_only: bool = False,
) -> list[LessonReport]:
    """Build and run the lessons' code and store each lesson's results in ``set_path``.

    A lesson's results are reused, without running anything, when nothing that shapes
    them changed (sources, compiler, flags, kernel, machine), unless ``force`` is set.
    With ``keep_unchanged`` (a student's ``invoke lesson N``) a lesson that does run still
    reruns its exercises, but keeps the stored figures of each program whose sources and
    setting are unchanged (:mod:`course.measure.keep`), each with its own date.
    All kernel modules of the lessons that do run share one VM boot. With ``kernel_only``
    (a kernel matrix, :mod:`course.matrix`) only what runs in the guest runs: the modules,
    the guest's programs and the traces; nothing is run or timed on this machine.
    """
    from course.kernel import kernel_runs  # start-up: a user-space lesson never loads the VM machinery

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
            host_runs.build_programs(layout, run, progress)
        kernel_runs.build_guest_programs(layout, run, progress)
        run.sources.update(kernel_runs.module_hashes(layout, lesson))
        key = inputs_key(run, machine, setting)
        if (
            not force
            and not run.failures
            and run.previous.get("inputs_key") == key
            and not run.previous.get("failures")
            # The course's code that shaped its guest (lesson 9's from memory) is an input too.
            and not code_parts.changed(run.previous.get("sources", {}))
        ):
            progress(f"  reuse  {lesson.name} results (sources, compiler, kernel and machine unchanged)")
            reports.append(LessonReport(lesson, run.previous, run.previous, cached=True, steps=run.steps))
            continue
        run.kernel = {"inputs_key": key}
        run.setting_key = setting_key(run, machine)
        if keep_unchanged and not kernel_only and run.previous.get("setting_key") == run.setting_key:
            run.kept = keep.keepable(layout, run)
        if not kernel_only:
            host_runs.run_programs(layout, run, progress)
            host_runs.run_exercises(layout, run, progress)
            host_runs.disassemble_captures(run)
        pending.append(run)

    kernel_lessons = [run for run in pending if run.lesson.in_vm]
    if kernel_lessons:
        kernel_runs.measure(layout, kernel_lessons, kernel, setting, progress)

    for run in pending:
        _derive(run, set_path)
        if run.tsc_rates and not run.lesson.modules and not run.kernel_only:  # a guest's rate is not this machine's
            _record_tsc_rate(set_path, statistics.median(run.tsc_rates))
        stored = store.save_lesson(set_path, run.lesson.name, _lesson_file(run))
        reports.append(LessonReport(run.lesson, stored, run.previous, cached=False, steps=run.steps, kept=run.kept))
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
        "setting_key": run.setting_key if not run.failures else "",
        "compiler": first.compiler if first else fingerprint.compiler_version(),
        "cflags": list(first.cflags) if first else [],
        "sources": {**run.sources, **{p: d for program in run.programs.values() for p, d in program.sources.items()}},
        "measurements": run.measurements,
        "captures": run.captures,
        "failures": run.failures,
        "steps": run.steps,
        "exercises": run.exercises,
        # A student's rerun kept these programs' figures: each program -> when its figures were taken.
        **({"kept": _kept_dates(run)} if run.kept else {}),
    }


def _kept_dates(run: LessonRun) -> dict[str, str]:
    measured = run.measurements
    return {
        program: min(measured[key].get("measured_at", "") for key in keys) for program, keys in sorted(run.kept.items())
    }


def _derive(run: LessonRun, set_path: Path) -> None:
    """The lesson's derived figures, from this run's measurements and the set's stored ones."""
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
