"""Grading a class's submissions in the disposable VM: the grade comes from the instructor's own run.

``invoke grade FOLDER`` reads every ``*.tar.gz`` there (:mod:`course.classroom.submission`), lays
each student's exercise sources out beside a copy of the course's headers, and boots the
guest kernel once for all of them: the guest compiles and runs each variant and each
reference solution (:mod:`course.classroom.grading_guest`). Student code is untrusted: it is compiled
and run only in the VM, each job as a user of its own, never on this host. The sources are
laid out here in a folder only this user may read (the guest's helper copies them as root),
and the jobs are named ``reference|...`` and ``student/NAME|...``: no student's name can take
the reference solution's place. Under ``tcg-icount`` (the
default) a cost is counted in guest instructions, the same on every host and fair between
students.

Each student's grade is stored in ``<results>/_grades/STUDENT.json`` (atomically): per exercise
the status the check line gives (``works``, ``not yet``, ``does not compile``, ``crashed``,
``cannot be checked here``, ``not submitted``), the cost of each measurement beside the
solution's in the same boot, and whether the source is the solution's (comments, spacing
and the header's path aside). Nothing the archive says about itself (a status in the set,
say) is read: a forged status changes nothing.
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from course.classroom import grading_guest
from course.classroom.submission import RESERVED_NAMES, Submission, SubmissionError
from course.classroom.submission import read as read_submission
from course.kernel import kernel_build, vm
from course.measure import lessons as lesson_catalog
from course.measure import protocol
from course.measure.stats import summarize
from course.publish.report import printable
from course.results import store
from course.results.layout import Layout
from course.results.progress import GRADES

#: The statuses a grade can give, in the order a table shows them.
STATUSES = ("works", "not yet", "does not compile", "crashed", "cannot be checked here", "not submitted")

#: The acceleration grading uses unless told otherwise: costs counted in instructions.
DEFAULT_ACCELERATION = "tcg-icount"

#: The most samples a graded program takes. Its first argument is its sample count, as every program of the
#: course reads it (code/user/common/stamp.h, ``sample_count``); a lesson's runs take more (lesson 3's
#: exercise 100,000). A grade is a status and a median beside the solution's, both counted in guest
#: instructions in one boot: a sample differs from the next only where a timer tick lands in it, and
#: the median does not see those. Each sample costs emulation time (about a second a run here at 100,000).
GRADING_SAMPLES = 10_000

Progress = Callable[[str], None]


class GradingError(RuntimeError):
    """Grading cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Exercise:
    """One exercise to grade: where its variant and its solution are, and how it runs."""

    key: str  # "03-timing/onebyte"
    variant: str  # "code/user/03-timing/exercise-onebyte.c"
    solution: str  # "code/user/03-timing/solutions/exercise-onebyte.c"
    args: tuple[str, ...]  # as grading passes them (graded_args)
    stdin: tuple[str, ...]


def grades_folder(layout: Layout) -> Path:
    return layout.results / GRADES


def graded_args(args: tuple[str, ...]) -> tuple[str, ...]:
    """An exercise's arguments as grading passes them: the sample count (the first) at most GRADING_SAMPLES."""
    if args and args[0].isdecimal() and int(args[0]) > GRADING_SAMPLES:
        return (str(GRADING_SAMPLES), *args[1:])
    return args


def exercises(layout: Layout, numbers: list[int] | None = None) -> list[Exercise]:
    """The course's exercises (of the lessons ``numbers``, or all); grading needs their solutions."""
    found = []
    for lesson in lesson_catalog.discover(layout):
        if numbers and lesson.number not in numbers:
            continue
        for spec in lesson.exercises:
            if spec.solution is None:
                raise GradingError(
                    f"{lesson.name}'s exercise {spec.name} has no solution here (a student copy?); "
                    "grade in the course's full checkout"
                )
            found.append(
                Exercise(
                    key=f"{lesson.name}/{spec.name}",
                    variant=lesson.source(spec.program).relative_to(layout.root).as_posix(),
                    solution=lesson.source(spec.solution).relative_to(layout.root).as_posix(),
                    args=graded_args(spec.args),
                    stdin=spec.stdin,
                )
            )
    if not found:
        raise GradingError("no exercise to grade" + (f" in lessons {numbers}" if numbers else ""))
    return found


def normalized(source: str) -> str:
    """A C source without its comments, its spacing or the folders of its includes: what a copy keeps."""
    text = re.sub(r"/\*.*?\*/", "", source, flags=re.DOTALL)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'#include\s*"(?:[^"/]*/)*([^"/]+)"', r'#include"\1"', text)
    return re.sub(r"\s+", "", text)


def read_folder(layout: Layout, folder: Path, progress: Progress) -> tuple[list[Submission], list[str]]:
    """The submissions of ``folder`` that can be read, and one line for each refused archive."""
    if not folder.is_dir():
        raise GradingError(f"{folder} is not a folder; put the students' submissions (*.tar.gz) in one")
    archives = sorted(folder.glob("*.tar.gz"))
    if not archives:
        raise GradingError(f"no submission (*.tar.gz) in {folder}; students make theirs with invoke submit")
    read, refused, seen = [], [], {}
    for path in archives:
        try:
            submission = read_submission(path, layout)
        except (SubmissionError, OSError) as error:
            refused.append(printable(f"{path.name}: {error}"))
            continue
        if submission.student in seen:
            refused.append(
                printable(f"{path.name}: {submission.student} also submitted {seen[submission.student]}; keep one")
            )
            continue
        seen[submission.student] = path.name
        read.append(submission)
    progress(f"grade: {len(read)} submissions read, {len(refused)} refused")
    return read, refused


#: The job name of the course's own solution; a student's is ``student/NAME``: the two never meet.
REFERENCE = "reference"
assert REFERENCE in RESERVED_NAMES


def job_name(student: str | None) -> str:
    """The name of a student's jobs (and of their folder in the tree), or of the reference solution's (None)."""
    return REFERENCE if student is None else f"student/{student}"


def _new_tree(layout: Layout) -> Path:
    """A folder for one grading's sources that only this user may read (the guest's jobs run as other uids)."""
    parent = layout.build / "grade"
    parent.mkdir(parents=True, exist_ok=True)
    tree = parent / f"run-{secrets.token_hex(4)}"
    tree.mkdir(mode=0o700)
    tree.chmod(0o700)  # whatever the umask
    return tree


def _lay_out(layout: Layout, tree: Path, who: str, files: dict[str, bytes]) -> None:
    """``files`` (paths from a checkout's root) under ``tree/who``, with the course's shared headers beside them."""
    for header in sorted((layout.user_code / "common").glob("*.h")):
        target = tree / who / header.relative_to(layout.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(header, target)
    for relative, data in files.items():
        target = tree / who / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _jobs(tree: Path, exercise: Exercise, who: str, source: str) -> list[dict]:
    return [
        {
            "id": f"{who}|{exercise.key}|{stdin}",  # who: job_name(...), never a bare student name
            "who": who,
            "exercise": exercise.key,
            "tree": str(tree / who),
            "source": source,
            "args": list(exercise.args),
            "stdin": stdin,
            "timeout": 300,
            "shown_as": f"{who}/{Path(source).stem}",
        }
        for stdin in exercise.stdin
    ]


def outcome(result: dict | None, name: str) -> tuple[dict, dict[str, float]]:
    """A job's status (``{status, detail}``) and its medians by measurement, from what the guest sent back."""
    if result is None:
        return {"status": "crashed", "detail": "the VM stopped before this ran", "grading_failed": True}, {}
    if result.get("helper_error"):
        return {"status": "crashed", "detail": str(result["helper_error"])[:300], "grading_failed": True}, {}
    if not result.get("built"):
        errors = [line for line in str(result.get("compiler", "")).splitlines() if "error" in line]
        return {"status": "does not compile", "detail": (errors or ["the compiler refused it"])[0][-300:]}, {}
    if not result.get("ok"):
        return {"status": "crashed", "detail": f"it {result.get('ended', 'ended badly')}"[:300]}, {}
    try:
        parsed = protocol.parse(str(result.get("stdout", "")))
    except protocol.ProtocolError as error:
        return {"status": "not yet", "detail": f"its output does not parse: {error}"[:300]}, {}
    check = parsed.checks.get(name)
    if check is None:
        return {"status": "not yet", "detail": "the program printed no check line"}, {}
    status = {"ok": "works", "fail": "not yet", "na": "cannot be checked here"}[check[0]]
    return {"status": status, "detail": check[1][:300]}, medians(parsed)


def medians(parsed: protocol.ProgramOutput) -> dict[str, float]:
    """Each measurement's median, less the one it subtracts (the stamp pair); the stamp pair itself left out."""
    found = {}
    for name, raw in parsed.measurements.items():
        if "stamp-pair" in name or not raw.counts:
            continue
        overhead = 0.0
        if raw.subtract and raw.subtract in parsed.measurements and parsed.measurements[raw.subtract].counts:
            overhead = summarize(parsed.measurements[raw.subtract].counts).median
        found[name] = summarize(raw.counts, overhead, raw.per).median
    return found


def grade(
    layout: Layout,
    folder: Path,
    *,
    numbers: list[int] | None = None,
    acceleration: str = DEFAULT_ACCELERATION,
    release: str = "",
    progress: Progress = print,
) -> tuple[list[dict], list[str]]:
    """Grade every submission of ``folder`` in one VM boot; store and return the grades, and the refused lines."""
    wanted = exercises(layout, numbers)
    submissions, refused = read_folder(layout, folder, progress)
    if not submissions:
        raise GradingError("no submission could be read:\n" + "\n".join(refused))  # each line printable
    kernel = kernel_build.find_kernel(release)
    acceleration, _ = vm.choose_acceleration(layout, kernel, acceleration, progress)
    tree = _new_tree(layout)
    try:
        solutions = {exercise.solution: (layout.root / exercise.solution).read_bytes() for exercise in wanted}
        jobs = plan(layout, tree, wanted, solutions, submissions)
        progress(f"grade: {len(jobs)} builds and runs in one VM boot ({kernel.release}, {acceleration})")
        boot = vm.run_jobs(
            layout, kernel, jobs, acceleration, progress, timeout=300 + 120 * len(jobs), helper=grading_guest.command
        )
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    by_id = {result.get("id"): result for result in boot.jobs if isinstance(result, dict)}
    where = {
        "runner": "vm",
        "acceleration": acceleration,
        "guest_kernel": kernel.release,
        "unit": vm.UNITS[acceleration],
    }
    reference = _reference(wanted, by_id, boot, where)
    grades = [_grade_of(submission, wanted, by_id, reference, solutions, where) for submission in submissions]
    for record in grades:
        store.write_json(grades_folder(layout) / f"{record['student']}.json", record)
    return grades, refused


def plan(
    layout: Layout, tree: Path, wanted: list[Exercise], solutions: dict[str, bytes], submissions: list[Submission]
) -> list[dict]:
    """The guest's jobs: the reference solution's first, then each student's; their sources laid out in ``tree``."""
    _lay_out(layout, tree, job_name(None), solutions)
    jobs = [job for exercise in wanted for job in _jobs(tree, exercise, job_name(None), exercise.solution)]
    for submission in submissions:
        who = job_name(submission.student)
        _lay_out(layout, tree, who, submission.sources)
        for exercise in wanted:
            if exercise.variant in submission.sources:
                jobs += _jobs(tree, exercise, who, exercise.variant)
    return jobs


def _reference(wanted: list[Exercise], by_id: dict, boot: vm.VmRun, where: dict) -> dict[str, dict[str, float]]:
    """The solutions' medians by exercise; a solution that fails in the guest stops the grading (nothing stored)."""
    reference = {}
    for exercise in wanted:
        figures: dict[str, float] = {}
        for stdin in exercise.stdin:
            state, found = outcome(by_id.get(f"{job_name(None)}|{exercise.key}|{stdin}"), exercise.key.split("/", 1)[1])
            if state["status"] not in ("works", "cannot be checked here"):
                tail = boot.console.strip().splitlines()[-3:] if boot.exit_status != 0 else []
                raise GradingError(
                    f"the reference solution of {exercise.key} {state['status']} in the VM ({state['detail']}); "
                    f"no grade was stored{': ' + ' / '.join(tail) if tail else ''}"
                )
            figures.update({f"{name}.{stdin}" if len(exercise.stdin) > 1 else name: v for name, v in found.items()})
        reference[exercise.key] = figures
    return reference


def _grade_of(
    submission: Submission,
    wanted: list[Exercise],
    by_id: dict,
    reference: dict[str, dict[str, float]],
    solutions: dict[str, bytes],
    where: dict,
) -> dict:
    graded = {}
    for exercise in wanted:
        source = submission.sources.get(exercise.variant)
        if source is None:
            graded[exercise.key] = {"status": "not submitted", "detail": f"{exercise.variant} is not in the archive"}
            continue
        states, figures = [], {}
        for stdin in exercise.stdin:
            state, found = outcome(
                by_id.get(f"{job_name(submission.student)}|{exercise.key}|{stdin}"), exercise.key.split("/")[1]
            )
            states.append(state)
            figures.update({f"{name}.{stdin}" if len(exercise.stdin) > 1 else name: v for name, v in found.items()})
        # The worst status; between two crashes, the one grading failed on (it makes invoke grade fail).
        worst = max(states, key=lambda state: (STATUSES.index(state["status"]), bool(state.get("grading_failed"))))
        solution = reference[exercise.key]
        cost = {
            name: {"yours": value, "solution": solution[name], "ratio": round(value / solution[name], 3)}
            for name, value in sorted(figures.items())
            if name in solution and solution[name] > 0
        }
        text = source.decode("utf-8", "replace")
        same = normalized(text) == normalized(solutions[exercise.solution].decode("utf-8", "replace"))
        graded[exercise.key] = {**worst, "cost": cost, "same_as_solution": same}
    return {
        "schema": 1,
        "kind": "graded",
        "student": submission.student,
        "submitted_at": submission.submitted_at,
        "graded_at": store.now(),
        "archive": submission.archive.name,
        "where": where,
        "exercises": graded,
    }
