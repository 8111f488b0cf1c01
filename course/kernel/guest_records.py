"""What the guest's jobs gave back, recorded as the lessons' figures, captures and failures."""

from __future__ import annotations

from course.kernel import vm
from course.kernel.call_graphs import call_graphs
from course.measure import protocol
from course.measure.lesson_run import LessonRun, Progress, measurement_id, parse_or_fail, record
from course.results import code_parts, store

#: Words in a kernel log that mean a module crashed the kernel's code path.
OOPS_MARKERS = ("BUG:", "Oops:", "general protection fault", "Kernel panic", "Call Trace:")


def record_results(
    runs: list[LessonRun], jobs: list[dict], results: list[dict], console: str, status: int | None, where: dict
) -> None:
    by_lesson = {run.lesson.name: run for run in runs}
    unit = vm.UNITS[where["acceleration"]]
    for index, job in enumerate(jobs):
        if "trace" in job:
            result = results[index] if index < len(results) else None
            record_trace(by_lesson[job["lesson"]], job, result, console, status, where)
            if result is not None:  # not "in the guest": the bench counts those as the like-for-like runs
                step = {"name": f"trace {job['program']} under function_graph, in the VM", "cached": False}
                by_lesson[job["lesson"]].steps.append({**step, "seconds": result.get("seconds", 0.0)})
            continue
        if "binary" in job:
            result = results[index] if index < len(results) else None
            for name in job["lessons"]:
                _record_guest_program(by_lesson[name], job, result, console, status, where, unit)
            if result is not None:  # its time belongs to the boot's first lesson that asked for it
                step = {"name": f"run {job['program']} in the guest", "seconds": result.get("seconds", 0.0)}
                by_lesson[job["lesson"]].steps.append({**step, "cached": False})
            continue
        run = by_lesson[job["lesson"]]
        module = next(m for m in run.lesson.modules if m.name == job["module"])
        what = f"module {job['module']} (stdin={job['stdin']})"
        if index >= len(results):
            ended = "stopped after its timeout" if status is None else f"ended (exit {status})"
            run.fail("run", what, f"the VM {ended} before this module was loaded", console[-8000:])
            continue
        result = results[index]
        log = result["log"]
        if "client" in job and not _server_behaved(run, what, result, log):
            continue
        if any(marker in log for marker in OOPS_MARKERS):
            run.fail("run", what, "the kernel reported an oops or BUG while the module ran", log)
            continue
        if result["exit_status"] is None:
            run.fail("run", what, result["insmod_output"], log)
            continue
        parsed = parse_or_fail(run, what, log)
        if parsed is None:
            continue
        if parsed.meta.get("done") != "1":
            run.fail("load", what, f"the module did not finish measuring: insmod said {result['insmod_output']!r}", log)
            continue
        context = {
            "stdin": job["stdin"],
            "command": f"{result['command']} < {job['stdin']}",
            "exit_status": result["exit_status"],
            # The module's sources, and the course's code that shaped the guest, if it was packed by it.
            "sources": {k: v for k, v in run.sources.items() if "/kernel/" in k or code_parts.is_parts(k)},
            "runner": where["runner"],
            "acceleration": where["acceleration"],
            "guest_kernel": where.get("guest_kernel"),
        }
        # Emulated ticks have no meaningful rate in nanoseconds: keep none.
        record(run, module.stdin, job["stdin"], parsed, context, unit=unit, with_rate=unit == "ticks")
        if "client" in job:
            client = parse_or_fail(run, f"{what}: its client", result["client_result"]["stdout"])
            if client is None:
                continue
            command = f"{result['client_result']['command']}, in the guest, against {result['command']}"
            served = {**context, "command": command, "sources": {**context["sources"], **job["client_sources"]}}
            record(run, module.stdin, job["stdin"], client, served, unit=unit, with_rate=unit == "ticks")
        kernel_log = "\n".join(parsed.text).strip()
        capture_id = measurement_id(run.lesson, job["module"], job["stdin"], module.stdin) + ".log"
        run.captures[capture_id] = {"text": kernel_log, "command": context["command"], "measured_at": store.now()}


def _server_behaved(run: LessonRun, what: str, result: dict, log: str) -> bool:
    """A server module's run: loaded, its client satisfied, unloaded, nothing left listening; else why not."""
    if result["exit_status"] != 0:
        run.fail("load", what, f"insmod failed: {result['insmod_output']}", log)
        return False
    client = result["client_result"]
    if not client["ok"]:
        said = (client["stdout"] + client["stderr"])[-4000:]
        why = f"it {client['ended']} (every answer is checked byte for byte)" + _failed_checks(log)
        run.fail("run", f"{what}: its client", why, said)
        return False
    if result["left_loaded"] or result["left_listening"]:
        left = ["still loaded" if result["left_loaded"] else "", ", ".join(result["left_listening"])]
        run.fail("run", what, f"left behind after rmmod: {'; '.join(x for x in left if x)}", result["rmmod_output"])
        return False
    return True


def _failed_checks(log: str) -> str:
    """What the module's own checks said when they failed (lesson 9's exercise: why its server stopped answering)."""
    try:
        checks = protocol.parse(log).checks
    except protocol.ProtocolError:
        return ""  # the log is read again, and its fault recorded, where its figures are
    failed = [f"{name}: {detail}" for name, (verdict, detail) in checks.items() if verdict == "fail"]
    return "; the module's check " + "; ".join(failed)[:600] if failed else ""


def _guest_job_failed(
    run: LessonRun, what: str, before: str, result: dict | None, console: str, status: int | None
) -> bool:
    """Record why a program or trace job in the guest gave nothing to read, if it did not; True then."""
    if result is None:
        ended = "stopped after its timeout" if status is None else f"ended (exit {status})"
        run.fail("run", what, f"the VM {ended} before {before}", console[-8000:])
        return True
    if not result["ok"]:
        run.fail("run", what, f"it {result['ended']}", (result["stdout"] + result["stderr"])[-4000:])
        return True
    return False


def record_trace(run: LessonRun, job: dict, result: dict | None, console: str, status: int | None, where: dict) -> None:
    """Store each kind's call graph from a trace taken in the guest as ``<lesson>/<trace>.<kind>``.

    The graph is kernel output: kept as text, shown as a literal block, never read as markup.
    """
    what = f"trace {job['trace']} ({job['program']}) in the guest"
    if _guest_job_failed(run, what, "this trace was taken", result, console, status):
        return
    assert result is not None
    graphs = call_graphs(result["trace_text"])
    setup = f"function_graph from {' '.join(result['graph'])}"
    if result.get("graph_missing"):
        setup += f" (not in this kernel: {' '.join(result['graph_missing'])})"
    if result.get("notrace"):
        setup += f", not into {' '.join(result['notrace'])}"
    setup += f", kernel {where.get('guest_kernel')} ({where['acceleration']})"
    for kind in job["files"]:
        found = [graph for graph in graphs.get(kind, []) if graph.lines]
        if not found:
            cut = " (the trace was cut at its size limit)" if result.get("trace_truncated") else ""
            message = f"the trace holds no call graph between the markers of {kind}{cut}"
            run.fail("parse", f"{what}, {kind}", message, result["trace_text"][-4000:])
            continue
        # An interrupt that lands in a read adds its work to that read's graph: the shortest
        # of the rounds is the read itself.
        graph = min(found, key=lambda graph: len(graph.lines))
        returned = "" if graph.returned is None else f", read returned {graph.returned}"
        rounds = f"; the shortest of {len(found)} reads{returned}" if len(found) > 1 else returned.replace(",", ";", 1)
        run.captures[f"{run.lesson.name}/{job['trace']}.{kind}"] = {
            "text": graph.text(),
            # The kind first: the command is the same for every kind (one run reads each open file).
            "command": f"{result['command']}   # the read of {kind}: {setup}{rounds}",
            "measured_at": store.now(),
        }


def _record_guest_program(
    run: LessonRun, job: dict, result: dict | None, console: str, status: int | None, where: dict, unit: str
) -> None:
    """A user-space program's figures from the guest, as ``user.<program>.<name>`` in the guest clock's unit."""
    what = f"{job['program']} in the guest (stdin={job['stdin']})"
    if _guest_job_failed(run, what, "this program ran", result, console, status):
        return
    assert result is not None
    parsed = parse_or_fail(run, what, result["stdout"])
    if parsed is None:
        return
    context = {
        "stdin": job["stdin"],
        "command": f"{result['command']}, in the guest",
        "exit_status": result["exit_status"],
        "sources": job["sources"],
        "runner": where["runner"],
        "acceleration": where["acceleration"],
        "guest_kernel": where.get("guest_kernel"),
    }
    kinds = tuple(job["stdin_kinds"])
    prefix = f"user.{job['program'].split('/', 1)[1]}."
    record(run, kinds, job["stdin"], parsed, context, unit=unit, with_rate=unit == "ticks", prefix=prefix)


def not_built(run: LessonRun, module, reason: str) -> None:
    """A module that did not build measures nothing: each of its figures says why, unless an earlier one is kept."""
    earlier = run.previous.get("measurements", {})
    for stdin in module.stdin:
        for name in module.measures:
            key = measurement_id(run.lesson, name, stdin, module.stdin)
            if key not in earlier and key not in run.measurements:  # nor one measured in this run
                run.measurements[key] = {
                    "status": "skipped",
                    "reason": reason,
                    "stdin": stdin,
                    "measured_at": store.now(),
                }


def keep_earlier(run: LessonRun, where: dict) -> None:
    """Not running the modules (``--kernel-runner none``) keeps what they measured before, and where.

    The run is clean, so its file is replaced whole: the earlier kernel figures and logs are
    carried into it, with the ``kernel_run`` that says where they were measured.
    """
    earlier = run.previous.get("measurements", {})
    logs = run.previous.get("captures", {})
    prefixes = tuple(f"{run.lesson.name}/{name}." for module in run.lesson.modules for name in module.measures)
    prefixes += (f"{run.lesson.name}/user.",) if run.lesson.guest_runs else ()
    kept = {key: value for key, value in earlier.items() if key.startswith(prefixes) and value.get("status") == "ok"}
    run.measurements.update(kept)
    modules = tuple(f"{run.lesson.name}/{module.name}." for module in run.lesson.modules)
    run.captures.update({key: value for key, value in logs.items() if key.startswith(modules)})
    # A trace's call graphs are its only output: kept with where they were taken, like figures.
    traces = tuple(f"{run.lesson.name}/{trace.name}." for trace in run.lesson.traces)
    graphs = {key: value for key, value in logs.items() if traces and key.startswith(traces)}
    run.captures.update(graphs)
    if (kept or graphs) and run.previous.get("kernel_run"):
        run.kernel = {"inputs_key": run.kernel.get("inputs_key", ""), **run.previous["kernel_run"]}
    else:
        run.kernel.update(where)


def cannot_start(runs: list[LessonRun], where: dict, reason: str, progress: Progress, built: bool = False) -> None:
    """The runner could not start: a failure of each lesson, which keeps the figures it measured before.

    Only a figure the lesson never had gets a placeholder saying why, so that its page explains
    the gap; where the kept figures came from stays as it was (``kernel_run``).
    """
    for run in runs:
        earlier = run.previous.get("kernel_run") or {"runner": where["runner"], "unavailable": reason}
        run.kernel = {"inputs_key": run.kernel.get("inputs_key", ""), **earlier}
        run.fail("run", "kernel modules", reason)
        not_run(run, reason, keep=run.previous, built=built)
    progress(f"  kernel FAILED: {reason}")


def not_run(run: LessonRun, reason: str, keep: dict | None = None, built: bool = False) -> None:
    """Record every measurement the lesson's modules would make as not run, with why (outputs too).

    Measurements and captures present in ``keep`` (the lesson's previous file) are left alone;
    with ``built``, the modules' expected build errors were already captured.
    """
    kept = (keep or {}).get("measurements", {}), (keep or {}).get("captures", {})

    def note(table: dict, earlier: dict, key: str, value: dict) -> None:
        if key not in earlier and key not in table:
            table[key] = value

    for trace in run.lesson.traces:
        for kind in trace.files:
            text = {"text": f"(not traced: {reason})", "measured_at": store.now()}
            note(run.captures, kept[1], f"{run.lesson.name}/{trace.name}.{kind}", text)
    for module in run.lesson.modules:
        if module.expect == "build-error":
            if not built:
                text = {"text": f"(not built: {reason})", "measured_at": store.now()}
                note(run.captures, kept[1], f"{run.lesson.name}/{module.name}.build", text)
            continue
        for stdin in module.stdin:
            capture_id = measurement_id(run.lesson, module.name, stdin, module.stdin) + ".log"
            note(run.captures, kept[1], capture_id, {"text": f"(not run: {reason})", "measured_at": store.now()})
            for name in module.measures:
                skipped = {"status": "skipped", "reason": f"not run: {reason}", "stdin": stdin}
                key = measurement_id(run.lesson, name, stdin, module.stdin)
                note(run.measurements, kept[0], key, {**skipped, "measured_at": store.now()})


def why_not_started(runner: str, error: Exception) -> str:
    return f"{'the VM' if runner == 'vm' else f'the {runner} runner'} cannot start: {error}"
