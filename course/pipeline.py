"""Measuring a lesson: build its programs, run them, summarize and store the figures.

This is the one place that knows the order of the steps; each step lives in its own
module (:mod:`course.build`, :mod:`course.runners`, :mod:`course.protocol`,
:mod:`course.stats`, :mod:`course.store`).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from course import disassemble, fingerprint, protocol, store
from course.build import BuildError, Program, build_program
from course.layout import Layout
from course.lessons import Lesson, RunSpec
from course.runners import RunOutcome, run_on_host
from course.stats import summarize

Progress = Callable[[str], None]


@dataclass
class LessonReport:
    """What a lesson's run did: its stored file, whether it was reused, its steps."""

    lesson: Lesson
    stored: dict
    previous: dict
    cached: bool
    steps: list[dict] = field(default_factory=list)

    @property
    def failures(self) -> list[dict]:
        return [] if self.cached else self.stored.get("failures", [])


def open_set(layout: Layout, set_name: str | None = None, label: str | None = None) -> Path:
    """This machine's result set folder, created or refreshed with its provenance."""
    machine = fingerprint.machine()
    path = layout.results / (fingerprint.slug(set_name) if set_name else fingerprint.set_id(machine))
    info: dict = {"kind": "measured", "machine": machine}
    if label:
        info["label"] = label
    previous = store.read_json(path / store.SET_FILE) if (path / store.SET_FILE).is_file() else {}
    # The TSC rate is measured by the programs; keep the last one until a new one arrives.
    machine["tsc_hz"] = previous.get("machine", {}).get("tsc_hz")
    store.save_set_info(path, info)
    return path


def measurement_id(lesson: Lesson, spec: RunSpec, name: str, stdin: str) -> str:
    """``03-timing/read.devnull``: lesson, measurement, and the kind of standard input when it varies."""
    return f"{lesson.name}/{name}" + (f".{stdin}" if len(spec.stdin) > 1 else "")


def inputs_key(lesson: Lesson, programs: dict[str, Program], machine: dict) -> str:
    """A hash of everything that could change the lesson's figures: reuse results only if it matches."""
    parts = {
        "programs": {name: program.inputs_hash for name, program in sorted(programs.items())},
        "spec": (lesson.code_dir / "lesson.toml").read_text(encoding="utf-8"),
        "kernel": machine.get("kernel_version", "") + machine.get("kernel_release", ""),
        "cpu": [machine.get("cpu_model"), machine.get("microcode")],
        "runner": "host",
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def measure_lesson(
    layout: Layout, lesson: Lesson, set_path: Path, *, force: bool = False, progress: Progress = print
) -> LessonReport:
    """Build and run one lesson's programs and store the results in ``set_path``.

    Results are reused, without running anything, when nothing that shapes them changed
    (sources, compiler, flags, kernel, machine) unless ``force`` is set.
    """
    machine = store.read_json(set_path / store.SET_FILE)["machine"]
    previous_path = set_path / f"{lesson.name}.json"
    previous = store.read_json(previous_path) if previous_path.is_file() else {}
    steps: list[dict] = []
    failures: list[dict] = []

    programs: dict[str, Program] = {}
    for name in _programs_used(lesson):
        started = time.monotonic()
        try:
            programs[name] = build_program(layout, lesson, name)
        except BuildError as error:
            failures.append(_failure("build", name, str(error), error.log))
            progress(f"  build  {name:<20} FAILED: {error}")
            continue
        step = _step(f"build {name}", started, cached=not programs[name].rebuilt)
        steps.append(step)
        progress(f"  build  {name:<20} {step['seconds']:6.2f} s{' (unchanged)' if step['cached'] else ''}")

    key = inputs_key(lesson, programs, machine)
    if not force and not failures and previous.get("inputs_key") == key and not previous.get("failures"):
        progress(f"  reuse  {lesson.name} results (sources, compiler, kernel and machine unchanged)")
        return LessonReport(lesson, previous, previous, cached=True, steps=steps)

    measurements: dict[str, dict] = {}
    captures: dict[str, dict] = {}
    tsc_rates: list[float] = []
    for spec in lesson.runs:
        program = programs.get(spec.program)
        if program is None:
            continue
        for stdin in spec.stdin:
            started = time.monotonic()
            progress(f"  run    {spec.program:<20} stdin={stdin} ...")
            outcome = run_on_host(
                program.binary,
                spec.args,
                stdin,
                layout.build / "scratch",
                spec.timeout,
                shown_as=os.path.relpath(program.binary, layout.root),
            )
            steps.append(_step(f"run {spec.program} ({stdin})", started))
            found = _collect(lesson, spec, stdin, program, outcome, failures)
            measurements.update(found.measurements)
            if found.tsc_hz:
                tsc_rates.append(found.tsc_hz)
            if found.text is not None:
                captures[measurement_id(lesson, spec, spec.program, stdin) + ".output"] = found.text

    for spec in lesson.disassemblies:
        started = time.monotonic()
        try:
            if spec.program:
                if spec.program not in programs:
                    continue
                listing, command = disassemble.of_program(programs[spec.program].binary, spec.symbol)
            else:
                listing, command = disassemble.of_library(spec.library or "", spec.symbol)
        except disassemble.DisassemblyError as error:
            failures.append(_failure("disassemble", spec.id, str(error), ""))
            continue
        captures[f"{lesson.name}/{spec.id}"] = {"text": listing, "command": command, "measured_at": store.now()}
        steps.append(_step(f"disassemble {spec.id}", started))

    if tsc_rates:
        _record_tsc_rate(set_path, statistics.median(tsc_rates))
    new = {
        "measured_at": store.now(),
        "runner": "host",
        "inputs_key": key if not failures else "",
        "compiler": next(iter(programs.values())).compiler if programs else fingerprint.compiler_version(),
        "cflags": list(next(iter(programs.values())).cflags) if programs else [],
        "sources": {path: digest for program in programs.values() for path, digest in program.sources.items()},
        "measurements": measurements,
        "captures": captures,
        "failures": failures,
        "steps": steps,
    }
    stored = store.save_lesson(set_path, lesson.name, new)
    return LessonReport(lesson, stored, previous, cached=False, steps=steps)


@dataclass
class _Collected:
    measurements: dict[str, dict]
    tsc_hz: float | None
    text: dict | None


def _collect(
    lesson: Lesson, spec: RunSpec, stdin: str, program: Program, outcome: RunOutcome, failures: list[dict]
) -> _Collected:
    """Turn one run's output into stored measurements; record a failure if it went wrong."""
    what = f"{spec.program} (stdin={stdin})"
    if not outcome.ok:
        ended = "was stopped (timeout)" if outcome.exit_status is None else f"exited with {outcome.exit_status}"
        failures.append(_failure("run", what, f"{outcome.command} {ended}", outcome.stdout + outcome.stderr))
        return _Collected({}, None, None)
    try:
        parsed = protocol.parse(outcome.stdout)
    except protocol.ProtocolError as error:
        failures.append(_failure("parse", what, str(error), outcome.stdout[-4000:]))
        return _Collected({}, None, None)

    tsc_hz = float(parsed.meta["tsc_hz"]) if "tsc_hz" in parsed.meta else None
    measured_at = store.now()
    sources = program.sources
    found: dict[str, dict] = {}
    for name, raw in parsed.measurements.items():
        overhead = 0
        if raw.subtract:
            base = parsed.measurements.get(raw.subtract)
            if base is None:
                failures.append(_failure("parse", what, f"{name} subtracts unknown measurement {raw.subtract}", ""))
                continue
            overhead = min(base.counts)
        summary = summarize(raw.counts, overhead)
        found[measurement_id(lesson, spec, name, stdin)] = {
            "status": "ok",
            "unit": raw.unit,
            "samples": summary.samples,
            "min": summary.min,
            "median": summary.median,
            "p90": summary.p90,
            "p99": summary.p99,
            "max": summary.max,
            "overhead": {
                "ticks": overhead,
                "from": measurement_id(lesson, spec, raw.subtract, stdin) if raw.subtract else None,
            },
            "histogram": summary.histogram,
            "tsc_hz": tsc_hz,
            "stdin": stdin,
            "command": outcome.command,
            "exit_status": outcome.exit_status,
            "measured_at": measured_at,
            "sources": sources,
            "meta": {k: v for k, v in parsed.meta.items() if k != "tsc_hz"},
        }
    for name, reason in parsed.skipped.items():
        found[measurement_id(lesson, spec, name, stdin)] = {
            "status": "skipped",
            "reason": reason,
            "stdin": stdin,
            "command": outcome.command,
            "exit_status": outcome.exit_status,
            "measured_at": measured_at,
            "sources": sources,
        }
    text = {"text": "\n".join(parsed.text).strip("\n"), "command": outcome.command, "measured_at": measured_at}
    return _Collected(found, tsc_hz, text)


def _programs_used(lesson: Lesson) -> list[str]:
    names = [spec.program for spec in lesson.runs] + [d.program for d in lesson.disassemblies if d.program]
    return list(dict.fromkeys(names))


def _record_tsc_rate(set_path: Path, tsc_hz: float) -> None:
    info = store.read_json(set_path / store.SET_FILE)
    info["machine"]["tsc_hz"] = round(tsc_hz)
    store.save_set_info(set_path, info)


def _failure(step: str, what: str, message: str, log: str) -> dict:
    return {"step": step, "what": what, "message": message, "log": log[-20000:], "at": store.now()}


def _step(name: str, started: float, cached: bool = False) -> dict:
    return {"name": name, "seconds": round(time.monotonic() - started, 3), "cached": cached}
