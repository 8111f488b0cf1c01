"""What both runners share: the run of one lesson, its progress and failures, and how a figure is recorded.

The host side (:mod:`course.measure.host_runs`) and the guest side (:mod:`course.kernel.kernel_runs`)
fill one :class:`LessonRun` each lesson; :mod:`course.pipeline` orders their steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from course.measure import protocol
from course.measure.build import BuildError, Program, build_program
from course.measure.lessons import Lesson
from course.measure.stats import summarize
from course.results import store, validate
from course.results.layout import Layout

Progress = Callable[[str], None]


class MachineError(RuntimeError):
    """This machine cannot measure what the course measures; the message says what to do instead."""


@dataclass
class LessonReport:
    """What a lesson's run did: its stored file, whether it was reused, its steps."""

    lesson: Lesson
    stored: dict
    previous: dict
    cached: bool
    steps: list[dict] = field(default_factory=list)
    kept: dict[str, list[str]] = field(default_factory=dict)  # program -> its figures kept from an earlier run

    @property
    def kept_figures(self) -> set[str]:
        return {key for keys in self.kept.values() for key in keys}

    @property
    def failures(self) -> list[dict]:
        return [] if self.cached else self.stored.get("failures", [])


@dataclass
class LessonRun:
    """A lesson being measured: what it produced so far."""

    lesson: Lesson
    previous: dict
    programs: dict[str, Program] = field(default_factory=dict)
    measurements: dict[str, dict] = field(default_factory=dict)
    captures: dict[str, dict] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    tsc_rates: list[float] = field(default_factory=list)
    kernel: dict = field(default_factory=dict)  # runner, acceleration, guest kernel
    sources: dict[str, str] = field(default_factory=dict)
    exercises: dict[str, dict] = field(default_factory=dict)  # name -> {"yours": ..., "solution": ...}
    kernel_only: bool = False  # a kernel matrix's run: only what runs in the guest (course.matrix)
    kept: dict[str, list[str]] = field(default_factory=dict)  # program -> its figures kept (course.measure.keep)
    setting_key: str = ""  # what shapes its figures beside the sources (course.pipeline.setting_key)

    def fail(self, step: str, what: str, message: str, log: str = "") -> None:
        self.failures.append(failure(step, what, message, log))


def measurement_id(lesson: Lesson, name: str, stdin: str, kinds: tuple[str, ...]) -> str:
    """``03-timing/read.devnull``: lesson, measurement, and the kind of standard input when it varies."""
    return f"{lesson.name}/{name}" + (f".{stdin}" if len(kinds) > 1 else "")


def build_into(
    layout: Layout,
    run: LessonRun,
    owner: Lesson,
    name: str,
    progress: Progress,
    *,
    key: str = "",
    step_name: str = "",
    libs: tuple[str, ...] = (),
) -> None:
    """Compile ``owner``'s program ``name`` into ``run.programs[key or name]``, timing the step.

    A program that does not compile is recorded as the run's failure, not raised.
    """
    key = key or name
    started = time.monotonic()
    try:
        run.programs[key] = build_program(layout, owner, name, libs=libs)
    except BuildError as error:
        run.fail("build", key, str(error), error.log)
        progress(f"  build  {key:<20} FAILED: {error}")
        return
    step = timed_step(step_name or f"build {key}", started, cached=not run.programs[key].rebuilt)
    run.steps.append(step)
    progress(f"  build  {key:<20} {step['seconds']:6.2f} s{' (unchanged)' if step['cached'] else ''}")


def parse_or_fail(run: LessonRun, what: str, output: str) -> protocol.ProgramOutput | None:
    try:
        return protocol.parse(output)
    except protocol.ProtocolError as error:
        run.fail("parse", what, str(error), output[-4000:])
        return None


def record(
    run: LessonRun,
    kinds: tuple[str, ...],
    stdin: str,
    parsed: protocol.ProgramOutput,
    context: dict,
    unit: str | None = None,
    with_rate: bool = True,
    prefix: str = "",
) -> None:
    """Store the parsed measurements and skips of one run (a program's, or a module load's).

    ``prefix`` goes before each measurement's name (``exercise.int80.``), so that an
    exercise's figures and its solution's stand apart from the lesson's own.
    """
    lesson = run.lesson
    tsc_hz = float(parsed.meta["tsc_hz"]) if parsed.meta.get("tsc_hz") and with_rate else None
    if tsc_hz:
        run.tsc_rates.append(tsc_hz)
    measured_at = store.now()
    meta = {k: v for k, v in parsed.meta.items() if k not in ("tsc_hz", "done")}
    for name, raw in parsed.measurements.items():
        overhead = 0
        if raw.subtract:
            base = parsed.measurements.get(raw.subtract)
            if base is None:
                run.fail("parse", name, f"{name} subtracts unknown measurement {raw.subtract}")
                continue
            overhead = min(base.counts)
        summary = summarize(raw.counts, overhead, raw.per)
        key = measurement_id(lesson, prefix + name, stdin, kinds)
        measurement = {
            "status": "ok",
            "calls_per_sample": raw.per,
            # The runner's unit names what ticks count there; a count of calls or bytes keeps its own.
            "unit": (unit or raw.unit) if raw.unit == "ticks" else raw.unit,
            "samples": summary.samples,
            "min": summary.min,
            "median": summary.median,
            "p90": summary.p90,
            "p99": summary.p99,
            "max": summary.max,
            "overhead": {
                "ticks": overhead,
                "from": measurement_id(lesson, prefix + raw.subtract, stdin, kinds) if raw.subtract else None,
            },
            "histogram": summary.histogram,
            "tsc_hz": tsc_hz if raw.unit == "ticks" else None,  # a count of calls has no nanoseconds
            "measured_at": measured_at,
            "meta": meta,
            **context,
        }
        # What the store would refuse (a minimum below its subtracted stamp pair...) fails this
        # program's parse step here; stored, it would stop the whole run.
        try:
            validate.check_measurement(key, measurement)
        except validate.SchemaError as error:
            run.fail("parse", prefix + name, f"{key} cannot be stored: it {error}")
            continue
        run.measurements[key] = measurement
    for name, reason in parsed.skipped.items():
        run.measurements[measurement_id(lesson, prefix + name, stdin, kinds)] = {
            "status": "skipped",
            "reason": reason,
            "measured_at": measured_at,
            **context,
        }


def failure(step: str, what: str, message: str, log: str = "") -> dict:
    return {"step": step, "what": what, "message": message, "log": log[-20000:], "at": store.now()}


def timed_step(name: str, started: float, cached: bool = False) -> dict:
    return {"name": name, "seconds": round(time.monotonic() - started, 3), "cached": cached}
