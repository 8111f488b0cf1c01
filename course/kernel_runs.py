"""The kernel side of a run: build the lessons' modules, load them where asked, record the figures.

``vm`` (the default) loads them in a disposable VM (:mod:`course.vm`); ``host-kernel``
loads them into the running kernel, only when the user asked for it by name; ``none``
records every kernel measurement as not run, with the reason. A runner that cannot start
(no QEMU, no guest kernel, no headers) is a failure of the lesson: its earlier figures are
kept and the run ends non-zero. A figure that could not be measured is never made up.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from course import kernel_build, kernel_guest, ram_guest, store, vm
from course import lessons as lesson_catalog
from course.build import BuildError, file_hash
from course.kernel_build import GuestKernel, KernelError
from course.layout import Layout
from course.lessons import Lesson
from course.pipeline import (
    KERNEL_RUNNERS,
    KernelOptions,
    LessonRun,
    Progress,
    build_into,
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
    if options.acceleration == "auto" and acceleration != "kvm":
        progress(f"  vm     {why}")  # why not KVM, in one line: the figures are emulated ticks
    where = {"runner": "vm", "acceleration": acceleration, "why": why, "guest_kernel": kernel.release}
    if options.hardware.cpu:
        where["guest_cpu"] = options.hardware.cpu
    if options.hardware.append:
        where["guest_append"] = " ".join(options.hardware.append)
    return where


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
    if where["runner"] == "vm" and where["acceleration"] == "tcg-icount":
        # Lesson 9's servers in a guest of their own that repeats itself (course.ram_guest).
        in_memory = ram_guest.lessons_in_memory(programs + planned + traces)
    memory_programs = [job for job in programs if job["lesson"] in in_memory]
    programs = [job for job in programs if job["lesson"] not in in_memory]
    planned = [job for job in planned if job["lesson"] not in in_memory]
    memory_boot: list[dict] = []

    def build_then_boot(rundir: Path | None = None) -> None:
        """Build; then, once, the guest from memory: beside the virtme-ng boot when there is one."""
        build(rundir)
        if vm.boot_cancelled():  # Ctrl-C during the build: no guest from memory after it
            raise KeyboardInterrupt("the boot was interrupted during the modules' build")
        if in_memory and not memory_boot:
            jobs = memory_programs + [job for job in built[0] if job["lesson"] in in_memory]
            memory_boot.append(_boot_in_memory(layout, runs, in_memory, jobs, kernel, options, where, progress))

    def finish_in_memory() -> None:
        build_then_boot()  # a no-op once it booted beside the other
        if memory_boot:
            _record_in_memory(runs, memory_boot[0], where, progress)

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
        _cannot_start(loaded, where, _cannot(where["runner"], error), progress, built=True)
        finish_in_memory()
        return
    seconds = time.monotonic() - started
    for run in runs:
        run.steps.append({"name": label, "seconds": round(seconds, 3), "cached": False, "shared": True})
    progress(f"  kernel {label}: {seconds:.1f} s")
    record_results(runs, jobs, results, console, status, where)
    finish_in_memory()


def _boot_in_memory(
    layout: Layout,
    runs: list[LessonRun],
    lessons: set[str],
    jobs: list[dict],
    kernel: GuestKernel,
    options: KernelOptions,
    where: dict,
    progress: Progress,
) -> dict:
    """The jobs of ``lessons`` (programs, and the server modules that built) in one boot of course.ram_guest.

    It may run in the thread beside a virtme-ng boot: it records nothing, :func:`_record_in_memory` does.
    """
    ours = [run for run in runs if run.lesson.name in lessons]
    booted: dict = {"jobs": jobs, "runs": ours, "boot": None, "error": None, "seconds": 0.0}
    if not jobs:
        return booted
    progress(f"  vm     booting {kernel.release} from memory ({where['acceleration']}) for {len(jobs)} runs ...")
    started = time.monotonic()
    try:
        with vm.others_may_run():
            booted["boot"] = ram_guest.run_jobs(layout, kernel, jobs, progress, hardware=options.hardware)
    except (vm.VmError, ram_guest.RamGuestError, OSError, subprocess.SubprocessError) as error:
        booted["error"] = error
    booted["seconds"] = time.monotonic() - started
    return booted


def _record_in_memory(runs: list[LessonRun], booted: dict, where: dict, progress: Progress) -> None:
    """What the guest from memory measured (:func:`_boot_in_memory`), with how it ran."""
    ours, boot = booted["runs"], booted["boot"]
    if not booted["jobs"]:
        return
    provenance = {"guest_system": ram_guest.DESCRIBED, "qemu_options": " ".join(ram_guest.ICOUNT_OPTIONS)}
    for run in ours:
        run.kernel.update(provenance)
    if boot is None:
        _cannot_start(ours, where, _cannot("vm", booted["error"]), progress, built=True)
        return
    for run in ours:
        if boot.guest:
            run.kernel["guest_machine"] = boot.guest
    label = f"vm boot from memory, {len(booted['jobs'])} runs ({where['acceleration']}, {ram_guest.DESCRIBED})"
    for run in ours:
        run.steps.append({"name": label, "seconds": round(booted["seconds"], 3), "cached": False})
    progress(f"  kernel {label}: {booted['seconds']:.1f} s")
    record_results(runs, booted["jobs"], boot.jobs, boot.console, boot.exit_status, where)


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
                _not_built(run, module, f"not built for {kernel.release}: {errors[0] if errors else error}")
                progress(f"  build  {module.name:<20} FAILED: {said}")
                continue
            if (run.lesson.name, module.name) not in together:  # else its step is the make above
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


def record_results(
    runs: list[LessonRun], jobs: list[dict], results: list[dict], console: str, status: int | None, where: dict
) -> None:
    by_lesson = {run.lesson.name: run for run in runs}
    unit = vm.UNITS[where["acceleration"]]
    for index, job in enumerate(jobs):
        if "trace" in job:
            result = results[index] if index < len(results) else None
            record_trace(by_lesson[job["lesson"]], job, result, console, status, where)
            if result is not None:  # not "in the guest": the bench counts those as the like-for-like runs
                step = {"name": f"trace {job['program']} under function_graph, in the VM", "cached": False}
                by_lesson[job["lesson"]].steps.append({**step, "seconds": result.get("seconds", 0.0)})
            continue
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
        if "client" in job and not _server_behaved(run, what, result, log):
            continue
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
        if "client" in job:
            client = parse_or_fail(run, f"{what}: its client", result["client_result"]["stdout"])
            if client is None:
                continue
            command = f"{result['client_result']['command']}, in the guest, against {result['command']}"
            served = {**context, "command": command, "sources": {**context["sources"], **job["client_sources"]}}
            record(run, module.stdin, job["stdin"], client, served, unit=unit, with_rate=unit == "ticks")
        kernel_log = "\n".join(parsed.text).strip()
        capture_id = measurement_id(run.lesson, job["module"], job["stdin"], module.stdin) + ".log"
        run.captures[capture_id] = {"text": kernel_log, "command": context["command"], "measured_at": store.now()}


def _server_behaved(run: LessonRun, what: str, result: dict, log: str) -> bool:
    """A server module's run: loaded, its client satisfied, unloaded, nothing left listening; else why not."""
    if result["exit_status"] != 0:
        run.fail("load", what, f"insmod failed: {result['insmod_output']}", log)
        return False
    client = result["client_result"]
    if not client["ok"]:
        said = (client["stdout"] + client["stderr"])[-4000:]
        run.fail("run", f"{what}: its client", f"it {client['ended']} (every answer is checked byte for byte)", said)
        return False
    if result["left_loaded"] or result["left_listening"]:
        left = ["still loaded" if result["left_loaded"] else "", ", ".join(result["left_listening"])]
        run.fail("run", what, f"left behind after rmmod: {'; '.join(x for x in left if x)}", result["rmmod_output"])
        return False
    return True


#: The most lines of one read's call graph kept in its capture; the rest are counted, not kept.
GRAPH_LINES = 150

#: The longest line of a call graph kept whole (a kernel symbol is far shorter).
GRAPH_LINE_CHARS = 160

#: A marker the traced program writes into the trace before and after each read (readtrace.c).
MARKER = re.compile(r"/\* course-trace (?P<what>begin|end) (?P<kind>[a-z]+)(?: returned (?P<returned>-?\d+))? \*/")

#: What may stand before the call graph's column: the CPU, an overhead mark, a duration.
_COLUMNS = re.compile(r"\s*(\d+\)\s*)?([+!#*@$]\s*)?([\d.]+\s*us\s*)?")


@dataclass
class CallGraph:
    """The call graph of one traced read, as function_graph printed it, and what the read returned."""

    kind: str
    lines: list[str] = field(default_factory=list)
    returned: int | None = None

    def text(self) -> str:
        """The graph, its common indentation removed, at most ``GRAPH_LINES`` lines of ``GRAPH_LINE_CHARS``."""
        indent = min((len(line) - len(line.lstrip()) for line in self.lines if line.strip()), default=0)
        lines = [line[indent:].rstrip() for line in self.lines]
        kept = [line if len(line) <= GRAPH_LINE_CHARS else line[: GRAPH_LINE_CHARS - 3] + "..." for line in lines]
        if len(kept) > GRAPH_LINES:
            dropped = len(kept) - GRAPH_LINES + 1
            kept = [*kept[: GRAPH_LINES - 1], f"[... {dropped} more lines of this call graph not kept]"]
        return "\n".join(kept)


def _graph_column(line: str) -> str | None:
    """The call-graph part of one line of function_graph output, or None for a header or a note."""
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    head, bar, tail = line.partition("|")
    if bar and _COLUMNS.fullmatch(head):  # the CPU or duration columns were on after all
        line = tail
    stripped = line.strip()
    # A context switch ("---" rulers, "a-12 => b-34") or a note of lost events is no call.
    if re.fullmatch(r"-{8,}", stripped) or " => " in stripped or stripped.startswith(("CPU:", "##")):
        return None
    return line.rstrip()


def call_graphs(trace: str) -> dict[str, list[CallGraph]]:
    """Each kind's call graphs in a function_graph trace marked by readtrace.c: what ran between its markers.

    The trace is cut into top-level calls by their braces; a call that holds a marker is the
    marker's own write, one between a kind's ``begin`` and ``end`` markers is its read. A
    closing brace with no opening one ends a call that began before tracing was on. A kind
    read in several rounds has one graph per round, in order.
    """
    calls: list[list[str]] = []
    depth = 0
    for raw in trace.splitlines():
        line = _graph_column(raw)
        if line is None:
            continue
        stripped = line.strip()
        closes = stripped == "}" or stripped.startswith("} ")
        opens = stripped.endswith("{")
        if depth == 0:
            if not closes:
                calls.append([line])
                depth = 1 if opens else 0
            continue
        calls[-1].append(line)
        depth += 1 if opens else -1 if closes else 0
    graphs: dict[str, list[CallGraph]] = {}
    current: CallGraph | None = None
    for call in calls:
        markers = [found for found in (MARKER.fullmatch(line.strip()) for line in call) if found]
        for marker in markers:
            if marker["what"] == "begin":
                current = CallGraph(marker["kind"])
                graphs.setdefault(marker["kind"], []).append(current)
            elif current is not None and current.kind == marker["kind"]:
                current.returned = int(marker["returned"]) if marker["returned"] else None
                current = None
        if not markers and current is not None:
            current.lines += call
    return graphs


def _guest_job_failed(
    run: LessonRun, what: str, before: str, result: dict | None, console: str, status: int | None
) -> bool:
    """Record why a program or trace job in the guest gave nothing to read, if it did not; True then."""
    if result is None:
        ended = "stopped after its timeout" if status is None else f"ended (exit {status})"
        run.fail("run", what, f"the VM {ended} before {before}", console[-8000:])
        return True
    if not result["ok"]:
        run.fail("run", what, f"it {result['ended']}", (result["stdout"] + result["stderr"])[-4000:])
        return True
    return False


def record_trace(run: LessonRun, job: dict, result: dict | None, console: str, status: int | None, where: dict) -> None:
    """Store each kind's call graph from a trace taken in the guest as ``<lesson>/<trace>.<kind>``.

    The graph is kernel output: kept as text, shown as a literal block, never read as markup.
    """
    what = f"trace {job['trace']} ({job['program']}) in the guest"
    if _guest_job_failed(run, what, "this trace was taken", result, console, status):
        return
    assert result is not None
    graphs = call_graphs(result["trace_text"])
    setup = f"function_graph from {' '.join(result['graph'])}"
    if result.get("graph_missing"):
        setup += f" (not in this kernel: {' '.join(result['graph_missing'])})"
    if result.get("notrace"):
        setup += f", not into {' '.join(result['notrace'])}"
    setup += f", kernel {where.get('guest_kernel')} ({where['acceleration']})"
    for kind in job["files"]:
        found = [graph for graph in graphs.get(kind, []) if graph.lines]
        if not found:
            cut = " (the trace was cut at its size limit)" if result.get("trace_truncated") else ""
            message = f"the trace holds no call graph between the markers of {kind}{cut}"
            run.fail("parse", f"{what}, {kind}", message, result["trace_text"][-4000:])
            continue
        # An interrupt that lands in a read adds its work to that read's graph: the shortest
        # of the rounds is the read itself.
        graph = min(found, key=lambda graph: len(graph.lines))
        returned = "" if graph.returned is None else f", read returned {graph.returned}"
        rounds = f"; the shortest of {len(found)} reads{returned}" if len(found) > 1 else returned.replace(",", ";", 1)
        run.captures[f"{run.lesson.name}/{job['trace']}.{kind}"] = {
            "text": graph.text(),
            # The kind first: the command is the same for every kind (one run reads each open file).
            "command": f"{result['command']}   # the read of {kind}: {setup}{rounds}",
            "measured_at": store.now(),
        }


def _record_guest_program(
    run: LessonRun, job: dict, result: dict | None, console: str, status: int | None, where: dict, unit: str
) -> None:
    """A user-space program's figures from the guest, as ``user.<program>.<name>`` in the guest clock's unit."""
    what = f"{job['program']} in the guest (stdin={job['stdin']})"
    if _guest_job_failed(run, what, "this program ran", result, console, status):
        return
    assert result is not None
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


def _not_built(run: LessonRun, module, reason: str) -> None:
    """A module that did not build measures nothing: each of its figures says why, unless an earlier one is kept."""
    earlier = run.previous.get("measurements", {})
    for stdin in module.stdin:
        for name in module.measures:
            key = measurement_id(run.lesson, name, stdin, module.stdin)
            if key not in earlier and key not in run.measurements:  # nor one measured in this run
                run.measurements[key] = {
                    "status": "skipped",
                    "reason": reason,
                    "stdin": stdin,
                    "measured_at": store.now(),
                }


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
    # A trace's call graphs are its only output: kept with where they were taken, like figures.
    traces = tuple(f"{run.lesson.name}/{trace.name}." for trace in run.lesson.traces)
    graphs = {key: value for key, value in logs.items() if traces and key.startswith(traces)}
    run.captures.update(graphs)
    if (kept or graphs) and run.previous.get("kernel_run"):
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

    for trace in run.lesson.traces:
        for kind in trace.files:
            text = {"text": f"(not traced: {reason})", "measured_at": store.now()}
            note(run.captures, kept[1], f"{run.lesson.name}/{trace.name}.{kind}", text)
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
