"""Lesson 3's probes of the counter itself: its step (tscstep.c) and the start stamp's second fence (fences.c)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from course.measure import lessons, protocol
from course.measure.build import build_program
from course.measure.runners import run_on_host
from course.results import derive
from course.results.layout import Layout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TIMING = ROOT / "code" / "user" / "03-timing"

# tscstep.c compiled against a simulated counter: time moves on by a pseudo-random 20 to 600
# ticks between two readings, and the counter shows floor(m * STEP) after its m-th update, as a
# counter updated every STEP ticks does (a fractional STEP: a guest whose TSC is scaled).
SIMULATED = """
#include "{stamp}"
#include <math.h>
static double sim_time = 1000.0;
static uint64_t sim_x = 12345;
static uint64_t simulated_stamp(void)
{{
	sim_x ^= sim_x << 13;
	sim_x ^= sim_x >> 7;
	sim_x ^= sim_x << 17;
	sim_time += 20.0 + (double)(sim_x % 100000) / 100000.0 * 580.0;
	return (uint64_t)floor(floor(sim_time / {step}) * {step});
}}
#define stamp_begin simulated_stamp
#include "{program}"
"""


def _build_simulated(tmp_path: Path, step: float) -> Path:
    source = tmp_path / "simulated.c"
    source.write_text(
        SIMULATED.format(stamp=ROOT / "code/user/common/stamp.h", program=TIMING / "tscstep.c", step=repr(step))
    )
    binary = tmp_path / "simulated"
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-o", binary, source, "-lm"], check=True)
    return binary


def _run(binary: Path, *args: str, files: tuple[str, ...] = ()) -> protocol.ProgramOutput:
    outcome = run_on_host(binary, args, "devnull", binary.parent / "scratch", 60, files=files)
    assert outcome.ok, outcome.stdout + outcome.stderr
    return protocol.parse(outcome.stdout)


def _median(raw: protocol.RawMeasurement) -> float:
    ordered = sorted(raw.counts)
    half, seen = raw.samples / 2, 0
    for value in ordered:
        seen += raw.counts[value]
        if seen >= half:
            return value / raw.per
    raise AssertionError("no samples")


@pytest.mark.parametrize("step", [1.0, 2.0, 7.3, 24.45, 26.0, 40.0, 150.0])
def test_the_step_is_found_whatever_it_is(tmp_path: Path, step: float) -> None:
    # 26: AMD Zen at 2.6 GHz (100 MHz); 24.45: the same under a hypervisor that scales the TSC
    # to 2.445 GHz; 1: a counter that moves by single ticks (no coarse step).
    parsed = _run(_build_simulated(tmp_path, step), "3000")
    measured = parsed.measurements["tsc-step"]
    assert measured.unit == "ticks" and measured.per == 100
    assert _median(measured) == pytest.approx(step, abs=0.011)
    rate = float(parsed.meta["tsc_hz"])
    clock = parsed.measurements["tsc-clock"]
    assert clock.unit == "MHz"
    assert _median(clock) == pytest.approx(rate / step / 1e6, abs=0.51)


def test_this_machines_step_and_update_rate_agree_with_its_tsc_rate(scratch_layout: Layout) -> None:
    program = build_program(scratch_layout, lessons.find(scratch_layout, 3), "tscstep", libs=("-lm",))
    parsed = _run(program.binary, "2000")
    step = _median(parsed.measurements["tsc-step"])
    assert step >= 1
    assert _median(parsed.measurements["tsc-clock"]) == pytest.approx(
        float(parsed.meta["tsc_hz"]) / step / 1e6, abs=0.51
    )


def test_both_start_stamps_are_timed_each_read_less_its_own_pair(scratch_layout: Layout) -> None:
    program = build_program(scratch_layout, lessons.find(scratch_layout, 3), "fences")
    parsed = _run(program.binary, "400", files=("tty", "devnull"))
    for begin in ("begin1", "begin2"):
        pair = parsed.measurements[f"{begin}.stamp-pair"]
        assert pair.per == 16 and pair.subtract is None
        for kind in ("tty", "devnull"):
            read = parsed.measurements[f"{begin}.read.{kind}"]
            assert read.per == 16 and read.samples == 400
            assert read.subtract == f"{begin}.stamp-pair", "each read less the pair with its own start"


def test_a_file_that_cannot_be_read_is_skipped_for_both_starts(tmp_path: Path, scratch_layout: Layout) -> None:
    program = build_program(scratch_layout, lessons.find(scratch_layout, 3), "fences")
    # A descriptor open for writing only: read() fails with EBADF, an error path, never timed.
    written = tmp_path / "written"
    script = f"exec 5>{written}; COURSE_FILES='devnull=0 written=5' exec {program.binary} 200"
    outcome = subprocess.run(["sh", "-c", script], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    parsed = protocol.parse(outcome.stdout)
    assert "Bad file descriptor" in parsed.skipped["begin1.read.written"]
    assert "Bad file descriptor" in parsed.skipped["begin2.read.written"]
    assert "begin1.read.devnull" in parsed.measurements


def test_lesson_3_derives_what_the_second_fence_changes(course_root: Path) -> None:
    lesson = lessons.find(Layout(course_root), 3)
    derived = {spec["name"]: spec for spec in lesson.derived}
    figures = {
        "03-timing/begin1.stamp-pair": 47.0,
        "03-timing/begin2.stamp-pair": 58.5,
        "03-timing/begin1.read.tty": 1100.0,
        "03-timing/begin2.read.tty": 1140.0,
    }

    def lookup(key: str) -> dict | None:
        return {"status": "ok", "unit": "ticks", "median": figures[key]} if key in figures else None

    assert derive.derive(derived["second-fence.stamp-pair"], lookup)["value"] == 11.5
    assert derive.derive(derived["second-fence.read.tty"], lookup)["value"] == 40.0
    percent = derive.derive(derived["second-fence-percent.read.tty"], lookup)
    assert percent["unit"] == "%" and percent["value"] == pytest.approx(100 * 40 / 1140)


def test_lesson_3_shows_the_step_and_the_fences_from_measurements_only(course_root: Path) -> None:
    page = (course_root / "lessons" / "03-timing.md").read_text()
    for key in ("tsc-step:median", "tsc-clock:median", "second-fence.read.tty:value", "begin2.stamp-pair:median"):
        assert f"{{measure}}`03-timing/{key}`" in page
    # The 100 MHz reading is stated as an inference, and only where the measured rate is 100 MHz.
    assert re.search(r"Where the update rate is\s+100 MHz, .*inference", page, re.S)
