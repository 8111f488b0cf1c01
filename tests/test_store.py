from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import gone_within, helpers_after_killing_their_parent

from course import commands, pipeline
from course.measure import lesson_run, lessons
from course.publish import report
from course.results import fingerprint, store
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
CANNED = ROOT / "tests" / "roots" / "test-course" / "results" / "canned-machine"


def test_write_json_replaces_atomically_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "set" / "03-timing.json"
    store.write_json(target, {"schema": 1, "a": 1})
    store.write_json(target, {"schema": 1, "a": 2})
    assert json.loads(target.read_text())["a"] == 2
    assert [p.name for p in target.parent.iterdir()] == ["03-timing.json"]


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "lesson.json"
    store.write_json(target, {"schema": 1, "kept": True})
    with pytest.raises(TypeError):
        store.write_json(target, {"schema": 1, "bad": object()})  # not serialisable, fails mid-way
    assert json.loads(target.read_text()) == {"kept": True, "schema": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["lesson.json"]


def test_corrupt_file_is_named_with_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "03-timing.json"
    bad.write_text('{"schema": 1, "measurements": ')
    with pytest.raises(store.StoreError, match=r"03-timing\.json is corrupt .*git checkout"):
        store.read_json(bad)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "set.json"
    newer.write_text(json.dumps({"schema": store.SCHEMA + 1}))
    with pytest.raises(store.StoreError, match="newer than this course"):
        store.read_json(newer)


def test_file_without_schema_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "set.json"
    other.write_text("{}")
    with pytest.raises(store.StoreError, match="no schema"):
        store.read_json(other)


def _measurement(value: float, status: str = "ok") -> dict:
    return {"status": status, "min": value, "unit": "ticks"}


def test_a_failed_run_keeps_the_previous_good_figures(tmp_path: Path) -> None:
    store.save_lesson(
        tmp_path,
        "03-timing",
        {
            "measurements": {"03-timing/read.tty": _measurement(500), "03-timing/read.pipe": _measurement(400)},
            "captures": {"03-timing/usystime.tty.output": {"text": "old"}},
            "failures": [],
        },
    )
    stored = store.save_lesson(
        tmp_path,
        "03-timing",
        {
            "measurements": {"03-timing/read.pipe": _measurement(390)},
            "captures": {},
            "failures": [{"step": "run", "what": "usystime (stdin=tty)", "message": "exited with 1", "at": "now"}],
        },
    )
    assert stored["measurements"]["03-timing/read.tty"]["min"] == 500, "kept from the earlier run"
    assert stored["measurements"]["03-timing/read.pipe"]["min"] == 390, "replaced by the new run"
    assert stored["captures"]["03-timing/usystime.tty.output"]["text"] == "old"
    assert store.read_json(tmp_path / "03-timing.json")["failures"][0]["message"] == "exited with 1"


def test_a_clean_run_replaces_the_lesson_file_whole(tmp_path: Path) -> None:
    store.save_lesson(tmp_path, "01-x", {"measurements": {"01-x/gone": _measurement(1)}, "failures": []})
    stored = store.save_lesson(tmp_path, "01-x", {"measurements": {"01-x/new": _measurement(2)}, "failures": []})
    assert list(stored["measurements"]) == ["01-x/new"]


def _run_deriving(expression: str, measured: dict[str, dict]) -> lesson_run.LessonRun:
    """A run of lesson 3 that measured ``measured`` and derives one figure, ``03-timing/d``, by ``expression``."""
    lesson = lessons.find(Layout(ROOT), 3)
    spec = {"name": "d", "expression": expression, "unit": "%"}
    run = lesson_run.LessonRun(dataclasses.replace(lesson, derived=(spec,)), previous={})
    run.measurements.update(measured)
    return run


def test_a_figure_derived_from_the_run_alone_never_reads_the_set(tmp_path: Path) -> None:
    # The rerun of one lesson reads no other lesson's file: a damaged one does not stop it.
    store.save_set_info(tmp_path, {"kind": "measured", "machine": {}})
    (tmp_path / "01-user-kernel.json").write_text("not JSON")
    run = _run_deriving(
        "100 * median(03-timing/a) / median(03-timing/b)",
        {
            "03-timing/a": {"status": "ok", "median": 1, "unit": "ticks"},
            "03-timing/b": {"status": "ok", "median": 4, "unit": "ticks"},
        },
    )
    pipeline._derive(run, tmp_path)
    assert run.measurements["03-timing/d"]["value"] == 25


def test_a_derived_figure_is_dated_by_its_newest_input(tmp_path: Path) -> None:
    """A student's rerun keeps the figures it does not remeasure, with their dates: a figure derived from them
    alone is then the very same as before (its page is not rebuilt), and one with a new input is dated by it."""
    store.save_set_info(tmp_path, {"kind": "measured", "machine": {}})
    kept = {"status": "ok", "median": 1, "unit": "ticks", "measured_at": "2026-11-01T00:00:00+00:00"}
    rerun = {"status": "ok", "median": 4, "unit": "ticks", "measured_at": "2026-12-05T12:00:00+00:00"}
    run = _run_deriving("100 * median(03-timing/a) / median(03-timing/b)", {"03-timing/a": kept, "03-timing/b": kept})
    pipeline._derive(run, tmp_path)
    assert run.measurements["03-timing/d"]["measured_at"] == kept["measured_at"]
    run = _run_deriving("100 * median(03-timing/a) / median(03-timing/b)", {"03-timing/a": kept, "03-timing/b": rerun})
    pipeline._derive(run, tmp_path)
    assert run.measurements["03-timing/d"]["measured_at"] == rerun["measured_at"]


def test_a_figure_derived_from_another_lessons_stored_figure_reads_the_set(tmp_path: Path) -> None:
    store.save_set_info(tmp_path, {"kind": "measured", "machine": {}})
    stored = {"04-kernel-read/k": {"status": "ok", "median": 3, "unit": "ticks"}}
    store.save_lesson(tmp_path, "04-kernel-read", {"measurements": stored, "failures": []})
    run = _run_deriving(
        "100 * median(04-kernel-read/k) / median(03-timing/b)",
        {
            "03-timing/b": {"status": "ok", "median": 4, "unit": "ticks"},
        },
    )
    pipeline._derive(run, tmp_path)
    assert run.measurements["03-timing/d"]["value"] == 75
    (tmp_path / "04-kernel-read.json").write_text("not JSON")  # once needed, a damaged file is named
    with pytest.raises(store.StoreError, match=r"04-kernel-read\.json"):
        pipeline._derive(run, tmp_path)


def test_load_all_puts_reference_sets_first(tmp_path: Path) -> None:
    for name, kind in (("a-machine", "measured"), ("z-reference", "reference")):
        store.save_set_info(tmp_path / name, {"kind": kind, "machine": {}})
    store.save_lesson(
        tmp_path / "a-machine", "03-timing", {"measurements": {"03-timing/read.tty": _measurement(9)}, "failures": []}
    )
    sets = store.load_all(tmp_path)
    assert list(sets) == ["z-reference", "a-machine"]
    assert sets["a-machine"].measurement("03-timing/read.tty")["min"] == 9
    assert sets["a-machine"].measurement("03-timing/read.pipe") is None


def test_a_load_shared_between_processes_gives_what_a_load_in_one_gives(tmp_path: Path, monkeypatch) -> None:
    """The helpers check the later shares (this process checks only the first), and a bad file is named alike."""
    import multiprocessing

    results = Path(shutil.copytree(ROOT / "results", tmp_path / "results"))
    for fresh in ("_CHECKED", "_SEEN"):  # nothing checked earlier in this process
        monkeypatch.setattr(store, fresh, set())
    alone, keys = store.load_all(results), store.checked_keys()
    for fresh in ("_CHECKED", "_SEEN"):
        monkeypatch.setattr(store, fresh, set())
    checked_here: list[Path] = []
    real_check = store._check
    monkeypatch.setattr(store, "_check", lambda path, content: checked_here.append(path) or real_check(path, content))
    shared = store.load_all(results, processes=3)
    assert list(shared) == list(alone) and shared == alone
    assert store.checked_keys() == keys, "the helpers' checks count as this process's"
    names = store.set_folders(results)
    first_share = names[: -(-len(names) // 3)]
    assert {path.parent.name for path in checked_here} == set(first_share), "the other shares were checked apart"
    last = names[-1]
    (results / last / "set.json").write_text('{"schema": 1, "kind": ')
    for fresh in ("_CHECKED", "_SEEN"):
        monkeypatch.setattr(store, fresh, set())
    with pytest.raises(store.StoreError) as in_one:
        store.load_all(results)
    with pytest.raises(store.StoreError) as in_two:
        store.load_all(results, processes=2)
    assert str(in_two.value) == str(in_one.value) and last in str(in_two.value)
    assert multiprocessing.active_children() == [], "no helper left running"


def test_save_set_info_keeps_earlier_fields(tmp_path: Path) -> None:
    store.save_set_info(tmp_path, {"kind": "measured", "label": "Lab PC 7"})
    store.save_set_info(tmp_path, {"kind": "measured", "machine": {"cpu_model": "x"}})
    info = store.read_json(tmp_path / "set.json")
    assert info["label"] == "Lab PC 7" and info["machine"] == {"cpu_model": "x"}
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_set_info_is_rewritten_only_when_it_changes(tmp_path: Path) -> None:
    target = tmp_path / "set.json"
    store.save_set_info(tmp_path, {"kind": "measured", "machine": {"cpu_model": "x", "tsc_hz": 1}})
    first = target.read_bytes()
    os.utime(target, (0, 0))
    store.save_set_info(tmp_path, {"kind": "measured", "machine": {"cpu_model": "x", "tsc_hz": 1}})
    assert target.read_bytes() == first and target.stat().st_mtime == 0  # untouched: nothing to rebuild
    store.save_set_info(tmp_path, {"kind": "measured", "machine": {"cpu_model": "x", "tsc_hz": 2}})
    assert store.read_json(target)["machine"]["tsc_hz"] == 2 and target.stat().st_mtime > 0


def test_a_run_never_adds_to_another_machines_set(tmp_path: Path) -> None:
    layout = Layout(Path(__file__).resolve().parents[1], results_dir=tmp_path)
    store.save_set_info(
        tmp_path / "lab-pc-07",
        {
            "kind": "measured",
            "machine": {"cpu_model": "Another CPU", "kernel_release": "5.10.0-other", "virtualization": "bare"},
        },
    )
    store.save_set_info(tmp_path / "reference-2000", {"kind": "reference", "machine": {}})
    before = (tmp_path / "lab-pc-07" / "set.json").read_bytes()
    with pytest.raises(lesson_run.MachineError, match=r"belongs to another machine .*cpu_model 'Another CPU'"):
        pipeline.open_set(layout, "lab-pc-07")
    with pytest.raises(lesson_run.MachineError, match="is a reference set"):
        pipeline.open_set(layout, "reference-2000")
    assert (tmp_path / "lab-pc-07" / "set.json").read_bytes() == before
    mine = pipeline.open_set(layout, "my-laptop", label="My laptop")
    assert pipeline.open_set(layout, "my-laptop") == mine, "this machine's own named set is refreshed"
    assert store.read_json(mine / "set.json")["label"] == "My laptop"


IDENTITY = ("cpu_vendor", "cpu_family", "cpu_model_number", "cpu_stepping")


def test_a_run_never_adds_to_the_set_of_another_cpu_under_the_same_model_name(tmp_path: Path) -> None:
    """Two cloud hosts both called "AMD EPYC" under one kernel: the CPU's family tells them apart."""
    layout = Layout(Path(__file__).resolve().parents[1], results_dir=tmp_path)
    here = fingerprint.machine()
    older = {**here, "cpu_family": f"{here['cpu_family']}7"}  # the same model name, kernel and VM; another CPU
    store.save_set_info(tmp_path / "cloud-vm", {"kind": "measured", "machine": older})
    before = (tmp_path / "cloud-vm" / "set.json").read_bytes()
    with pytest.raises(lesson_run.MachineError) as refused:
        pipeline.open_set(layout, "cloud-vm")
    message = str(refused.value)
    assert f"cpu_family {older['cpu_family']!r} (here {here['cpu_family']!r})" in message
    assert "--set" in message and "cpu_model" not in message, "it names what differs, and the fix"
    assert (tmp_path / "cloud-vm" / "set.json").read_bytes() == before, "the set is left as it was"


def test_a_set_stored_before_the_cpu_identity_was_recorded_is_compared_as_before(tmp_path: Path) -> None:
    """Such a set records no family, model or stepping: the same model name, kernel and VM let a run add to it,
    and from then on it records this CPU's identity, which the next run compares."""
    layout = Layout(Path(__file__).resolve().parents[1], results_dir=tmp_path)
    here = fingerprint.machine()
    stored = {key: value for key, value in here.items() if key not in IDENTITY}
    store.save_set_info(tmp_path / "older", {"kind": "measured", "machine": stored})
    assert pipeline.open_set(layout, "older") == tmp_path / "older"
    recorded = store.read_json(tmp_path / "older" / "set.json")["machine"]
    assert {key: recorded[key] for key in IDENTITY} == {key: here[key] for key in IDENTITY}


def test_figures_stored_before_the_cpu_identity_was_recorded_take_no_run_of_another_generation(
    tmp_path: Path,
) -> None:
    """Such a set with figures may be another host's of the same model name and kernel (a cloud VM): a run named
    into it (--set) is refused, and neither its figures nor its machine record change; this machine's own set is
    the fix the message names."""
    layout = Layout(Path(__file__).resolve().parents[1], results_dir=tmp_path)
    here = fingerprint.machine()
    if not fingerprint.cpu_generation(here):
        pytest.skip("this machine's /proc/cpuinfo gives no family, model and stepping (not x86)")
    stored = {key: value for key, value in here.items() if key not in IDENTITY}
    store.save_set_info(tmp_path / "older", {"kind": "measured", "machine": stored})
    store.write_json(tmp_path / "older" / "01-user-kernel.json", {"schema": 1, "measurements": {}})
    before = (tmp_path / "older" / "set.json").read_bytes()
    with pytest.raises(lesson_run.MachineError, match="stored before sets recorded their CPU") as refused:
        pipeline.open_set(layout, "older")
    assert fingerprint.set_id(here) in str(refused.value)
    assert (tmp_path / "older" / "set.json").read_bytes() == before


# --- files that are not what they claim: one clear line each, on every read ------------------


def _canned(tmp_path: Path) -> Path:
    """A copy of the test course's canned set, to damage."""
    return Path(shutil.copytree(CANNED, tmp_path / "results" / "canned-machine"))


def test_every_committed_set_passes_the_checks() -> None:
    for results in [ROOT / "results", *sorted((ROOT / "tests" / "roots").glob("*/results"))]:
        assert store.load_all(results), results


def test_a_result_file_that_is_not_utf8(tmp_path: Path) -> None:
    set_path = _canned(tmp_path)
    (set_path / "03-timing.json").write_bytes(b'{"schema": 1, "lesson": "caf\xe9"}')
    with pytest.raises(store.StoreError, match=r"03-timing\.json is not UTF-8 text \(byte 28 is 0xe9\); restore it"):
        store.load_all(tmp_path / "results")


def test_a_folder_where_a_result_file_belongs(tmp_path: Path) -> None:
    set_path = _canned(tmp_path)
    (set_path / "03-timing.json").unlink()
    (set_path / "03-timing.json").mkdir()
    with pytest.raises(store.StoreError, match=r"03-timing\.json is a folder where a result file belongs; remove it"):
        store.load_set(set_path)


def test_json_nested_too_deeply(tmp_path: Path) -> None:
    deep = tmp_path / "03-timing.json"
    deep.write_text('{"schema": 1, "x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(store.StoreError, match=r"03-timing\.json is corrupt \(JSON nested too deeply\)"):
        store.read_json(deep)


@pytest.mark.parametrize(
    ("machine", "message"),
    [
        ('"Canned CPU"', r"has machine = 'Canned CPU', not an object"),
        ('{"mitigations": "all"}', r"has machine.mitigations = 'all', not an object of text"),
        ('{"tsc_hz": -1}', r"has machine.tsc_hz = -1, not a rate in Hz \(0, or from 1 to 2\*\*63\)"),
        # A rate below 1 Hz would make the nanoseconds of every tick count overflow.
        ('{"tsc_hz": 1e-300}', r"has machine.tsc_hz = 1e-300, not a rate in Hz"),
    ],
)
def test_a_set_description_of_the_wrong_shape(tmp_path: Path, machine: str, message: str) -> None:
    (tmp_path / "set.json").write_text(f'{{"schema": 1, "kind": "measured", "machine": {machine}}}')
    with pytest.raises(store.StoreError, match=r"set\.json " + message + ".*; restore it with git checkout"):
        store.load_set(tmp_path)


def test_wrong_types_in_a_stored_measurement_are_refused_when_read(tmp_path: Path) -> None:
    set_path = _canned(tmp_path)
    timing = json.loads((set_path / "03-timing.json").read_text())
    timing["measurements"]["03-timing/read.tty"]["median"] = "fast"
    (set_path / "03-timing.json").write_text(json.dumps(timing))
    # The run reads the previous file before it measures: it stops there, before saving anything.
    with pytest.raises(store.StoreError, match=r"03-timing\.json has measurements\['03-timing/read.tty'\]\.median"):
        store.read_json(set_path / "03-timing.json")


@pytest.mark.parametrize(
    ("figure", "message"),
    [
        ("NaN", "holds NaN, which is no figure"),
        ("Infinity", "holds Infinity, which is no figure"),
        ("-Infinity", "holds -Infinity, which is no figure"),
        ("1e999", "holds the number 1e999, too large to be a figure"),
        ("-3", r"has measurements\['03-timing/x'\]\.min = -3, not a finite number >= 0"),
        ("true", r"has measurements\['03-timing/x'\]\.min = True, not a finite number >= 0"),
    ],
)
def test_impossible_figures_are_refused_not_shown(tmp_path: Path, figure: str, message: str) -> None:
    lesson = tmp_path / "03-timing.json"
    lesson.write_text(f'{{"schema": 1, "measurements": {{"03-timing/x": {{"status": "ok", "min": {figure}}}}}}}')
    with pytest.raises(store.StoreError, match=r"03-timing\.json " + message):
        store.read_json(lesson)


def test_negative_figures_only_where_they_mean_something(tmp_path: Path) -> None:
    lesson = tmp_path / "bench.json"
    correlation = {"status": "ok", "unit": "r", "value": -0.4}
    difference = {"status": "ok", "unit": "bytes", "value": -12.5, "derived": True}
    store.write_json(lesson, {"schema": 1, "measurements": {"bench/r": correlation, "bench/d": difference}})
    assert store.read_json(lesson)["measurements"]["bench/r"]["value"] == -0.4


def test_a_run_never_stores_what_a_read_would_refuse(tmp_path: Path) -> None:
    store.save_lesson(tmp_path, "03-timing", {"measurements": {"03-timing/x": _measurement(5)}, "failures": []})
    before = (tmp_path / "03-timing.json").read_bytes()
    with pytest.raises(store.StoreError, match=r"03-timing\.json not written: the new content has .*min = nan"):
        store.save_lesson(tmp_path, "03-timing", {"measurements": {"03-timing/x": _measurement(math.nan)}})
    assert (tmp_path / "03-timing.json").read_bytes() == before
    with pytest.raises(ValueError, match="Out of range float"):
        store.write_json(tmp_path / "other.json", {"schema": 1, "x": math.inf})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["03-timing.json"]


def test_dot_folders_are_never_sets(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _canned(tmp_path)
    for debris in (".import-canned-machine-1a2b3c4d", ".replaced-canned-machine-5e6f7a8b"):
        shutil.copytree(CANNED, results / debris)
    assert list(store.load_all(results)) == ["canned-machine"]


def test_hidden_json_files_are_not_lessons(tmp_path: Path) -> None:
    set_path = _canned(tmp_path)
    (set_path / ".03-timing.json").write_text("left by an editor")
    assert ".03-timing" not in store.load_set(set_path).lessons


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664)])
def test_result_files_get_ordinary_modes(tmp_path: Path, umask: int, mode: int) -> None:
    previous = os.umask(umask)
    try:
        store.write_json(tmp_path / "03-timing.json", {"schema": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "03-timing.json").stat().st_mode) == mode


@pytest.mark.parametrize(
    ("measurement", "message"),
    [
        ({"status": "ok", "min": 1, "p90": 2}, r"with a p90 but no p99"),  # the site prints "p90 · p99"
        ({"status": "ok", "value": 1, "goal": 2}, r"with a goal but no unit"),
        ({"status": "ok", "min": 1, "sources": {"/etc/shadow": "0"}}, r"sources = \{\.\.\.\} \(an object\), not an"),
        ({"status": "ok", "min": 1, "sources": {"code/../../x": "0"}}, r"not an object of paths inside the course"),
        ({"status": "ok", "min": 1, "histogram": {"start": 0, "width": 0, "counts": []}}, r"width = 0, not a width"),
        ({"status": "ok", "value": 1, "timeline": {"seconds": [1.0], "values": []}}, r"with 1 times but 0 values"),
        ({"status": "ok", "unit": None, "min": 1}, r"unit = None, not text"),
        ({"status": "skipped", "reason": 7}, r"reason = 7, not text"),
        ({"status": "ok"}, r"marked ok but with no figure"),
        # Each of these passed the checks and then stopped the site build (KeyError, inf, 2.4 GB).
        ({"status": "ok", "min": 1, "goal": 1, "unit": "s"}, r"with a goal but no value to compare it with"),
        (
            {"status": "ok", "value": 1, "timeline": {"seconds": [0, 1, 2], "values": [1e-300, 1e-300, 9e18]}},
            r"timeline\.values holding 1e-300, not 0 nor at least 1e-06",
        ),
        ({"status": "ok", "value": 1, "timeline": {"seconds": [-1], "values": [1]}}, r"seconds = \[\.\.\.\]"),
        (
            {"status": "ok", "min": 1, "histogram": {"start": 0, "width": 1, "counts": [1] * 7_500}},
            r"histogram\.counts of 7,500 entries, more than the 1,000 a result file may hold",
        ),
        ({"status": "ok", "min": 1, "tsc_hz": 1e-300}, r"tsc_hz = 1e-300, not a rate in Hz"),
    ],
)
def test_fields_the_site_relies_on(tmp_path: Path, measurement: dict, message: str) -> None:
    lesson = tmp_path / "03-timing.json"
    lesson.write_text(json.dumps({"schema": 1, "measurements": {"03-timing/x": measurement}}))
    with pytest.raises(store.StoreError, match=r"03-timing\.json has measurements\['03-timing/x'\]" + f".*{message}"):
        store.read_json(lesson)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"failures": [{"step": "run", "what": "x", "message": "y"}]}, r"has failures\[0\] without its at"),
        ({"steps": [{"name": "run", "seconds": "1", "cached": False}]}, r"has steps\[0\]\.seconds = '1'"),
        ({"captures": {"03-timing/out": {"text": 5}}}, r"has captures\['03-timing/out'\]\.text = 5, not text"),
        ({"kernel_run": "vm"}, r"has kernel_run = 'vm', not an object"),
        ({"exercises": {"e": {"yours": "works"}}}, r"has exercises\['e'\]\.yours = 'works', not an object"),
        ({"measured_at": 2000}, r"has measured_at = 2000, not text"),
    ],
)
def test_lesson_fields_the_site_relies_on(tmp_path: Path, content: dict, message: str) -> None:
    lesson = tmp_path / "03-timing.json"
    lesson.write_text(json.dumps({"schema": 1, **content}))
    with pytest.raises(store.StoreError, match=r"03-timing\.json " + message):
        store.read_json(lesson)


def test_a_result_file_is_read_with_bounded_memory(tmp_path: Path) -> None:
    huge = tmp_path / "03-timing.json"
    with huge.open("wb") as stream:
        stream.truncate(6 * 1024**3)  # 6 GiB, sparse: read, it would fill the memory
    with pytest.raises(store.StoreError, match=r"03-timing\.json holds more than 16 MiB, too much for a result file"):
        store.read_json(huge)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_only_regular_files_are_read(tmp_path: Path, kind: str) -> None:
    # A FIFO named set.json would make `invoke results.list` wait for a writer for ever; /dev/zero never ends.
    folder = tmp_path / "results" / "odd"
    folder.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(folder / "set.json")
    else:
        (folder / "set.json").symlink_to("/dev/zero")

    def waited(number: int, frame: object) -> None:
        raise TimeoutError("still waiting for a writer to the FIFO")

    previous = signal.signal(signal.SIGALRM, waited)
    signal.alarm(10)
    try:
        with pytest.raises(store.StoreError, match=r"odd/set\.json cannot be read \(not a regular file, but a FIFO"):
            store.load_all(tmp_path / "results")  # at once: no wait
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("schema", [0, -5])
def test_a_schema_below_1_is_refused(tmp_path: Path, schema: int) -> None:
    (tmp_path / "set.json").write_text(json.dumps({"schema": schema, "kind": "measured"}))
    with pytest.raises(store.StoreError, match=rf"set\.json has schema {schema}, not a version of the layout"):
        store.read_json(tmp_path / "set.json")


def test_a_lone_surrogate_is_refused_when_read(tmp_path: Path) -> None:
    # Printed by `invoke results.list`, it raised UnicodeEncodeError; a surrogate pair is one character.
    (tmp_path / "set.json").write_text('{"schema": 1, "label": "pair \\ud83d\\ude00 then \\ud800 alone"}')
    with pytest.raises(store.StoreError, match=r"set\.json holds text with a lone surrogate \('pair .* alone'\)"):
        store.read_json(tmp_path / "set.json")
    (tmp_path / "set.json").write_text('{"schema": 1, "label": "pair \\ud83d\\ude00, and \\\\ud800 as text"}')
    assert store.read_json(tmp_path / "set.json")["label"] == "pair \U0001f600, and \\ud800 as text"


def test_a_results_folder_that_is_a_file_is_said_so(tmp_path: Path) -> None:
    # INVOKE_COURSE_RESULTS=some/file made results.list and the site succeed, showing no set.
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(store.StoreError, match=r"results is not a folder; point INVOKE_COURSE_RESULTS"):
        store.load_all(tmp_path / "results")
    assert store.load_all(tmp_path / "not-made-yet") == {}


def test_a_lesson_file_stays_under_the_read_limit(tmp_path: Path) -> None:
    # A program printing 3.9 MB, run with 6 kinds of stdin, made a 23 MB file that nothing could read back.
    noisy = "\x01" * (4 * 1024 * 1024)  # 6 bytes of JSON each (\u0001): 24 MiB per capture, uncut
    captures = {f"03-timing/big.{n}.output": {"text": noisy, "command": "big"} for n in range(6)}
    stored = store.save_lesson(tmp_path, "03-timing", {"measurements": {}, "captures": captures})
    file = tmp_path / "03-timing.json"
    assert file.stat().st_size < 4 * 1024 * 1024
    text = store.read_json(file)["captures"]["03-timing/big.0.output"]["text"]
    assert text == stored["captures"]["03-timing/big.0.output"]["text"]
    assert text.startswith("\x01" * store.CAPTURE_CHARS) and text.endswith("a capture keeps 65,536]")


def test_captures_give_way_when_a_lesson_file_would_pass_the_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(store.validate, "MAX_BYTES", 1024 * 1024)
    captures = {f"03-timing/big.{n}.output": {"text": "\x01" * 60_000} for n in range(6)}  # 6 x 360 KB
    measurements = {"03-timing/x": _measurement(5)}
    store.save_lesson(tmp_path, "03-timing", {"measurements": measurements, "captures": captures})
    content = store.read_json(tmp_path / "03-timing.json")
    assert content["measurements"] == measurements, "the figures are kept"
    assert all(c["text"].startswith("[output not kept") for c in content["captures"].values())
    many = {f"03-timing/x{n}": {**_measurement(5), "note": "x" * 1000} for n in range(2000)}
    with pytest.raises(store.StoreError, match=r"03-timing\.json not written: this run's results take 2 MiB, over"):
        store.save_lesson(tmp_path, "03-timing", {"measurements": many})
    assert store.read_json(tmp_path / "03-timing.json")["measurements"] == measurements, "the previous file is kept"


def test_terminal_tables_escape_control_characters(tmp_path: Path) -> None:
    # An imported label or CPU model holding ESC, BEL or NUL drove the terminal of `invoke results.list`.
    layout = Layout(ROOT, results_dir=tmp_path / "results")
    set_path = _canned(tmp_path)
    info = json.loads((set_path / "set.json").read_text())
    info["label"] = "L\x1b]0;owned\x07\x1b[2J\u202eL"
    info["machine"]["cpu_model"] = "C\x00C"
    (set_path / "set.json").write_text(json.dumps(info))
    # Such a set is refused when it is read, as an import refuses it: one line, naming the file and the field.
    with pytest.raises(store.StoreError) as refused:
        commands.results(layout)
    assert str(refused.value).startswith(f"{set_path / 'set.json'} has label holding the invisible character U+001B")
    assert "\x1b" not in str(refused.value) and "\n" not in str(refused.value)
    # What reaches a terminal table anyway (a field the load does not check) is escaped all the same.
    listed = report.table(["set", "CPU"], [[info["label"], info["machine"]["cpu_model"]]])
    assert "\x1b" not in listed and "\x00" not in listed and "\x07" not in listed and "\u202e" not in listed
    assert "L\\x1b]0;owned\\x07\\x1b[2J\\u202eL" in listed and "C\\x00C" in listed


def test_a_planted_key_of_checked_files_never_lets_a_nan_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An earlier build's checked keys are trusted for the slow checks, never for the parse."""
    monkeypatch.setattr(store, "_CHECKED", set())
    monkeypatch.setattr(store, "_SEEN", set())
    bad = tmp_path / "set.json"
    bad.write_bytes(b'{"schema": 1, "kind": "measured", "machine": {"tsc_hz": NaN}}')
    store.remember_checked([store._checked_key(bad, bad.read_bytes())])
    with pytest.raises(store.StoreError, match=r"set\.json holds NaN, which is no figure"):
        store.read_json(bad)


def test_the_checked_keys_change_with_python_and_its_unicode_tables() -> None:
    import sys
    import unicodedata

    version = store._checker_version()
    assert sys.version.encode() in version and unicodedata.unidata_version.encode() in version


def test_the_checked_keys_change_with_each_module_of_the_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The check lives in validate, its field types and its shown-text check: editing any makes every key anew."""
    from course.results import schema_types, shown_text, validate

    store._checker_version.cache_clear()
    before = store._checker_version()
    for module in (validate, schema_types, shown_text):
        edited = tmp_path / Path(module.__file__).name
        edited.write_text(Path(module.__file__).read_text() + "\n# a stricter check\n")
        with monkeypatch.context() as patched:
            patched.setattr(module, "__file__", str(edited))
            store._checker_version.cache_clear()
            assert store._checker_version() != before, module.__name__
    store._checker_version.cache_clear()


def test_the_guest_helpers_record_keeps_its_programs_lines_while_a_result_file_may_not(tmp_path: Path) -> None:
    """The guest's record of its jobs is read as it is (their output has line breaks); a result file is checked."""
    from course.kernel import kernel_guest

    record = tmp_path / "results.json"
    job = {"lesson": "03-timing", "program": "usystime", "stdout": "course: meta pinned=cpu0\ncourse: stamp 1\n"}
    store.write_json(record, {"schema": 1, "jobs": [job], "guest": {}})
    assert kernel_guest.collected(record) == [job]
    with pytest.raises(store.StoreError, match="U\\+000A"):
        store.read_json(record)


def test_a_rerun_never_sets_its_figures_beside_previous_ones_of_another_unit() -> None:
    """invoke lesson 9 under tcg-icount after a tcg run: icount ticks are not set beside emulated ticks."""
    figure = {"status": "ok", "min": 42_538, "median": 42_706, "p90": 42_800, "p99": 43_000, "samples": 100}
    stored = {"measurements": {"09-khttpd/request.khttpd": {**figure, "unit": "icount ticks"}}}
    emulated = {"measurements": {"09-khttpd/request.khttpd": {**figure, "min": 481_817, "unit": "emulated ticks"}}}
    same = {"measurements": {"09-khttpd/request.khttpd": {**figure, "min": 42_100, "unit": "icount ticks"}}}
    lesson = None  # the table reads only the stored and the previous file
    across = report.lesson_table(lesson_run.LessonReport(lesson, stored, emulated, cached=False), compare=True)
    assert "481,817" not in across and "the previous run counted emulated ticks, this one icount ticks" in across
    alike = report.lesson_table(lesson_run.LessonReport(lesson, stored, same, cached=False), compare=True)
    assert "42,100" in alike and "not compared" not in alike


#: A parent whose checking helpers each have ~100 KB of keys to send (more than a pipe holds) while it
#: is still on its own share: it prints their pids and waits there, to be killed.
_SHARING_PARENT = """
import multiprocessing, os, sys, time
from pathlib import Path
from course.results import store
parent = os.getpid()
store.checked_keys = lambda: [f"{n:064x}" for n in range(1500)]
def load_set(path):
    if os.getpid() == parent:
        print(*(helper.pid for helper in multiprocessing.active_children()), flush=True)
        time.sleep(60)
store.load_set = load_set
try:
    store._load_sharing_checks(Path("unused"), ["a", "b", "c"], 3)
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize("number", [signal.SIGKILL, signal.SIGTERM])
def test_the_checking_helpers_end_with_a_killed_parent(number: int) -> None:
    """A build killed while its helpers' keys wait in their pipes leaves no helper blocked on a write for ever."""
    helpers = helpers_after_killing_their_parent(_SHARING_PARENT, number, settle=0.3)
    assert len(helpers) == 2
    assert all([gone_within(pid, 5.0) for pid in helpers]), "a helper outlived its parent"


def test_ctrl_c_ends_the_checking_helpers_without_a_traceback() -> None:
    """Ctrl-C reaches the whole process group: the helpers end quietly, the parent alone says what happened."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _SHARING_PARENT],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert parent.stdout is not None
        helpers = [int(pid) for pid in parent.stdout.readline().split()]
        time.sleep(0.3)
        os.killpg(parent.pid, signal.SIGINT)
        _, errors = parent.communicate(timeout=10)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert all([gone_within(pid, 5.0) for pid in helpers]) and parent.returncode == 130
    assert "Traceback" not in errors and "KeyboardInterrupt" not in errors, errors
