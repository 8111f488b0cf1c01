"""A child process that ends with its parent.

A process this one starts must not outlive it: a command started by ``subprocess`` (before its
exec) and a helper forked by :mod:`multiprocessing` to compute something meanwhile alike. Killed
by SIGKILL, this process runs no clean-up of its own, so the child asks the kernel for a signal
when its parent dies (``PR_SET_PDEATHSIG``, Linux). A forked helper that sends its answer down a
pipe also closes the pipe's read end it inherited: with the parent gone, nobody else holds it, and a
send larger than the pipe's buffer fails (``BrokenPipeError``) instead of blocking for ever.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from typing import Protocol

_PR_SET_PDEATHSIG = 1


class _Closable(Protocol):
    def close(self) -> None: ...


def die_with_parent(parent: int, number: int) -> None:
    """In the child (after the fork, before any exec): receive ``number`` when the thread that started it ends.

    ``parent`` is the pid of the process that started the child, read there before the fork: one that
    died before the request was made would never send the signal, so the child then kills itself.
    Nothing is asked of a system other than Linux.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(number), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl: the signal will never come
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def forked_helper(parent: int, inherited: Iterable[_Closable]) -> Iterator[None]:
    """The body of a forked helper: it dies with ``parent`` and ends quietly when interrupted.

    ``inherited`` are the read ends of this process's pipes that the fork copied (its own answer's
    among them): they are closed first, so that only the parent can read what the helper sends. The
    helper is killed (SIGKILL) when the thread that forked it ends; an answer sent to a parent gone
    meanwhile (``BrokenPipeError``) and a Ctrl-C, which reaches the whole process group, end it at
    once, without the traceback :mod:`multiprocessing` would print: the parent reports what happened.
    """
    try:
        for end in inherited:
            end.close()
        die_with_parent(parent, signal.SIGKILL)
        yield
    except (BrokenPipeError, KeyboardInterrupt):
        os._exit(1)
