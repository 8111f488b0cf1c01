from __future__ import annotations

from pathlib import Path

import pytest

from course.results import fingerprint

CPUINFO = """\
processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC 7B13 64-Core Processor
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
