"""Building and running the students' exercises inside the disposable VM (never on the instructor's host).

This runs in the guest that :mod:`course.classroom.grading` boots::

    python -m course.classroom.grading_guest PLAN.json RESULTS.json

Each job (a student's variant, or the course's solution) runs as a user of its own, uid
``FIRST_UID + N`` for the plan's job N (no ``/etc/passwd`` entry needed: the ids are set as
numbers, see :func:`confine`), in a folder of its own that root makes before the job (an unpredictable name,
owned by that uid, mode 0700) and fills with a copy of the job's sources (with the course's
headers) taken by root from the shared, read-only host files, which the job's uid cannot read.
The compiler (an ``#include`` of a secret) and the program run as that uid, in a mount
namespace of their own where the course's checkout (the solutions' sources among its files)
is hidden under an empty, read-only tmpfs: no job can read,
write or pre-create another's sources or binaries, and what it writes lands in the guest's
memory. After each job every process of its uid is killed, and the files it left in the shared
temporary folders and its System V objects removed: nothing a job leaves behind reaches the
next. The program gets the exercise's arguments and standard input, timed out and capped as the pipeline runs programs.
A job the helper itself fails on is recorded as that job's failure, with the reason. RESULTS
is rewritten atomically after every job, so a hung VM keeps what was done before it. Outside
the course's VM it refuses to run.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from course.kernel.kernel_guest import in_disposable_vm, outcome_fields
from course.measure.build import CFLAGS
from course.measure.runners import run_on_host
from course.results.store import write_json

#: Job N of a plan runs as this uid plus N (and the same gid): a user of its own, no other job's.
FIRST_UID = 20000

#: The most of a compiler's output kept (the first errors are the useful ones).
COMPILER_LOG_CHARS = 4000

#: The course's checkout, hidden from every job (it holds the solutions' sources).
#: (Where this checkout lies: its value is the builder's, so the API pages leave it out.)
#:
#: :meta hide-value:
CHECKOUT = Path(__file__).resolve().parents[2]  # course/classroom/ is two folders below it

#: The shared folders where a job may leave files behind (removed after it).
SHARED_TEMP = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))


def command(plan: Path, results: Path) -> list[str]:
    """How the VM runs this helper on ``plan`` (the course's own Python, at the same path in the guest)."""
    return [sys.executable, "-m", "course.classroom.grading_guest", str(plan), str(results)]


def job_uid(number: int) -> int:
    return FIRST_UID + number


#: What confine() asks of the kernel (linux/sched.h, linux/mount.h, linux/prctl.h).
_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_REC, _MS_PRIVATE = 1, 1 << 14, 1 << 18
_PR_SET_NO_NEW_PRIVS = 38


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _checked(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def confine(uid: int, hidden: Path = CHECKOUT) -> Callable[[], None]:
    """What a job's command does in its child before the exec: run as ``uid``, ``hidden`` covered by an empty tmpfs.

    Root makes the mount in a new mount namespace (private: the helper's view and the host's are
    untouched), then drops its privileges for good: no supplementary group, gid and uid (real,
    effective, saved) ``uid``'s, no capability left, and no new privileges on exec (no set-user-ID
    program gives any back). Done in the child itself, not by ``unshare``, ``sh``, ``mount`` and
    ``setpriv``: four programs fewer a step, each exec read over 9p under emulation. Any step that
    fails raises there, and the command is never run. (No IPC namespace: with one, in one boot, the
    reference solution measured 8 icount ticks cheaper than the same code run after it, cause not
    found; System V objects are removed after the job instead, see :func:`remove_ipc_of`.)
    """
    libc, target = _libc(), os.fsencode(hidden)  # loaded before the fork

    def enter() -> None:
        _checked(libc.unshare(_CLONE_NEWNS), "unshare the mounts")
        private, read_only = ctypes.c_ulong(_MS_REC | _MS_PRIVATE), ctypes.c_ulong(_MS_RDONLY)  # unsigned long flags
        _checked(libc.mount(b"none", b"/", None, private, None), "make the mounts private")
        options = b"mode=0555,size=4k"
        _checked(libc.mount(b"course-hidden", target, b"tmpfs", read_only, options), "hide the checkout")
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        nothing = ctypes.c_ulong(0)
        _checked(libc.prctl(_PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), nothing, nothing, nothing), "no new privileges")

    return enter


def private_folder(base: Path, uid: int) -> Path:
    """A new folder in ``base`` (root's, mode 0711), named unpredictably, owned by ``uid``, mode 0700."""
    folder = Path(tempfile.mkdtemp(prefix="job-", dir=base))
    os.chown(folder, uid, uid)
    return folder


def copy_sources(tree: Path, into: Path, uid: int) -> None:
    """``tree`` copied by root to ``into`` (inside the job's folder), every file then owned by ``uid``."""
    shutil.copytree(tree, into, symlinks=True)
    for path in [into, *into.rglob("*")]:
        os.chown(path, uid, uid, follow_symlinks=False)
        if not path.is_symlink():
            path.chmod(0o700 if path.is_dir() else 0o600)


def processes_of(uid: int) -> list[int]:
    """The processes that have ``uid`` as a real, effective or saved user id."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdecimal():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:  # it ended meanwhile
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").split()[:1] == ["Z"]:  # ended, waiting for its parent: runs nothing
            continue
        if str(uid) in fields.get("Uid", "").split()[:3]:
            found.append(int(entry.name))
    return found


def end_processes(uid: int, rounds: int = 100) -> list[int]:
    """Kill every process of ``uid`` (even one in a session of its own, or forking); those left (none, normally).

    A child that takes that uid sends SIGKILL to every process it may signal (``kill(-1)``):
    all of that uid's and no other; repeated until none is left, so a fork in between is caught.
    """
    for _ in range(rounds):
        if not processes_of(uid):
            return []
        killer = os.fork()
        if killer == 0:  # pragma: no cover - the child
            try:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(killer, 0)
        time.sleep(0.01)
    return processes_of(uid)


def _unescaped(text: str) -> str:
    """A path as /proc/self/mountinfo shows it (a space, a comma or a backslash in octal: ``\\040``), as it is."""
    return re.sub(r"\\([0-7]{3}|.)", lambda m: chr(int(m[1], 8)) if len(m[1]) == 3 else m[1], text)


#: One line of /proc/self/mountinfo: its mount point, its file system type and its options (None where missing).
Mount = tuple[Path, str, str | None]


def mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Mount]:
    """The mounts ``mountinfo`` lists, in its order (a later mount on a point hides an earlier one); none if unread."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        mine, _, theirs = line.partition(" - ")
        fields, about = mine.split(), theirs.split()
        if len(fields) >= 5 and about:
            found.append((Path(_unescaped(fields[4])), about[0], about[2] if len(about) >= 3 else None))
    return found


def written_layer(folder: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> Path:
    """Where every entry a job can make in ``folder`` is listed: the upper layer of the overlay mounted
    there, or ``folder`` itself.

    The guest's /tmp is virtme-ng's overlay of this host's /tmp (beneath, read over uncached 9p) and
    the guest's memory (above, where every write goes). The host's entries are many, and a look at
    one's owner is a round trip to the host: a second or so of emulation per job. What a job made
    can only be above, so the upper layer's list is the one to look through.
    """
    return _written_layer(folder, mounts(mountinfo))


def _written_layer(folder: Path, mounted: list[Mount]) -> Path:
    """:func:`written_layer`, from the mounts read once."""
    upper = None
    for point, kind, options in mounted:  # the last mount on a point is the one seen there
        if options is None or str(point) != str(folder):
            continue
        found = re.search(r"(?:^|,)upperdir=((?:[^,\\]|\\.)*)", options) if kind == "overlay" else None
        upper = Path(_unescaped(found[1])) if found else None
    return upper if upper is not None and upper.is_absolute() and upper.is_dir() else folder


def shared_folders(mountinfo: Path = Path("/proc/self/mountinfo")) -> tuple[Path, ...]:
    """:data:`SHARED_TEMP`, every other file system in memory (tmpfs) that any user may write at its top, and
    every overlay whose upper layer (what the guest wrote, in its memory) can be listed.

    virtme-ng mounts tmpfs on /var/log (and /var/spool/rsyslog, where it is) with tmpfs's own mode, 1777:
    every user's, as /tmp is, though no program thinks of it as a temporary folder. Its overlays over the
    host's /etc, /usr, /var... show the host's folders that every user may write (Ubuntu's /var/crash):
    their upper layers are short lists. An overlay whose upper layer cannot be listed is left out: its
    folder would be the host's whole tree, read over 9p.
    """
    return _shared_folders(mounts(mountinfo))


def _shared_folders(mounted: list[Mount]) -> tuple[Path, ...]:
    """:func:`shared_folders`, from the mounts read once."""
    found = list(SHARED_TEMP)
    for point, kind, _ in mounted:
        if kind == "overlay":
            wanted = _written_layer(point, mounted) != point
        elif kind == "tmpfs":
            try:
                wanted = bool(os.stat(point).st_mode & stat.S_IWOTH)
            except OSError:
                continue
        else:
            continue
        if wanted and point not in found:
            found.append(point)
    return tuple(found)


def remove_files_of(uid: int, folders: tuple[Path, ...] | None = None) -> None:
    """Remove what ``uid`` left in the shared folders (the next job must not find it): ``folders``, by default
    every folder any user may write in (:func:`shared_folders`).

    Not only at their top: a folder that is every user's (the host's ``/tmp/.X11-unix``, seen in the
    guest's overlay, sticky and writable by all) holds a job's files as well, and so does one below a
    folder of root's. Every folder a job could reach (see :func:`_left_by`) is looked through where a
    job's writes land (:func:`written_layer`); what ``uid`` owns is removed through the folder itself.
    /proc/self/mountinfo is read once for all of them.
    """
    mounted = mounts()
    for folder in _shared_folders(mounted) if folders is None else folders:
        found = _left_by(uid, _written_layer(folder, mounted))
        if found is None:  # the layer cannot be listed: the folder itself, then
            found = _left_by(uid, folder) or []
        for relative in found:
            _remove_through(folder, relative, uid)


def _left_by(uid: int, layer: Path) -> list[tuple[str, ...]] | None:
    """What ``uid`` owns in ``layer`` (each as its names from ``layer``; nothing inside what it owns), or None.

    Only the folders that ``uid`` may pass through (search permission as another user, or as the group
    when it is the folder's: a job's gid is its uid) are looked into: a job made nothing below the others.
    """
    try:
        top = os.scandir(layer)
    except OSError:
        return None
    found: list[tuple[str, ...]] = []
    pending = [((), top)]
    while pending:
        names, listing = pending.pop()
        with listing:
            for entry in listing:
                try:
                    about = entry.stat(follow_symlinks=False)
                except OSError:  # gone meanwhile
                    continue
                if about.st_uid == uid:
                    found.append((*names, entry.name))
                    continue
                passable = stat.S_IXGRP if about.st_gid == uid else stat.S_IXOTH
                if stat.S_ISDIR(about.st_mode) and about.st_mode & passable:
                    try:
                        pending.append(((*names, entry.name), os.scandir(entry.path)))
                    except OSError:
                        continue
    return found


def _remove_through(folder: Path, names: tuple[str, ...], uid: int) -> None:
    """Remove ``folder``/``names`` if ``uid`` owns it, never following a link on the way (nor one it is)."""
    try:
        here = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        for name in names[:-1]:
            below = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=here)
            os.close(here)
            here = below
        about = os.stat(names[-1], dir_fd=here, follow_symlinks=False)
        if about.st_uid != uid:
            return
        if stat.S_ISDIR(about.st_mode):
            shutil.rmtree(names[-1], ignore_errors=True, dir_fd=here)
        else:
            os.unlink(names[-1], dir_fd=here)
    except OSError:
        return
    finally:
        os.close(here)


#: System V objects, as /proc lists them, and how ipcrm removes one by its id.
SYSV_IPC = (("shm", "-m"), ("sem", "-s"), ("msg", "-q"))


def remove_ipc_of(uid: int, proc: Path = Path("/proc/sysvipc")) -> None:
    """Remove the System V memory, semaphores and queues ``uid`` owns or made (the next job must not find them)."""
    for kind, flag in SYSV_IPC:
        try:
            lines = (proc / kind).read_text().splitlines()
        except OSError:
            continue
        if not lines:
            continue
        header = lines[0].split()
        for line in lines[1:]:
            row = dict(zip(header, line.split(), strict=False))
            if str(uid) in (row.get("uid"), row.get("cuid")):
                subprocess.run(["ipcrm", flag, row[header[1]]], capture_output=True, check=False)


def compile_source(job: dict, source: Path, binary: Path, uid: int, timeout: float = 300) -> tuple[bool, str]:
    """Compile ``source`` into ``binary`` as ``uid``: (built, the compiler's words)."""
    compiler = [job.get("cc", "cc"), *CFLAGS, "-o", str(binary), str(source), *job.get("libs", [])]
    try:
        finished = subprocess.run(
            compiler,
            capture_output=True,
            text=True,
            errors="backslashreplace",
            timeout=timeout,
            cwd=binary.parent,
            env={**os.environ, "TMPDIR": str(binary.parent), "HOME": str(binary.parent)},
            preexec_fn=confine(uid),  # the helper runs no thread: a fork's child may run Python
        )
    except subprocess.TimeoutExpired:
        return False, f"the compiler did not finish within {timeout:.0f} s"
    log = (finished.stdout + finished.stderr)[:COMPILER_LOG_CHARS]
    return finished.returncode == 0, log


def run_job(job: dict, number: int, base: Path, scratch: Path) -> dict:
    """Build and run job ``number`` as its own uid in its own folder; what it printed comes back as text."""
    uid = job_uid(number)
    home = private_folder(base, uid)
    try:
        copy = home / "src"
        copy_sources(Path(job["tree"]), copy, uid)
        binary = home / "program"
        built, log = compile_source(job, copy / job["source"], binary, uid)
        result = {"id": job["id"], "built": built, "compiler": log.replace(str(copy) + "/", "")}
        if not built:
            return result
        outcome = run_on_host(
            binary,
            tuple(job.get("args", [])),
            job["stdin"],
            scratch,
            float(job.get("timeout", 300)),
            shown_as=job.get("shown_as", ""),
            then=confine(uid),
        )
        return {**result, **outcome_fields(outcome), "seconds": round(outcome.seconds, 3)}
    finally:
        left = end_processes(uid)
        remove_files_of(uid)
        remove_ipc_of(uid)
        shutil.rmtree(home, ignore_errors=True)
        if left:
            raise RuntimeError(f"processes of uid {uid} could not be ended: {left[:5]}")


def run_all(jobs: list[dict], results_path: Path) -> list[dict]:
    """Every job in turn, each a failure of its own if the helper fails on it; RESULTS rewritten after each."""
    base = Path(tempfile.mkdtemp(prefix="course-grade-", dir="/tmp"))  # root's: jobs reach their folder, list nothing
    base.chmod(0o711)
    scratch = Path(
        tempfile.mkdtemp(prefix="course-scratch-", dir="/tmp")
    )  # root's, 0700: a job never reaches its stdin file
    results: list[dict] = []
    try:
        for number, job in enumerate(jobs, start=1):
            print(f"course-guest: [{number}/{len(jobs)}] {job.get('who')} {job.get('exercise')}", flush=True)
            try:
                results.append(run_job(job, number, base, scratch))
            except Exception as error:  # one job's failure, not the whole run's
                reason = f"the grading helper failed on this job: {type(error).__name__}: {error}"[:300]
                results.append({"id": job.get("id"), "helper_error": reason})
            write_json(results_path, {"schema": 1, "jobs": results, "complete": number == len(jobs)})
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m course.classroom.grading_guest PLAN.json RESULTS.json", file=sys.stderr)
        return 2
    if not in_disposable_vm(Path("/proc/cmdline").read_text()):
        print(
            "course.classroom.grading_guest: not in the course's VM; a student's code never runs here", file=sys.stderr
        )
        return 3
    plan, results_path = Path(argv[0]), Path(argv[1])
    run_all(json.loads(plan.read_text()), results_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
