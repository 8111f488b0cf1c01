"""The article's comparison made like for like: both sides from one kernel, one clock, one unit.

The user-space side of lessons 4 and 6 runs in the modules' own VM boot; savings are derived
only from figures of one kernel and one unit, and refused otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from course.kernel import guest_records, kernel_guest, kernel_runs
from course.measure import lessons
from course.measure.lesson_run import LessonRun
from course.measure.lessons import LessonError
from course.results import derive, store
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
TCG = {"runner": "vm", "acceleration": "tcg", "guest_kernel": "6.1.0-56-amd64"}
KVM = {"runner": "vm", "acceleration": "kvm", "guest_kernel": "6.1.0-56-amd64"}

#: What usystime prints (the course's protocol), as it would in the guest.
USYSTIME_OUTPUT = """\
course: meta tsc_hz=2596134112
course: measure stamp-pair unit=ticks samples=4
course: hist stamp-pair 26x4
course: measure read.tty unit=ticks samples=4 subtract=stamp-pair
course: hist read.tty 4026x2 4132x2
course: measure read.pipe unit=ticks samples=4 subtract=stamp-pair
course: hist read.pipe 2026x4
"""


def _figure(median: float, unit: str = "ticks", **where: object) -> dict:
    return {"status": "ok", "min": median, "median": median, "unit": unit, **where}


def _saving(figures: dict[str, dict], unit: str = "") -> dict:
    spec = {"name": "saving", "expression": "median(a/user) - median(a/kernel)", "unit": unit}
    return derive.derive(spec, figures.get)


# --- deriving the saving -----------------------------------------------------------------------------------------


def test_a_saving_from_one_boot_is_in_that_boots_unit_and_says_where() -> None:
    figures = {"a/user": _figure(4000, "emulated ticks", **TCG), "a/kernel": _figure(2500, "emulated ticks", **TCG)}
    saving = _saving(figures)
    assert saving["status"] == "ok" and saving["value"] == 1500
    assert saving["unit"] == "emulated ticks", "a difference of emulated ticks is in emulated ticks"
    assert (saving["runner"], saving["acceleration"], saving["guest_kernel"]) == ("vm", "tcg", "6.1.0-56-amd64")


def test_a_saving_across_two_kernels_is_refused_even_in_one_unit() -> None:
    """Under KVM both sides are real ticks, but the host's user-space read ran on another kernel."""
    figures = {"a/user": _figure(474, runner="host"), "a/kernel": _figure(300, **KVM)}
    saving = _saving(figures)
    assert saving["status"] == "skipped"
    assert (
        "would mix clocks: the guest's own time stamp counter (KVM, real time) and this machine's" in saving["reason"]
    )


def test_a_saving_across_two_guest_kernels_on_one_clock_is_refused() -> None:
    figures = {"a/user": _figure(474, **KVM), "a/kernel": _figure(300, **{**KVM, "guest_kernel": "6.12.48-amd64"})}
    assert "would mix figures of guest kernel 6.1.0-56-amd64 (kvm) and guest kernel 6.12" in _saving(figures)["reason"]


def test_a_saving_across_two_accelerations_of_one_guest_is_refused() -> None:
    figures = {"a/user": _figure(4000, "icount ticks", **{**TCG, "acceleration": "tcg-icount"})}
    figures["a/kernel"] = _figure(300, "icount ticks", **TCG)
    assert (
        "would mix clocks: instructions executed (TCG -icount) and the emulator's ticks" in _saving(figures)["reason"]
    )


def test_a_saving_across_units_is_refused() -> None:
    figures = {"a/user": _figure(474, runner="host"), "a/kernel": _figure(2500, "emulated ticks", **TCG)}
    assert "would mix emulated ticks and ticks" in _saving(figures)["reason"]


def test_the_host_kernel_runner_and_the_hosts_programs_share_one_kernel() -> None:
    host_kernel = {"runner": "host-kernel", "acceleration": "host-kernel", "guest_kernel": os.uname().release}
    figures = {"a/user": _figure(474, runner="host"), "a/kernel": _figure(300, **host_kernel)}
    assert _saving(figures)["value"] == 174


def test_a_slope_from_two_kernels_is_refused_and_one_from_the_guest_keeps_its_place() -> None:
    points = {f"b/read-{size}": _figure(100 + size, "emulated ticks", **TCG) for size in (1, 64, 4096)}
    slope = derive.slope("b/read-{size}", [1, 64, 4096], points.get)
    assert slope["unit"] == "emulated ticks/byte" and slope["acceleration"] == "tcg"
    points["b/read-64"] = _figure(164, "emulated ticks", runner="host")
    with pytest.raises(derive.DeriveError, match="would mix clocks"):
        derive.slope("b/read-{size}", [1, 64, 4096], points.get)


# --- the break-even: a call's cost in bytes copied, on one clock ------------------------------------------------


def _break_even(figures: dict[str, dict]) -> dict:
    spec = {
        "name": "break-even",
        "expression": "median(a/floor) / value(a/slope)",
        "unit": "bytes",
        "proportional": True,
    }
    return derive.derive(spec, figures.get)


def _slope(value: float, unit: str = "ticks", **where: object) -> dict:
    return {"status": "ok", "value": value, "unit": f"{unit}/byte", **where}


def test_the_break_even_on_the_hosts_clock_is_its_floor_over_its_slope() -> None:
    figures = {"a/floor": _figure(230, runner="host"), "a/slope": _slope(0.023, runner="host")}
    assert _break_even(figures)["value"] == pytest.approx(10000)


def test_the_break_even_in_instructions_is_the_guests_floor_over_its_instructions_per_byte() -> None:
    icount = {**TCG, "acceleration": "tcg-icount"}
    figures = {"a/floor": _figure(210, "icount ticks", **icount), "a/slope": _slope(0.9856, "icount ticks", **icount)}
    derived = _break_even(figures)
    assert derived["value"] == pytest.approx(213.06, abs=0.01) and derived["acceleration"] == "tcg-icount"


def test_a_break_even_mixing_the_hosts_clock_and_a_guests_is_refused() -> None:
    # The same unit on both sides, the host's slope against a KVM guest's floor: two clocks.
    figures = {"a/floor": _figure(1014, **KVM), "a/slope": _slope(0.023, runner="host")}
    derived = _break_even(figures)
    assert derived["status"] == "skipped"
    assert "would mix clocks" in derived["reason"] and "this machine's time stamp counter" in derived["reason"]


def test_a_break_even_on_emulated_ticks_is_refused_they_keep_no_proportions() -> None:
    # One boot, one clock, one unit: and still refused, for copying and calls are emulated at
    # very different costs (a ratio of these ticks says how QEMU emulates, not what a CPU does).
    figures = {"a/floor": _figure(4055, "emulated ticks", **TCG), "a/slope": _slope(5.319, "emulated ticks", **TCG)}
    derived = _break_even(figures)
    assert derived["status"] == "skipped" and "keep no proportions" in derived["reason"]
    plain = {"name": "saving", "expression": "median(a/floor) - value(a/slope)"}
    assert derive.derive(plain, figures.get)["status"] == "ok", "only a proportional figure is refused"


# --- lesson.toml: guest runs and derive entries per kind of file ------------------------------------------------


def _kernel_lesson(tmp_path: Path, kernel_toml: str) -> Layout:
    """A copy of the course whose lesson 4 has ``kernel_toml`` as its kernel lesson.toml."""
    root = tmp_path / "course"
    for part in ("lessons", "code", "conf.py"):
        source = ROOT / part
        if source.is_dir():
            import shutil

            shutil.copytree(source, root / part)
        else:
            (root / part).write_bytes(source.read_bytes())
    toml = root / "code" / "kernel" / "04-kernel-read" / "lesson.toml"
    toml.write_text(toml.read_text().split("[[guest_run]]", 1)[0] + kernel_toml)
    return Layout(root)


def test_both_break_evens_are_proportional_figures_refused_on_emulated_ticks() -> None:
    found = {lesson.name: lesson for lesson in lessons.discover(Layout(ROOT))}
    seven = {spec["name"]: spec for spec in found["07-bytes"].derived}
    four = {spec["name"]: spec for spec in found["04-kernel-read"].derived}
    for spec in (seven["break-even.floor.file"], seven["kernel-saving.tty"], four["user.break-even.floor"]):
        assert spec["proportional"] is True and spec["unit"] == "bytes"


def test_the_course_asks_for_the_user_space_side_in_both_kernel_lessons() -> None:
    found = {lesson.name: lesson for lesson in lessons.discover(Layout(ROOT))}
    for name in ("04-kernel-read", "06-skipping-layers"):
        assert "03-timing/usystime" in [spec.program for spec in found[name].guest_runs]
        assert any(spec["name"] == "saving-percent.read-iter.tty" for spec in found[name].derived)
    assert "08-since-2000/entry" in [spec.program for spec in found["04-kernel-read"].guest_runs]


def test_a_derive_entry_with_kinds_gives_one_figure_per_kind(tmp_path: Path) -> None:
    layout = _kernel_lesson(
        tmp_path,
        '[[derive]]\nname = "gap.{kind}"\nexpression = "median(04-kernel-read/read-iter.{kind}) - 1"\n'
        'kinds = ["tty", "pipe"]\n',
    )
    derived = lessons.find(layout, 4).derived
    assert [(d["name"], d["expression"]) for d in derived] == [
        ("gap.tty", "median(04-kernel-read/read-iter.tty) - 1"),
        ("gap.pipe", "median(04-kernel-read/read-iter.pipe) - 1"),
    ]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[guest_run]]\nprogram = "usystime"\n', r"must be a lesson's program, like \"03-timing/usystime\""),
        ('[[guest_run]]\nprogram = "03-timing/nothing"\n', "has no source 03-timing/nothing.c"),
        ('[[guest_run]]\nprogram = "03-timing/usystime"\nfiles = ["disk"]\n', r"unknown files kind\(s\) \['disk'\]"),
        ('[[guest_run]]\nprogram = "03-timing/usystime"\nargs = "200"\n', "args must be a list of strings"),
        ('[[derive]]\nname = "gap"\nexpression = "1"\nkinds = ["tty"]\n', "the name must put {kind} somewhere"),
        ('[[derive]]\nname = "gap"\nexpression = "1"\nproportional = "yes"\n', "proportional must be true or false"),
    ],
)
def test_a_bad_guest_run_or_kinds_entry_is_refused_naming_it(tmp_path: Path, toml: str, message: str) -> None:
    layout = _kernel_lesson(tmp_path, toml)
    with pytest.raises(LessonError, match=message):
        lessons.discover(layout)


# --- recording what the guest ran ---------------------------------------------------------------------------------


def _lesson_4() -> LessonRun:
    return LessonRun(lessons.find(Layout(ROOT), 4), previous={})


def _program_job(lessons_asking: list[str]) -> dict:
    return {
        "lesson": lessons_asking[0],
        "lessons": lessons_asking,
        "program": "03-timing/usystime",
        "binary": "/build/code/03-timing/usystime",
        "args": ["4"],
        "stdin": "devnull",
        "stdin_kinds": ["devnull"],
        "files": ["tty", "pipe"],
        "timeout": 120,
        "sources": {"code/user/03-timing/usystime.c": "0" * 64},
    }


def test_a_guest_programs_figures_are_stored_in_the_guests_unit_beside_the_modules() -> None:
    run = _lesson_4()
    job = _program_job(["04-kernel-read"])
    result = {**job, "command": "usystime 4", "exit_status": 0, "ok": True, "ended": "exited with 0"}
    result.update(stdout=USYSTIME_OUTPUT, stderr="", seconds=0.5)
    guest_records.record_results([run], [job], [result], console="", status=0, where=TCG)
    assert run.failures == []
    read = run.measurements["04-kernel-read/user.usystime.read.tty"]
    assert read["status"] == "ok" and read["unit"] == "emulated ticks", "the guest's clock, not the host's ticks"
    assert read["tsc_hz"] is None, "emulated ticks are never turned into nanoseconds"
    assert (read["runner"], read["acceleration"], read["guest_kernel"]) == ("vm", "tcg", "6.1.0-56-amd64")
    assert read["median"] == 4026 - 26 and "in the guest" in read["command"]
    assert run.measurements["04-kernel-read/user.usystime.stamp-pair"]["status"] == "ok"
    assert [step["name"] for step in run.steps] == ["run 03-timing/usystime in the guest"]


def test_one_guest_run_serves_both_lessons_that_ask_for_it(tmp_path: Path) -> None:
    layout = Layout(ROOT, build_dir=tmp_path / "build")
    found = {lesson.name: lesson for lesson in lessons.discover(layout)}
    runs = [LessonRun(found[name], previous={}) for name in ("04-kernel-read", "06-skipping-layers")]
    for run in runs:
        kernel_runs.build_guest_programs(layout, run, progress=lambda line: None)
    jobs = kernel_runs.guest_program_jobs(layout, runs)
    usystime = [job for job in jobs if job["program"] == "03-timing/usystime"]
    assert len(usystime) == 1 and usystime[0]["lessons"] == ["04-kernel-read", "06-skipping-layers"]
    assert Path(usystime[0]["binary"]).is_file(), "built on the host, run in the guest that shares its files"
    assert "code/user/03-timing/usystime.c" in runs[0].sources or "03-timing/usystime" in runs[0].programs


def test_a_guest_program_that_fails_is_a_failure_of_each_lesson_and_no_figure() -> None:
    run = _lesson_4()
    job = _program_job(["04-kernel-read"])
    result = {**job, "command": "usystime 4", "exit_status": 1, "ok": False, "ended": "exited with 1"}
    result.update(stdout="", stderr="usystime: no terminal", seconds=0.1)
    guest_records.record_results([run], [job], [result], console="", status=0, where=TCG)
    assert [(f["step"], f["message"]) for f in run.failures] == [("run", "it exited with 1")]
    assert not any(key.startswith("04-kernel-read/user.") for key in run.measurements)


def test_the_guest_helper_runs_a_program_as_the_pipeline_does(tmp_path: Path) -> None:
    """The guest side of a program job, run here on a real binary (the helper is the same code in the VM)."""
    layout = Layout(ROOT, build_dir=tmp_path / "build")
    run = LessonRun(lessons.find(layout, 4), previous={})
    kernel_runs.build_guest_programs(layout, run, progress=lambda line: None)
    job = next(j for j in kernel_runs.guest_program_jobs(layout, [run]) if j["program"] == "03-timing/usystime")
    result = kernel_guest.run_program_job({**job, "args": ["2000"]}, tmp_path / "scratch")
    assert result["ok"], result["ended"] + result["stderr"]
    assert "course: measure read.tty" in result["stdout"] and "course: measure read.pipe" in result["stdout"]


def test_the_guest_records_its_own_provenance(tmp_path: Path) -> None:
    guest = kernel_guest.guest_machine()
    assert set(guest) >= {"cpu_model", "kernel_release", "mitigations"}
    results = tmp_path / "results.json"
    store.write_json(results, {"schema": 1, "jobs": [], "complete": True, "guest": guest})
    assert kernel_guest.guest_of(results) == guest


def test_a_slope_at_or_below_zero_is_noise_not_a_cost() -> None:
    points = {f"b/read-{size}": _figure(1612 - size / 8, "ticks", runner="host") for size in (1, 64, 4096)}
    with pytest.raises(derive.DeriveError, match="below this run's noise"):
        derive.slope("b/read-{size}", [1, 64, 4096], points.get)
