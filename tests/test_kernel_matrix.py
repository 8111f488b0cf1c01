"""The kernel matrix (``invoke run --guest-kernels``): kernel names, set naming, per-kernel builds, and a module
that one kernel refuses, recorded as that kernel's failure while the others go on.

The matrix's own tests boot nothing: the VM is replaced by canned kernel logs (the suite's one real boot is
``measured_course``). The builds against real headers need the three guest kernels that ``invoke setup --tests``
installs, and are skipped, naming that command, where they are missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from course import commands, matrix, pipeline, system
from course.kernel import guest_kernels, kernel_build, kernel_runs, ram_guest, vm
from course.kernel import options as kernel_options
from course.kernel.guest_kernels import KernelNameError
from course.kernel.kernel_build import BuiltModule, GuestKernel
from course.measure import lesson_run, lessons
from course.measure.build import BuildError
from course.measure.runners import owned_process, read_output
from course.results import fingerprint, store
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
RELEASES = {"6.1": "6.1.0-56-amd64", "6.12": "6.12.117+deb12-amd64", "6.1-rt": "6.1.0-56-rt-amd64"}


def _fake_kernels(folder: Path, releases: list[str], complete: bool = True) -> None:
    """Image, headers and modules of ``releases`` in ``folder`` (standing for /boot, /usr/src and /lib/modules)."""
    for release in releases:
        (folder / f"vmlinuz-{release}").write_text("")
        (folder / f"linux-headers-{release}").mkdir()
        if complete:
            (folder / release).mkdir()


# --- names, releases and sets ----------------------------------------------------------------------------------------


def test_each_name_maps_to_the_newest_installed_release_of_its_kind(tmp_path: Path) -> None:
    _fake_kernels(tmp_path, ["6.1.0-9-amd64", "6.1.0-56-amd64", "6.1.0-56-rt-amd64", "6.12.117+deb12-amd64"])
    _fake_kernels(tmp_path, ["6.12.200+deb12-amd64"], complete=False)  # no modules: not bootable
    found = {name: guest_kernels.find(name, tmp_path, tmp_path, tmp_path).release for name in guest_kernels.KERNELS}
    assert found == RELEASES
    with pytest.raises(kernel_build.KernelError, match=r"apt-get install linux-image-rt-amd64 linux-headers-rt-amd64"):
        guest_kernels.find("6.1-rt", tmp_path / "nowhere", tmp_path, tmp_path)
    assert [guest_kernels.name_of(release) for release in RELEASES.values()] == list(RELEASES)


def test_the_default_guest_stays_debians_own_kernel_when_6_12_is_installed(tmp_path: Path) -> None:
    """Installing the matrix's kernels must not change what every other run boots."""
    _fake_kernels(tmp_path, list(RELEASES.values()))
    assert kernel_build.find_kernel(boot=tmp_path, headers=tmp_path, modules=tmp_path).release == RELEASES["6.12"]
    chosen = kernel_build.find_kernel(boot=tmp_path, headers=tmp_path, modules=tmp_path, preferred=RELEASES["6.1"])
    assert chosen.release == RELEASES["6.1"]
    assert kernel_build.release_key("6.12.1-1-amd64") > kernel_build.release_key("6.1.99-1-amd64")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("6.2", r"unknown guest kernel '6.2'; the known ones are 6.1, 6.12, 6.1-rt"),
        ("6.1,6.1", "names a kernel twice"),
        (",", "no guest kernel named"),
    ],
)
def test_a_bad_kernel_name_is_one_line_with_the_known_ones_and_the_packages(text: str, message: str) -> None:
    with pytest.raises(KernelNameError, match=message) as raised:
        guest_kernels.parse(text)
    if "unknown" in message:
        assert "apt-get install linux-image-amd64 linux-headers-amd64 linux-image-6.12-amd64" in str(raised.value)
        assert "\n" not in str(raised.value)
    assert guest_kernels.parse(" 6.12, 6.1 ") == ["6.12", "6.1"]


def test_an_unknown_kernel_name_stops_invoke_before_anything_runs(tmp_path: Path) -> None:
    env = {**os.environ, "INVOKE_COURSE_RESULTS": str(tmp_path / "r"), "INVOKE_COURSE_BUILD": str(tmp_path / "b")}
    finished = subprocess.run(
        [str(ROOT / ".venv/bin/invoke"), "run", "--guest-kernels", "6.1,5.10"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        "error: unknown guest kernel '5.10'; the known ones are 6.1, 6.12, 6.1-rt (--guest-kernels 6.1,6.12,6.1-rt); "
        "install them with: invoke setup --guest-kernels 6.1,6.12,6.1-rt (apt-get install linux-image-amd64 "
        "linux-headers-amd64 linux-image-6.12-amd64 linux-headers-6.12-amd64 linux-image-rt-amd64 "
        "linux-headers-rt-amd64)"
    ]
    assert list((tmp_path / "r").glob("*/set.json")) == [], "nothing ran"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--set", "mine"],
            "error: --set names one set, and --guest-kernels makes one per kernel (qemu-icount-debian-6.1",
        ),
        (["--kernel-runner", "none"], "error: --guest-kernels boots each kernel in a VM; --kernel-runner none cannot"),
        (["--lesson", "3"], "error: lesson 3 (03-timing) runs nothing in a guest kernel"),
    ],
)
def test_options_a_matrix_cannot_take_are_refused_in_one_line(tmp_path: Path, options: list[str], message: str) -> None:
    env = {**os.environ, "INVOKE_COURSE_RESULTS": str(tmp_path / "r"), "INVOKE_COURSE_BUILD": str(tmp_path / "b")}
    command = [str(ROOT / ".venv/bin/invoke"), "run", "--guest-kernels", "6.1", *options]
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert finished.returncode == 2 and len(finished.stderr.strip().splitlines()) == 1, finished.stderr
    assert finished.stderr.startswith(message)


def test_setup_installs_the_kernels_asked_for_with_their_headers(monkeypatch) -> None:
    asked: list[list[str]] = []
    monkeypatch.setattr(system, "missing_packages", lambda wanted: asked.append(wanted) or wanted[-2:])
    with pytest.raises(system.SystemError_, match=r"run: invoke setup --guest-kernels 6.12$"):
        commands.setup(Layout(ROOT), install=False, guest_kernels=["6.12"])
    assert asked[-1][-2:] == ["linux-image-6.12-amd64", "linux-headers-6.12-amd64"]
    with pytest.raises(system.SystemError_, match="invoke setup --tests"):
        commands.setup(Layout(ROOT), install=False, tests=True)
    for name in guest_kernels.KERNELS:  # the tests build modules for every kernel of the matrix
        assert set(guest_kernels.KERNELS[name].packages) <= set(asked[-1])


def test_set_names_say_the_kernel_and_whose_ticks_they_are() -> None:
    assert guest_kernels.set_name("6.12", "tcg-icount", "amd-epyc-x") == "qemu-icount-debian-6.12"
    assert guest_kernels.set_name("6.1-rt", "tcg-icount", "amd-epyc-x") == "qemu-icount-debian-6.1-rt"
    # Emulated and real ticks are this host's time: its set's name comes first.
    assert guest_kernels.set_name("6.12", "tcg", "amd-epyc-x") == "amd-epyc-x-tcg-debian-6.12"
    assert guest_kernels.set_name("6.1", "kvm", "lab-pc-07") == "lab-pc-07-kvm-debian-6.1"


def test_the_configuration_records_the_preemption_model(tmp_path: Path) -> None:
    kernel = GuestKernel(RELEASES["6.1-rt"], tmp_path / "vmlinuz", tmp_path, tmp_path)
    (tmp_path / f"config-{kernel.release}").write_text("CONFIG_PREEMPT_RT=y\nCONFIG_PREEMPTION=y\n")
    assert guest_kernels.configuration(kernel, boot=tmp_path) == {
        "name": "6.1-rt",
        "release": RELEASES["6.1-rt"],
        "flavour": "rt-amd64",
        "preemption": "PREEMPT_RT",
    }
    dynamic = {"CONFIG_PREEMPT_DYNAMIC": "y", "CONFIG_PREEMPT_VOLUNTARY": "y"}
    assert guest_kernels.preemption(dynamic) == "PREEMPT_DYNAMIC (default PREEMPT_VOLUNTARY)"
    assert guest_kernels.preemption({}) == "not recorded"


def test_a_change_in_percent_compares_icount_ticks_with_icount_ticks_only() -> None:
    def figure(median: float, unit: str = "icount ticks", acceleration: str = "tcg-icount") -> dict:
        return {"status": "ok", "median": median, "unit": unit, "acceleration": acceleration}

    assert guest_kernels.change_percent(figure(97), figure(124)) == pytest.approx(-21.774, abs=1e-3)
    assert (
        guest_kernels.change_percent(figure(97, "emulated ticks", "tcg"), figure(124, "emulated ticks", "tcg")) is None
    )
    assert guest_kernels.change_percent(figure(97), figure(124, "emulated ticks", "tcg")) is None
    assert guest_kernels.change_percent(figure(97), {"status": "skipped"}) is None


# --- the sets a matrix writes ----------------------------------------------------------------------------------------


def _layout(tmp_path: Path) -> Layout:
    return Layout(ROOT, results_dir=tmp_path / "results", build_dir=tmp_path / "build")


def test_a_guest_set_holds_one_kernel_and_a_plain_run_never_measures_into_it(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    kernel = GuestKernel(RELEASES["6.12"], Path("/boot/x"), Path("/h"), Path("/m"))
    path = matrix.open_guest_set(layout, "6.12", kernel, "tcg-icount", "host")
    info = store.read_json(path / store.SET_FILE)
    assert (
        path.name == "qemu-icount-debian-6.12"
        and info["label"] == "QEMU -icount, Debian 6.12 guest (deterministic path lengths)"
    )
    assert info["guest"]["name"] == "6.12" and info["guest"]["acceleration"] == "tcg-icount"
    with pytest.raises(lesson_run.MachineError, match=r"holds the figures of guest kernel 6.12 .*--guest-kernels 6.12"):
        pipeline.open_set(layout, "qemu-icount-debian-6.12")
    other = layout.results / "qemu-icount-debian-6.1"
    shutil.copytree(path, other)  # a folder of 6.1's name that holds 6.12's figures
    with pytest.raises(lesson_run.MachineError, match=r"holds guest kernel '6\.12' under 'tcg-icount', not '6\.1'"):
        matrix.open_guest_set(layout, "6.1", kernel, "tcg-icount", "host")


def _guest_sets_of_another_host(tmp_path: Path, **machine: str) -> tuple[Layout, GuestKernel]:
    """6.1's icount and tcg sets, stored as if another host had measured them: ``machine`` says how it differs."""
    layout = _layout(tmp_path)
    kernel = GuestKernel(RELEASES["6.1"], Path("/boot/x"), Path("/h"), Path("/m"))
    for acceleration in ("tcg-icount", "tcg"):
        path = matrix.open_guest_set(layout, "6.1", kernel, acceleration, "host")
        info = store.read_json(path / store.SET_FILE)
        info["machine"].update(machine)
        store.write_json(path / store.SET_FILE, info)
    return layout, kernel


def test_an_icount_set_from_another_host_is_refreshed_and_a_tcg_one_is_refused(tmp_path: Path) -> None:
    layout, kernel = _guest_sets_of_another_host(tmp_path, kernel_release="6.18.0-another-host")
    assert matrix.open_guest_set(layout, "6.1", kernel, "tcg-icount", "host").name == "qemu-icount-debian-6.1"
    with pytest.raises(lesson_run.MachineError, match="belongs to another machine"):
        matrix.open_guest_set(layout, "6.1", kernel, "tcg", "host")
    reference = layout.results / "qemu-icount-debian-6.12"
    store.write_json(reference / store.SET_FILE, {"schema": 1, "kind": "reference", "machine": {}})
    with pytest.raises(lesson_run.MachineError, match="is a reference set"):
        matrix.open_guest_set(layout, "6.12", kernel, "tcg-icount", "host")


def test_a_tcg_set_of_another_cpu_under_the_same_model_name_is_refused(tmp_path: Path) -> None:
    """A tcg set's emulated ticks are its host's time: another CPU family under the same name is another machine."""
    layout, kernel = _guest_sets_of_another_host(tmp_path, cpu_family=fingerprint.machine()["cpu_family"] + "7")
    assert matrix.open_guest_set(layout, "6.1", kernel, "tcg-icount", "host").name == "qemu-icount-debian-6.1"
    with pytest.raises(lesson_run.MachineError, match=r"belongs to another machine \(cpu_family '[^']*7' \(here"):
        matrix.open_guest_set(layout, "6.1", kernel, "tcg", "host")


def test_only_kernel_lessons_run_in_a_matrix() -> None:
    layout = Layout(ROOT)
    assert [lesson.number for lesson in matrix.kernel_lessons(layout, None)] == [2, 4, 5, 6, 9]
    with pytest.raises(
        kernel_options.OptionError, match=r"lesson 3 \(03-timing\) runs nothing in a guest kernel.*2, 4, 5, 6, 9"
    ):
        matrix.kernel_lessons(layout, [4, 3])


# --- a matrix run, the VM replaced by canned logs --------------------------------------------------------------------


def _course_with_api_change(tmp_path: Path) -> Layout:
    """The course plus lesson 9, whose module (tests/data/api-change) builds against 6.1 and not against 6.12."""
    root = tmp_path / "course"
    for part in ("lessons", "code"):
        shutil.copytree(ROOT / part, root / part)
    (root / "conf.py").write_text("")
    (root / "lessons" / "09-api-change.md").write_text("# 9. An API that changed\n")
    shutil.copytree(DATA / "api-change", root / "code" / "kernel" / "09-api-change")
    return Layout(root, results_dir=tmp_path / "results", build_dir=tmp_path / "build")


#: What fdfile.ko logs in a guest (the course's protocol), for the canned boots.
FDFILE_LOG = """\
[   18.29] fdfile: course: meta stdin_open=1
[   18.29] fdfile: course: measure stamp-pair unit=ticks samples=16
[   18.29] fdfile: course: hist stamp-pair 5x16
[   18.29] fdfile: course: measure fdget-fdput unit=ticks samples=16 subtract=stamp-pair
[   18.29] fdfile: course: hist fdget-fdput 48x16
[   18.29] fdfile: course: meta done=1
"""


@pytest.fixture
def canned_vm(monkeypatch) -> list[str]:
    """Boots that load nothing: each module job gets FDFILE_LOG back. Returns the releases booted, in order."""
    booted: list[str] = []
    monkeypatch.setattr(
        guest_kernels, "find", lambda name: GuestKernel(RELEASES[name], Path("/b"), Path("/h"), Path("/m"))
    )
    monkeypatch.setattr(
        kernel_build, "find_kernel", lambda release="": GuestKernel(release, Path("/b"), Path("/h"), Path("/m"))
    )

    def setting(layout, options, progress) -> dict:
        return {
            "runner": "vm",
            "acceleration": options.acceleration,
            "why": "asked for",
            "guest_kernel": options.release,
        }

    def run_jobs(layout, kernel, jobs, acceleration, progress, timeout=900, hardware=None, while_booting=None):
        with vm.others_may_run(), tempfile.TemporaryDirectory() as shared:  # as the real boot does: the other
            if while_booting:  # kernels' threads go on meanwhile, and the modules build while it boots
                while_booting(Path(shared))
            return from_memory(layout, kernel, jobs, progress, timeout, hardware)

    def from_memory(layout, kernel, jobs, progress, timeout=900, hardware=None):
        """Under tcg-icount every job goes to the guest from memory (course.kernel.ram_guest), built first:
        memory_boot lets the other kernels' threads go on meanwhile."""
        booted.append(kernel.release)
        time.sleep(0.2)
        results = [
            {**job, "command": "insmod fdfile.ko", "exit_status": 1, "insmod_output": "", "log": FDFILE_LOG}
            for job in jobs
        ]
        guest = {"cpu_model": "QEMU TCG CPU version 2.5+", "kernel_release": kernel.release}
        return vm.VmRun(results, "", 0, 0.2, guest)

    monkeypatch.setattr(kernel_runs, "setting", setting)
    monkeypatch.setattr(vm, "run_jobs", run_jobs)
    monkeypatch.setattr(ram_guest, "run_jobs", from_memory)
    monkeypatch.setattr(ram_guest, "run_tcg_jobs", from_memory)
    return booted


def _refuse_on_6_12(monkeypatch) -> None:
    """A stand-in for the compiler: 6.12's headers refuse the module as gcc does, 6.1's build it."""

    def build_module(layout, lesson, module, kernel) -> BuiltModule:
        if kernel.release == RELEASES["6.12"]:
            where = f"{layout.build}/kernel/{kernel.release}/{lesson.name}/{module.name}.c:17:49"
            raise BuildError(
                f"module {module.name} of {lesson.name} did not build against {kernel.release}",
                log=f"make -C /h M=...\n{where}: error: 'struct fd' has no member named 'file'\n",
            )
        ko = layout.build / "kernel" / kernel.release / lesson.name / f"{module.name}.ko"
        ko.parent.mkdir(parents=True, exist_ok=True)
        ko.write_text("")
        return BuiltModule(lesson.name, module.name, ko, {}, rebuilt=True)

    monkeypatch.setattr(kernel_build, "build_module", build_module)


def test_a_module_one_kernel_refuses_is_that_kernels_failure_and_the_others_go_on(
    tmp_path: Path, canned_vm: list[str], monkeypatch
) -> None:
    _refuse_on_6_12(monkeypatch)
    layout = _course_with_api_change(tmp_path)
    lines: list[str] = []
    runs = matrix.run_matrix(layout, ["6.1", "6.12"], [9], acceleration="tcg-icount", progress=lines.append)
    assert [(run.name, run.set_path.name, run.ok) for run in runs] == [
        ("6.1", "qemu-icount-debian-6.1", True),
        ("6.12", "qemu-icount-debian-6.12", False),
    ]
    # This lesson has nothing but its module to run in a guest: each boot waits for the build, and 6.12,
    # whose module failed, has nothing to load, so no VM starts for it.
    assert canned_vm == [RELEASES["6.1"]]
    good = store.read_json(layout.results / "qemu-icount-debian-6.1" / "09-api-change.json")
    assert good["failures"] == [] and good["runner"] == "vm"
    figure = good["measurements"]["09-api-change/fdget-fdput"]
    assert figure["status"] == "ok" and figure["unit"] == "icount ticks" and figure["median"] == 43
    assert figure["guest_kernel"] == RELEASES["6.1"]
    refused = store.read_json(layout.results / "qemu-icount-debian-6.12" / "09-api-change.json")
    (failure,) = refused["failures"]
    assert failure["step"] == "build" and failure["what"] == "module fdfile"
    assert "did not build against 6.12.117+deb12-amd64: build/kernel/" in failure["message"]
    assert "error: 'struct fd' has no member named 'file'" in failure["message"], "the compiler's own words"
    skipped = refused["measurements"]["09-api-change/fdget-fdput"]
    assert skipped["status"] == "skipped" and skipped["reason"].startswith("not built for 6.12.117+deb12-amd64: ")
    info = store.read_json(layout.results / "qemu-icount-debian-6.1" / store.SET_FILE)
    assert info["guest"]["cpu_model"] == "QEMU TCG CPU version 2.5+", "the emulated CPU, as the guest saw it"
    assert store.read_json(layout.results / "qemu-icount-debian-6.12" / store.SET_FILE)["guest"]["name"] == "6.12"
    text = matrix.summary(layout, runs)
    assert "qemu-icount-debian-6.12" in text and any(line.startswith("[6.12]") and "FAILED" in line for line in lines)


@pytest.mark.parametrize(
    ("acceleration", "options", "set_name"),
    [
        ("tcg-icount", ram_guest.ICOUNT_OPTIONS, "qemu-icount-debian-6.1"),
        ("tcg", ram_guest.TCG_OPTIONS, "*-tcg-debian-6.1"),  # the host's time: its set names the host first
    ],
)
def test_under_emulation_a_lesson_of_module_loads_boots_from_memory_and_never_virtme_ng(
    tmp_path: Path, canned_vm: list[str], monkeypatch, acceleration: str, options: tuple[str, ...], set_name: str
) -> None:
    """Under tcg-icount and plain tcg alike (the default here, where KVM fails) the kernel work boots from memory."""
    _refuse_on_6_12(monkeypatch)
    layout = _course_with_api_change(tmp_path)
    other = {"tcg-icount": "run_tcg_jobs", "tcg": "run_jobs"}[acceleration]

    def not_this_one(*args, **kwargs) -> None:
        raise AssertionError(f"a virtme-ng boot, or the other guest from memory's, under {acceleration}")

    monkeypatch.setattr(vm, "run_jobs", not_this_one)
    monkeypatch.setattr(ram_guest, other, not_this_one)
    (run,) = matrix.run_matrix(layout, ["6.1"], [9], acceleration=acceleration, progress=lambda line: None)
    assert run.ok and canned_vm == [RELEASES["6.1"]], "one boot, from memory"
    (path,) = layout.results.glob(f"{set_name}/09-api-change.json")
    stored = store.read_json(path)
    assert stored["kernel_run"]["qemu_options"] == " ".join(options), "how the guest ran is stored"
    assert stored["kernel_run"]["guest_system"] == ram_guest.described(acceleration)
    assert ("-icount" in stored["kernel_run"]["guest_system"]) == (acceleration == "tcg-icount")
    boots = [step["name"] for step in stored["steps"] if "boot" in step["name"]]
    assert len(boots) == 1 and boots[0].startswith("vm boot from memory"), boots
    guest_code = ram_guest.guest_code_sources(acceleration).items()
    assert guest_code <= stored["measurements"]["09-api-change/fdget-fdput"]["sources"].items(), "its code is a source"


def test_a_lesson_that_says_boot_own_boots_from_memory_alone_after_the_shared_boot(
    tmp_path: Path, canned_vm: list[str], monkeypatch
) -> None:
    _refuse_on_6_12(monkeypatch)
    layout = _course_with_api_change(tmp_path)
    # A second lesson of the same module, saying boot = "own" as lesson 9 does.
    (layout.lessons / "10-api-own.md").write_text("# 10. The same, in a boot of its own\n")
    own = layout.kernel_code / "10-api-own"
    shutil.copytree(DATA / "api-change", own)
    (own / "lesson.toml").write_text('boot = "own"\n' + (own / "lesson.toml").read_text())
    boots: list[list[str]] = []
    real = ram_guest.run_jobs
    monkeypatch.setattr(
        ram_guest,
        "run_jobs",
        lambda layout, kernel, jobs, *args, **kwargs: (
            boots.append([job["lesson"] for job in jobs]) or real(layout, kernel, jobs, *args, **kwargs)
        ),
    )
    (run,) = matrix.run_matrix(layout, ["6.1"], [9, 10], acceleration="tcg-icount", progress=lambda line: None)
    assert run.ok and boots == [["09-api-change"], ["10-api-own"]], boots
    for name in ("09-api-change", "10-api-own"):
        stored = store.read_json(layout.results / "qemu-icount-debian-6.1" / f"{name}.json")
        assert stored["measurements"][f"{name}/fdget-fdput"]["status"] == "ok", name
        (boot,) = [step["name"] for step in stored["steps"] if "boot" in step["name"]]
        assert boot.startswith("vm boot from memory, 1 runs"), boot
    boots.clear()
    matrix.run_matrix(layout, ["6.1"], [10], acceleration="tcg-icount", force=True, progress=lambda line: None)
    assert boots == [["10-api-own"]], "alone, the same boot"
    boots.clear()
    monkeypatch.setattr(
        ram_guest,
        "run_tcg_jobs",
        lambda layout, kernel, jobs, *args, **kwargs: (
            boots.append(sorted({job["lesson"] for job in jobs})) or real(layout, kernel, jobs, *args, **kwargs)
        ),
    )
    matrix.run_matrix(layout, ["6.1"], [9, 10], acceleration="tcg", force=True, progress=lambda line: None)
    assert boots == [["09-api-change", "10-api-own"]], "under plain tcg one boot for both: nothing to keep alone"


def test_nothing_is_rerun_when_nothing_changed(tmp_path: Path, canned_vm: list[str], monkeypatch) -> None:
    _refuse_on_6_12(monkeypatch)
    layout = _course_with_api_change(tmp_path)
    matrix.run_matrix(layout, ["6.1"], [9], progress=lambda line: None)
    assert canned_vm == [RELEASES["6.1"]]
    again = matrix.run_matrix(layout, ["6.1"], [9], progress=lambda line: None)
    assert canned_vm == [RELEASES["6.1"]], "no second boot"
    assert [report.cached for report in again[0].reports] == [True]
    matrix.run_matrix(layout, ["6.1"], [9], force=True, progress=lambda line: None)
    assert len(canned_vm) == 2


def test_kernels_boot_side_by_side_under_icount_and_one_at_a_time_otherwise(
    tmp_path: Path, canned_vm: list[str], monkeypatch
) -> None:
    _refuse_on_6_12(monkeypatch)
    layout = _course_with_api_change(tmp_path)
    threads: list[str] = []
    # tcg-icount and tcg boot from memory (each its own runner); kvm boots virtme-ng
    for module, name in ((vm, "run_jobs"), (ram_guest, "run_jobs"), (ram_guest, "run_tcg_jobs")):
        real = getattr(module, name)
        monkeypatch.setattr(
            module,
            name,
            lambda *args, real=real, **kwargs: threads.append(threading.current_thread().name) or real(*args, **kwargs),
        )
    matrix.run_matrix(layout, ["6.1", "6.1-rt"], [9], acceleration="tcg-icount", progress=lambda line: None)
    assert sorted(threads) == ["kernel 6.1", "kernel 6.1-rt"]
    threads.clear()
    matrix.run_matrix(layout, ["6.1", "6.1-rt"], [9], acceleration="tcg", progress=lambda line: None)
    assert threads == ["MainThread", "MainThread"], "emulated ticks are the host's time: no boot beside another"


def test_boots_side_by_side_do_not_kill_each_others_processes() -> None:
    """A boot that ends stops what it started, never another boot's QEMU (runners.OwnedProcess)."""
    outcome: dict[str, bytes] = {}

    def run(name: str, seconds: float) -> None:
        command = ["sh", "-c", f"sleep {seconds} & wait; echo {name} done"]
        with owned_process(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            outcome[name] = read_output(process, 30).streams[0]

    slow = threading.Thread(target=run, args=("slow", 1.5))
    slow.start()
    time.sleep(0.3)
    run("quick", 0.1)  # ends, and stops its own, while the slow one still runs
    slow.join()
    assert outcome == {"quick": b"quick done\n", "slow": b"slow done\n"}


def test_a_boot_that_ends_spares_another_threads_plain_child() -> None:
    """A boot's end kills the orphans it left, never a child another thread started meanwhile in this process's
    own session: in a kernel matrix, one kernel's boot ended and killed the objcopy packing another kernel's guest."""
    with owned_process(["sh", "-c", "setsid sleep 30 >/dev/null & echo $!"], stdout=subprocess.PIPE) as boot:
        plain = subprocess.Popen(["sleep", "30"])  # another thread's objcopy, started while the boot runs
        orphan = int(boot.communicate(timeout=10)[0])  # the boot has ended; its setsid child is ours now
    try:
        assert plain.poll() is None, "the other thread's child was killed (and reaped: its exit status was taken)"
        assert not Path(f"/proc/{orphan}").exists(), "the boot's orphan outlived it"
    finally:
        plain.kill()
        plain.wait()


# --- per-kernel builds, real headers ---------------------------------------------------------------------------------


def _installed(names: list[str]) -> dict[str, GuestKernel]:
    try:
        return {name: guest_kernels.find(name) for name in names}
    except kernel_build.KernelError as error:
        pytest.skip(f"{error}; invoke setup --tests installs every guest kernel")


@pytest.mark.slow
def test_the_modules_are_built_per_kernel_against_its_own_headers(tmp_path: Path) -> None:
    kernels = _installed(list(guest_kernels.KERNELS))
    layout = _layout(tmp_path)
    found = {lesson.name: lesson for lesson in lessons.discover(layout)}
    lesson = found["06-skipping-layers"]
    (module,) = lesson.modules
    built = {name: kernel_build.build_module(layout, lesson, module, kernel) for name, kernel in kernels.items()}
    assert len({module.ko for module in built.values()}) == 3, "one module per kernel, each in its own folder"
    for name, module_built in built.items():
        assert module_built.ko.parent == layout.build / "kernel" / kernels[name].release / "06-skipping-layers"
        vermagic = subprocess.run(["modinfo", "-F", "vermagic", str(module_built.ko)], capture_output=True, text=True)
        assert vermagic.stdout.split()[0] == kernels[name].release, f"{name}'s module is for {name}'s kernel"
    again = kernel_build.build_module(layout, lesson, module, kernels["6.12"])
    assert not again.rebuilt, "unchanged sources, same kernel: reused"


@pytest.mark.slow
def test_the_real_compiler_refuses_the_changed_api_on_6_12_only(tmp_path: Path) -> None:
    kernels = _installed(["6.1", "6.12"])
    layout = _course_with_api_change(tmp_path)
    lesson = lessons.find(layout, 9)
    (module,) = lesson.modules
    assert kernel_build.build_module(layout, lesson, module, kernels["6.1"]).ko.is_file()
    with pytest.raises(BuildError) as refused:
        kernel_build.build_module(layout, lesson, module, kernels["6.12"])
    errors = kernel_runs.compiler_errors(layout, refused.value.log)
    assert errors and errors[0].startswith("build/kernel/6.12"), refused.value.log
    assert re.search(r"error: .struct fd. has no member named .file.", errors[0]), "gcc's words (its quotes vary)"


def test_the_committed_matrix_sets_name_their_guest() -> None:
    """The shipped icount sets (invoke run --guest-kernels 6.1,6.12,6.1-rt --acceleration tcg-icount).

    Their release is whichever Debian shipped when they were measured: it must be one of the kernel's own.
    """
    for name in RELEASES:
        info = json.loads((ROOT / "results" / f"qemu-icount-debian-{name}" / "set.json").read_text())
        assert (info["guest"]["name"], info["guest"]["acceleration"]) == (name, "tcg-icount")
        assert guest_kernels.name_of(info["guest"]["release"]) == name
        assert not guest_kernels.other_hardware(info_set(info)), "the matrix's own sets are default boots"


def info_set(info: dict):
    """A set as guest_kernels reads it, from its set.json alone."""
    from types import SimpleNamespace

    return SimpleNamespace(info=info)


def test_an_interrupted_matrix_starts_no_boot_and_stores_none_cut_short(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C during boots side by side: every boot is killed, and what a killed boot logged is no result."""
    layout = _layout(tmp_path)
    kernel = GuestKernel(RELEASES["6.1"], Path("/b"), Path("/h"), Path("/m"))
    monkeypatch.setattr(vm, "require_qemu", lambda: None)
    cut: list[Path] = []

    def boot(layout, kernel, jobs, acceleration, progress, timeout, rundir, **options) -> vm.VmRun:
        cut.append(rundir)
        vm.cancel_boots()  # as Ctrl-C does while this boot runs
        return vm.VmRun([], "", -9, 0.1)

    monkeypatch.setattr(vm, "_boot", boot)
    try:
        with pytest.raises(KeyboardInterrupt):
            vm.run_jobs(layout, kernel, [], "tcg-icount", progress=lambda line: None)
        assert cut and not cut[0].exists(), "its scratch folder is removed all the same"
        with pytest.raises(KeyboardInterrupt):
            vm.run_jobs(layout, kernel, [], "tcg-icount", progress=lambda line: None)
        assert len(cut) == 1, "no boot starts once the matrix is interrupted"
    finally:
        vm.cancel_boots(False)


def test_the_benchmark_says_why_the_matrix_was_not_timed(tmp_path: Path, monkeypatch) -> None:
    from course import bench

    def missing(name: str) -> GuestKernel:
        raise kernel_build.KernelError(f"guest kernel {name} is not installed")

    monkeypatch.setattr(guest_kernels, "find", missing)
    found = bench.kernel_matrix_speed(Layout(ROOT), progress=lambda line: None)
    assert set(found) == {"bench/pipeline.kernel-matrix", "bench/pipeline.kernel-matrix-unchanged"}
    assert all(value["status"] == "skipped" and "not installed" in value["reason"] for value in found.values())
    assert bench.GOALS["kernel-matrix"] == 90.0


@pytest.mark.slow
def test_modules_built_together_are_the_modules_built_alone_and_a_failure_marks_none(tmp_path: Path) -> None:
    """One make for several modules (half of a one-module build is Kbuild starting up); if it fails, each alone."""
    kernel = _installed(["6.1"])["6.1"]
    layout = _layout(tmp_path)
    found = {lesson.name: lesson for lesson in lessons.discover(layout)}
    reads, layers, get_fs = found["04-kernel-read"], found["06-skipping-layers"], found["05-get-fs"]
    pairs = [(reads, reads.modules[0]), (layers, layers.modules[0])]
    assert kernel_build.build_together(layout, pairs, kernel) == pairs
    for lesson, module in pairs:
        again = kernel_build.build_module(layout, lesson, module, kernel)
        assert again.ko.is_file() and not again.rebuilt, "built together, then reused as if built alone"
        vermagic = subprocess.run(["modinfo", "-F", "vermagic", str(again.ko)], capture_output=True, text=True)
        assert vermagic.stdout.split()[0] == kernel.release
    assert kernel_build.build_together(layout, pairs, kernel) == [], "nothing left to build"
    (oldstyle,) = [module for module in get_fs.modules if module.expect == "build-error"]
    (kseg,) = [module for module in get_fs.modules if module.expect != "build-error"]
    assert kernel_build.build_together(layout, [(get_fs, kseg), (get_fs, oldstyle)], kernel) == []
    assert kernel_build.build_module(layout, get_fs, kseg, kernel).rebuilt, "not marked built by the failed make"


def test_a_module_that_did_not_build_while_the_guest_booted_is_skipped_in_the_guest_and_on_the_host(
    tmp_path: Path,
) -> None:
    """The guest's helper loads only what the host says it built; the host drops the others' jobs and results."""
    from course.kernel import kernel_guest

    job = {"lesson": "05-get-fs", "module": "kseg", "ko": str(tmp_path / "kseg.ko"), "params": [], "stdin": "devnull"}
    plan, results = kernel_guest.prepare(tmp_path, [{**job, "after_build": True}])
    kernel_guest.write_built(tmp_path, [])  # its build failed
    assert kernel_guest.main([str(plan), str(results), "--host-kernel"]) == 0
    (skipped,) = kernel_guest.collected(results)
    assert skipped["not_built"] and "exit_status" not in skipped, "never loaded"
    program = {"lesson": "05-get-fs", "program": "05-get-fs/x", "binary": "/x"}
    other = {**job, "module": "kget"}
    jobs, kept = kernel_runs._only_built([program, job, other], [{"p": 1}, {"k": 1}], {("05-get-fs", "kget")})
    assert jobs == [program, other] and kept == [{"p": 1}], "the results stay beside their jobs"
