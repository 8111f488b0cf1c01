from __future__ import annotations

from pathlib import Path

import pytest

from course.results import fingerprint

CPUINFO = """\
processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 25
model		: 1
model name	: AMD EPYC 7B13 64-Core Processor
stepping	: 1
microcode	: 0x1000065
flags		: fpu tsc rdtscp constant_tsc nonstop_tsc hypervisor sse2

processor	: 1
model name	: should not be read
"""


def test_cpu_info_reads_the_first_processor() -> None:
    info = fingerprint.cpu_info(CPUINFO)
    assert info["model name"] == "AMD EPYC 7B13 64-Core Processor"
    assert info["microcode"] == "0x1000065"


def test_machine_records_what_makes_a_tick(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    machine = fingerprint.machine(cpuinfo_path=cpuinfo)
    assert machine["cpu_model"] == "AMD EPYC 7B13 64-Core Processor"
    assert machine["tsc_flags"] == ["tsc", "rdtscp", "constant_tsc", "nonstop_tsc", "hypervisor"]
    assert machine["hypervisor"] is True
    assert machine["virtualization"] != "bare"
    for key in ("kernel_release", "mitigations", "compiler", "microcode", "os"):
        assert key in machine


def test_machine_records_which_cpu_it_is(tmp_path: Path) -> None:
    """Vendor, family, model and stepping: what a generic model name ("AMD EPYC") does not say."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    machine = fingerprint.machine(cpuinfo_path=cpuinfo)
    identity = {key: machine[key] for key in ("cpu_vendor", "cpu_family", "cpu_model_number", "cpu_stepping")}
    assert identity == {"cpu_vendor": "AuthenticAMD", "cpu_family": "25", "cpu_model_number": "1", "cpu_stepping": "1"}


def test_a_cpuinfo_without_family_model_or_stepping_says_unknown(tmp_path: Path) -> None:
    """An arm64 /proc/cpuinfo has none of them: the machine is still described, its name as before."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n")
    machine = fingerprint.machine(cpuinfo_path=cpuinfo)
    assert [machine[key] for key in ("cpu_vendor", "cpu_family", "cpu_model_number", "cpu_stepping")] == ["unknown"] * 4
    assert fingerprint.cpu_generation(machine) == ""
    machine.update(cpu_model="Neoverse-N1", kernel_release="6.1.0-56-arm64", virtualization="bare")
    assert fingerprint.set_id(machine) == "neoverse-n1-6.1.0-56-arm64-bare"


def test_virtualization_names_the_hypervisor() -> None:
    assert fingerprint.virtualization({"tsc"}, "") == "bare"
    assert fingerprint.virtualization({"hypervisor"}, "KVM Virtual Machine") == "kvm"
    assert fingerprint.virtualization({"hypervisor"}, "Standard PC (Q35 + ICH9, 2009)") == "vm"


def test_set_id_is_stable_and_safe_in_paths() -> None:
    info = {
        "cpu_model": "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz",
        "kernel_release": "6.1.0-56-amd64",
        "virtualization": "bare",
    }
    assert fingerprint.set_id(info) == "intel-r-core-tm-i7-8650u-cpu-1.90ghz-6.1.0-56-amd64-bare"
    assert fingerprint.set_id(info) == fingerprint.set_id(dict(info))


def test_set_id_tells_two_generations_of_one_generic_model_apart() -> None:
    """Two cloud hosts both called "AMD EPYC" under one kernel: each CPU generation names a set of its own."""
    host = {"cpu_model": "AMD EPYC", "kernel_release": "6.18.44-fc-v1272", "virtualization": "vm"}
    zen5 = {**host, "cpu_vendor": "AuthenticAMD", "cpu_family": "26", "cpu_model_number": "2", "cpu_stepping": "1"}
    zen3 = {**zen5, "cpu_family": "25", "cpu_model_number": "1", "cpu_stepping": "1"}
    assert fingerprint.set_id(zen5) == "amd-epyc-f26m2s1-6.18.44-fc-v1272-vm"
    assert fingerprint.set_id(zen3) == "amd-epyc-f25m1s1-6.18.44-fc-v1272-vm"
    # Where the generation is not known (not recorded, not a number), the name is the one it always was.
    assert fingerprint.set_id(host) == "amd-epyc-6.18.44-fc-v1272-vm"
    assert fingerprint.set_id({**zen5, "cpu_stepping": "unknown"}) == "amd-epyc-6.18.44-fc-v1272-vm"


def test_a_set_id_with_the_generation_stays_within_the_limit() -> None:
    """A long model name is cut to make room; the generation, kernel and virtualization stay whole."""
    info = {
        "cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz " * 3,
        "kernel_release": "6.1.0-56-cloud-amd64",
        "virtualization": "kvm",
        "cpu_family": "6",
        "cpu_model_number": "106",
        "cpu_stepping": "6",
    }
    name = fingerprint.set_id(info)
    assert len(name) <= fingerprint.SET_NAME_LIMIT
    assert name.startswith("intel-r-xeon-r-platinum-8375c") and name.endswith("-f6m106s6-6.1.0-56-cloud-amd64-kvm")
    assert fingerprint.set_name(name) == name, "the derived name is one --set takes"


def test_slug_never_yields_a_path_escape() -> None:
    assert fingerprint.slug("../../etc") == "etc"
    assert fingerprint.slug("$(rm -rf /)") == "rm-rf"
    assert fingerprint.slug("...") == "unknown"


def test_mitigations_read_every_file(tmp_path: Path) -> None:
    (tmp_path / "meltdown").write_text("Not affected\n")
    (tmp_path / "spectre_v2").write_text("Mitigation: Retpolines\n")
    assert fingerprint.mitigations(tmp_path) == {"meltdown": "Not affected", "spectre_v2": "Mitigation: Retpolines"}


def test_the_compiler_is_asked_its_version_once_per_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run builds a dozen programs: ``cc --version`` runs once, and again only for another compiler."""
    asked = tmp_path / "asked"
    compiler = tmp_path / "cc"
    compiler.write_text(f"#!/bin/sh\necho once >> {asked}\necho 'fake cc 1.0'\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert fingerprint.compiler_version() == fingerprint.compiler_version() == "fake cc 1.0"
    assert asked.read_text() == "once\n"
    compiler.write_text(f"#!/bin/sh\necho again >> {asked}\necho 'fake cc 2.0 (upgraded)'\n")
    assert fingerprint.compiler_version() == "fake cc 2.0 (upgraded)"
    assert asked.read_text() == "once\nagain\n"
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert fingerprint.compiler_version() == "not found"
