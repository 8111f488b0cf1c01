"""The kernel side of a run: build the lessons' modules, load them where asked, record the figures.

``vm`` (the default) loads them in a disposable VM (:mod:`course.vm`); ``host-kernel``
loads them into the running kernel, only when the user asked for it by name; ``none``
records every kernel measurement as not run, with the reason. A runner that cannot start
(no QEMU, no guest kernel, no headers) is a failure of the lesson: its earlier figures are
kept and the run ends non-zero. A figure that could not be measured is never made up.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from course import kernel_build, kernel_guest, store, vm
from course import lessons as lesson_catalog
from course.build import BuildError, build_program, file_hash
from course.kernel_build import GuestKernel, KernelError
from course.layout import Layout
from course.lessons import Lesson
from course.pipeline import (
    KERNEL_RUNNERS,
    KernelOptions,
    LessonRun,
    Progress,
    measurement_id,
    parse_or_fail,
    record,
    timed_step,
)

RUNNERS = KERNEL_RUNNERS

#: Words in a kernel log that mean a module crashed the kernel's code path.
OOPS_MARKERS = ("BUG:", "Oops:", "general protection fault", "Kernel panic", "Call Trace:")


def module_hashes(layout: Layout, lesson: Lesson) -> dict[str, str]:
    """The sources of the lesson's modules with their hashes (empty for a user-space lesson)."""
    hashes: dict[str, str] = {}
    for module in lesson.modules:
        for relative, path in kernel_build.module_sources(layout, lesson, module).items():
            hashes[relative] = file_hash(path)
    return hashes


def host_kernel() -> GuestKernel:
    """The running kernel, for the host-kernel runner: it needs that kernel's headers."""
    release = os.uname().release
    headers = Path(f"/lib/modules/{release}/build")
    if not headers.is_dir():
        headers = Path(f"/usr/src/linux-headers-{release}")
    if not headers.is_dir():
        raise KernelError(f"no headers for the running kernel {release}; install linux-headers-{release}")
    return GuestKernel(release, Path(f"/boot/vmlinuz-{release}"), headers, Path(f"/lib/modules/{release}"))


def setting(layout: Layout, options: KernelOptions, progress: Progress) -> dict:
    """Where the modules will run, decided once per run; part of each kernel lesson's inputs key.

    ``unavailable`` means the user chose not to run them; ``failed`` that the VM cannot start here.
    """
    if options.runner not in RUNNERS:
        raise vm.VmError(f"unknown kernel runner {options.runner!r}; choose one of {', '.join(RUNNERS)}")
    if options.runner == "none":
        return {"runner": "none", "unavailable": "kernel examples were not asked for (--kernel-runner none)"}
    if options.runner == "host-kernel":
        try:
            if os.geteuid() != 0:
                raise vm.VmError("it loads modules and needs root")
            host_kernel()
        except (KernelError, vm.VmError) as error:
            return {"runner": "host-kernel", "failed": _cannot(options.runner, error)}
        return {"runner": "host-kernel", "acceleration": "host-kernel", "guest_kernel": os.uname().release}
    try:
        kernel = kernel_build.find_kernel(options.release)
        vm.require_qemu()
        vm.vng_path()
        acceleration, why = vm.choose_acceleration(layout, kernel, options.acceleration, progress)
    except (KernelError, vm.VmError) as error:
        return {"runner": "vm", "failed": _cannot("vm", error)}
    return {"runner": "vm", "acceleration": acceleration, "why": why, "guest_kernel": kernel.release}


def _cannot(runner: str, error: Exception) -> str:
    return f"{'the VM' if runner == 'vm' else f'the {runner} runner'} cannot start: {error}"


def measure(layout: Layout, runs: list[LessonRun], options: KernelOptions, where: dict, progress: Progress) -> None:
    """Build and load every module of ``runs`` (one VM boot for all) and record what they measured."""
    if "unavailable" in where:
        for run in runs:
            _keep_earlier(run, where)
            _not_run(run, where["unavailable"], keep=run.previous)
        progress(f"  kernel not run: {where['unavailable']}")
        return
    if "failed" in where:
        _cannot_start(runs, where, where["failed"], progress)
        return
    try:
        kernel = host_kernel() if where["runner"] == "host-kernel" else kernel_build.find_kernel(options.release)
    except KernelError as error:
        _cannot_start(runs, where, _cannot(where["runner"], error), progress)
        return
    for run in runs:
        run.kernel.update(where)

    jobs: list[dict] = []
    for run in runs:
        for module in run.lesson.modules:
            started = time.monotonic()
            if module.expect == "build-error":
                _expect_build_error(layout, run, module, kernel, progress)
                continue
            try:
                built = kernel_build.build_module(layout, run.lesson, module, kernel)
            except BuildError as error:
                run.fail("build", f"module {module.name}", str(error), error.log)
                progress(f"  build  {module.name:<20} FAILED: {error}")
                continue
            step = timed_step(f"build module {module.name}", started, cached=not built.rebuilt)
            run.steps.append(step)
            progress(
                f"  build  {module.name + '.ko':<20} {step['seconds']:6.2f} s"
                f"{' (unchanged)' if step['cached'] else ''} for {kernel.release}"
            )
            jobs += [
                {
                    "lesson": run.lesson.name,
                    "module": module.name,
                    "ko": str(built.ko),
                    "params": list(module.params),
                    "stdin": stdin,
                }
                for stdin in module.stdin
            ]
    if not jobs:
        return
    # The user-space side first, in the same boot: same kernel, same clock, same unit.
    jobs = guest_program_jobs(layout, runs) + jobs

    started = time.monotonic()
    try:
        if where["runner"] == "host-kernel":
            progress(f"  host   loading {len(jobs)} module runs into the RUNNING kernel {kernel.release}, as asked")
            results, console, status = _run_on_host_kernel(layout, jobs)
            label = "load modules into the host kernel"
        else:
            progress(f"  vm     booting {kernel.release} ({where['acceleration']}) for {len(jobs)} runs ...")
            boot = vm.run_jobs(layout, kernel, jobs, where["acceleration"], progress)
            results, console, status = boot.jobs, boot.console, boot.exit_status
            for run in runs:
                if boot.guest:
                    run.kernel["guest_machine"] = boot.guest
            programs = sum("binary" in job for job in jobs)
            label = f"vm boot, {len(jobs) - programs} module loads and {programs} programs ({where['acceleration']})"
    except vm.VmError as error:
        # Recorded with the lessons, not raised: the user-space figures of this run are still stored.
        loaded = [run for run in runs if any(job["lesson"] == run.lesson.name for job in jobs)]
        _cannot_start(loaded, where, _cannot(where["runner"], error), progress, built=True)
        return
    seconds = time.monotonic() - started
    for run in runs:
        run.steps.append({"name": label, "seconds": round(seconds, 3), "cached": False, "shared": True})
    progress(f"  kernel {label}: {seconds:.1f} s")
    record_results(runs, jobs, results, console, status, where)


def build_guest_programs(layout: Layout, run: LessonRun, progress: Progress) -> None:
    """Compile the user-space programs a kernel lesson runs in its VM boot (into ``run.programs``).

    They are built here, on the host: the guest shares the host's files, so the same binary
    runs in both, and their sources belong to the lesson's inputs (a change reruns it).
    """
    if not run.lesson.guest_runs:
        return
    owners = {lesson.name: lesson for lesson in lesson_catalog.discover(layout)}
    for spec in run.lesson.guest_runs:
        if spec.program in run.programs:
            continue
        owner = owners.get(spec.lesson)
        if owner is None:
            run.fail("build", spec.program, f"no lesson {spec.lesson} for the guest program {spec.program}")
            continue
        started = time.monotonic()
        try:
            run.programs[spec.program] = build_program(layout, owner, spec.name)
        except BuildError as error:
            run.fail("build", spec.program, str(error), error.log)
            progress(f"  build  {spec.program:<20} FAILED: {error}")
            continue
        step = timed_step(
            f"build {spec.program} (for the guest)", started, cached=not run.programs[spec.program].rebuilt
        )
        run.steps.append(step)
        progress(f"  build  {spec.program:<20} {step['seconds']:6.2f} s{' (unchanged)' if step['cached'] else ''}")


def guest_program_jobs(layout: Layout, runs: list[LessonRun]) -> list[dict]:
    """One job per user-space run the lessons ask for in the guest; a run two lessons share runs once."""
    jobs: dict[tuple, dict] = {}
    for run in runs:
        for spec in run.lesson.guest_runs:
            program = run.programs.get(spec.program)
            if program is None:
                continue  # its build failed, and that is recorded
            for stdin in spec.stdin:
                key = (spec.program, spec.args, stdin, spec.files, spec.stdin)
                if key in jobs:
                    jobs[key]["lessons"].append(run.lesson.name)
                    continue
                jobs[key] = {
                    "lesson": run.lesson.name,
                    "lessons": [run.lesson.name],
                    "program": spec.program,
                    "binary": str(program.binary),
                    "shown_as": os.path.relpath(program.binary, layout.root),
                    "args": list(spec.args),
                    "stdin": stdin,
                    "stdin_kinds": list(spec.stdin),
                    "files": list(spec.files),
                    "timeout": spec.timeout,
                    "sources": program.sources,
                }
    return list(jobs.values())


def _run_on_host_kernel(layout: Layout, jobs: list[dict]) -> tuple[list[dict], str, int | None]:
    if os.geteuid() != 0:
        raise vm.VmError("the host-kernel runner loads modules and needs root")
    rundir = layout.build / "host-kernel"
    rundir.mkdir(parents=True, exist_ok=True)
    plan, results = kernel_guest.prepare(rundir, jobs)
    finished = subprocess.run(
        kernel_guest.command(plan, results, on_host=True),
        capture_output=True,
        text=True,
        cwd=layout.root,
        env={**os.environ, "PYTHONPATH": str(layout.root)},
    )
    return kernel_guest.collected(results), finished.stdout + finished.stderr, finished.returncode


def record_results(
    runs: list[LessonRun], jobs: list[dict], results: list[dict], console: str, status: int | None, where: dict
) -> None:
    by_lesson = {run.lesson.name: run for run in runs}
    unit = vm.UNITS[where["acceleration"]]
    for index, job in enumerate(jobs):
        if "binary" in job:
            result = results[index] if index < len(results) else None
            for name in job["lessons"]:
                _record_guest_program(by_lesson[name], job, result, console, status, where, unit)
            if result is not None:  # its time belongs to the boot's first lesson that asked for it
                step = {"name": f"run {job['program']} in the guest", "seconds": result.get("seconds", 0.0)}
                by_lesson[job["lesson"]].steps.append({**step, "cached": False})
            continue
        run = by_lesson[job["lesson"]]
        module = next(m for m in run.lesson.modules if m.name == job["module"])
        what = f"module {job['module']} (stdin={job['stdin']})"
        if index >= len(results):
            ended = "stopped after its timeout" if status is None else f"ended (exit {status})"
            run.fail("run", what, f"the VM {ended} before this module was loaded", console[-8000:])
            continue
        result = results[index]
        log = result["log"]
        if any(marker in log for marker in OOPS_MARKERS):
            run.fail("run", what, "the kernel reported an oops or BUG while the module ran", log)
            continue
        if result["exit_status"] is None:
            run.fail("run", what, result["insmod_output"], log)
            continue
        parsed = parse_or_fail(run, what, log)
        if parsed is None:
            continue
        if parsed.meta.get("done") != "1":
            run.fail("load", what, f"the module did not finish measuring: insmod said {result['insmod_output']!r}", log)
            continue
        context = {
            "stdin": job["stdin"],
            "command": f"{result['command']} < {job['stdin']}",
            "exit_status": result["exit_status"],
            "sources": {k: v for k, v in run.sources.items() if "/kernel/" in k},
            "runner": where["runner"],
            "acceleration": where["acceleration"],
            "guest_kernel": where.get("guest_kernel"),
        }
        # Emulated ticks have no meaningful rate in nanoseconds: keep none.
        record(run, module.stdin, job["stdin"], parsed, context, unit=unit, with_rate=unit == "ticks")
        kernel_log = "\n".join(parsed.text).strip()
        capture_id = measurement_id(run.lesson, job["module"], job["stdin"], module.stdin) + ".log"
        run.captures[capture_id] = {"text": kernel_log, "command": context["command"], "measured_at": store.now()}


def _record_guest_program(
    run: LessonRun, job: dict, result: dict | None, console: str, status: int | None, where: dict, unit: str
) -> None:
    """A user-space program's figures from the guest, as ``user.<program>.<name>`` in the guest clock's unit."""
    what = f"{job['program']} in the guest (stdin={job['stdin']})"
    if result is None:
        ended = "stopped after its timeout" if status is None else f"ended (exit {status})"
        run.fail("run", what, f"the VM {ended} before this program ran", console[-8000:])
        return
    if not result["ok"]:
        run.fail("run", what, f"it {result['ended']}", (result["stdout"] + result["stderr"])[-4000:])
        return
    parsed = parse_or_fail(run, what, result["stdout"])
    if parsed is None:
        return
    context = {
        "stdin": job["stdin"],
        "command": f"{result['command']}, in the guest",
        "exit_status": result["exit_status"],
        "sources": job["sources"],
        "runner": where["runner"],
        "acceleration": where["acceleration"],
        "guest_kernel": where.get("guest_kernel"),
    }
    kinds = tuple(job["stdin_kinds"])
    prefix = f"user.{job['program'].split('/', 1)[1]}."
    record(run, kinds, job["stdin"], parsed, context, unit=unit, with_rate=unit == "ticks", prefix=prefix)


def _expect_build_error(layout: Layout, run: LessonRun, module, kernel: GuestKernel, progress: Progress) -> None:
    """Build a module that must not build on this kernel; its compiler errors are the lesson's result."""
    capture_id = f"{run.lesson.name}/{module.name}.build"
    try:
        kernel_build.build_module(layout, run.lesson, module, kernel)
    except BuildError as error:
        errors = [
            line.replace(str(layout.build) + "/", "build/") for line in error.log.splitlines() if "error:" in line
        ]
        run.captures[capture_id] = {
            "text": "\n".join(errors),
            "command": f"make -C {kernel.headers} M=... {module.name}.ko   (kernel {kernel.release})",
            "measured_at": store.now(),
        }
        progress(f"  build  {module.name + '.ko':<20} refused by the compiler, as expected ({len(errors)} errors)")
        return
    run.fail("build", f"module {module.name}", f"expected {module.name} not to build against {kernel.release}")


def _keep_earlier(run: LessonRun, where: dict) -> None:
    """Not running the modules (``--kernel-runner none``) keeps what they measured before, and where.

    The run is clean, so its file is replaced whole: the earlier kernel figures and logs are
    carried into it, with the ``kernel_run`` that says where they were measured.
    """
    earlier = run.previous.get("measurements", {})
    logs = run.previous.get("captures", {})
    prefixes = tuple(f"{run.lesson.name}/{name}." for module in run.lesson.modules for name in module.measures)
    prefixes += (f"{run.lesson.name}/user.",) if run.lesson.guest_runs else ()
    kept = {key: value for key, value in earlier.items() if key.startswith(prefixes) and value.get("status") == "ok"}
    run.measurements.update(kept)
    modules = tuple(f"{run.lesson.name}/{module.name}." for module in run.lesson.modules)
    run.captures.update({key: value for key, value in logs.items() if key.startswith(modules)})
    if kept and run.previous.get("kernel_run"):
        run.kernel = {"inputs_key": run.kernel.get("inputs_key", ""), **run.previous["kernel_run"]}
    else:
        run.kernel.update(where)


def _cannot_start(runs: list[LessonRun], where: dict, reason: str, progress: Progress, built: bool = False) -> None:
    """The runner could not start: a failure of each lesson, which keeps the figures it measured before.

    Only a figure the lesson never had gets a placeholder saying why, so that its page explains
    the gap; where the kept figures came from stays as it was (``kernel_run``).
    """
    for run in runs:
        earlier = run.previous.get("kernel_run") or {"runner": where["runner"], "unavailable": reason}
        run.kernel = {"inputs_key": run.kernel.get("inputs_key", ""), **earlier}
        run.fail("run", "kernel modules", reason)
        _not_run(run, reason, keep=run.previous, built=built)
    progress(f"  kernel FAILED: {reason}")


def _not_run(run: LessonRun, reason: str, keep: dict | None = None, built: bool = False) -> None:
    """Record every measurement the lesson's modules would make as not run, with why (outputs too).

    Measurements and captures present in ``keep`` (the lesson's previous file) are left alone;
    with ``built``, the modules' expected build errors were already captured.
    """
    kept = (keep or {}).get("measurements", {}), (keep or {}).get("captures", {})

    def note(table: dict, earlier: dict, key: str, value: dict) -> None:
        if key not in earlier and key not in table:
            table[key] = value

    for module in run.lesson.modules:
        if module.expect == "build-error":
            if not built:
                text = {"text": f"(not built: {reason})", "measured_at": store.now()}
                note(run.captures, kept[1], f"{run.lesson.name}/{module.name}.build", text)
            continue
        for stdin in module.stdin:
            capture_id = measurement_id(run.lesson, module.name, stdin, module.stdin) + ".log"
            note(run.captures, kept[1], capture_id, {"text": f"(not run: {reason})", "measured_at": store.now()})
            for name in module.measures:
                skipped = {"status": "skipped", "reason": f"not run: {reason}", "stdin": stdin}
                key = measurement_id(run.lesson, name, stdin, module.stdin)
                note(run.measurements, kept[0], key, {**skipped, "measured_at": store.now()})
