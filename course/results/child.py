"""A child process that ends with its parent.

A process this one starts must not outlive it: a command started by ``subprocess`` (before its
exec) and a helper forked by :mod:`multiprocessing` to compute something meanwhile alike. Killed
by SIGKILL, this process runs no clean-up of its own, so the child asks the kernel for a signal
when its parent dies (``PR_SET_PDEATHSIG``, Linux). A forked helper that sends its answer down a
pipe also closes the pipe's read end it inherited: with the parent gone, nobody else holds it, and a
send larger than the pipe's buffer fails (``BrokenPipeError``) instead of blocking for ever:
:class:`Meanwhile` is such a helper.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import weakref
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Generic, Protocol, TypeVar

_PR_SET_PDEATHSIG = 1

T = TypeVar("T")


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


class Meanwhile(Generic[T]):
    """``work()`` computed in a forked process while this one goes on; :meth:`result` takes its answer.

    Forked, not spawned: the work reads this process's own objects, never pickled on the way there (its
    answer is, on the way back). The answer is None when the work raised: the caller does it again itself,
    and so raises the error where it reports errors. The process ends with this one (:func:`forked_helper`).
    """

    def __init__(self, work: Callable[[], T]) -> None:
        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        # The read ends of the other helpers still open here are copied by the fork: the new one closes them.
        inherited = [self._receive, *(other._receive for other in _OPEN)]
        self._process = context.Process(target=_answer, args=(work, os.getpid(), inherited, send), daemon=True)
        self._process.start()
        send.close()
        _OPEN.add(self)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def result(self) -> T | None:
        """The answer, waited for; None when the work failed or the process died without one."""
        try:
            return self._receive.recv()
        except (EOFError, OSError):
            return None
        finally:
            self.close()

    def close(self) -> None:
        """End the process (it has nothing else to do), whether or not its answer was taken."""
        _OPEN.discard(self)
        self._receive.close()
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()


#: The helpers whose answers this process has not taken yet.
_OPEN: weakref.WeakSet[Meanwhile] = weakref.WeakSet()


def _answer(work: Callable[[], object], parent: int, inherited: list[Connection], send: Connection) -> None:
    """In the forked process: send ``work()``'s answer (None if it raised), ending with ``parent``."""
    with forked_helper(parent, inherited):
        try:
            got = work()
        except Exception:  # the parent does the work again, and so raises the error where it reports it
            got = None
        send.send(got)
        send.close()
