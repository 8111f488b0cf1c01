"""Run a command, and end it with everything it started when the process that started this one dies.

A VM boot is three generations (``vng``, ``virtme-run``, QEMU): ``PR_SET_PDEATHSIG`` on the
first would not reach QEMU. So the course starts a boot through this guard, with
``PR_SET_PDEATHSIG`` set to SIGTERM on the guard itself (:func:`course.measure.runners.owned_process`):
when the course's process ends, however it ends (SIGKILL included), the guard kills every
process below it, orphans included (it is their subreaper), and exits.

Run as a script (``python -I guard.py COMMAND...``): it imports nothing of the course.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

_PR_SET_CHILD_SUBREAPER = 36


def below(pid: int) -> set[int]:
    """Every process below ``pid`` (children of children included), from ``/proc``."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    line = stat.read()
                parents[int(entry.name)] = int(line[line.rfind(b")") + 2 :].split()[1])
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = [child for child, ppid in parents.items() if ppid == parent and child not in found]
        found.update(children)
        todo.extend(children)
    return found


def end_everything_below(number: int = signal.SIGTERM, frame: object = None) -> None:
    """Kill every process below this one until none is left (reaping what comes to us), then exit."""
    me = os.getpid()
    for _ in range(100):
        left = below(me)
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        time.sleep(0.02)
    os._exit(128 + number)


def main(command: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), 0, 0, 0)  # QEMU stays below, even once its parent ends
    for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(number, end_everything_below)
    child = subprocess.Popen(command)
    status = child.wait()
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
