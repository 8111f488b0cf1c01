from __future__ import annotations

import json
import math
import os
import shutil
import stat
from pathlib import Path

import pytest

from course import pipeline, store
from course.layout import Layout

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
    with pytest.raises(pipeline.MachineError, match=r"belongs to another machine .*cpu_model 'Another CPU'"):
        pipeline.open_set(layout, "lab-pc-07")
    with pytest.raises(pipeline.MachineError, match="is a reference set"):
        pipeline.open_set(layout, "reference-2000")
    assert (tmp_path / "lab-pc-07" / "set.json").read_bytes() == before
    mine = pipeline.open_set(layout, "my-laptop", label="My laptop")
    assert pipeline.open_set(layout, "my-laptop") == mine, "this machine's own named set is refreshed"
    assert store.read_json(mine / "set.json")["label"] == "My laptop"


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
        ('{"tsc_hz": -1}', r"has machine.tsc_hz = -1, not a finite number >= 0"),
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
    endless = tmp_path / "03-timing.json"
    endless.symlink_to("/dev/zero")
    with pytest.raises(store.StoreError, match=r"03-timing\.json holds more than 16 MiB, too much for a result file"):
        store.read_json(endless)
