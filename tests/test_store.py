from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from course import pipeline, store
from course.layout import Layout


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
            "failures": [{"step": "run", "what": "usystime (stdin=tty)", "message": "exited with 1"}],
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
