"""The guest kernels a run may boot by name (``--guest-kernels 6.1,6.12,6.1-rt``), and their result sets.

Debian 12 ships three kernels the course can boot: its own 6.1 (``linux-image-amd64``), 6.12
(``linux-image-6.12-amd64``, from bookworm-security) and 6.1 built with PREEMPT_RT
(``linux-image-rt-amd64``). A name maps to the newest installed release of its kind, with its
image, headers and modules; ``invoke setup --guest-kernels`` installs what is asked for.

Each kernel of a matrix run stores its figures in a set of its own:
``qemu-icount-debian-6.12`` under ``tcg-icount`` (icount ticks are instructions, the same on
every host, so the set names no host), ``<this machine's set>-tcg-debian-6.12`` otherwise
(emulated or real ticks belong to the host that measured them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from course.kernel.kernel_build import BOOT, HEADERS, MODULES, GuestKernel, KernelError, complete_releases, release_key
from course.results.store import ResultSet


@dataclass(frozen=True)
class KernelName:
    """A guest kernel by the name a student types: the Debian packages it comes from, the releases it maps to."""

    name: str
    image_package: str
    headers_package: str
    releases: re.Pattern[str]  # the installed releases (``uname -r``) of this kind
    flavour: str  # Debian's flavour: the configuration it is built with
    about: str

    @property
    def packages(self) -> list[str]:
        return [self.image_package, self.headers_package]


#: The kernels a matrix may name, the first the baseline others are compared with.
KERNELS: dict[str, KernelName] = {
    kernel.name: kernel
    for kernel in (
        KernelName(
            "6.1",
            "linux-image-amd64",
            "linux-headers-amd64",
            re.compile(r"6\.1\.\d+-\d+-amd64"),
            "amd64",
            "Debian 12's own kernel",
        ),
        KernelName(
            "6.12",
            "linux-image-6.12-amd64",
            "linux-headers-6.12-amd64",
            re.compile(r"6\.12\.\d+(\+deb\d+)?-amd64"),
            "amd64",
            "Debian 12's newer kernel (bookworm-security)",
        ),
        KernelName(
            "6.1-rt",
            "linux-image-rt-amd64",
            "linux-headers-rt-amd64",
            re.compile(r"6\.1\.\d+-\d+-rt-amd64"),
            "rt-amd64",
            "Debian 12's kernel built with PREEMPT_RT",
        ),
    )
}

#: The kernel the others are compared with ("change from 6.1").
BASELINE = "6.1"

#: How each acceleration is written in a set's name.
SET_ACCELERATION = {"tcg-icount": "icount", "tcg": "tcg", "kvm": "kvm"}


class KernelNameError(ValueError):
    """A guest kernel name the course does not know; the message lists the known ones and how to install them."""


def install_command(names: list[str] | None = None) -> str:
    packages = [package for name in names or list(KERNELS) for package in KERNELS[name].packages]
    return f"apt-get install {' '.join(packages)}"


def parse(text: str) -> list[str]:
    """The kernel names of ``--guest-kernels`` ("6.1,6.12,6.1-rt"), each known, none twice, in the order given."""
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    unknown = [name for name in names if name not in KERNELS]
    if unknown or not names:
        what = f"unknown guest kernel {unknown[0]!r}" if unknown else "no guest kernel named"
        raise KernelNameError(
            f"{what}; the known ones are {', '.join(KERNELS)} (--guest-kernels 6.1,6.12,6.1-rt); "
            f"install them with: invoke setup --guest-kernels {','.join(KERNELS)} ({install_command()})"
        )
    if len(set(names)) != len(names):
        raise KernelNameError(f"--guest-kernels names a kernel twice ({', '.join(names)}); each makes one set")
    return names


def find(name: str, boot: Path = BOOT, headers: Path = HEADERS, modules: Path = MODULES) -> GuestKernel:
    """The newest installed release of kernel ``name``, with image, headers and modules."""
    kernel = KERNELS[name]
    releases = [release for release in complete_releases(boot, headers, modules) if kernel.releases.fullmatch(release)]
    if not releases:
        raise KernelError(
            f"guest kernel {name} ({kernel.about}) is not installed with image, headers and modules; install it "
            f"with: invoke setup --guest-kernels {name} ({install_command([name])})"
        )
    newest = max(releases, key=release_key)
    return GuestKernel(newest, boot / f"vmlinuz-{newest}", headers / f"linux-headers-{newest}", modules / newest)


def name_of(release: str) -> str:
    """The name of the kernel ``release`` is one of ("6.12"), or "" for a kernel the matrix does not know."""
    return next((kernel.name for kernel in KERNELS.values() if kernel.releases.fullmatch(release)), "")


def set_name(name: str, acceleration: str, host_set: str, shown: str = "") -> str:
    """The result set of guest kernel ``name`` measured under ``acceleration``.

    Under ``tcg-icount`` the figures are path lengths that any host reproduces: the set names
    only the guest. Emulated and real ticks are the host's time: its set's name comes first.
    ``shown``: what else the guest was shown (``GuestHardware.slug()``: a CPU model, kernel
    parameters), which makes a set of its own beside the default boot's, never replacing it.
    """
    short = SET_ACCELERATION[acceleration]
    tail = f"-{shown}" if shown else ""
    if acceleration == "tcg-icount":
        return f"qemu-{short}-debian-{name}{tail}"
    return f"{host_set}-{short}-debian-{name}{tail}"


def configuration(kernel: GuestKernel, boot: Path = BOOT) -> dict[str, str]:
    """The guest kernel's name, flavour and preemption model, as a set records it (``set.json``'s ``guest``)."""
    name = name_of(kernel.release)
    config = boot / f"config-{kernel.release}"
    options = _config_options(config.read_text(errors="replace")) if config.is_file() else {}
    flavour = KERNELS[name].flavour if name else kernel.release.split("-", 2)[-1]
    return {
        "name": name or kernel.release,
        "release": kernel.release,
        "flavour": flavour,
        "preemption": preemption(options),
    }


def preemption(options: dict[str, str]) -> str:
    """The preemption model of a kernel configuration, in Kconfig's words (PREEMPT_RT, PREEMPT_DYNAMIC ...)."""
    if not options:
        return "not recorded"
    if options.get("CONFIG_PREEMPT_RT") == "y":
        return "PREEMPT_RT"
    model = next(
        (name for name in ("PREEMPT", "PREEMPT_VOLUNTARY", "PREEMPT_NONE") if options.get(f"CONFIG_{name}") == "y"),
        "PREEMPT_NONE",
    )
    # With PREEMPT_DYNAMIC the model is chosen at boot (preempt=); the configured one is the default.
    return f"PREEMPT_DYNAMIC (default {model})" if options.get("CONFIG_PREEMPT_DYNAMIC") == "y" else model


def _config_options(text: str) -> dict[str, str]:
    options = {}
    for line in text.splitlines():
        key, sign, value = line.partition("=")
        if sign and key.startswith("CONFIG_"):
            options[key] = value.strip()
    return options


def matrix_guest(result_set: ResultSet) -> dict:
    """The set's ``guest`` record if it is one of the kernel matrix's own sets, else {}.

    An imported set keeps its archive's ``guest`` record as provenance, but it is another machine's: never
    one of the matrix's kernels (an ``aaa-...`` set would become lesson 4's baseline, a ``zzz-...`` set
    lesson 8's mitigations-off boot).
    """
    if result_set.info.get("imported"):
        return {}
    return result_set.info.get("guest") or {}


def guest_key(result_set: ResultSet) -> tuple | None:
    """What makes a matrix set one boot (kernel name, acceleration, CPU shown, parameters), or None."""
    guest = matrix_guest(result_set)
    if not guest:
        return None
    return tuple(guest.get(field) for field in ("name", "acceleration", "cpu_requested", "kernel_parameters"))


def duplicate_guests(sets: list[ResultSet]) -> list[tuple[ResultSet, ResultSet]]:
    """Pairs of the matrix's sets that claim one boot (same kernel, acceleration, CPU, parameters), by id."""
    first: dict[tuple, ResultSet] = {}
    pairs = []
    for result_set in sorted(sets, key=lambda s: s.id):
        key = guest_key(result_set)
        if key is None:
            continue
        if key in first:
            pairs.append((first[key], result_set))
        else:
            first[key] = result_set
    return pairs


def other_hardware(result_set: ResultSet) -> bool:
    """Whether the set's guest was shown a CPU model or kernel parameters of its own (``--guest-cpu``,
    ``--guest-append``): such sets answer one question (lesson 8's mitigations), not the matrix's."""
    guest = matrix_guest(result_set)
    return bool(guest.get("cpu_requested") or guest.get("kernel_parameters"))


def guest_sets(sets: list[ResultSet], acceleration: str = "tcg-icount") -> list[ResultSet]:
    """The kernel matrix's sets measured under ``acceleration``, the known kernels first in their order.

    Only the default boots: a set whose guest was shown another CPU or parameters is not one of them.
    """
    found = [s for s in sets if matrix_guest(s).get("acceleration") == acceleration and not other_hardware(s)]
    order = list(KERNELS)

    def rank(result_set: ResultSet) -> tuple[int, str]:
        name = matrix_guest(result_set).get("name", "")
        return (order.index(name) if name in order else len(order), name, result_set.id)

    return sorted(found, key=rank)


def change_percent(figure: dict | None, baseline: dict | None, field: str = "median") -> float | None:
    """How far ``figure`` moved from ``baseline``, in percent of it; None where the two do not compare.

    Like for like only: both measured, in one unit and under one acceleration (icount ticks of
    one kernel against icount ticks of another). Emulated or real ticks of two boots, or two units,
    are never set against each other.
    """
    if not figure or not baseline or figure.get("status") != "ok" or baseline.get("status") != "ok":
        return None
    if figure.get("unit") != baseline.get("unit") or figure.get("acceleration") != baseline.get("acceleration"):
        return None
    if figure.get("unit") != "icount ticks":  # only instruction counts are the same boot after boot
        return None
    now, then = figure.get(field), baseline.get(field)
    if now is None or not then:
        return None
    return 100 * (now - then) / then
