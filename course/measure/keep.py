"""Which programs a student's rerun of one lesson keeps: those whose figures are still what a run would give.

A student's loop is "edit the exercise, rerun, look": ``invoke lesson N`` reruns the exercise and its
solution always, and keeps each other program's stored figures (with their own dates) while the
program's own sources are those its figures record and nothing else that shapes them changed (the
caller compares that part, :func:`course.pipeline.setting_key`). A derived figure never mixes runs:
a kept program whose figures a derivation sets beside a rerun one's is rerun with it.
"""

from __future__ import annotations

from collections.abc import Iterable

from course.measure.lesson_run import LessonRun
from course.results.derive import REFERENCE
from course.results.layout import Layout

#: Prefixes of an exercise's figures and its solution's (``03-timing/exercise.onebyte.read-1``): always rerun.
EXERCISE_PREFIXES = ("exercise.", "solution.")


def own_figures(layout: Layout, run: LessonRun, program: str) -> list[str]:
    """The previous run's figures of ``program``: the measurements that record its own source file."""
    source = str(run.lesson.source(program).relative_to(layout.root))
    found = []
    for key, measurement in run.previous.get("measurements", {}).items():
        if measurement.get("derived") or key.split("/", 1)[-1].startswith(EXERCISE_PREFIXES):
            continue
        if source in (measurement.get("sources") or {}):
            found.append(key)
    return found


def derivation_inputs(spec: dict) -> list[str]:
    """The figures a ``[[derive]]`` entry reads."""
    if spec.get("kind") == "slope":
        return [spec["points"].format(size=size) for size in spec["sizes"]]
    return [match[2] for match in REFERENCE.finditer(spec.get("expression", ""))]


def keepable(layout: Layout, run: LessonRun) -> dict[str, list[str]]:
    """The programs whose stored figures this rerun may keep, each with its figures' ids.

    A program is kept only when it compiled now, every stored figure of it was measured (status
    "ok": a skip, such as a loaded machine's, is tried again) and records exactly the sources it is
    built from now, and each kind of standard input it runs with left figures.
    """
    lesson = run.lesson
    if lesson.in_vm or run.previous.get("failures"):
        return {}  # a lesson with guest work reruns whole (one boot); a failed run is retried whole
    kept: dict[str, list[str]] = {}
    measurements = run.previous.get("measurements", {})
    for spec in lesson.runs:
        program = run.programs.get(spec.program)
        if program is None or spec.program in kept:
            continue
        figures = own_figures(layout, run, spec.program)
        fresh = bool(figures) and all(
            measurements[key].get("status") == "ok" and measurements[key].get("sources") == program.sources
            for key in figures
        )
        # Figures of several kinds of input end in the kind (``.devnull``): each kind must have left some.
        every_input = len(spec.stdin) < 2 or all(
            any(key.endswith(f".{stdin}") for key in figures) for stdin in spec.stdin
        )
        if fresh and every_input and _spec_ran_once(lesson.runs, spec.program):
            kept[spec.program] = figures
    return _without_mixed_derivations(run, kept)


def _spec_ran_once(runs: Iterable, program: str) -> bool:
    """A program run by two ``[[run]]`` entries cannot tell its figures apart by source: rerun it."""
    return sum(1 for spec in runs if spec.program == program) == 1


def _without_mixed_derivations(run: LessonRun, kept: dict[str, list[str]]) -> dict[str, list[str]]:
    """Drop kept programs until no derived figure reads a kept figure beside a rerun one."""
    lesson = run.lesson
    kept = dict(kept)
    owner = {key: program for program, keys in kept.items() for key in keys}
    derived_inputs = {f"{lesson.name}/{spec['name']}": derivation_inputs(spec) for spec in lesson.derived}

    def sources_of(key: str, seen: frozenset = frozenset()) -> set[str]:
        """Which kept program (or "rerun") each figure comes from, through derived figures of the lesson."""
        if key in derived_inputs and key not in seen:
            return {part for used in derived_inputs[key] for part in sources_of(used, seen | {key})}
        if not key.startswith(f"{lesson.name}/"):
            return set()  # another lesson's figure: not this rerun's concern
        return {owner.get(key, "rerun")}

    changed = True
    while changed:
        changed = False
        for key in derived_inputs:
            origins = sources_of(key)
            if "rerun" in origins and len(origins) > 1:  # kept figures beside fresh ones
                for program in origins - {"rerun"}:
                    for figure in kept.pop(program, []):
                        owner.pop(figure, None)
                    changed = True
    return kept
