"""The benchmarks' bookkeeping: spreads, the perf control, and the verdicts printed for them.

The figures themselves are never asserted (they belong to the machine); what is tested is
that they are computed, stored and reported as the instructor guide describes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from course import bench, bench_speed
from course.commands import _bench_verdict
from course.measure import peers

ROOT = Path(__file__).resolve().parents[1]


def test_spread_is_range_over_median() -> None:
    assert bench.spread_percent([100, 101, 102, 103, 104]) == pytest.approx(4 / 102 * 100)
    assert bench.spread_percent([7, 7, 7]) == 0.0


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf is installed by ./bootstrap test")
def test_perf_control_records_each_run_and_their_spread() -> None:
    records = bench.perf_runs(runs=3, loops=20000, progress=lambda line: None)
    control = bench.peer_repeatability(records)["bench/repeatability.peer.perf-bench.mean-spread"]
    assert control["status"] == "ok", control
    assert len(control["runs"]) == 3 and all(mean > 0 for mean in control["runs"])
    assert control["value"] == round(bench.spread_percent(control["runs"]), 2)
    assert control["goal"] is None  # a yardstick, not a target
    assert "--loop 20000" in control["command"]
    assert bench.middle_run(records)["mean"] == sorted(control["runs"])[1]  # peers.json keeps the middle run


def test_perf_control_without_perf_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    records = bench.perf_runs(runs=5, progress=lambda line: None)
    assert len(records) == 1  # no point in trying four more times
    control = bench.peer_repeatability(records)["bench/repeatability.peer.perf-bench.mean-spread"]
    assert control["status"] == "skipped"
    assert "apt-get install linux-perf" in control["reason"]
    assert bench.middle_run(records) is records[0]  # peers.json records the same reason


def test_perf_output_that_is_not_perfs_is_refused() -> None:
    with pytest.raises(ValueError, match="unexpected perf bench output"):
        peers.parse_perf_bench("perf: 'bench' is not a perf-command\n")


def test_verdicts_for_a_goal_a_control_and_a_skip() -> None:
    assert _bench_verdict({"status": "ok", "value": 1.5, "unit": "%", "goal": 2.0}) == ["1.50 %", "2 %", "yes"]
    assert _bench_verdict({"status": "ok", "value": 4.0, "unit": "s", "goal": 2.0})[2] == "NO"
    assert _bench_verdict({"status": "ok", "value": 9.0, "unit": "%", "goal": None})[1:] == ["(control)", ""]
    assert _bench_verdict({"status": "skipped", "reason": "perf is not installed"}) == [
        "not run",
        "",
        "perf is not installed",
    ]


def test_rank_correlation_follows_order_not_scale() -> None:
    rising = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert bench.rank_correlation(rising, [10.0, 20.0, 300.0, 4000.0, 50000.0]) == pytest.approx(1.0)
    assert bench.rank_correlation(rising, [5.0, 4.0, 3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert bench.rank_correlation(rising, [7.0] * 5) == 0.0  # a probe that never moved follows nothing
    assert bench.rank_correlation([1.0, 1.0, 2.0], [3.0, 3.0, 9.0]) == pytest.approx(1.0)  # ties share a rank


def test_window_spread_ignores_a_single_outlier() -> None:
    steady = [100.0] * 19 + [1000.0]  # one window preempted
    assert bench.window_spread(steady) == 0.0
    assert bench.window_spread([float(v) for v in range(90, 111)]) > 10


def test_too_few_windows_is_refused_with_the_output() -> None:
    with pytest.raises(ValueError, match=r"(?s)printed 2 windows.*oops"):
        bench.parse_windows(["window 0.000 1 2 3", "window 0.041 1 2 3", "oops"])


def test_core_sharing_runs_the_real_probe(scratch_layout) -> None:
    found = bench.core_sharing(scratch_layout, seconds=1.0, progress=lambda line: None)
    assert set(found) == {
        "bench/host.read.window-spread",
        "bench/host.wide.window-spread",
        "bench/host.chain.window-spread",
        "bench/host.read-follows-wide",
        "bench/host.read-follows-chain",
    }
    for key, figure in found.items():
        assert figure["status"] == "ok" and figure["goal"] is None, key
        assert figure["windows"] >= 10  # about 24 windows a second
        if "timeline" in figure:  # the window spreads keep the run they were computed from
            assert len(figure["timeline"]["values"]) == len(figure["timeline"]["seconds"]) == figure["windows"]
    assert sum("timeline" in figure for figure in found.values()) == len(bench.PROBES)
    assert all(found[f"bench/host.{p}.window-spread"]["value"] >= 0 for p in bench.PROBES)
    assert -1 <= found["bench/host.read-follows-wide"]["value"] <= 1
    assert _bench_verdict(found["bench/host.read-follows-wide"])[0].startswith("r = ")


def test_ratio_spreads_compare_each_kind_with_devnull_run_by_run() -> None:
    medians = {
        ("read-x8", "devnull"): [500.0, 750.0],  # the host was half as fast again in the second run
        ("read-x8", "tty"): [1000.0, 1500.0],
        ("read-x8", "pipe"): [550.0, 750.0],
        ("read", "tty"): [999.0, 1.0],  # single reads are not compared this way
    }
    found = bench._ratio_spreads(medians, "usystime", 2)
    assert set(found) == {
        "bench/repeatability.read-x8.ratio-spread.tty",
        "bench/repeatability.read-x8.ratio-spread.pipe",
    }
    tty = found["bench/repeatability.read-x8.ratio-spread.tty"]
    assert tty["runs"] == [2.0, 2.0] and tty["value"] == 0.0 and tty["goal"] is None
    assert found["bench/repeatability.read-x8.ratio-spread.pipe"]["value"] == pytest.approx(0.1 / 1.05 * 100, abs=0.01)
    assert bench._ratio_spreads({("read-x8", "tty"): [1.0]}, "usystime", 1) == {}  # /dev/null skipped: no ratio


def _icount_runs(monkeypatch: pytest.MonkeyPatch, savings: list[float]) -> dict:
    """icount_control over canned boots: each "boot" stores lesson 4 with the next saving."""
    from course.results import store
    from course.results.layout import Layout

    boots = iter(savings)

    def boot(command: list[str], env: dict, cwd, progress, what: str) -> float:
        folder = Path(env["INVOKE_COURSE_RESULTS"]) / "icount-control"
        saving = {"status": "ok", "unit": "icount ticks", "value": next(boots), "derived": True, "measured_at": "x"}
        store.write_json(
            folder / "04-kernel-read.json",
            {"schema": 1, "measurements": {"04-kernel-read/saving.read-iter.tty": saving}},
        )
        assert "--acceleration" in command and "tcg-icount" in command
        return 1.0

    monkeypatch.setattr(bench, "timed", boot)
    layout = Layout(Path(__file__).resolve().parents[1])
    return bench.icount_control(layout, runs=len(savings), progress=lambda line: None)["bench/icount.saving-spread"]


def test_the_icount_control_is_zero_when_two_boots_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    control = _icount_runs(monkeypatch, [1200.0, 1200.0])
    assert control["status"] == "ok" and control["value"] == 0.0 and control["goal"] == 0.0


def test_the_icount_control_shows_a_difference_between_boots(monkeypatch: pytest.MonkeyPatch) -> None:
    control = _icount_runs(monkeypatch, [1200.0, 1212.0])
    assert control["value"] == pytest.approx(12 / 1206 * 100, rel=1e-3)
    assert control["worst"] == "04-kernel-read/saving.read-iter.tty" and control["largest_difference"] == 12.0
    assert _bench_verdict(control)[2] == "NO"


def test_the_guest_programs_time_is_read_from_the_cold_generation(tmp_path) -> None:
    from course.results import store

    steps = [{"name": "run 03-timing/usystime in the guest", "seconds": 2.5, "cached": False}]
    steps.append({"name": "build module ksystime", "seconds": 1.0, "cached": False})
    store.write_json(tmp_path / "m" / "04-kernel-read.json", {"schema": 1, "steps": steps})
    found = bench_speed._guest_program_time(tmp_path)
    assert found["value"] == 2.5 and found["goal"] == 15.0
    assert bench_speed._guest_program_time(tmp_path / "none")["status"] == "skipped"


@pytest.mark.slow
def test_the_site_is_timed_clean_then_unchanged_in_a_scratch_folder(timed_checkout_site) -> None:
    # One run, its build kept (conftest.py): the session's site of this checkout, which other tests read.
    found, lines = timed_checkout_site.found, timed_checkout_site.lines
    clean, unchanged = found["bench/pipeline.site-clean"], found["bench/pipeline.site-unchanged"]
    assert (clean["goal"], unchanged["goal"]) == (8.0, 2.0)
    assert len(clean["runs"]) == len(unchanged["runs"]) == 1
    assert clean["status"] == unchanged["status"] == "ok" and clean["unit"] == "s"
    # The second build reuses the first one's pages: it is the quicker of the two, whatever the machine.
    assert 0 < unchanged["value"] < clean["value"]
    assert any("empty build folder" in line for line in lines)
    kept = timed_checkout_site.layout.build
    assert (kept / "html" / "docs" / "index.html").is_file()
    assert [path.name for path in kept.parent.iterdir()] == ["build"], "the last build kept, nothing else"


@pytest.mark.slow
def test_the_site_of_a_class_is_timed_beside_the_stored_sets_alone_in_a_scratch_folder(timed_class_site) -> None:
    from course.results.layout import Layout

    # One run with a class of 60, its folder kept (conftest.py): test_class_site.py opens the site it timed. The
    # stored sets alone are not built beside it here (alone=False): the next test checks that comparison.
    record = timed_class_site.found["bench/pipeline.site-class"]
    assert record["status"] == "ok" and record["unit"] == "s" and record["goal"] == 15.0 and len(record["runs"]) == 1
    assert "note" not in record, "no comparison was timed"
    assert any("a class of 60 imported sets" in line for line in timed_class_site.lines)
    assert timed_class_site.stored_after == timed_class_site.stored_before, "the class is made in a scratch folder"
    kept = timed_class_site.layout
    assert (kept.results / "student-60" / "set.json").is_file() and (kept.html / "docs" / "index.html").is_file()
    assert sorted(path.name for path in kept.results.parent.iterdir()) == ["build", "results"], "the class's build kept"
    lines: list[str] = []
    skipped = bench.class_site_speed(Layout(ROOT), "no-such-set", progress=lines.append, runs=1)
    assert skipped["bench/pipeline.site-class"]["status"] == "skipped"


def test_a_class_is_never_made_of_a_set_that_lacks_lessons(tmp_path: Path) -> None:
    """A new host's set, which invoke bench has just made, holds lesson 1 alone: 60 copies of it would time a far
    lighter site than a class's. The benchmark says so instead, and names the fix."""
    from course.results.layout import Layout

    shipped = ROOT / "results" / "amd-epyc-6.18.44-fc-v1272-vm"
    new = tmp_path / "results" / "amd-epyc-f26m2s1-6.18.44-fc-v1272-vm"
    new.mkdir(parents=True)
    for name in ("set.json", "01-user-kernel.json"):
        shutil.copy(shipped / name, new / name)
    found = bench.class_site_speed(Layout(ROOT, results_dir=tmp_path / "results"), new.name, lambda line: None, runs=1)
    record = found["bench/pipeline.site-class"]
    assert record["status"] == "skipped" and "lacks 8 lessons (02-read-path, " in record["reason"]
    assert "invoke generate" in record["reason"]
    assert sorted(path.name for path in (tmp_path / "results").iterdir()) == [new.name], "no class was made"


def test_a_class_site_is_timed_beside_the_stored_sets_alone_in_the_same_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``invoke bench``'s class benchmark (``alone``, the default): each run builds the class's site, then the stored
    sets' alone, each into an empty build folder, both marking the copied set current; the note gives the ratio.
    The builds are stood in for: the real ones are the session's (the class's in timed_class_site, the stored sets'
    in timed_checkout_site)."""
    from course.results.layout import Layout

    source = "amd-epyc-6.18.44-fc-v1272-vm"
    keep = tmp_path / "class"
    durations = iter([12.0, 6.0, 14.0, 7.0, 13.0, 8.0])
    seen: list[tuple[Path, str]] = []

    def build(command: list[str], env: dict, cwd, progress, what: str) -> float:
        folder = Path(env["INVOKE_COURSE_BUILD"])
        assert command[-1] == "site" and env["INVOKE_COURSE_SET"] == source and not folder.exists()
        folder.mkdir()  # as a build leaves it: the next run's must be emptied first
        seen.append((Path(env["INVOKE_COURSE_RESULTS"]), folder.name))
        return next(durations)

    monkeypatch.setattr(bench_speed, "timed", build)
    found = bench.class_site_speed(Layout(ROOT), source, lambda line: None, runs=3, size=2, keep=keep)
    record = found["bench/pipeline.site-class"]
    assert seen == [(keep / "results", "build"), (ROOT / "results", "build-alone")] * 3, "interleaved"
    assert (keep / "results" / "student-02" / "set.json").is_file(), "the class beside the stored sets"
    assert record["value"] == 13.0 and record["runs"] == [12.0, 14.0, 13.0]
    assert record["note"] == (
        "the stored sets alone, timed in the same run: median 7.00 s (runs: 6.00, 7.00, 8.00); "
        "with the class, 1.86 times that"
    )
    assert sorted(path.name for path in keep.iterdir()) == ["build", "results"], "the class's build kept"


def test_the_pipeline_is_timed_as_medians_with_the_site_share_of_a_lesson_rerun(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five cold generations, each in empty folders of its own; then five of each other step in the last one."""
    from course.results.layout import Layout

    loop, every = [2.0, 3.5, 2.5, 2.8, 9.0], [7.0, 6.0, 8.0, 7.5, 5.6]
    rounds = [value for pair in zip(every, loop, strict=True) for value in pair]  # --all, then the student's loop
    durations = iter([50.0, 40.0, 44.0, 60.0, 41.0, 0.5, 0.4, 0.9, 0.6, 0.3, *rounds])
    shares = iter(["1.1", "1.4", "1.2", "0.9", "5.0"])
    seen: list[tuple[str, str]] = []

    def run(command: list[str], env: dict, cwd, progress, what: str) -> tuple[float, str]:
        seen.append((" ".join(command[3:]), env["INVOKE_COURSE_BUILD"]))
        student = "lesson" in command and "--all" not in command
        printed = "lesson 3 ...\nbuilt and measured in 2.9 s\n" if student else ""
        printed += f"site updated in {next(shares)} s: build/html\n" if student else ""
        return next(durations), printed

    monkeypatch.setattr(bench_speed, "run_timed", run)
    found = bench.pipeline_speed(Layout(Path(__file__).resolve().parents[1]), progress=lambda line: None)
    cold = found["bench/pipeline.cold"]
    assert cold["value"] == 44.0 and cold["runs"] == [50.0, 40.0, 44.0, 60.0, 41.0] and cold["goal"] == 45.0
    assert found["bench/pipeline.unchanged"]["value"] == 0.5 and found["bench/pipeline.unchanged"]["goal"] == 0.8
    assert found["bench/pipeline.lesson-3"]["value"] == 2.8 and found["bench/pipeline.lesson-3"]["goal"] == 3.0
    share = found["bench/pipeline.lesson-3-site"]
    assert share["value"] == 1.2 and share["goal"] == 1.5 and share["runs"] == [1.1, 1.4, 1.2, 0.9, 5.0]
    assert _bench_verdict(share)[2] == "yes" and _bench_verdict(cold)[2] == "yes"
    programs = found["bench/pipeline.lesson-3-programs"]
    assert programs["value"] == 2.9 and programs["goal"] is None and _bench_verdict(programs)[1] == "(control)"
    folders = [folder for _, folder in seen]
    assert len(set(folders[:5])) == 5, "each cold generation starts from empty folders"
    assert set(folders[5:]) == {folders[4]}, "the other steps run where the last cold one left its results"
    assert [step for step, _ in seen] == ["generate"] * 10 + ["lesson 3 --all", "lesson 3"] * 5
    control = found["bench/pipeline.lesson-3-all"]
    assert control["value"] == 7.0 and control["goal"] is None
    assert found["bench/pipeline.lesson-3"]["note"].endswith("the student's loop takes 0.40 times that")


def test_only_some_benchmarks_update_their_figures_and_keep_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from course.results import store

    earlier = {
        "bench/pipeline.lesson-3": {"status": "ok", "value": 11.0, "unit": "s", "measured_at": "then"},
        "bench/pipeline.cold": {"status": "ok", "value": 40.0, "unit": "s", "measured_at": "then"},
    }
    store.save_lesson(tmp_path, "bench", {"measured_at": "then", "measurements": earlier, "failures": []})
    now = {"bench/pipeline.lesson-3": {"status": "ok", "value": 2.0, "unit": "s", "measured_at": "now"}}
    asked = []
    monkeypatch.setitem(bench.ONLY, "student-loop", lambda layout, progress, runs: asked.append(runs) or now)
    assert bench.run_only(None, tmp_path, ["student-loop"], runs=3) == now  # type: ignore[arg-type]
    stored = store.read_json(tmp_path / "bench.json")["measurements"]
    assert asked == [3] and stored["bench/pipeline.lesson-3"]["value"] == 2.0
    assert stored["bench/pipeline.cold"] == earlier["bench/pipeline.cold"], "a figure not measured again is kept"
    sources = []
    monkeypatch.setitem(bench.ONLY, "class-site", lambda layout, source, progress, runs: sources.append(source) or {})
    bench.run_only(None, tmp_path / "bob-laptop", ["class-site"])  # type: ignore[arg-type]
    assert sources == ["bob-laptop"], "the class is made of copies of the set being benchmarked"
    with pytest.raises(
        ValueError, match="no benchmark nope: choose among student-loop, site, class-site, generate, matrix, lab"
    ):
        bench.run_only(None, tmp_path, ["nope"])  # type: ignore[arg-type]


def _khttpd_boot(medians: dict[str, float], calls: int = 3) -> dict[str, dict]:
    """Lesson 9 as one icount boot stores it: the request medians given, the others 43000; one call count."""
    stored = {key: {"status": "ok", "unit": "icount ticks", "median": 43000.0} for key in bench.KHTTPD_REQUESTS}
    for key, median in medians.items():
        stored[key]["median"] = median
    histogram = {"start": calls, "width": 1, "counts": [100]}
    stored["09-khttpd/server-syscalls.read-write"] = {"status": "ok", "unit": "calls", "histogram": histogram}
    return stored


def test_lesson_9s_spread_names_its_worst_request_and_says_whether_the_counts_repeat() -> None:
    same = bench.khttpd_spread([_khttpd_boot({}), _khttpd_boot({})])["bench/icount.khttpd-spread"]
    assert same["value"] == 0.0 and same["identical_medians"] == 6 and same["counts_repeat"]
    moved = bench.khttpd_spread([_khttpd_boot({}), _khttpd_boot({"09-khttpd/request.khttpd": 43043.0}, calls=4)])
    spread = moved["bench/icount.khttpd-spread"]
    assert spread["worst"] == "09-khttpd/request.khttpd" and spread["medians"] == [43000.0, 43043.0]
    assert spread["value"] == pytest.approx(43 / 43021.5 * 100, rel=1e-3) and spread["identical_medians"] == 5
    assert not spread["counts_repeat"] and _bench_verdict(spread)[2] == "NO"
    assert bench.khttpd_spread([_khttpd_boot({})])["bench/icount.khttpd-spread"]["status"] == "skipped"


def test_a_corrupt_bench_json_stops_only_some_benchmarks_before_they_measure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from course.results import store

    (tmp_path / "bench.json").write_text("{not json")
    measuring = []
    monkeypatch.setitem(bench.ONLY, "student-loop", lambda layout, progress, runs: measuring.append(runs) or {})
    with pytest.raises(store.StoreError, match=r"bench\.json is corrupt"):
        bench.run_only(None, tmp_path, ["student-loop"])  # type: ignore[arg-type]
    assert measuring == [], "refused before minutes of measuring, not after them"


def test_only_names_each_benchmark_once_and_naming_none_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert bench.parse_only(" site, site ,student-loop,") == ["site", "student-loop"]
    for nothing in (",", " ", "", " , "):
        with pytest.raises(
            ValueError, match="names no benchmark: choose among student-loop, site, class-site, generate, matrix, lab"
        ):
            bench.parse_only(nothing)
    with pytest.raises(ValueError, match="--only nope: no such benchmark"):
        bench.parse_only("site,nope")
    with pytest.raises(ValueError, match="no benchmark named"):
        bench.run_only(None, tmp_path, [])  # type: ignore[arg-type]
    measuring = []
    monkeypatch.setitem(bench.ONLY, "site", lambda layout, progress, runs: measuring.append(runs) or {})
    bench.run_only(None, tmp_path, ["site", "site"], runs=2)  # type: ignore[arg-type]
    assert measuring == [2], "a name given twice is measured once"


@pytest.mark.parametrize("text", ["²", "0", "101", "-1", "1.5", " 3", "٣", "9" * 5000])
def test_runs_are_ascii_digits_from_1_to_100(text: str) -> None:
    with pytest.raises(ValueError, match=r"^--runs must be a whole number from 1 to 100, got "):
        bench.parse_runs(text)


def test_runs_within_bounds_are_taken() -> None:
    assert (bench.parse_runs("1"), bench.parse_runs("05"), bench.parse_runs("100")) == (1, 5, 100)
