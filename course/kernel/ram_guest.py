"""A guest that repeats itself: every kernel lesson under emulation (``tcg-icount``, ``tcg``), booted from memory alone.

Two virtme-ng boots of one kernel never quite repeat each other: the guest reads its programs,
its Python and its results over 9p from the host, each answer arriving when the host gets to
it, so the guest's clock, its random pool and its allocators are left in another state by every
boot. A server's request then costs a few instructions more or less from run to run (measured:
medians up to 70 apart, within one boot as well as across two). A guest whose init, programs
and modules all come from an initramfs, with no device but its serial console, has no such
input: with QEMU's clock jumping over idle time instead of following the host's
(``sleep=off,align=off``), its random numbers seeded (``-seed``) and its clock starting at a
fixed date (``-rtc``), two boots print the same console byte for byte.

Every job of a kernel lesson runs here (:func:`suitable`): a program with its standard input and
open files of each kind, a module loaded with each kind of standard input, a server module with
its client, a program traced with ftrace's function_graph. The guest's init is a shell script
(busybox, from the host: ``apt-get install busybox-static``); a small static launcher
(:mod:`course.kernel.guest_launcher`) opens each kind of file as the course's Python does
elsewhere. Each job's output comes back on the console, base64-encoded between markers, as soon
as it ends. Its files (the small file a job reads) lie in the job's own ``/tmp``, a tmpfs the init mounts
for it, where a virtme-ng guest's ``/tmp`` is an overlay over the host's folder.

Under plain ``tcg`` (the default where KVM does not work) the same guest runs without ``-icount``
(:data:`TCG_OPTIONS`): its clock follows the host's, so its figures are emulated ticks that move from
run to run, but it starts in about half the time of a virtme-ng boot (no udev, no 9p) and keeps what
costs nothing to fix (random seed, start date). virtme-ng stays for ``kvm`` and ``invoke vm``'s shell.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from course.kernel import guest_launcher, kernel_guest, vm
from course.kernel.guest_hardware import DEFAULT as DEFAULT_HARDWARE
from course.kernel.guest_hardware import GuestHardware
from course.kernel.kernel_build import GuestKernel
from course.measure.runners import STDIN_SHOWN
from course.results import code_parts
from course.results.layout import Layout

#: QEMU's options that make a boot repeat itself (provenance: stored with the figures as ``qemu_options``).
ICOUNT_OPTIONS = ("-icount", "shift=0,sleep=off,align=off", "-seed", "1", "-rtc", "base=2024-01-01T00:00:00,clock=vm")

#: Plain TCG's options: no instruction count (the guest's clock is the host's), the rest of what repeats kept.
TCG_OPTIONS = ("-seed", "1", "-rtc", "base=2024-01-01T00:00:00,clock=vm")

#: QEMU's options by acceleration: the accelerations whose kernel lessons boot from memory.
QEMU_OPTIONS = {"tcg-icount": ICOUNT_OPTIONS, "tcg": TCG_OPTIONS}


def described(acceleration: str = "tcg-icount") -> str:
    """What the guest is, beside its kernel and CPU model: stored with the figures."""
    return "initramfs guest (busybox init, no host file system), QEMU " + " ".join(QEMU_OPTIONS[acceleration])


DESCRIBED = described()

#: Where the host's static busybox is looked for.
BUSYBOX_PATHS = (Path("/bin/busybox"), Path("/usr/bin/busybox"))

#: The lines that carry the guest's files back: ``@@course <job> <name> begin`` ... ``end``.
MARK = re.compile(r"^@@course (\d+|guest) ([a-z_]+) (begin|end)$")

#: Job N's programs run as uid and gid ``JOB_UID_BASE + N`` (course.kernel.guest_launcher drops to it): a user of
#: their own, who owns nothing in the guest, so that one lesson's (or a student's) program can change neither the
#: tools and files the guest's init runs, nor another job's programs or records.
JOB_UID_BASE = 1000

#: What the guest's /etc/hostname holds.
GUEST_HOSTNAME = "course-guest"

#: At most this much of each file a job wrote comes back (base64 makes it a third more): the console
#: as a whole is cut at course.measure.runners.OUTPUT_LIMIT_BYTES (4 MiB), and one big file must not lose the rest.
#: A job's programs cannot write more than one byte past it (the launcher's RLIMIT_FSIZE): the guest reads back
#: that byte too, and the host says the file was cut (:data:`CUT`).
FILE_LIMIT_BYTES = guest_launcher.RECORD_LIMIT_BYTES

#: Where :func:`read_back` lists a job's files that passed :data:`FILE_LIMIT_BYTES` (space-separated): a name no
#: file the init records can have (:data:`MARK`).
CUT = "(cut)"

#: How long insmod and rmmod may take in the guest, and a server's client when its job names no timeout.
MODULE_SECONDS = 120
CLIENT_SECONDS = 300

#: Where the guest mounts ftrace's file system (kernel_guest.TRACEFS), and the most of a trace read back.
TRACEFS = str(kernel_guest.TRACEFS)
TRACE_LIMIT_BYTES = FILE_LIMIT_BYTES - 1

#: The guest's files read back for its provenance (tables in /proc, as kernel_guest reads them).
GUEST_FILES = ("release", "version", "cpuinfo")


#: The course's own code that shapes what the guest runs (its /init, what its initramfs holds and how it is
#: packed, QEMU's options, which jobs it gets): among the sources of its figures (course.results.code_parts),
#: so that a change there shows them stale, as a change of a program of code/ does.
GUEST_CODE = {
    "course/kernel/ram_guest.py": (
        "ICOUNT_OPTIONS",
        "BUSYBOX_PATHS",
        "JOB_UID_BASE",
        "GUEST_HOSTNAME",
        "FILE_LIMIT_BYTES",
        "TRACEFS",
        "TRACE_LIMIT_BYTES",
        "MODULE_SECONDS",
        "CLIENT_SECONDS",
        "suitable",
        "busybox",
        "libraries",
        "init_script",
        "_seconds",
        "_title",
        "_launch",
        "_trace_lines",
        "make_initramfs",
        "_mode",
        "_copy_stripped",
        "qemu_command",
        "lessons_in_memory",
        "run_jobs",
        "_boot",
    ),
    "course/kernel/memory_boot.py": ("boot_in_memory", "memory_boots"),
    "course/kernel/kernel_guest.py": ("VM_MARK", "TRACEFS", "TRACE_OPTIONS"),
    "course/kernel/guest_launcher.py": (
        "KINDS",
        "FILE_TEXT",
        "FILE_PATH",
        "CFLAGS",
        "SOURCE",
        "SCRATCH_PATH",
        "RECORD_LIMIT_BYTES",
        "_c_string",
        "compiled",
        "_compile",
    ),
}


#: The same under plain TCG: its own options, command and entry points.
GUEST_CODE_TCG = {
    **GUEST_CODE,
    "course/kernel/ram_guest.py": (
        *(name for name in GUEST_CODE["course/kernel/ram_guest.py"] if name not in ("ICOUNT_OPTIONS", "run_jobs")),
        "TCG_OPTIONS",
        "tcg_command",
        "run_tcg_jobs",
    ),
}


def guest_code_sources(acceleration: str = "tcg-icount") -> dict[str, str]:
    """The digests of :data:`GUEST_CODE` (:data:`GUEST_CODE_TCG`) as they are now, by source key (``path::names``)."""
    found = {}
    code = GUEST_CODE_TCG if acceleration == "tcg" else GUEST_CODE
    for relative, names in code.items():
        source_key = code_parts.key(relative, names)
        digest = code_parts.current(code_parts.CODE_ROOT, source_key)
        if digest is not None:
            found[source_key] = digest
    return found


class RamGuestError(RuntimeError):
    """The initramfs guest cannot be made here; the message says what is missing."""


def suitable(job: dict) -> bool:
    """A job the initramfs guest runs: every kind of the kernel lessons', with kinds of file the launcher opens."""
    kinds = [job.get("stdin", "devnull"), *job.get("files", ())]
    return all(kind in guest_launcher.KINDS for kind in kinds)


def busybox() -> Path:
    """The host's busybox, statically linked (the guest has no library of its own for it)."""
    for path in BUSYBOX_PATHS:
        if path.is_file() and b"statically linked" in _file_type(path):
            return path
    raise RamGuestError("no static busybox for the initramfs guest; install it with: apt-get install busybox-static")


def _file_type(path: Path) -> bytes:
    try:
        return subprocess.run(["file", "-b", str(path)], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return b""


def libraries(binary: Path) -> list[Path]:
    """The shared libraries a host binary loads (the guest runs the same Debian user space)."""
    listed = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30)
    found = []
    for line in listed.stdout.splitlines():
        if "not found" in line.partition("=>")[2]:
            # Skipped, the program would only fail in the guest (exit 127) with nothing said on the host.
            raise RamGuestError(
                f"{binary.name} needs {line.partition('=>')[0].strip()}, which the host does not have: "
                "install the library (or relink the program) before booting the guest"
            )
        path = line.split("=>")[-1].split("(")[0].strip()
        if path.startswith("/"):
            found.append(Path(path))
    return found


def init_script(jobs: list[dict]) -> str:
    """The guest's /init: every job in order, each under its timeout, its files printed as soon as it ends.

    The init is root, and so are the module loads and the trace; each job's programs run as a user of its
    own (:data:`JOB_UID_BASE`), who can write only in /tmp: a tmpfs mounted afresh for each job and unmounted
    after it, so that nothing a job leaves there (a tree too deep for ``rm -rf`` included) reaches the next.
    What the init records of job N lies in ``/out/N``, root's alone: the program's output goes there through
    descriptors the init opened.
    """
    q = shlex.quote
    scratch = Path(guest_launcher.SCRATCH_PATH).name
    lines = [
        "#!/bin/busybox sh",
        "/bin/busybox --install -s /bin",
        "mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev",
        "mkdir -p /dev/pts; mount -t devpts devpts /dev/pts",  # the launcher's pseudo-terminals
        # No link a job leaves in /tmp leads root's writes elsewhere, nor a hard link to root's files in it.
        "echo 1 >/proc/sys/fs/protected_symlinks; echo 1 >/proc/sys/fs/protected_hardlinks",
        "dmesg -n 1",  # the kernel's messages stay in its log: none cuts into the files printed
        "ip link set lo up",
        # Each job's own /tmp, the launcher's scratch folder (root's) in it; a guest that cannot make it stops there,
        # saying so, rather than run the job where the one before wrote.
        f"fresh() {{ mount -t tmpfs -o mode=1777 tmp /tmp && mkdir -m 755 /tmp/{scratch} && return",
        '  echo "course-guest: no fresh /tmp for job $1"; poweroff -f; }',
        # Whatever a job left running is killed first: it prints nothing into the blocks. Then its /tmp goes, whole
        # (lazily, if a process being killed still holds it: none reaches it again).
        # A server's client's leftovers (uid $1) are killed as soon as it ends, and waited for (at most 10 s): none
        # may hold a connection while rmmod runs (the module would stay loaded for the jobs after), nor listen on
        # the module's port when the records are made (the module would be blamed).
        "reap() { kill -9 -1; n=0; while [ $n -lt 100 ] && alive $1; do sleep 0.1; n=$((n + 1)); done; }",
        "alive() { for s in /proc/[0-9]*/status; do u=; z=",
        "  while read -r k v rest; do case $k in State:) [ \"$v\" = Z ] && z=1;; Uid:) u=$v; break;; esac",
        "  done 2>/dev/null <$s",
        '  [ "$u" = "$1" ] && [ -z "$z" ] && return 0; done; return 1; }',
        "dump() { kill -9 -1; umount /tmp 2>/dev/null || umount -l /tmp 2>/dev/null",
        "for file in /out/$1/*; do",
        '  mark="@@course $1 ${file##*/}"',
        f'  echo "$mark begin"; head -c {FILE_LIMIT_BYTES + 1} $file | base64; echo "$mark end"',
        "done; }",
    ]
    for index, job in enumerate(jobs):
        out = f"/out/{index}"
        user = str(JOB_UID_BASE + index)
        lines.append(f"mkdir -m 700 {out}; fresh {index}; echo 'course-guest: [{index + 1}/{len(jobs)}] {_title(job)}'")
        if "trace" in job:
            lines += _trace_lines(job, index, out)
            continue
        if "binary" in job:
            seconds = _seconds(job.get("timeout"), 120)
            words = [f"/job/{index}/{Path(job['binary']).name}", *job.get("args", ())]
            launched = _launch(user, job.get("stdin", "devnull"), job.get("files", ()), words)
            command = f"timeout -s KILL {seconds} {launched}"
            lines.append(f"{command} >{out}/stdout 2>{out}/stderr; echo $? >{out}/status; dump {index}")
            continue
        if "client" not in job:  # a module that measures in its init: loaded with a kind of standard input
            ko = f"/job/{index}/{Path(job['ko']).name}"
            insmod = _launch("root", job["stdin"], (), ["--load", ko, *job.get("params", ())])
            lines += [
                "dmesg -c >/dev/null",
                f"timeout -s KILL {MODULE_SECONDS} {insmod} >{out}/insmod 2>&1; echo $? >{out}/status",
                f"dmesg >{out}/log; dump {index}",
            ]
            continue
        words = [f"/job/{index}/{Path(job['client']).name}", *job["client_args"]]
        client = f"timeout -s KILL {_seconds(job.get('timeout'), CLIENT_SECONDS)} {_launch(user, 'devnull', (), words)}"
        ko = f"/job/{index}/{Path(job['ko']).name}"
        insmod = _launch("root", "devnull", (), ["--load", ko, *job.get("params", ())])
        lines += [
            "dmesg -c >/dev/null",
            f"timeout -s KILL {MODULE_SECONDS} {insmod} >{out}/insmod 2>&1; echo $? >{out}/status",
            f'if [ "$(cat {out}/status)" = 0 ]; then',
            f"  {client} >{out}/stdout 2>{out}/stderr; echo $? >{out}/client_status",
            f"  reap {user}",
            f"  timeout -s KILL {MODULE_SECONDS} rmmod {q(job['module'])} >{out}/rmmod 2>&1",
            "fi",
            f"dmesg >{out}/log; cat /proc/modules >{out}/modules",
            f"cat /proc/net/tcp >{out}/tcp; cat /proc/net/tcp6 >{out}/tcp6 2>/dev/null",
            f"dump {index}",
        ]
    lines += [
        "mkdir -m 700 /out/guest; uname -r >/out/guest/release; uname -v >/out/guest/version",
        "cat /proc/cpuinfo >/out/guest/cpuinfo",
        "grep . /sys/devices/system/cpu/vulnerabilities/* >/out/guest/mitigations",
        "dump guest",
        "poweroff -f",
    ]
    return "\n".join(lines) + "\n"


def _launch(user: str, stdin: str, files: tuple[str, ...] | list[str], words: list[str]) -> str:
    """A command run by the launcher as ``user`` (``root`` or a job's uid), with ``stdin`` as standard input and
    ``files`` open (``/bin/course-launch``)."""
    q = shlex.quote
    opened = ",".join(files) or "-"
    return " ".join(q(word) for word in ["/bin/course-launch", user, stdin, opened, "--", *words])


def _trace_lines(job: dict, index: int, out: str) -> list[str]:
    """A traced job, as kernel_guest.run_trace_job does it: function_graph from ``graph``, then reset.

    Each function is written on its own, with its newline, so that one this kernel lacks is refused
    alone (the write fails) and named (``graph_missing``).
    """
    q = shlex.quote
    t = TRACEFS
    lines = [
        f"mount -t tracefs nodev {t} 2>/dev/null",
        f"echo 0 >{t}/tracing_on; echo nop >{t}/current_tracer; echo >{t}/trace",
        f": >{out}/graph; : >{out}/graph_missing; : >{out}/notrace",
        f"echo -n >{t}/set_graph_function; echo -n >{t}/set_graph_notrace",
    ]
    for name in job["graph"]:
        lines.append(
            f"if echo {q(name)} >>{t}/set_graph_function; then echo {q(name)} >>{out}/graph; "
            f"else echo {q(name)} >>{out}/graph_missing; fi 2>/dev/null"
        )
    for name in job.get("notrace", ()):
        lines.append(f"echo {q(name)} >>{t}/set_graph_notrace 2>/dev/null && echo {q(name)} >>{out}/notrace")
    options = kernel_guest.TRACE_OPTIONS.items()
    lines += [f"[ -f {t}/options/{name} ] && echo {value} >{t}/options/{name}" for name, value in options]
    seconds = _seconds(job.get("timeout"), 60)
    words = [f"/job/{index}/{Path(job['binary']).name}", t]
    command = f"timeout -s KILL {seconds} " + _launch("root", "devnull", job.get("files", ()), words)
    lines += [
        f"if [ -s {out}/graph ]; then",
        f"  echo function_graph >{t}/current_tracer",
        f"  {command} >{out}/stdout 2>{out}/stderr; echo $? >{out}/status",
        f"  echo 0 >{t}/tracing_on; head -c {TRACE_LIMIT_BYTES + 1} {t}/trace >{out}/trace",
        f"else echo 0 >{out}/status; fi",
        f"echo nop >{t}/current_tracer; echo -n >{t}/set_graph_function; echo -n >{t}/set_graph_notrace",
        f"echo >{t}/trace; dump {index}",
    ]
    return lines


def _seconds(timeout: object, default: int) -> int:
    """A job's timeout as busybox's timeout takes it: whole seconds, at least one."""
    try:
        return max(1, math.ceil(float(timeout if timeout is not None else default)))
    except (TypeError, ValueError, OverflowError):
        return default


def _title(job: dict) -> str:
    """What the guest says it runs, in kernel_guest's words (the host adds each job's arguments)."""
    if "trace" in job:
        return f"trace {job['program']} (function_graph)"
    if "binary" in job:
        return f"{job['program']} (user space)"
    return f"{job['module']} serving its client" if "client" in job else f"{job['module']} stdin={job['stdin']}"


def make_initramfs(jobs: list[dict], folder: Path, launchers: Path | None = None) -> Path:
    """The guest's initramfs (a newc cpio) in ``folder``: busybox, each job's programs, modules and libraries.

    The launcher is compiled once into ``launchers`` (by default ``launcher`` beside ``folder``)."""
    root = folder / "root"
    for name in ("bin", "proc", "sys", "dev", "tmp", "out", "etc"):
        (root / name).mkdir(parents=True, exist_ok=True)
    # A small regular file every guest has (lesson 4's exercise opens it from its module), as virtme-ng's root has.
    (root / "etc" / "hostname").write_text(GUEST_HOSTNAME + "\n")
    shutil.copy2(busybox(), root / "bin" / "busybox")
    try:
        launcher = guest_launcher.compiled(launchers or folder.parent / "launcher")
    except (guest_launcher.LauncherError, OSError, subprocess.SubprocessError) as error:
        raise RamGuestError(str(error)) from error
    shutil.copy2(launcher, root / "bin" / "course-launch")
    needed: set[Path] = set()
    for index, job in enumerate(jobs):
        place = root / "job" / str(index)
        place.mkdir(parents=True)
        for key in ("binary", "client", "ko"):
            if key in job:
                _copy_stripped(Path(job[key]), place / Path(job[key]).name)
                if key != "ko":
                    needed.update(libraries(Path(job[key])))
    for library in needed:
        # ldd prints what the binary's loader path says, ".." included: keep every copy inside root.
        target = Path(os.path.normpath(root / library.relative_to("/")))
        if not target.is_relative_to(os.path.normpath(root)):
            raise RamGuestError(f"library {str(library)!r} lies outside the guest's root: refusing to copy it")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library.resolve(), target)
    init = root / "init"
    init.write_text(init_script(jobs))
    init.chmod(0o755)
    # The same bytes for the same files: any input that differs changes the boot (dates, inode numbers, modes).
    names = sorted(str(path.relative_to(root)) for path in root.rglob("*"))
    for name in [*names, "."]:
        (root / name).chmod(_mode(name, root / name))
        os.utime(root / name, (0, 0), follow_symlinks=False)
    archive = folder / "initramfs.cpio"
    with archive.open("wb") as out:
        made = subprocess.run(
            # Every file root's (whoever packs it): no job's uid owns anything of the guest.
            ["cpio", "-o", "-H", "newc", "--quiet", "--reproducible", "--owner", "0:0"],
            cwd=root,
            input="\n".join([".", *names]).encode(),
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    if made.returncode != 0:
        raise RamGuestError(f"cpio could not make the guest's initramfs: {made.stderr.decode(errors='replace')[:300]}")
    return archive


def _mode(name: str, path: Path) -> int:
    """A file's mode in the guest: root's alone to write, whatever the host's umask; /tmp every job's (sticky),
    /out (what the init records of each job) root's alone to read too."""
    special = {"tmp": 0o1777, "out": 0o700}
    if name in special:
        return special[name]
    return 0o755 if path.is_dir() or path.stat().st_mode & 0o111 else 0o644


def _copy_stripped(source: Path, target: Path) -> None:
    """A program or module without its debugging sections and build ID: those name the folder it was built in,
    and a file of another size lays the guest's memory out otherwise (another boot, other counts)."""
    stripped = subprocess.run(
        ["objcopy", "--strip-debug", "--remove-section=.note.gnu.build-id", str(source), str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if stripped.returncode != 0:
        raise RamGuestError(f"objcopy could not copy {source.name} into the guest: {stripped.stderr.strip()[:300]}")
    target.chmod(source.stat().st_mode & 0o777)


def qemu_command(kernel: GuestKernel, initramfs: Path, hardware: GuestHardware = DEFAULT_HARDWARE) -> list[str]:
    """The boot: software emulation only (never KVM), one CPU, the serial console on standard output."""
    append = " ".join(["console=ttyS0", "quiet", "panic=-1", kernel_guest.VM_MARK, *hardware.append])
    return [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-machine",
        "q35",
        "-cpu",
        hardware.cpu or "max",  # virtme-ng's default model
        "-m",
        "1G",
        "-smp",
        "1",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-kernel",
        str(kernel.image),
        "-initrd",
        str(initramfs),
        "-append",
        append,
        *ICOUNT_OPTIONS,
    ]


def tcg_command(kernel: GuestKernel, initramfs: Path, hardware: GuestHardware = DEFAULT_HARDWARE) -> list[str]:
    """:func:`qemu_command` under plain TCG: :data:`TCG_OPTIONS` in place of :data:`ICOUNT_OPTIONS`."""
    command = qemu_command(kernel, initramfs, hardware)
    return [*command[: -len(ICOUNT_OPTIONS)], *TCG_OPTIONS]


def read_back(console: str) -> dict[str, dict[str, str]]:
    """The files the guest printed, by job (``"0"``, ``"1"``, ... and ``"guest"``); a damaged one is left out."""
    files: dict[str, dict[str, str]] = {}
    current: tuple[str, str] | None = None
    chunks: list[str] = []
    seen: set[tuple[str, str]] = set()
    damaged: set[str] = set()
    for line in console.replace("\r", "").splitlines():
        mark = MARK.match(line)
        if mark and mark[3] == "begin":
            if current is not None:  # the block before never ended: cut short, its job is not trusted
                damaged.add(current[0])
            current, chunks = (mark[1], mark[2]), []
            if current in seen:  # a second block: something else in the guest printed it, never trusted
                damaged.add(mark[1])
            seen.add(current)
        elif mark and current == (mark[1], mark[2]):
            try:
                raw = base64.b64decode("".join(chunks), validate=True)
            except (binascii.Error, ValueError):  # damaged: the job reads as not finished, not as empty output
                damaged.add(mark[1])
            else:
                got = files.setdefault(mark[1], {})
                if mark[2] not in got:  # the first block is the real one
                    got[mark[2]] = raw[:FILE_LIMIT_BYTES].decode("utf-8", "backslashreplace")
                    if len(raw) > FILE_LIMIT_BYTES:  # the byte past the limit: the file was cut there
                        got[CUT] = " ".join([*got.get(CUT, "").split(), mark[2]])
            current = None
        elif current is not None:
            chunks.append(line.strip())
    if current is not None:  # the console ended inside a block (cut at its limit, or the guest stopped)
        damaged.add(current[0])
    for job in damaged:  # the job (or the guest's description) reads as not finished
        files.pop(job, None)
    return files


def _status(text: str | None) -> int | None:
    """An exit status the guest printed, or None when it is not one (the job then reads as not finished)."""
    text = (text or "").strip()
    return int(text) if re.fullmatch(r"-?\d{1,5}", text) else None


def job_results(jobs: list[dict], files: dict[str, dict[str, str]]) -> list[dict]:
    """Each finished job's result, shaped as kernel_guest writes it; the list stops at the first unfinished."""
    results = []
    with tempfile.TemporaryDirectory(prefix="course-ram-guest-") as scratch:
        for index, job in enumerate(jobs):
            got = files.get(str(index), {})
            status = _status(got.get("status"))
            if status is None:
                break
            if "trace" in job:
                results.append(_trace_result(job, status, got))
                continue
            if "binary" in job:
                results.append({**job, **_outcome(_shown(job), status, got), "seconds": 0.0})
                continue
            if "client" not in job:
                command = " ".join(["insmod", Path(job["ko"]).name, *job.get("params", [])])
                insmod = got.get("insmod", "").strip()
                log = got.get("log", "")
                results.append(
                    {
                        **job,
                        "command": command,
                        "exit_status": status,
                        "insmod_output": insmod,
                        "log": log,
                        "seconds": 0.0,
                    }
                )
                continue
            result = {
                **job,
                "command": " ".join(["insmod", Path(job["ko"]).name, *job.get("params", [])]),
                "exit_status": status,
                "insmod_output": got.get("insmod", "").strip(),
                "client_result": None,
                "rmmod_output": got.get("rmmod", "").strip(),
                "log": got.get("log", ""),
                "seconds": 0.0,
            }
            if status == 0:
                shown = job.get("client_shown_as") or job["client"]
                client_status = _status(got.get("client_status"))
                client_status = -1 if client_status is None else client_status
                result["client_result"] = _outcome(
                    " ".join([shown, *job["client_args"], "< /dev/null"]), client_status, got
                )
            folder = Path(scratch) / str(index)  # the tables keep their names: they are named in what is left
            folder.mkdir()
            tables = []
            for name in ("tcp", "tcp6"):
                table = folder / name
                table.write_text(got.get(name, ""))
                tables.append(table)
            modules = folder / "modules"
            modules.write_text(got.get("modules", ""))
            result["left_loaded"] = kernel_guest.loaded(job["module"], modules)
            result["left_listening"] = kernel_guest.listening_on(
                kernel_guest._port_of(job.get("params", [])), tuple(tables)
            )
            results.append(result)
    return results


def _shown(job: dict, args: tuple[str, ...] | list[str] | None = None) -> str:
    """A program's command as runners.run_on_host records it: its path, arguments, input and open files."""
    words = [job.get("shown_as") or job["binary"], *(job.get("args", ()) if args is None else args)]
    shown = f"{shlex.join(words)} {STDIN_SHOWN[job.get('stdin', 'devnull')]}"
    return shown + (f" (files open: {', '.join(job['files'])})" if job.get("files") else "")


def _trace_result(job: dict, status: int, got: dict[str, str]) -> dict:
    """A traced job's result, shaped as kernel_guest.run_trace_job's."""
    graph, missing = got.get("graph", "").split(), got.get("graph_missing", "").split()
    result = {**job, "graph": graph, "graph_missing": missing, "notrace": got.get("notrace", "").split()}
    if not graph:
        why = f"this kernel has none of the functions to start the graph at ({', '.join(missing)})"
        return {**result, "ok": False, "exit_status": None, "ended": why, "stdout": "", "stderr": "", "command": ""}
    trace = got.get("trace", "")
    outcome = _outcome(_shown({**job, "stdin": "devnull"}, [TRACEFS]), status, got)
    return {
        **result,
        **outcome,
        "stdout": outcome["stdout"][-4000:],
        "trace_text": trace[:TRACE_LIMIT_BYTES],
        "trace_truncated": len(trace) > TRACE_LIMIT_BYTES,
        "seconds": 0.0,
    }


def _outcome(command: str, status: int, got: dict[str, str]) -> dict:
    ended = f"exited with {status}" if status >= 0 else "did not finish"
    cut = [name for name in ("stdout", "stderr") if name in got.get(CUT, "").split()]
    if cut:  # killed by SIGXFSZ at the launcher's limit, or it went on without the rest: either way, said
        were = "was" if len(cut) == 1 else "were"
        ended += f"; its {' and '.join(cut)} passed the guest's limit of {FILE_LIMIT_BYTES // 1024} KiB and {were} cut"
    return {
        "command": command,
        "exit_status": status,
        "ok": status == 0,
        "ended": ended,
        "stdout": got.get("stdout", ""),
        "stderr": got.get("stderr", "")[-4000:],
    }


def guest_of(files: dict[str, dict[str, str]], acceleration: str = "tcg-icount") -> dict:
    """The guest's provenance: its kernel and the CPU QEMU showed it (what kernel_guest records, in part)."""
    guest = files.get("guest", {})
    model = re.search(r"^model name\s*:\s*(.*)$", guest.get("cpuinfo", ""), re.MULTILINE)
    # grep's "path:text" lines, as course.results.fingerprint.mitigations reads the same files.
    lines = (line.partition(":") for line in guest.get("mitigations", "").splitlines())
    found = {
        "kernel_release": guest.get("release", "").strip(),
        "kernel_version": guest.get("version", "").strip(),
        "cpu_model": model[1].strip() if model else "",
        "mitigations": {path.rsplit("/", 1)[-1]: text.strip() for path, _, text in lines if text},
        "guest_system": described(acceleration),
    }
    return {key: value for key, value in found.items() if value}


def lessons_in_memory(jobs: list[dict]) -> set[str]:
    """The lessons whose every job the initramfs guest runs (see :func:`suitable`).

    A lesson that shares a job (a program two lessons ask for, run once) with a lesson that stays
    in the virtme-ng boot stays there with it: one run of that job serves both.
    """
    named = [{job["lesson"], *job.get("lessons", ())} for job in jobs]
    staying = {name for job, names in zip(jobs, named, strict=True) if not suitable(job) for name in names}
    grown = True
    while grown:
        grown = False
        for names in named:
            if names & staying and not names <= staying:
                staying |= names
                grown = True
    return {name for names in named for name in names} - staying


def run_jobs(
    layout: Layout,
    kernel: GuestKernel,
    jobs: list[dict],
    progress: Callable[[str], None],
    timeout: float = 900,
    hardware: GuestHardware = DEFAULT_HARDWARE,
    on_line: Callable[[str], None] | None = None,
) -> vm.VmRun:
    """Boot the initramfs guest once for ``jobs`` (see :func:`suitable`) and return what each job gave.

    ``on_line`` sees every line of the console as it comes; an exception it raises stops the boot there
    (QEMU is killed) and comes out of this call.
    """
    return _boot(layout, kernel, jobs, progress, timeout, hardware, "tcg-icount", on_line)


def run_tcg_jobs(
    layout: Layout,
    kernel: GuestKernel,
    jobs: list[dict],
    progress: Callable[[str], None],
    timeout: float = 900,
    hardware: GuestHardware = DEFAULT_HARDWARE,
    on_line: Callable[[str], None] | None = None,
) -> vm.VmRun:
    """:func:`run_jobs` under plain TCG (:func:`tcg_command`)."""
    return _boot(layout, kernel, jobs, progress, timeout, hardware, "tcg", on_line)


def _boot(
    layout: Layout,
    kernel: GuestKernel,
    jobs: list[dict],
    progress: Callable[[str], None],
    timeout: float,
    hardware: GuestHardware,
    acceleration: str,
    on_line: Callable[[str], None] | None,
) -> vm.VmRun:
    """Boot the initramfs guest once for ``jobs`` under ``acceleration``."""
    command_of = {"tcg-icount": qemu_command, "tcg": tcg_command}[acceleration]
    vm.require_qemu()
    if vm.boot_cancelled():  # interrupted during the build it waited for
        raise KeyboardInterrupt("the boot was interrupted before the guest from memory started")
    # Made as every boot's folder is (one left by a SIGKILL goes on the next run), named ram-: the launcher it
    # packs is compiled once in build/vm, wherever the folder lies.
    folder = vm.new_run_folder(layout, "ram")
    try:
        archive = make_initramfs(jobs, folder, layout.build / "vm" / "launcher")
        if vm.boot_cancelled():
            raise KeyboardInterrupt("the boot was interrupted before the guest from memory started")
        started = time.monotonic()
        first_job: list[float] = []
        announced: dict[int, float] = {}  # when the guest said it starts each job, by index

        def show(line: str) -> None:
            if line.startswith("course-guest:"):
                now = time.monotonic()
                if not first_job:
                    first_job.append(now - started)
                number = re.match(r"course-guest: \[(\d+)/", line)
                if number:
                    announced.setdefault(int(number[1]) - 1, now)
                progress("  vm     " + vm.guest_progress(line, jobs))
            if on_line is not None:
                on_line(line)

        # Started at its PVH entry, without the decompressor that took seconds of every boot (course.kernel.boot_image).
        booted = vm.booted_kernel(layout, kernel)
        status, console = vm._run(command_of(booted, archive, hardware), timeout, show)
        ended = time.monotonic()
        files = read_back(console)
        results = with_seconds(job_results(jobs, files), announced, ended)
        first = first_job[0] if first_job else None
        return vm.VmRun(results, console, status, ended - started, guest_of(files, acceleration), first)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def with_seconds(results: list[dict], announced: dict[int, float], ended: float) -> list[dict]:
    """Each job's wall time as the host saw it: from the guest's announcing it to its announcing the next (its
    files' way back on the console included), the last one's to the boot's end; a job never announced keeps 0."""
    # A program may print a line that looks like an announcement: only times that grow with the index are kept,
    # so that a forged one never makes a job's time negative (a job it shadows reads as untimed).
    starts: list[tuple[int, float]] = []
    for index, at in sorted(announced.items()):
        if not starts or at >= starts[-1][1]:
            starts.append((index, at))
    announced = dict(starts)
    until = {index: (starts[n + 1][1] if n + 1 < len(starts) else ended) for n, (index, _) in enumerate(starts)}
    return [
        {**result, "seconds": round(until[index] - announced[index], 3)} if index in announced else result
        for index, result in enumerate(results)
    ]
