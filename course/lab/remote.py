"""A lab of machines in one command: every host measures itself over SSH, its set comes back here.

For every host at once (a thread each, over Fabric): upload this checkout's committed tree
to a scratch folder, run ``./bootstrap`` and ``invoke run`` there, export the host's set,
download the archive and import it with every check of ``invoke results.import``; then
build the site. What a host sends back (its archive, its output) is untrusted input: the
archive is size-bounded and imported as any archive is, its output is shown only as one
cleaned line. A host that fails, however it fails, is reported and never stops the others.

Host keys are checked against ``known_hosts``; a new one is accepted (and written there)
only with ``accept_new_host_keys``. Each remote step runs under the host's ``timeout``
in a process group of its own, whose number is kept in the scratch folder, so a step that
times out or is interrupted is stopped on the host too; the scratch folder is then removed
unless ``keep``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import math
import os
import re
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from course.kernel.options import KernelOptions
from course.lab.inventory import Host, names
from course.measure.threads import start_threads, wait_for
from course.publish import report
from course.results import archive, fingerprint, store
from course.results.layout import Layout

if TYPE_CHECKING:  # Fabric (and paramiko) load only when a lab runs: `invoke --list` stays quick
    from fabric import Connection

Progress = Callable[[str], None]

# Paramiko logs each failed connection with its traceback; the lab says why in one line instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

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


class _StepFailed(Exception):
    """A step of one host failed; the message is the host's one line."""


class _Stopped(Exception):
    """The lab was interrupted: the host stops after its current step (and cleans up)."""


def lab_folder(layout: Layout) -> Path:
    """Where the archives and logs of the hosts are kept: ``build/lab/``."""
    return layout.build / "lab"


def committed_tree(root: Path, output: Path) -> tuple[str, int]:
    """Write the committed tree (HEAD, without results/) as a .tar.gz; its commit and how many changes stay here."""
    if shutil.which("git") is None:
        raise LabError("the lab uploads the committed tree with git, and git is not installed (apt-get install git)")

    def git(*arguments: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *arguments], capture_output=True, text=True, timeout=120, check=True
            )
        except subprocess.CalledProcessError as error:
            raise LabError(
                f"the lab uploads this checkout's committed tree, and git cannot give it "
                f"(git {arguments[0]}: {error.stderr.strip() or error}); is {root} a git clone with a commit?"
            ) from None
        except subprocess.TimeoutExpired:
            raise LabError(f"git {arguments[0]} took more than 120 s in {root}") from None
        return done.stdout

    commit = git("rev-parse", "--verify", "HEAD").strip()
    output.parent.mkdir(parents=True, exist_ok=True)
    # Committed files only: the hosts measure what the course is, not a half-made edit; never the
    # results (a host makes its own set) nor anything ignored (.venv, build/).
    git("archive", "--format=tar.gz", "-o", str(output), "HEAD", "--", ".", ":(exclude)results")
    changed = len(git("status", "--porcelain", "--untracked-files=no").splitlines())
    return commit, changed


def run_lab(layout: Layout, hosts: list[Host], options: LabOptions, progress: Progress = print) -> LabOutcome:
    """Run the lab on ``hosts``, all at once, importing what comes back; each host's outcome (no site build)."""
    if not hosts:
        raise LabError("no hosts: give --hosts HOST[,HOST...] or --inventory lab.yaml")
    folder = lab_folder(layout)
    folder.mkdir(parents=True, exist_ok=True)
    runs = [HostRun(host, name) for host, name in zip(hosts, names(hosts), strict=True)]
    for run in runs:  # a previous lab's files of the same host would be mistaken for this one's
        for suffix in (".tar.gz", ".log"):
            (folder / f"{run.name}{suffix}").unlink(missing_ok=True)
    tree = folder / f".tree-{secrets.token_hex(4)}.tar.gz"
    own_sets = (fingerprint.set_name(), *(fingerprint.set_name(name) for name in options.own_sets if name))
    refuse_clashes(runs, own_sets, layout.results, options.force)
    say = _Printer(progress, max(len(run.name) for run in runs))
    try:
        commit, changed = committed_tree(layout.root, tree)
        kept_here = f"; {changed} uncommitted changes stay here" if changed else ""
        progress(
            f"lab: {len(runs)} host{'s' if len(runs) > 1 else ''}, the committed tree {commit[:12]} "
            f"({tree.stat().st_size // 1024} KiB{kept_here})"
        )
        slots = threading.Semaphore(options.parallel) if 0 < options.parallel < len(runs) else None
        shared = _Shared(layout, options, tree, own_sets, say, slots=slots)
        jobs = [_HostJob(run, shared) for run in runs]
        finished = _run_all(jobs, shared, options)
    finally:
        tree.unlink(missing_ok=True)
    return LabOutcome(runs, commit, interrupted=not finished)


def kept_venv(folder: str) -> str:
    """Shell words, run in a scratch folder before ``./bootstrap``: its ``.venv`` is the host's kept one.

    ``FOLDER/course-lab-venv`` is made once (at its own path, so its scripts name it, not a
    scratch folder that goes) and linked as ``.venv`` by every run; ``./bootstrap`` then
    reinstalls nothing while requirements.lock and pyproject.toml match the hashes it stamped
    there. Where no virtual environment can be made yet (no python3-venv), ``./bootstrap`` makes
    its own in the scratch folder, as before.
    """
    kept = shlex.quote(f"{folder.rstrip('/')}/{KEPT_VENV}")
    python = "$([ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3)"
    return (
        f"kept={kept}; "
        'if [ ! -x "$kept/bin/python" ]; then rm -rf "$kept"; '
        f'{python} -m venv "$kept" >/dev/null 2>&1 || rm -rf "$kept"; fi; '
        'if [ -x "$kept/bin/python" ]; then ln -s "$kept" .venv; '
        f'sha256sum --check --status .venv/.requirements.lock.sha256 2>/dev/null && echo "{REUSED}"; fi; true'
    )


def refuse_clashes(runs: list[HostRun], own_sets: tuple[str, ...], results: Path, force: bool) -> None:
    """Refuse the lab before anything runs on a host if two hosts would bring one set, a host would bring
    this machine's own set, or a set that is here already (unless ``force``)."""
    seen: dict[str, str] = {}
    for run in runs:
        name, address = run.host.set, run.host.address
        if name is None:  # a host built without a name (the API's): checked when its archive comes
            continue
        if name in seen:
            raise LabError(
                f"{seen[name]} and {address} would both bring set {name!r}; give each host a set of its own "
                "(set: in the inventory)"
            )
        if name in own_sets:
            raise LabError(f"{address} would bring set {name!r}, this machine's own; give the host another set:")
        if not force and (results / name).exists():
            raise LabError(
                f"{address} would bring set {name!r}, which is here already (from an earlier lab?); "
                "pass --force to replace it, or give the host another set:"
            )
        seen[name] = address


def _run_all(jobs: list[_HostJob], shared: _Shared, options: LabOptions) -> bool:
    """A thread per host; Ctrl-C (or SIGTERM) stops every host's step and cleans up; False if it came."""
    finished = start_threads({f"lab-{job.run.name}": job.work for job in jobs})
    try:
        wait_for(finished)
        return True
    except KeyboardInterrupt:
        shared.stop.set()
        shared.say("lab", "interrupted: stopping every host's step and removing its scratch folder ...")
        for job in jobs:
            job.interrupt()
        # Each host cleans up on a new connection, bounded by its own limits; a second Ctrl-C meanwhile
        # does not cut that short (it would leave the hosts' steps running).
        seconds = options.timeouts.connect * 2 + options.timeouts.cleanup + 10
        wait_for(finished, seconds, through_interrupts=True)
        for job in jobs:
            job.remove_partial()
        return False


class _Printer:
    """Progress lines from every host's thread, whole and at once."""

    def __init__(self, progress: Progress, width: int) -> None:
        self.progress, self.width, self.lock = progress, width, threading.Lock()

    def __call__(self, name: str, line: str) -> None:
        with self.lock:
            self.progress(f"lab  {name:<{self.width}}  {line}")
            with contextlib.suppress(AttributeError, ValueError):
                sys.stdout.flush()


@dataclass
class _Shared:
    """What the hosts' threads share: the tree, the options, and the import (one at a time)."""

    layout: Layout
    options: LabOptions
    tree: Path
    own_sets: tuple[str, ...]
    say: _Printer
    stop: threading.Event = field(default_factory=threading.Event)
    import_lock: threading.Lock = field(default_factory=threading.Lock)
    known_hosts_lock: threading.Lock = field(default_factory=threading.Lock)
    noted: set[Path] = field(default_factory=set)  # known_hosts files whose skipped lines were said
    slots: threading.Semaphore | None = None  # --parallel N: hosts at once
    delivered: dict[str, str] = field(default_factory=dict)  # set name -> the host that brought it


class _HostJob:
    """The steps of one host, in its own thread."""

    def __init__(self, run: HostRun, shared: _Shared) -> None:
        self.run, self.shared, self.host = run, shared, run.host
        self.options, self.timeouts = shared.options, shared.options.timeouts
        self.connection: Connection | None = None
        self.scratch: str | None = None
        self.sudo = ""  # "sudo -n " when the login user is not root but may use sudo without a password
        self.root = False
        folder = lab_folder(shared.layout)
        self.run.log = folder / f"{run.name}.log"
        self.local_archive = folder / f"{run.name}.tar.gz"
        self.partial: Path | None = None  # the download under way
        self.lock = threading.Lock()  # the connection, between this host's thread and an interruption
        self.last_output = ""  # the tail of the last step's output
        self.cleaning = False

    # -- the steps ---------------------------------------------------------------------------

    def work(self) -> None:
        started = time.monotonic()
        holding = False
        try:
            holding = self._wait_for_a_slot()
            started = time.monotonic()
            self._step("connect", self._connect)
            self._step("upload", self._upload)
            self._step("bootstrap", self._bootstrap)
            self._step("run", self._measure)
            self._step("export", self._export)
            self._step("download", self._download)
            self._step("import", self._import)
        except _Stopped:
            self.run.failure = f"interrupted after {self.run.step}"
        except Exception as error:  # whatever happens to one host stays with it
            # A step cut short by Ctrl-C fails in whatever way its connection's end makes it fail.
            stopped = self.shared.stop.is_set()
            self.run.failure = f"interrupted during {self.run.step}" if stopped else self._why(error)
            self.shared.say(self.run.name, f"FAILED at {self.run.step}: {self.run.failure}")
        finally:
            self._cleanup()
            if holding:
                assert self.shared.slots is not None
                self.shared.slots.release()
            self.run.seconds = time.monotonic() - started
            if not self.run.failure:
                self.shared.say(self.run.name, f"done in {self.run.seconds:.1f} s")

    def _wait_for_a_slot(self) -> bool:
        """With --parallel N, wait until fewer than N hosts run (Ctrl-C stops the wait); True when a slot is held."""
        slots = self.shared.slots
        if slots is None:
            return False
        if not slots.acquire(blocking=False):
            self.shared.say(self.run.name, f"waiting (--parallel {self.options.parallel}) ...")
            while not slots.acquire(timeout=0.2):
                if self.shared.stop.is_set():
                    raise _Stopped
        return True

    def _step(self, name: str, action: Callable[[], str | None]) -> None:
        if self.shared.stop.is_set():
            raise _Stopped
        self.run.step = name
        started = time.monotonic()
        self.shared.say(self.run.name, f"{name} ...")
        said = action()
        self.shared.say(self.run.name, f"{name}: {time.monotonic() - started:.1f} s" + (f", {said}" if said else ""))

    def _connect(self) -> str:
        self.connection = self._open()
        self.root = self._plain("id -u", self.timeouts.connect).strip() == "0"
        if not self.root and self._succeeds("sudo -n true", self.timeouts.connect):
            self.sudo = "sudo -n "
        base = self.host.folder.rstrip("/")
        template = shlex.quote(f"{base}/course-lab.XXXXXXXX")
        made = self._plain(f"mkdir -p {shlex.quote(self.host.folder)} && mktemp -d {template}", self.timeouts.connect)
        scratch = made.strip()
        # The host's own answer: used in commands (quoted) only if it is the folder asked for.
        if not re.fullmatch(re.escape(base) + r"/course-lab\.[A-Za-z0-9]{8}", scratch):
            raise _StepFailed(f"mktemp on the host answered {_clean(scratch)!r}, not a scratch folder")
        self.scratch = scratch
        who = "as root" if self.root else ("with passwordless sudo" if self.sudo else "without root")
        return f"{who}, scratch folder {scratch}"

    def _upload(self) -> None:
        assert self.connection is not None
        sftp = self.connection.sftp()
        sftp.get_channel().settimeout(self.timeouts.transfer)
        sftp.put(str(self.shared.tree), f"{self.scratch}/{TREE_FILE}")
        self._remote("upload", f"tar -xzf {TREE_FILE} && rm -f {TREE_FILE}", self.timeouts.transfer)

    def _bootstrap(self) -> str:
        if self.host.venv:  # the test seam: an environment already made, so no ./bootstrap (and no PyPI)
            command = f"ln -s {shlex.quote(self.host.venv)} .venv && .venv/bin/invoke setup --check"
            self._remote("bootstrap", command, self.timeouts.bootstrap)
            return f"the existing environment {self.host.venv} (test seam), Debian packages checked"
        try:
            command = f"{kept_venv(self.host.folder)} && ./bootstrap"
            self._remote("bootstrap", command, self.timeouts.bootstrap, privileged=True)
        except _StepFailed as failed:
            if self.root or self.sudo:
                raise
            raise _StepFailed(
                f"{failed}; ./bootstrap installs Debian packages, which needs root: "
                f"connect as root or give {self.connection_user()} passwordless sudo"
            ) from None
        reused = REUSED in self.last_output
        return (
            "./bootstrap "
            + ("as root" if self.root else "with sudo" if self.sudo else "without root")
            + (f", the host's kept environment {self.host.folder.rstrip('/')}/{KEPT_VENV} reused" if reused else "")
        )

    def _measure(self) -> str | None:
        command = [".venv/bin/invoke", "run"]
        if self.options.lessons:
            command += ["--lesson", ",".join(str(number) for number in self.options.lessons)]
        if self.options.kernel_runner:
            command += ["--kernel-runner", self.options.kernel_runner]
        if self.options.acceleration:
            command += ["--acceleration", self.options.acceleration]
        if self.host.set:
            command += ["--set", self.host.set]
        if self.host.label:
            command += ["--label", self.host.label]
        exited = self._remote(
            "run", shlex.join(command), self.timeouts.run, privileged=True, allowed=(RUN_HAD_FAILURES,)
        )
        if exited == RUN_HAD_FAILURES:
            # The set is stored all the same (with its failures): it comes back, and the lab says so.
            self.run.warning = "invoke run reported failures on the host; its set was imported with them"
            return "some steps failed (see the log); the set is kept"
        return None

    def _export(self) -> None:
        command = [".venv/bin/invoke", "results.export", "--output", f"{self.scratch}/{EXPORT_FILE}"]
        if self.host.set:
            command += ["--set", self.host.set]
        self._remote("export", shlex.join(command), self.timeouts.transfer, privileged=True)

    def _download(self) -> str:
        """The host's archive, read with a bound: a host cannot fill this disk."""
        assert self.connection is not None
        sftp = self.connection.sftp()
        sftp.get_channel().settimeout(self.timeouts.transfer)
        remote = f"{self.scratch}/{EXPORT_FILE}"
        found = sftp.stat(remote)
        if not stat.S_ISREG(found.st_mode or 0):  # a FIFO would be read forever, a device without end
            kind = "a FIFO" if stat.S_ISFIFO(found.st_mode or 0) else "not a regular file"
            raise _StepFailed(f"archive rejected: the host's export {remote} is {kind}, not an archive")
        size = found.st_size or 0
        if size > archive.MAX_TOTAL:
            raise _StepFailed(f"archive rejected: the host's archive is {size // archive.MiB} MiB, over a set's limit")
        partial = self.local_archive.with_name(f".{self.local_archive.name}.{secrets.token_hex(4)}.part")
        self.partial = partial
        try:
            with sftp.open(remote, "rb") as source, partial.open("wb") as target:
                copied = 0
                while chunk := source.read(DOWNLOAD_CHUNK):
                    copied += len(chunk)
                    if copied > archive.MAX_TOTAL:  # it grew while we read
                        raise _StepFailed("archive rejected: the host's archive grew past a set's limit")
                    target.write(chunk)
            os.replace(partial, self.local_archive)
        finally:
            partial.unlink(missing_ok=True)
        self.run.archive = self.local_archive
        return f"{size / 1024:.0f} KiB"

    def _import(self) -> str:
        """Every check of `results.import`, then the lab's own: the set's name is the one expected."""
        layout, own = self.shared.layout, self.shared.own_sets
        # First into a scratch results folder: the archive is read and checked whole, and its set's
        # name is known (to be checked below, with the lab's own words) before anything touches results/.
        with tempfile.TemporaryDirectory(prefix=".check-", dir=lab_folder(layout)) as staging:
            name = archive.import_set(self.local_archive, Path(staging), own_set=()).name
        self.run.set_name = name
        if self.host.set and name != self.host.set:
            raise _StepFailed(f"archive rejected: it holds set {name!r}, not {self.host.set!r} as the inventory says")
        if name in own:
            raise _StepFailed(
                f"archive rejected: its set {name!r} has this machine's own set name (the same CPU, kernel and "
                "virtualization); name the host's set in an inventory (set: ...)"
            )
        if self.options.force and name != self.host.set and (layout.results / name).exists():
            raise _StepFailed(
                f"archive rejected: set {name!r} is here already, and --force replaces only the set the inventory "
                f"assigns a host (set: {name})"
            )
        with self.shared.import_lock:
            other = self.shared.delivered.get(name)
            if other:
                raise _StepFailed(
                    f"archive rejected: set {name!r} came from {other} too; name each host's set in an inventory"
                )
            target = archive.import_set(self.local_archive, layout.results, force=self.options.force, own_set=own)
            self.shared.delivered[name] = self.host.address
        self.run.imported = True
        lessons = store.load_set(target).lessons
        measured = [content for lesson, content in lessons.items() if re.match(r"\d\d-", lesson)]
        self.run.lessons = len(measured)
        self.run.lesson_failures = sum(len(content.get("failures", [])) for content in measured)
        return f"set {name}, {self.run.lessons} lesson{'s' if self.run.lessons != 1 else ''}"

    def _cleanup(self) -> None:
        """Stop what the last step left on the host, remove the scratch folder (unless kept), disconnect."""
        with self.lock:  # from here on, an interruption leaves this host's connection alone
            self.cleaning, cut = True, self.connection
        if cut is None:
            return
        try:
            if self.shared.stop.is_set():  # the step's connection was cut (or is being cut): a fresh one
                with contextlib.suppress(Exception):
                    cut.close()
                self.connection = self._open()
            if self.scratch is not None:
                command = _stop_step(f"{self.scratch}/{PID_FILE}")
                command += "true" if self.options.keep else f"rm -rf {shlex.quote(self.scratch)}"
                self._plain(f"{self.sudo}sh -c {shlex.quote(command)}", self.timeouts.cleanup)
                if self.options.keep:
                    self.shared.say(self.run.name, f"kept the scratch folder {self.host.host}:{self.scratch}")
        except Exception as error:
            problem = f"cleanup failed, {self.host.host}:{self.scratch} may be left: {self._why(error)}"
            self.run.failure = f"{self.run.failure}; {problem}" if self.run.failure else problem
        finally:
            with contextlib.suppress(Exception):
                self.connection.close()

    def remove_partial(self) -> None:
        """A download cut short leaves nothing here (its thread removes it too, if it gets the time)."""
        if self.partial is not None:
            self.partial.unlink(missing_ok=True)

    def interrupt(self) -> None:
        """From the main thread on Ctrl-C: cut the connection, so the current step ends now (not the clean-up's)."""
        with self.lock:
            connection = None if self.cleaning else self.connection
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    # -- talking to the host -----------------------------------------------------------------

    def _open(self) -> Connection:
        from fabric import Config, Connection

        limit = int(self.timeouts.connect)
        kwargs: dict[str, Any] = {"banner_timeout": limit, "auth_timeout": limit, "channel_timeout": limit}
        if self.host.key:  # only that key: no agent, no ~/.ssh/id_* tried before it
            kwargs.update(key_filename=[str(self.host.key)], look_for_keys=False, allow_agent=False)
        connection = Connection(
            self.host.host,
            user=self.host.user,
            port=self.host.port,
            connect_timeout=limit,
            connect_kwargs=kwargs,
            config=Config(overrides={"run": {"in_stream": False}}),  # never read this terminal
        )
        # Fabric accepts any host key by default; the lab checks them as ssh does.
        client = connection.client
        revoked = self._load_known_hosts(client)
        client.set_missing_host_key_policy(self._host_key_policy(revoked))
        try:
            connection.open()
            assert connection.transport is not None
            _refuse_revoked(connection.transport.get_remote_server_key(), self.host.host, revoked)
        except BaseException:
            client.close()  # a refused key leaves paramiko's transport open (and the host's sshd waiting)
            raise
        connection.transport.set_keepalive(30)  # a host that vanishes mid-run is noticed
        return connection

    def _known_hosts_files(self) -> list[Path]:
        if self.options.known_hosts:
            return [self.options.known_hosts]
        return [Path("~/.ssh/known_hosts").expanduser(), Path("/etc/ssh/ssh_known_hosts")]

    def _load_known_hosts(self, client: Any) -> dict[str, Path]:
        """Load the known hosts' plain lines into ``client``; the keys marked ``@revoked`` (base64 -> file).

        Paramiko reads no marker line (it fails on them all): ``@revoked`` is honoured here,
        ``@cert-authority`` skipped with a note (the lab checks plain host keys only).
        """
        revoked: dict[str, Path] = {}
        for known in self._known_hosts_files():
            if not known.is_file():
                continue
            plain, authorities = [], 0
            for line in known.read_text(encoding="utf-8", errors="replace").splitlines():
                fields = line.split()
                if not fields or not fields[0].startswith("@"):
                    plain.append(line)
                elif fields[0] == "@revoked" and len(fields) >= 4:
                    revoked[fields[3]] = known
                else:
                    authorities += 1
            if authorities:
                with self.shared.known_hosts_lock:
                    if known not in self.shared.noted:
                        self.shared.noted.add(known)
                        self.shared.say(
                            "lab",
                            f"note: skipped {authorities} @cert-authority line{'s' if authorities > 1 else ''} of "
                            f"{known}: the lab checks plain host keys only (add each host's key: ssh-keyscan)",
                        )
            with tempfile.NamedTemporaryFile("w", prefix="known_hosts.", encoding="utf-8") as copy:
                copy.write("\n".join(plain) + "\n")
                copy.flush()
                client.load_system_host_keys(copy.name)
        return revoked

    def _host_key_policy(self, revoked: dict[str, Path]) -> Any:
        import paramiko

        shared, options, say, name = self.shared, self.options, self.shared.say, self.run.name
        known = self._known_hosts_files()[0]

        class Verified(paramiko.MissingHostKeyPolicy):
            def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
                _refuse_revoked(key, hostname, revoked)
                what = f"{key.get_name()} SHA256:{_fingerprint(key)}"
                if not options.accept_new_host_keys:
                    raise _UnknownHostKey(f"host key {what} of {hostname} is not in {known}")
                with shared.known_hosts_lock:
                    known.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
                    descriptor = os.open(known, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                    with os.fdopen(descriptor, "a") as stream:
                        stream.write(line)
                say(name, f"accepted the new host key {what} of {hostname}, added to {known}")

        return Verified()

    def _plain(self, command: str, seconds: float) -> str:
        """A short command outside the scratch folder; its output."""
        result = self._short(command, seconds)
        if result.exited != 0:
            raise _StepFailed(f"{self.run.step}: `{command}` failed on the host: {_last_line(result)}")
        return result.stdout

    def _succeeds(self, command: str, seconds: float) -> bool:
        return self._short(command, seconds).exited == 0

    def _short(self, command: str, seconds: float) -> _Answer:
        answer = self._exec(command, seconds)
        self._log(command, answer)
        return answer

    def _exec(self, command: str, seconds: float) -> _Answer:
        """Run ``command`` on the host; its exit status and the last :data:`TAIL_BYTES` of each of its outputs.

        Read as it arrives and trimmed as it is read: however much the host sends, this side
        keeps a bounded tail (and reads in time linear in what arrives).
        """
        if self.connection is None or not self.connection.is_connected:
            self.connection = self._open()  # the clean-up after an interruption, on a connection of its own
        assert self.connection.transport is not None
        channel = self.connection.transport.open_session(timeout=self.timeouts.connect)
        try:
            channel.exec_command(command)
            channel.shutdown_write()
            out, err = _Tail(), _Tail()
            deadline = time.monotonic() + seconds
            exited_at: float | None = None
            while True:
                if channel.recv_ready():
                    out.add(channel.recv(32768))
                elif channel.recv_stderr_ready():
                    err.add(channel.recv_stderr(32768))
                elif channel.closed or (channel.eof_received and channel.exit_status_ready()):
                    break
                elif exited_at is not None and time.monotonic() > exited_at + DRAIN_SECONDS:
                    break  # something it left holds its output open: what came is enough
                elif time.monotonic() > deadline:
                    raise _HostSilent(seconds)
                else:
                    if exited_at is None and channel.exit_status_ready():
                        exited_at = time.monotonic()
                    time.sleep(0.02)
            if not channel.exit_status_ready():
                raise EOFError("the connection closed before the command ended")
            return _Answer(channel.recv_exit_status(), out.text(), err.text())
        finally:
            channel.close()

    def _remote(
        self, step: str, command: str, seconds: float, privileged: bool = False, allowed: tuple[int, ...] = ()
    ) -> int:
        """``command`` in the scratch folder, for at most ``seconds``, in a process group of its own.

        ``timeout`` makes the group (its pid is the group's number, kept in the scratch folder for
        the clean-up); when the step ends, however it ends, whatever it left running in its group
        is killed at once, so nothing outlives its step. Its output goes to ``.lab-<step>.out``
        there, of which the last :data:`TAIL_BYTES` come back.
        """
        assert self.connection is not None and self.scratch is not None
        limit = _seconds(seconds)
        group, output = shlex.quote(PID_FILE), shlex.quote(f".lab-{step}.out")
        inner = (
            f"cd {shlex.quote(self.scratch)} || exit 1\n"
            f"timeout -k {KILL_GRACE} {limit} sh -c {shlex.quote(command)} >{output} 2>&1 </dev/null & step=$!\n"
            f"echo $step > {group}\n"
            "wait $step; status=$?\n"
            f"{_KILL_GROUP.format(signal='KILL', group='$step')}\n"
            f"rm -f {group}\n"
            f"size=$(wc -c < {output})\n"
            f'[ "$size" -gt {TAIL_BYTES} ] && echo "[$((size - {TAIL_BYTES})) bytes before these are in '
            f'{self.scratch}/.lab-{step}.out on the host]"\n'
            f"tail -c {TAIL_BYTES} {output}\n"
            "exit $status"
        )
        prefix = self.sudo if privileged else ""
        result = self._exec(f"{prefix}sh -c {shlex.quote(inner)}", float(limit) + KILL_GRACE + LOCAL_MARGIN)
        self._log(command, result)
        self.last_output = result.stdout
        if result.exited in TIMED_OUT:
            raise _StepFailed(f"{step} timed out after {limit} s (stopped on the host)")
        if result.exited != 0 and result.exited not in allowed:
            raise _StepFailed(f"{step} failed (exit {result.exited}): {_last_line(result)}")
        return result.exited

    def _log(self, command: str, result: _Answer) -> None:
        """Everything the host printed, cleaned, in build/lab/<name>.log (the summary shows one line)."""
        assert self.run.log is not None
        with self.run.log.open("a", encoding="utf-8") as log:
            log.write(f"$ {command}\n(exit {result.exited})\n{_clean(result.stdout, keep_lines=True)}")
            if result.stderr:
                log.write(f"--- stderr ---\n{_clean(result.stderr, keep_lines=True)}")
            log.write("\n")

    def _why(self, error: BaseException) -> str:
        """One line saying why this host failed."""
        import paramiko

        step, host, limit = self.run.step, self.host, self.timeouts.connect
        if isinstance(error, _StepFailed | _UnknownHostKey):
            hint = (
                "; check it, then add it (ssh-keyscan) or pass --accept-new-host-keys"
                if isinstance(error, _UnknownHostKey) and "@revoked" not in str(error)
                else ""
            )
            return str(error) + hint
        if isinstance(error, _HostSilent):
            return f"{step}: the host stopped answering for {error.seconds:g} s"
        if isinstance(error, archive.ArchiveError):
            return f"archive rejected: {error}"
        if isinstance(error, paramiko.BadHostKeyException):
            return (
                f"host key differs from the one known for {host.host}: refused (if the host was reinstalled, "
                f"remove its old key: ssh-keygen -R '[{host.host}]:{host.port}')"
            )
        if isinstance(error, paramiko.AuthenticationException):
            how = f" with key {host.key}" if host.key else ""
            return f"login refused: the host refused user {self.connection_user()}{how} ({error})"
        if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
            return f"unreachable: nothing answers on port {host.port} (connection refused)"
        if isinstance(error, TimeoutError) and step in ("upload", "download"):
            return f"{step} timed out after {self.timeouts.transfer:g} s (the host sent nothing for that long)"
        if isinstance(error, TimeoutError):
            return f"unreachable: no answer within {limit:g} s"
        if isinstance(error, socket.gaierror):
            return f"unreachable: unknown host name {host.host!r} ({_clean(error.strerror or str(error))})"
        # Paramiko's words for a port that never shakes hands: no banner, or a negotiation that ran
        # out of time (then it says "No existing session").
        silent = "banner" in str(error) or "No existing session" in str(error)
        if isinstance(error, paramiko.SSHException) and self.connection is None and silent:
            return f"unreachable: no SSH server answered on port {host.port} within {limit:g} s"
        if isinstance(error, OSError | paramiko.SSHException | EOFError):
            return f"{step}: {type(error).__name__}: {_clean(str(error))}"
        return f"{step}: unexpected {type(error).__name__}: {_clean(str(error))} (a bug of the lab: please report it)"

    def connection_user(self) -> str:
        return self.connection.user if self.connection is not None else (self.host.user or "(the local user)")


#: A signal to a whole process group, in words that dash (Debian's sh) and bash both take:
#: dash reads ``kill -TERM -- -PGID`` as a bad number, ``kill -s TERM -- -PGID`` as meant.
_KILL_GROUP = 'kill -s {signal} -- "-{group}" 2>/dev/null'


def _stop_step(pid_file: str) -> str:
    """Shell words that stop the process group of an interrupted step (TERM, then KILL after 2 s), if any is left.

    The number comes from a file in the scratch folder: used only if it is a number above 1
    (``kill -- -1`` would be every process of the user).
    """
    group = "$group"
    return (
        f"group=$(cat {shlex.quote(pid_file)} 2>/dev/null); "
        'case "$group" in ""|*[!0-9]*|0|1) group= ;; esac; '
        f'if [ -n "$group" ] && {_KILL_GROUP.format(signal="TERM", group=group)}; then '
        f"i=0; while [ $i -lt 20 ] && {_KILL_GROUP.format(signal='0', group=group)}; do sleep 0.1; i=$((i + 1)); done; "
        f"{_KILL_GROUP.format(signal='KILL', group=group)}; fi; "
    )


def _seconds(value: float) -> str:
    """A limit as ``timeout`` takes it and the lab says it: ``90``, ``0.5``."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


class _UnknownHostKey(Exception):
    """A host whose key is not in known_hosts, and no permission to add it."""


class _HostSilent(Exception):
    """A command on the host did not end within its limit (and the host said nothing more)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no end within {seconds:g} s")
        self.seconds = seconds


@dataclass(frozen=True)
class _Answer:
    """A command's exit status and the tails of its outputs."""

    exited: int
    stdout: str
    stderr: str


#: What this side keeps of a command's output: the host's tail and the line that says where the rest is.
_KEPT = TAIL_BYTES + 4096


class _Tail:
    """The last :data:`TAIL_BYTES` (and a line) of a stream, kept as it arrives; what came before is counted."""

    def __init__(self) -> None:
        self.kept, self.dropped = bytearray(), 0

    def add(self, data: bytes) -> None:
        self.kept += data
        if len(self.kept) > 2 * _KEPT:  # trimmed now and then, not at every chunk: linear time
            cut = len(self.kept) - _KEPT
            del self.kept[:cut]
            self.dropped += cut

    def text(self) -> str:
        if len(self.kept) > _KEPT:
            self.dropped += len(self.kept) - _KEPT
            del self.kept[: len(self.kept) - _KEPT]
        text = self.kept.decode("utf-8", "backslashreplace")
        return f"[{self.dropped} bytes before these not kept]\n{text}" if self.dropped else text


def _refuse_revoked(key: Any, hostname: str, revoked: dict[str, Path]) -> None:
    if key.get_base64() in revoked:
        raise _UnknownHostKey(
            f"host key {key.get_name()} SHA256:{_fingerprint(key)} of {hostname} is marked @revoked in "
            f"{revoked[key.get_base64()]}: refused"
        )


def _fingerprint(key: Any) -> str:
    """The SHA256 fingerprint ssh shows (``ssh-keygen -lf``)."""
    return base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _clean(text: str, keep_lines: bool = False, limit: int = 300) -> str:
    """A host's text as the terminal and the log show it: every control or invisible character escaped.

    Lines are split at newlines only: a carriage return is shown (``\\r``), never obeyed, so
    it cannot hide the text before it.
    """
    if keep_lines:
        return "\n".join(report.printable(line) for line in text.removesuffix("\n").split("\n")) + (
            "\n" if text else ""
        )
    cleaned = report.printable(" ".join(part for part in re.split(r"[ \t\n]+", text) if part))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def _last_line(result: _Answer) -> str:
    """The host's last words: the last line of its error output, else of its output."""
    for text in (result.stderr, result.stdout):
        lines = [line for line in text.split("\n") if line.strip()]
        if lines:
            return _clean(lines[-1])
    return "(it printed nothing)"


def summary(outcome: LabOutcome, layout: Layout) -> str:
    """The table printed at the end: host, set, lessons, failures, time, the archive kept here."""
    rows = []
    for run in outcome.hosts:
        kept = run.archive
        if kept is not None and kept.is_relative_to(layout.root):
            kept = kept.relative_to(layout.root)
        rows.append(
            [
                run.host.address,
                run.set_name or run.host.set or "-",
                str(run.lessons) if run.imported else "-",
                str(run.lesson_failures) if run.imported else "-",
                f"{run.seconds:.1f} s",
                str(kept) if kept else "-",
                run.result,
            ]
        )
    return report.table(["host", "set", "lessons", "failures", "time", "archive", "result"], rows)
