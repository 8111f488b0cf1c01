"""Work in threads that Ctrl-C (or SIGTERM) can stop, and waiting for it without leaving any half done."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator

from course.measure.runners import CLEANUP_GRACE_SECONDS, TERMINATION


def start_threads(work: dict[str, Callable[[], None]]) -> list[threading.Event]:
    """Each callable in a thread of its own (named by its key); each event is set once its callable returned.

    The caller waits on the events (:func:`wait_for`), never on ``Thread.join()`` or
    ``is_alive()``: on Python 3.11 a ``join()`` cut short by Ctrl-C leaves a thread that is still
    running looking stopped, and the process would leave it behind half-way through its clean-up.
    """
    finished = []
    for name, function in work.items():
        done = threading.Event()

        def run(function: Callable[[], None] = function, done: threading.Event = done) -> None:
            try:
                function()
            finally:
                done.set()

        threading.Thread(target=run, name=name, daemon=True).start()
        finished.append(done)
    return finished


def wait_for(finished: list[threading.Event], seconds: float | None = None, through_interrupts: bool = False) -> bool:
    """Until every event is set (True) or ``seconds`` pass (False), in short sleeps that Ctrl-C can cut.

    With ``through_interrupts``, a Ctrl-C (or SIGTERM) meanwhile does not cut the wait: the
    clean-up that follows a first one is waited for whole.
    """
    deadline = None if seconds is None else time.monotonic() + seconds
    while not all(done.is_set() for done in finished):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        try:
            time.sleep(0.1)
        except KeyboardInterrupt:
            if not through_interrupts:
                raise
    return True


@contextlib.contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP stop the work as Ctrl-C does: with a KeyboardInterrupt.

    So every clean-up runs (programs and VMs killed, scratch folders removed) where the
    default action would end this process on the spot. Main thread only.
    """
    first: float | None = None

    def interrupt(number: int, frame: object) -> None:
        nonlocal first
        if first is not None and time.monotonic() - first < CLEANUP_GRACE_SECONDS:
            return
        first = time.monotonic()
        raise KeyboardInterrupt(signal.Signals(number).name)

    previous = {number: signal.signal(number, interrupt) for number in TERMINATION}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
