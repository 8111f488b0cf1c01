"""What a lab is asked and what it did: its options, timeouts, hosts' runs and outcome, the names its steps share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from course.kernel.options import KernelOptions
from course.lab.inventory import Host
from course.results.layout import Layout

#: The step's process group on the host, in its scratch folder (cleanup stops what is left of it).
PID_FILE = ".lab-step.pid"


#: The tree as uploaded, and the set as exported, in the scratch folder.
TREE_FILE = ".course-tree.tar.gz"


EXPORT_FILE = "lab-export.tar.gz"


#: Seconds between the host's ``timeout`` sending SIGTERM and SIGKILL.
KILL_GRACE = 10


#: What the local side waits beyond a step's own limit before it gives up on the host.
LOCAL_MARGIN = 30


#: ``timeout``'s exit status when it stopped the command (SIGKILL after the grace: 128 + 9).
TIMED_OUT = (124, 137)


#: The host's virtual environment, kept between labs in its scratch folders' parent (see kept_venv).
KEPT_VENV = "course-lab-venv"


#: What the bootstrap step prints when the kept environment's packages match requirements.lock.
REUSED = "lab: the kept environment matches requirements.lock"


#: How much of the host's archive is read at a time.
DOWNLOAD_CHUNK = 1024 * 1024


#: ``invoke run``'s exit status when some lessons failed but the set was stored.
RUN_HAD_FAILURES = 1


#: A step's output goes to a file in the host's scratch folder (``.lab-<step>.out``); only its
#: last 64 KiB come back, to build/lab/<host>.log and the summary's line. Nothing a host sends
#: is kept beyond that bound, so a host that prints 300 MB costs this machine what a quiet one does.
TAIL_BYTES = 64 * 1024


#: How long the end of a command's output is awaited once it has exited.
DRAIN_SECONDS = 2.0


class LabError(RuntimeError):
    """The lab cannot start (no committed tree, no hosts); one host's failure is reported, never raised."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds each kind of step may take on one host."""

    connect: float = 15.0  # TCP, the SSH banner, authentication
    transfer: float = 600.0  # upload, export, download
    bootstrap: float = 3600.0
    run: float = 3600.0
    cleanup: float = 120.0

    def __post_init__(self) -> None:
        # `timeout 0` means no limit at all: a step of a zero limit would never be stopped.
        for name, value in vars(self).items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise LabError(f"a lab step's time limit must be a positive number of seconds ({name}: {value!r})")


@dataclass(frozen=True)
class LabOptions:
    """What the lab passes to each host, and how it treats them."""

    lessons: list[int] | None = None  # passed to `invoke run --lesson`; default: every lesson
    kernel_runner: str | None = None  # passed through when given; else the host's default
    acceleration: str | None = None
    known_hosts: Path | None = None  # default: ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts
    accept_new_host_keys: bool = False
    keep: bool = False  # keep each host's scratch folder
    force: bool = False  # replace sets of the same name here, as `results.import --force`
    timeouts: Timeouts = field(default_factory=Timeouts)
    own_sets: tuple[str, ...] = ()  # this machine's set names besides the derived one (--set): never imported
    parallel: int = 0  # at most this many hosts at once (0: all of them)

    def __post_init__(self) -> None:
        if isinstance(self.parallel, bool) or not isinstance(self.parallel, int) or self.parallel < 0:
            raise LabError(f"--parallel must be a number of hosts (0 for all at once), got {self.parallel!r}")
        # Checked here, once, rather than by every host after its upload and bootstrap.
        KernelOptions(runner=self.kernel_runner or "vm", acceleration=self.acceleration or "auto")


@dataclass
class HostRun:
    """One host's run: where it got, what it brought back, and why it failed if it did."""

    host: Host
    name: str  # unique in the lab: its log and archive are build/lab/<name>.*
    step: str = "waiting"
    failure: str = ""
    warning: str = ""  # the run measured, but some lessons failed
    seconds: float = 0.0
    set_name: str = ""
    lessons: int = 0
    lesson_failures: int = 0
    archive: Path | None = None
    log: Path | None = None
    imported: bool = False

    @property
    def ok(self) -> bool:
        return not self.failure and not self.warning

    @property
    def result(self) -> str:
        """The summary's last column."""
        if self.failure:
            return "imported, then FAILED" if self.imported else "FAILED"
        return "imported, with failures" if self.warning else "imported"


@dataclass
class LabOutcome:
    hosts: list[HostRun]
    commit: str
    interrupted: bool = False  # by Ctrl-C or SIGTERM: every host's step was stopped and cleaned up

    @property
    def ok(self) -> bool:
        return all(run.ok for run in self.hosts)

    @property
    def imported(self) -> list[str]:
        """The sets that came in (the site shows them once it is built)."""
        return [run.set_name for run in self.hosts if run.imported]

    def failure_lines(self) -> list[str]:
        """One line per host that failed (or measured with failures): which host, and why."""
        return [f"{run.host.address} ({run.name}): {run.failure or run.warning}" for run in self.hosts if not run.ok]


class StepFailed(Exception):
    """A step of one host failed; the message is the host's one line."""


class Stopped(Exception):
    """The lab was interrupted: the host stops after its current step (and cleans up)."""


def lab_folder(layout: Layout) -> Path:
    """Where the archives and logs of the hosts are kept: ``build/lab/``."""
    return layout.build / "lab"
