"""A kernel matrix: the kernel lessons run once per guest kernel, each in its own boot and result set.

``invoke run --guest-kernels 6.1,6.12,6.1-rt --acceleration tcg-icount`` builds the modules
against each kernel, boots each kernel once for all of its lessons' work (modules, the guest's
programs, lesson 2's trace) and stores its figures in a set of its own
(:func:`course.kernel.guest_kernels.set_name`). Nothing runs on this machine's kernel but the builds.

Under ``tcg-icount`` the boots run side by side: each counts its guest's instructions, whatever
else the host runs, so the figures are those of boots one after another, and three kernels cost
little more than one. Under ``tcg`` and ``kvm`` the figures are the host's time, and the boots
take turns. A kernel whose run fails (a module that does not build, a boot that stops) records
its failure in its own set; the others go on.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from course import pipeline
from course.kernel import guest_kernels, kernel_runs, vm
from course.kernel.guest_hardware import DEFAULT as DEFAULT_HARDWARE
from course.kernel.guest_hardware import GuestHardware
from course.kernel.kernel_build import GuestKernel
from course.kernel.options import KernelOptions, OptionError
from course.measure import lessons as lesson_catalog
from course.measure.lesson_run import LessonReport, MachineError, Progress
from course.measure.lessons import Lesson
from course.measure.threads import start_threads, wait_for
from course.publish import report
from course.results import fingerprint, store
from course.results.layout import Layout

#: What the terminal's summary compares across kernels (the site's "kernel versions" tables too).
SUMMARY_FIGURES = (
    ("04-kernel-read/user.usystime.read.pipe", "read() from user space"),
    ("04-kernel-read/kernel-read.pipe", "kernel_read()"),
    ("04-kernel-read/read-iter.pipe", "->read_iter"),
    ("06-skipping-layers/ksys-read.pipe", "ksys_read()"),
    ("06-skipping-layers/fdget-fdput.pipe", "fdget() + fdput()"),
)


@dataclass
class KernelRun:
    """One guest kernel of a matrix: where its figures go and what its run did."""

    name: str
    kernel: GuestKernel
    set_path: Path
    acceleration: str
    reports: list[LessonReport] = field(default_factory=list)
    error: str = ""  # what stopped this kernel's run before it stored anything (the others went on)
    seconds: float = 0.0

    @property
    def failures(self) -> list[dict]:
        return [failure for lesson_report in self.reports for failure in lesson_report.failures]

    @property
    def ok(self) -> bool:
        return not self.error and not self.failures


def kernel_lessons(layout: Layout, numbers: list[int] | None) -> list[Lesson]:
    """The lessons with work in the guest (default: all of them); a lesson with none is refused by name."""
    every = lesson_catalog.discover(layout)
    kernel = [lesson for lesson in every if lesson.in_vm]
    if numbers is None:
        return kernel
    chosen = [lesson_catalog.find(layout, number) for number in numbers]
    for lesson in chosen:
        if not lesson.in_vm:
            listed = ", ".join(str(item.number) for item in kernel)
            raise OptionError(
                f"lesson {lesson.number} ({lesson.name}) runs nothing in a guest kernel; with --guest-kernels, "
                f"choose among the kernel lessons {listed} (or leave --lesson out)"
            )
    return chosen


def open_guest_set(
    layout: Layout,
    name: str,
    kernel: GuestKernel,
    acceleration: str,
    host_set: str,
    hardware: GuestHardware = DEFAULT_HARDWARE,
) -> Path:
    """The result set of guest kernel ``name``: created, or refreshed with its provenance.

    It holds that kernel's figures only: a set of another kernel, a reference set or an imported
    one is refused. Under ``tcg-icount`` the figures do not depend on the host, so a set measured
    on another host is refreshed here; emulated and real ticks are the host's, so such a set
    belongs to the host that measured it, as ``invoke run``'s own set does.
    """
    path = layout.results / guest_kernels.set_name(name, acceleration, host_set, hardware.slug())
    previous = store.read_json(path / store.SET_FILE) if (path / store.SET_FILE).is_file() else {}
    pipeline.refuse_foreign(path, previous)
    theirs = previous.get("guest") or {}
    shown = {"cpu_requested": hardware.cpu or None, "kernel_parameters": " ".join(hardware.append) or None}
    if theirs and any(theirs.get(key) != value for key, value in shown.items()):
        raise MachineError(
            f"result set {path.name!r} holds a guest shown {theirs.get('cpu_requested')!r} with parameters "
            f"{theirs.get('kernel_parameters')!r}, not this one; remove that folder if it is yours"
        )
    if theirs and (theirs.get("name"), theirs.get("acceleration")) != (name, acceleration):
        raise MachineError(
            f"result set {path.name!r} holds guest kernel {theirs.get('name')!r} under {theirs.get('acceleration')!r}, "
            f"not {name!r} under {acceleration!r}; remove that folder if it is yours"
        )
    machine = fingerprint.machine()
    if acceleration != "tcg-icount":
        differing = pipeline.machine_differences(previous.get("machine", {}), machine)
        if differing:
            raise MachineError(
                f"result set {path.name!r} belongs to another machine ({', '.join(differing)}): its "
                f"{vm.UNITS[acceleration]} are that machine's; remove that folder if it is yours"
            )
    machine["tsc_hz"] = None  # the guest's programs never measure this machine's counter
    guest = {**theirs, **guest_kernels.configuration(kernel), "acceleration": acceleration}
    guest.update({key: value for key, value in shown.items() if value})
    what = {"tcg-icount": "QEMU -icount", "tcg": "QEMU TCG", "kvm": "QEMU KVM"}[acceleration]
    label = f"{what}, Debian {name} guest"
    if not hardware.default:
        label += " on " + " with ".join(part for part in (hardware.cpu, " ".join(hardware.append)) if part)
    label += " (deterministic path lengths)" if acceleration == "tcg-icount" else ""
    store.save_set_info(path, {"kind": "measured", "label": label, "machine": machine, "guest": guest})
    return path


def _record_guest_cpu(set_path: Path, reports: list[LessonReport]) -> None:
    """The CPU the guest was shown (QEMU's model), as its own kernel reported it: part of the set's provenance.

    The mitigations that kernel chose (its own /sys/devices/system/cpu/vulnerabilities) are in each
    lesson file's ``kernel_run.guest_machine``."""
    guests = [(r.stored.get("kernel_run") or {}).get("guest_machine") or {} for r in reports]
    cpu = next((guest.get("cpu_model") for guest in guests if guest.get("cpu_model")), None)
    if cpu is None:
        return
    info = store.read_json(set_path / store.SET_FILE)
    info["guest"] = {**info.get("guest", {}), "cpu_model": cpu}
    store.save_set_info(set_path, info)


def _prefixed(progress: Progress, name: str) -> Progress:
    return lambda line: progress(f"[{name}] {line}")


def run_matrix(
    layout: Layout,
    names: list[str],
    numbers: list[int] | None = None,
    *,
    acceleration: str = "tcg-icount",
    force: bool = False,
    host_set: str | None = None,
    progress: Progress = print,
    hardware: GuestHardware = DEFAULT_HARDWARE,
) -> list[KernelRun]:
    """Measure the kernel lessons once per guest kernel of ``names``; return what each kernel's run did.

    Everything that can be refused is refused before anything runs: a lesson with no guest work,
    a kernel that is not installed (the message names the packages), a VM that cannot start.
    """
    pipeline.require_x86_64()
    lessons = kernel_lessons(layout, numbers)
    kernels = {name: guest_kernels.find(name) for name in names}
    host = fingerprint.set_name(host_set)
    runs: list[KernelRun] = []
    for name, kernel in kernels.items():
        options = KernelOptions("vm", acceleration, kernel.release, hardware)
        where = kernel_runs.setting(layout, options, _prefixed(progress, name))
        if "failed" in where:
            raise vm.VmError(where["failed"])
        chosen = where["acceleration"]  # auto: what the KVM probe decided for this kernel
        runs.append(KernelRun(name, kernel, open_guest_set(layout, name, kernel, chosen, host, hardware), chosen))
    for run in runs:
        progress(f"[{run.name}] {run.kernel.release} ({run.acceleration}) -> {_shown(layout, run.set_path)}")

    def measure(run: KernelRun) -> None:
        started = time.monotonic()
        try:
            run.reports = pipeline.measure_lessons(
                layout,
                lessons,
                run.set_path,
                force=force,
                progress=_prefixed(progress, run.name),
                kernel=KernelOptions("vm", run.acceleration, run.kernel.release, hardware),
                kernel_only=True,
            )
            _record_guest_cpu(run.set_path, run.reports)
        except KeyboardInterrupt:  # Ctrl-C, in a boot or before one: nothing more is stored
            run.error = "interrupted"
        except Exception as error:  # this kernel's: recorded, and the other kernels go on
            run.error = f"{type(error).__name__}: {error}" if not str(error) else str(error)
            progress(f"[{run.name}] FAILED: {run.error}")
        run.seconds = time.monotonic() - started

    if all(run.acceleration == "tcg-icount" for run in runs):
        _side_by_side(runs, measure)
    else:
        for run in runs:  # real or emulated ticks are the host's time: one boot at a time
            measure(run)
    return runs


def _side_by_side(runs: list[KernelRun], measure) -> None:
    """Each kernel in a thread; they take turns but for their VM boots. Ctrl-C stops every boot."""
    turns = threading.Lock()

    def work(run: KernelRun) -> None:
        with vm.taking_turns(turns):
            measure(run)

    vm.cancel_boots(False)
    finished = start_threads({f"kernel {run.name}": functools.partial(work, run) for run in runs})
    try:
        wait_for(finished)
    except KeyboardInterrupt:
        vm.cancel_boots()  # the boots end; their threads clean up (scratch folders) and store nothing more
        # Waited for whole, a second Ctrl-C included: a thread left behind would leave its run folder.
        wait_for(finished, through_interrupts=True)
        raise


def _shown(layout: Layout, path: Path) -> str:
    return str(path.relative_to(layout.root) if path.is_relative_to(layout.root) else path)


def summary(layout: Layout, runs: list[KernelRun]) -> str:
    """One line per kernel (its set, lessons run or reused, failures, time), and the figures side by side."""
    rows = []
    for run in runs:
        reused = sum(1 for lesson_report in run.reports if lesson_report.cached)
        rows.append(
            [
                run.name,
                run.kernel.release,
                _shown(layout, run.set_path),
                "-" if run.error else f"{len(run.reports) - reused} run, {reused} reused",
                "stopped" if run.error else str(len(run.failures)),
                f"{run.seconds:.1f} s",
            ]
        )
    text = report.table(["kernel", "release", "set", "lessons", "failures", "time"], rows)
    figures = figures_table(runs)
    return text + ("\n\n" + figures if figures else "")


def figures_table(runs: list[KernelRun]) -> str:
    """The site's kernel versions table in the terminal: medians, and the change from the first kernel in %."""
    sets = [store.load_set(run.set_path) for run in runs if not run.error]
    if not sets:
        return ""
    baseline = next((s for s in sets if s.info["guest"].get("name") == guest_kernels.BASELINE), None)
    rows = []
    for key, label in SUMMARY_FIGURES:
        cells = [label]
        for result_set in sets:
            figure = result_set.measurement(key)
            if not figure or figure.get("status") != "ok":
                cells.append("-" if not figure else figure.get("status", "-"))
                continue
            text = f"{figure['median']:,.0f}"
            change = guest_kernels.change_percent(figure, baseline.measurement(key) if baseline else None)
            if change is not None and result_set is not baseline:
                text += f" ({change:+.1f} %)"
            cells.append(text)
        rows.append(cells)
    unit = next((m.get("unit") for s in sets for k, _ in SUMMARY_FIGURES if (m := s.measurement(k))), "")
    headers = [f"median ({unit or 'ticks'}), pipe", *(s.info["guest"].get("name", s.id) for s in sets)]
    return report.table(headers, rows)
