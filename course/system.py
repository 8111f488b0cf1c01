"""The Debian packages the lessons need, and installing the missing ones."""

from __future__ import annotations

import os
import shutil
import subprocess

from course.kernel import guest_kernels

#: package -> what the course uses it for (listed in the README too).
DEBIAN_PACKAGES = {
    "build-essential": "gcc and make, to compile the lessons' programs",
    "binutils": "objdump and readelf, for the disassembly of lesson 2",
    "graphviz": "dot, to draw the diagram of lesson 2",
    "liburing-dev": "io_uring's library, for lesson 8's batch of reads",
    "qemu-system-x86": "QEMU, the disposable VM the kernel modules run in",
    "linux-image-amd64": "the kernel the VM boots (Debian's)",
    "linux-headers-amd64": "that kernel's headers, to build the modules against it",
    "busybox-static": "the tools of the VM's initramfs (virtme-ng), and the init of the emulated kernel lessons' guest",
    "cpio": "to pack the emulated kernel lessons' guest, which boots from memory alone (course.kernel.ram_guest)",
    "kmod": "insmod, to load a module in the VM",
    "util-linux": "dmesg, to read the kernel log in the VM",
}


#: What the test suite and the benchmarks need besides (installed by ``invoke setup --tests``).
DEBIAN_TEST_PACKAGES = {
    "chromium": "the headless browser the site is checked in",
    "chromium-driver": "chromedriver, through which Selenium drives it",
    "linux-perf": "perf bench syscall basic, the peer measurement of invoke bench",
    "openssh-server": "sshd, on 127.0.0.1 only, as the hosts of invoke lab's tests and benchmark",
    "epubcheck": "the EPUB checker the published book (invoke publish) is validated with",
}


def guest_kernel_packages(names: list[str]) -> list[str]:
    """The image and headers packages of the guest kernels ``names`` (``--guest-kernels``; see ``guest_kernels``)."""
    return [package for name in names for package in guest_kernels.KERNELS[name].packages]


def test_packages() -> list[str]:
    """What ``setup --tests`` installs: the tests' tools, and every guest kernel (the tests build modules for each)."""
    return [*DEBIAN_TEST_PACKAGES, *guest_kernel_packages(list(guest_kernels.KERNELS))]


class SystemError_(RuntimeError):
    """The machine lacks something the course needs; the message says how to get it."""


def missing_packages(packages: list[str] | None = None) -> list[str]:
    """The packages of ``packages`` (default: all the course needs) not installed here."""
    wanted = packages or list(DEBIAN_PACKAGES)
    if shutil.which("dpkg-query") is None:
        return wanted
    missing = []
    for package in wanted:
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True).stdout
        if "install ok installed" not in status:
            missing.append(package)
    return missing


def install(packages: list[str]) -> None:
    """apt-get install ``packages`` (as root), after one ``apt-get update``."""
    if not packages:
        return
    if shutil.which("apt-get") is None:
        raise SystemError_(
            f"missing packages {', '.join(packages)} and no apt-get here: install their equivalents by hand"
        )
    if os.geteuid() != 0:
        raise SystemError_(
            f"installing {', '.join(packages)} needs root: run sudo apt-get install {' '.join(packages)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env)
