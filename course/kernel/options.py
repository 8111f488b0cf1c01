"""Where a run's kernel modules go and how its guest boots: the options, checked before anything runs."""

from __future__ import annotations

from dataclasses import dataclass

from course.kernel.guest_hardware import DEFAULT as DEFAULT_HARDWARE
from course.kernel.guest_hardware import GuestHardware

#: Where kernel modules may run, and how the ``vm`` runner may emulate (see :mod:`course.kernel.vm`).
KERNEL_RUNNERS = ("vm", "host-kernel", "none")
ACCELERATIONS = ("auto", "kvm", "tcg", "tcg-icount")


class OptionError(ValueError):
    """An option of the command line or configuration that has no meaning; the message lists the valid ones."""


@dataclass(frozen=True)
class KernelOptions:
    """Where kernel modules run: ``vm`` (default), ``host-kernel`` (only when asked by name) or ``none``.

    Checked when made, before anything runs: a typo must not turn into a run that measures nothing.
    """

    runner: str = "vm"
    acceleration: str = "auto"  # auto, kvm, tcg or tcg-icount
    release: str = ""  # the guest kernel; default: the newest installed
    hardware: GuestHardware = DEFAULT_HARDWARE  # the CPU model and kernel parameters the guest is given

    def __post_init__(self) -> None:
        if self.runner not in KERNEL_RUNNERS:
            raise OptionError(
                f"unknown kernel runner {self.runner!r}; choose one of {', '.join(KERNEL_RUNNERS)} (--kernel-runner)"
            )
        if self.acceleration not in ACCELERATIONS:
            raise OptionError(
                f"unknown acceleration {self.acceleration!r}; choose one of {', '.join(ACCELERATIONS)} (--acceleration)"
            )
