"""Turning real kernel logs, captured from the course's VM, into results and failures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from course.kernel import guest_records, kernel_guest, kernel_runs
from course.kernel.options import OptionError
from course.measure import lessons
from course.measure.lesson_run import LessonRun
from course.measure.lessons import Lesson, ModuleSpec
from course.pipeline import inputs_key
from course.results.layout import Layout

DATA = Path(__file__).parent / "data"
TCG = {"runner": "vm", "acceleration": "tcg", "guest_kernel": "6.1.0-56-amd64"}


def _captured(name: str) -> list[dict]:
    return json.loads((DATA / name).read_text())["jobs"]


def _lesson_4(course_root: Path) -> LessonRun:
    return LessonRun(lessons.find(Layout(course_root), 4), previous={})


def test_a_real_ksystime_log_becomes_measurements_and_a_refusal(course_root: Path) -> None:
    run = _lesson_4(course_root)
    jobs = _captured("ksystime-vm-results.json")[:2]  # devnull and tty, 200 samples each
    guest_records.record_results([run], jobs, jobs, console="", status=0, where=TCG)
    assert run.failures == []
    refused = run.measurements["04-kernel-read/kernel-read.devnull"]
    assert refused["status"] == "skipped" and "refused" in refused["reason"] and "EINVAL" in refused["reason"]
    for key in ("04-kernel-read/kernel-read.tty", "04-kernel-read/read-iter.tty", "04-kernel-read/read-iter.devnull"):
        measurement = run.measurements[key]
        assert measurement["status"] == "ok" and measurement["samples"] == 200
        assert measurement["unit"] == "emulated ticks", "ticks of an emulator are never called cycles"
        assert measurement["tsc_hz"] is None, "and never converted to nanoseconds"
        assert measurement["acceleration"] == "tcg"
    assert run.measurements["04-kernel-read/stamp-pair.tty"]["overhead"]["ticks"] == 0
    assert run.measurements["04-kernel-read/read-iter.tty"]["overhead"]["from"] == "04-kernel-read/stamp-pair.tty"
    # the kernel's own words beside the figures: /dev/null is refused by kernel_read()
    assert "kernel read not supported for file" in run.captures["04-kernel-read/ksystime.devnull.log"]["text"]
    assert "stdin_fs=devpts" not in run.captures["04-kernel-read/ksystime.tty.log"]["text"]
    assert run.measurements["04-kernel-read/read-iter.tty"]["meta"]["stdin_read_iter"] == "tty_read"


def test_a_read_the_kernel_would_refuse_is_skipped_never_timed(course_root: Path) -> None:
    # Real logs of both modules loaded by hand in the course's VM (Debian's 6.1, TCG) with
    # standard inputs the pipeline never gives them: a file open for writing only, an eventfd
    # (its ->read_iter refuses reads of fewer than 8 bytes) and a directory (->read: -EISDIR).
    layout = Layout(course_root)
    four, six = (LessonRun(lessons.find(layout, number), previous={}) for number in (4, 6))
    jobs = _captured("read-checks-vm-results.json")
    guest_records.record_results([four, six], jobs, jobs, console="", status=0, where=TCG)
    assert four.failures == six.failures == [], "no warning either: kernel_read() is not tried on a write-only file"
    measured = {**four.measurements, **six.measurements}

    def reason(key: str) -> str:
        assert measured[key]["status"] == "skipped", f"{key} was timed: {measured[key]}"
        return measured[key]["reason"]

    # Not open for reading: refused before any call (vfs_read() would say -EBADF).
    for key in (
        "04-kernel-read/kernel-read.wronly",
        "04-kernel-read/read-iter.wronly",
        "06-skipping-layers/f-op-read.wronly",
        "06-skipping-layers/read-iter.wronly",
        "06-skipping-layers/read-iter-cached.wronly",
    ):
        assert "FMODE_READ" in reason(key)
    assert "returned -9" in reason("06-skipping-layers/ksys-read.wronly"), "vfs_read() refuses it itself"
    # The method fails: its return value is the reason, and nothing is timed.
    for key in (
        "04-kernel-read/read-iter.eventfd",
        "06-skipping-layers/read-iter.eventfd",
        "06-skipping-layers/read-iter-cached.eventfd",
    ):
        assert "returned -22" in reason(key) and "error path" in reason(key)
    assert "refused" not in reason("04-kernel-read/kernel-read.eventfd"), "the file's error, not kernel_read()'s rule"
    assert "returned -21" in reason("06-skipping-layers/f-op-read.directory")
    assert "returned -21" in reason("06-skipping-layers/f-op-read-cached.directory")
    # Where the call succeeds, what it returned is kept beside the figures.
    assert measured["04-kernel-read/read-iter.tty"]["meta"]["read_iter_returned"] == "0"
    assert measured["04-kernel-read/kernel-read.tty"]["meta"]["kernel_read_returned"] == "0"
    assert measured["06-skipping-layers/f-op-read.devnull"]["meta"]["f_op_read_returned"] == "0"
    assert measured["06-skipping-layers/read-iter-cached.devnull"]["status"] == "ok"
    assert measured["06-skipping-layers/fget-fput.wronly"]["status"] == "ok", "the look-ups read nothing"


def _calls(text: str, macro: str) -> list[str]:
    """The argument text of every call of ``macro`` in C source ``text`` (parentheses balanced)."""
    found = []
    for match in re.finditer(rf"\b{macro}\(", text):
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        found.append(text[match.end() : end - 1])
    return found


def test_the_modules_check_every_timed_reads_return_value(course_root: Path) -> None:
    # A read timed with KSTAMP_MEASURE would drop its return value: every read goes through
    # KSTAMP_COLLECT with an OR of the results, printed by kstamp_print_read().
    sources = sorted((course_root / "code" / "kernel").glob("*/*.c"))
    assert {source.name for source in sources} >= {"ksystime.c", "ksyslayers.c"}
    for source in sources:
        text = source.read_text()
        unchecked = [code for code in _calls(text, "KSTAMP_MEASURE") if "read" in code]
        assert not unchecked, f"{source.name} times a read without checking what it returns: {unchecked}"
        for code in _calls(text, "KSTAMP_COLLECT"):
            assert "failed |=" in code, f"{source.name}: a timed call's result is not kept: {code}"
        assert len(_calls(text, "KSTAMP_COLLECT")) == len(_calls(text, "kstamp_print_read")), source.name


def test_a_module_that_stops_early_is_a_failure_not_a_figure(course_root: Path) -> None:
    run = _lesson_4(course_root)
    job = _captured("ksystime-vm-results.json")[2]  # samples=0: init refuses before measuring
    guest_records.record_results([run], [job], [job], console="", status=0, where=TCG)
    assert [f["step"] for f in run.failures] == ["load"]
    assert "did not finish measuring" in run.failures[0]["message"]
    assert "Invalid parameters" in run.failures[0]["message"]
    assert run.measurements == {}


def test_an_oops_is_captured_with_its_log(tmp_path: Path) -> None:
    oops = Lesson(
        9, "09-oops", "Oops", tmp_path / "09-oops.md", tmp_path, modules=(ModuleSpec("oops", ("stamp-pair",)),)
    )
    run = LessonRun(oops, previous={})
    jobs = _captured("oops-vm-results.json")
    guest_records.record_results([run], jobs, jobs, console="", status=0, where=TCG)
    assert run.failures[0]["message"] == "the kernel reported an oops or BUG while the module ran"
    assert "BUG: kernel NULL pointer dereference" in run.failures[0]["log"]
    assert run.measurements == {}, "figures printed before an oops are not trusted"


def test_a_vm_that_dies_fails_the_loads_it_never_made(course_root: Path) -> None:
    run = _lesson_4(course_root)
    jobs = _captured("ksystime-vm-results.json")[:2]
    guest_records.record_results([run], jobs, jobs[:1], console="Kernel panic", status=None, where=TCG)
    assert run.measurements["04-kernel-read/read-iter.devnull"]["status"] == "ok"
    assert run.failures[0]["what"] == "module ksystime (stdin=tty)"
    assert "stopped after its timeout" in run.failures[0]["message"]


def test_a_run_that_cannot_happen_says_why_for_every_measurement(course_root: Path, tmp_path: Path) -> None:
    run = _lesson_4(course_root)
    kernel_runs.measure(
        Layout(course_root, build_dir=tmp_path),
        [run],
        kernel_runs.KernelOptions("none"),
        {"runner": "none", "unavailable": "no QEMU here"},
        progress=lambda line: None,
    )
    module = run.lesson.modules[0]
    assert len(run.measurements) == len(module.measures) * len(module.stdin)
    assert all(m["status"] == "skipped" and m["reason"] == "not run: no QEMU here" for m in run.measurements.values())


def test_the_guest_helper_refuses_to_load_into_a_kernel_that_is_not_the_vm(tmp_path: Path, capsys) -> None:
    assert not kernel_guest.in_disposable_vm(Path("/proc/cmdline").read_text()), "tests run on the host"
    plan = tmp_path / "plan.json"
    plan.write_text("[]")
    assert kernel_guest.main([str(plan), str(tmp_path / "out.json")]) == 3
    assert "refusing to load modules into this kernel" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("runner", ["vm-ish", "host"])
def test_an_unknown_runner_is_refused(runner: str, course_root: Path) -> None:
    # Refused when the options are made, before anything runs (a typo never reaches the VM step).
    with pytest.raises(OptionError, match="unknown kernel runner"):
        kernel_runs.setting(Layout(course_root), kernel_runs.KernelOptions(runner), progress=lambda line: None)


def test_the_probe_wording_does_not_rerun_kernel_lessons(course_root: Path) -> None:
    run = _lesson_4(course_root)
    machine = {"kernel_release": "6.1", "cpu_model": "x"}
    first = {"runner": "vm", "acceleration": "tcg", "guest_kernel": "6.1.0", "why": "probed at 10:00"}
    later = {**first, "why": "probed at 11:00 in a fresh clone"}
    assert inputs_key(run, machine, first) == inputs_key(run, machine, later)
    assert inputs_key(run, machine, first) != inputs_key(run, machine, {**first, "acceleration": "kvm"})
