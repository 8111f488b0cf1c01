"""The VM runner's own mechanics, without a boot: commands, acceleration choice, timeouts."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from course.kernel import vm
from course.kernel.kernel_build import GuestKernel, KernelError, find_kernel
from course.results.layout import Layout

KERNEL = GuestKernel("6.1.0-test", Path("/boot/vmlinuz-6.1.0-test"), Path("/h"), Path("/m"))


def test_software_emulation_and_its_deterministic_mode() -> None:
    tcg = vm.vng_command(KERNEL, "tcg", "true")
    assert "--disable-kvm" in tcg and "-icount shift=0" not in tcg
    icount = vm.vng_command(KERNEL, "tcg-icount", "true")
    assert "--qemu-opts=-icount shift=0" in icount
    assert "--disable-kvm" not in vm.vng_command(KERNEL, "kvm", "true")
    assert vm.UNITS == {"kvm": "ticks", "tcg": "emulated ticks", "tcg-icount": "icount ticks", "host-kernel": "ticks"}


def test_every_host_shares_its_root_over_9p_and_the_guest_loads_no_driver_it_does_not_use(course_root: Path) -> None:
    command = vm.vng_command(KERNEL, "tcg-icount", "true")
    assert "--force-9p" in command, "virtiofs where virtiofsd starts would be another guest, with other counts"
    blacklist = [word for word in command if word.startswith("--append=modprobe.blacklist=")]
    assert blacklist == [f"--append={vm.UNUSED_DRIVERS_PARAMETER}"] and " " not in blacklist[0], "one kernel word"
    ours = {path.stem for path in (course_root / "code" / "kernel").rglob("*.c")}
    assert ours and not ours & set(vm.UNUSED_DRIVERS), "the course's own modules are loaded by path, never listed"


def test_a_remembered_kvm_verdict_is_used_without_probing(tmp_path: Path, monkeypatch) -> None:
    layout = Layout(tmp_path, build_dir=tmp_path / "build")
    verdicts = layout.build / "vm" / "kvm-verdict.json"
    verdicts.parent.mkdir(parents=True)
    key = f"{os.uname().release} {KERNEL.release}"
    verdicts.write_text(json.dumps({key: {"kvm": False, "why": "a probe boot under KVM hung", "at": "then"}}))
    monkeypatch.setattr(vm, "probe_kvm", lambda kernel: pytest.fail("probed again"))
    acceleration, why = vm.choose_acceleration(layout, KERNEL, "auto", progress=lambda line: None)
    assert acceleration == "tcg" and "hung" in why and "probed then" in why
    assert vm.choose_acceleration(layout, KERNEL, "tcg-icount", progress=lambda line: None)[0] == "tcg-icount"
    with pytest.raises(vm.VmError, match="unknown acceleration 'fast'"):
        vm.choose_acceleration(layout, KERNEL, "fast", progress=lambda line: None)


def test_a_hung_boot_is_stopped_with_everything_it_started() -> None:
    started = time.monotonic()
    # A stand-in for a hung QEMU: a shell that starts a child and never ends. The child's command line is this
    # test's own (its pid in the duration), so that the same test run elsewhere on the machine is not counted.
    child = f"sleep 300.{os.getpid()}"
    status, console = vm._run(["sh", "-c", f"echo booting; {child} & wait"], timeout=1, on_line=lambda line: None)
    assert status is None and "booting" in console and "stopped after 1 s" in console
    assert time.monotonic() - started < 10
    left = subprocess.run(["pgrep", "-f", child], capture_output=True, text=True).stdout
    assert left == "", "no stray process is left behind"


def test_missing_kernel_names_the_packages(tmp_path: Path) -> None:
    with pytest.raises(KernelError, match="apt-get install linux-image-amd64 linux-headers-amd64"):
        find_kernel(boot=tmp_path, headers=tmp_path, modules=tmp_path)


def test_the_newest_complete_kernel_is_chosen(tmp_path: Path) -> None:
    for release in ("6.1.0-9-amd64", "6.1.0-56-amd64", "6.12.0-1-amd64"):
        (tmp_path / f"vmlinuz-{release}").write_text("")
        (tmp_path / f"linux-headers-{release}").mkdir()
    for release in ("6.1.0-9-amd64", "6.1.0-56-amd64"):  # 6.12 has no modules: not bootable for the course
        (tmp_path / release).mkdir()
    assert find_kernel(boot=tmp_path, headers=tmp_path, modules=tmp_path).release == "6.1.0-56-amd64"


def test_a_damaged_kvm_verdict_file_is_probed_again(tmp_path: Path, monkeypatch) -> None:
    """The verdicts are a cache in build/: a damaged one costs a probe, never a traceback."""
    layout = Layout(tmp_path, build_dir=tmp_path / "build")
    verdicts = layout.build / "vm" / "kvm-verdict.json"
    verdicts.parent.mkdir(parents=True)
    key = f"{os.uname().release} {KERNEL.release}"
    monkeypatch.setattr(vm, "probe_kvm", lambda kernel: (False, "a probe boot under KVM hung"))
    for damaged in ("{ not json", "[1, 2]", json.dumps({key: {"kvm": "yes"}}), "\udcff"):
        verdicts.write_text(damaged, errors="surrogateescape")
        lines: list[str] = []
        acceleration, why = vm.choose_acceleration(layout, KERNEL, "auto", progress=lines.append)
        assert acceleration == "tcg" and "hung" in why
        assert any("probe  KVM" in line for line in lines), "probed again"
        assert json.loads(verdicts.read_text())[key]["kvm"] is False, "and remembered, whole"


def test_the_vm_scratch_folder_has_no_space_even_when_build_has_one(tmp_path: Path, monkeypatch) -> None:
    """vng and the guest's kernel command line split a --rwdir path at spaces."""
    layout = Layout(tmp_path, build_dir=tmp_path / "a folder" / "build")
    seen: list[Path] = []
    monkeypatch.setattr(vm, "require_qemu", lambda: None)
    monkeypatch.setattr(vm, "_boot", lambda *args, **kwargs: seen.append(args[-1]) or vm.VmRun([], "", 0, 0))
    vm.run_jobs(layout, KERNEL, [], "tcg", progress=lambda line: None)
    assert " " not in str(seen[0]) and not seen[0].exists(), "plain, and removed after the boot"
    plain = Layout(tmp_path, build_dir=tmp_path / "build")
    vm.run_jobs(plain, KERNEL, [], "tcg", progress=lambda line: None)
    assert seen[1].parent == plain.build / "vm", "a plain build folder keeps its scratch inside"


def test_a_boot_says_when_its_first_job_began(tmp_path: Path, monkeypatch) -> None:
    """Where a boot's time goes: until the guest helper's first job (the guest starting), then the jobs."""
    layout = Layout(tmp_path, build_dir=tmp_path / "build")
    lines: list[str] = []

    def booted(command: list[str], timeout: float, on_line) -> tuple[int, str]:
        on_line("[    0.000000] Linux version ...")
        assert not lines, "a console line is not a job"
        on_line("course-guest: [1/2] 04-kernel-read/usystime (user space)")
        on_line("course-guest: [2/2] ksystime stdin=pipe")
        return 0, ""

    monkeypatch.setattr(vm, "_run", booted)
    boot = vm._boot(layout, KERNEL, [], "tcg-icount", lines.append, 60, tmp_path)
    assert boot.first_job_seconds is not None and 0 <= boot.first_job_seconds <= boot.seconds
    assert lines == ["  vm     [1/2] 04-kernel-read/usystime (user space)", "  vm     [2/2] ksystime stdin=pipe"]
    monkeypatch.setattr(vm, "_run", lambda command, timeout, on_line: (None, "stopped"))
    assert vm._boot(layout, KERNEL, [], "tcg-icount", lines.append, 60, tmp_path).first_job_seconds is None


def test_a_boot_reads_the_guest_helpers_record_once(tmp_path: Path, monkeypatch) -> None:
    """The record holds every job's output: its jobs and the guest's provenance come from one read of it."""
    from course.results import store

    layout = Layout(tmp_path, build_dir=tmp_path / "build")
    job = {"lesson": "04-kernel-read", "program": "ksystime", "stdout": "a\nb\n"}
    guest = {"kernel_release": "6.1.0-test"}

    def booted(command: list[str], timeout: float, on_line) -> tuple[int, str]:
        store.write_json(tmp_path / "results.json", {"schema": 1, "jobs": [job], "guest": guest})
        return 0, ""

    reads: list[Path] = []
    real_read = store.read_regular
    monkeypatch.setattr(store, "read_regular", lambda path, limit: reads.append(path) or real_read(path, limit))
    monkeypatch.setattr(vm, "_run", booted)
    boot = vm._boot(layout, KERNEL, [], "tcg-icount", lambda line: None, 60, tmp_path)
    assert (boot.jobs, boot.guest) == ([job], guest)
    assert reads == [tmp_path / "results.json"]


def test_the_modules_build_beside_the_boot_and_the_guest_waits_for_them(tmp_path: Path, monkeypatch) -> None:
    """The build runs while the guest starts; its helper loads only what built, and a build's error is the boot's."""
    from course.kernel import kernel_guest

    layout = Layout(tmp_path, build_dir=tmp_path / "build")
    order: list[str] = []

    def build(shared: Path) -> None:
        time.sleep(0.3)  # the boot is under way meanwhile
        order.append("built")
        kernel_guest.write_built(shared, ["/b/kseg.ko"])

    def booted(command: list[str], timeout: float, on_line) -> tuple[int, str]:
        order.append("booting")
        assert command[command.index("--rwdir") + 1] == str(tmp_path), "the folder the guest shares"
        order.append(f"waited for {sorted(kernel_guest.wait_for_built(tmp_path, timeout=30, poll=0.05))}")
        return 0, ""

    monkeypatch.setattr(vm, "_run", booted)
    vm._boot(layout, KERNEL, [], "tcg-icount", lambda line: None, 60, tmp_path, while_booting=build)
    assert order == ["booting", "built", "waited for ['/b/kseg.ko']"]
    assert kernel_guest.wait_for_built(tmp_path / "nothing", timeout=0.1, poll=0.05) == set(), "never forever"

    def broken(shared: Path) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(vm, "_run", lambda command, timeout, on_line: (0, ""))
    with pytest.raises(OSError, match="no space left"):
        vm._boot(layout, KERNEL, [], "tcg-icount", lambda line: None, 60, tmp_path, while_booting=broken)


def _interrupted_boot(tmp_path: Path, monkeypatch, while_booting, after: float) -> float:
    """vm.run_jobs with 'sleep' for virtme-ng's boot, interrupted (a signal raising KeyboardInterrupt) ``after`` s."""
    import signal
    import threading

    monkeypatch.setattr(vm, "require_qemu", lambda: None)
    monkeypatch.setattr(vm, "vng_command", lambda *args, **kwargs: ["sleep", "31.5"])

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, interrupt)
    timer = threading.Timer(after, os.kill, (os.getpid(), signal.SIGUSR1))
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            vm.run_jobs(
                Layout(tmp_path, build_dir=tmp_path / "build"),
                KERNEL,
                [],
                "tcg-icount",
                lambda line: None,
                while_booting=while_booting,
            )
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    return time.monotonic() - started


def _running(argument: str) -> str:
    return subprocess.run(["pgrep", "-f", f"^sleep {argument}$"], capture_output=True, text=True).stdout.strip()


def test_ctrl_c_kills_the_guest_from_memory_booting_beside(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C during a boot whose guest from memory runs beside it: that guest's QEMU is killed at once,
    not left to run until its own end while run_jobs waits for it."""
    from course.kernel import ram_guest

    monkeypatch.setattr(ram_guest, "make_initramfs", lambda jobs, folder, *launchers: folder / "none")
    monkeypatch.setattr(ram_guest, "qemu_command", lambda *args, **kwargs: ["sleep", "29.5"])
    layout = Layout(tmp_path, build_dir=tmp_path / "build")
    seen: list[str] = []

    def beside(rundir: Path) -> None:
        ram_guest.run_jobs(layout, KERNEL, [], lambda line: None)

    def interrupt_once_booted() -> None:
        for _ in range(200):
            if _running("29.5"):
                seen.append(_running("29.5"))
                return
            time.sleep(0.05)

    import threading

    watcher = threading.Thread(target=interrupt_once_booted)
    watcher.start()
    seconds = _interrupted_boot(tmp_path, monkeypatch, beside, after=2.0)
    watcher.join()
    assert seen, "the guest from memory had started when Ctrl-C came"
    assert seconds < 15, "run_jobs waited for the guest from memory's own end (29.5 s)"
    assert not _running("29.5") and not _running("31.5"), "a boot outlived Ctrl-C"
    assert not list((tmp_path / "build" / "vm").iterdir())


def test_ctrl_c_during_the_build_starts_no_guest_from_memory_after_it(tmp_path: Path, monkeypatch) -> None:
    from course.kernel import ram_guest

    started: list[str] = []
    monkeypatch.setattr(
        ram_guest, "make_initramfs", lambda jobs, folder, *launchers: started.append("packed") or folder / "x"
    )
    monkeypatch.setattr(ram_guest, "qemu_command", lambda *args, **kwargs: started.append("qemu") or ["true"])
    layout = Layout(tmp_path, build_dir=tmp_path / "build")

    def build_then_boot(rundir: Path) -> None:
        time.sleep(1.0)  # the modules' build, interrupted meanwhile
        ram_guest.run_jobs(layout, KERNEL, [], lambda line: None)

    _interrupted_boot(tmp_path, monkeypatch, build_then_boot, after=0.3)
    assert started == [], "the guest from memory was packed or booted after Ctrl-C"
    assert not _running("31.5")


FORGED = "course-guest: \x1b]2;retitled\x07\x1b[2J [1/1] forged\u202e"


def test_a_guest_progress_line_reaches_the_terminal_escaped(tmp_path: Path, monkeypatch) -> None:
    """The guest's words: an escape sequence in them would clear or retitle the terminal."""
    from course.kernel import ram_guest

    lines: list[str] = []
    monkeypatch.setattr(vm, "_run", lambda command, timeout, on_line: on_line(FORGED) or (0, ""))
    vm._boot(Layout(tmp_path, build_dir=tmp_path / "build"), KERNEL, [], "tcg-icount", lines.append, 60, tmp_path)
    monkeypatch.setattr(vm, "require_qemu", lambda: None)
    monkeypatch.setattr(ram_guest, "make_initramfs", lambda jobs, folder, *launchers: folder / "none")
    ram_guest.run_jobs(Layout(tmp_path, build_dir=tmp_path / "build"), KERNEL, [], lines.append)
    assert lines == [r"  vm     \x1b]2;retitled\x07\x1b[2J [1/1] forged\u202e"] * 2
