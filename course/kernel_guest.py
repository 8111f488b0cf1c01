"""Loading the course's modules, one per kind of standard input, and collecting the kernel log.

This runs where the modules are loaded: inside the disposable VM (the default), or on
the host kernel when the user asked for it by name (``--kernel-runner host-kernel``).
It refuses to run anywhere else, so that nothing is loaded into a kernel by accident::

    python -m course.kernel_guest PLAN.json RESULTS.json

PLAN is a list of jobs: a module to load ``{lesson, module, ko, params, stdin}``, or a
user-space program to run ``{lesson, program, binary, args, stdin, files}`` (the user side of
the comparison, on the same kernel and clock as the modules). RESULTS is rewritten
(atomically) after every job, so a crash or a hung VM keeps what was measured before it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from course import fingerprint
from course.runners import run_on_host, stdin_of_kind
from course.store import read_json, write_json

#: The kernel command line of a virtme-ng guest carries this; the host's never does.
VM_MARK = "virtme"


def prepare(folder: Path, jobs: list[dict]) -> tuple[Path, Path]:
    """Write the plan of ``jobs`` into ``folder``; return (plan, results) paths for :func:`command`."""
    plan, results = folder / "plan.json", folder / "results.json"
    results.unlink(missing_ok=True)
    plan.write_text(json.dumps(jobs, indent=1))
    return plan, results


def command(plan: Path, results: Path, on_host: bool = False) -> list[str]:
    """How to run this module on ``plan`` (with the course's own Python, seen at the same path in the VM)."""
    return [
        sys.executable,
        "-m",
        "course.kernel_guest",
        str(plan),
        str(results),
        *(["--host-kernel"] if on_host else []),
    ]


def guest_machine() -> dict:
    """Where the guest's figures come from: its kernel, the CPU it sees (QEMU's) and its mitigations.

    Under emulation these are not the host's: QEMU's CPU model, Debian's guest kernel and what
    that kernel reports for the CPU QEMU shows it.
    """
    machine = fingerprint.machine()
    keep = ("cpu_model", "microcode", "tsc_flags", "kernel_release", "kernel_version", "virtualization", "mitigations")
    return {key: machine[key] for key in keep}


def guest_of(results: Path) -> dict:
    """The guest's provenance as the helper recorded it (empty if it never started)."""
    return (read_json(results).get("guest") or {}) if results.is_file() else {}


def collected(results: Path) -> list[dict]:
    """The jobs that finished, as the helper wrote them (none if it never started)."""
    return read_json(results)["jobs"] if results.is_file() else []


def in_disposable_vm(cmdline: str) -> bool:
    return VM_MARK in cmdline


def run_job(job: dict, scratch: Path, timeout: float = 300) -> dict:
    """Load one module with the chosen standard input; return its exit status and the kernel log."""
    subprocess.run(["dmesg", "--clear"], check=True)
    command = ["insmod", job["ko"], *job.get("params", [])]
    started = time.monotonic()
    with stdin_of_kind(job["stdin"], scratch) as fd:
        try:
            # A module may log bytes that are not UTF-8: shown escaped, never a crash of the helper.
            finished = subprocess.run(
                command, stdin=fd, capture_output=True, text=True, errors="backslashreplace", timeout=timeout
            )
            status, output = finished.returncode, finished.stdout + finished.stderr
        except subprocess.TimeoutExpired:
            status, output = None, f"insmod did not return within {timeout:.0f} s"
    log = subprocess.run(["dmesg"], capture_output=True, text=True, errors="backslashreplace").stdout
    return {
        **job,
        "command": " ".join(["insmod", Path(job["ko"]).name, *job.get("params", [])]),
        "exit_status": status,
        "insmod_output": output.strip(),
        "log": log,
        "seconds": round(time.monotonic() - started, 3),
    }


def run_program_job(job: dict, scratch: Path) -> dict:
    """Run one user-space program in the guest, as the pipeline runs it on the host (capped, timed out)."""
    outcome = run_on_host(
        Path(job["binary"]),
        tuple(job.get("args", ())),
        job["stdin"],
        scratch,
        float(job.get("timeout", 120)),
        shown_as=job.get("shown_as", ""),
        files=tuple(job.get("files", ())),
    )
    return {
        **job,
        "command": outcome.command,
        "exit_status": outcome.exit_status,
        "ok": outcome.ok,
        "ended": outcome.ended,
        "stdout": outcome.stdout,
        "stderr": outcome.stderr[-4000:],
        "seconds": round(outcome.seconds, 3),
    }


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python -m course.kernel_guest PLAN.json RESULTS.json [--host-kernel]", file=sys.stderr)
        return 2
    plan_path, results_path = Path(argv[0]), Path(argv[1])
    on_host = argv[2:] == ["--host-kernel"]
    if not on_host and not in_disposable_vm(Path("/proc/cmdline").read_text()):
        print(
            "course.kernel_guest: not in the course's VM; refusing to load modules into this kernel "
            "(the host-kernel runner must be asked for by name)",
            file=sys.stderr,
        )
        return 3
    jobs = json.loads(plan_path.read_text())
    results: list[dict] = []
    guest = guest_machine()
    for number, job in enumerate(jobs, start=1):
        scratch = Path("/tmp/course-scratch")
        if "binary" in job:
            print(f"course-guest: [{number}/{len(jobs)}] {job['program']} (user space)", flush=True)
            results.append(run_program_job(job, scratch))
        else:
            print(f"course-guest: [{number}/{len(jobs)}] {job['module']} stdin={job['stdin']}", flush=True)
            results.append(run_job(job, scratch))
        write_json(results_path, {"schema": 1, "jobs": results, "complete": number == len(jobs), "guest": guest})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
