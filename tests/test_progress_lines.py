"""`invoke lesson 9`'s progress: every server variant named, every module's build said once."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from course.kernel import kernel_build, kernel_runs, ram_guest, vm
from course.measure import host_runs, lessons
from course.measure.lesson_run import LessonRun
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]


def _lesson_9(tmp_path: Path) -> tuple[Layout, LessonRun, kernel_build.GuestKernel]:
    layout = Layout(ROOT, results_dir=tmp_path / "results", build_dir=tmp_path / "build")
    run = LessonRun(lessons.find(layout, 9), previous={})
    kernel_runs.build_guest_programs(layout, run, progress=lambda line: None)
    return layout, run, kernel_build.find_kernel()


@pytest.mark.slow
def test_every_job_of_lesson_9_has_a_progress_line_of_its_own(tmp_path: Path) -> None:
    layout, run, kernel = _lesson_9(tmp_path)
    jobs = kernel_runs.guest_program_jobs(layout, [run]) + kernel_runs._planned_module_jobs(layout, [run], kernel)
    # What the guest says before each job, as its /init says it (the guest from memory; a boot of the host's
    # files prints the same words), then as the terminal shows it.
    said = [
        shlex.split(line.split("; echo ", 1)[1])[0]  # the words its echo says, whatever runs before them
        for line in ram_guest.init_script(jobs).splitlines()
        if line.startswith("mkdir -m 700 /out/") and "course-guest:" in line
    ]
    assert len(said) == len(jobs) == 6, said
    shown = [vm.guest_progress(line, jobs) for line in said]
    assert len(set(shown)) == len(shown), f"two jobs share a progress line: {shown}"
    for server in ("read-write", "sendfile", "splice", "io_uring"):
        assert any(f"09-khttpd/serve (user space): {server} 100 batch" in line for line in shown), shown
    assert any("khttpd serving its client: port=8081" in line and "zerocopy=1" in line for line in shown), shown
    # A line that is not a job's, or names no job there is, is shown as the guest said it (escaped).
    assert vm.guest_progress("course-guest: waiting for the host to build the modules", jobs).startswith("waiting")
    assert vm.guest_progress("course-guest: [99/6] x\x1b[2J", jobs) == "[99/6] x\\x1b[2J"


@pytest.mark.slow
def test_a_module_loaded_two_ways_is_built_and_said_once(tmp_path: Path) -> None:
    layout, run, kernel = _lesson_9(tmp_path)
    for _ in range(2):  # built (one make), then unchanged: each module is said once, never once per load
        lines: list[str] = []
        jobs = kernel_runs._build_modules(layout, [run], kernel, lines.append)
        assert sum("khttpd.ko" in line for line in lines) == 1, lines
        assert len({tuple(job["params"]) for job in jobs}) == 2, "both ways of loading it still run"
    assert not run.failures


@pytest.mark.slow
def test_lesson_9s_four_servers_on_the_host_each_have_their_line(tmp_path: Path) -> None:
    layout = Layout(ROOT, results_dir=tmp_path / "results", build_dir=tmp_path / "build")
    run = LessonRun(lessons.find(layout, 9), previous={})
    host_runs.build_programs(layout, run, progress=lambda line: None)
    lines: list[str] = []
    host_runs.run_programs(layout, run, lines.append)
    started = [line for line in lines if line.startswith("  run    serve")]
    assert len(started) == len(set(started)) == 4, lines
    for server in ("read-write", "sendfile", "splice", "io_uring"):
        assert any(f"args={server} 2000" in line for line in started), started
