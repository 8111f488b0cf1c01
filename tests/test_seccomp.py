"""Lesson 8's seccomp program: the empty read without a filter, under an allow-all filter, and under one that runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from course.measure import lessons, protocol
from course.measure.build import build_program
from course.measure.runners import run_on_host
from course.measure.stats import summarize
from course.results import derive
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
LANES = ("seccomp.read-unfiltered", "seccomp.read-allow-all", "seccomp.read-filter-runs")


def test_lesson_8_runs_the_seccomp_program_and_derives_what_each_filter_adds() -> None:
    lesson = lessons.find(Layout(ROOT), 8)
    (spec,) = [run for run in lesson.runs if run.program == "seccomp"]
    assert spec.stdin == ("devnull",), "one kind of file: the three lanes differ by their filters alone"
    derived = {entry["name"]: entry for entry in lesson.derived}
    for name in ("allow-all", "filter-runs"):
        cost = derived[f"seccomp.cost.{name}"]
        assert cost["expression"] == (
            f"median(08-since-2000/seccomp.read-{name}) - median(08-since-2000/seccomp.read-unfiltered)"
        )
        assert derived[f"seccomp.percent.{name}"]["unit"] == "%"
    # Every id the expressions name is one the program prints.
    source = (ROOT / "code" / "user" / "08-since-2000" / "seccomp.c").read_text()
    for entry in derived.values():
        if entry["name"].startswith("seccomp."):
            for key in re.findall(r"08-since-2000/([\w.-]+)", entry["expression"]):
                assert f'"{key}"' in source, key


def test_a_cost_is_derived_from_one_runs_medians_in_ticks() -> None:
    figures = {
        "08-since-2000/seccomp.read-unfiltered": {"status": "ok", "median": 494, "unit": "ticks", "runner": "host"},
        "08-since-2000/seccomp.read-allow-all": {"status": "ok", "median": 598, "unit": "ticks", "runner": "host"},
    }
    lesson = lessons.find(Layout(ROOT), 8)
    spec = next(entry for entry in lesson.derived if entry["name"] == "seccomp.cost.allow-all")
    cost = derive.derive(spec, figures.get)
    assert cost["status"] == "ok" and cost["value"] == 104 and cost["unit"] == "ticks"


@pytest.mark.slow
def test_the_seccomp_program_times_three_lanes_and_shows_each_filter(tmp_path: Path) -> None:
    """Compiled and run here, as the pipeline runs it (a filter only ever applies to the program's own children)."""
    layout = Layout(ROOT, build_dir=tmp_path / "build")
    program = build_program(layout, lessons.find(layout, 8), "seccomp")
    outcome = run_on_host(program.binary, ("3000",), "devnull", tmp_path / "scratch", 60)
    assert outcome.ok, outcome.stdout + outcome.stderr
    parsed = protocol.parse(outcome.stdout)
    stamp = parsed.measurements["seccomp.stamp-pair"]
    for lane in LANES:
        if lane in parsed.skipped:  # a machine that forbids seccomp() says why, and that is all
            assert "no seccomp filter could be installed here" in parsed.skipped[lane]
            continue
        measured = parsed.measurements[lane]
        assert measured.subtract == "seccomp.stamp-pair" and sum(measured.counts.values()) == 3000
        assert summarize(measured.counts, min(stamp.counts), 1).min >= 0
    text = "\n".join(parsed.text)
    assert "no filter: Seccomp:\t0" in text
    if "seccomp.read-allow-all" in parsed.measurements:
        assert "allow-all filter: Seccomp:\t2" in text and "allow-all filter: Seccomp_filters:\t1" in text
        assert "a filter that reads args[0]: Seccomp_filters:\t2" in text
    assert text.count("Speculation_Store_Bypass:") == 3, "each lane shows its speculation controls"
