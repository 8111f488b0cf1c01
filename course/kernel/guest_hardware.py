"""What a guest is shown at boot: QEMU's CPU model (``--guest-cpu``), kernel parameters (``--guest-append``).

A guest kernel decides its mitigations from the CPU model it sees and from its command line:
``--guest-cpu Skylake-Server-v4`` shows it an Intel server CPU that needs page-table isolation
and buffer clearing, ``--guest-append mitigations=off`` turns them off. Both values come from the
command line and end up in QEMU's argument list and in the guest kernel's command line, so they
are checked strictly here: a CPU model is one of QEMU's names (no comma, which would add CPU
features), a parameter a plain ``name`` or ``name=value`` word; nothing else ever reaches vng.
"""

from __future__ import annotations

import functools
import hashlib
import re
import subprocess
from dataclasses import dataclass

#: A QEMU CPU model name: letters, digits, ".", "_" and "-" (never ",", which adds features, or a space).
CPU_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: A kernel parameter: ``name`` or ``name=value``, with no quote, space or shell character.
PARAMETER = re.compile(r"[a-z0-9_][a-z0-9_.-]{0,63}(=[A-Za-z0-9_.,:-]{1,64})?")

MAX_PARAMETERS = 8
#: The most characters --guest-append may hold in all (each parameter is bounded by PARAMETER too).
MAX_APPEND = 160
#: The longest slug a set's name carries; a longer one is cut and ends with a hash of the whole.
MAX_SLUG = 40


class GuestHardwareError(ValueError):
    """A CPU model or kernel parameter that cannot be passed on; the message says what is accepted."""


@dataclass(frozen=True)
class GuestHardware:
    """The CPU model QEMU shows the guest ("" for vng's default) and the parameters added to its command line."""

    cpu: str = ""
    append: tuple[str, ...] = ()

    @property
    def default(self) -> bool:
        return not self.cpu and not self.append

    def qemu_options(self) -> str:
        return f"-cpu {self.cpu}" if self.cpu else ""

    def slug(self) -> str:
        """How a result set's name says what the guest was shown: ``skylake-server-v4-mitigations-off``."""
        words = [self.cpu.lower()] if self.cpu else []
        words += [re.sub(r"[^a-z0-9]+", "-", item.lower()).strip("-") for item in self.append]
        slug = "-".join(words)
        if len(slug) <= MAX_SLUG:
            return slug
        # Cut, the set folder's name stays within a name's limit; the hash keeps two long ones apart.
        digest = hashlib.sha256(" ".join([self.cpu, *self.append]).encode()).hexdigest()[:8]
        return f"{slug[: MAX_SLUG - 9].rstrip('-')}-{digest}"


#: The guest as vng boots it by default: its CPU model, no parameter added.
DEFAULT = GuestHardware()


@functools.cache
def qemu_cpu_models() -> frozenset[str]:
    """The CPU model names this machine's QEMU knows (``qemu-system-x86_64 -cpu help``)."""
    try:
        listing = subprocess.run(
            ["qemu-system-x86_64", "-cpu", "help"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise GuestHardwareError(f"cannot list QEMU's CPU models ({error}); install qemu-system-x86") from error
    return frozenset(match[1] for match in re.finditer(r"^x86\s+(\S+)", listing, re.MULTILINE))


def parse(cpu: str | None, append: str | None, known_models=qemu_cpu_models) -> GuestHardware:
    """The options as typed, checked: one clear error naming the value and what is accepted."""
    cpu = (cpu or "").strip()
    if cpu:
        if not CPU_MODEL.fullmatch(cpu):
            raise GuestHardwareError(
                f"--guest-cpu {cpu[:80]!r} is not a QEMU CPU model name (letters, digits, '.', '_', '-'; no "
                "comma or space), like --guest-cpu Skylake-Server-v4 (qemu-system-x86_64 -cpu help lists them)"
            )
        if cpu not in known_models():
            raise GuestHardwareError(
                f"--guest-cpu {cpu!r} is not one of this QEMU's CPU models; qemu-system-x86_64 -cpu help lists "
                "them (for example Skylake-Server-v4, EPYC-Rome-v2)"
            )
    words = (append or "").split()
    if len(" ".join(words)) > MAX_APPEND:
        raise GuestHardwareError(
            f"--guest-append holds {len(' '.join(words))} characters, over the {MAX_APPEND} the course passes on; "
            "give fewer or shorter kernel parameters"
        )
    if len(words) > MAX_PARAMETERS:
        raise GuestHardwareError(f"--guest-append takes at most {MAX_PARAMETERS} kernel parameters, not {len(words)}")
    for word in words:
        if not PARAMETER.fullmatch(word):
            raise GuestHardwareError(
                f"--guest-append {word[:80]!r} is not a kernel parameter the course passes on: name or "
                "name=value, lower-case name, no quotes or spaces, like --guest-append mitigations=off"
            )
    names = [word.split("=", 1)[0] for word in words]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise GuestHardwareError(
            f"--guest-append names {', '.join(twice)} more than once ({' '.join(words)}); give each parameter once"
        )
    return GuestHardware(cpu, tuple(words))
