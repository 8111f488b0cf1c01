"""Benchmarks of the course itself: how repeatable its figures are, and how quickly it regenerates.

Run by ``invoke bench``; the figures are stored in the result set (``bench.json``,
``peers.json``) and shown in the instructor guide. Tests never assert on them: these
machines are shared and noisy, so a benchmark reports, it does not judge.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from course import lessons, peers, protocol, store
from course.build import build_program
from course.layout import Layout
from course.runners import run_on_host
from course.stats import summarize

#: The issue's goals: spreads in percent, durations in seconds.
GOALS = {
    "min-spread": 2.0,
    "median-spread": 3.0,
    "cold": 45.0,  # set-up done: every lesson built and run, the VM boot, the whole site
    "unchanged": 0.8,
    "lesson-3": 3.0,  # a student's rerun: the programs run again, the pages of their figures are rebuilt
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

Progress = Callable[[str], None]


def spread_percent(values: list[float]) -> float:
    """(max - min) / median, in percent: how far apart repeated figures land."""
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle * 100 if middle else 0.0


def repeatability(layout: Layout, runs: int = 5, progress: Progress = print) -> dict[str, dict]:
    """Run lesson 3's program ``runs`` times in a row; the spread of each kind of file's minimum and median."""
    lesson = lessons.find(layout, 3)
    spec = lesson.runs[0]
    if not spec.files:
        raise ValueError(
            f"{lesson.code_dir / 'lesson.toml'}: the benchmark expects {spec.program} to run with files = [...]"
        )
    program = build_program(layout, lesson, spec.program, libs=spec.libs)
    minima: dict[tuple[str, str], list[float]] = {}
    medians: dict[tuple[str, str], list[float]] = {}
    for number in range(runs):
        progress(f"  bench  repeatability {spec.program} run {number + 1}/{runs} (files: {', '.join(spec.files)})")
        outcome = run_on_host(
            program.binary, spec.args, "devnull", layout.build / "scratch", spec.timeout, files=spec.files
        )
        if not outcome.ok:
            raise RuntimeError(f"{outcome.command} failed (exit {outcome.exit_status}):\n{outcome.stderr}")
        parsed = protocol.parse(outcome.stdout)
        overhead = min(parsed.measurements["stamp-pair"].counts)
        for kind in spec.files:
            for name in ("read", "read-x8"):
                raw = parsed.measurements.get(f"{name}.{kind}")
                if raw is None:  # skipped on this machine: the lesson page says why
                    continue
                summary = summarize(raw.counts, overhead, raw.per)  # exactly as the pipeline computes it
                minima.setdefault((name, kind), []).append(summary.min)
                medians.setdefault((name, kind), []).append(summary.median)
    found = _ratio_spreads(medians, spec.program, runs)
    for (name, kind), values_of_minima in minima.items():
        for what, values in (("min-spread", values_of_minima), ("median-spread", medians[(name, kind)])):
            found[f"bench/repeatability.{name}.{what}.{kind}"] = {
                "status": "ok",
                "unit": "%",
                "value": round(spread_percent(values), 2),
                "goal": GOALS[what],
                "runs": values,
                "samples": int(spec.args[0]) if spec.args else None,
                "command": f"{spec.program} {' '.join(spec.args)} ({runs} runs, all files interleaved, {name}.{kind})",
                "measured_at": store.now(),
            }
    return found


def _ratio_spreads(medians: dict[tuple[str, str], list[float]], program: str, runs: int) -> dict[str, dict]:
    """How repeatable the comparison between files is: each kind's median over /dev/null's, run by run.

    The kinds are timed in the same interleaved rounds, so a host that is slower in one run
    slows them all; their ratio is what lesson 3 compares, and it has no goal of its own.
    """
    base = medians.get(("read-x8", "devnull"))
    found: dict[str, dict] = {}
    for (name, kind), values in medians.items():
        if name != "read-x8" or kind == "devnull" or base is None or len(values) != len(base):
            continue
        ratios = [value / below for value, below in zip(values, base, strict=True)]
        found[f"bench/repeatability.read-x8.ratio-spread.{kind}"] = {
            "status": "ok",
            "unit": "%",
            "value": round(spread_percent(ratios), 2),
            "goal": None,
            "runs": [round(ratio, 4) for ratio in ratios],
            "runs_unit": f"median of {kind} over median of /dev/null",
            "command": f"{program} ({runs} runs, all files interleaved, read-x8.{kind} / read-x8.devnull)",
            "measured_at": store.now(),
        }
    return found


def perf_runs(runs: int = 5, loops: int | None = None, progress: Progress = print) -> list[dict]:
    """``perf bench syscall basic`` run ``runs`` times in a row; stops at the first that cannot run."""
    records: list[dict] = []
    for number in range(runs):
        progress(f"  bench  repeatability perf bench syscall basic run {number + 1}/{runs}")
        records.append(peers.measure_perf(loops))
        if records[-1]["status"] != "ok":
            break
    return records


def peer_repeatability(records: list[dict]) -> dict[str, dict]:
    """The spread of perf's means over its runs: a control for the host itself.

    perf averages ten million calls per run, far more than lesson 3 times, and owes nothing to
    the course's method; how far its mean moves between runs is how far this machine moves.
    It has no goal of its own: it is the yardstick the course's spreads are read against.
    """
    key = "bench/repeatability.peer.perf-bench.mean-spread"
    if records[-1]["status"] != "ok":
        return {key: {**records[-1], "unit": "%"}}
    means = [record["mean"] for record in records]
    return {
        key: {
            "status": "ok",
            "unit": "%",
            "value": round(spread_percent(means), 2),
            "goal": None,
            "runs": means,
            "runs_unit": "ns",
            "command": f"{records[-1]['command']} ({len(records)} runs, mean ns per getppid() call)",
            "measured_at": store.now(),
        }
    }


def middle_run(records: list[dict]) -> dict:
    """The run whose mean is the median of them all (the lower one of an even count), or why none ran."""
    if records[-1]["status"] != "ok":
        return records[-1]
    return sorted(records, key=lambda record: record["mean"])[(len(records) - 1) // 2]


#: The window lines corestate.c prints: seconds since start, then the three probes' medians.
WINDOW = re.compile(r"^window (?P<at>[\d.]+) (?P<read>\d+) (?P<wide>\d+) (?P<chain>\d+)$")
PROBES = ("read", "wide", "chain")


def parse_windows(text: list[str]) -> dict[str, list[float]]:
    """Each probe's window medians in time order, and when each window began ("at", seconds)."""
    windows: dict[str, list[float]] = {key: [] for key in ("at", *PROBES)}
    for line in text:
        if match := WINDOW.match(line):
            for key in windows:
                windows[key].append(float(match[key]))
    if len(windows["read"]) < 10:
        raise ValueError(
            f"corestate printed {len(windows['read'])} windows, too few to compare; its output:\n"
            + "\n".join(text[-20:])
        )
    return windows


def window_spread(values: list[float]) -> float:
    """(p90 - p10) / median, in percent: how far a probe moves from window to window, outliers aside."""
    deciles = statistics.quantiles(values, n=10)
    return (deciles[-1] - deciles[0]) / statistics.median(values) * 100


def rank_correlation(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation: does one probe rise when the other does, whatever the scale?"""

    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        ranked = [0.0] * len(values)
        start = 0
        while start < len(order):
            end = start
            while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
                end += 1
            for position in range(start, end + 1):  # ties share their average rank
                ranked[order[position]] = (start + end) / 2
            start = end + 1
        return ranked

    rx, ry = ranks(xs), ranks(ys)
    if len(set(rx)) == 1 or len(set(ry)) == 1:
        return 0.0  # a probe that never moved follows nothing
    return statistics.correlation(rx, ry)


def core_sharing(layout: Layout, seconds: float = 10.0, progress: Progress = print) -> dict[str, dict]:
    """Whether the empty read moves with the core's sharing or with its clock, over one run of corestate.

    The figures are controls (no goal): they say why the repeatability goals can or cannot be
    met on this machine, not how good the course's method is.
    """
    lesson = lessons.find(layout, 3)
    program = build_program(layout, lesson, "corestate")
    progress(f"  bench  host state: corestate for {seconds:g} s (empty read, wide and chain probes in windows)")
    outcome = run_on_host(program.binary, [f"{seconds:g}"], "devnull", layout.build / "scratch", seconds + 60)
    if not outcome.ok:
        raise RuntimeError(f"corestate failed (exit {outcome.exit_status}):\n{outcome.stdout[-2000:]}{outcome.stderr}")
    windows = parse_windows(protocol.parse(outcome.stdout).text)
    common = {
        "status": "ok",
        "goal": None,
        "windows": len(windows["read"]),
        "command": f"corestate {seconds:g} < /dev/null",
        "measured_at": store.now(),
    }
    found = {
        f"bench/host.{probe}.window-spread": {
            **common,
            "unit": "%",
            "value": round(window_spread(windows[probe]), 2),
            # The run itself, for the instructor guide's chart: the probe's median in each window.
            "timeline": {"seconds": windows["at"], "values": windows[probe], "unit": "ticks"},
        }
        for probe in PROBES
    }
    for probe in ("wide", "chain"):
        found[f"bench/host.read-follows-{probe}"] = {
            **common,
            "unit": "r",
            "value": round(rank_correlation(windows["read"], windows[probe]), 2),
        }
    return found


def _run_timed(command: list[str], env: dict[str, str], cwd: Path, progress: Progress, what: str) -> tuple[float, str]:
    """Run ``command``; its wall-clock seconds and what it printed."""
    progress(f"  bench  {what}: {' '.join(command[2:])}")
    started = time.monotonic()
    finished = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if finished.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {finished.returncode}):\n{finished.stdout[-3000:]}{finished.stderr}")
    progress(f"  bench  {what}: {seconds:.1f} s")
    return seconds, finished.stdout


def _timed(command: list[str], env: dict[str, str], cwd: Path, progress: Progress, what: str) -> float:
    return _run_timed(command, env, cwd, progress, what)[0]


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
        _timed(command, next(envs), layout.root, progress, f"{what} ({number + 1}/{runs})") for number in range(runs)
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
            cold.append(_timed([*invoke, "generate"], env, layout.root, progress, what))
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
        _timed(command, env, layout.root, progress, "the copy brought up to date (not counted)")
        found["bench/pipeline.unchanged"] = _timed_runs(
            layout, command, _repeat(env), "unchanged", "generation, nothing changed", progress, runs
        )
        found.update(_lesson_3_speed(layout, env, progress, runs))
    return found


def _lesson_3_speed(layout: Layout, env: dict[str, str], progress: Progress, runs: int) -> dict[str, dict]:
    """``invoke lesson 3`` timed ``runs`` times in ``env``'s folders, and the site's and its programs' shares it prints.

    The programs' share is a control, without a goal: they run as long as their samples take.
    """
    lesson, site, programs = [], [], []
    command = [sys.executable, "-m", "invoke", "lesson", "3"]
    for number in range(runs):
        seconds, printed = _run_timed(command, env, layout.root, progress, f"invoke lesson 3 ({number + 1}/{runs})")
        share, measured = SITE_SHARE.search(printed), PROGRAMS_SHARE.search(printed)
        if share is None or measured is None:
            raise RuntimeError(
                f"invoke lesson 3 did not say how long its programs and the site took:\n{printed[-2000:]}"
            )
        lesson.append(seconds)
        site.append(float(share[1]))
        programs.append(float(measured[1]))
    what = "the programs' share of invoke lesson 3, a control: they run as long as their samples take"
    return {
        "bench/pipeline.lesson-3": _median_record(lesson, "lesson-3", command, "invoke lesson 3"),
        "bench/pipeline.lesson-3-site": _median_record(
            site, "lesson-3-site", command, "the site's share of invoke lesson 3 (site updated in ... s)"
        ),
        "bench/pipeline.lesson-3-programs": {**_median_record(programs, "lesson-3", command, what), "goal": None},
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


def site_speed(layout: Layout, progress: Progress = print, runs: int = RUNS) -> dict[str, dict]:
    """``invoke site`` into an empty build folder (nothing measured: the stored results only), then again.

    The stored results are only read; the builds go to scratch folders, so the real site is untouched.
    """
    command = [sys.executable, "-m", "invoke", "site"]
    with tempfile.TemporaryDirectory(prefix="course-bench-site-") as scratch:
        folders = _fresh_folders(Path(scratch), layout, with_results=False)
        clean, env = [], {}
        for number in range(runs):
            env = next(folders)
            what = f"the site from the stored results, into an empty build folder ({number + 1}/{runs})"
            clean.append(_timed(command, env, layout.root, progress, what))
        what = "the site from the stored results, into an empty build folder"
        return {
            "bench/pipeline.site-clean": _median_record(clean, "site-clean", command, what),
            "bench/pipeline.site-unchanged": _timed_runs(
                layout, command, _repeat(env), "site-unchanged", "the site again, nothing changed", progress, runs
            ),
        }


def class_site_speed(
    layout: Layout, source: str, progress: Progress = print, runs: int = RUNS, size: int = CLASS_SIZE
) -> dict[str, dict]:
    """``invoke site`` into an empty build folder with ``size`` imported sets (copies of ``source``) beside the
    stored ones, then the stored ones alone in the same run: the machine is shared, so the ratio of the two
    says more than either duration. The sets are made in a scratch folder (``course.class_sets``), never in
    the course's results.
    """
    from course.class_sets import import_class

    command = [sys.executable, "-m", "invoke", "site"]
    if not (layout.results / source / store.SET_FILE).is_file():
        reason = f"no result set {source!r} to copy for the class: measure this machine first (invoke generate)"
        return {"bench/pipeline.site-class": {"status": "skipped", "reason": reason, "measured_at": store.now()}}
    with tempfile.TemporaryDirectory(prefix="course-bench-class-") as scratch:
        results = Path(scratch) / "results"
        shutil.copytree(layout.results, results, ignore=shutil.ignore_patterns(".*"))
        import_class(results, source, size)
        with_class, alone = [], []
        for number in range(runs):
            for timings, folder, what in (
                (with_class, results, f"the site with a class of {size} imported sets, empty build folder"),
                (alone, layout.results, "the site of the stored sets alone, empty build folder"),
            ):
                build = Path(scratch) / "build"
                shutil.rmtree(build, ignore_errors=True)
                env = {**os.environ, "INVOKE_COURSE_BUILD": str(build), "INVOKE_COURSE_RESULTS": str(folder)}
                timings.append(_timed(command, env, layout.root, progress, f"{what} ({number + 1}/{runs})"))
    what = f"the site with a class of {size} imported sets (copies of {source}), into an empty build folder"
    record = _median_record(with_class, "site-class", command, what)
    alone_median = statistics.median(alone)
    ratio = record["value"] / alone_median if alone_median else 0.0
    record["note"] = (
        f"the stored sets alone, timed in the same run: median {alone_median:.2f} s "
        f"(runs: {', '.join(f'{value:.2f}' for value in alone)}); with the class, {ratio:.2f} times that"
    )
    return {"bench/pipeline.site-class": record}


def kernel_matrix_speed(layout: Layout, progress: Progress = print, runs: int = RUNS) -> dict[str, dict]:
    """The kernel matrix of three icount kernels, cold (each run in a scratch folder of its own), then unchanged.

    Skipped, saying why, where the three guest kernels are not installed (``invoke setup --tests``).
    """
    from course import guest_kernels
    from course.kernel_build import KernelError

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
            cold.append(_timed(command, env, layout.root, progress, f"kernel matrix, cold ({number + 1}/{runs})"))
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


def _icount_boots(
    layout: Layout, lesson: int, lesson_file: str, set_name: str, runs: int, progress: Progress
) -> list[dict]:
    """Lesson ``lesson`` run ``runs`` times under ``tcg-icount`` as set ``set_name``, each in a boot of its own, in
    a scratch folder: the measurements each run stored in ``lesson_file``."""
    stored: list[dict] = []
    with tempfile.TemporaryDirectory(prefix=f"course-bench-icount-{lesson}-") as scratch:
        results, build = Path(scratch) / "results", Path(scratch) / "build"
        env = {**os.environ, "INVOKE_COURSE_RESULTS": str(results), "INVOKE_COURSE_BUILD": str(build)}
        command = [sys.executable, "-m", "invoke", "run", "--lesson", str(lesson), "--acceleration", "tcg-icount"]
        command += ["--set", set_name, "--force"]
        for number in range(runs):
            _timed(command, env, layout.root, progress, f"icount run {number + 1}/{runs} of lesson {lesson}")
            stored.append(store.read_json(results / set_name / f"{lesson_file}.json")["measurements"])
    return stored


def icount_control(layout: Layout, runs: int = 2, progress: Progress = print) -> dict[str, dict]:
    """Lesson 4 twice under ``tcg-icount``: the spread of its same-guest savings, expected 0 (a control).

    Instruction counts do not depend on the host, so two boots must agree exactly; a spread
    above 0 would mean the guest's path, not the host, changed between them.
    """
    savings: dict[str, list[float]] = {}
    for stored in _icount_boots(layout, 4, "04-kernel-read", "icount-control", runs, progress):
        for key, value in stored.items():
            if "/saving" in key and value.get("status") == "ok":
                savings.setdefault(key, []).append(float(value["value"]))
    compared = {key: values for key, values in savings.items() if len(values) == runs}
    if not compared:
        skipped = {"status": "skipped", "reason": "no saving was derived under icount", "measured_at": store.now()}
        return {"bench/icount.saving-spread": skipped}
    differences = {key: max(values) - min(values) for key, values in compared.items()}
    worst = max(differences, key=lambda key: differences[key])
    spreads = [
        abs(differences[key]) / abs(statistics.median(v)) * 100 for key, v in compared.items() if statistics.median(v)
    ]
    return {
        "bench/icount.saving-spread": {
            "status": "ok",
            "unit": "%",
            "value": round(max(spreads, default=0.0), 4),
            "goal": 0.0,
            "what": f"largest spread of {len(compared)} same-guest savings over {runs} icount boots (expected 0)",
            "worst": worst,
            "largest_difference": differences[worst],
            "measured_at": store.now(),
        }
    }


#: ``invoke lab``'s goal: its hosts run in parallel, so two take well under twice one host's time.
LAB_GOAL = 1.5


def lab_speed(layout: Layout, progress: Progress = print) -> dict[str, dict]:
    """A lab of one host, then of two, on a throwaway sshd on 127.0.0.1: two over one (goal 1.5).

    The hosts are this machine (lesson 1, no kernel runner, this checkout's .venv linked in
    place of ./bootstrap, no site build), so the two also share its CPUs, and their timing
    programs take turns on the one CPU each pins itself to (stamp.h): on separate machines
    only the lab's own work is shared. A first one-host lab warms the caches and is not counted.
    """
    from course import lab
    from course.inventory import Host
    from course.local_sshd import LocalSshd

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
                reach = {"user": sshd.user, "port": sshd.port, "key": sshd.user_key, "venv": sys.prefix}
                hosts = [Host("127.0.0.1", set=f"bench-lab-{n}", folder=scratch, **reach) for n in range(4)]
                timed(hosts[:1], scratch_layout, options)
                progress("  bench  lab: one host (this machine over ssh, lesson 1)")
                one = timed(hosts[1:2], scratch_layout, options)
                progress(f"  bench  lab: one host: {one:.1f} s; two hosts at once")
                two = timed(hosts[2:], scratch_layout, options)
                progress(f"  bench  lab: two hosts: {two:.1f} s")
    except (lab.LabError, OSError, subprocess.SubprocessError) as error:
        return {key: {"status": "skipped", "reason": f"no lab here: {error}", "measured_at": store.now()}}
    what = (
        "invoke lab --lessons 1 --kernel-runner none, two hosts over one (both this machine over ssh: "
        "their timing programs share the CPU they pin to)"
    )
    return {
        key: {
            "status": "ok",
            "unit": "x",
            "value": round(two / one, 2),
            "goal": LAB_GOAL,
            "runs": [round(one, 2), round(two, 2)],
            "runs_unit": "s (one host, two hosts)",
            "what": what,
            "measured_at": store.now(),
        }
    }


#: The benchmarks ``invoke bench --only`` runs by themselves (the others need what a whole run sets up).
ONLY: dict[str, Callable[..., dict[str, dict]]] = {
    "student-loop": student_loop_speed,  # unchanged generate, invoke lesson 3 and the site's share
    "site": site_speed,  # invoke site, clean and unchanged
    "class-site": class_site_speed,  # invoke site, clean, with a class of 60 imported sets (copies of this set)
}

#: The benchmarks of :data:`ONLY` that copy the set being benchmarked, so take its name.
NEEDS_SET_NAME = {"class-site"}


#: The most runs a duration may be timed over (each run of the class's site takes a minute or so).
MOST_RUNS = 100


def parse_runs(text: str) -> int:
    """``--runs``: a whole number from 1 to :data:`MOST_RUNS` in ASCII digits (``"²".isdigit()`` is true)."""
    if not re.fullmatch(r"[0-9]{1,9}", text) or not 1 <= int(text) <= MOST_RUNS:
        raise ValueError(f"--runs must be a whole number from 1 to {MOST_RUNS}, got {text[:40]!r}")
    return int(text)


def parse_only(text: str) -> list[str]:
    """``--only``: the benchmarks named, comma-separated, each once; naming none is refused, not taken as all."""
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names:
        raise ValueError(f"--only {text[:40]!r} names no benchmark: choose among {', '.join(ONLY)}")
    unknown = [name for name in names if name not in ONLY]
    if unknown:
        raise ValueError(f"--only {','.join(unknown)[:80]}: no such benchmark; choose among {', '.join(ONLY)}")
    return names


def run_only(layout: Layout, set_path: Path, names: list[str], progress: Progress = print, runs: int = RUNS) -> dict:
    """Only the benchmarks ``names`` (keys of :data:`ONLY`), stored over the same figures of the last whole run."""
    names = list(dict.fromkeys(names))  # each once
    unknown = [name for name in names if name not in ONLY]
    if unknown or not names:
        raise ValueError(f"no benchmark {', '.join(unknown) or 'named'}: choose among {', '.join(ONLY)}")
    # Read (and check) the figures kept before measuring: a corrupt bench.json must stop us before
    # minutes of measuring, not after them, throwing the fresh figures away.
    path = set_path / "bench.json"
    earlier = store.read_json(path).get("measurements", {}) if path.is_file() else {}
    measured: dict[str, dict] = {}
    for name in names:
        source = (set_path.name,) if name in NEEDS_SET_NAME else ()
        measured.update(ONLY[name](layout, *source, progress=progress, runs=runs))
    stored = {**earlier, **measured}  # the figures not measured now stay those of their own run (each dated)
    store.save_lesson(set_path, "bench", {"measured_at": store.now(), "measurements": stored, "failures": []})
    return measured


#: Lesson 9's per-request figures in the guest: the kernel server and the four user-space ones.
KHTTPD_REQUESTS = (
    "09-khttpd/request.khttpd",
    "09-khttpd/request.khttpd-zerocopy",
    *(f"09-khttpd/user.serve.request.{server}" for server in ("read-write", "sendfile", "splice", "io_uring")),
)


def khttpd_spread(stored: list[dict[str, dict]]) -> dict[str, dict]:
    """How far lesson 9's request medians land apart over icount boots of one kernel, and whether its counts repeat.

    Its guest boots from memory with QEMU's clock and random numbers fixed (course.ram_guest), so
    the spread is expected to be 0; in virtme-ng boots it never quite was (lessons/09-khttpd.md).
    """
    compared = [key for key in KHTTPD_REQUESTS if all(run.get(key, {}).get("status") == "ok" for run in stored)]
    if len(stored) < 2 or not compared:
        skipped = {
            "status": "skipped",
            "reason": "lesson 9 gave no request median in two boots",
            "measured_at": store.now(),
        }
        return {"bench/icount.khttpd-spread": skipped}
    spreads = {key: spread_percent([run[key]["median"] for run in stored]) for key in compared}
    worst = max(spreads, key=lambda key: spreads[key])
    counted = [key for key, value in stored[0].items() if value.get("unit") in ("calls", "bytes")]
    repeated = all(
        run.get(key, {}).get("histogram") == stored[0][key].get("histogram") for run in stored for key in counted
    )
    return {
        "bench/icount.khttpd-spread": {
            "status": "ok",
            "unit": "%",
            "value": round(spreads[worst], 4),
            "goal": 0.0,
            "what": f"largest spread of lesson 9's {len(compared)} request medians over {len(stored)} icount boots",
            "worst": worst,
            "medians": [run[worst]["median"] for run in stored],
            "identical_medians": sum(1 for value in spreads.values() if value == 0),
            "counts_repeat": repeated,  # every call and byte counted, request by request
            "measured_at": store.now(),
        }
    }


def icount_khttpd(layout: Layout, runs: int = 2, progress: Progress = print) -> dict[str, dict]:
    """Lesson 9 ``runs`` times under ``tcg-icount``, each in a boot of its own: :func:`khttpd_spread`."""
    return khttpd_spread(_icount_boots(layout, 9, "09-khttpd", "icount-khttpd", runs, progress))


def run(layout: Layout, set_path: Path, progress: Progress = print, runs: int = RUNS) -> dict[str, dict]:
    """Every benchmark, stored in the result set; returns the measurements (durations: medians of ``runs``)."""
    perf = perf_runs(progress=progress)
    measured = {
        **repeatability(layout, progress=progress),
        **peer_repeatability(perf),
        **core_sharing(layout, progress=progress),
        **pipeline_speed(layout, progress=progress, runs=runs),
        **site_speed(layout, progress=progress, runs=runs),
        **class_site_speed(layout, set_path.name, progress=progress, runs=runs),
        **icount_control(layout, progress=progress),
        **icount_khttpd(layout, progress=progress),
        **kernel_matrix_speed(layout, progress=progress, runs=runs),
        **lab_speed(layout, progress=progress),
    }
    store.save_lesson(set_path, "bench", {"measured_at": store.now(), "measurements": measured, "failures": []})
    progress("  bench  peers: lmbench lat_syscall (perf bench's figure is its middle run above)")
    found = {peers.PERF_ID: middle_run(perf), peers.LMBENCH_ID: peers.measure_lmbench()}
    store.save_lesson(set_path, "peers", {"measured_at": store.now(), "measurements": found, "failures": []})
    return measured
