"""Answer first: the 2000 percentages computed, never typed; today's entry and exit timed in the read's own run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from course.results import derive, store

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "reference-2000"


# --- the 2000 percentages -----------------------------------------------------------------------------------------


def test_the_2000_savings_are_computed_from_the_articles_ticks() -> None:
    reference = store.load_set(REFERENCE)
    figure = reference.measurement
    assert figure("06-skipping-layers/saving-percent.ksys-read.tty")["value"] == pytest.approx(100 * (474 - 216) / 474)
    assert figure("06-skipping-layers/saving-percent.read-iter.tty")["value"] == pytest.approx(100 * (474 - 175) / 474)
    assert figure("04-kernel-read/saving-percent.read-wrapper.tty")["value"] == pytest.approx(100 * 50 / 474)
    assert figure("04-kernel-read/saving.read-wrapper.tty")["value"] == 50


def test_a_typed_2000_percentage_is_replaced_by_the_computed_one(tmp_path: Path) -> None:
    copy = shutil.copytree(REFERENCE, tmp_path / "reference-2000")
    content = json.loads((copy / "reference.json").read_text())
    content["measurements"]["06-skipping-layers/saving-percent.ksys-read.tty"]["value"] = 54
    (copy / "reference.json").write_text(json.dumps(content))
    value = store.load_set(copy).measurement("06-skipping-layers/saving-percent.ksys-read.tty")["value"]
    assert f"{value:.1f}" == "54.4", "54 is the article's rounding; the course shows what 216 and 474 give"


def test_every_derived_2000_figure_says_how_from_the_printed_ones() -> None:
    content = json.loads((REFERENCE / "reference.json").read_text())
    derived = {k: m for k, m in content["measurements"].items() if m.get("derived")}
    assert len(derived) >= 5
    for key, measurement in derived.items():
        assert derive.REFERENCE.search(measurement["how"]), f"{key} is computed from stored figures, not typed"
        for used in measurement["from"]:
            assert not content["measurements"][used].get("derived"), "only from the article's printed ticks"


def test_a_2000_figure_that_cannot_be_computed_names_itself(tmp_path: Path) -> None:
    copy = shutil.copytree(REFERENCE, tmp_path / "reference-2000")
    content = json.loads((copy / "reference.json").read_text())
    content["measurements"]["06-skipping-layers/saving-percent.ksys-read.tty"]["how"] = "min(03-timing/nothing) - 1"
    (copy / "reference.json").write_text(json.dumps(content))
    with pytest.raises(store.StoreError, match=r"saving-percent\.ksys-read\.tty.*03-timing/nothing is not measured"):
        store.load_set(copy)


# --- today's entry and exit, in the read's own run ----------------------------------------------------------------


def test_usystime_times_the_invalid_call_in_the_rounds_of_the_reads(tmp_path: Path) -> None:
    binary = tmp_path / "usystime"
    source = ROOT / "code" / "user" / "03-timing" / "usystime.c"
    subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-o", str(binary), str(source)], check=True)
    with open("/dev/null", "rb") as null:
        output = subprocess.run([str(binary), "1600"], stdin=null, capture_output=True, text=True, check=True).stdout
    assert "course: measure invalid-syscall unit=ticks samples=1600 subtract=stamp-pair" in output
    assert "course: measure read.stdin unit=ticks samples=1600" in output
    assert "timed in 100 rounds" in output.split("invalid system call", 1)[1].splitlines()[0], "interleaved"


def test_the_entry_and_exit_share_is_derived_from_one_run_in_percent() -> None:
    from course.measure import lessons
    from course.results.layout import Layout

    specs = {spec["name"]: spec for spec in lessons.find(Layout(ROOT), 3).derived}
    spec = specs["saving-percent.entry-exit.tty"]
    assert spec["unit"] == "%"
    figures = {
        "03-timing/invalid-syscall": {"status": "ok", "median": 800, "unit": "ticks", "runner": "host"},
        "03-timing/read.tty": {"status": "ok", "median": 1600, "unit": "ticks", "runner": "host"},
    }
    assert derive.derive(spec, figures.get)["value"] == 50


def test_the_execution_report_gives_each_lesson_its_own_last_run() -> None:
    from course.publish.sphinxext.context import last_run

    data = {
        "measured_at": "2026-12-05T01:07:19+00:00",  # the end of the whole run, when every file was written
        "measurements": {
            "a": {"measured_at": "2026-12-05T01:05:58+00:00"},
            "b": {"measured_at": "2026-12-05T01:05:59+00:00"},
            "c": {"measured_at": "2026-12-05T01:07:19+00:00", "derived": True},
        },
        "captures": {"d": {"measured_at": "2026-12-05T01:05:50+00:00"}},
    }
    assert last_run(data) == "2026-12-05T01:05:59+00:00"
    assert last_run({"measured_at": "x", "measurements": {}}) == "x", "nothing measured: the file's date"


# --- the answer's charts, data in and SVG out ---------------------------------------------------------------------


def test_an_answer_chart_puts_every_share_on_one_scale_from_0_to_100() -> None:
    from course.publish.sphinxext.charts import Group, Share, answer_chart

    groups = [
        Group("crossing only", "int $0x80", (Share("2000", 10.5, "10.5 %"), Share("today", None, "not measurable"))),
        Group("calling the method", "", (Share("2000", 63.1, "63.1 %"), Share("6.1 guest", 49.9, "49.9 %", 2))),
    ]
    chart = answer_chart(groups, "savings", "saved, %")
    assert "100 %" in chart.svg and "not measurable" in chart.svg
    assert ("calling the method", "6.1 guest", "49.9 %", "") in chart.rows
    assert chart.svg.count("<title>") == 1


def test_a_size_chart_draws_the_fitted_lines_and_the_articles() -> None:
    from course.publish.sphinxext.charts import SizeSeries, size_chart

    today = SizeSeries("page cache, host", ((1.0, 800.0), (4096.0, 900.0)), 0.025, 800.0, 1)
    then = SizeSeries("2000: 948 ns + 2 ticks a byte", (), 4.0, 948.0, 0, "--")
    chart = size_chart([today, then], "size")
    assert "page cache, host" in chart.svg and "2000: 948 ns + 2 ticks a byte" in chart.svg
    assert "mathdefault" not in chart.svg, "no TeX left raw on the log axis"
    assert ("page cache, host", "per byte", "0.025", "fitted line: 800 ns + slope") in chart.rows


# --- captions: a command runs as copied -------------------------------------------------------------------------


def test_every_recorded_command_is_shown_as_what_a_shell_runs_and_the_rest_in_words() -> None:
    import shlex

    from course.publish.sphinxext.output import command_parts

    seen = 0
    for result_set in store.load_all(ROOT / "results").values():
        for content in result_set.lessons.values():
            for capture in content.get("captures", {}).values():
                command = capture.get("command", "")
                runnable, words = command_parts(command)
                tokens = shlex.split(runnable)  # raises on an unbalanced quote
                assert not [t for t in tokens if t.startswith("(") or t in ("devnull", "tty", "pipe", "...", "#")]
                if "(files open:" in command:
                    assert "COURSE_FILES" in words and "files open" not in runnable
                seen += 1
    assert seen > 20
    assert command_parts("insmod k.ko < (pseudo-terminal)") == ("insmod k.ko", "standard input: a pseudo-terminal")
    assert command_parts("bytes 20 < stdin.txt")[0] == "bytes 20"


# --- lesson 2: one graph in full, the others as what they add ----------------------------------------------------


def test_the_kinds_table_names_only_what_not_every_graph_calls() -> None:
    from course.publish.sphinxext.traces import kinds_table

    null = "x64_sys_call() {\n  ksys_read() {\n    vfs_read() {\n      read_null();\n    }\n  }\n}\n"
    tty = "x64_sys_call() {\n  ksys_read() {\n    vfs_read() {\n      tty_read() {\n        n_tty_read();\n      }\n"
    tty += "    }\n  }\n}\n"
    file = null.replace("read_null();", "ovl_read_iter [overlay]();")
    headers, rows = kinds_table({"/dev/null": null, "terminal": tty, "file": file})
    assert headers == ["function", "/dev/null", "terminal", "file"]
    assert rows == [
        ["read_null()", "✓", "", ""],
        ["tty_read()", "", "✓", ""],
        ["n_tty_read()", "", "✓", ""],
        ["ovl_read_iter() [overlay]", "", "", "✓"],
        ["functions in the graph", "4", "5", "4"],
    ], "the shared lines (dispatch, ksys_read, vfs_read) are left out"
