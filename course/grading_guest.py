"""Building and running the students' exercises inside the disposable VM (never on the instructor's host).

This runs in the guest that :mod:`course.grading` boots::

    python -m course.grading_guest PLAN.json RESULTS.json

Each job copies one source tree (a student's variant or the course's solution, with the
course's headers) into the guest's own ``/tmp``, then compiles it with the course's flags and
runs it, both as the unprivileged user ``nobody`` (``setpriv``): neither the compiler (an
``#include`` of a secret) nor the program can read what only root may on the shared, read-only
host files, and what they write lands in the guest's memory. The program gets the exercise's
arguments and standard input, timed out and capped as the pipeline runs programs. RESULTS is
rewritten atomically after every job, so a hung VM keeps what was done before it. Outside the
course's VM it refuses to run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from course.build import CFLAGS
from course.kernel_guest import in_disposable_vm
from course.runners import run_on_host
from course.store import write_json

#: The user a submission runs as in the guest (Debian's ``nobody``).
NOBODY = "65534"

#: The most of a compiler's output kept (the first errors are the useful ones).
COMPILER_LOG_CHARS = 4000

#: Where the binaries go in the guest: its own memory, not the shared host files.
GUEST_BIN = Path("/tmp/course-grade")


def command(plan: Path, results: Path) -> list[str]:
    """How the VM runs this helper on ``plan`` (the course's own Python, at the same path in the guest)."""
    return [sys.executable, "-m", "course.grading_guest", str(plan), str(results)]


#: How a command runs as ``nobody``, with no way back to root.
UNPRIVILEGED = ("/usr/bin/setpriv", "--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--no-new-privs", "--")


def _readable_copy(tree: Path, into: Path) -> None:
    """``tree`` copied to ``into``, every folder and file readable by anyone (the compiler runs as nobody)."""
    shutil.copytree(tree, into)
    for path in [into, *into.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def compile_source(job: dict, source: Path, binary: Path, timeout: float = 300) -> tuple[bool, str]:
    """Compile ``source`` into ``binary`` as nobody: (built, the compiler's words)."""
    compiler = [*UNPRIVILEGED, job.get("cc", "cc"), *CFLAGS, "-o", str(binary), str(source), *job.get("libs", [])]
    try:
        finished = subprocess.run(compiler, capture_output=True, text=True, errors="backslashreplace", timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"the compiler did not finish within {timeout:.0f} s"
    log = (finished.stdout + finished.stderr)[:COMPILER_LOG_CHARS]
    return finished.returncode == 0, log


def run_job(job: dict, number: int, scratch: Path) -> dict:
    """Build and run one job; what it printed comes back as text, to be parsed on the host."""
    GUEST_BIN.mkdir(parents=True, exist_ok=True)
    GUEST_BIN.chmod(0o1777)  # as /tmp: nobody writes its binaries here, and removes none but its own
    copy = GUEST_BIN / f"src-{number}"
    _readable_copy(Path(job["tree"]), copy)
    binary = GUEST_BIN / f"job-{number}"
    built, log = compile_source(job, copy / job["source"], binary)
    result = {"id": job["id"], "built": built, "compiler": log.replace(str(copy) + "/", "")}
    if not built:
        return result
    outcome = run_on_host(
        Path(UNPRIVILEGED[0]),
        (*UNPRIVILEGED[1:], str(binary), *job.get("args", [])),
        job["stdin"],
        scratch,
        float(job.get("timeout", 300)),
        shown_as=job.get("shown_as", ""),
    )
    return {
        **result,
        "command": outcome.command,
        "exit_status": outcome.exit_status,
        "ok": outcome.ok,
        "ended": outcome.ended,
        "stdout": outcome.stdout,
        "stderr": outcome.stderr[-4000:],
        "seconds": round(outcome.seconds, 3),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m course.grading_guest PLAN.json RESULTS.json", file=sys.stderr)
        return 2
    if not in_disposable_vm(Path("/proc/cmdline").read_text()):
        print("course.grading_guest: not in the course's VM; a student's code never runs here", file=sys.stderr)
        return 3
    plan, results_path = Path(argv[0]), Path(argv[1])
    jobs = json.loads(plan.read_text())
    results: list[dict] = []
    for number, job in enumerate(jobs, start=1):
        print(f"course-guest: [{number}/{len(jobs)}] {job['who']} {job['exercise']}", flush=True)
        results.append(run_job(job, number, Path("/tmp/course-scratch")))
        write_json(results_path, {"schema": 1, "jobs": results, "complete": number == len(jobs)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
