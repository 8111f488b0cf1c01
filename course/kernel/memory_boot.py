"""The lessons that boot a guest from memory (every kernel lesson under emulation): their boots, then their record.

The lessons share one boot per kernel, but for a lesson whose ``lesson.toml`` says ``boot = "own"``
(lesson 9's servers over loopback): it boots alone, so that its counts are the same whether it
runs alone (``invoke lesson 9``) or in the kernel matrix (:func:`memory_boots`).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from course.kernel import ram_guest, vm
from course.kernel.guest_records import cannot_start, record_results, why_not_started
from course.kernel.kernel_build import GuestKernel
from course.kernel.options import KernelOptions
from course.measure.lesson_run import LessonRun, Progress
from course.results.layout import Layout


def memory_boots(jobs: list[dict], lessons: set[str], own: set[str]) -> list[tuple[set[str], list[dict]]]:
    """The boots from memory of ``lessons`` and the jobs of each, in the order of ``jobs``: one boot for
    the lessons that share it, then one for each lesson of ``own``.

    A lesson's counts may depend on what else its boot holds (the initramfs lays the guest's memory
    out, the jobs before it leave the scheduler's clock where they do): a lesson of ``own`` gets the
    boot it would get alone. A job two lessons share (a program run once for both) runs in each
    boot that holds one of them, for those of its lessons that boot there.
    """
    groups = [lessons - own] + [{lesson} for lesson in sorted(lessons & own)]
    boots = []
    for group in groups:
        ours = []
        for job in jobs:
            names = [name for name in job.get("lessons", [job["lesson"]]) if name in group]
            if names:
                ours.append({**job, "lesson": names[0], "lessons": names} if "lessons" in job else job)
        if group and ours:
            boots.append((group, ours))
    return boots


def boot_in_memory(
    layout: Layout,
    runs: list[LessonRun],
    lessons: set[str],
    jobs: list[dict],
    kernel: GuestKernel,
    options: KernelOptions,
    where: dict,
    progress: Progress,
) -> dict:
    """The jobs of ``lessons`` (programs, and the server modules that built) in one boot of course.kernel.ram_guest
    under ``where``'s acceleration (tcg-icount or tcg), or why not.

    It may run in the thread beside a virtme-ng boot: it records nothing, :func:`record_in_memory` does.
    """
    boot: Callable[..., vm.VmRun] = {"tcg-icount": ram_guest.run_jobs, "tcg": ram_guest.run_tcg_jobs}[
        where["acceleration"]
    ]
    ours = [run for run in runs if run.lesson.name in lessons]
    booted: dict = {"jobs": jobs, "runs": ours, "boot": None, "error": None, "seconds": 0.0}
    if not jobs:
        return booted
    progress(f"  vm     booting {kernel.release} from memory ({where['acceleration']}) for {len(jobs)} runs ...")
    started = time.monotonic()
    try:
        with vm.others_may_run():
            booted["boot"] = boot(layout, kernel, jobs, progress, hardware=options.hardware)
    except (vm.VmError, ram_guest.RamGuestError, OSError, subprocess.SubprocessError) as error:
        booted["error"] = error
    booted["seconds"] = time.monotonic() - started
    return booted


def record_in_memory(runs: list[LessonRun], booted: dict, where: dict, progress: Progress) -> None:
    """What the guest from memory measured (:func:`boot_in_memory`), with how it ran."""
    ours, boot = booted["runs"], booted["boot"]
    if not booted["jobs"]:
        return
    if vm.boot_cancelled():  # a matrix interrupted (Ctrl-C, SIGTERM) killed this QEMU: nothing of it is stored
        raise KeyboardInterrupt("the kernel matrix was interrupted")
    acceleration = where["acceleration"]
    provenance = {
        "guest_system": ram_guest.described(acceleration),
        "qemu_options": " ".join(ram_guest.QEMU_OPTIONS[acceleration]),
    }
    for run in ours:
        run.kernel.update(provenance)
    if boot is None:
        cannot_start(ours, where, why_not_started("vm", booted["error"]), progress, built=True)
        return
    # The course's code that shaped this guest is a source of each of its figures, beside the programs'.
    guest_code = ram_guest.guest_code_sources(acceleration)
    for run in ours:
        run.sources.update(guest_code)
        if boot.guest:
            run.kernel["guest_machine"] = boot.guest
    jobs = [_with_sources(job, guest_code) for job in booted["jobs"]]
    # What the boot held, said as a virtme-ng boot's step says it (course.kernel.kernel_runs).
    traces = sum("trace" in job for job in jobs)
    parts = [
        f"{sum('module' in job for job in jobs)} module loads",
        f"{sum('program' in job for job in jobs) - traces} programs",
    ]
    parts += [f"{traces} traces"] if traces else []
    held = f"{', '.join(parts[:-1])} and {parts[-1]}"
    label = f"vm boot from memory, {len(jobs)} runs: {held} ({acceleration}, {ram_guest.described(acceleration)})"
    if boot.first_job_seconds is not None:  # where a boot's time goes: the guest starting, then the jobs
        label += f", first job after {boot.first_job_seconds:.1f} s"
    # A boot of several lessons is one step of theirs, its time counted once (as a virtme-ng boot's).
    step = {"name": label, "seconds": round(booted["seconds"], 3), "cached": False, "shared": len(ours) > 1}
    for run in ours:
        run.steps.append(dict(step))
    progress(f"  kernel {label}: {booted['seconds']:.1f} s")
    record_results(runs, jobs, boot.jobs, boot.console, boot.exit_status, where)


def _with_sources(job: dict, extra: dict[str, str]) -> dict:
    """The job with ``extra`` among the sources of its figures: a program's, a server's client's (a module's
    own figures take their sources from its lesson's, which have them already)."""
    key = "client_sources" if "client" in job else "sources" if "binary" in job else None
    return {**job, key: {**job.get(key, {}), **extra}} if key else job
