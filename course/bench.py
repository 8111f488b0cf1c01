"""Benchmarks of the course itself: how repeatable its figures are, and how quickly it regenerates.

Run by ``invoke bench``; the figures are stored in the result set (``bench.json``,
``peers.json``) and shown in the instructor guide. Tests never assert on them: these
machines are shared and noisy, so a benchmark reports, it does not judge.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from course.bench_speed import (
    GOALS,
    RUNS,
    class_site_speed,
    kernel_matrix_speed,
    lab_speed,
    pipeline_speed,
    site_speed,
    student_loop_speed,
    timed,
)
from course.measure import lessons, peers, protocol
from course.measure.build import build_program
from course.measure.runners import run_on_host
from course.measure.stats import summarize
from course.results import store
from course.results.layout import Layout

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
            timed(command, env, layout.root, progress, f"icount run {number + 1}/{runs} of lesson {lesson}")
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


#: The benchmarks ``invoke bench --only`` runs by themselves (the others need what a whole run sets up).
ONLY: dict[str, Callable[..., dict[str, dict]]] = {
    "student-loop": student_loop_speed,  # unchanged generate, invoke lesson 3 and the site's share
    "site": site_speed,  # invoke site, clean and unchanged
    "class-site": class_site_speed,  # invoke site, clean, with a class of 60 imported sets (copies of this set)
    "generate": pipeline_speed,  # invoke generate, cold and unchanged, and invoke lesson 3 (the cold runs take minutes)
    "matrix": kernel_matrix_speed,  # invoke run of three icount kernels, cold and unchanged (minutes)
    "lab": lab_speed,  # invoke lab of one host and of two over ssh to this machine, interleaved
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

    Its guest boots from memory with QEMU's clock and random numbers fixed (course.kernel.ram_guest), so
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
        **lab_speed(layout, progress=progress, runs=runs),
    }
    store.save_lesson(set_path, "bench", {"measured_at": store.now(), "measurements": measured, "failures": []})
    progress("  bench  peers: lmbench lat_syscall (perf bench's figure is its middle run above)")
    found = {peers.PERF_ID: middle_run(perf), peers.LMBENCH_ID: peers.measure_lmbench()}
    store.save_lesson(set_path, "peers", {"measured_at": store.now(), "measurements": found, "failures": []})
    return measured
