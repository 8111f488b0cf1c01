"""``invoke vm --lesson N``: a shell in the disposable guest, driven here through a pseudo-terminal."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import alive, gone_within

from course.kernel import kernel_build, vm_shell
from course.kernel.kernel_build import GuestKernel
from course.measure import lessons
from course.results.layout import Layout

INVOKE = [sys.executable, "-m", "invoke"]


class Terminal:
    """A child on a pseudo-terminal, read until a text shows up (a tiny pexpect with the stdlib)."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the terminal is its standard input, output and error
            os.chdir(cwd)
            os.execvpe(command[0], command, env)
        self.seen = b""

    def expect(self, text: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        start = len(self.seen)
        while text not in self.seen[start:]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not seen in {timeout:.0f} s; the terminal showed:\n{self.tail()}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # the child ended: the terminal is closed
                    data = b""
                if not data:
                    raise AssertionError(f"the terminal closed before {text!r}; it showed:\n{self.tail()}")
                self.seen += data
        return self.seen[start:]

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if select.select([self.fd], [], [], 0.5)[0]:
                    self.seen += os.read(self.fd, 65536)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        return None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)

    def tail(self) -> str:
        return self.seen[-3000:].decode("utf-8", "replace")


def _descendants(root: int) -> set[int]:
    """Every process below ``root`` now (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found.add(child)
                todo.append(child)
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_without_a_terminal_it_refuses_in_one_line(course_root: Path, tmp_path: Path) -> None:
    finished = subprocess.run(
        [*INVOKE, "vm", "--lesson", "4"],
        cwd=course_root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "INVOKE_COURSE_BUILD": str(tmp_path / "build")},
        timeout=60,
    )
    assert finished.returncode == 2
    said = (finished.stdout + finished.stderr).strip().splitlines()
    assert said == [
        "error: invoke vm opens a shell in the guest and needs a terminal (standard input is not one); "
        "run it in an interactive terminal"
    ]
    assert not (tmp_path / "build").exists(), "nothing was built before the refusal"


def test_a_lesson_without_modules_is_refused_naming_those_with_them(course_root: Path, tmp_path: Path) -> None:
    layout = Layout(course_root, build_dir=tmp_path / "build")
    with pytest.raises(vm_shell.ShellError, match=r"lesson 3 has no module .* the lessons with modules are 4, 5, 6"):
        vm_shell.prepare(layout, 3, "", progress=lambda line: None)


@pytest.fixture(scope="module")
def shell_build(tmp_path_factory: pytest.TempPathFactory, lesson_4_built: Callable[[Path], None]) -> Path:
    """One build folder for this module's boots, with lesson 4's module, its programs and the kernel without its
    decompressor made once per run (each boot still has its own run folder, checked to be gone after it)."""
    build = tmp_path_factory.mktemp("vm-shell") / "build"
    lesson_4_built(build)
    return build


@pytest.mark.slow
def test_insmod_dmesg_and_exit_by_hand_leave_nothing_running(course_root: Path, shell_build: Path) -> None:
    """The issue's check: drive ``invoke vm --lesson 4`` through a pty, load the module, read its line, leave."""
    build = shell_build
    env = {**os.environ, "INVOKE_COURSE_BUILD": str(build), "TERM": "dumb"}
    terminal = Terminal([*INVOKE, "vm", "--lesson", "4"], course_root, env)
    qemu: set[int] = set()
    try:
        guide = terminal.expect(b"Leave the shell", timeout=120).decode()
        assert "insmod " in guide and "ksystime.ko samples=200" in guide and "dmesg" in guide and "rmmod" in guide
        assert "03-timing/usystime" in guide, "the lesson's programs, with where they are"
        release = re.search(r"kernel (\S+), software emulation", guide)
        assert release, guide
        # The course's start-up ran: its prompt names the guest's kernel and the lesson.
        terminal.expect(f"guest {release[1]} lesson 4 # ".encode(), timeout=240)
        terminal.send("echo READY$((40+2))")
        terminal.expect(b"READY42", timeout=120)
        qemu = {pid for pid in _descendants(terminal.pid) if _comm(pid).startswith("qemu")}
        assert qemu, "the guest is a QEMU below invoke"
        # Nothing of the host user's: bash read neither ~/.profile nor ~/.bashrc, so no PATH of theirs (root's
        # ~/.bashrc here puts pyenv's and cargo's folders under /root first), and it starts in the lesson's folder.
        terminal.send("echo \"SHELL$((6*7))=[$(tr '\\0' ' ' < /proc/$$/cmdline)] PATH=[$PATH] PWD=[$PWD] END$((2+3))\"")
        said = terminal.expect(b"END5", timeout=60)
        found = re.search(rb"SHELL42=\[(.*?)\] PATH=\[(.*?)\] PWD=\[(.*?)\]", said)
        assert found, terminal.tail()
        shell, path, folder = (part.decode() for part in found.groups())
        assert shell.startswith("bash --noprofile --rcfile ") and shell.endswith(" -i "), shell
        assert str(Path.home()) not in path.split(":") and f"{Path.home()}/" not in path, path
        assert folder == f"{build}/kernel/{release[1]}/04-kernel-read"
        terminal.send("insmod ./ksystime.ko samples=200 < /dev/null; echo LOADED$((1+1))")
        terminal.expect(b"LOADED2", timeout=240)
        terminal.send("dmesg | grep -c 'course: meta done=1' | sed 's/^/DONE=/'")
        terminal.expect(b"DONE=1", timeout=60)
        terminal.send("exit")
        status = terminal.wait(timeout=120)
        assert status == 0, terminal.tail()
        assert b"the guest powered off" in terminal.seen
    finally:
        terminal.kill()
    assert not [pid for pid in qemu if alive(pid)], "no QEMU left running"
    assert not [path for path in (build / "vm").glob("run-*")], "no run folder left behind"


@pytest.mark.slow
@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_signal_during_the_boot_kills_the_guest_and_sigterm_gives_the_terminal_back(
    course_root: Path, shell_build: Path, sent: signal.Signals
) -> None:
    env = {**os.environ, "INVOKE_COURSE_BUILD": str(shell_build), "TERM": "dumb"}
    terminal = Terminal([*INVOKE, "vm", "--lesson", "4"], course_root, env)
    qemu: set[int] = set()
    try:
        terminal.expect(b"Leave the shell", timeout=120)
        deadline = time.monotonic() + 60
        while not qemu and time.monotonic() < deadline:
            qemu = {pid for pid in _descendants(terminal.pid) if _comm(pid).startswith("qemu")}
            time.sleep(0.5)
        assert qemu, "the guest was booting"
        os.kill(terminal.pid, sent)
        status = terminal.wait(timeout=60)
        assert status is not None and status != 0, "invoke ended, reporting the interruption"
    finally:
        terminal.kill()
    if sent == signal.SIGKILL:  # nothing of invoke runs: the guard below it ends the guest (its next run, the folder)
        assert all(gone_within(pid, 30) for pid in qemu), "no QEMU left running"
        return
    assert not [pid for pid in qemu if alive(pid)], "no QEMU left running"
    assert not [path for path in (shell_build / "vm").glob("run-*")], "no run folder left behind"


def test_the_guide_and_the_acceleration_line_say_it_in_words(course_root: Path) -> None:
    """No bare "tcg: asked for", and no promise of a boot time that a busy machine does not keep."""
    assert (
        vm_shell.acceleration_line("tcg", "asked for", "tcg")
        == "software emulation (TCG), as asked by --acceleration tcg"
    )
    probed = vm_shell.acceleration_line(
        "tcg", "software emulation: a probe boot under KVM hung (no answer in 45 s)", "auto"
    )
    assert probed == "software emulation (TCG): a probe boot under KVM hung (no answer in 45 s)"
    kernel = GuestKernel("6.1.0-57-amd64", Path("/boot/x"), Path("/usr/src/x"), Path("/lib/modules/x"))
    ko = Path("/b/kernel/6.1.0-57-amd64/04-kernel-read/ksystime.ko")
    prepared = vm_shell.Prepared(lessons.find(Layout(course_root), 4), kernel, [("ksystime", ko, ())], {}, [])
    said = vm_shell.guide(prepared, "tcg")
    assert "kernel 6.1.0-57-amd64, software emulation (TCG)." in said
    assert "half a minute" not in said and "busier machine" in said, "what the boot's time depends on"
    assert "start-up files (~/.bashrc, ~/.profile, ~/.inputrc) are not read" in said, "the course's shell"
    assert f"It starts in {ko.parent}." in said
    assert "KVM takes seconds" in vm_shell.guide(prepared, "kvm")


def test_the_guest_shell_reads_the_course_start_up_and_nothing_of_the_user(course_root: Path, tmp_path: Path) -> None:
    """The script vng's --shell runs, run here with a HOME whose start-up files would say so if read.

    The kernel's release and the lesson's folder come from outside: each stays one word, never a command."""
    home = tmp_path / "home"
    home.mkdir()
    for name in (".bashrc", ".profile", ".bash_profile"):
        (home / name).write_text(f"echo USER-RC-RAN {name}\n")
    (home / ".bash_history").write_text("echo FROM-USER-HISTORY\n")
    folder = tmp_path / "kernel" / "it's $(touch pwned) `touch pwned` \\w" / "04-kernel-read"
    folder.mkdir(parents=True)
    release = "6.1.0-57-amd64$(touch pwned)\\w"
    kernel = GuestKernel(release, Path("/boot/x"), Path("/usr/src/x"), Path("/lib/modules/x"))
    prepared = vm_shell.Prepared(
        lessons.find(Layout(course_root), 4), kernel, [("ksystime", folder / "ksystime.ko", ())], {}, []
    )
    layout = Layout(course_root, build_dir=tmp_path / "build")
    with vm_shell.shell_folder(layout, prepared) as script:
        assert vm_shell.shell_command(prepared, "tcg", script)[-2:] == ["--shell", str(script)]
        ran = subprocess.run(
            [str(script)],
            input='printf "PROMPT=[%s] PWD=[%s]\\n" "${PS1@P}" "$PWD"; history; exit\n',
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={"PATH": os.environ["PATH"], "HOME": str(home), "TERM": "dumb"},
            timeout=30,
        )
        folders = list((tmp_path / "build" / "vm").glob("run-*"))
        assert folders == [script.parent]
    assert not list((tmp_path / "build" / "vm").glob("run-*")), "the session's folder is removed"
    said = ran.stdout + ran.stderr
    assert "USER-RC-RAN" not in said and "FROM-USER-HISTORY" not in said, said
    sign = "#" if os.geteuid() == 0 else "$"
    assert f"PROMPT=[guest {release} lesson 4 {sign} ] PWD=[{folder}]" in said, said
    assert not list(tmp_path.rglob("pwned")), "no word from outside ran as a command"
    assert (home / ".bash_history").read_text() == "echo FROM-USER-HISTORY\n", "the user's history is not written"
    # vng hands the script's path to a shell and to the guest kernel's command line: never a path with a space.
    with vm_shell.shell_folder(Layout(course_root, build_dir=tmp_path / "my build"), prepared) as script:
        assert kernel_build.PLAIN_PATH.fullmatch(str(script)) and script.parent.name.startswith("course-vm-run-")
        assert os.access(script, os.X_OK)
    assert not script.parent.exists()


def test_no_other_user_can_write_the_guest_shells_files_whatever_the_umask(course_root: Path, tmp_path: Path) -> None:
    """The start-up file runs in the guest as the shell's user: under a umask of 0 another local user could add
    commands to it (the folder may lie in /tmp) between its writing and the guest's reading it."""
    kernel = GuestKernel("6.1.0-57-amd64", Path("/boot/x"), Path("/usr/src/x"), Path("/lib/modules/x"))
    ko = tmp_path / "04-kernel-read" / "ksystime.ko"
    prepared = vm_shell.Prepared(lessons.find(Layout(course_root), 4), kernel, [("ksystime", ko, ())], {}, [])
    before = os.umask(0)
    try:
        with vm_shell.shell_folder(Layout(course_root, build_dir=tmp_path / "build"), prepared) as script:
            modes = {path.name: path.stat().st_mode & 0o777 for path in [script.parent, *script.parent.iterdir()]}
    finally:
        os.umask(before)
    assert all(mode & 0o022 == 0 for mode in modes.values()), modes
    assert set(modes) == {script.parent.name, "shell", "shellrc"}, modes
