"""The machine a result set was measured on: what makes its figures what they are."""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

#: CPU flags that change what a tick is, or whether one can be read at all.
TSC_FLAGS = ("tsc", "rdtscp", "constant_tsc", "nonstop_tsc", "tsc_known_freq", "hypervisor")

VULNERABILITIES = Path("/sys/devices/system/cpu/vulnerabilities")

#: Which CPU this is, beyond its model name: ``set.json``'s key and the ``/proc/cpuinfo`` field it comes from.
#: A cloud VM's model name can be as generic as "AMD EPYC" on two CPU generations; these tell them apart.
CPU_IDENTITY = {
    "cpu_vendor": "vendor_id",
    "cpu_family": "cpu family",
    "cpu_model_number": "model",
    "cpu_stepping": "stepping",
}


def cpu_info(cpuinfo: str) -> dict[str, str]:
    """The first processor's fields of a ``/proc/cpuinfo`` text."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_identity(cpu: dict[str, str]) -> dict[str, str]:
    """The CPU's vendor, family, model and stepping from :func:`cpu_info`'s fields; "unknown" where absent.

    Only x86 reports all four (an ARM or RISC-V ``/proc/cpuinfo`` has other fields): never an error.
    """
    return {key: cpu.get(field) or "unknown" for key, field in CPU_IDENTITY.items()}


def cpu_generation(info: dict) -> str:
    """``f26m2s1``: the CPU's family, model and stepping in decimal, as ``/proc/cpuinfo`` gives them.

    Empty where one of them is not a number (another architecture, a set stored before they were recorded).
    """
    parts = [str(info.get(key, "")) for key in ("cpu_family", "cpu_model_number", "cpu_stepping")]
    if not all(re.fullmatch(r"[0-9]{1,6}", part) for part in parts):
        return ""
    family, model, stepping = (int(part) for part in parts)
    return f"f{family}m{model}s{stepping}"


def mitigations(folder: Path = VULNERABILITIES) -> dict[str, str]:
    """Each known CPU vulnerability and what the kernel does about it."""
    if not folder.is_dir():
        return {}
    return {entry.name: entry.read_text().strip() for entry in sorted(folder.iterdir()) if entry.is_file()}


def kernel_cmdline(path: Path = Path("/proc/cmdline")) -> str:
    """The command line this kernel booted with (``mitigations=off``, ``isolcpus=``...): it shapes figures too."""
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def compiler_version(cc: str = "cc") -> str:
    """The first line of ``cc --version``, or why there is none.

    Asked once per compiler file in a process (a run builds a dozen programs with the same one):
    the compiler found on PATH, its size and date are the key, so another compiler is asked again.
    """
    found = shutil.which(cc)
    if found is None:
        return "not found"
    try:
        stat = os.stat(found)
    except OSError:
        return "not found"
    return _version_of(cc, found, stat.st_size, stat.st_mtime_ns)


@functools.cache
def _version_of(cc: str, found: str, size: int, mtime_ns: int) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "not found"
    return out.splitlines()[0].strip() if out else "unknown"


def virtualization(flags: set[str], dmi_product: str) -> str:
    """``"bare"`` on real hardware, else a short name of the hypervisor as the DMI tells it."""
    if "hypervisor" not in flags:
        return "bare"
    product = dmi_product.lower()
    for name in ("kvm", "qemu", "vmware", "virtualbox", "hyper-v", "xen", "firecracker"):
        if name in product:
            return name
    return "vm"


def slug(text: str) -> str:
    """Lower-case letters, digits and single dashes: safe in paths, URLs and shells."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.") or "unknown"


def machine(cc: str = "cc", cpuinfo_path: Path = Path("/proc/cpuinfo")) -> dict:
    """The provenance of this machine, as stored in a result set's ``set.json``."""
    cpu = cpu_info(cpuinfo_path.read_text()) if cpuinfo_path.is_file() else {}
    flags = set(cpu.get("flags", "").split())
    dmi = Path("/sys/class/dmi/id/product_name")
    dmi_product = dmi.read_text().strip() if dmi.is_file() else ""
    return {
        "cpu_model": cpu.get("model name", platform.processor() or "unknown"),
        **cpu_identity(cpu),
        "cpu_count": os.cpu_count(),
        "microcode": cpu.get("microcode", "unknown"),
        "tsc_flags": [flag for flag in TSC_FLAGS if flag in flags],
        "tsc_hz": None,  # measured by the first program that runs; see course.measure.lesson_run
        "architecture": platform.machine(),
        "kernel_release": platform.release(),
        "kernel_version": platform.version(),
        "hypervisor": "hypervisor" in flags,
        "virtualization": virtualization(flags, dmi_product),
        "dmi_product": dmi_product,
        "mitigations": mitigations(),
        "compiler": compiler_version(cc),
        "os": _os_release(),
    }


#: The longest set name: a folder name, a page name and an archive's name must all take it.
SET_NAME_LIMIT = 100


def set_id(info: dict) -> str:
    """The stable name of a machine's result set: CPU model and generation, kernel release, virtualization.

    ``amd-epyc-f26m2s1-6.18.44-fc-v1272-vm``: the generation (:func:`cpu_generation`) tells apart two hosts
    whose model name is the same generic one (cloud VMs: "AMD EPYC"), so a new host measures into a set of
    its own. Where it is unknown it is left out, the name as before it was recorded. A model name long
    enough to take the name past :data:`SET_NAME_LIMIT` is cut, never the generation.
    """
    model = slug(info["cpu_model"])
    generation = cpu_generation(info)
    rest = "-".join(slug(info[key]) for key in ("kernel_release", "virtualization"))
    if not generation:
        return f"{model}-{rest}"
    room = SET_NAME_LIMIT - len(f"-{generation}-{rest}")
    if len(model) > room:
        model = model[: max(room, 1)].rstrip("-.") or "unknown"
    return f"{model}-{generation}-{rest}"


class SetNameError(ValueError):
    """A set name asked for that cannot name a folder (nothing left once made safe, or too long)."""


def set_name(asked: str | None = None, info: dict | None = None) -> str:
    """The folder name of a result set: ``asked`` made safe, else this machine's stable id.

    A name asked for that leaves nothing once made safe ('...', 'é', '_') is refused, never
    silently 'unknown'; so is one longer than :data:`SET_NAME_LIMIT`.
    """
    if not asked:
        return set_id(info or machine())
    made = re.sub(r"[^a-z0-9.]+", "-", str(asked).lower()).strip("-.")
    shown = str(asked) if len(str(asked)) <= 40 else f"{str(asked)[:37]}..."
    if not made:
        raise SetNameError(
            f"set name {shown!r} has no letter or digit (a-z, 0-9) to name a folder with; choose one like lab-pc-07"
        )
    if len(made) > SET_NAME_LIMIT:
        raise SetNameError(f"set name {shown!r} is {len(made)} characters long; at most {SET_NAME_LIMIT}")
    return made


def _os_release() -> str:
    path = Path("/etc/os-release")
    if not path.is_file():
        return platform.system()
    fields = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return fields.get("PRETTY_NAME", "").strip('"') or platform.system()
