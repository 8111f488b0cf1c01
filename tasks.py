"""The course pipeline's command line: `invoke --list` shows every task, `invoke --help TASK` its options.

Each task is a few lines over :mod:`course.commands`. Defaults live in one
``ns.configure`` below; ``invoke.yaml`` or ``INVOKE_COURSE_*`` variables override them.
"""

from __future__ import annotations

import importlib.util
import math
import re
import shlex
import subprocess
import sys
from functools import wraps
from pathlib import Path

from invoke import Collection, Exit

from course import commands
from course.cli import task  # one spelling and one short flag per option, in every task
from course.kernel import guest_hardware, guest_kernels, set_identity
from course.kernel.kernel_build import KernelError
from course.kernel.options import KernelOptions, OptionError
from course.kernel.vm import VmError
from course.measure import lessons
from course.measure.build import BuildError
from course.measure.lesson_run import MachineError
from course.measure.threads import termination_as_interrupt
from course.publish import edition as course_edition
from course.publish import report, site
from course.results import progress, runlock, store
from course.results.archive import ArchiveError
from course.results.fingerprint import SetNameError
from course.results.layout import Layout, find_root
from course.results.store import StoreError
from course.system import SystemError_

#: Errors of the course that are the user's to fix: one clear line, no traceback.
CLEAR_ERRORS = (
    lessons.LessonError,
    site.SiteError,
    SystemError_,
    StoreError,
    VmError,
    KernelError,
    ArchiveError,
    MachineError,
    OptionError,
    BuildError,
    runlock.RunLockError,
    guest_kernels.KernelNameError,
    SetNameError,
    course_edition.EditionError,
    set_identity.ReleaseChangeError,
)

#: The same, of the modules only some tasks import (start-up: ``invoke lesson 3`` loads none of them):
#: module -> its error class. A module that was never imported raised nothing.
LAZY_CLEAR_ERRORS = {
    "course.lab.options": "LabError",
    "course.lab.inventory": "InventoryError",
    "course.classroom.submission": "SubmissionError",
    "course.classroom.grading": "GradingError",
    "course.kernel.vm_shell": "ShellError",
}


def _clear_error_types() -> tuple[type[BaseException], ...]:
    loaded = [getattr(sys.modules[name], error) for name, error in LAZY_CLEAR_ERRORS.items() if name in sys.modules]
    return (*CLEAR_ERRORS, *loaded)


SET_HELP = {
    "set": "name of this machine's result set (default: derived from the machine)",
    "label": "a human label for the result set, shown on the site",
}
KERNEL_HELP = {
    "kernel-runner": "where kernel modules run: vm (default: a disposable VM), none, or host-kernel "
    "(loads them into THIS machine's kernel: only on a machine you can afford to crash)",
    "acceleration": "vm runner: auto (probe KVM, else emulation), kvm, tcg, or tcg-icount (deterministic ticks)",
}


def _layout(c) -> Layout:
    return Layout(
        find_root(),
        Path(c.course.results) if c.course.results else None,
        Path(c.course.build) if c.course.build else None,
    )


def _kernel(c, runner: str | None, acceleration: str | None) -> KernelOptions:
    return KernelOptions(
        runner=runner or c.course.kernel_runner,
        acceleration=acceleration or c.course.acceleration,
        release=c.course.guest_kernel,
    )


def _numbers(text: str) -> list[int]:
    """Lesson numbers from the command line ("3" or "4,6"): ASCII digits only (str.isdigit() takes '²')."""
    parts = str(text).split(",")
    if not all(re.fullmatch(r"[0-9]{1,4}", part.strip()) for part in parts):
        raise Exit(f"error: lesson numbers must be numbers separated by commas, got {_shown(text)}", code=2)
    return [int(part) for part in parts]


def _number(text: str) -> int:
    """One lesson number from the command line."""
    if not re.fullmatch(r"[0-9]{1,4}", str(text)):
        raise Exit(f"error: lesson number must be a number (0-9), got {_shown(text)}", code=2)
    return int(text)


def _minutes(text: str | float, option: str) -> float:
    """A positive, finite number of minutes ("60", "0.5")."""
    try:
        minutes = float(text)
    except ValueError:
        minutes = math.nan
    if not (math.isfinite(minutes) and 0 < minutes <= 7 * 24 * 60):
        raise Exit(f"error: {option} must be a number of minutes above 0 (such as 60 or 0.5), got {_shown(text)}", 2)
    return minutes


def _count(text: str, option: str) -> int:
    """A whole number above 0 ("4")."""
    if not re.fullmatch(r"[0-9]{1,6}", str(text)) or int(text) == 0:
        raise Exit(f"error: {option} must be a whole number above 0, got {_shown(text)}", 2)
    return int(text)


def _shown(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= 40 else f"{text[:37]}...")


def _clear_errors(function):
    """Turn the course's own errors into one clear line and a non-zero exit, not a traceback."""

    @wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:
            if isinstance(error, _clear_error_types()):
                raise Exit(f"error: {error}", code=2) from None
            # A full disk or a folder without permission: the machine's, not a bug.
            line = commands.os_error_line(error, _folders(args)) if isinstance(error, OSError) else None
            if line is None:
                raise
            raise Exit(f"error: {line}", code=2) from None
        except KeyboardInterrupt:
            raise Exit("interrupted: stored results are as they were before this run", code=130) from None

    return wrapper


def _folders(args: tuple) -> tuple[Path, ...]:
    """The results and build folders of a task's context (its first argument), to say where a write failed."""
    try:
        layout = _layout(args[0])
    except (IndexError, AttributeError, FileNotFoundError):
        return ()
    return layout.results, layout.build


def _one_run_at_a_time(function):
    """Hold the run locks of the build and results folders; SIGTERM and SIGHUP stop it as Ctrl-C does.

    Both folders: two runs with their own build folders still write the same results folder if
    they share it. Always the build folder's lock first, so two runs never wait for each other.
    """

    @wraps(function)
    def wrapper(c, *args, **kwargs):
        layout, what = _layout(c), f"invoke {shlex.join(sys.argv[1:])}"
        with termination_as_interrupt(), runlock.hold(layout.build, what), runlock.hold_results(layout.results, what):
            return function(c, *args, **kwargs)

    return wrapper


GUEST_KERNELS_HELP = (
    f"guest kernels by name, comma-separated ({','.join(guest_kernels.KERNELS)}): the kernel lessons run once "
    "per kernel, each in its own boot and result set"
)


@task(
    help={
        "check": "only list the missing Debian packages, install nothing",
        "tests": "also what the tests and benchmarks need (Chromium, chromedriver, perf, every guest kernel)",
        "guest-kernels": f"also these guest kernels, image and headers ({','.join(guest_kernels.KERNELS)})",
    }
)
@_clear_errors
def setup(c, check=False, tests=False, guest_kernels_=None):
    """Install the Debian packages the lessons need (compiler, binutils, graphviz, QEMU, a kernel)."""
    names = guest_kernels.parse(guest_kernels_) if guest_kernels_ else []
    commands.setup(_layout(c), install=not check, tests=tests, guest_kernels=names)


@task(help={"lesson": "only this lesson's programs (its number)"})
@_clear_errors
@_one_run_at_a_time
def build(c, lesson=None):
    """Compile the lessons' user-space programs into build/ (only those whose sources changed)."""
    commands.build(_layout(c), _number(lesson) if lesson else None)


@task(
    help={
        "lesson": "only these lessons (numbers, comma-separated: 4,6); default: all",
        "force": "rerun even when nothing changed since the stored results (with --guest-kernels: also replace "
        "a set measured on another release of its kernel)",
        **SET_HELP,
        **KERNEL_HELP,
        "guest-kernels": GUEST_KERNELS_HELP,
        "guest-cpu": "with --guest-kernels: the QEMU CPU model the guests see (qemu-system-x86_64 -cpu help), "
        "e.g. Skylake-Server-v4; each kernel's figures go to a set named after it too",
        "guest-append": "with --guest-kernels: kernel parameters added to the guests' command line, e.g. "
        "mitigations=off (name or name=value words); a set of its own",
    }
)
@_clear_errors
@_one_run_at_a_time
def run(
    c,
    lesson=None,
    force=False,
    set=None,  # noqa: A002
    label=None,
    kernel_runner=None,
    acceleration=None,
    guest_kernels_=None,
    guest_cpu=None,
    guest_append=None,
):
    """Build and run the examples, storing results with their provenance (no site build)."""
    try:
        hardware = guest_hardware.parse(guest_cpu, guest_append) if guest_cpu or guest_append else None
    except guest_hardware.GuestHardwareError as error:
        raise Exit(f"error: {error}", code=2) from None
    if hardware and not guest_kernels_:
        raise Exit("error: --guest-cpu and --guest-append apply to --guest-kernels boots: add --guest-kernels", code=2)
    if guest_kernels_:
        _matrix(c, guest_kernels_, lesson, force, set, label, kernel_runner, acceleration, hardware)
        return
    reports, _ = commands.measure(
        _layout(c),
        _numbers(lesson) if lesson else None,
        force=force,
        set_name=set or c.course.set,
        label=label,
        kernel=_kernel(c, kernel_runner, acceleration),
    )
    commands.print_reports(reports)
    if any(report.failures for report in reports):
        raise Exit("some steps failed; see the failures above (earlier results were kept)", code=1)


def _matrix(c, names, lesson, force, set_name, label, kernel_runner, acceleration, hardware=None) -> None:
    """``invoke run --guest-kernels``: one set per kernel, named after it (course.kernel.guest_kernels.set_name)."""
    chosen = guest_kernels.parse(names)
    if set_name or label:
        option = "--set" if set_name else "--label"
        raise Exit(
            f"error: {option} names one set, and --guest-kernels makes one per kernel "
            f"({', '.join(guest_kernels.set_name(name, 'tcg-icount', '') for name in chosen)} under tcg-icount): "
            f"leave {option} out",
            code=2,
        )
    kernel = _kernel(c, kernel_runner, acceleration)
    if kernel.runner != "vm":
        raise Exit(f"error: --guest-kernels boots each kernel in a VM; --kernel-runner {kernel.runner} cannot", code=2)
    ok = commands.measure_matrix(
        _layout(c),
        chosen,
        _numbers(lesson) if lesson else None,
        acceleration=kernel.acceleration,
        force=force,
        host_set=c.course.set or None,
        hardware=hardware,
    )
    if not ok:
        raise Exit("some kernels failed; see the failures above (earlier results were kept)", code=1)


@task(
    help={
        "number": "the lesson's number, as in lessons/NN-*.md",
        "all": "rerun every program of the lesson (default: the exercises, their solutions and the programs "
        "whose sources changed; the others keep their stored figures, with their own dates)",
        "set": SET_HELP["set"],
        **KERNEL_HELP,
    }
)
@_clear_errors
@_one_run_at_a_time
def lesson(c, number, all_=False, set=None, kernel_runner=None, acceleration=None):  # noqa: A002
    """Rerun one lesson's exercise (and changed programs; --all: every program), store, update its pages, compare."""
    ok = commands.lesson(
        _layout(c),
        _number(number),
        set_name=set or c.course.set,
        kernel=_kernel(c, kernel_runner, acceleration),
        every=all_,
    )
    if not ok:
        raise Exit("some steps failed; see the failures above (earlier results were kept)", code=1)


@task(
    help={
        "lesson": "the lesson whose modules and programs the guest offers (4, 5, 6 or 9)",
        "acceleration": "tcg (default: software emulation), tcg-icount, kvm, or auto (probe KVM)",
    }
)
@_clear_errors
def vm(c, lesson, acceleration="tcg"):
    """Open a shell in the lesson's disposable guest (serial console here): insmod, dmesg, rmmod by hand."""
    from course.kernel import vm_shell  # start-up: the guest's shell loads only when asked for

    with termination_as_interrupt():
        status = vm_shell.open_shell(_layout(c), _number(lesson), c.course.guest_kernel, acceleration)
    if status != 0:
        raise Exit(code=status)


@task(
    help={
        "strict": "turn Sphinx warnings into errors (as CI does)",
        "edition": "full (with the exercises' solutions) or student (without them, into build/student/html); "
        "default: this checkout's own",
        "sets": "the result sets the lessons compare, by name, separated by commas (default: conf.py's course_sets, "
        "else all); the 2000 reference and this machine are always compared, every set keeps its page",
    }
)
@_clear_errors
def site_(c, strict=False, edition=None, sets=""):
    """Build the HTML site from the stored results into build/html (no measuring)."""
    layout = _layout(c)
    chosen = course_edition.chosen(layout.root, edition or c.course.edition or None)
    seconds = commands.build_site(layout, set_name=c.course.set, strict=strict, edition_name=chosen, sets=sets)
    print(f"site built in {seconds:.1f} s: {site.entry_page(layout, chosen)}")


@task(
    help={
        "edition": "student (default: no solutions, no student's grades) or full (with the solutions)",
        "pdf": "also a PDF handout of the whole course, printed by headless Chromium (about 200 pages)",
        "strict": "turn the HTML pages' Sphinx warnings into errors (as invoke site --strict)",
    }
)
@_clear_errors
def publish(c, edition="student", pdf=False, strict=False):
    """Write the site to publish: a self-contained folder with .nojekyll and the EPUB beside it, and its tarball."""
    from course.publish import bundle as publishing  # start-up: only invoke publish

    layout = _layout(c)
    chosen = course_edition.chosen(layout.root, edition)
    current = commands.current_set(layout, c.course.set)
    done = publishing.publish(layout, edition=chosen, current_set=current, pdf=pdf, strict=strict)
    print(f"published ({chosen} edition, {done.pages} pages): {done.folder}")
    print(f"  EPUB:    {done.epub}")
    print(f"  tarball: {done.tarball}")
    for note in done.notes:
        print(f"  {note}")
    print("put the folder on any static host (GitHub Pages, a web server), or open its index.html from disk")


@task(positional=["destination"], help={"destination": "a new (or empty) folder outside this checkout"})
@_clear_errors
def student_copy(c, destination):
    """Write a student copy of the course: its files without the solutions, as a fresh git repository of one commit."""
    path, left_out = course_edition.student_copy(_layout(c), Path(destination))
    print(report.printable(f"student copy: {path} ({len(left_out)} solution files left out: {', '.join(left_out)})"))
    print("hand it out as it is (git clone, or a tarball of the folder); its site is the student edition")


@task
@_clear_errors
def linkcheck(c):
    """Check the site's external links (kernel sources, manual pages, tools); needs the internet, so no test runs it."""
    if not commands.linkcheck(_layout(c), set_name=c.course.set):
        raise Exit("some external links are broken; see the table above", code=1)


@task(
    help={
        "force": "rerun every example even if nothing changed",
        "strict": "turn Sphinx warnings into errors",
        **SET_HELP,
        **KERNEL_HELP,
        "verbose": "every lesson's figures, reused or not, and the table of where the time went",
    }
)
@_clear_errors
@_one_run_at_a_time
def generate(c, force=False, set=None, label=None, strict=False, kernel_runner=None, acceleration=None, verbose=False):  # noqa: A002
    """Generate the course: build and run every example that can run here, store results, build the site."""
    ok = commands.generate(
        _layout(c),
        force=force,
        set_name=set or c.course.set,
        label=label,
        strict=strict,
        kernel=_kernel(c, kernel_runner, acceleration),
        verbose=verbose,
    )
    if not ok:
        raise Exit("the course was generated, but some steps failed; see above", code=1)


@task(help={"port": "port of the local preview", "host": "address to listen on"})
@_clear_errors
def serve(c, port=8000, host="127.0.0.1"):
    """Preview the site locally, rebuilding it when a lesson, doc or result changes."""
    layout = _layout(c)
    # The current set as invoke site, generate and lesson pass it: the same options, so Sphinx reads only what changed.
    current = commands.current_set(layout, c.course.set)
    arguments = [arg for arg in site.sphinx_command(layout, strict=False, current_set=current)[3:] if arg != "-q"]
    command = [sys.executable, "-m", "sphinx_autobuild", "--host", host, "--port", str(int(port))]
    # Absolute, and only folders that exist: invoke may run from anywhere (invoke -r), and the
    # watcher refuses a missing folder.
    for folder in (layout.results, layout.root / "course"):
        if folder.is_dir():
            command += ["--watch", str(folder)]
    c.run(shlex.join([*command, *arguments]), pty=True)


@task(help={"fast": "skip the slow tests (real runs, the VM boot, the full site build)", "k": "only tests matching"})
def test(c, fast=False, k=""):
    """Run the whole test suite (ruff, unit, Sphinx extension, integration with a real VM, full site build)."""
    root = find_root()
    # Lists, never a shell: -k's expression and the checkout's path reach each tool as they are.
    tests = [*(["-m", "not slow"] if fast else []), *_parallel(), *(["-k", k] if k else [])]
    for command in (
        [sys.executable, "-m", "ruff", "check", "course", "tests", "tasks.py", "conf.py"],
        [sys.executable, "-m", "pytest", *tests],
    ):
        finished = subprocess.run(command, cwd=root)
        if finished.returncode != 0:
            raise Exit(code=finished.returncode)


def _parallel() -> list[str]:
    """One worker per CPU (pytest-xdist, in requirements.lock); tests/conftest.py says which tests share one."""
    if importlib.util.find_spec("xdist") is None:
        return []
    return ["--numprocesses", "auto"]


@task(
    help={
        "set": SET_HELP["set"],
        "runs": "how many times each duration is timed, for its median (default: 5)",
        "only": "only these benchmarks, comma-separated: student-loop (an unchanged invoke generate and invoke "
        "lesson 3, in a copy of this checkout's results and build), site (invoke site, clean and unchanged), "
        "class-site (invoke site, clean, with 60 imported copies of this machine's set), generate (invoke "
        "generate, cold and unchanged, and invoke lesson 3: minutes), matrix (three icount guest kernels, cold "
        "and unchanged: minutes), lab (invoke lab of one host and of two, over ssh to this machine: needs sshd); "
        "default: every benchmark",
    }
)
@_clear_errors
@_one_run_at_a_time
def bench(c, set=None, runs=None, only=None):  # noqa: A002
    """Benchmark the course: repeatability of lesson 3, pipeline speed (cold, unchanged, lesson 3), peers."""
    from course import bench as benchmarks

    try:
        count = benchmarks.parse_runs(str(runs)) if runs is not None else None
        names = benchmarks.parse_only(str(only)) if only is not None else []
    except ValueError as error:
        raise Exit(f"error: {error}", code=2) from None
    commands.bench(_layout(c), set_name=set or c.course.set, runs=count, only=names)


@task(
    help={
        "hosts": "the lab's machines: [USER@]HOST[:PORT], comma-separated",
        "inventory": "a YAML file of hosts instead (host, user, port, key, set, label; docs/instructors.md)",
        "user": "user to log in as where a host names none (default: your ssh config, else yours)",
        "key": "private key file where a host names none (default: your ssh agent and ~/.ssh keys)",
        "lessons": "only these lessons on every host (numbers, comma-separated); default: all",
        **KERNEL_HELP,
        "known-hosts": "the known_hosts file host keys are checked against (default: ~/.ssh/known_hosts)",
        "accept-new-host-keys": "accept a host key never seen before and add it to known_hosts (a changed key "
        "is still refused)",
        "keep": "keep each host's scratch folder (default: removed)",
        "force": "replace sets of the same name here, as results.import --force",
        "timeout": "minutes ./bootstrap and invoke run may each take on a host (default: 60)",
        "parallel": "at most this many hosts at once (default: all of them)",
    }
)
@_clear_errors
@_one_run_at_a_time
def lab(
    c,
    hosts=None,
    inventory_=None,
    user=None,
    key=None,
    lessons=None,
    kernel_runner=None,
    acceleration=None,
    known_hosts=None,
    accept_new_host_keys=False,
    keep=False,
    force=False,
    timeout=None,
    parallel=None,
):
    """Measure a lab of machines over SSH at once, import each one's set, build the site."""
    from course.lab import inventory  # start-up: the lab (and its YAML inventory) loads only when a lab runs
    from course.lab.options import LabOptions, Timeouts

    minutes = _minutes(timeout or 60, "--timeout") * 60
    outcome = commands.lab(
        _layout(c),
        inventory.from_arguments(hosts, inventory_, user, key),
        LabOptions(
            lessons=_numbers(lessons) if lessons else None,
            kernel_runner=kernel_runner,
            acceleration=acceleration,
            known_hosts=Path(known_hosts).expanduser() if known_hosts else None,
            accept_new_host_keys=accept_new_host_keys,
            keep=keep,
            force=force,
            timeouts=Timeouts(bootstrap=minutes, run=minutes),
            own_sets=(c.course.set,) if c.course.set else (),
            parallel=_count(parallel, "--parallel") if parallel else 0,
        ),
        set_name=c.course.set,
    )
    if outcome.interrupted:
        raise Exit("interrupted: every host's step was stopped and its scratch folder removed (summary above)", 130)
    if not outcome.ok:
        lines = outcome.failure_lines()
        raise Exit(f"lab: {len(lines)} of {len(outcome.hosts)} hosts failed:\n" + "\n".join(lines), code=1)


@task
@_clear_errors
@_one_run_at_a_time
def clean(c):
    """Empty build/ (binaries, modules, site, VM scratch); results and the lab's archives and logs are kept."""
    commands.clean(_layout(c))


@task(
    name="list",
    default=True,
    help={
        "json": "print every set and measurement as JSON (schema: docs/results.md)",
        "verbose": "every field: the label, the host's CPU, kernel and virtualization (wider than 100 columns)",
    },
)
@_clear_errors
def results_list(c, json=False, verbose=False):
    """List the stored result sets (where they ran, date, completeness), or print them all as JSON."""
    print(commands.results(_layout(c), as_json=json, verbose=verbose))


@task(
    name="export",
    help={
        "set": "the set to export (default: this machine's)",
        "output": "the archive to write (default: SET.tar.gz); never inside the results folder",
        "force": "replace an existing archive at --output (a regular file only)",
    },
)
@_clear_errors
def results_export(c, set=None, output=None, force=False):  # noqa: A002
    """Write one result set as a single archive, to carry to another checkout."""
    commands.export(_layout(c), set or c.course.set, output, force=force)


@task(
    name="import",
    positional=["archive"],
    help={"archive": "a .tar.gz made by results.export", "force": "replace a set of the same name"},
)
@_clear_errors
@_one_run_at_a_time
def results_import(c, archive, force=False):
    """Add a result set from another machine, after checking it (schema, provenance, sane values)."""
    commands.import_(_layout(c), Path(archive), force=force, set_name=c.course.set)


@task(name="exercises", help={"csv": "also write the table as CSV to this file (default: build/progress.csv)"})
@_clear_errors
def results_exercises(c, csv=None):
    """The class's progress: one row a student, one column an exercise (graded, or self-reported by an import)."""
    from course.classroom import grading  # start-up: the class's modules load only when asked for

    layout = _layout(c)
    rows, columns, problems = progress.rows(layout.results)
    for line in problems:
        print(f"warning: {line}")
    if not rows:
        print(f"no grades in {grading.grades_folder(layout)} and no imported set with an exercise: nothing to show")
        return
    headers, body = progress.as_table(rows, columns)
    print(report.table(headers, body))
    output = Path(csv) if csv else layout.build / "progress.csv"
    store.write_text(output, progress.as_csv(rows, columns))
    graded = sum(row.kind == "graded" for row in rows)
    print(f"{graded} graded in the VM, {len(rows) - graded} self-reported (imported, not graded); CSV: {output}")


results = Collection("results", results_list, results_export, results_import, results_exercises)


@task(
    help={
        "student": "your name as the instructor knows it (letters, digits, dot, dash, underscore)",
        "output": "the archive to write (default: build/submit/STUDENT.tar.gz)",
        "set": SET_HELP["set"],
    }
)
@_clear_errors
def submit(c, student, output=None, set=None):  # noqa: A002
    """Pack your exercise sources and your result set into one archive to hand in."""
    from course.classroom import submission  # start-up: the class's modules load only when asked for

    path = submission.pack(_layout(c), student, Path(output) if output else None, set_name=set or c.course.set)
    print(f"submission: {path} (hand this file in; your instructor grades it with invoke grade)")


@task(
    positional=["folder"],
    help={
        "folder": "the folder holding the students' submissions (*.tar.gz from invoke submit)",
        "lessons": "only the exercises of these lessons (numbers, comma-separated); default: all",
        "acceleration": "vm acceleration (default: tcg-icount, costs counted in instructions, fair between hosts)",
    },
)
@_clear_errors
@_one_run_at_a_time
def grade(c, folder, lessons=None, acceleration=None):
    """Build and check every submission in the disposable VM, against the solutions; store and show the grades."""
    from course.classroom import grading  # start-up: the class's modules load only when asked for

    grades, refused = grading.grade(
        _layout(c),
        Path(folder),
        numbers=_numbers(lessons) if lessons else None,
        acceleration=acceleration or grading.DEFAULT_ACCELERATION,
        release=c.course.guest_kernel,
    )
    rows = [
        [
            record["student"],
            key,
            state["status"],
            ", ".join(f"{name} {cost['ratio']:.2f}x" for name, cost in state.get("cost", {}).items()) or "-",
            "SAME AS THE SOLUTION" if state.get("same_as_solution") else "",
        ]
        for record in grades
        for key, state in record["exercises"].items()
    ]
    print(report.table(["student", "exercise", "status", "cost / solution's", "copy?"], rows))
    where = grades[0]["where"] if grades else {}
    print(
        f"graded in the VM ({where.get('guest_kernel')}, {where.get('acceleration')}); stored in "
        f"{grading.grades_folder(_layout(c))}; invoke results.exercises shows the class"
    )
    failed = [
        f"{record['student']} {key}: {state['detail']}"
        for record in grades
        for key, state in record["exercises"].items()
        if state.get("grading_failed")
    ]
    problems = (["some submissions were refused:", *refused] if refused else []) + (
        ["some exercises could not be graded (grade them again):", *failed] if failed else []
    )
    if problems:
        raise Exit("\n".join(report.printable(line) for line in problems), code=1)


ns = Collection(setup, build, run, lesson, vm, generate, serve, test, bench, lab, linkcheck, clean, results)
ns.add_task(site_, name="site")
for class_task in (student_copy, submit, grade, publish):  # teaching a class (docs/instructors.md)
    ns.add_task(class_task)
ns.configure(
    {
        "course": {
            "set": "",  # result set name; default: derived from the machine
            "results": "",  # results folder; default: results/
            "build": "",  # build folder (binaries, modules, site); default: build/
            "kernel_runner": "vm",
            "acceleration": "auto",
            "guest_kernel": "",  # default: the newest kernel with image, headers and modules
            "edition": "",  # the site's edition, full or student; default: the checkout's own
        }
    }
)
