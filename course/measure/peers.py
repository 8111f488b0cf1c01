"""Peers measured in the same run as the course: other tools' figures for the same system call.

``perf bench syscall basic`` times 10 million ``getppid()`` calls and reports the mean;
lmbench's ``lat_syscall null`` does the same with its own loop. Lesson 1 times
``getppid()`` too, so the instructor guide can put the three side by side.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from course.results import store

PERF_ID = "peers/perf-bench-syscall-basic"
LMBENCH_ID = "peers/lmbench-lat-syscall-null"


def parse_perf_bench(output: str) -> tuple[int, float]:
    """(calls, mean ns per call) from ``perf bench syscall basic``'s output."""
    calls = re.search(r"Executed (\d+) getppid\(\) calls", output)
    usecs = re.search(r"([\d.]+) usecs/op", output)
    if not calls or not usecs:
        raise ValueError(f"unexpected perf bench output: {output.strip()[:200]!r}")
    return int(calls[1]), float(usecs[1]) * 1000


def parse_lat_syscall(output: str) -> float:
    """Mean ns per call from ``lat_syscall null`` ("Simple syscall: 0.1234 microseconds")."""
    found = re.search(r"Simple syscall: ([\d.]+) microseconds", output)
    if not found:
        raise ValueError(f"unexpected lat_syscall output: {output.strip()[:200]!r}")
    return float(found[1]) * 1000


def _skipped(reason: str, command: str) -> dict:
    return {"status": "skipped", "reason": reason, "command": command, "measured_at": store.now()}


def measure_perf(loops: int | None = None) -> dict:
    """perf's mean cost of getppid(); ``loops`` overrides its ten million calls."""
    command = ["perf", "bench", "syscall", "basic", *(["--loop", str(loops)] if loops else [])]
    if shutil.which("perf") is None:
        return _skipped("perf is not installed (apt-get install linux-perf)", " ".join(command))
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    try:
        calls, mean_ns = parse_perf_bench(finished.stdout)
    except ValueError as error:
        return _skipped(f"perf bench did not run here: {finished.stderr.strip()[:200] or error}", " ".join(command))
    return {
        "status": "ok",
        "unit": "ns",
        "mean": mean_ns,
        "samples": calls,
        "command": " ".join(command),
        "exit_status": finished.returncode,
        "measured_at": store.now(),
        "call": "getppid",
    }


def measure_lmbench() -> dict:
    tool = shutil.which("lat_syscall") or shutil.which("lat_syscall", path="/usr/lib/lmbench/bin/x86_64-linux-gnu")
    command = "lat_syscall null"
    if tool is None:
        return _skipped("lmbench is not packaged for this system (no lat_syscall)", command)
    finished = subprocess.run([tool, "null"], capture_output=True, text=True, timeout=300)
    try:
        mean_ns = parse_lat_syscall(finished.stdout + finished.stderr)
    except ValueError as error:
        return _skipped(str(error), command)
    return {
        "status": "ok",
        "unit": "ns",
        "mean": mean_ns,
        "command": command,
        "exit_status": finished.returncode,
        "measured_at": store.now(),
        "call": "getppid",
    }
