"""Benchmarks of how quickly the course regenerates: cold, unchanged, lesson 3, the site, a class's site, a lab.

Each runs ``invoke`` as a student would, in scratch copies of this checkout's folders, and
keeps the median of its runs beside the goal it is held to (see :mod:`course.bench`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from course.kernel import guest_kernels
from course.kernel.kernel_build import KernelError
from course.lab import remote as lab
from course.lab.inventory import Host
from course.lab.local_sshd import LocalSshd
from course.measure import lessons as lesson_catalog
from course.measure.lesson_run import Progress
from course.results import store
from course.results.class_sets import import_class
from course.results.layout import Layout

#: The issue's goals: spreads in percent, durations in seconds.
GOALS = {
    "min-spread": 2.0,
    "median-spread": 3.0,
    "cold": 45.0,  # set-up done: every lesson built and run, the VM boot, the whole site
    "unchanged": 0.8,
    "lesson-3": 3.0,  # a student's rerun: the exercise and what changed run again, the pages of their figures rebuilt
    "lesson-3-site": 1.5,  # the site's share of it ("site updated in ... s")
    "guest-programs": 15.0,  # what the like-for-like user-space runs add to the VM boot
    "kernel-matrix": 90.0,  # three icount kernels, cold (invoke run --guest-kernels)
    "kernel-matrix-unchanged": 10.0,  # the same again: nothing rerun
    "site-clean": 8.0,  # invoke site into an empty build folder, from the stored results only
    "site-unchanged": 2.0,  # invoke site again, nothing changed
    "site-class": 15.0,  # invoke site into an empty build folder, 60 imported sets beside the stored ones
}


#: The class of ``class_site_speed``: issue 25's "a class of 60".
CLASS_SIZE = 60


#: Each duration is the median of this many runs (cold ones each in a folder of their own).
RUNS = 5


def run_timed(command: list[str], env: dict[str, str], cwd: Path, progress: Progress, what: str) -> tuple[float, str]:
    """Run ``command``; its wall-clock seconds and what it printed."""
    progress(f"  bench  {what}: {' '.join(command[2:])}")
    started = time.monotonic()
    finished = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if finished.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {finished.returncode}):\n{finished.stdout[-3000:]}{finished.stderr}")
    progress(f"  bench  {what}: {seconds:.1f} s")
    return seconds, finished.stdout


def timed(command: list[str], env: dict[str, str], cwd: Path, progress: Progress, what: str) -> float:
    return run_timed(command, env, cwd, progress, what)[0]


def _median_record(seconds: list[float], goal: str, command: list[str], what: str) -> dict:
    """Durations as a measurement: their median against ``GOALS[goal]``, every run kept."""
    return {
        "status": "ok",
        "unit": "s",
        "value": round(statistics.median(seconds), 2),
        "goal": GOALS[goal],
        "runs": [round(value, 2) for value in seconds],
        "runs_unit": "s",
        "command": " ".join(["invoke", *command[3:]]),
        "what": f"{what} (median of {len(seconds)} runs)",
        "measured_at": store.now(),
    }


def _timed_runs(
    layout: Layout,
    command: list[str],
    envs: Iterator[dict[str, str]],
    goal: str,
    what: str,
    progress: Progress,
    runs: int,
    stored: str = "",
) -> dict:
    """Run an ``invoke`` command ``runs`` times, each in the environment ``envs`` gives next; the median.

    ``stored`` describes it in the result file, when that needs more words than the progress line.
    """
    seconds = [
        timed(command, next(envs), layout.root, progress, f"{what} ({number + 1}/{runs})") for number in range(runs)
    ]
    return _median_record(seconds, goal, command, stored or what)


def _repeat(env: dict[str, str]) -> Iterator[dict[str, str]]:
    while True:
        yield env


def _fresh_folders(scratch: Path, layout: Layout, with_results: bool = True) -> Iterator[dict[str, str]]:
    """An environment with empty results and build folders, new for each run (the previous one removed)."""
    number = 0
    while True:
        folder = scratch / f"run-{number}"
        if number:
            shutil.rmtree(scratch / f"run-{number - 1}", ignore_errors=True)
        env = {**os.environ, "INVOKE_COURSE_BUILD": str(folder / "build")}
        if with_results:
            shutil.copytree(layout.results / "reference-2000", folder / "results" / "reference-2000")
            env["INVOKE_COURSE_RESULTS"] = str(folder / "results")
        yield env
        number += 1


#: What ``invoke lesson`` prints of the site's share.
SITE_SHARE = re.compile(r"^site updated in ([\d.]+) s", re.MULTILINE)
#: What it prints of its programs' share (their builds and runs).
PROGRAMS_SHARE = re.compile(r"^built and measured in ([\d.]+) s", re.MULTILINE)


def pipeline_speed(layout: Layout, progress: Progress = print, runs: int = RUNS) -> dict[str, dict]:
    """Cold full generations, then generations with nothing changed, and ``invoke lesson 3``, each timed ``runs`` times.

    They run in scratch results and build folders, so the real ones are untouched; a cold run
    has empty folders of its own and includes the KVM probe, the VM boot and the whole site build.
    """
    found: dict[str, dict] = {}
    invoke = [sys.executable, "-m", "invoke"]
    with tempfile.TemporaryDirectory(prefix="course-bench-") as scratch:
        colds = _fresh_folders(Path(scratch), layout)
        cold, env = [], {}
        for number in range(runs):
            env = next(colds)
            what = f"cold generation: every lesson, the VM boot, the site ({number + 1}/{runs})"
            cold.append(timed([*invoke, "generate"], env, layout.root, progress, what))
        command = [*invoke, "generate"]
        found["bench/pipeline.cold"] = _median_record(cold, "cold", command, "cold generation")
        found["bench/pipeline.guest-programs"] = _guest_program_time(Path(env["INVOKE_COURSE_RESULTS"]))
        found["bench/pipeline.unchanged"] = _timed_runs(
            layout, command, _repeat(env), "unchanged", "second generation, nothing changed", progress, runs
        )
        found.update(_lesson_3_speed(layout, env, progress, runs))
    return found


def student_loop_speed(layout: Layout, progress: Progress = print, runs: int = RUNS) -> dict[str, dict]:
    """An unchanged ``invoke generate`` and ``invoke lesson 3``, each timed ``runs`` times, without the cold runs.

    The figures :func:`pipeline_speed` takes after its cold generations, in a scratch copy of this
    checkout's results and build folder instead: a course generated already. One untimed
    ``invoke generate`` first brings the copy up to date, as the last cold run would have.
    """
    found: dict[str, dict] = {}
    invoke = [sys.executable, "-m", "invoke"]
    with tempfile.TemporaryDirectory(prefix="course-bench-loop-") as scratch:
        folder = Path(scratch)
        shutil.copytree(layout.results, folder / "results", symlinks=True)
        if layout.build.is_dir():
            shutil.copytree(layout.build, folder / "build", symlinks=True)
        env = {
            **os.environ,
            "INVOKE_COURSE_RESULTS": str(folder / "results"),
            "INVOKE_COURSE_BUILD": str(folder / "build"),
        }
        command = [*invoke, "generate"]
        timed(command, env, layout.root, progress, "the copy brought up to date (not counted)")
        found["bench/pipeline.unchanged"] = _timed_runs(
            layout, command, _repeat(env), "unchanged", "generation, nothing changed", progress, runs
        )
        found.update(_lesson_3_speed(layout, env, progress, runs))
    return found


def _lesson_3_speed(layout: Layout, env: dict[str, str], progress: Progress, runs: int) -> dict[str, dict]:
    """The student's loop timed ``runs`` times in ``env``'s folders: the exercise edited, then ``invoke lesson 3``.

    Each round first runs ``invoke lesson 3 --all`` (every program again: a control, timed too), then
    the exercise is rebuilt as after a student's edit (its build stamp removed, in the scratch build
    folder: the checkout's sources are never touched) and ``invoke lesson 3`` reruns it, its solution
    and what changed. The two interleave, so their ratio is one of the same moments of the machine.
    The site's and the programs' shares are what the student's ``invoke lesson 3`` prints; the
    programs' share is a control, without a goal: they run as long as their samples take.
    """
    lesson, site, programs, every = [], [], [], []
    command = [sys.executable, "-m", "invoke", "lesson", "3"]
    stamp = Path(env["INVOKE_COURSE_BUILD"]) / "code" / "03-timing" / "exercise-onebyte.inputs"
    for number in range(runs):
        every.append(
            timed([*command, "--all"], env, layout.root, progress, f"invoke lesson 3 --all ({number + 1}/{runs})")
        )
        stamp.unlink(missing_ok=True)  # as after an edit: the exercise is compiled again
        seconds, printed = run_timed(command, env, layout.root, progress, f"invoke lesson 3 ({number + 1}/{runs})")
        share, measured = SITE_SHARE.search(printed), PROGRAMS_SHARE.search(printed)
        if share is None or measured is None:
            raise RuntimeError(
                f"invoke lesson 3 did not say how long its programs and the site took:\n{printed[-2000:]}"
            )
        lesson.append(seconds)
        site.append(float(share[1]))
        programs.append(float(measured[1]))
    what = "the programs' share of invoke lesson 3, a control: they run as long as their samples take"
    loop = "invoke lesson 3 after an edit of its exercise (the exercise and its solution rerun, the others kept)"
    record = _median_record(lesson, "lesson-3", command, loop)
    every_record = {
        **_median_record(every, "lesson-3", [*command, "--all"], "invoke lesson 3 --all, every program again"),
        "goal": None,
    }
    if every_record["value"]:
        record["note"] = (
            f"invoke lesson 3 --all, interleaved with it: median {every_record['value']:.2f} s; "
            f"the student's loop takes {record['value'] / every_record['value']:.2f} times that"
        )
    return {
        "bench/pipeline.lesson-3": record,
        "bench/pipeline.lesson-3-site": _median_record(
            site, "lesson-3-site", command, "the site's share of invoke lesson 3 (site updated in ... s)"
        ),
        "bench/pipeline.lesson-3-programs": {**_median_record(programs, "lesson-3", command, what), "goal": None},
        "bench/pipeline.lesson-3-all": every_record,
    }


def _guest_program_time(results: Path) -> dict:
    """The seconds the like-for-like user-space runs took inside the cold generation's VM boot."""
    seconds = [
        step["seconds"]
        for lesson_file in results.glob("*/0*.json")
        for step in store.read_json(lesson_file).get("steps", [])
        if str(step.get("name", "")).endswith(" in the guest")
    ]
    if not seconds:
        return {"status": "skipped", "reason": "no program ran in a guest (no VM here)", "measured_at": store.now()}
    return {
        "status": "ok",
        "unit": "s",
        "value": round(sum(seconds), 2),
        "goal": GOALS["guest-programs"],
        "what": "user-space programs run in the modules' VM boot, in the cold generation",
        "measured_at": store.now(),
    }


def _scratch(cleanup: contextlib.ExitStack, keep: Path | None, prefix: str) -> Path:
    """Where a benchmark runs: ``keep``, made new (nothing of an earlier run is mistaken for this one's), and kept;
    else a temporary folder, removed with ``cleanup``."""
    if keep is None:
        return Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    keep.mkdir(parents=True)
    return keep


def site_speed(
    layout: Layout, progress: Progress = print, runs: int = RUNS, keep: Path | None = None
) -> dict[str, dict]:
    """``invoke site`` into an empty build folder (nothing measured: the stored results only), then again.

    The stored results are only read; the builds go to scratch folders, so the real site is untouched.
    ``keep``, a new folder, is the scratch folder instead of a temporary one: the last build stays in ``keep/build``
    (built clean, then again with nothing changed), the others are removed.
    """
    command = [sys.executable, "-m", "invoke", "site"]
    with contextlib.ExitStack() as cleanup:
        folders = _fresh_folders(_scratch(cleanup, keep, "course-bench-site-"), layout, with_results=False)
        clean, env = [], {}
        for number in range(runs):
            env = next(folders)
            what = f"the site from the stored results, into an empty build folder ({number + 1}/{runs})"
            clean.append(timed(command, env, layout.root, progress, what))
        what = "the site from the stored results, into an empty build folder"
        found = {
            "bench/pipeline.site-clean": _median_record(clean, "site-clean", command, what),
            "bench/pipeline.site-unchanged": _timed_runs(
                layout, command, _repeat(env), "site-unchanged", "the site again, nothing changed", progress, runs
            ),
        }
        if keep is not None:
            last = Path(env["INVOKE_COURSE_BUILD"])
            last.rename(keep / "build")
            last.parent.rmdir()  # its run folder, empty now
    return found


def _class_source_problem(layout: Layout, source: str) -> str:
    """Why ``source`` cannot stand for a student's set, or "": it must hold every lesson with programs.

    A host's set that ``invoke bench`` has just made holds lesson 1 alone (a new host, or a new CPU
    generation under the same model name, measures into a new set): copies of it would time a far
    lighter site than a class's, against the same goal.
    """
    folder = layout.results / source
    if not (folder / store.SET_FILE).is_file():
        return f"no result set {source!r} to copy for the class: measure this machine first (invoke generate)"
    missing = [
        lesson.name
        for lesson in lesson_catalog.discover(layout)
        if lesson.has_code and not (folder / f"{lesson.name}.json").is_file()
    ]
    if missing:
        return (
            f"result set {source!r} lacks {len(missing)} lessons ({', '.join(missing)}) to copy for the class: "
            "measure this machine first (invoke generate)"
        )
    return ""


def class_site_speed(
    layout: Layout,
    source: str,
    progress: Progress = print,
    runs: int = RUNS,
    size: int = CLASS_SIZE,
    keep: Path | None = None,
    alone: bool = True,
) -> dict[str, dict]:
    """``invoke site`` into an empty build folder with ``size`` imported sets (copies of ``source``) beside the
    stored ones, then the stored ones alone in the same run: the machine is shared, so the ratio of the two
    says more than either duration. The sets are made in a scratch folder (``course.results.class_sets``), never in
    the course's results. Both sites mark ``source`` as the current set, whichever machine runs them.

    ``keep``, a new folder, is the scratch folder instead of a temporary one, and stays: ``keep/results`` holds the
    stored sets and the class, ``keep/build`` the site the last run built with them (for a look at what was timed).
    ``alone=False`` builds the class's site only, and the record has no ratio: for the test suite, which opens that
    site and checks its record, and checks the comparison with the builds stood in for (a clean site build less).
    """

    command = [sys.executable, "-m", "invoke", "site"]
    reason = _class_source_problem(layout, source)
    if reason:
        return {"bench/pipeline.site-class": {"status": "skipped", "reason": reason, "measured_at": store.now()}}
    with contextlib.ExitStack() as cleanup:
        scratch = _scratch(cleanup, keep, "course-bench-class-")
        results = scratch / "results"
        shutil.copytree(layout.results, results, ignore=shutil.ignore_patterns(".*"))
        import_class(results, source, size)
        with_class, by_itself = [], []
        builds = [(with_class, results, "build", f"the site with a class of {size} imported sets, empty build folder")]
        if alone:
            builds.append(
                (by_itself, layout.results, "build-alone", "the site of the stored sets alone, empty build folder")
            )
        for number in range(runs):
            for timings, folder, build, what in builds:
                shutil.rmtree(scratch / build, ignore_errors=True)
                env = {
                    **os.environ,
                    "INVOKE_COURSE_BUILD": str(scratch / build),
                    "INVOKE_COURSE_RESULTS": str(folder),
                    "INVOKE_COURSE_SET": source,
                }
                timings.append(timed(command, env, layout.root, progress, f"{what} ({number + 1}/{runs})"))
        shutil.rmtree(scratch / "build-alone", ignore_errors=True)
    what = f"the site with a class of {size} imported sets (copies of {source}), into an empty build folder"
    record = _median_record(with_class, "site-class", command, what)
    if by_itself:
        alone_median = statistics.median(by_itself)
        ratio = record["value"] / alone_median if alone_median else 0.0
        record["note"] = (
            f"the stored sets alone, timed in the same run: median {alone_median:.2f} s "
            f"(runs: {', '.join(f'{value:.2f}' for value in by_itself)}); with the class, {ratio:.2f} times that"
        )
    return {"bench/pipeline.site-class": record}


def kernel_matrix_speed(layout: Layout, progress: Progress = print, runs: int = RUNS) -> dict[str, dict]:
    """The kernel matrix of three icount kernels, cold (each run in a scratch folder of its own), then unchanged.

    Skipped, saying why, where the three guest kernels are not installed (``invoke setup --tests``).
    """

    names = list(guest_kernels.KERNELS)
    keys = ("bench/pipeline.kernel-matrix", "bench/pipeline.kernel-matrix-unchanged")
    try:
        for name in names:
            guest_kernels.find(name)
    except KernelError as error:
        return {key: {"status": "skipped", "reason": str(error), "measured_at": store.now()} for key in keys}
    command = [sys.executable, "-m", "invoke", "run", "--guest-kernels", ",".join(names)]
    command += ["--acceleration", "tcg-icount"]
    described = f"{len(names)} guest kernels under tcg-icount, each in its own boot"
    with tempfile.TemporaryDirectory(prefix="course-bench-matrix-") as scratch:
        colds = _fresh_folders(Path(scratch), layout, with_results=False)
        cold, env = [], {}
        for number in range(runs):
            env = next(colds)
            env["INVOKE_COURSE_RESULTS"] = str(Path(env["INVOKE_COURSE_BUILD"]).parent / "results")
            cold.append(timed(command, env, layout.root, progress, f"kernel matrix, cold ({number + 1}/{runs})"))
        return {
            keys[0]: _median_record(cold, "kernel-matrix", command, f"kernel matrix, cold: {described}"),
            keys[1]: _timed_runs(
                layout,
                command,
                _repeat(env),
                "kernel-matrix-unchanged",
                "kernel matrix, nothing changed",
                progress,
                runs,
                f"kernel matrix, nothing changed: {described}",
            ),
        }


#: ``invoke lab``'s goal: its hosts run in parallel, so two take well under twice one host's time.
LAB_GOAL = 1.5


def lab_speed(
    layout: Layout, progress: Progress = print, warm_up: bool = True, venv: str | None = None, runs: int = 1
) -> dict[str, dict]:
    """A lab of one host, then of two, on a throwaway sshd on 127.0.0.1: two over one (goal 1.5), ``runs`` pairs
    interleaved, the ratio of the medians (one lab of each is one sample of a noisy machine).

    The hosts are this machine (lesson 1, no kernel runner, this checkout's .venv linked in
    place of ./bootstrap, no site build, the user's ~/.bashrc skipped: ``LocalSshd``), so
    the two also share its CPUs, and their timing programs take turns on the one CPU each pins
    itself to (stamp.h): on separate machines only the lab's own work is shared. A first one-host
    lab warms the caches and is not counted; ``warm_up=False`` leaves it out (a test of the
    record's shape, whose figures are not compared with the goal: a quarter of its labs less).
    ``venv``: the hosts' environment instead of this one's (the inventory's ``venv`` test seam;
    a test passes one whose run stands in for lesson 1).
    """

    def timed(hosts: list[Host], scratch_layout: Layout, options: lab.LabOptions) -> float:
        started = time.monotonic()
        outcome = lab.run_lab(scratch_layout, hosts, options, progress=lambda line: None)
        if not outcome.ok:
            raise lab.LabError("; ".join(outcome.failure_lines()))
        return time.monotonic() - started

    key = "bench/lab.two-hosts-over-one"
    try:
        with tempfile.TemporaryDirectory(prefix="course-bench-lab-") as scratch:
            folder = Path(scratch)
            with LocalSshd(folder / "sshd") as sshd:
                scratch_layout = Layout(layout.root, folder / "results", folder / "build")
                options = lab.LabOptions(lessons=[1], kernel_runner="none", known_hosts=sshd.known_hosts)
                reach = {"user": sshd.user, "port": sshd.port, "key": sshd.user_key, "venv": venv or sys.prefix}
                numbers = itertools.count()  # each lab's hosts store sets of their own names

                def hosts(count: int) -> list[Host]:
                    return [
                        Host("127.0.0.1", set=f"bench-lab-{next(numbers)}", folder=scratch, **reach)
                        for _ in range(count)
                    ]

                if warm_up:
                    timed(hosts(1), scratch_layout, options)
                ones, twos = [], []
                for number in range(runs):
                    progress(f"  bench  lab: one host (this machine over ssh, lesson 1) ({number + 1}/{runs})")
                    ones.append(timed(hosts(1), scratch_layout, options))
                    progress(f"  bench  lab: one host: {ones[-1]:.1f} s; two hosts at once")
                    twos.append(timed(hosts(2), scratch_layout, options))
                    progress(f"  bench  lab: two hosts: {twos[-1]:.1f} s")
                one, two = statistics.median(ones), statistics.median(twos)
    except (lab.LabError, OSError, subprocess.SubprocessError) as error:
        return {key: {"status": "skipped", "reason": f"no lab here: {error}", "measured_at": store.now()}}
    what = (
        "invoke lab --lessons 1 --kernel-runner none, two hosts over one (both this machine over ssh, without the "
        "user's ~/.bashrc: their timing programs share the CPU they pin to)"
    )
    return {
        key: {
            "status": "ok",
            "unit": "x",
            "value": round(two / one, 2),
            "goal": LAB_GOAL,
            "runs": [round(one, 2), round(two, 2)],
            "runs_unit": f"s (one host, two hosts: medians of {runs} labs each)",
            "what": what,
            "measured_at": store.now(),
        }
    }
