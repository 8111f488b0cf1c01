"""Running a compiled program on this machine, with standard input from a chosen kind of file.

The kinds are those of the article's Figure 2 and a few more: a terminal (a pseudo-terminal
this module opens, so it works without one), a disk file, ``/dev/null``, ``/dev/zero``, a
pipe and a socket (one end of a connected pair).

A program runs in a session of its own, with this process as its child subreaper (Linux), so
that everything it starts, even a grandchild that calls ``setsid()``, is found and killed when
it ends, runs too long or prints too much. Its output is read as bytes, at most
:data:`OUTPUT_LIMIT_BYTES`, and decoded afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from course.results.child import die_with_parent

#: The most a program may print, standard output and error together (and the most a VM boot's
#: console may print), before it is stopped: the course's programs print a few KiB, and a
#: flood must fill neither this process's memory nor a result file.
OUTPUT_LIMIT_BYTES = 4 * 1024 * 1024

#: How long the pipes of a program that has ended are still read once what it left running is
#: killed (they close at once unless something escaped the kill).
DRAIN_SECONDS = 2.0

#: Signals that stop a task as Ctrl-C does (see :func:`course.measure.threads.termination_as_interrupt`).
TERMINATION = (signal.SIGTERM, signal.SIGHUP)

#: A repeat of a termination signal this soon after the first is ignored: it must not cut the
#: first one's clean-up short (killing programs, removing scratch folders).
CLEANUP_GRACE_SECONDS = 10.0

#: Why a run was stopped (``RunOutcome.stopped``).
TIMED_OUT = "timeout"
FLOODED = "output limit"

_CHUNK = 65536
_POLL_SECONDS = 0.05  # only where a pidfd cannot tell when the child ends
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class RunOutcome:
    """What one run printed and how it ended."""

    command: str
    stdin: str
    exit_status: int | None  # None when it was stopped (running too long, or printing too much)
    stdout: str  # bytes that are not UTF-8 are shown escaped (\xff)
    stderr: str
    seconds: float
    stopped: str = ""  # TIMED_OUT or FLOODED when it was stopped
    not_utf8: str = ""  # where its output stops being UTF-8, when it does

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.stopped and not self.not_utf8

    @property
    def ended(self) -> str:
        """How the run ended, for a failure's message: ``was stopped (timeout)``, ``exited with 1``..."""
        if self.stopped == FLOODED:
            return f"was stopped (output limit: it printed more than {OUTPUT_LIMIT_BYTES} bytes)"
        if self.stopped:
            return f"was stopped ({self.stopped})"
        if self.exit_status != 0:
            return f"exited with {self.exit_status}"
        if self.not_utf8:
            return f"printed bytes that are not UTF-8 ({self.not_utf8})"
        return "exited with 0"


@contextlib.contextmanager
def stdin_of_kind(kind: str, scratch: Path) -> Iterator[int]:
    """A file descriptor to give a program as standard input, and its clean-up."""
    keep: list[int] = []
    try:
        if kind == "devnull":
            fd = os.open(os.devnull, os.O_RDONLY)
        elif kind == "file":
            scratch.mkdir(parents=True, exist_ok=True)
            path = scratch / "stdin.txt"
            # 8.6 KiB: enough for lesson 7's reads of up to 4 KiB.
            path.write_text("A small disk file, read as standard input.\n" * 200)
            fd = os.open(path, os.O_RDONLY)
        elif kind == "pipe":
            # The write end stays open and empty, so a read never sees end-of-file early.
            fd, writer = os.pipe()
            keep.append(writer)
        elif kind == "tty":
            master, fd = os.openpty()
            keep.append(master)
        elif kind == "zero":
            fd = os.open("/dev/zero", os.O_RDONLY)
        elif kind == "socket":
            # The other end stays open and silent, like the pipe's writer.
            ours, theirs = socket.socketpair()
            fd = theirs.detach()
            keep.append(ours.detach())
        else:
            raise ValueError(f"unknown kind of standard input {kind!r}")
        keep.append(fd)
        yield fd
    finally:
        for descriptor in keep:
            os.close(descriptor)


#: How each kind of standard input is written in a recorded command.
STDIN_SHOWN = {
    "devnull": "< /dev/null",
    "file": "< stdin.txt",
    "pipe": "< (empty pipe)",
    "tty": "< (pseudo-terminal)",
    "zero": "< /dev/zero",
    "socket": "< (socket pair)",
}


@functools.cache
def become_subreaper() -> bool:
    """Make orphans of our children ours, not init's, so a grandchild that calls setsid() stays findable.

    Linux only, set once for this process; afterwards anything our children leave behind is
    reparented here (and reaped by :meth:`OwnedProcess.stop_all`).
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), 0, 0, 0) == 0


def _process_table() -> dict[int, tuple[str, int, int]]:
    """Every process: pid -> (state, parent pid, session id), from ``/proc/*/stat``."""
    table: dict[int, tuple[str, int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                line = stat.read()
        except OSError:
            continue  # it ended meanwhile
        # The command name is in parentheses and may hold anything: the fields follow the last ')'.
        state, parent, _group, session = line[line.rfind(b")") + 2 :].split()[:4]
        table[int(entry.name)] = (state.decode(), int(parent), int(session))
    return table


def _children_of(pid: int) -> frozenset[int]:
    return frozenset(child for child, (_, parent, _) in _process_table().items() if parent == pid)


class OwnedProcess(subprocess.Popen):
    """A child in a session of its own; :meth:`stop_all` kills it and everything it started.

    Any child of this process that appears while it runs counts as its orphan, unless it is
    another owned process, or sits in the session of one that is still running: the VM boots of
    a kernel matrix run side by side (threads), and one boot's end must not kill another's QEMU.
    """

    #: Owned processes not yet stopped, by pid (their session's id too); guarded by ``_registry``.
    _live: ClassVar[set[int]] = set()
    _registry: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, command: list[str], **popen: object) -> None:
        become_subreaper()
        # Held while it forks, so that another process's stop_all never sees it unregistered.
        with OwnedProcess._registry:
            # Children of ours from before it started are not its to kill; later ones are its orphans.
            self.others = _children_of(os.getpid())
            super().__init__(command, start_new_session=True, **popen)  # type: ignore[call-overload]
            OwnedProcess._live.add(self.pid)

    def stop_all(self) -> None:
        """Kill this child and every process it started, wherever they went, and reap them.

        Repeated until none is left: a process killed before its own child leaves that child
        to us (the subreaper), and the next pass finds it.
        """
        me, my_session = os.getpid(), os.getsid(0)
        for _ in range(100):
            with OwnedProcess._registry:
                running = OwnedProcess._live - {self.pid}
                table = _process_table()
                # Once reaped, its pid may be another process's: only its session and orphans lead on.
                roots = {self.pid} if self.returncode is None else set()
                # An orphan handed to us left its session (setsid), so it is in neither ours nor a live boot's:
                # a child of ours in our own session is another thread's (objcopy beside a matrix's boot).
                roots |= {
                    pid
                    for pid, (_, parent, session) in table.items()
                    if parent == me
                    and pid not in self.others
                    and pid not in running
                    and session not in running
                    and session != my_session
                }
                # Without a subreaper an orphan goes to init; those that kept its session are still found.
                roots |= {pid for pid, (_, _, session) in table.items() if session == self.pid}
                found = _with_descendants(table, roots) - {me}
                for pid in found:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            for pid in found - {self.pid}:
                if table[pid][1] == me:  # an orphan handed to us: reap it (it dies of the SIGKILL above)
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, 0)
            if all(table[pid][0] in "ZX" for pid in found):
                break
        self.wait()
        with OwnedProcess._registry:
            OwnedProcess._live.discard(self.pid)


def kill_owned() -> None:
    """Kill every owned process still running, whole sessions: Ctrl-C during boots run side by side.

    Each one's own thread then sees it end and cleans up as usual (:meth:`OwnedProcess.stop_all`).
    """
    with OwnedProcess._registry:
        running = set(OwnedProcess._live)
    for pid in running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _with_descendants(table: dict[int, tuple[str, int, int]], roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), [pid for pid in roots if pid in table]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


#: Signals held back while a child is created (see owned_process).
_HELD = {signal.SIGINT, *TERMINATION}


@contextlib.contextmanager
def owned_process(
    command: list[str], guarded: bool = False, then: Callable[[], None] | None = None, **popen: object
) -> Iterator[OwnedProcess]:
    """A child in a session of its own, killed with everything it started when the block is left.

    Ctrl-C (and SIGTERM, SIGHUP) are held back while the child is created: an interruption
    between the fork and the moment the caller holds the process would leave it running,
    unseen. The child itself starts with the signal mask this process had before.

    Should this process die without leaving the block (SIGKILL), the child is killed too
    (``PR_SET_PDEATHSIG``); with ``guarded`` it runs under :mod:`course.measure.guard`, which then
    kills every process below it as well (a VM boot: QEMU is a grandchild). ``then`` runs in the
    child last, just before the exec (grading's confinement of a job: its namespace, then its uid).
    """
    parent = os.getpid()
    if guarded:
        command = [sys.executable, "-I", str(Path(__file__).with_name("guard.py")), *command]
    death = signal.SIGTERM if guarded else signal.SIGKILL

    def prepare() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if sys.platform.startswith("linux"):
            die_with_parent(parent, death)
        if then is not None:
            then()

    held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    process: OwnedProcess | None = None
    try:
        process = OwnedProcess(command, preexec_fn=prepare, **popen)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a pending Ctrl-C is raised here, inside the try
        yield process
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if process is not None:
            process.stop_all()  # also what it left running after it ended


@dataclass(frozen=True)
class Output:
    """What a process printed on each of its pipes (stdout, then stderr), and why it was stopped."""

    streams: tuple[bytes, ...]
    stopped: str = ""  # TIMED_OUT or FLOODED; "" when it ended by itself


def read_output(
    process: OwnedProcess,
    timeout: float,
    limit: int = OUTPUT_LIMIT_BYTES,
    on_data: Callable[[int, bytes], None] | None = None,
) -> Output:
    """Read ``process``'s pipes until it ends, ``timeout`` seconds pass or it prints over ``limit`` bytes.

    When it ends, whatever it left running is killed, so a grandchild holding a pipe open
    cannot keep the run waiting; on a timeout or a flood everything is killed and reading
    stops. ``on_data`` sees each chunk as it arrives, with the index of its pipe.
    """
    pipes = [pipe for pipe in (process.stdout, process.stderr) if pipe is not None]
    received = [bytearray() for _ in pipes]
    total, stopped = 0, ""
    deadline = time.monotonic() + timeout
    ended_at: float | None = None
    exit_fd = _pidfd(process.pid)  # readable once it ends: no polling while a measurement runs
    with selectors.DefaultSelector() as selector:
        for index, pipe in enumerate(pipes):
            selector.register(pipe.fileno(), selectors.EVENT_READ, index)
        if exit_fd is not None:
            selector.register(exit_fd, selectors.EVENT_READ, -1)
        try:
            while not stopped:
                now = time.monotonic()
                if ended_at is None and process.poll() is not None:
                    process.stop_all()  # what it left running would hold the pipes open
                    ended_at = now
                reading = [key for key in selector.get_map().values() if key.data >= 0]
                if ended_at is not None and (not reading or now >= ended_at + DRAIN_SECONDS):
                    break
                if ended_at is None and now >= deadline:
                    stopped = TIMED_OUT
                    break
                wait = (deadline if ended_at is None else ended_at + DRAIN_SECONDS) - now
                if exit_fd is None and ended_at is None:
                    wait = min(wait, _POLL_SECONDS)
                for key, _ in selector.select(max(wait, 0)):
                    if key.data < 0:  # the process ended: the next pass sees it
                        selector.unregister(key.fd)
                        continue
                    data = os.read(key.fd, _CHUNK)
                    if not data:
                        selector.unregister(key.fd)
                        continue
                    kept = data[: max(limit - total, 0)]
                    total += len(data)
                    received[key.data] += kept
                    if on_data is not None and kept:
                        on_data(key.data, kept)
                    if total > limit:
                        stopped = FLOODED
                        break
        finally:
            if exit_fd is not None:
                os.close(exit_fd)
    if stopped:
        process.stop_all()
    return Output(tuple(bytes(stream) for stream in received), stopped)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux 5.3+: poll instead
        return None


def decode(data: bytes, name: str) -> tuple[str, str]:
    """``data`` as text (newlines as text mode reads them), and where it is not UTF-8 ("" if it is).

    Bytes that are not UTF-8 are shown escaped (``\\xff``) rather than refused: the output is
    still what a failure's log shows.
    """
    problem = ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        text = data.decode("utf-8", "backslashreplace")
        problem = f"{name}, byte {error.start}: {data[max(error.start - 20, 0) : error.start + 20]!r}"
    return text.replace("\r\n", "\n").replace("\r", "\n"), problem


@contextlib.contextmanager
def files_of_kinds(kinds: tuple[str, ...], scratch: Path) -> Iterator[dict[str, int]]:
    """One open descriptor per kind of file, for a program that times them side by side."""
    with contextlib.ExitStack() as stack:
        yield {kind: stack.enter_context(stdin_of_kind(kind, scratch)) for kind in kinds}


def files_environment(opened: dict[str, int]) -> dict[str, str] | None:
    """The environment that tells a program which descriptor is which kind (read by stamp.h)."""
    if not opened:
        return None  # the program inherits ours unchanged
    return {**os.environ, "COURSE_FILES": " ".join(f"{kind}={fd}" for kind, fd in opened.items())}


def stop_note(stopped: str, timeout: float) -> str:
    """The line added to a stopped run's output, saying why it ends there."""
    if stopped == FLOODED:
        return f"stopped after printing more than {OUTPUT_LIMIT_BYTES} bytes (the limit)"
    return f"stopped after {timeout:.0f} s without finishing"


def run_on_host(
    binary: Path,
    args: tuple[str, ...],
    stdin: str,
    scratch: Path,
    timeout: float,
    shown_as: str = "",
    files: tuple[str, ...] = (),
    then: Callable[[], None] | None = None,
) -> RunOutcome:
    """Run ``binary`` here and capture what it prints; stop it after ``timeout`` seconds or a flood.

    ``shown_as`` is how the binary is named in the recorded command (a path relative to the
    checkout reads better on a page than this machine's absolute path). ``files`` are kinds of
    file opened for the program beside its standard input (see ``files_environment``). ``then`` runs in
    the child just before the exec (see :func:`owned_process`).
    """
    command = [str(binary), *args]
    shown = f"{shlex.join([shown_as or str(binary), *args])} {STDIN_SHOWN[stdin]}"
    if files:
        shown += f" (files open: {', '.join(files)})"
    started = time.monotonic()
    with (
        stdin_of_kind(stdin, scratch) as fd,
        files_of_kinds(files, scratch) as opened,
        owned_process(
            command,
            stdin=fd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=tuple(opened.values()),
            env=files_environment(opened),
            then=then,
        ) as process,
    ):
        output = read_output(process, timeout)
        status = None if output.stopped else process.wait()
    stdout, bad_stdout = decode(output.streams[0], "stdout")
    stderr, bad_stderr = decode(output.streams[1], "stderr")
    if output.stopped:
        stderr += f"\n{stop_note(output.stopped, timeout)}"
    return RunOutcome(
        shown,
        stdin,
        status,
        stdout,
        stderr,
        time.monotonic() - started,
        stopped=output.stopped,
        not_utf8="; ".join(problem for problem in (bad_stdout, bad_stderr) if problem),
    )
