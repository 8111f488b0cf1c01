"""Bad input and a machine that cannot do what was asked: one clear line each, and nothing stored is lost."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Config, Exit, MockContext, Result

import tasks
from course import commands, pipeline
from course.kernel import kernel_build, kernel_runs, vm
from course.kernel import options as kopts
from course.kernel.kernel_build import BuiltModule, GuestKernel
from course.measure import lesson_run, lessons
from course.publish import site
from course.results import store
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
KERNEL = GuestKernel("6.1.0-test", Path("/boot/vmlinuz-6.1.0-test"), Path("/h"), Path("/m"))


def _invoke(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """The real command line, with results and build output in a scratch folder."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "INVOKE_COURSE_RESULTS": str(tmp_path / "results"),
            "INVOKE_COURSE_BUILD": str(tmp_path / "build"),
            **env,
        },
    )


def _course(root: Path, user: str | None = None, kernel: str | None = None) -> Layout:
    """A one-lesson course: ``user`` is its code/user lesson.toml, ``kernel`` its code/kernel one."""
    (root / "lessons").mkdir(parents=True)
    (root / "conf.py").write_text("")
    (root / "lessons" / "01-mini.md").write_text("# Mini\n")
    for folder, toml, source in (("user", user, "prog"), ("kernel", kernel, "mod")):
        (root / "code" / folder / "common").mkdir(parents=True)
        if toml is None:
            continue
        code = root / "code" / folder / "01-mini"
        code.mkdir()
        (code / "lesson.toml").write_text(toml)
        (code / f"{source}.c").write_text("int main(void) { return 0; }\n")
        if folder == "kernel":
            (code / "Kbuild").write_text("obj-m := mod.o\n")
    return Layout(root)


# --- lesson.toml: every key known, every value checked, the file named -------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('timeout = "abc"', r"timeout must be a number of seconds above 0, like timeout = 120, not 'abc'"),
        ("timeout = nan", r"timeout must be a number of seconds above 0, .*not nan"),
        ("timeout = inf", r"timeout must be a number of seconds above 0, .*not inf"),
        ("timeout = 0", r"timeout must be a number of seconds above 0"),
        ("timeout = true", r"timeout must be a number of seconds above 0"),
        ("stdin = 5", r"stdin must be a list of kinds of file, like stdin = \[\"devnull\"\], not 5"),
        ("stdin = []", r"stdin must name at least one kind"),
        ('stdin = ["tty", "tty"]', r"stdin names a kind twice"),
        ("timout = 5", r"unknown key 'timout' \(did you mean 'timeout'\?\); the keys of \[\[run\]\] are program, "),
        ('args = "hello"', r"args must be a list of strings, like args = \[\"100000\"\], not 'hello'"),
        ("args = [100000]", r"args must be a list of strings"),
        ('libs = "-luring"', r"libs must be a list of strings"),
        ("files = 3", r"files must be a list of kinds of file"),
        # These were tracebacks: OverflowError (a deadline past the clock's end), embedded null byte (exec).
        ("timeout = 1e300", r"timeout must be at most 86400 seconds \(24 hours\), not 1e\+300"),
        ('args = ["a\\u0000b"]', r"args must not hold a NUL character \(\\u0000\), as in \['a\\x00b'\]"),
        ('libs = ["-l\\u0000x"]', r"libs must not hold a NUL character"),
    ],
)
def test_a_bad_run_entry_is_one_line_naming_the_file(tmp_path: Path, entry: str, message: str) -> None:
    layout = _course(tmp_path, f'[[run]]\nprogram = "prog"\n{entry}\n')
    with pytest.raises(lessons.LessonError, match=message) as refused:
        lessons.discover(layout)
    text = str(refused.value)
    assert text.startswith(f"{layout.user_code / '01-mini' / 'lesson.toml'}: [[run]] 'prog': ")
    assert "\n" not in text


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[run]\nprogram = 'prog'\n", r"write each run entry as a table headed \[\[run\]\] \(two brackets\)"),
        ("run = 5\n", r"write each run entry as a table headed \[\[run\]\]"),
        ("[[runs]]\nprogram = 'prog'\n", r"unknown section 'runs' \(did you mean 'run'\?\)"),
        ("[[module]]\nname = 'mod'\n", r"\[\[module\]\] belongs in code/kernel/NN-slug/lesson.toml"),
        ("boot = 'own'\n", r"boot belongs in code/kernel/NN-slug/lesson.toml, beside the modules"),
        ("[[run]]\nargs = ['1']\n", r"\[\[run\]\] entry 1 needs program"),
        ("[[run]]\nprogram = 5\n", r"program must be a non-empty string"),
        ("[[disassemble]]\nid = 'x'\nsymbol = 'main'\n", "exactly one of program or library"),
        ("[[disassemble]]\nid = 'x'\nsymbol = 'main'\nprogram = 'prog'\nsymbl = 'y'\n", "unknown key 'symbl'"),
        ("[[derive]]\nname = 'd'\n", r"needs an expression, or kind = \"slope\" with points and sizes"),
        ("[[derive]]\nname = 'd'\nexpression = '__import__(1)'\n", "expression must be arithmetic"),
        ("[[derive]]\nname = 'd'\nexpression = 'median(01-mini/x) /'\n", "expression must be arithmetic"),
        ("[[derive]]\nname = 'd'\nkind = 'slope'\npoints = 'x-{n}'\nsizes = [0, 1]\n", "points must put {size}"),
        ("[[derive]]\nname = 'd'\nkind = 'slope'\npoints = 'x-{size}'\nsizes = [1]\n", "at least two different"),
        ("[[derive]]\nname = 'd'\nkind = 'line'\n", r"kind must be \"slope\""),
        ("[[exercise]]\nname = 'e'\nprogram = 'prog'\nsolution = 'prog'\nargs = 'x'\n", "args must be a list"),
        # No solution is allowed (a student copy has none); a solution that is not there is not.
        ("[[exercise]]\nname = 'e'\nprogram = 'prog'\nsolution = 'gone'\n", r"exercise 'e': no source gone.c"),
    ],
)
def test_a_bad_user_lesson_toml_is_one_line_naming_the_file(tmp_path: Path, toml: str, message: str) -> None:
    layout = _course(tmp_path, toml)
    with pytest.raises(lessons.LessonError, match=message) as refused:
        lessons.discover(layout)
    assert str(refused.value).startswith(str(layout.user_code / "01-mini" / "lesson.toml"))


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[[run]]\nprogram = 'prog'\n", r"\[\[run\]\] belongs in code/user/NN-slug/lesson.toml"),
        ("[[module]]\nname = 'mod'\nexpect = 'crash'\n", r"expect must be \"load\" or \"build-error\", not 'crash'"),
        ("[[module]]\nname = 'mod'\nmeasures = 'x'\n", "measures must be a list of strings"),
        ("[[module]]\nname = 'mod'\nparams = ['samples', 10]\n", "params must be a list of strings"),
        ("[[module]]\nname = 'mod'\nstdin = ['floppy']\n", r"unknown stdin kind\(s\) \['floppy'\]; choose from"),
        ("[[module]]\nname = 'mod'\nmeasure = ['x']\n", r"unknown key 'measure' \(did you mean 'measures'\?\)"),
        ("[[module]]\nname = '../mod'\n", r"name must be a plain name \(letters, digits, - and _\)"),
        ('[[module]]\nname = "mod"\nparams = ["samples=1\\u0000"]\n', r"params must not hold a NUL character"),
        ("boot = 'alone'\n[[module]]\nname = 'mod'\n", r"boot must be \"own\" \(its guest work in a boot of its own\)"),
        ("boot = true\n[[module]]\nname = 'mod'\n", r"boot must be \"own\" .* or \"shared\", not True"),
        ("[boot]\nown = true\n", r"boot must be \"own\""),
    ],
)
def test_a_bad_kernel_lesson_toml_is_one_line_naming_the_file(tmp_path: Path, toml: str, message: str) -> None:
    layout = _course(tmp_path, kernel=toml)
    with pytest.raises(lessons.LessonError, match=message) as refused:
        lessons.discover(layout)
    assert str(refused.value).startswith(str(layout.kernel_code / "01-mini" / "lesson.toml"))


def test_a_lesson_toml_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    layout = _course(tmp_path, "")
    (layout.user_code / "01-mini" / "lesson.toml").write_bytes(b'[[run]]\nprogram = "\xff"\n')
    with pytest.raises(lessons.LessonError, match="not UTF-8 text"):
        lessons.discover(layout)


def test_every_lesson_toml_of_the_course_loads(course_root: Path) -> None:
    found = {lesson.name: lesson for lesson in lessons.discover(Layout(course_root))}
    for toml in sorted(course_root.glob("code/*/*/lesson.toml")):
        lesson = found[toml.parent.name]
        assert lesson.has_code, toml
        if toml.parent.parent.name == "kernel":
            assert lesson.in_vm, toml  # modules to load, or a trace to take (lesson 2)
    # Lesson 9's servers count what the boot holds before them: it boots alone; the others share a boot.
    assert [name for name, lesson in found.items() if lesson.own_boot] == ["09-khttpd"]
    assert all(isinstance(spec.timeout, float) for lesson in found.values() for spec in lesson.runs)


def test_a_kernel_lesson_shares_its_boot_unless_it_says_boot_own(tmp_path: Path) -> None:
    shared = lessons.discover(_course(tmp_path / "shared", kernel="[[module]]\nname = 'mod'\n"))
    said = lessons.discover(_course(tmp_path / "said", kernel="boot = 'shared'\n[[module]]\nname = 'mod'\n"))
    own = lessons.discover(_course(tmp_path / "own", kernel="boot = 'own'\n[[module]]\nname = 'mod'\n"))
    assert [shared[0].own_boot, said[0].own_boot, own[0].own_boot] == [False, False, True]


def test_a_bad_lesson_toml_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "course"
    layout = _course(root, '[[run]]\nprogram = "prog"\ntimeout = "abc"\n')
    # Copies, not links: the course finds its checkout from where its own files are.
    shutil.copy(ROOT / "tasks.py", root)
    shutil.copytree(ROOT / "course", root / "course", ignore=shutil.ignore_patterns("__pycache__"))
    finished = subprocess.run(
        [sys.executable, "-m", "invoke", "build"], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 2, finished.stdout + finished.stderr
    assert finished.stderr.strip().splitlines() == [
        f"error: {layout.user_code / '01-mini' / 'lesson.toml'}: [[run]] 'prog': "
        "timeout must be a number of seconds above 0, like timeout = 120, not 'abc'"
    ]


# --- kernel options: refused before anything runs ------------------------------------------------------------


def test_kernel_options_are_checked_when_made() -> None:
    with pytest.raises(kopts.OptionError, match=r"unknown acceleration 'warp'; choose one of auto, kvm, tcg, tcg"):
        kopts.KernelOptions(acceleration="warp")
    with pytest.raises(kopts.OptionError, match=r"unknown kernel runner 'qemu'; choose one of vm, host-kernel"):
        kopts.KernelOptions(runner="qemu")
    assert set(kopts.ACCELERATIONS) == {"auto", *vm.ACCELERATIONS}
    assert set(kernel_runs.RUNNERS) == set(kopts.KERNEL_RUNNERS)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["generate", "--acceleration", "warp"], {}, "unknown acceleration 'warp'"),
        (["run", "--lesson", "4", "--kernel-runner", "qemu"], {}, "unknown kernel runner 'qemu'"),
        (["lesson", "4"], {"INVOKE_COURSE_ACCELERATION": "fast"}, "unknown acceleration 'fast'"),
    ],
)
def test_an_unknown_option_value_stops_before_anything_runs(tmp_path: Path, args, env, message) -> None:
    finished = _invoke(args, tmp_path, **env)
    assert finished.returncode == 2, finished.stdout + finished.stderr
    assert finished.stderr.strip().splitlines() == [finished.stderr.strip()]
    assert finished.stderr.startswith(f"error: {message}; choose one of")
    # The run holds the results folder's lock (an flock on the folder, which it makes): nothing in it.
    assert not list((tmp_path / "results").iterdir()), "no result set was opened, nothing was measured"


# --- a VM that cannot start is a failure that keeps the earlier figures -------------------------------------

MODULE_TOML = '[[module]]\nname = "mod"\nstdin = ["tty", "file"]\nmeasures = ["x", "y"]\n'
NO_QEMU = "qemu-system-x86_64 not found; install it with: apt-get install qemu-system-x86"
LOG = "course: measure x unit=ticks samples=2\ncourse: hist x 5x2\ncourse: meta done=1\n"


def _measure(layout: Layout) -> lesson_run.LessonReport:
    set_path = pipeline.open_set(layout, "mine")
    return pipeline.measure_lesson(layout, lessons.find(layout, 1), set_path, force=True, progress=lambda line: None)


def test_a_vm_that_cannot_start_fails_the_lesson_and_keeps_its_figures(tmp_path: Path, monkeypatch) -> None:
    layout = _course(tmp_path / "course", kernel=MODULE_TOML)
    monkeypatch.setattr(kernel_build, "find_kernel", lambda release="": KERNEL)
    monkeypatch.setattr(vm, "require_qemu", lambda: None)
    monkeypatch.setattr(vm, "vng_path", lambda: Path("/usr/bin/vng"))
    # KVM: a virtme-ng boot (vm.run_jobs, canned here); emulated runs boot the guest from memory instead.
    monkeypatch.setattr(vm, "choose_acceleration", lambda *a: ("kvm", "asked for"))
    built = BuiltModule("01-mini", "mod", tmp_path / "mod.ko", {}, rebuilt=False)
    monkeypatch.setattr(kernel_build, "build_module", lambda *a: built)
    booted = vm.VmRun([{"log": LOG, "exit_status": 1, "insmod_output": "", "command": "insmod mod.ko"}] * 2, "", 0, 1)
    monkeypatch.setattr(vm, "run_jobs", lambda *a, **k: booted)
    first = _measure(layout)
    assert first.failures == [] and first.stored["measurements"]["01-mini/x.tty"]["status"] == "ok"
    assert first.stored["kernel_run"]["acceleration"] == "kvm"

    def no_qemu() -> None:
        raise vm.VmError(NO_QEMU)

    monkeypatch.setattr(vm, "require_qemu", no_qemu)
    again = _measure(layout)
    assert [(f["step"], f["what"], f["message"]) for f in again.failures] == [
        ("run", "kernel modules", f"the VM cannot start: {NO_QEMU}")
    ]
    stored = store.read_json(layout.results / "mine" / "01-mini.json")
    assert stored["measurements"]["01-mini/x.tty"] == first.stored["measurements"]["01-mini/x.tty"], "kept"
    assert stored["kernel_run"]["acceleration"] == "kvm", "the kept figures still say where they come from"
    assert stored["failures"][0]["message"] == f"the VM cannot start: {NO_QEMU}"
    # y was never measured: a placeholder says why, so the page explains the gap.
    assert stored["measurements"]["01-mini/y.tty"]["status"] == "skipped"
    assert NO_QEMU in stored["measurements"]["01-mini/y.tty"]["reason"]


def test_the_none_runner_keeps_the_kernel_figures_measured_before(tmp_path: Path, monkeypatch) -> None:
    """Choosing not to run the modules is no reason to forget what they measured, nor where."""
    layout = _course(tmp_path / "course", kernel=MODULE_TOML)
    monkeypatch.setattr(kernel_build, "find_kernel", lambda release="": KERNEL)
    monkeypatch.setattr(vm, "require_qemu", lambda: None)
    monkeypatch.setattr(vm, "vng_path", lambda: Path("/usr/bin/vng"))
    monkeypatch.setattr(vm, "choose_acceleration", lambda *a: ("kvm", "asked for"))  # a virtme-ng boot, canned
    built = BuiltModule("01-mini", "mod", tmp_path / "mod.ko", {}, rebuilt=False)
    monkeypatch.setattr(kernel_build, "build_module", lambda *a: built)
    booted = vm.VmRun([{"log": LOG, "exit_status": 1, "insmod_output": "", "command": "insmod mod.ko"}] * 2, "", 0, 1)
    monkeypatch.setattr(vm, "run_jobs", lambda *a, **k: booted)
    first = _measure(layout)
    assert first.stored["measurements"]["01-mini/x.tty"]["status"] == "ok"
    report = pipeline.measure_lesson(
        layout,
        lessons.find(layout, 1),
        layout.results / "mine",
        progress=lambda line: None,
        kernel=kopts.KernelOptions(runner="none"),
    )
    assert report.failures == []
    stored = store.read_json(layout.results / "mine" / "01-mini.json")
    assert stored["measurements"]["01-mini/x.tty"] == first.stored["measurements"]["01-mini/x.tty"], "kept"
    assert stored["kernel_run"]["acceleration"] == "kvm", "the kept figures still say where they come from"
    assert stored["measurements"]["01-mini/y.tty"]["status"] == "skipped", "never measured: says why"


def test_the_none_runner_still_records_not_run_without_a_failure(tmp_path: Path) -> None:
    layout = _course(tmp_path / "course", kernel=MODULE_TOML)
    set_path = pipeline.open_set(layout, "mine")
    report = pipeline.measure_lesson(
        layout,
        lessons.find(layout, 1),
        set_path,
        progress=lambda line: None,
        kernel=kopts.KernelOptions(runner="none"),
    )
    assert report.failures == []
    assert report.stored["measurements"]["01-mini/x.tty"]["status"] == "skipped"
    assert report.stored["kernel_run"]["unavailable"].endswith("(--kernel-runner none)")


def test_a_missing_guest_kernel_on_the_command_line_exits_non_zero(tmp_path: Path) -> None:
    finished = _invoke(["run", "--lesson", "4", "--set", "mine"], tmp_path, INVOKE_COURSE_GUEST_KERNEL="9.9-none")
    output = finished.stdout + finished.stderr
    assert finished.returncode == 1, output
    assert "FAILED 04-kernel-read: run kernel modules: the VM cannot start: no kernel 9.9-none" in output
    stored = store.read_json(tmp_path / "results" / "mine" / "04-kernel-read.json")
    assert stored["failures"][0]["message"].startswith("the VM cannot start: no kernel 9.9-none")
    assert stored["inputs_key"] == "", "the next run tries again"


# --- files and folders of the machine --------------------------------------------------------------------------


def _context(tmp_path: Path) -> MockContext:
    config = Config()
    config.load_collection(tasks.ns.configuration())
    config.course.results = str(tmp_path / "results")
    config.course.build = str(tmp_path / "build")
    return MockContext(config=config, run=Result())


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device"),
            "error: the disk is full writing {tmp}/results or {tmp}/build; free some space there",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/x/results/mine/03-timing.json"),
            "error: the disk is full writing /x/results/mine/03-timing.json; free some space there",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/x/results"),
            "error: permission denied on /x/results; give your user read and write access to it",
        ),
        (OSError(errno.EROFS, "Read-only file system", "/x/build"), "error: /x/build is on a read-only file system"),
    ],
)
def test_a_full_disk_or_a_forbidden_folder_is_one_line(tmp_path: Path, error: OSError, expected: str) -> None:
    @tasks._clear_errors
    def writing(c) -> None:
        raise error

    with pytest.raises(Exit) as stopped:
        writing(_context(tmp_path))
    assert stopped.value.code == 2
    assert str(stopped.value.message).startswith(expected.format(tmp=tmp_path))
    assert "\n" not in str(stopped.value.message)


def test_any_other_os_error_is_still_a_traceback(tmp_path: Path) -> None:
    @tasks._clear_errors
    def buggy(c) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/nowhere")

    with pytest.raises(FileNotFoundError):
        buggy(_context(tmp_path))


def test_a_results_folder_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "results").write_text("not a folder")
    finished = _invoke(["run", "--lesson", "4", "--set", "mine", "--kernel-runner", "none"], tmp_path)
    assert finished.returncode == 2, finished.stdout + finished.stderr
    (line,) = finished.stderr.strip().splitlines()
    assert line.startswith("error: ") and str(tmp_path / "results") in line, line


def test_export_into_a_folder_writes_the_archive_there(tmp_path: Path) -> None:
    layout = Layout(ROOT, results_dir=tmp_path / "results")
    shutil.copytree(ROOT / "results" / "qemu-icount-debian-6.1", layout.results / "qemu-icount-debian-6.1")
    (tmp_path / "out").mkdir()
    made = commands.export(layout, "qemu-icount-debian-6.1", str(tmp_path / "out"))
    assert made == tmp_path / "out" / "qemu-icount-debian-6.1.tar.gz" and made.is_file()


# --- the tasks that start other programs ----------------------------------------------------------------------


def test_invoke_test_never_passes_k_through_a_shell(tmp_path: Path, monkeypatch) -> None:
    ran: list = []

    def record(command, **options) -> subprocess.CompletedProcess:
        ran.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(tasks.subprocess, "run", record)
    expression = f"x' ; touch {tmp_path / 'pwned'} ; echo '"
    tasks.test(_context(tmp_path), fast=True, k=expression)
    assert all(isinstance(command, list) for command in ran)
    assert ran[-1][-2:] == ["-k", expression] and ran[-1][3:5] == ["-m", "not slow"]


def test_serve_watches_absolute_folders_from_anywhere(tmp_path: Path, monkeypatch) -> None:
    """As with ``invoke -r DIR serve``: the current folder is not the checkout."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    c = _context(tmp_path)
    tasks.serve(c, port=8123)
    command = c.run.call_args.args[0].split()
    watched = [command[i + 1] for i, arg in enumerate(command) if arg == "--watch"]
    assert watched == [str(tmp_path / "results"), str(ROOT / "course")]


# --- the site build: Sphinx's own words ------------------------------------------------------------------------


def test_a_failed_site_build_says_what_sphinx_said(tmp_path: Path) -> None:
    layout = Layout(ROOT, results_dir=tmp_path / "results", build_dir=tmp_path / "build")
    (layout.results / "broken").mkdir(parents=True)
    (layout.results / "broken" / "set.json").write_text('{"schema": 1, "kind": ')
    with pytest.raises(site.SiteError) as failed:
        site.build_site(layout, strict=False)
    message = str(failed.value)
    assert "set.json is corrupt" in message and "warnings above" not in message
    assert "\n" not in message


@pytest.mark.parametrize("jobs", ["0", "two", "-1", "1.5", "\u0663"])
def test_a_bad_sphinx_jobs_setting_is_one_line_naming_it(jobs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(site.JOBS_VARIABLE, jobs)
    with pytest.raises(site.SiteError, match=f"^{site.JOBS_VARIABLE}=.*: say a whole number above 0, or auto"):
        site.sphinx_command(Layout(ROOT))


def test_sphinx_jobs_is_every_cpu_unless_the_environment_says_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(site.JOBS_VARIABLE, raising=False)
    command = site.sphinx_command(Layout(ROOT))
    assert command[command.index("-j") + 1] == "auto", "a user's build reads and writes pages on every CPU"
    monkeypatch.setenv(site.JOBS_VARIABLE, " 3 ")
    command = site.sphinx_command(Layout(ROOT))
    assert command[command.index("-j") + 1] == "3"


def test_sphinx_reason_picks_the_cause() -> None:
    warnings = (
        "/c/lessons/03-timing.md:12: WARNING: no measurement '03-timing/x' [course.missing]\n"
        "/c/lessons/04-kernel-read.md:3: WARNING: another\n"
        "build finished with problems, 2 warnings (with warnings treated as errors).\n"
    )
    assert site.sphinx_reason(warnings) == (
        "/c/lessons/03-timing.md:12: WARNING: no measurement '03-timing/x' [course.missing] (and 1 more)"
    )
    assert site.sphinx_reason("").startswith("Sphinx printed nothing")


# --- a checkout (or build folder) whose path has a space -------------------------------------------------------


def test_kbuild_gets_a_plain_path_to_a_folder_with_a_space(tmp_path: Path) -> None:
    folder = tmp_path / "with space" / "tree"
    folder.mkdir(parents=True)
    (folder / "made.txt").write_text("kept")
    with kernel_build.make_safe(folder) as seen:
        assert kernel_build.PLAIN_PATH.fullmatch(str(seen)) and seen.resolve() == folder.resolve()
    assert not seen.exists() and (folder / "made.txt").read_text() == "kept", "only the link is removed"
    with kernel_build.make_safe(tmp_path) as same:
        assert same == tmp_path


@pytest.mark.slow
def test_modules_build_and_load_from_a_build_folder_with_a_space(measured_course) -> None:
    """Lesson 5 for real: a module built with Kbuild, one refused by the compiler, and a VM boot.

    The session's measured course (conftest.py) is measured in a folder whose name has a space: its
    lesson 5 is that run, in the one boot every lesson's modules share.
    """
    layout, set_path, reports = measured_course
    assert " " in str(layout.build) and " " in str(set_path), "results and build folders with a space"
    (report,) = [report for report in reports if report.lesson.number == 5]
    assert not report.cached and report.stored["kernel_run"]["runner"] == "vm", "built and loaded in a VM, now"
    assert report.failures == []
    assert "05-get-fs/kseg.log" in report.stored["captures"]
    assert "error:" in report.stored["captures"]["05-get-fs/oldstyle.build"]["text"]


# --- what the attacker's review found -------------------------------------------------------------------------


def test_a_lesson_number_that_is_not_a_number_is_one_line(tmp_path: Path) -> None:
    finished = _invoke(["build", "--lesson", "abc"], tmp_path)
    assert finished.returncode == 2, finished.stdout + finished.stderr
    assert finished.stderr.strip().splitlines() == ["error: lesson number must be a number (0-9), got 'abc'"]


def test_a_results_folder_that_is_a_file_is_said_so_on_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "results").write_text("not a folder")
    finished = _invoke(["results.list"], tmp_path)
    assert finished.returncode == 2, finished.stdout + finished.stderr
    (line,) = finished.stderr.strip().splitlines()
    assert line == (
        f"error: {tmp_path / 'results'} is not a folder; "
        "point INVOKE_COURSE_RESULTS (or course.results) at the results folder"
    )
    empty = _invoke(["results.list"], tmp_path, INVOKE_COURSE_RESULTS=str(tmp_path / "none"))
    assert empty.returncode == 0 and empty.stdout.startswith(f"no result sets in {tmp_path / 'none'}")


def test_a_fifo_named_set_json_is_refused_not_waited_for(tmp_path: Path) -> None:
    (tmp_path / "results" / "odd").mkdir(parents=True)
    os.mkfifo(tmp_path / "results" / "odd" / "set.json")
    finished = subprocess.run(  # it used to wait for a writer for ever
        [sys.executable, "-m", "invoke", "results.list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "INVOKE_COURSE_RESULTS": str(tmp_path / "results")},
    )
    assert finished.returncode == 2, finished.stdout + finished.stderr
    (line,) = finished.stderr.strip().splitlines()
    assert "odd/set.json cannot be read (not a regular file, but a FIFO" in line


def test_a_kvm_verdict_file_nested_too_deeply_is_probed_again(tmp_path: Path) -> None:
    verdicts = tmp_path / "kvm-verdict.json"
    verdicts.write_text("[" * 200_000 + "]" * 200_000)  # RecursionError in json.loads
    said: list[str] = []
    assert vm._remembered(verdicts, said.append) == {}
    assert len(said) == 1 and "is unreadable" in said[0] and "probing KVM again" in said[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--set", "x" * 300], "is 300 characters long; at most 100"),
        (["run", "--set", "..."], "has no letter or digit"),
        (["run", "--set", "é"], "has no letter or digit"),
        (["run", "--set", "_"], "has no letter or digit"),
        (["results.export", "--set", "reference-2000", "--output", "y" * 300 + ".tar.gz"], "307 bytes is too long"),
        (["lesson", "²"], "lesson number must be a number (0-9), got '²'"),
        (["build", "--lesson", "²"], "lesson number must be a number (0-9), got '²'"),
        (["run", "--lesson", "3,²"], "lesson numbers must be numbers"),
        (["lab", "--hosts", "pc", "--timeout", "0"], "--timeout must be a number of minutes above 0"),
        (["lab", "--hosts", "pc", "--timeout", "-1"], "--timeout must be a number of minutes above 0"),
        (["lab", "--hosts", "pc", "--timeout", "nan"], "--timeout must be a number of minutes above 0"),
        (["lab", "--hosts", "user@host:22:extra"], "is not HOST, HOST:PORT or an IPv6 address"),
        (["lab", "--hosts", "pc", "--parallel", "0"], "--parallel must be a whole number above 0"),
        (["lab", "--hosts", "pc", "--parallel", "two"], "--parallel must be a whole number above 0"),
    ],
)
def test_a_value_that_cannot_be_used_is_one_line_before_anything_runs(
    tmp_path: Path, args: list[str], message: str
) -> None:
    shutil.copytree(ROOT / "results" / "reference-2000", tmp_path / "results" / "reference-2000")
    done = _invoke(args, tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr
    assert not (tmp_path / "build" / "lab").exists() and sorted(os.listdir(tmp_path / "results")) == ["reference-2000"]


def test_a_fraction_of_a_minute_is_a_lab_timeout() -> None:
    assert tasks._minutes("0.5", "--timeout") == 0.5  # the lab gives each step 30 s
