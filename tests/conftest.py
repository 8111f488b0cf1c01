"""Shared fixtures: Sphinx's own testing fixtures, and a checkout of the course to run against."""

from __future__ import annotations

import ast
import fcntl
import functools
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from course import pipeline
from course.measure import lessons
from course.publish.site import JOBS_VARIABLE
from course.results.layout import Layout

pytest_plugins = ("sphinx.testing.fixtures",)

#: Tests of the solutions themselves (exercises, editions, grading, publishing): a student copy
#: of the course (course.publish.edition) has no solutions, and runs the rest.
if (Path(__file__).resolve().parents[1] / ".course-edition").is_file():
    collect_ignore = ["test_exercises.py", "test_edition.py", "test_grading.py", "test_publish.py"]


ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

#: Sphinx builds run by tests (and by the ``invoke`` commands they run) read and write pages in one process
#: (course.publish.site.JOBS_VARIABLE): the suite's workers keep both CPUs busy already, and a clean build costs
#: about a tenth less CPU in one process than in two (16.0 against 17.8 CPU-s here). The parallel read and write
#: are tested on their own, in test_sphinxext.py.
os.environ.setdefault(JOBS_VARIABLE, "1")

#: Tests press Ctrl-C on the commands they start (SIGINT). A shell without job control starts a background job with
#: SIGINT ignored, and an ignored signal stays ignored across exec: a suite started that way (``... &`` in a script)
#: would see ``invoke`` shrug the signal off and fail those tests for the shell's reason. Python's own handler here
#: means every child starts with the default action, whatever started the suite.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


#: Session fixtures worth making once (a VM boot, a whole site build), each with the modules whose tests use them,
#: in the order they run: the longest test first, since xdist sends a worker its next group when one test of this
#: one is left, and that group waits behind the last test.
#: When the suite runs in parallel (``invoke test``: pytest-xdist, one worker per CPU), the tests that use one run
#: on one worker, in order, as one group, so that it is made once; every other test runs with the rest of its
#: module, as a unit of its own (a site build writes its generated machine pages beside its own doctrees, never
#: into the checkout, so builds of this checkout run side by side). A test that uses one of these fixtures must be
#: in a listed module (checked below).
SHARED_GROUPS = {
    "the measured course and its site": (
        {"measured_course", "built_site"},
        ("test_bad_input.py", "test_browser.py", "test_pipeline.py"),
    ),
    "this checkout's site from its stored results": (
        {"timed_checkout_site", "checkout_site", "published"},
        ("test_edition.py", "test_answer_first_site.py", "test_pipeline.py", "test_publish.py", "test_bench.py"),
    ),
    "the class's student copy and lesson 3 run in it": (
        {"class_copy", "lesson_3_in_a_student_checkout"},
        ("test_grading.py", "test_edition.py"),
    ),
    "lesson 9 booted twice from memory": ({"lesson_9_twice"}, ("test_khttpd.py", "test_ram_guest_boot.py")),
    "a class of 60 imported sets: its site timed, then looked at": (
        {"timed_class_site"},
        ("test_class_site.py", "test_bench.py"),
    ),
}

#: The groups that take longest, longest first (each boots a VM, builds whole sites or runs a lab; measured with
#: ``pytest --durations``). xdist hands groups out in collection order, the next one to a worker with at most one
#: test left: these are collected first, so that the short modules fill the time beside them instead of one long
#: group starting last and running on alone. Only the order changes; every group still runs whole, in its order.
LONGEST_FIRST = (
    "the measured course and its site",
    "the class's student copy and lesson 3 run in it",
    "this checkout's site from its stored results",
    "tests/test_lab.py",
    "tests/test_sphinxext.py",
    "tests/test_ram_guest_boot.py",
    "lesson 9 booted twice from memory",
    "a class of 60 imported sets: its site timed, then looked at",
    "tests/test_vm_shell.py",
    "tests/test_kernel_matrix.py",
    "tests/test_runaway.py",
    "tests/test_exercises.py",
    "tests/test_student_rerun.py",
    "tests/test_environment.py",
    "tests/test_khttpd.py",
    "tests/test_publish.py",
    "tests/test_bench.py",
    "tests/test_pipeline.py",
    "tests/test_class_tables.py",
    "tests/test_guest_hardware.py",
)


@functools.cache
def _users(module: str, fixtures: frozenset[str]) -> frozenset[str]:
    """The functions of a test module that use one of ``fixtures``, directly or through the module's own fixtures."""
    tree = ast.parse((TESTS / module).read_text(encoding="utf-8"))
    arguments = {
        node.name: {argument.arg for argument in node.args.args}
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }
    users = set(fixtures)
    while more := {name for name, used in arguments.items() if name not in users and used & users}:
        users |= more
    return frozenset(users - fixtures)


def group_of(nodeid: str) -> str:
    """The unit a test is scheduled in: its shared fixture's group, else its module."""
    module, _, test = nodeid.partition("::")
    for group, (fixtures, modules) in SHARED_GROUPS.items():
        if Path(module).name in modules and test.split("[", 1)[0] in _users(Path(module).name, frozenset(fixtures)):
            return group
    return module


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # only called where pytest-xdist is installed
    """xdist's own grouping (``--dist loadgroup``) sets ``item._nodeid``, which pytest 9 no longer reads; this
    schedules by :func:`group_of` instead."""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # the order of the collection (LONGEST_FIRST), not by number of tests

    class SharedFixturesOnOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return SharedFixturesOnOneWorker(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test using a shared fixture must be in its group; the longest groups come first; in a student copy, a test
    of the full edition's folded solutions is skipped, saying why."""
    student_copy = (ROOT / ".course-edition").is_file()
    for item in items:
        if student_copy and item.name == "test_an_exercise_solution_is_folded_until_opened":
            item.add_marker(pytest.mark.skip(reason="a student copy has no solutions to fold"))
        used = set(getattr(item, "fixturenames", ()))
        for group, (fixtures, _) in SHARED_GROUPS.items():
            if fixtures & used and group_of(item.nodeid) != group:
                raise pytest.UsageError(
                    f"{item.nodeid} uses {', '.join(sorted(fixtures & used))}: add {item.path.name} to its group in "
                    "SHARED_GROUPS in tests/conftest.py, with the fixture as a parameter of the test or of a fixture "
                    "of its module (its tests must run on one worker)"
                )
    rank = {group: place for place, group in enumerate(LONGEST_FIRST)}

    def place(item: pytest.Item) -> tuple[int, int]:
        group = group_of(item.nodeid)
        modules = SHARED_GROUPS.get(group, (set(), ()))[1]
        return rank.get(group, len(rank)), modules.index(item.path.name) if group in SHARED_GROUPS else 0

    items.sort(key=place)


#: Where a test's CPU seconds wait between its set-up and its teardown report (see pytest_runtest_makereport).
_CPU_AT_SETUP = pytest.StashKey[float]()


def _cpu_seconds() -> float:
    """This process's CPU time and that of every child it waited for (a VM, a Sphinx build, a compiler, Chromium)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_CPU_AT_SETUP] = _cpu_seconds()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A test's teardown report carries the CPU seconds it cost, its fixtures made for it included: on a machine
    shared with other work, wall-clock durations say how busy the machine was, CPU seconds say what the test did
    (xdist sends them from the workers with the report)."""
    outcome = yield
    if call.when == "teardown" and _CPU_AT_SETUP in item.stash:
        outcome.get_result().user_properties.append(("cpu_seconds", _cpu_seconds() - item.stash[_CPU_AT_SETUP]))


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """With ``--durations``: each scheduling unit's (group_of) wall and CPU seconds, the most CPU first, and the
    run's total CPU: on two cores, half of it is the least wall time any schedule can reach."""
    if config.option.durations is None:
        return
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if not isinstance(report, pytest.TestReport):
                continue
            group = group_of(report.nodeid)
            wall[group] = wall.get(group, 0.0) + report.duration
            cpu[group] = cpu.get(group, 0.0) + sum(v for k, v in report.user_properties if k == "cpu_seconds")
    if not cpu:
        return
    terminalreporter.write_sep("=", "CPU seconds by group (a test, its fixtures and what it waited for)")
    for group in sorted(cpu, key=cpu.__getitem__, reverse=True)[:30]:
        terminalreporter.write_line(f"{cpu[group]:8.1f} s CPU {wall[group]:8.1f} s wall  {group}")
    terminalreporter.write_line(f"{sum(cpu.values()):8.1f} s CPU in all, over {len(cpu)} groups")


@pytest.fixture(scope="session")
def rootdir() -> Path:
    """Where ``@pytest.mark.sphinx(testroot=...)`` finds its small test projects."""
    return TESTS / "roots"


@pytest.fixture
def course_root() -> Path:
    return ROOT


def chromium_driver(*flags: str) -> object:
    """Headless Chromium under Selenium with ``flags`` beside the ones every browser test needs.

    Its chromedriver dies with the test process (SIGTERM when the thread that started it ends), and the
    browser with its chromedriver: a worker killed mid-test would otherwise leave both running.
    """
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        pytest.fail("chromium and chromium-driver are needed: invoke setup --tests installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from course.results.child import die_with_parent

    options = webdriver.ChromeOptions()
    options.binary_location = str(TESTS / "chromium-with-parent")  # which ends with its chromedriver
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *flags):
        options.add_argument(flag)
    parent = os.getpid()
    service = Service(
        shutil.which("chromedriver"),
        popen_kw={"preexec_fn": functools.partial(die_with_parent, parent, signal.SIGTERM)},
    )
    return webdriver.Chrome(service=service, options=options)


@pytest.fixture(scope="session")
def start_chromium() -> Callable[..., object]:
    """Start headless Chromium under Selenium with these flags beside the ones every browser test needs."""
    return chromium_driver


@pytest.fixture
def scratch_layout(tmp_path: Path) -> Layout:
    """The real checkout, with results and build output in a temporary folder."""
    return Layout(ROOT, results_dir=tmp_path / "results", build_dir=tmp_path / "build")


def _invoke(where: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``invoke`` with ``args`` in ``where``, its output captured; ``env``: variables set beside this process's."""
    command = [sys.executable, "-m", "invoke", *args]
    return subprocess.run(command, cwd=where, capture_output=True, text=True, env={**os.environ, **env})


@pytest.fixture(scope="session")
def lesson_9_twice(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """Lesson 9's stored file after each of two runs of ``invoke run --lesson 9 --acceleration tcg-icount --force``
    on one checkout: two boots of its guest from memory (lesson 9 boots alone, ``boot = "own"``), made once for
    test_khttpd.py (the two boots count the same) and test_ram_guest_boot.py (alone, it counts what the shipped
    kernel matrix counted). Read them only."""
    scratch = tmp_path_factory.mktemp("lesson-9")
    env = {"INVOKE_COURSE_RESULTS": str(scratch / "results"), "INVOKE_COURSE_BUILD": str(scratch / "build")}
    command = ["run", "--lesson", "9", "--acceleration", "tcg-icount", "--set", "lesson-9", "--force"]
    stored = []
    for _ in range(2):
        finished = _invoke(ROOT, *command, **env)
        assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
        stored.append(json.loads((scratch / "results" / "lesson-9" / "09-khttpd.json").read_text()))
    return stored[0], stored[1]


def _run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary folder of this whole run: with pytest-xdist, the one its workers' folders are in."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def seed_kvm_verdict(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], None]:
    """Give a fresh build folder this machine's KVM verdict (course.kernel.vm's kvm-verdict.json), probed once per run.

    ``auto`` acceleration probes KVM once per build folder and remembers the verdict there: a boot
    under KVM that fails (about 4 s of QEMU here, which aborts) or hangs (PROBE_SECONDS of a whole
    core, on a machine whose /dev/kvm hangs), which every test that boots a real VM in a build
    folder of its own would pay again. The first test that asks probes for real
    (course.kernel.vm.choose_acceleration, as a run does); the others find the verdict in their build
    folder, as a second run on one checkout does.
    """
    from course.kernel import kernel_build, vm

    run = _run_folder(tmp_path_factory)
    probed = Layout(ROOT, build_dir=run / "kvm-probe" / "build")
    verdicts = probed.build / "vm" / "kvm-verdict.json"

    def seed(build: Path) -> None:
        with open(run / "kvm-probe.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # workers of one run wait for a single probe
            if not verdicts.is_file():
                try:
                    vm.choose_acceleration(probed, kernel_build.find_kernel(), "auto", progress=print)
                except (kernel_build.KernelError, vm.VmError):
                    return  # no kernel or no QEMU: the test itself says so
            (build / "vm").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(verdicts, build / "vm" / verdicts.name)

    return seed


@pytest.fixture(scope="session")
def measured_course(
    tmp_path_factory: pytest.TempPathFactory, seed_kvm_verdict: Callable[[Path], None]
) -> tuple[Layout, Path, list]:
    """Every lesson measured for real, once per test session: programs here, modules in one VM boot.

    Its results and build folders are in a folder whose name has a space, as a student's may have:
    Kbuild, vng and the guest's paths must take it (test_bad_input.py checks lesson 5 of it).
    """
    scratch = tmp_path_factory.mktemp("measured") / "my course"
    layout = Layout(ROOT, results_dir=scratch / "results", build_dir=scratch / "build")
    seed_kvm_verdict(layout.build)
    shutil.copytree(ROOT / "results" / "reference-2000", layout.results / "reference-2000")
    # The shipped kernel matrix (lessons 2, 4 and 6 compare its guest kernels), as a clone has it.
    for matrix_set in sorted((ROOT / "results").glob("qemu-icount-debian-*")):
        shutil.copytree(matrix_set, layout.results / matrix_set.name)
    set_path = pipeline.open_set(layout)
    reports = pipeline.measure_lessons(layout, lessons.discover(layout), set_path, progress=print)
    return layout, set_path, reports


@pytest.fixture(scope="session")
def built_site(measured_course) -> Layout:
    """The whole site, built with -W from the results measured in this session."""
    from course.publish import site

    layout, set_path, _ = measured_course
    site.build_site(layout, strict=True, current_set=set_path.name)
    return layout


@dataclass
class TimedSite:
    """A site as ``invoke bench`` times it, one run, kept: its layout, what the benchmark found and printed."""

    layout: Layout
    found: dict[str, dict]
    lines: list[str]


@pytest.fixture(scope="session")
def timed_checkout_site(tmp_path_factory: pytest.TempPathFactory) -> TimedSite:
    """``invoke bench --only site`` once (course.bench_speed.site_speed: ``invoke site`` clean, then again unchanged),
    keeping its build: this checkout's whole site, its own edition, from the result sets it ships."""
    from course import bench

    kept = tmp_path_factory.mktemp("checkout-site") / "bench"
    lines: list[str] = []
    found = bench.site_speed(Layout(ROOT), progress=lines.append, runs=1, keep=kept)
    return TimedSite(Layout(ROOT, build_dir=kept / "build"), found, lines)


@pytest.fixture(scope="session")
def checkout_site(timed_checkout_site: TimedSite) -> Layout:
    """This checkout's whole site (its own edition) from the result sets it ships, built once (timed_checkout_site)
    with no warning: the build lists each one in sphinx-warnings.txt, so an empty list is what -W passes."""
    layout = timed_checkout_site.layout
    warned = (layout.build / "sphinx-warnings.txt").read_text(encoding="utf-8")
    assert warned == "", f"the site of this checkout warns:\n{warned[:3000]}"
    return layout


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``invoke publish --pdf --strict`` of this checkout, once per session: its ``build/publish`` folder (the folder
    to put online, the EPUB, the PDF handout, the tarball). Its pages are the student edition built with -W, which
    test_edition.py reads as the student edition: one build of it for both."""
    build = tmp_path_factory.mktemp("publish") / "build"
    done = _invoke(ROOT, "publish", "--pdf", "--strict", INVOKE_COURSE_BUILD=str(build))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "published (student edition" in done.stdout
    return build / "publish"


#: The shipped host set the class's sets copy (every lesson measured).
CLASS_SOURCE = "amd-epyc-6.18.44-fc-v1272-vm"


@dataclass
class TimedClassSite(TimedSite):
    """A class's site as ``invoke bench --only class-site`` times it, one run, kept: the class's results and the site
    built with them (``layout``), what the benchmark found and printed, and the course's own sets before and after."""

    stored_before: list[str]
    stored_after: list[str]


@pytest.fixture(scope="session")
def timed_class_site(tmp_path_factory: pytest.TempPathFactory) -> TimedClassSite:
    """The class benchmark (course.bench_speed.class_site_speed) once, with a class of 60 copies of CLASS_SOURCE,
    keeping its folder: test_bench.py checks what it found, test_class_site.py opens the site it timed. No build of
    the stored sets alone beside it (alone=False: no assertion reads a real one; test_bench.py checks the comparison
    with the builds stood in for)."""
    from course import bench

    stored = ROOT / "results"
    before = sorted(path.name for path in stored.iterdir())
    kept = tmp_path_factory.mktemp("class-of-60") / "class"
    lines: list[str] = []
    found = bench.class_site_speed(
        Layout(ROOT), CLASS_SOURCE, progress=lines.append, runs=1, size=60, keep=kept, alone=False
    )
    after = sorted(path.name for path in stored.iterdir())
    layout = Layout(ROOT, results_dir=kept / "results", build_dir=kept / "build")
    return TimedClassSite(layout, found, lines, before, after)


@dataclass
class StudentCheckout:
    """A checkout a student works in, the ``invoke`` commands that made it (in order) and the last one's output."""

    path: Path
    ran: list[list[str]]
    output: subprocess.CompletedProcess


#: Samples each of a lesson's own programs ([[run]]) takes where a test plays the student: the tests assert that
#: they ran without a failure and what the exercises did (their own counts kept), which a few samples show as well
#: as the lesson's hundreds of thousands; no figure's value.
RUN_SAMPLES = "2000"


def fewer_run_samples(lesson_toml: Path) -> None:
    """The lesson's [[run]] programs take RUN_SAMPLES samples (their first argument); its exercises, as before."""
    tables = re.split(r"(?m)^(?=\[\[)", lesson_toml.read_text(encoding="utf-8"))
    runs = [
        re.sub(r'(?m)^args = \["\d+"', f'args = ["{RUN_SAMPLES}"', t) if t.startswith("[[run]]") else t for t in tables
    ]
    lesson_toml.write_text("".join(runs), encoding="utf-8")


@pytest.fixture(scope="session")
def class_copy(tmp_path_factory: pytest.TempPathFactory) -> StudentCheckout:
    """The student copy the class gets (solutions left out), made once with ``invoke student-copy`` as the guide says.

    Read it only: a test that works in it works in a copy of it.
    """
    copy = tmp_path_factory.mktemp("handout") / "class-2027"
    made = _invoke(ROOT, "student-copy", str(copy))
    assert made.returncode == 0, made.stderr
    return StudentCheckout(copy, [["student-copy", str(copy)]], made)


@pytest.fixture(scope="session")
def lesson_3_in_a_student_checkout(
    class_copy: StudentCheckout, tmp_path_factory: pytest.TempPathFactory
) -> StudentCheckout:
    """A student's checkout of the class copy after the student's loop, ``invoke lesson 3 --set bob-laptop``: the
    programs built and run, the exercise checked with no solution beside it, the student edition's site built.

    Read it only: a test that works on in it (grading's bob) works in a copy of it.
    """
    checkout = tmp_path_factory.mktemp("student") / "bob"
    shutil.copytree(class_copy.path, checkout)
    fewer_run_samples(checkout / "code" / "user" / "03-timing" / "lesson.toml")
    command = ["lesson", "3", "--set", "bob-laptop"]
    ran = _invoke(checkout, *command)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    return StudentCheckout(checkout, [*class_copy.ran, command], ran)


# Waiting for a process to end, as the tests of "nothing is left running" do (import them: from conftest import ...).


def until(condition: Callable[[], object], seconds: float = 15.0, every: float = 0.05):
    """Wait (bounded) while ``condition()`` is truthy; its last value (falsy unless ``seconds`` ran out)."""
    deadline = time.monotonic() + seconds
    while (value := condition()) and time.monotonic() < deadline:
        time.sleep(every)
    return value


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process: one gone, or a zombie its parent has not reaped yet, is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def gone_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` ends within ``seconds``; killed here if not, so that a failing test leaves nothing."""
    if not until(lambda: alive(pid), seconds):
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # it ended just now
        return True
    return False


def helpers_after_killing_their_parent(script: str, number: int, settle: float) -> list[int]:
    """Run ``script`` (it prints its forked helpers' pids on one line), send it signal ``number`` once they are on
    their send (after ``settle`` seconds), and return the helpers, each of which must then end on its own."""
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        helpers = [int(pid) for pid in parent.stdout.readline().split()]
        time.sleep(settle)
        parent.send_signal(number)
        parent.wait(10)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    return helpers


@pytest.fixture(scope="session")
def lesson_4_built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], None]:
    """Give a fresh build folder what a run of lesson 4 builds before its guest boots, made once per test run.

    Lesson 4's module against 6.1 and 6.12, the programs its guest runs, both kernels at their PVH entry and the
    guest from memory's launcher: the tests that stop a run of lesson 4 mid-boot (Ctrl-C, SIGTERM, SIGKILL) test
    the boot, and paid these builds (about 4 CPU-s a kernel) each time. They are made by the product's own
    functions, which key each by what it is built from, so a run finds them current, as a second run on one
    checkout does; a build this misses is made by the run itself. The first test that asks builds them (one worker,
    the others wait), each test gets its own copy (the kernels hard-linked: nothing writes them again).
    """
    import contextlib

    from course.kernel import boot_image, guest_kernels, guest_launcher, kernel_build, vm_shell

    run = _run_folder(tmp_path_factory)
    template = run / "lesson-4-built" / "build"
    made = template.parent / "made"

    def link_or_copy(source: str, target: str) -> None:
        if Path(source).parent.name == "kernels":
            try:
                os.link(source, target)
                return
            except OSError:
                pass  # another file system: copied
        shutil.copy2(source, target)

    def built(build: Path) -> None:
        with open(run / "lesson-4-built.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # workers of one run wait for a single build
            if not made.is_file():
                template.mkdir(parents=True, exist_ok=True)
                layout = Layout(ROOT, build_dir=template)
                for name in ("6.1", "6.12"):
                    try:
                        kernel = guest_kernels.find(name)
                        vm_shell.prepare(layout, 4, kernel.release, progress=lambda line: None)
                    except (kernel_build.KernelError, vm_shell.ShellError):
                        continue  # not installed here, or it does not build: the test's own run says so
                    boot_image.uncompressed(layout.build, kernel.image)
                with contextlib.suppress(guest_launcher.LauncherError):  # no static libc: the test's run says so
                    guest_launcher.compiled(layout.build / "vm" / "launcher")
                made.write_text("")
        if template.is_dir():
            shutil.copytree(template, build, copy_function=link_or_copy, dirs_exist_ok=True)

    return built
