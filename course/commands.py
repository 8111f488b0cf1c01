"""What the invoke tasks do, as plain functions (``tasks.py`` only wires them to the command line)."""

from __future__ import annotations

import errno
import json
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from course import pipeline, system
from course.kernel import guest_kernels
from course.kernel import options as kernel_options
from course.kernel.guest_hardware import GuestHardware
from course.measure import build as builder
from course.measure import lessons as lesson_catalog
from course.measure.lesson_run import LessonReport
from course.publish import report, site
from course.results import archive, fingerprint, store
from course.results.layout import Layout

if TYPE_CHECKING:
    from course.lab.inventory import Host
    from course.lab.options import LabOptions, LabOutcome


def setup(layout: Layout, install: bool = True, tests: bool = False, guest_kernels: list[str] | None = None) -> None:
    """Install (or, without ``install``, list) the Debian packages the course (and its tests) need.

    ``guest_kernels`` (names, as ``--guest-kernels``) adds each kernel's image and headers.
    """
    wanted = [*system.DEBIAN_PACKAGES, *(system.test_packages() if tests else [])]
    wanted += system.guest_kernel_packages(guest_kernels or [])
    wanted = list(dict.fromkeys(wanted))
    missing = system.missing_packages(wanted)
    if not missing:
        print("setup: every Debian package the course needs is installed")
        return
    if not install:
        flags = (" --tests" if tests else "") + (f" --guest-kernels {','.join(guest_kernels)}" if guest_kernels else "")
        raise system.SystemError_(f"missing Debian packages: {' '.join(missing)}; run: invoke setup{flags}")
    print(f"setup: installing {' '.join(missing)}")
    system.install(missing)


def build(layout: Layout, number: int | None = None) -> None:
    """Compile the user-space programs of one lesson (or all), reporting which changed."""

    chosen = [lesson_catalog.find(layout, number)] if number else lesson_catalog.discover(layout)
    for item in chosen:
        libs = {spec.program: spec.libs for spec in item.runs}
        for program in item.programs:
            try:
                built = builder.build_program(layout, item, program, libs=libs.get(program, ()))
            except builder.BuildError as error:
                raise builder.BuildError(f"{error}:\n{error.log.strip()}") from None
            print(f"{item.name}/{program}: {'compiled' if built.rebuilt else 'unchanged'} -> {built.binary}")


def measure(
    layout: Layout,
    numbers: list[int] | None = None,
    *,
    force: bool = False,
    keep_unchanged: bool = False,
    set_name: str | None = None,
    label: str | None = None,
    kernel: kernel_options.KernelOptions | None = None,
) -> tuple[list[LessonReport], str]:
    """Build and run the chosen lessons (default: all), storing their results; return reports and set id.

    ``keep_unchanged``: see :func:`course.pipeline.measure_lessons` (a student's rerun).
    """
    chosen = [lesson_catalog.find(layout, n) for n in numbers] if numbers else lesson_catalog.discover(layout)
    kernel = kernel or kernel_options.KernelOptions()
    if kernel.runner == "host-kernel":
        print(
            "WARNING: --kernel-runner host-kernel loads the course's modules into the kernel of THIS machine.\n"
            "They measure and leave (their init returns an error), but a bug in a module can crash it:\n"
            "use a machine whose work you can lose."
        )
    set_path = pipeline.open_set(layout, set_name, label)
    shown = set_path.relative_to(layout.root) if set_path.is_relative_to(layout.root) else set_path
    print(f"result set: {shown}")
    reports = pipeline.measure_lessons(
        layout,
        [lesson for lesson in chosen if lesson.has_code],
        set_path,
        force=force,
        keep_unchanged=keep_unchanged,
        kernel=kernel,
    )
    return reports, set_path.name


def measure_matrix(
    layout: Layout,
    names: list[str],
    numbers: list[int] | None = None,
    *,
    acceleration: str = "tcg-icount",
    force: bool = False,
    host_set: str | None = None,
    hardware: GuestHardware | None = None,
) -> bool:
    """The kernel lessons once per guest kernel (``--guest-kernels``), each in its own set; print a summary.

    Returns whether every kernel ran without a failure (a kernel that failed kept its earlier figures).
    """
    from course import matrix  # start-up: the kernel matrix and its VM machinery
    from course.kernel import set_identity  # start-up: it loads the VM machinery, which a user-space lesson never needs

    hardware = hardware or GuestHardware()
    kernels = {name: guest_kernels.find(name) for name in names}
    set_identity.refuse_release_change(
        layout.results, kernels, acceleration, fingerprint.set_name(host_set), force, hardware.slug()
    )
    runs = matrix.run_matrix(
        layout,
        names,
        numbers,
        acceleration=acceleration,
        force=force,
        host_set=host_set,
        hardware=hardware,
    )
    print("\n" + matrix.summary(layout, runs))
    lines = [f"[{run.name}] stopped: {run.error}" for run in runs if run.error]
    lines += [f"[{run.name}] {line}" for run in runs for line in report.failures_text(run.reports).splitlines()]
    if lines:
        print("\n" + "\n".join(report.printable(line) for line in lines))
    return all(run.ok for run in runs)


def print_reports(reports: list[LessonReport], compare: bool = False, verbose: bool = True) -> None:
    """Each lesson's figures; without ``verbose``, a lesson reused unchanged is one line."""
    for lesson_report in reports:
        print(
            f"\nlesson {lesson_report.lesson.number} ({lesson_report.lesson.name})"
            + (" - reused, nothing changed" if lesson_report.cached else "")
        )
        if lesson_report.cached and not verbose:
            continue
        print(report.lesson_table(lesson_report, compare=compare))
        exercises = report.exercises_table(lesson_report)
        if exercises:
            print("\nexercises (edit the TODO in the variant, then rerun this lesson):")
            print(exercises)
    failures = report.failures_text(reports)
    if failures:
        print("\n" + failures)


def generate(
    layout: Layout,
    *,
    force: bool = False,
    set_name: str | None = None,
    label: str | None = None,
    strict: bool = False,
    kernel: kernel_options.KernelOptions | None = None,
    verbose: bool = False,
) -> bool:
    """Measure every lesson (reusing unchanged results), build the site, print where it is.

    Compact unless ``verbose``: a lesson reused unchanged is one line, and the table of every
    step gives way to one line of totals.
    """
    started = time.monotonic()
    reports, set_id = measure(layout, force=force, set_name=set_name, label=label, kernel=kernel)
    print_reports(reports, verbose=verbose)
    seconds = site.build_site(layout, strict=strict, current_set=set_id)
    if verbose:
        print("\nwhere the time went:")
        print(report.steps_table(reports, seconds))
    else:
        steps = [step for r in reports for step in r.steps]
        reused = sum(1 for step in steps if step.get("cached"))
        print(
            f"\n{len(steps)} steps ({reused} reused) and the site ({seconds:.1f} s); "
            "invoke generate --verbose shows where the time went"
        )
    print(f"\nsite: {site.entry_page(layout)}  ({time.monotonic() - started:.1f} s in all)")
    return not any(r.failures for r in reports)


def lesson(
    layout: Layout,
    number: int,
    *,
    set_name: str | None = None,
    kernel: kernel_options.KernelOptions | None = None,
    every: bool = False,
) -> bool:
    """Rerun one lesson, rebuild the pages that use it, print the new figures beside the old.

    A student's loop: the exercises and their solutions always rerun, and so does every program
    whose sources changed; the other programs keep their stored figures, with their own dates,
    unless ``every`` (``--all``) reruns them all.
    """
    reports, set_id = measure(layout, [number], force=True, keep_unchanged=not every, set_name=set_name, kernel=kernel)
    print_reports(reports, compare=True)
    for lesson_report in reports:
        line = report.kept_line(lesson_report)
        if line:
            print("\n" + line)
    seconds = site.build_site(layout, strict=False, current_set=set_id)
    # Where a rerun's time goes: building and running what it measures, then the site.
    measured = sum(step["seconds"] for lesson_report in reports for step in lesson_report.steps)
    print(f"\nbuilt and measured in {measured:.1f} s")
    print(f"site updated in {seconds:.1f} s: {site.entry_page(layout)}")
    return not any(r.failures for r in reports)


def build_site(
    layout: Layout, set_name: str | None = None, strict: bool = False, edition_name: str = "", sets: str = ""
) -> float:
    """Build the site from stored results, marking this machine's set (or ``set_name``) as current.

    The current set is passed to Sphinx exactly as ``generate`` and ``lesson`` pass it, so
    that switching between the tasks does not look like a configuration change to Sphinx
    (which would rebuild every page).
    """
    current = _current_set(layout, set_name)
    chosen = site.chosen_sets(layout, sets) if sets else None  # what the lessons compare (``--sets A,B``)
    return site.build_site(layout, strict=strict, current_set=current, edition_name=edition_name, sets=chosen)


def linkcheck(layout: Layout, set_name: str | None = None) -> bool:
    """Check the site's external links; print those that are broken or moved, and return whether none is broken."""
    current = _current_set(layout, set_name)
    print("checking every external link of the site (this needs the internet) ...", flush=True)
    records = site.check_links(layout, current_set=current)
    external = [r for r in records if r.get("status") not in ("unchecked", "ignored")]
    shown = [r for r in external if r.get("status") in (*site.BROKEN, "redirected")]
    if shown:
        rows = [
            [r["status"], f"{r.get('filename', '?')}:{r.get('lineno', '?')}", r.get("uri", ""), r.get("info", "")[:120]]
            for r in sorted(shown, key=lambda r: (r["status"], r.get("filename", ""), r.get("lineno") or 0))
        ]
        print(report.table(["status", "page:line", "link", "what the server said"], rows))
    # The full report named below is the JSON one: Sphinx's output.txt holds the servers' words raw,
    # escape sequences included, which `cat` would play on the terminal.
    broken = sum(1 for r in shown if r["status"] in site.BROKEN)
    working = sum(1 for r in external if r.get("status") == "working")
    print(
        f"{working} of {len(external)} external links work; {broken} broken (full report: "
        f"{layout.build / 'linkcheck' / 'output.json'})"
    )
    return broken == 0


def current_set(layout: Layout, set_name: str | None) -> str:
    """The set the site marks current (for the tasks that build a site outside :func:`build_site`)."""
    return _current_set(layout, set_name)


def _current_set(layout: Layout, set_name: str | None) -> str:
    """This machine's set (or ``set_name``) as the site marks it current: "" when absent or imported."""
    wanted = fingerprint.set_name(set_name)
    return wanted if (layout.results / wanted).is_dir() and not _imported(layout.results / wanted) else ""


def _imported(set_path: Path) -> bool:
    """Whether the set came by ``invoke results.import`` (it is never this machine's); unreadable: not said here."""
    try:
        return bool(store.read_json(set_path / store.SET_FILE).get("imported"))
    except store.StoreError:
        return False  # the site build names the file and the fix


def _bench_verdict(value: dict) -> list[str]:
    """Measured, goal and whether it is met; a control has no goal, a skipped run says why."""
    if value["status"] != "ok":
        return ["not run", "", value.get("reason", "")]
    unit = value["unit"]
    measured = f"r = {value['value']:.2f}" if unit == "r" else f"{value['value']:.2f} {unit}"  # r: a correlation
    if value.get("goal") is None:
        return [measured, "(control)", ""]
    return [measured, f"{value['goal']:g} {unit}", "yes" if value["value"] <= value["goal"] else "NO"]


def bench(layout: Layout, set_name: str | None = None, runs: int | None = None, only: list[str] | None = None) -> None:
    """Run the benchmarks (or ``only`` some), store them in this machine's set, print them against their goals."""
    from course import bench as benchmarks  # start-up: only invoke bench

    set_path = pipeline.open_set(layout, set_name)
    if only:
        measured = benchmarks.run_only(layout, set_path, only, runs=runs or benchmarks.RUNS)
    else:
        # The course's own getppid figure, measured in the same run as the peers.
        pipeline.measure_lessons(layout, [lesson_catalog.find(layout, 1)], set_path, force=True)
        measured = benchmarks.run(layout, set_path, runs=runs or benchmarks.RUNS)
    rows = [[key.removeprefix("bench/"), *_bench_verdict(value)] for key, value in sorted(measured.items())]
    print(report.table(["benchmark", "measured", "goal", "met"], rows))
    files = f"{set_path / 'bench.json'}" + ("" if only else f" and {set_path / 'peers.json'}")
    print(f"stored in {files}; `invoke site` shows them on the site")


#: The terminal width ``invoke results`` fits its table to; a set's name is never broken (it is copied into
#: commands), "where it ran" wraps under it.
RESULTS_WIDTH = 100

#: What the counts of ``invoke results`` count.
KEY = (
    "\nok: measurements with a figure; skipped: not measured there, each saying why (`invoke lesson N`"
    "\nshows it); failed: steps that failed"
)


def results(layout: Layout, as_json: bool = False, verbose: bool = False) -> str:
    """Every stored result set: a table (within 100 columns; ``verbose``: every field), or the full JSON.

    Two sets whose names differ in case alone are listed all the same, with a warning on stderr that
    says which to rename: the site and an import refuse them, the listing is where one looks for them.
    """
    sets = store.load_all(layout.results, case_twins_allowed=True)
    clash = store.case_clash(layout.results, list(sets))
    if clash:
        print(f"warning: {clash}", file=sys.stderr)
    if not sets and not as_json:
        return f"no result sets in {layout.results} (`invoke generate` measures this machine's)"
    if as_json:
        return json.dumps(
            {"schema": store.SCHEMA, "sets": {i: {"info": s.info, "lessons": s.lessons} for i, s in sets.items()}},
            indent=1,
            sort_keys=True,
        )
    with_code = [lesson.name for lesson in lesson_catalog.discover(layout) if lesson.has_code]
    mine = fingerprint.set_name()
    rows = []
    for result_set in sets.values():
        measurements = [m for d in result_set.lessons.values() for m in d.get("measurements", {}).values()]
        ok = sum(1 for m in measurements if m.get("status") == "ok")
        skipped = len(measurements) - ok  # not measured here, each saying why (a failed step is a failure)
        failures = sum(len(d.get("failures", [])) for d in result_set.lessons.values())
        lessons_done = sum(1 for name in with_code if name in result_set.lessons)
        name = (
            result_set.id
            + (" *" if result_set.id == mine else "")
            + (" (imported)" if result_set.info.get("imported") else "")
        )
        reference = result_set.kind == "reference"
        tail = [
            result_set.updated()[:10] or "-",
            "-" if reference else f"{lessons_done}/{len(with_code)}",
            str(ok),
            str(skipped),
            str(failures),
        ]
        if verbose:
            machine = result_set.machine
            label = result_set.label if result_set.label != result_set.id else ""
            host = [
                machine.get("cpu_model", "-"),
                machine.get("kernel_release", "-"),
                machine.get("virtualization", "-"),
            ]
            rows.append([name, label, *host, where_ran(result_set), *tail])
        else:
            rows.append([name, where_ran(result_set), *tail])
    ending = "\n* this machine; lessons: of those with programs, how many have results here"
    if verbose:
        headers = [
            "set",
            "label",
            "host cpu",
            "host kernel",
            "host virt",
            "where it ran",
            "date",
            "lessons",
            "ok",
            "skipped",
            "failed",
        ]
        return report.table(headers, rows) + ending + KEY
    headers = ["set", "date", "lessons", "ok", "skipped", "failed"]
    table = report.stacked_table(headers, rows, RESULTS_WIDTH, "where it ran")
    return table + ending + KEY + "\n(--verbose: every field, the set's label and the host's CPU and kernel among them)"


def where_ran(result_set: store.ResultSet) -> str:
    """Where a set's figures were measured, in a few words: the host's CPU and kernel, or the guest's release and how.

    An icount set measured in a guest names the guest (its release, the CPU model QEMU showed it, its kernel
    parameters, the acceleration), never the host that ran QEMU: its figures are the guest's.
    """
    machine = result_set.machine
    if result_set.kind == "reference":
        return f"{result_set.label}, kernel {machine.get('kernel_release', '?')}"
    guest = result_set.info.get("guest")
    if isinstance(guest, dict):
        parts = [f"guest {guest.get('release') or guest.get('name') or '?'}"]
        if guest.get("cpu_requested"):
            parts.append(f"on {guest['cpu_requested']}")
        if guest.get("kernel_parameters"):
            parts.append(f"with {guest['kernel_parameters']}")
        return " ".join(parts) + f", {guest.get('acceleration') or '?'}"
    virt = machine.get("virtualization")
    where = f"host {machine.get('cpu_model', '?')}, kernel {machine.get('kernel_release', '?')}"
    return where + (f" ({virt})" if virt and virt != "bare" else "")


def export(layout: Layout, set_name: str | None, output: str | None, force: bool = False) -> Path:
    """Write one set (default: this machine's) as an archive; an existing file is replaced only with ``force``."""

    name = fingerprint.set_name(set_name)
    if not set_name and not (layout.results / name / store.SET_FILE).is_file():
        # No --set, and this machine has measured nothing: name what there is to export.
        exportable = [
            s.id for s in store.load_all(layout.results).values() if s.kind != "reference" and store.slug_safe(s.id)
        ]
        raise archive.ArchiveError(
            f"this machine has no set yet ({name}; invoke generate makes it); export one of "
            f"{', '.join(exportable) or 'no set: there is none here'} with --set NAME"
        )
    target = Path(output) if output else Path.cwd() / f"{name}.tar.gz"
    if target.is_dir():  # as cp does: a folder receives the archive under its usual name
        target = target / f"{name}.tar.gz"
    made = archive.export_set(layout.results / name, target, force=force)
    print(f"exported {name} to {made}")
    return made


def import_(layout: Layout, path: Path, force: bool = False, set_name: str | None = None) -> Path:
    """Add a set from an archive after checking it; an existing set needs ``force``.

    Never this machine's set: neither the one named after it nor ``set_name`` (``--set``/``course.set``).
    """

    own = [fingerprint.set_name(), *([fingerprint.set_name(set_name)] if set_name else [])]
    target = archive.import_set(path, layout.results, force=force, own_set=own)
    print(f"imported {target.name} into {target.parent}; `invoke site` shows it beside the others")
    return target


def lab(layout: Layout, hosts: list[Host], options: LabOptions, set_name: str | None = None) -> LabOutcome:
    """Measure every host of a lab over SSH, import their sets, build the site, print the summary.

    The outcome's ``failure_lines()`` say which hosts failed, and why.
    """
    from course.lab import remote as lab_run  # start-up: the lab (and its YAML inventory) loads only when a lab runs

    for number in options.lessons or []:  # a lesson that is not in the course fails here, not on every host
        lesson_catalog.find(layout, number)
    outcome = lab_run.run_lab(layout, hosts, options)
    if outcome.imported and not outcome.interrupted:
        print(f"lab: building the site with {', '.join(outcome.imported)}")
        seconds = build_site(layout, set_name=set_name)
        print(f"site built in {seconds:.1f} s: {site.entry_page(layout)}")
    print("\n" + lab_run.summary(outcome, layout))
    return outcome


def os_error_line(error: OSError, folders: tuple[Path, ...] = ()) -> str | None:
    """One line for an error of the machine (disk full, no permission), or None for anything else.

    ``folders`` (results and build) name where the course was writing when the error has no file.
    """
    where = str(error.filename) if error.filename else " or ".join(str(folder) for folder in folders) or "?"
    own = "or point the course at folders of your own (INVOKE_COURSE_RESULTS, INVOKE_COURSE_BUILD)"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full writing {where}; free some space there (invoke clean empties build/) and rerun"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied on {where}; give your user read and write access to it, {own}"
    if error.errno == errno.EROFS:
        return f"{where} is on a read-only file system; {own}"
    if error.errno == errno.ENAMETOOLONG:
        name = Path(str(error.filename or "")).name
        size = len(name.encode())
        return f"a file name of {size} bytes is too long (at most 255 a name, 4096 a path); choose a shorter one"
    if error.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST) and error.filename:
        return f"{where}: {error.strerror}; a file stands where a folder is expected (or the reverse): move it aside"
    return None


def clean(layout: Layout) -> None:
    """Remove what the build made (binaries, site); results are kept, and so are the lab's archives and logs.

    ``build/lab/`` holds what each host of a lab sent (its archive, its log): the only copy of
    a host's run once its scratch folder is gone, so it is never a build product to remove.
    """
    from course.lab.options import lab_folder  # start-up: the lab (and its YAML inventory) loads only when a lab runs

    kept = lab_folder(layout)
    if layout.build.is_dir():
        for entry in layout.build.iterdir():
            if entry != kept:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
    lab_note = f" and the lab's archives and logs in {kept}" if kept.is_dir() else ""
    print(f"emptied {layout.build}; results in {layout.results}{lab_note} are kept")
