"""Bad environments and rough handling: each gets a clear error naming the fix, and loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import until

from course import pipeline, system
from course.kernel import kernel_runs, vm
from course.kernel.kernel_build import KernelError, find_kernel
from course.measure import build, lesson_run, lessons
from course.publish.sphinxext import ResultFileError
from course.results import fingerprint, store
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]


def _invoke(args: list[str], tmp_path: Path, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """The real command line, with results and build output in a scratch folder."""
    environment = {
        **os.environ,
        "INVOKE_COURSE_RESULTS": str(tmp_path / "results"),
        "INVOKE_COURSE_BUILD": str(tmp_path / "build"),
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        env=environment,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


def test_no_c_compiler(tmp_path: Path) -> None:
    layout = Layout(ROOT, build_dir=tmp_path)
    with pytest.raises(
        build.BuildError, match=r"no C compiler 'no-such-cc' on PATH; .*apt-get install build-essential"
    ):
        build.build_program(layout, lessons.find(layout, 3), "usystime", cc="no-such-cc")


def test_no_c_compiler_on_the_command_line_keeps_earlier_results(tmp_path: Path) -> None:
    first = _invoke(["run", "--lesson", "1"], tmp_path)
    assert first.wait(timeout=120) == 0, first.stdout.read()  # type: ignore[union-attr]
    stored = next((tmp_path / "results").glob("*/01-user-kernel.json"))
    before = json.loads(stored.read_text())["measurements"]
    # A PATH with Python but no compiler.
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python3").symlink_to(sys.executable)
    again = _invoke(["run", "--lesson", "1", "--force"], tmp_path, env={"PATH": str(bare)})
    output = again.communicate(timeout=120)[0]
    assert "no C compiler 'cc' on PATH; install one with: apt-get install build-essential" in output
    after = json.loads(stored.read_text())
    assert after["measurements"] == before, "the earlier figures are kept"
    assert after["failures"][0]["step"] == "build"


def test_no_kernel_headers_or_image(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz-6.1.0-9-amd64").write_text("")
    (tmp_path / "6.1.0-9-amd64").mkdir()  # modules, but no headers
    with pytest.raises(KernelError, match="apt-get install linux-image-amd64 linux-headers-amd64"):
        find_kernel(boot=tmp_path, headers=tmp_path, modules=tmp_path)


def test_no_qemu_is_a_failure_with_the_fix(monkeypatch, tmp_path: Path) -> None:
    """Not "not run": the user asked for the VM, so the lesson fails and keeps its figures (test_bad_input)."""
    real_which = shutil.which
    monkeypatch.setattr(vm.shutil, "which", lambda name, *a, **k: None if "qemu" in name else real_which(name))
    where = kernel_runs.setting(Layout(ROOT, build_dir=tmp_path), kernel_runs.KernelOptions(), lambda line: None)
    assert where["failed"] == (
        "the VM cannot start: qemu-system-x86_64 not found; install it with: apt-get install qemu-system-x86"
    )


def test_kvm_present_but_hanging_or_failing_falls_back(monkeypatch) -> None:
    monkeypatch.setattr(vm.os, "access", lambda path, mode: True)  # /dev/kvm "exists"
    kernel = find_kernel() if Path("/boot").glob("vmlinuz-*") else None
    monkeypatch.setattr(vm, "vng_command", lambda *a, **k: ["sh", "-c", "echo Booting from ROM; sleep 60"])
    works, why = vm.probe_kvm(kernel, timeout=1)  # type: ignore[arg-type]
    assert not works and "hung (no answer in 1 s)" in why
    monkeypatch.setattr(
        vm, "vng_command", lambda *a, **k: ["sh", "-c", "echo 'kvm_buf_set_msrs: Assertion failed'; exit 1"]
    )
    works, why = vm.probe_kvm(kernel, timeout=5)  # type: ignore[arg-type]
    assert not works and "failed (exit 1: kvm_buf_set_msrs: Assertion failed)" in why


def test_not_x86_64() -> None:
    with pytest.raises(lesson_run.MachineError, match=r"aarch64, not x86-64: .*\(rdtsc\).*invoke site"):
        pipeline.require_x86_64("aarch64")
    pipeline.require_x86_64("x86_64")


def test_not_root_where_root_is_needed(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(system.SystemError_, match="needs root: run sudo apt-get install qemu-system-x86"):
        system.install(["qemu-system-x86"])
    with pytest.raises(vm.VmError, match="host-kernel runner loads modules and needs root"):
        kernel_runs._run_on_host_kernel(Layout(ROOT, build_dir=tmp_path), [])


@pytest.mark.parametrize(
    ("content", "message"),
    [('{"schema": 1, "kind": ', "is corrupt"), ('{"schema": 99}', "uses schema 99, newer than this course's")],
)
def test_bad_result_files_on_the_command_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "results" / "broken").mkdir(parents=True)
    (tmp_path / "results" / "broken" / "set.json").write_text(content)
    finished = _invoke(["results"], tmp_path)
    output = finished.communicate(timeout=60)[0]
    assert finished.returncode == 2
    assert message in output and "set.json" in output and "Traceback" not in output


def test_a_corrupt_result_file_stops_the_site_build_with_its_name(make_app, rootdir: Path, tmp_path: Path) -> None:
    srcdir = tmp_path / "course"
    shutil.copytree(rootdir / "test-course", srcdir)
    (srcdir / "results" / "canned-machine" / "03-timing.json").write_text("{ not json")
    with pytest.raises(ResultFileError, match=r"03-timing\.json is corrupt .*git checkout"):
        make_app("html", srcdir=srcdir)


def test_names_and_labels_never_reach_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    label = f"$(touch {marker}); `touch {marker}`"
    finished = _invoke(["run", "--lesson", "1", "--set", f"../$(touch {marker})", "--label", label], tmp_path)
    output = finished.communicate(timeout=120)[0]
    assert finished.returncode == 0, output
    assert not marker.exists()
    (made,) = (tmp_path / "results").iterdir()
    assert made.name == fingerprint.slug(f"../$(touch {marker})") and not set("/$`();") & set(made.name)
    assert store.read_json(made / "set.json")["label"] == label


@pytest.mark.slow
def test_ctrl_c_during_a_run_keeps_results_and_leaves_no_process(tmp_path: Path) -> None:
    first = _invoke(["run", "--lesson", "3"], tmp_path)
    assert first.wait(timeout=300) == 0, first.stdout.read()  # type: ignore[union-attr]
    stored = next((tmp_path / "results").glob("*/03-timing.json"))
    before = stored.read_bytes()
    again = _invoke(["run", "--lesson", "3", "--force"], tmp_path)
    _wait_for(again, "run    usystime")
    again.send_signal(signal.SIGINT)
    output = again.communicate(timeout=60)[0]
    assert again.returncode == 130, output
    assert "interrupted: stored results are as they were" in output
    assert stored.read_bytes() == before, output
    assert _processes(str(tmp_path)) == [], output


@pytest.mark.slow
def test_ctrl_c_during_the_vm_boot_leaves_no_vm_behind(tmp_path: Path, seed_kvm_verdict, lesson_4_built) -> None:
    seed_kvm_verdict(tmp_path / "build")  # the run's own KVM probe is not what this test stops
    lesson_4_built(tmp_path / "build")  # nor its builds
    running = _invoke(["run", "--lesson", "4"], tmp_path)
    _wait_for(running, "booting")

    def our_qemu() -> list[str]:  # this run's guest (its kernel and initramfs lie in tmp_path), not another test's
        return [line for line in _processes(str(tmp_path)) if "qemu-system" in line]

    assert not until(lambda: not our_qemu(), 60, every=0.2), "the VM was running"
    running.send_signal(signal.SIGINT)
    output = running.communicate(timeout=60)[0]
    assert running.returncode == 130, output
    assert until(lambda: _processes(str(tmp_path)), 1) == [], "no VM or helper of this run is left"
    vm_folder = tmp_path / "build" / "vm"
    assert [*vm_folder.glob("run-*"), *vm_folder.glob("ram-*")] == [], "its scratch folder (either guest's) is gone"
    assert not list((tmp_path / "results").glob("*/04-kernel-read.json")), "nothing half-measured was stored"


def _wait_for(process: subprocess.Popen, text: str, timeout: float = 120) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen += line
        if text in line:
            return
    pytest.fail(f"{text!r} never appeared in:\n{seen}")


def _processes(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout.splitlines()
    mine = {str(os.getpid()), str(os.getppid())}
    return [line for line in found if line.split()[0] not in mine and " pgrep " not in f" {line} "]
