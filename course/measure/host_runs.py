"""The host side of a lesson's run: build its programs, run them and its exercises here, capture disassemblies."""

from __future__ import annotations

import os
import time

from course.measure import disassemble, protocol
from course.measure.build import BuildError, build_program, file_hash
from course.measure.lesson_run import LessonRun, Progress, build_into, measurement_id, parse_or_fail, record, timed_step
from course.measure.runners import FLOODED, OUTPUT_LIMIT_BYTES, run_on_host
from course.results import store
from course.results.layout import Layout


def build_programs(layout: Layout, run: LessonRun, progress: Progress) -> None:
    lesson = run.lesson
    # An exercise's sources belong to the inputs: editing your variant reruns the lesson.
    for spec in lesson.exercises:
        for program in (spec.program, spec.solution):
            if program is None:  # a student copy: no solution
                continue
            source = lesson.source(program)
            run.sources[str(source.relative_to(layout.root))] = file_hash(source)
    libs = {spec.program: spec.libs for spec in lesson.runs}
    names = [spec.program for spec in lesson.runs] + [d.program for d in lesson.disassemblies if d.program]
    for name in dict.fromkeys(names):
        build_into(layout, run, lesson, name, progress, libs=libs.get(name, ()))


def run_programs(layout: Layout, run: LessonRun, progress: Progress) -> None:
    """Run each program of the lesson, or carry over the figures of those ``run.kept`` names."""
    lesson = run.lesson
    ways = [spec.program for spec in lesson.runs]  # a program run several ways: its lines name the way
    for spec in lesson.runs:
        program = run.programs.get(spec.program)
        if program is None:
            continue
        if spec.program in run.kept:
            keep_figures(run, spec.program, spec.stdin, progress)
            continue
        for stdin in spec.stdin:
            started = time.monotonic()
            also = f" files={','.join(spec.files)}" if spec.files else ""
            also += f" args={' '.join(spec.args)}" if ways.count(spec.program) > 1 else ""  # lesson 9's four servers
            progress(f"  run    {spec.program:<20} stdin={stdin}{also} ...")
            outcome = run_on_host(
                program.binary,
                spec.args,
                stdin,
                layout.build / "scratch",
                spec.timeout,
                shown_as=os.path.relpath(program.binary, layout.root),
                files=spec.files,
            )
            run.steps.append(timed_step(f"run {spec.program} ({stdin})", started))
            what = f"{spec.program} (stdin={stdin})"
            if not outcome.ok:
                run.fail("run", what, f"{outcome.command} {outcome.ended}", outcome.stdout + outcome.stderr)
                continue
            context = {
                "stdin": stdin,
                **({"files": list(spec.files)} if spec.files else {}),
                "command": outcome.command,
                "exit_status": outcome.exit_status,
                "sources": program.sources,
                "runner": "host",
            }
            parsed = parse_or_fail(run, what, outcome.stdout)
            if parsed is None:
                continue
            record(run, spec.stdin, stdin, parsed, context)
            run.captures[measurement_id(lesson, spec.program, stdin, spec.stdin) + ".output"] = {
                "text": "\n".join(parsed.text).strip("\n"),
                "command": outcome.command,
                "measured_at": store.now(),
            }


def keep_figures(run: LessonRun, program: str, kinds: tuple[str, ...], progress: Progress) -> None:
    """Carry a kept program's stored figures and outputs over unchanged, each with its own date."""
    lesson = run.lesson
    previous = run.previous
    for key in run.kept[program]:
        run.measurements[key] = previous["measurements"][key]
    for stdin in kinds:
        output = measurement_id(lesson, program, stdin, kinds) + ".output"
        if output in previous.get("captures", {}):
            run.captures[output] = previous["captures"][output]
        run.steps.append({"name": f"run {program} ({stdin})", "seconds": 0.0, "cached": True})
    when = min(previous["measurements"][key].get("measured_at", "") for key in run.kept[program])
    progress(f"  keep   {program:<20} figures of {when} (sources unchanged)")


#: How long a student's variant (or its solution) may run before it is stopped.
EXERCISE_SECONDS = 120


def stopped_why(stopped: str) -> str:
    """Why a variant was stopped: ``timeout after 120 s``, ``output over 4 MiB``."""
    if stopped == FLOODED:
        return f"output over {OUTPUT_LIMIT_BYTES // (1024 * 1024)} MiB"
    return f"timeout after {EXERCISE_SECONDS:g} s"


def run_exercises(layout: Layout, run: LessonRun, progress: Progress) -> None:
    """Build and run each exercise's student variant and its solution; record both checks and figures.

    A student's variant that does not compile, crashes or fails its check is the exercise's
    status, not a failure of the course; the solution failing is one.
    """
    lesson = run.lesson
    for spec in lesson.exercises:
        outcome: dict[str, dict] = {}
        for role, program in (("solution", spec.solution), ("yours", spec.program)):
            if program is None:  # a student copy has no solution to measure beside yours
                continue
            prefix = f"{'solution' if role == 'solution' else 'exercise'}.{spec.name}."
            try:
                built = build_program(layout, lesson, program)
            except BuildError as error:
                errors = [line for line in error.log.splitlines() if "error" in line]
                outcome[role] = {"status": "does not compile", "detail": (errors or [str(error)])[0][-300:]}
                if role == "solution":
                    run.fail("build", program, str(error), error.log)
                continue
            for stdin in spec.stdin:
                progress(f"  check  {program:<20} stdin={stdin} ...")
                started = time.monotonic()
                result = run_on_host(
                    built.binary,
                    spec.args,
                    stdin,
                    layout.build / "scratch",
                    EXERCISE_SECONDS,
                    shown_as=os.path.relpath(built.binary, layout.root),
                )
                run.steps.append(timed_step(f"exercise {program} ({stdin})", started))
                parsed, unparsed = None, ""
                if result.ok:
                    try:
                        parsed = protocol.parse(result.stdout)
                    except protocol.ProtocolError as error:  # a student's stray "course:" line
                        unparsed = str(error)
                check = parsed.checks.get(spec.name) if parsed else None
                if result.exit_status == 0 and not result.stopped and result.not_utf8:
                    state = {"status": "not yet", "detail": f"it {result.ended}"[:300]}
                elif result.stopped:  # ran too long or printed too much: why, in the status's own words
                    state = {"status": "stopped", "detail": f"stopped: {stopped_why(result.stopped)}"}
                elif not result.ok:
                    state = {"status": "crashed", "detail": f"{result.command} {result.ended}"[-300:]}
                elif unparsed:
                    state = {"status": "not yet", "detail": f"its output does not parse: {unparsed}"[:300]}
                elif check is None:
                    state = {"status": "not yet", "detail": "the program printed no check line"}
                else:
                    status = {"ok": "works", "fail": "not yet", "na": "cannot be checked here"}[check[0]]
                    state = {"status": status, "detail": check[1]}
                outcome[role] = state
                if role == "solution" and state["status"] not in ("works", "cannot be checked here"):
                    run.fail(
                        "check",
                        program,
                        f"the reference solution fails its own check: {state['detail']}",
                        result.stdout + result.stderr,
                    )
                if parsed is not None:
                    context = {
                        "stdin": stdin,
                        "command": result.command,
                        "exit_status": result.exit_status,
                        "sources": built.sources,
                        "runner": "host",
                    }
                    record(run, spec.stdin, stdin, parsed, context, prefix=prefix)
        run.exercises[spec.name] = outcome


def disassemble_captures(run: LessonRun) -> None:
    for spec in run.lesson.disassemblies:
        started = time.monotonic()
        try:
            if spec.program:
                if spec.program not in run.programs:
                    continue
                listing, command = disassemble.of_program(run.programs[spec.program].binary, spec.symbol)
            else:
                listing, command = disassemble.of_library(spec.library or "", spec.symbol)
        except disassemble.DisassemblyError as error:
            run.fail("disassemble", spec.id, str(error))
            continue
        run.captures[f"{run.lesson.name}/{spec.id}"] = {"text": listing, "command": command, "measured_at": store.now()}
        run.steps.append(timed_step(f"disassemble {spec.id}", started))
