"""One run at a time per checkout: the tasks that build, run or write results hold ``build/.run.lock``.

Two runs on one checkout would compile a binary while the other executes it ("Text file
busy") and write the same result files. The second one waits for the first, saying which
run it waits for, and gives up after :data:`RUN_LOCK_WAIT_SECONDS`. The lock is an
``flock``: the kernel releases it when its holder ends, however it ends, so a crashed run
never leaves a stale lock behind.

The results folder is locked too (:func:`hold_results`): two runs with build folders of their
own still write the same result files when they share one results folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

#: The lock's file, in the build folder (so a run with its own build folder has its own lock).
LOCK_NAME = ".run.lock"

#: How long a run waits for another run of the same checkout before it gives up: a cold
#: ``invoke generate`` takes minutes, ``invoke bench`` longer.
RUN_LOCK_WAIT_SECONDS = 30 * 60

_POLL_SECONDS = 0.5

#: Lock files this process holds -> how many blocks hold them: a task called from a task
#: must not wait for itself.
_held: dict[Path, int] = {}


class RunLockError(RuntimeError):
    """Another run of this checkout kept the lock for longer than we wait; the message names it."""


@contextlib.contextmanager
def hold(
    build: Path, what: str, wait: float = RUN_LOCK_WAIT_SECONDS, progress: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the run lock of the checkout whose build folder is ``build`` for the block.

    ``what`` (``invoke run --lesson 3``) is what another run waiting for this one is told.
    """
    build.mkdir(parents=True, exist_ok=True)
    path = (build / LOCK_NAME).resolve()
    if path in _held:
        with _again(path):
            yield
        return
    fd = _acquire(path, what, wait, progress or _tell)
    _held[path] = 1
    try:
        yield
    finally:
        del _held[path]
        os.ftruncate(fd, 0)  # nobody holds it: a waiter must not name us
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def hold_results(
    results: Path, what: str, wait: float = RUN_LOCK_WAIT_SECONDS, progress: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the lock of the results folder for the block: an ``flock`` on the folder itself.

    On the folder, not on a file in it: results are committed, and a lock file would show in
    ``git status`` (and be listed beside the sets). It cannot say who holds it; the build
    folder's lock does that for runs of one checkout.
    """
    results.mkdir(parents=True, exist_ok=True)
    path = results.resolve()
    key = path / "\0folder"  # no file has this path: never taken for a build folder's lock file
    if key in _held:
        with _again(key):
            yield
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline, told = time.monotonic() + wait, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunLockError(
                        f"another run writing the results in {path} still holds them after {wait:.0f} s; "
                        "wait for it to finish or stop it, then run again"
                    ) from None
                if not told:
                    (progress or _tell)(
                        f"waiting for another run writing the results in {path} to finish "
                        f"(at most {wait:.0f} s; Ctrl-C stops waiting)"
                    )
                    told = True
                time.sleep(_POLL_SECONDS)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _again(key: Path) -> Iterator[None]:
    """A block inside one of this process that holds ``key`` already: counted, nothing taken twice."""
    _held[key] += 1
    try:
        yield
    finally:
        _held[key] -= 1


def _tell(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # at once, even when stdout is a pipe


def holder(build: Path) -> str:
    """Who holds (or last held) the lock, as its holder wrote it: ``pid 12: invoke run, since 10:02:03``."""
    try:
        info = json.loads((build / LOCK_NAME).read_text())
        return f"pid {info['pid']}: {info['what']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


def _acquire(path: Path, what: str, wait: float, progress: Callable[[str], None]) -> int:
    deadline = time.monotonic() + wait
    told = ""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)  # `invoke clean` removes the build folder
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = holder(path.parent)
            if time.monotonic() >= deadline:
                raise RunLockError(
                    f"another run of this checkout ({other}) still holds {path} after {wait:.0f} s; "
                    "wait for it to finish or stop it, then run again"
                ) from None
            if other != told:
                progress(
                    f"waiting for the other run of this checkout ({other}) to finish "
                    f"(at most {wait:.0f} s; Ctrl-C stops waiting)"
                )
                told = other
            time.sleep(_POLL_SECONDS)
            continue
        # `invoke clean` may have removed the file we locked: only the one at the path counts.
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                os.ftruncate(fd, 0)
                since = time.strftime("%H:%M:%S")
                os.write(fd, json.dumps({"pid": os.getpid(), "what": what, "since": since}).encode())
                return fd
        os.close(fd)
