"""--guest-cpu and --guest-append: strictly checked, passed to vng as single arguments, a set of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from course.kernel import guest_hardware, guest_kernels, ram_guest, vm
from course.kernel.guest_hardware import GuestHardware, GuestHardwareError
from course.kernel.kernel_build import GuestKernel, KernelError
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
MODELS = frozenset({"Skylake-Server-v4", "EPYC-Rome-v2", "qemu64"})


def _parse(cpu: str | None, append: str | None) -> GuestHardware:
    return guest_hardware.parse(cpu, append, known_models=lambda: MODELS)


@pytest.mark.parametrize(
    ("cpu", "append", "message"),
    [
        ("Skylake-Server-v4,+pcid", None, "no comma or space"),
        ("Skylake-Server-v4 -device foo", None, "no comma or space"),
        ("Haswell-v9", None, "not one of this QEMU's CPU models"),
        (None, "mitigations=off;reboot", "not a kernel parameter"),
        (None, "init=/bin/sh'", "not a kernel parameter"),
        (None, "-c", "not a kernel parameter"),
        (None, "mitigations=off $(reboot)", "not a kernel parameter"),
        (None, "nopti nopti", "names nopti more than once"),
        (None, "mitigations=off mitigations=auto", "names mitigations more than once"),
        (None, " ".join(f"p{i}" + "x" * 62 + "=" + "v" * 64 for i in range(8)), "--guest-append holds 1039 characters"),
        (None, " ".join(f"p{i}" for i in range(9)), "at most 8"),
    ],
)
def test_a_value_that_could_break_a_command_line_is_refused_with_one_line(cpu, append, message) -> None:
    with pytest.raises(GuestHardwareError, match=message) as refused:
        _parse(cpu, append)
    assert "\n" not in str(refused.value)


def test_each_value_reaches_vng_as_one_argument_beside_icount() -> None:
    hardware = _parse("Skylake-Server-v4", "mitigations=off nosmt")
    kernel = GuestKernel("6.1.0-57-amd64", Path("/boot/vmlinuz-6.1.0-57-amd64"), Path("/h"), Path("/m"))
    command = vm.vng_command(kernel, "tcg-icount", "true", hardware=hardware)
    assert "--qemu-opts=-icount shift=0 -cpu Skylake-Server-v4" in command
    theirs = [word for word in command if word.startswith("--append") and "modprobe.blacklist" not in word]
    assert theirs == ["--append=mitigations=off", "--append=nosmt"]
    plain = vm.vng_command(kernel, "tcg-icount", "true")
    assert [word for word in plain if word.startswith("--append")] == [f"--append={vm.UNUSED_DRIVERS_PARAMETER}"]
    assert "--qemu-opts=-icount shift=0" in plain
    # Under plain emulation the model alone starts with "-c": one word, never read as vng's own -c option.
    assert "--qemu-opts=-cpu Skylake-Server-v4" in vm.vng_command(kernel, "tcg", "true", hardware=hardware)


def test_a_guest_shown_another_cpu_or_parameters_gets_a_set_of_its_own() -> None:
    assert guest_kernels.set_name("6.1", "tcg-icount", "") == "qemu-icount-debian-6.1"
    on = _parse("Skylake-Server-v4", None)
    off = _parse("Skylake-Server-v4", "mitigations=off")
    assert guest_kernels.set_name("6.1", "tcg-icount", "", on.slug()) == "qemu-icount-debian-6.1-skylake-server-v4"
    assert (
        guest_kernels.set_name("6.12", "tcg-icount", "", off.slug())
        == "qemu-icount-debian-6.12-skylake-server-v4-mitigations-off"
    )


def test_this_qemu_knows_the_models_the_instructor_guide_names() -> None:
    if not vm.shutil.which("qemu-system-x86_64"):
        pytest.skip("QEMU is not installed here")
    assert {"Skylake-Server-v4", "EPYC-Rome-v2"} <= guest_hardware.qemu_cpu_models()


@pytest.mark.slow
def test_a_real_guest_sees_the_cpu_model_and_the_parameters_it_was_given(tmp_path: Path, lesson_4_built) -> None:
    """One boot, nothing run in it: the guest's own provenance says what it saw (QEMU TCG, no KVM).

    The guest from memory, as ``--guest-kernels ... --guest-cpu`` boots it under emulation (virtme-ng boots only
    KVM's guests and ``invoke vm``'s shell: the words it is given are checked above); plain TCG, the cheaper boot,
    takes the model and parameters from the same :func:`ram_guest.qemu_command` as tcg-icount."""
    try:
        kernel = guest_kernels.find("6.1")
        vm.require_qemu()
        ram_guest.busybox()
    except (KernelError, vm.VmError, ram_guest.RamGuestError) as missing:
        pytest.skip(str(missing))
    lesson_4_built(tmp_path / "build")  # the kernel at its PVH entry and the guest's launcher, made once per run
    layout = Layout(ROOT, results_dir=tmp_path / "results", build_dir=tmp_path / "build")
    hardware = guest_hardware.parse("Skylake-Server-v4", "mitigations=off")
    boot = ram_guest.run_tcg_jobs(layout, kernel, [], progress=lambda line: None, timeout=300, hardware=hardware)
    assert boot.exit_status == 0, boot.console[-2000:]
    assert boot.guest["cpu_model"].startswith("Intel Xeon Processor (Skylake"), "QEMU showed the model asked for"
    mitigations = boot.guest["mitigations"]
    assert mitigations["meltdown"] == "Vulnerable", "the kernel took mitigations=off: no page-table isolation"
    assert mitigations["spectre_v2"].startswith("Vulnerable")


def test_the_set_name_of_long_parameters_stays_a_usable_folder_name() -> None:
    from course.kernel import guest_kernels
    from course.results import store

    longest = " ".join(f"p{i}" + "x" * 10 + "=" + "v" * 6 for i in range(8))
    assert len(longest) <= guest_hardware.MAX_APPEND
    slug = _parse("Skylake-Server-v4", longest).slug()
    other = _parse("Skylake-Server-v4", longest.replace("p7", "p8")).slug()
    assert len(slug) <= guest_hardware.MAX_SLUG and slug != other, (slug, other)
    assert _parse("Skylake-Server-v4", "mitigations=off").slug() == "skylake-server-v4-mitigations-off"
    name = guest_kernels.set_name("6.12", "tcg", "a-host-set-of-forty-characters-000000000", slug)
    assert store.slug_safe(name), name
