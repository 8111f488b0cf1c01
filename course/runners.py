"""Running a compiled program on this machine, with standard input from a chosen kind of file.

The kinds are those of the article's Figure 2 and a few more: a terminal (a pseudo-terminal
this module opens, so it works without one), a disk file, ``/dev/null``, ``/dev/zero``, a
pipe and a socket (one end of a connected pair).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunOutcome:
    """What one run printed and how it ended."""

    command: str
    stdin: str
    exit_status: int | None  # None when it was stopped for running too long
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


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


@contextlib.contextmanager
def owned_process(command: list[str], **popen: object) -> Iterator[subprocess.Popen]:
    """A child in a session of its own, killed with everything it started if the block is left early.

    Ctrl-C is held back while the child is being created: a KeyboardInterrupt between the
    fork and the moment the caller holds the process would leave it running, unseen.
    """
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    process: subprocess.Popen | None = None
    try:
        process = subprocess.Popen(command, start_new_session=True, **popen)  # type: ignore[call-overload]
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a pending Ctrl-C is raised here, inside the try
        yield process
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if process is not None and process.poll() is None:
            kill_group(process)


def kill_group(process: subprocess.Popen) -> None:
    """Kill ``process`` and everything in its session, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


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


def run_on_host(
    binary: Path,
    args: tuple[str, ...],
    stdin: str,
    scratch: Path,
    timeout: float,
    shown_as: str = "",
    files: tuple[str, ...] = (),
) -> RunOutcome:
    """Run ``binary`` here and capture everything it prints; stop it after ``timeout`` seconds.

    ``shown_as`` is how the binary is named in the recorded command (a path relative to the
    checkout reads better on a page than this machine's absolute path). ``files`` are kinds of
    file opened for the program beside its standard input (see ``files_environment``).
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
            text=True,
            pass_fds=tuple(opened.values()),
            env=files_environment(opened),
        ) as process,
    ):
        try:
            stdout, stderr = process.communicate(timeout=timeout)
            status: int | None = process.returncode
        except subprocess.TimeoutExpired:
            kill_group(process)
            stdout, stderr = process.communicate()
            stderr += f"\nstopped after {timeout:.0f} s without finishing"
            status = None
    return RunOutcome(shown, stdin, status, stdout, stderr, time.monotonic() - started)
