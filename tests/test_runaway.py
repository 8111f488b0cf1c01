"""Programs that misbehave, and runs that are stopped or doubled: each is contained and recorded.

The programs are small C programs of a temporary lesson, compiled with the real compiler:
one floods its output, one prints bytes that are not UTF-8, one leaves a grandchild that
calls setsid() and holds the output pipe. Runs are stopped with SIGTERM and SIGHUP, and
started twice on one checkout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import alive, until

from course import pipeline
from course.kernel import vm
from course.measure import lesson_run, lessons, runners
from course.results import store
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]

GOOD = r"""#include <stdio.h>
int main(void) { printf("course: measure y unit=ticks samples=2\ncourse: hist y 7x2\n"); return 0; }
"""

# Prints LINES lines of 1 KiB (argv[1]), or forever without an argument.
FLOOD = r"""#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    static char line[1024];
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    long lines = argc > 1 ? atol(argv[1]) : -1;
    for (long i = 0; lines < 0 || i < lines; i++)
        fwrite(line, 1, sizeof line, stdout);
    return 0;
}
"""

# A student's printf of Latin-1 text: valid protocol lines around bytes that are not UTF-8.
LATIN1 = r"""#include <stdio.h>
int main(void) {
    printf("course: measure x unit=ticks samples=2\ncourse: hist x 5x2\n");
    printf("caf\xe9 au lait\n");
    return 0;
}
"""

# A child that calls setsid() and keeps stdout open, its pid in argv[1]; the parent then ends
# (argv[2] "exit") or hangs ("hang").
ESCAPER = r"""#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char tmp[4096];
    printf("course: measure x unit=ticks samples=2\ncourse: hist x 5x2\n");
    fflush(stdout);
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
    if (fork() == 0) {
        setsid();
        FILE *f = fopen(tmp, "w");
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
        rename(tmp, argv[1]);
        for (;;)
            pause();
    }
    while (access(argv[1], F_OK) != 0)
        usleep(1000);
    if (strcmp(argv[2], "hang") == 0)
        for (;;)
            pause();
    return 0;
}
"""


def _course(root: Path, programs: dict[str, str], toml: str) -> Layout:
    """A checkout with one lesson, ``01-mini``, holding ``programs`` (name -> C source)."""
    (root / "lessons").mkdir(parents=True)
    (root / "conf.py").write_text("")
    (root / "lessons" / "01-mini.md").write_text("# Mini\n")
    code = root / "code" / "user" / "01-mini"
    (code / "solutions").mkdir(parents=True)
    (root / "code" / "user" / "common").mkdir()
    (code / "lesson.toml").write_text(toml)
    for name, source in programs.items():
        (code / f"{name}.c").write_text(source)
    return Layout(root)


def _measure(layout: Layout) -> lesson_run.LessonReport:
    set_path = pipeline.open_set(layout)
    return pipeline.measure_lesson(layout, lessons.find(layout, 1), set_path, progress=lambda line: None)


@contextlib.contextmanager
def _at_most(seconds: int) -> Iterator[None]:
    """Fail, rather than hang, a test whose run waits for ever."""

    def expired(number: int, frame: object) -> None:
        raise TimeoutError(f"still waiting after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _boot_folders(folder: Path) -> list[Path]:
    """The scratch folders of the boots in ``folder``: a virtme-ng boot's (``run-*``, with its plan.json) or a guest
    from memory's (``ram-*``: every emulated kernel run boots one, tcg and tcg-icount)."""
    return [path for path in (*folder.glob("run-*"), *folder.glob("ram-*")) if path.is_dir()]


def _processes_under(folder: Path) -> list[str]:
    """Live processes whose command line names ``folder`` (a program built there, or its helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if str(folder) in command and alive(int(entry.name)):
                found.append(f"{entry.name} {command}")
    return found


def _kill_under(folder: Path, *pid_files: Path) -> None:
    """Clean up after a failing test: nothing it started may outlive it."""
    pids = [int(line.split()[0]) for line in _processes_under(folder)]
    pids += [int(path.read_text()) for path in pid_files if path.is_file()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class _Lines:
    """A child's output, read by a thread, so that waiting for a line has a deadline."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._thread = threading.Thread(target=lambda: self.lines.extend(process.stdout), daemon=True)  # type: ignore[arg-type]
        self._thread.start()

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in list(self.lines)):
                return
            time.sleep(0.1)
        pytest.fail(f"{text!r} never appeared in:\n{self.text()}")

    def text(self) -> str:
        self._thread.join(timeout=5)
        return "".join(self.lines)


def test_a_flood_is_stopped_and_recorded_as_a_failure_not_stored(tmp_path: Path) -> None:
    toml = '[[run]]\nprogram = "flood"\nargs = ["65536"]\n\n[[run]]\nprogram = "good"\n'
    layout = _course(tmp_path / "course", {"flood": FLOOD, "good": GOOD}, toml)
    report = _measure(layout)  # 64 MiB of output, and a well-behaved program beside it
    assert [(f["step"], f["what"]) for f in report.failures] == [("run", "flood (stdin=devnull)")]
    assert "was stopped (output limit: it printed more than" in report.failures[0]["message"]
    assert report.stored["measurements"]["01-mini/y"]["min"] == 7, "the other program still counts"
    stored = next(layout.results.glob("*/01-mini.json"))
    assert stored.stat().st_size < 200_000, "the flood is not stored"

    # A flood without end is stopped at the limit, long before its timeout.
    started = time.monotonic()
    binary = layout.build / "code" / "01-mini" / "flood"
    outcome = runners.run_on_host(binary, (), "devnull", layout.build / "scratch", 120)
    assert time.monotonic() - started < 30
    assert outcome.stopped == runners.FLOODED and outcome.exit_status is None and not outcome.ok
    assert len(outcome.stdout) == runners.OUTPUT_LIMIT_BYTES
    assert f"more than {runners.OUTPUT_LIMIT_BYTES} bytes" in outcome.stderr
    assert _processes_under(layout.root) == []


def test_output_that_is_not_utf8_fails_that_program_only_shown_escaped(tmp_path: Path) -> None:
    solution = 'int main(void) { puts("course: check e ok right"); puts("course: check f ok right"); }\n'
    programs = {
        "latin": LATIN1,
        "good": GOOD,
        "yours": r"#include <stdio.h>" + '\nint main(void) { printf("course: check e ok caf\\xe9\\n"); }\n',
        "stray": '#include <stdio.h>\nint main(void) { puts("course: check f"); puts("course: nonsense"); }\n',
        "solutions/yours": "#include <stdio.h>\n" + solution,
    }
    toml = (
        '[[run]]\nprogram = "latin"\n\n[[run]]\nprogram = "good"\n\n'
        '[[exercise]]\nname = "e"\nprogram = "yours"\nsolution = "solutions/yours"\n\n'
        '[[exercise]]\nname = "f"\nprogram = "stray"\nsolution = "solutions/yours"\n'
    )
    layout = _course(tmp_path / "course", programs, toml)
    report = _measure(layout)
    assert [(f["step"], f["what"]) for f in report.failures] == [("run", "latin (stdin=devnull)")]
    failure = report.failures[0]
    assert "printed bytes that are not UTF-8 (stdout, byte" in failure["message"]
    assert "caf\\xe9 au lait" in failure["log"], "the output is shown, escaped"
    assert "01-mini/x" not in report.stored["measurements"], "nothing is taken from a failed run"
    assert report.stored["measurements"]["01-mini/y"]["min"] == 7, "the run goes on"
    exercises = report.stored["exercises"]
    assert exercises["e"]["yours"]["status"] == "not yet" and "not UTF-8" in exercises["e"]["yours"]["detail"]
    assert exercises["f"]["yours"]["status"] == "not yet" and "does not parse" in exercises["f"]["yours"]["detail"]
    assert exercises["e"]["solution"]["status"] == exercises["f"]["solution"]["status"] == "works"


@pytest.mark.parametrize("parent", ["exit", "hang"])
def test_the_timeout_holds_against_a_child_that_calls_setsid(tmp_path: Path, parent: str) -> None:
    pid_file = tmp_path / "grandchild.pid"
    toml = f'[[run]]\nprogram = "escaper"\nargs = ["{pid_file}", "{parent}"]\ntimeout = 2\n'
    layout = _course(tmp_path / "course", {"escaper": ESCAPER}, toml)
    started = time.monotonic()
    try:
        with _at_most(60):
            report = _measure(layout)
        assert time.monotonic() - started < 20, "the run did not wait for the grandchild's pipe"
        grandchild = int(pid_file.read_text())
        assert not alive(grandchild), "the setsid() grandchild is killed"
        assert not Path(f"/proc/{grandchild}").exists(), "and reaped"
        assert _processes_under(layout.root) == []
        if parent == "exit":
            assert report.failures == [] and report.stored["measurements"]["01-mini/x"]["min"] == 5
        else:
            assert [f["step"] for f in report.failures] == ["run"]
            assert "was stopped (timeout)" in report.failures[0]["message"]
    finally:
        _kill_under(layout.root, pid_file)


def test_the_vm_console_is_capped_and_read_as_bytes() -> None:
    started = time.monotonic()
    flood = ["sh", "-c", "echo booting; head -c 64000000 /dev/zero | tr '\\0' x"]
    status, console = vm._run(flood, timeout=120, on_line=lambda line: None)
    assert status is None and "booting" in console
    assert f"stopped after printing more than {runners.OUTPUT_LIMIT_BYTES} bytes" in console
    assert len(console) < runners.OUTPUT_LIMIT_BYTES + 1000
    assert time.monotonic() - started < 30
    seen: list[str] = []
    status, console = vm._run(["sh", "-c", r"printf 'caf\351\r\ncourse-guest: ok\n'"], 30, seen.append)
    assert status == 0 and console == "caf\\xe9\ncourse-guest: ok\n" and seen == ["caf\\xe9", "course-guest: ok"]


def _checkout_copy(root: Path, programs: dict[str, str], toml: str) -> Layout:
    """A checkout of its own, with this course's code and tasks.py, so that `invoke` runs on its lesson."""
    layout = _course(root, programs, toml)
    shutil.copytree(ROOT / "course", root / "course", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "tasks.py", root / "tasks.py")
    return layout


def _invoke_in(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", *args],
        cwd=root,
        env={k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COURSE_")},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_a_run_as_ctrl_c_does(tmp_path: Path, number: signal.Signals) -> None:
    pid_file = tmp_path / "grandchild.pid"
    toml = f'[[run]]\nprogram = "escaper"\nargs = ["{pid_file}", "hang"]\n'
    layout = _checkout_copy(tmp_path / "course", {"escaper": ESCAPER}, toml)
    running = _invoke_in(layout.root, "run", "--lesson", "1")
    output = _Lines(running)
    try:
        output.wait_for("run    escaper")
        deadline = time.monotonic() + 30
        while not pid_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processes_under(layout.root), "the program and its grandchild are running"
        running.send_signal(number)
        assert running.wait(timeout=60) == 130, output.text()
        assert "interrupted: stored results are as they were" in output.text()
        assert not alive(int(pid_file.read_text())), "the setsid() grandchild is gone"
        assert _processes_under(layout.root) == [], "no program of this run is left"
        assert not list(layout.results.glob("*/01-mini.json")), "nothing half-measured was stored"
    finally:
        running.kill()
        _kill_under(layout.root, pid_file)


@pytest.mark.slow
def test_sigterm_during_the_vm_boot_leaves_no_vm_or_scratch(tmp_path: Path, seed_kvm_verdict, lesson_4_built) -> None:
    seed_kvm_verdict(tmp_path / "build")  # the run's own KVM probe is not what this test stops
    lesson_4_built(tmp_path / "build")  # nor its builds
    env = {
        **os.environ,
        "INVOKE_COURSE_RESULTS": str(tmp_path / "results"),
        "INVOKE_COURSE_BUILD": str(tmp_path / "build"),
    }
    running = subprocess.Popen(
        [sys.executable, "-m", "invoke", "run", "--lesson", "4"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    output = _Lines(running)
    try:
        output.wait_for("booting", timeout=300)
        _until_booted(tmp_path / "build" / "vm", timeout=60)  # its QEMU runs: stopped mid-boot, no sleep needed
        assert _boot_folders(tmp_path / "build" / "vm"), "the boot's scratch folder exists"
        assert _processes_under(tmp_path / "build" / "vm"), "the VM is running"
        running.send_signal(signal.SIGTERM)
        assert running.wait(timeout=60) == 130, output.text()
        assert until(lambda: _processes_under(tmp_path), 1) == [], "no VM or helper of this run is left"
        assert _boot_folders(tmp_path / "build" / "vm") == [], "its scratch folder is gone"
        assert not list((tmp_path / "results").glob("*/04-kernel-read.json")), "nothing half-measured was stored"
    finally:
        running.kill()
        _kill_under(tmp_path)


def _lock_holder(hold: str, folder: Path) -> subprocess.Popen:
    """Another process holding ``runlock.<hold>(folder)`` until a line arrives on its stdin; it prints "held"."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from course.results import runlock\n"
            f"with runlock.{hold}(Path({str(folder)!r}), 'the first run'):\n"
            "    print('held', flush=True); sys.stdin.readline()\n",
        ],
        cwd=ROOT,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def test_a_second_run_on_one_checkout_waits_for_the_first(tmp_path: Path) -> None:
    from course.results import runlock

    build = tmp_path / "build"
    holder = _lock_holder("hold", build)
    second: subprocess.Popen | None = None
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        refused = rf"another run of this checkout \(pid {holder.pid}: the first run, since .*\) still holds"
        with (
            pytest.raises(runlock.RunLockError, match=refused),
            runlock.hold(build, "a test", wait=0.5, progress=lambda line: None),
        ):
            pass

        second = subprocess.Popen(
            [sys.executable, "-m", "invoke", "build", "--lesson", "1"],
            cwd=ROOT,
            env={**os.environ, "INVOKE_COURSE_BUILD": str(build)},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        output = _Lines(second)
        output.wait_for(f"waiting for the other run of this checkout (pid {holder.pid}: the first run, since")
        time.sleep(1)
        assert second.poll() is None, "it waits"
        assert not (build / "code").exists(), "and builds nothing meanwhile"
        holder.communicate("go\n", timeout=30)  # the first run ends
        assert second.wait(timeout=120) == 0, output.text()
        assert "compiled" in output.text()
    finally:
        holder.kill()
        if second is not None:
            second.kill()

    # The lock is free again; and a holder that dies, however, frees it.
    killed = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from course.results import runlock; from pathlib import Path\n"
            f"with runlock.hold(Path({str(build)!r}), 'killed'):\n    print('held', flush=True); input()\n",
        ],
        cwd=ROOT,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert killed.stdout is not None and killed.stdout.readline() == "held\n"
    killed.kill()
    killed.wait()
    with runlock.hold(build, "a test", wait=5, progress=pytest.fail):
        pass


# --- what a program prints cannot stop a run ---------------------------------------------------------------

#: What each program prints after its ``course:`` lines were a traceback or stopped the whole run
#: (StoreError), and the failure it is now, of that program's parse step only.
BAD_LINES = {
    "samples0": ("course: measure a samples=0", "samples must be a whole number from 1 up to 2**63, not 0"),
    "samplesneg": ("course: measure a samples=-1\\ncourse: hist a 5x-1", "samples must be a whole number from 1"),
    "per0": ("course: measure a samples=1 per=0\\ncourse: hist a 5x1", "per must be a whole number from 1"),
    "perneg": ("course: measure a samples=1 per=-1\\ncourse: hist a 5x1", "per must be a whole number from 1"),
    "histneg": ("course: measure a samples=1\\ncourse: hist a -5x1", "a value (ticks) must be a whole number from 0"),
    "histhuge": (
        "course: measure a samples=1\\ncourse: hist a 99999999999999999999999999x1",
        "a value (ticks) must be a whole number from 0 up to 2**63, not 99999999999999999999999999",
    ),
    "countneg": ("course: measure a samples=1\\ncourse: hist a 5x-1", "a count must be a whole number from 1"),
    "hznan": ("course: meta tsc_hz=nan", "tsc_hz must be a rate in Hz (a number from 1 up to 2**63), not 'nan'"),
    "hzinf": ("course: meta tsc_hz=inf", "tsc_hz must be a rate in Hz"),
    "hzabc": ("course: meta tsc_hz=abc", "tsc_hz must be a rate in Hz"),
    "hzneg": ("course: meta tsc_hz=-1", "tsc_hz must be a rate in Hz"),
    # Well-formed, but its minimum lies below the stamp pair it subtracts: a negative figure.
    "below": (
        "course: measure base samples=1\\ncourse: hist base 10x1\\n"
        "course: measure a samples=1 subtract=base\\ncourse: hist a 5x1",
        "01-mini/a cannot be stored: it has 01-mini/a.min = -5.0, not a finite number >= 0",
    ),
}


def _printing(lines: str) -> str:
    return f'#include <stdio.h>\nint main(void) {{ printf("{lines}\\n"); return 0; }}\n'


def test_course_lines_a_program_cannot_use_fail_that_program_only(tmp_path: Path) -> None:
    programs = {name: _printing(lines) for name, (lines, _) in BAD_LINES.items()}
    programs["good"] = GOOD
    # A student's variant printing such a line: its exercise is "not yet", the run goes on.
    programs["yours"] = _printing("course: measure a samples=0\\ncourse: check e ok")
    programs["solutions/yours"] = _printing("course: check e ok right")
    toml = "".join(f'[[run]]\nprogram = "{name}"\n\n' for name in [*BAD_LINES, "good"])
    toml += '[[exercise]]\nname = "e"\nprogram = "yours"\nsolution = "solutions/yours"\n'
    layout = _course(tmp_path / "course", programs, toml)
    report = _measure(layout)
    by_program = {failure["what"].split(" ")[0]: failure for failure in report.failures}
    for name, (_, message) in BAD_LINES.items():
        failure = by_program["a" if name == "below" else name]
        assert failure["step"] == "parse" and message in failure["message"], (name, failure)
    assert len(report.failures) == len(BAD_LINES)
    assert report.stored["measurements"]["01-mini/y"]["min"] == 7, "the run goes on, and is stored"
    yours = report.stored["exercises"]["e"]["yours"]
    assert yours["status"] == "not yet" and "samples must be a whole number from 1" in yours["detail"]
    assert store.load_all(layout.results), "what was stored reads back"


def test_a_student_line_does_not_stop_invoke_run(tmp_path: Path) -> None:
    programs = {
        "good": GOOD,
        "yours": _printing("course: meta tsc_hz=nan\\ncourse: measure a samples=0\\ncourse: check e ok"),
        "solutions/yours": _printing("course: check e ok right"),
    }
    toml = '[[run]]\nprogram = "good"\n\n[[exercise]]\nname = "e"\nprogram = "yours"\nsolution = "solutions/yours"\n'
    layout = _checkout_copy(tmp_path / "course", programs, toml)
    running = _invoke_in(layout.root, "run", "--lesson", "1")
    output = running.communicate(timeout=240)[0]
    assert running.returncode == 0, output
    assert "Traceback" not in output and "not yet" in output


def test_a_lesson_file_stays_readable_whatever_its_programs_print(tmp_path: Path) -> None:
    # 3.9 MB of text, under the output limit, run with six kinds of stdin: a 23 MB file nothing could read.
    bigtext = r"""#include <stdio.h>
#include <string.h>
int main(void) {
    static char line[1001];
    memset(line, 'B', 1000);
    for (int i = 0; i < 3900; i++)
        printf("%s\n", line);
    printf("course: measure t samples=1\ncourse: hist t 5x1\n");
    return 0;
}
"""
    toml = '[[run]]\nprogram = "bigtext"\nstdin = ["tty", "file", "devnull", "pipe", "zero", "socket"]\n'
    layout = _course(tmp_path / "course", {"bigtext": bigtext}, toml)
    report = _measure(layout)
    assert report.failures == []
    stored = next(layout.results.glob("*/01-mini.json"))
    assert stored.stat().st_size < 2 * 1024 * 1024
    (loaded,) = store.load_all(layout.results).values()  # results.list, the site and export read it back
    capture = loaded.lessons["01-mini"]["captures"]["01-mini/bigtext.tty.output"]["text"]
    assert len(capture) < store.CAPTURE_CHARS + 200 and capture.endswith("a capture keeps 65,536]")


def test_two_runs_sharing_a_results_folder_wait_for_each_other(tmp_path: Path) -> None:
    from course.results import runlock

    results = tmp_path / "results"
    holder = _lock_holder("hold_results", results)
    second: subprocess.Popen | None = None
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with (
            pytest.raises(runlock.RunLockError, match=r"another run writing the results in .* still holds them"),
            runlock.hold_results(results, "a test", wait=0.5, progress=lambda line: None),
        ):
            pass
        # A build folder of its own: the build folder's lock alone let both runs write the same results.
        second = subprocess.Popen(
            [sys.executable, "-m", "invoke", "build", "--lesson", "1"],
            cwd=ROOT,
            env={**os.environ, "INVOKE_COURSE_BUILD": str(tmp_path / "build"), "INVOKE_COURSE_RESULTS": str(results)},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        output = _Lines(second)
        output.wait_for(f"waiting for another run writing the results in {results}")
        time.sleep(1)
        assert second.poll() is None, "it waits"
        holder.communicate("go\n", timeout=30)
        assert second.wait(timeout=120) == 0, output.text()
        assert list(results.iterdir()) == [], "the lock adds no file to the results folder"
    finally:
        holder.kill()
        if second is not None:
            second.kill()


def _invoke_run(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "INVOKE_COURSE_RESULTS": str(tmp_path / "results"),
        "INVOKE_COURSE_BUILD": str(tmp_path / "build"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", "run", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def _until_booted(folder: Path, plans: int = 1, timeout: float = 600) -> None:
    """Until ``plans`` boots have their plan in ``folder`` and QEMU runs for each."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        qemus = [line for line in _processes_under(folder) if "qemu-system" in line]
        if len(_boot_folders(folder)) >= plans and len(qemus) >= plans:
            return
        time.sleep(0.5)
    pytest.fail(f"no {plans} boots in {folder}")


@pytest.mark.slow
def test_sigterm_during_a_kernel_matrix_leaves_no_vm_and_no_run_folder(tmp_path: Path, lesson_4_built) -> None:
    lesson_4_built(tmp_path / "build")  # the builds before the boots are not what this test stops
    running = _invoke_run(tmp_path, "--guest-kernels", "6.1,6.12", "--acceleration", "tcg-icount", "--lesson", "4")
    output = _Lines(running)
    try:
        _until_booted(tmp_path / "build" / "vm", plans=2)
        running.send_signal(signal.SIGTERM)
        assert running.wait(timeout=120) == 130, output.text()
        assert _processes_under(tmp_path) == [], "no VM or helper of this run is left"
        assert _boot_folders(tmp_path / "build" / "vm") == [], "no boot's folder is left"
        assert not list((tmp_path / "results").glob("*/04-kernel-read.json")), "nothing half-measured was stored"
    finally:
        running.kill()
        _kill_under(tmp_path)


@pytest.mark.slow
def test_qemu_dies_with_a_run_killed_by_sigkill(tmp_path: Path, lesson_4_built) -> None:
    lesson_4_built(tmp_path / "build")  # the builds before the boot are not what this test kills
    running = _invoke_run(tmp_path, "--lesson", "4", "--acceleration", "tcg-icount")
    output = _Lines(running)
    try:
        _until_booted(tmp_path / "build" / "vm")
        running.kill()  # SIGKILL: no clean-up of its own runs
        running.wait(timeout=30)
        deadline = time.monotonic() + 20
        while _processes_under(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_under(tmp_path) == [], output.text()
        (stale,) = _boot_folders(tmp_path / "build" / "vm")  # left: the next run removes it (below)
        prefix = stale.name.split("-", 1)[0] + "-"  # run- (virtme-ng) or ram- (the guest from memory)
        assert vm.remove_stale_runs(tmp_path / "build" / "vm", prefix) == [stale]
    finally:
        running.kill()
        _kill_under(tmp_path)


def test_the_next_boot_removes_the_folders_of_runs_that_died(tmp_path: Path, monkeypatch) -> None:
    layout = Layout(ROOT, results_dir=tmp_path / "results", build_dir=tmp_path / "build")
    dead = layout.build / "vm" / "run-4194305-abcd"  # above pid_max: never a live process
    mine = layout.build / "vm" / f"run-{os.getpid()}-efgh"  # a boot of this process, side by side
    for folder in (dead, mine):
        (folder / "results").mkdir(parents=True)
        (folder / "plan.json").write_text("{}")
    seen: list[Path] = []
    monkeypatch.setattr(vm, "_boot", lambda *args, **_: seen.append(args[-1]))
    vm.run_jobs(layout, None, [], "tcg-icount", print)  # type: ignore[arg-type]
    assert not dead.exists() and mine.is_dir()
    assert seen[0].name.startswith(f"run-{os.getpid()}-") and not seen[0].exists()
