"""The course pipeline's command line: `invoke --list` shows every task, `invoke --help TASK` its options.

Each task is a few lines over :mod:`course.commands`. Defaults live in one
``ns.configure`` below; ``invoke.yaml`` or ``INVOKE_COURSE_*`` variables override them.
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from functools import wraps
from pathlib import Path

from invoke import Collection, Exit, task

from course import commands, guest_kernels, inventory, lessons, runlock, site
from course.archive import ArchiveError
from course.build import BuildError
from course.kernel_build import KernelError
from course.lab import LabError, LabOptions, Timeouts
from course.layout import Layout, find_root
from course.pipeline import KernelOptions, MachineError, OptionError
from course.runners import termination_as_interrupt
from course.store import StoreError
from course.system import SystemError_
from course.vm import VmError

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
    LabError,
    inventory.InventoryError,
    guest_kernels.KernelNameError,
)

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
    """Lesson numbers from the command line ("3" or "4,6")."""
    try:
        return [int(number) for number in str(text).split(",")]
    except ValueError:
        raise Exit(f"error: lesson numbers must be numbers separated by commas, got {text!r}", code=2) from None


def _clear_errors(function):
    """Turn the course's own errors into one clear line and a non-zero exit, not a traceback."""

    @wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except CLEAR_ERRORS as error:
            raise Exit(f"error: {error}", code=2) from None
        except OSError as error:  # a full disk or a folder without permission: the machine's, not a bug
            line = commands.os_error_line(error, _folders(args))
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
    if lesson and not str(lesson).isdigit():
        raise Exit(f"error: lesson number must be a number, got {lesson!r}", code=2)
    commands.build(_layout(c), int(lesson) if lesson else None)


@task(
    help={
        "lesson": "only these lessons (numbers, comma-separated: 4,6); default: all",
        "force": "rerun even when nothing changed since the stored results",
        **SET_HELP,
        **KERNEL_HELP,
        "guest-kernels": GUEST_KERNELS_HELP,
    }
)
@_clear_errors
@_one_run_at_a_time
def run(c, lesson=None, force=False, set=None, label=None, kernel_runner=None, acceleration=None, guest_kernels_=None):  # noqa: A002
    """Build and run the examples, storing results with their provenance (no site build)."""
    if guest_kernels_:
        _matrix(c, guest_kernels_, lesson, force, set, label, kernel_runner, acceleration)
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


def _matrix(c, names, lesson, force, set_name, label, kernel_runner, acceleration) -> None:
    """``invoke run --guest-kernels``: one set per kernel, named after it (course.guest_kernels.set_name)."""
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
    )
    if not ok:
        raise Exit("some kernels failed; see the failures above (earlier results were kept)", code=1)


@task(help={"number": "the lesson's number, as in lessons/NN-*.md", "set": SET_HELP["set"], **KERNEL_HELP})
@_clear_errors
@_one_run_at_a_time
def lesson(c, number, set=None, kernel_runner=None, acceleration=None):  # noqa: A002
    """Rerun one lesson's exercise: rebuild if changed, run, store, update its pages, compare."""
    if not str(number).isdigit():
        raise Exit(f"error: lesson number must be a number, got {number!r}", code=2)
    ok = commands.lesson(
        _layout(c), int(number), set_name=set or c.course.set, kernel=_kernel(c, kernel_runner, acceleration)
    )
    if not ok:
        raise Exit("some steps failed; see the failures above (earlier results were kept)", code=1)


@task(help={"strict": "turn Sphinx warnings into errors (as CI does)"})
@_clear_errors
def site_(c, strict=False):
    """Build the HTML site from the stored results into build/html (no measuring)."""
    layout = _layout(c)
    seconds = commands.build_site(layout, set_name=c.course.set, strict=strict)
    print(f"site built in {seconds:.1f} s: {site.entry_page(layout)}")


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
    }
)
@_clear_errors
@_one_run_at_a_time
def generate(c, force=False, set=None, label=None, strict=False, kernel_runner=None, acceleration=None):  # noqa: A002
    """Generate the course: build and run every example that can run here, store results, build the site."""
    ok = commands.generate(
        _layout(c),
        force=force,
        set_name=set or c.course.set,
        label=label,
        strict=strict,
        kernel=_kernel(c, kernel_runner, acceleration),
    )
    if not ok:
        raise Exit("the course was generated, but some steps failed; see above", code=1)


@task(help={"port": "port of the local preview", "host": "address to listen on"})
@_clear_errors
def serve(c, port=8000, host="127.0.0.1"):
    """Preview the site locally, rebuilding it when a lesson, doc or result changes."""
    layout = _layout(c)
    arguments = [arg for arg in site.sphinx_command(layout, strict=False)[3:] if arg != "-q"]
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


@task(help={"set": SET_HELP["set"], "runs": "how many times each duration is timed, for its median (default: 5)"})
@_clear_errors
@_one_run_at_a_time
def bench(c, set=None, runs=None):  # noqa: A002
    """Benchmark the course: repeatability of lesson 3, pipeline speed (cold, unchanged, lesson 3), peers."""
    if runs is not None and (not str(runs).isdigit() or int(runs) < 1):
        raise Exit(f"error: --runs must be a whole number of at least 1, got {runs!r}", code=2)
    commands.bench(_layout(c), set_name=set or c.course.set, runs=int(runs) if runs else None)


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
    timeout=60,
):
    """Measure a lab of machines over SSH at once, import each one's set, build the site."""
    minutes = float(timeout) * 60
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
        ),
        set_name=c.course.set,
    )
    if not outcome.ok:
        lines = outcome.failure_lines()
        raise Exit(f"lab: {len(lines)} of {len(outcome.hosts)} hosts failed:\n" + "\n".join(lines), code=1)


@task
@_clear_errors
@_one_run_at_a_time
def clean(c):
    """Remove build/ (binaries, modules, site, VM scratch); stored results are kept."""
    commands.clean(_layout(c))


@task(name="list", default=True, help={"json": "print every set and measurement as JSON (schema: docs/results.md)"})
@_clear_errors
def results_list(c, json=False):
    """List the stored result sets (machine, date, completeness), or print them all as JSON."""
    print(commands.results(_layout(c), as_json=json))


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


results = Collection("results", results_list, results_export, results_import)


ns = Collection(setup, build, run, lesson, generate, serve, test, bench, lab, linkcheck, clean, results)
ns.add_task(site_, name="site")
ns.configure(
    {
        "course": {
            "set": "",  # result set name; default: derived from the machine
            "results": "",  # results folder; default: results/
            "build": "",  # build folder (binaries, modules, site); default: build/
            "kernel_runner": "vm",
            "acceleration": "auto",
            "guest_kernel": "",  # default: the newest kernel with image, headers and modules
        }
    }
)
