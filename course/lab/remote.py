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

import contextlib
import logging
import os
import re
import secrets
import shlex
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from course.lab.inventory import Host, names
from course.lab.options import (
    DOWNLOAD_CHUNK,
    EXPORT_FILE,
    KEPT_VENV,
    PID_FILE,
    REUSED,
    RUN_HAD_FAILURES,
    TREE_FILE,
    HostRun,
    LabError,
    LabOptions,
    LabOutcome,
    StepFailed,
    Stopped,
    lab_folder,
)
from course.lab.ssh import SshSession, cleaned, stop_step
from course.lab.upload import committed_tree, kept_venv
from course.measure.threads import start_threads, wait_for
from course.publish import report
from course.results import archive, fingerprint, store
from course.results.layout import Layout

if TYPE_CHECKING:  # Fabric (and paramiko) load only when a lab runs: `invoke --list` stays quick
    from fabric import Connection

Progress = Callable[[str], None]

# Paramiko logs each failed connection with its traceback; the lab says why in one line instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


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


class _HostJob(SshSession):
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
        except Stopped:
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
                    raise Stopped
        return True

    def _step(self, name: str, action: Callable[[], str | None]) -> None:
        if self.shared.stop.is_set():
            raise Stopped
        self.run.step = name
        started = time.monotonic()
        self.shared.say(self.run.name, f"{name} ...")
        said = action()
        self.shared.say(self.run.name, f"{name}: {time.monotonic() - started:.1f} s" + (f", {said}" if said else ""))

    def _connect(self) -> str:
        self.connection = self._open()
        base = self.host.folder.rstrip("/")
        template = shlex.quote(f"{base}/course-lab.XXXXXXXX")
        # Who logs in and the scratch folder in one command: one round trip and one start of the user's shell.
        made = f"id -u && mkdir -p {shlex.quote(self.host.folder)} && mktemp -d {template}"
        answer = self._plain(made, self.timeouts.connect).strip().split("\n")  # the last two lines (rc files may print)
        self.root = len(answer) > 1 and answer[-2].strip() == "0"
        if not self.root and self._succeeds("sudo -n true", self.timeouts.connect):
            self.sudo = "sudo -n "
        scratch = answer[-1].strip()
        # The host's own answer: used in commands (quoted) only if it is the folder asked for.
        if not re.fullmatch(re.escape(base) + r"/course-lab\.[A-Za-z0-9]{8}", scratch):
            raise StepFailed(f"mktemp on the host answered {cleaned(scratch)!r}, not a scratch folder")
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
        except StepFailed as failed:
            if self.root or self.sudo:
                raise
            raise StepFailed(
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
            raise StepFailed(f"archive rejected: the host's export {remote} is {kind}, not an archive")
        size = found.st_size or 0
        if size > archive.MAX_TOTAL:
            raise StepFailed(f"archive rejected: the host's archive is {size // archive.MiB} MiB, over a set's limit")
        partial = self.local_archive.with_name(f".{self.local_archive.name}.{secrets.token_hex(4)}.part")
        self.partial = partial
        try:
            with sftp.open(remote, "rb") as source, partial.open("wb") as target:
                copied = 0
                while chunk := source.read(DOWNLOAD_CHUNK):
                    copied += len(chunk)
                    if copied > archive.MAX_TOTAL:  # it grew while we read
                        raise StepFailed("archive rejected: the host's archive grew past a set's limit")
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
            raise StepFailed(f"archive rejected: it holds set {name!r}, not {self.host.set!r} as the inventory says")
        if name in own:
            raise StepFailed(
                f"archive rejected: its set {name!r} has this machine's own set name (the same CPU, kernel and "
                "virtualization); name the host's set in an inventory (set: ...)"
            )
        if self.options.force and name != self.host.set and (layout.results / name).exists():
            raise StepFailed(
                f"archive rejected: set {name!r} is here already, and --force replaces only the set the inventory "
                f"assigns a host (set: {name})"
            )
        with self.shared.import_lock:
            other = self.shared.delivered.get(name)
            if other:
                raise StepFailed(
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
                command = stop_step(f"{self.scratch}/{PID_FILE}")
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
