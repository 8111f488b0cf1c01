"""The kernel side of a run: build the lessons' modules, load them where asked, record the figures.

``vm`` (the default) loads them in a disposable VM (:mod:`course.kernel.vm`); ``host-kernel``
loads them into the running kernel, only when the user asked for it by name; ``none``
records every kernel measurement as not run, with the reason. A runner that cannot start
(no QEMU, no guest kernel, no headers) is a failure of the lesson: its earlier figures are
kept and the run ends non-zero. A figure that could not be measured is never made up.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

from course.kernel import kernel_build, kernel_guest, ram_guest, vm
from course.kernel.guest_records import cannot_start, keep_earlier, not_built, not_run, record_results, why_not_started
from course.kernel.kernel_build import GuestKernel, KernelError
from course.kernel.memory_boot import boot_in_memory, memory_boots, record_in_memory
from course.kernel.options import KERNEL_RUNNERS, KernelOptions
from course.measure import lessons as lesson_catalog
from course.measure.build import BuildError, file_hash
from course.measure.lesson_run import (
    LessonRun,
    Progress,
    build_into,
    timed_step,
)
from course.measure.lessons import Lesson
from course.results import store
from course.results.layout import Layout

RUNNERS = KERNEL_RUNNERS


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
            return {"runner": "host-kernel", "failed": why_not_started(options.runner, error)}
        return {"runner": "host-kernel", "acceleration": "host-kernel", "guest_kernel": os.uname().release}
    try:
        kernel = kernel_build.find_kernel(options.release)
        vm.require_qemu()
        vm.vng_path()
        acceleration, why = vm.choose_acceleration(layout, kernel, options.acceleration, progress)
    except (KernelError, vm.VmError) as error:
        return {"runner": "vm", "failed": why_not_started("vm", error)}
    if options.acceleration == "auto" and acceleration != "kvm":
        progress(f"  vm     {why}")  # why not KVM, in one line: the figures are emulated ticks
    where = {"runner": "vm", "acceleration": acceleration, "why": why, "guest_kernel": kernel.release}
    if options.hardware.cpu:
        where["guest_cpu"] = options.hardware.cpu
    if options.hardware.append:
        where["guest_append"] = " ".join(options.hardware.append)
    return where


def measure(layout: Layout, runs: list[LessonRun], options: KernelOptions, where: dict, progress: Progress) -> None:
    """Build and load every module of ``runs`` (one VM boot for all) and record what they measured."""
    if "unavailable" in where:
        for run in runs:
            keep_earlier(run, where)
            not_run(run, where["unavailable"], keep=run.previous)
        progress(f"  kernel not run: {where['unavailable']}")
        return
    if "failed" in where:
        cannot_start(runs, where, where["failed"], progress)
        return
    try:
        kernel = host_kernel() if where["runner"] == "host-kernel" else kernel_build.find_kernel(options.release)
    except KernelError as error:
        cannot_start(runs, where, why_not_started(where["runner"], error), progress)
        return
    for run in runs:
        run.kernel.update(where)

    traces = trace_jobs(layout, runs)
    planned = _planned_module_jobs(layout, runs, kernel)
    built: list[list[dict]] = []  # the load jobs of the modules that built, once they are built

    def build(rundir: Path | None = None) -> None:
        """Build the modules; in a VM boot, while the guest starts, then tell its helper which built."""
        if built:
            return
        try:
            # A kernel matrix builds each kernel's modules in its own folder, side by side (beside a
            # boot, this runs in a thread of its own, which holds no turn to give up).
            with vm.others_may_run() if rundir is None else contextlib.nullcontext():
                built.append(_build_modules(layout, runs, kernel, progress))
        finally:
            if rundir is not None:
                kos = sorted({job["ko"] for job in built[0]}) if built else []
                kernel_guest.write_built(rundir, kos)

    programs = guest_program_jobs(layout, runs)
    in_memory: set[str] = set()
    if where["runner"] == "vm" and where["acceleration"] in ram_guest.QEMU_OPTIONS:
        # Emulated, in a guest booted from memory (course.kernel.ram_guest): no udev, no 9p; under icount the
        # same counts boot after boot, under plain tcg a boot in half the time of virtme-ng's. virtme-ng stays for kvm.
        in_memory = ram_guest.lessons_in_memory(programs + planned + traces)
    memory_programs = [job for job in programs if job["lesson"] in in_memory]
    memory_traces = [job for job in traces if job["lesson"] in in_memory]
    programs = [job for job in programs if job["lesson"] not in in_memory]
    planned = [job for job in planned if job["lesson"] not in in_memory]
    traces = [job for job in traces if job["lesson"] not in in_memory]
    memory_booted: list[dict] = []
    # A boot of its own keeps a lesson's icount figures the same alone or beside the others; plain tcg's
    # emulated ticks follow the host's clock and repeat no better alone: one boot for all, one start less.
    own = {run.lesson.name for run in runs if run.lesson.own_boot and where["acceleration"] == "tcg-icount"}

    def build_then_boot(rundir: Path | None = None) -> None:
        """Build; then, once, the guests from memory: beside the virtme-ng boot when there is one."""
        build(rundir)
        if vm.boot_cancelled():  # Ctrl-C during the build: no guest from memory after it
            raise KeyboardInterrupt("the boot was interrupted during the modules' build")
        if in_memory and not memory_booted:
            # As in a virtme-ng boot: the user-space side first, then the modules, the traces last.
            modules = [job for job in built[0] if job["lesson"] in in_memory]
            jobs = memory_programs + modules + memory_traces
            # One after the other: a matrix boots its kernels side by side already, on every CPU there is.
            for lessons, ours in memory_boots(jobs, in_memory, own):
                if vm.boot_cancelled():
                    raise KeyboardInterrupt("the boot was interrupted before the next guest from memory")
                memory_booted.append(boot_in_memory(layout, runs, lessons, ours, kernel, options, where, progress))

    def finish_in_memory() -> None:
        build_then_boot()  # a no-op once it booted beside the other
        for booted in memory_booted:
            record_in_memory(runs, booted, where, progress)

    # A boot with nothing but modules to load waits for their build: if none builds, no VM starts.
    if where["runner"] == "host-kernel" or not planned or not (programs or traces):
        build()
        planned = [job for job in built[0] if job["lesson"] not in in_memory]
    else:
        planned = [{**job, "after_build": True} for job in planned]
    if not planned and not traces:
        finish_in_memory()
        return
    # The user-space side first, in the same boot: same kernel, same clock, same unit. The
    # traces last: whatever the tracer leaves behind cannot touch a figure measured before it.
    # The modules are built while the guest boots: its helper waits for them before the first
    # module job (kernel_guest.wait_for_built), and runs those that built.
    jobs = programs + planned + traces

    started = time.monotonic()
    try:
        if where["runner"] == "host-kernel":
            progress(f"  host   loading {len(jobs)} module runs into the RUNNING kernel {kernel.release}, as asked")
            results, console, status = _run_on_host_kernel(layout, jobs)
            label = "load modules into the host kernel"
        else:
            progress(f"  vm     booting {kernel.release} ({where['acceleration']}) for {len(jobs)} runs ...")
            boot = vm.run_jobs(
                layout,
                kernel,
                jobs,
                where["acceleration"],
                progress,
                hardware=options.hardware,
                while_booting=build_then_boot,
            )
            build()  # a no-op once built while booting
            jobs, results = _only_built(jobs, boot.jobs, {(job["lesson"], job["module"]) for job in built[0]})
            console, status = boot.console, boot.exit_status
            for run in runs:
                if boot.guest:
                    run.kernel["guest_machine"] = boot.guest
            loads = sum("module" in job for job in jobs)
            parts = [f"{loads} module loads", f"{sum('program' in job for job in jobs) - len(traces)} programs"]
            parts += [f"{len(traces)} traces"] if traces else []
            label = f"vm boot, {', '.join(parts[:-1])} and {parts[-1]} ({where['acceleration']})"
            if boot.first_job_seconds is not None:  # where a boot's time goes: the guest starting, then the jobs
                label += f", first job after {boot.first_job_seconds:.1f} s"
    except vm.VmError as error:
        build()  # its failures are recorded as they were before a boot that did not start
        # Recorded with the lessons, not raised: the user-space figures of this run are still stored.
        loaded = [run for run in runs if any(job["lesson"] == run.lesson.name for job in jobs)]
        cannot_start(loaded, where, why_not_started(where["runner"], error), progress, built=True)
        finish_in_memory()
        return
    seconds = time.monotonic() - started
    for run in runs:
        run.steps.append({"name": label, "seconds": round(seconds, 3), "cached": False, "shared": True})
    progress(f"  kernel {label}: {seconds:.1f} s")
    record_results(runs, jobs, results, console, status, where)
    finish_in_memory()


def _only_built(jobs: list[dict], results: list[dict], built: set[tuple[str, str]]) -> tuple[list[dict], list[dict]]:
    """The jobs and results of a boot without the module jobs whose module did not build (their failure is recorded)."""
    kept = [index for index, job in enumerate(jobs) if "ko" not in job or (job["lesson"], job["module"]) in built]
    return [jobs[index] for index in kept], [results[index] for index in kept if index < len(results)]


def _build_modules(layout: Layout, runs: list[LessonRun], kernel: GuestKernel, progress: Progress) -> list[dict]:
    """Build every module of ``runs`` against ``kernel``; one load job per module and kind of standard input.

    Those that should build are first made together, with one make (:func:`kernel_build.build_together`);
    whatever that did not build is then built alone, with its own errors.
    """
    jobs: list[dict] = []
    started = time.monotonic()
    wanted = {
        (run.lesson.name, module.name): (run.lesson, module)
        for run in runs
        for module in run.lesson.modules
        if module.expect != "build-error"
    }
    built_together = kernel_build.build_together(layout, list(wanted.values()), kernel)
    together = {(lesson.name, module.name) for lesson, module in built_together}
    if together:
        names = ", ".join(sorted(f"{name}.ko" for _, name in together))
        step = timed_step(f"build modules {names} (one make)", started)
        step["shared"] = True  # one make for the lessons of this boot: its time is counted once
        for run in runs:
            if any((run.lesson.name, module.name) in together for module in run.lesson.modules):
                run.steps.append(step)
        progress(f"  build  {names}: {step['seconds']:.2f} s, one make for {kernel.release}")
    said: set[tuple[str, str]] = set()  # a module loaded twice (lesson 9's khttpd, two ways) is built and said once
    for run in runs:
        for module in run.lesson.modules:
            started = time.monotonic()
            if module.expect == "build-error":
                _expect_build_error(layout, run, module, kernel, progress)
                continue
            try:
                built = kernel_build.build_module(layout, run.lesson, module, kernel)  # reused if built together
            except BuildError as error:
                # An API this kernel changed: its failure, with the compiler's words; the boot goes on.
                errors = compiler_errors(layout, error.log)
                said = f"{error}: {errors[0]}" if errors else str(error)
                run.fail("build", f"module {module.name}", said, error.log)
                not_built(run, module, f"not built for {kernel.release}: {errors[0] if errors else error}")
                progress(f"  build  {module.name:<20} FAILED: {said}")
                continue
            if (run.lesson.name, module.name) not in together | said:  # else its step is the make above
                said.add((run.lesson.name, module.name))
                step = timed_step(f"build module {module.name}", started, cached=not built.rebuilt)
                run.steps.append(step)
                progress(
                    f"  build  {module.name + '.ko':<20} {step['seconds']:6.2f} s"
                    f"{' (unchanged)' if step['cached'] else ''} for {kernel.release}"
                )
            jobs += _module_jobs(layout, run, module, built.ko)
    return jobs


def _module_jobs(layout: Layout, run: LessonRun, module, ko: Path) -> list[dict]:
    """The load jobs of one module (one per kind of standard input); none if its client did not build."""
    client = run.programs.get(module.client) if module.client else None
    if module.client and client is None:
        return []  # the client's build failed, and that is recorded
    serving = (
        {
            "client": str(client.binary),
            "client_args": list(module.client_args),
            "client_shown_as": os.path.relpath(client.binary, layout.root),
            "client_sources": client.sources,
        }
        if client
        else {}
    )
    return [
        {
            "lesson": run.lesson.name,
            "module": module.name,
            "ko": str(ko),
            "params": list(module.params),
            "stdin": stdin,
            **serving,
        }
        for stdin in module.stdin
    ]


def _planned_module_jobs(layout: Layout, runs: list[LessonRun], kernel: GuestKernel) -> list[dict]:
    """The load jobs :func:`_build_modules` will return if every module builds, known before any is built."""
    jobs: list[dict] = []
    for run in runs:
        for module in run.lesson.modules:
            if module.expect != "build-error":
                jobs += _module_jobs(layout, run, module, kernel_build.module_ko(layout, run.lesson, module, kernel))
    return jobs


def build_guest_programs(layout: Layout, run: LessonRun, progress: Progress) -> None:
    """Compile the user-space programs a kernel lesson runs in its VM boot (into ``run.programs``).

    They are built here, on the host: the guest shares the host's files, so the same binary
    runs in both, and their sources belong to the lesson's inputs (a change reruns it).
    """
    wanted = [(spec.program, spec.lesson, spec.name) for spec in run.lesson.guest_runs]
    wanted += [(spec.program, spec.lesson, spec.program_name) for spec in run.lesson.traces]
    wanted += [(m.client, m.client_lesson, m.client_name) for m in run.lesson.modules if m.client]
    if not wanted:
        return
    owners = {lesson.name: lesson for lesson in lesson_catalog.discover(layout)}
    for program, lesson, name in wanted:
        if program in run.programs:
            continue
        owner = owners.get(lesson)
        if owner is None:
            run.fail("build", program, f"no lesson {lesson} for the guest program {program}")
            continue
        # Linked as its own lesson links it on the host (-luring): one binary, one set of inputs.
        libs = next((spec.libs for spec in owner.runs if spec.program == name), ())
        build_into(
            layout, run, owner, name, progress, key=program, step_name=f"build {program} (for the guest)", libs=libs
        )


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


def trace_jobs(layout: Layout, runs: list[LessonRun]) -> list[dict]:
    """One job per ``[[trace]]`` of the lessons: a program to run under function_graph in the guest."""
    jobs = []
    for run in runs:
        for spec in run.lesson.traces:
            program = run.programs.get(spec.program)
            if program is None:
                continue  # its build failed, and that is recorded
            jobs.append(
                {
                    "lesson": run.lesson.name,
                    "trace": spec.name,
                    "program": spec.program,
                    "binary": str(program.binary),
                    "shown_as": os.path.relpath(program.binary, layout.root),
                    "files": list(spec.files),
                    "graph": list(spec.graph),
                    "notrace": list(spec.notrace),
                    "timeout": spec.timeout,
                }
            )
    return jobs


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


def _expect_build_error(layout: Layout, run: LessonRun, module, kernel: GuestKernel, progress: Progress) -> None:
    """Build a module that must not build on this kernel; its compiler errors are the lesson's result."""
    capture_id = f"{run.lesson.name}/{module.name}.build"
    try:
        kernel_build.build_module(layout, run.lesson, module, kernel)
    except BuildError as error:
        errors = compiler_errors(layout, error.log)
        run.captures[capture_id] = {
            "text": "\n".join(errors),
            "command": f"make -C {kernel.headers} M=... {module.name}.ko   (kernel {kernel.release})",
            "measured_at": store.now(),
        }
        progress(f"  build  {module.name + '.ko':<20} refused by the compiler, as expected ({len(errors)} errors)")
        return
    run.fail("build", f"module {module.name}", f"expected {module.name} not to build against {kernel.release}")


def compiler_errors(layout: Layout, log: str) -> list[str]:
    """The compiler's ``error:`` lines of a module's build log, paths shown from the build folder."""
    return [line.replace(str(layout.build) + "/", "build/") for line in log.splitlines() if "error:" in line]
