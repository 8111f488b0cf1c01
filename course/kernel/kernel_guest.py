"""Loading the course's modules, one per kind of standard input, and collecting the kernel log.

This runs where the modules are loaded: inside the disposable VM (the default), or on
the host kernel when the user asked for it by name (``--kernel-runner host-kernel``).
It refuses to run anywhere else, so that nothing is loaded into a kernel by accident::

    python -m course.kernel.kernel_guest PLAN.json RESULTS.json

PLAN is a list of jobs: a module to load ``{lesson, module, ko, params, stdin}``, a
user-space program to run ``{lesson, program, binary, args, stdin, files}`` (the user side of
the comparison, on the same kernel and clock as the modules), a server module with its client
``{lesson, module, ko, params, client, client_args}`` (loaded, talked to, unloaded), or a program to trace with
ftrace's ``function_graph`` ``{lesson, trace, binary, files, graph, notrace}``. RESULTS is
rewritten (atomically) after every job, so a crash or a hung VM keeps what was measured before it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

from course.measure.runners import RunOutcome, run_on_host, stdin_of_kind
from course.results import fingerprint
from course.results.store import read_json, write_json

#: The kernel command line of a virtme-ng guest carries this; the host's never does.
VM_MARK = "virtme"

#: Where the tracing filesystem is mounted (the helper mounts it there if it is not).
TRACEFS = Path("/sys/kernel/tracing")

#: The most of a trace that is read back: one empty read's call graph is a few KiB, and a
#: trace that ran away (a filter that matched everything) must not fill the results file.
TRACE_LIMIT_BYTES = 2 * 1024 * 1024

#: function_graph's options for a call graph that shows the path and not the time: under
#: emulation the durations would be the emulator's, and the tracer's own cost is in them.
#: Interrupts taken during the read stay out of its graph (funcgraph-irqs).
TRACE_OPTIONS = {
    "funcgraph-irqs": "0",
    "funcgraph-duration": "0",
    "funcgraph-cpu": "0",
    "funcgraph-overhead": "0",
    "funcgraph-proc": "0",
    "funcgraph-tail": "0",
}


#: In a boot's shared folder once the host has built the modules: the paths of those that built.
BUILT_FILE = "built.json"

#: How long the guest's helper waits for the host's module build (a build of a few modules takes
#: a minute on a loaded machine; the helper never waits forever).
BUILD_WAIT_SECONDS = 1800


def write_built(folder: Path, kos: list[str]) -> None:
    """Tell the guest's helper which modules built (the host writes this when its build ends, built or not)."""
    write_json(folder / BUILT_FILE, {"built": kos})


def wait_for_built(folder: Path, timeout: float = BUILD_WAIT_SECONDS, poll: float = 0.25) -> set[str]:
    """The modules the host built, once it says so: the guest boots while they build."""
    deadline = time.monotonic() + timeout
    while not (folder / BUILT_FILE).is_file():
        if time.monotonic() > deadline:
            return set()  # then no module job runs, and each is recorded as not loaded
        time.sleep(poll)
    return set(json.loads((folder / BUILT_FILE).read_text(encoding="utf-8")).get("built", []))  # ours, not a result


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
        "course.kernel.kernel_guest",
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


def recorded(results: Path) -> tuple[list[dict], dict]:
    """The jobs that finished and the guest's provenance, from one read of the helper's record (none if it
    never started): the record holds every job's output, read and parsed whole each time.
    """
    if not results.is_file():
        return [], {}
    record = read_json(results, shown=False)
    return record["jobs"], record.get("guest") or {}


def guest_of(results: Path) -> dict:
    """The guest's provenance as the helper recorded it (empty if it never started)."""
    return recorded(results)[1]


def collected(results: Path) -> list[dict]:
    """The jobs that finished, as the helper wrote them (none if it never started)."""
    return recorded(results)[0]


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


def listening_on(port: int, tables: tuple[Path, ...] = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))) -> list[str]:
    """The sockets listening on ``port`` (``127.0.0.1:8080``), from the kernel's TCP tables."""
    found = []
    for table in tables:
        if not table.is_file():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                address, _, hex_port = fields[1].partition(":")
                if int(hex_port, 16) == port:
                    found.append(f"{address}:{port} ({table.name})")
    return found


def loaded(module: str, modules: Path = Path("/proc/modules")) -> bool:
    return any(line.split(" ", 1)[0] == module for line in modules.read_text().splitlines())


def _port_of(params: list[str]) -> int:
    for param in params:
        name, _, value = param.partition("=")
        if name == "port" and value.isdigit():
            return int(value)
    return 8080


def run_server_job(job: dict, scratch: Path, timeout: float = 300) -> dict:
    """Load a server module, run its client against it over loopback, unload it; say what was left behind.

    The module serves from a kernel thread (its init returns at once); the client makes its
    requests and checks every answer; then the module is unloaded. Whatever happened, the
    result says whether the module is still loaded and whether anything still listens on its port.
    """
    subprocess.run(["dmesg", "--clear"], check=True)
    started = time.monotonic()
    command = ["insmod", job["ko"], *job.get("params", [])]
    result = {
        **job,
        "command": " ".join(["insmod", Path(job["ko"]).name, *job.get("params", [])]),
        "client_result": None,
        "rmmod_output": "",
    }
    try:
        finished = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        result.update(exit_status=finished.returncode, insmod_output=(finished.stdout + finished.stderr).strip())
    except subprocess.TimeoutExpired:
        result.update(exit_status=None, insmod_output="insmod did not return within 120 s")
    if result["exit_status"] == 0:
        outcome = run_on_host(
            Path(job["client"]),
            tuple(job["client_args"]),
            "devnull",
            scratch,
            timeout,
            shown_as=job.get("client_shown_as", ""),
        )
        result["client_result"] = outcome_fields(outcome)
        # The module's own timeout bounds this: its thread never waits longer for a client.
        unloaded = subprocess.run(["rmmod", job["module"]], capture_output=True, text=True, timeout=timeout)
        result["rmmod_output"] = (unloaded.stdout + unloaded.stderr).strip()
    result["log"] = subprocess.run(["dmesg"], capture_output=True, text=True, errors="backslashreplace").stdout
    result["left_loaded"] = loaded(job["module"])
    result["left_listening"] = listening_on(_port_of(job.get("params", [])))
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def outcome_fields(outcome: RunOutcome) -> dict:
    """A program's run as a guest job reports it to the host (its stderr's tail: the results file stays small)."""
    return {
        "command": outcome.command,
        "exit_status": outcome.exit_status,
        "ok": outcome.ok,
        "ended": outcome.ended,
        "stdout": outcome.stdout,
        "stderr": outcome.stderr[-4000:],
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
    return {**job, **outcome_fields(outcome), "seconds": round(outcome.seconds, 3)}


def _write(path: Path, text: str) -> None:
    # Opened for writing, tracefs files truncate: "" clears set_graph_function, trace, set_ftrace_pid.
    with open(path, "w") as file:
        file.write(text)


def _add_functions(path: Path, names: list[str]) -> tuple[list[str], list[str]]:
    """Add each of ``names`` to a tracefs filter file: (those the kernel has, those it refused)."""
    _write(path, "")
    added, missing = [], []
    for name in names:
        try:
            # The newline ends the name: tracefs checks a name when it ends, and only then
            # fails the write for a function it does not have (at close it would say nothing).
            with open(path, "a") as file:
                file.write(name + "\n")
            added.append(name)
        except OSError:  # EINVAL: no traceable function of that name in this kernel
            missing.append(name)
    return added, missing


def mount_tracefs(tracefs: Path = TRACEFS) -> None:
    if not (tracefs / "trace").is_file():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(tracefs)], check=True, capture_output=True)


def run_trace_job(job: dict, scratch: Path, tracefs: Path = TRACEFS) -> dict:
    """Run ``job``'s program under function_graph and return the trace it marked, with how it was set up.

    The program limits tracing to its own pid and turns it on and off around its reads; this
    sets the tracer up beforehand and, whatever happened, clears its filters and puts the tracer,
    its options and ``tracing_on`` back as they were.
    """
    started = time.monotonic()
    # The trace comes back as "trace_text": "trace" is the job's own name for it.
    result = {**job, "ok": False, "exit_status": None, "stdout": "", "stderr": "", "trace_text": "", "command": ""}
    options = tracefs / "options"
    saved: dict[str, str] = {}
    saved_tracer, saved_on = "nop", "0"
    try:
        mount_tracefs(tracefs)
        saved = {name: (options / name).read_text().strip() for name in TRACE_OPTIONS if (options / name).is_file()}
        saved_tracer = (tracefs / "current_tracer").read_text().strip() or "nop"
        saved_on = (tracefs / "tracing_on").read_text().strip() or "0"
        _write(tracefs / "tracing_on", "0")
        _write(tracefs / "current_tracer", "nop")
        _write(tracefs / "trace", "")
        graph, missing = _add_functions(tracefs / "set_graph_function", job["graph"])
        notrace, _ = _add_functions(tracefs / "set_graph_notrace", job.get("notrace", []))
        result.update(graph=graph, graph_missing=missing, notrace=notrace)
        if not graph:
            result["ended"] = f"this kernel has none of the functions to start the graph at ({', '.join(missing)})"
            return result
        for name in saved:
            _write(options / name, TRACE_OPTIONS[name])
        _write(tracefs / "current_tracer", "function_graph")
        outcome = run_on_host(
            Path(job["binary"]),
            (str(tracefs),),
            "devnull",
            scratch,
            float(job.get("timeout", 60)),
            shown_as=job.get("shown_as", ""),
            files=tuple(job["files"]),
        )
        _write(tracefs / "tracing_on", "0")  # if the program died before it turned tracing off
        with open(tracefs / "trace", "rb") as file:
            raw = file.read(TRACE_LIMIT_BYTES + 1)
    except (OSError, subprocess.CalledProcessError) as error:
        result["ended"] = f"could not set up or read ftrace in {tracefs} ({error})"
        return result
    finally:
        _reset_tracing(tracefs, saved, saved_tracer, saved_on)
        result["seconds"] = round(time.monotonic() - started, 3)
    return {
        **result,
        "command": outcome.command,
        "exit_status": outcome.exit_status,
        "ok": outcome.ok,
        "ended": outcome.ended,
        "stdout": outcome.stdout[-4000:],
        "stderr": outcome.stderr[-4000:],
        # A kernel's output is not always UTF-8: shown escaped, never a crash of the helper.
        "trace_text": raw[:TRACE_LIMIT_BYTES].decode("utf-8", "backslashreplace"),
        "trace_truncated": len(raw) > TRACE_LIMIT_BYTES,
    }


def _reset_tracing(tracefs: Path, options: dict[str, str], tracer: str, on: str) -> None:
    """Filters and buffer cleared, tracer, options and ``tracing_on`` as they were: the next job runs untraced.

    (In the VM they were the defaults: no tracer. With the host-kernel runner they are the host's.)
    """
    steps = [("tracing_on", "0"), ("current_tracer", "nop")]
    steps += [(name, "") for name in ("set_graph_function", "set_graph_notrace", "set_ftrace_pid", "trace")]
    steps += [(f"options/{name}", value) for name, value in options.items()]
    steps += [("current_tracer", tracer), ("tracing_on", on)]
    for name, value in steps:
        with contextlib.suppress(OSError):  # one setting that cannot be put back must not stop the others
            _write(tracefs / name, value)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python -m course.kernel.kernel_guest PLAN.json RESULTS.json [--host-kernel]", file=sys.stderr)
        return 2
    plan_path, results_path = Path(argv[0]), Path(argv[1])
    on_host = argv[2:] == ["--host-kernel"]
    if not on_host and not in_disposable_vm(Path("/proc/cmdline").read_text()):
        print(
            "course.kernel.kernel_guest: not in the course's VM; refusing to load modules into this kernel "
            "(the host-kernel runner must be asked for by name)",
            file=sys.stderr,
        )
        return 3
    jobs = json.loads(plan_path.read_text())
    if not on_host:
        # A fresh guest's loopback is down: the servers of lesson 9 and their clients need it.
        subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True)
    results: list[dict] = []
    guest = guest_machine()
    # Written before the first job too: a boot whose jobs all fail, or that has none, still says
    # which CPU the guest saw and which mitigations its kernel chose.
    write_json(results_path, {"schema": 1, "jobs": [], "complete": not jobs, "guest": guest})
    built: set[str] | None = None
    for number, job in enumerate(jobs, start=1):
        scratch = Path("/tmp/course-scratch")
        if job.get("after_build") and built is None:  # built on the host while this guest booted
            print("course-guest: waiting for the host to build the modules", flush=True)
            built = wait_for_built(results_path.parent)
        if job.get("after_build") and job["ko"] not in (built or set()):
            results.append({**job, "not_built": True})  # the host records why (its build failed)
        elif "trace" in job:
            print(f"course-guest: [{number}/{len(jobs)}] trace {job['program']} (function_graph)", flush=True)
            results.append(run_trace_job(job, scratch))
        elif "binary" in job:
            print(f"course-guest: [{number}/{len(jobs)}] {job['program']} (user space)", flush=True)
            results.append(run_program_job(job, scratch))
        elif "client" in job:
            print(f"course-guest: [{number}/{len(jobs)}] {job['module']} serving its client", flush=True)
            results.append(run_server_job(job, scratch))
        else:
            print(f"course-guest: [{number}/{len(jobs)}] {job['module']} stdin={job['stdin']}", flush=True)
            results.append(run_job(job, scratch))
        write_json(results_path, {"schema": 1, "jobs": results, "complete": number == len(jobs), "guest": guest})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
