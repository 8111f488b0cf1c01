"""The command line speaks one language: one spelling and one short flag per option, arguments passed on."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from course.kernel import kernel_build, kernel_runs
from course.kernel.options import KernelOptions
from course.results import store
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]


def _collection():
    spec = importlib.util.spec_from_file_location("course_tasks", ROOT / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ns


def _tasks(collection, prefix: str = ""):
    for name, task in collection.tasks.items():
        yield prefix + name, task
    for name, child in collection.collections.items():
        yield from _tasks(child, f"{prefix}{name}.")


def test_a_short_flag_means_the_same_option_in_every_task() -> None:
    meaning: dict[str, set[str]] = {}
    spellings: dict[str, list[str]] = {}
    for name, task in _tasks(_collection()):
        for argument in task.get_arguments():
            longs = [n for n in argument.names if len(n) > 1]
            for short in (n for n in argument.names if len(n) == 1 and len(argument.names) > 1):
                meaning.setdefault(short, set()).add(longs[0])
            spellings[f"{name} {argument.name}"] = longs
    assert {short: longs for short, longs in meaning.items() if len(longs) > 1} == {}
    assert meaning["l"] == {"lessons"} and meaning["s"] == {"set"} and meaning["a"] == {"acceleration"}
    # The one spelling, --lessons, everywhere; the old --lesson still works where it was.
    assert spellings["run lesson"] == ["lessons", "lesson"] and spellings["build lesson"] == ["lessons", "lesson"]
    assert spellings["lab lessons"] == ["lessons"] and spellings["grade lessons"] == ["lessons"]


def test_both_spellings_reach_the_task(tmp_path: Path) -> None:
    env = {**os.environ, "INVOKE_COURSE_BUILD": str(tmp_path / "build"), "INVOKE_COURSE_RESULTS": str(tmp_path / "r")}
    for flag in ("--lessons", "--lesson", "-l"):
        done = subprocess.run(
            [sys.executable, "-m", "invoke", "build", flag, "99"], cwd=ROOT, capture_output=True, text=True, env=env
        )
        assert done.returncode == 2 and "there is no lesson 99" in done.stderr, (flag, done.stderr)


def _fake_checkout(tmp_path: Path) -> Path:
    """bootstrap in a folder whose .venv is set up already and whose invoke only writes down what it was asked."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("bootstrap", "requirements.lock", "pyproject.toml"):
        shutil.copy2(ROOT / name, checkout / name)
    bin_folder = checkout / ".venv" / "bin"
    bin_folder.mkdir(parents=True)
    (bin_folder / "python").symlink_to(sys.executable)
    fake = bin_folder / "invoke"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {checkout / "asked.txt"}\n')
    fake.chmod(0o755)
    stamp = "".join(
        f"{hashlib.sha256((checkout / name).read_bytes()).hexdigest()}  {name}\n"
        for name in ("requirements.lock", "pyproject.toml")
    )
    (checkout / ".venv" / ".requirements.lock.sha256").write_text(stamp)
    return checkout


def test_bootstrap_passes_its_arguments_to_the_task_or_refuses_them(tmp_path: Path) -> None:
    checkout = _fake_checkout(tmp_path)
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", "bootstrap", "generate", "--set", "lab 07", "-l", "3"], cwd=checkout, capture_output=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert (checkout / "asked.txt").read_text().splitlines() == ["setup", "generate --set lab 07 -l 3"]
    refused = subprocess.run(["bash", "bootstrap", "--set", "x"], cwd=checkout, capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and "usage: ./bootstrap [generate|test]" in refused.stderr
    assert (checkout / "asked.txt").read_text().count("\n") == 2, "nothing more was run"


def test_results_export_without_set_names_the_sets_it_can_export(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for name in ("qemu-icount-debian-6.1", "reference-2000"):
        shutil.copytree(ROOT / "results" / name, results / name)
    env = {**os.environ, "INVOKE_COURSE_RESULTS": str(results), "INVOKE_COURSE_BUILD": str(tmp_path / "build")}
    env.pop("INVOKE_COURSE_SET", None)
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "results.export"], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert done.returncode == 2
    assert "export one of qemu-icount-debian-6.1 with --set NAME" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_kvm_fallback_says_why_in_one_line(tmp_path: Path) -> None:
    layout = Layout(ROOT, results_dir=tmp_path / "results", build_dir=tmp_path / "build")
    kernel = kernel_build.find_kernel()
    verdict = {
        "kvm": False,
        "why": "a probe boot under KVM hung (no answer in 45 s)",
        "at": "2026-12-05T00:00:00+00:00",
    }
    store.write_json(layout.build / "vm" / "kvm-verdict.json", {f"{os.uname().release} {kernel.release}": verdict})
    said: list[str] = []
    where = kernel_runs.setting(layout, KernelOptions("vm", "auto", kernel.release), said.append)
    assert where["acceleration"] == "tcg"
    assert said == [
        "  vm     software emulation: a probe boot under KVM hung (no answer in 45 s) "
        "(probed 2026-12-05T00:00:00+00:00)"
    ]


def test_generate_is_compact_unless_verbose(monkeypatch, capsys) -> None:
    from course import commands
    from course.measure import lessons
    from course.measure.lesson_run import LessonReport

    layout = Layout(ROOT)
    every = lessons.discover(layout)
    step = {"name": "build usystime", "seconds": 0.5, "cached": True}
    reports = [LessonReport(lesson, {"measurements": {}}, {}, cached=True, steps=[step]) for lesson in every]
    monkeypatch.setattr(commands, "measure", lambda *args, **kwargs: (reports, ""))
    monkeypatch.setattr(commands.site, "build_site", lambda *args, **kwargs: 1.0)
    assert commands.generate(layout)
    compact = capsys.readouterr().out
    assert f"{len(every)} steps ({len(every)} reused)" in compact and "--verbose" in compact
    assert "where the time went:" not in compact
    assert compact.count("reused, nothing changed") == len(every)
    assert commands.generate(layout, verbose=True)
    verbose = capsys.readouterr().out
    assert "where the time went:" in verbose and len(verbose.splitlines()) > len(compact.splitlines())
