"""The ``vm`` runner: boot the guest kernel in QEMU with virtme-ng, load the modules there, power off.

virtme-ng boots a distribution kernel with the host's filesystem shared read-only, so the
guest sees the course checkout, its Python and the built modules at the same paths;
one writable folder carries the results back. All the kernel examples of a run share
one boot. Acceleration is KVM only where a probe boot shows it works (on some machines
``/dev/kvm`` exists but a guest hangs or QEMU aborts under it), otherwise software
emulation (TCG); the deterministic mode adds ``-icount``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from course.kernel import boot_image, kernel_guest
from course.kernel.guest_hardware import DEFAULT as DEFAULT_HARDWARE
from course.kernel.guest_hardware import GuestHardware
from course.kernel.kernel_build import PLAIN_PATH, GuestKernel, plain_temp
from course.measure.runners import kill_owned, owned_process, read_output, stop_note
from course.results import store
from course.results.layout import Layout
from course.results.shown_text import printable

#: kvm: hardware virtualisation, real ticks. tcg: software emulation, ticks of the emulator.
#: tcg-icount: emulation with a virtual clock driven by the instruction count (deterministic).
ACCELERATIONS = ("kvm", "tcg", "tcg-icount")

#: The unit each acceleration's ticks are stored in: emulated ticks are never called cycles.
UNITS = {"kvm": "ticks", "tcg": "emulated ticks", "tcg-icount": "icount ticks", "host-kernel": "ticks"}

PROBE_SECONDS = 45

#: The drivers the guest's udev would load for QEMU's own devices and CPU features (KVM, the CPU's crypto and
#: checksum helpers, the q35 chipset's SATA with its CD-ROM, watchdogs and SMBus, the PC speaker, the mouse,
#: QEMU's firmware tables): no lesson uses one, and under emulation loading them was half of udev's coldplug,
#: the longest step of a boot (measured on Debian's 6.1: 16 of 39 s of QEMU's CPU time in a boot that runs
#: nothing, 8 with them left out). virtme-ng's init always runs udev when the guest's root (the host's) has it;
#: udev loads a device's driver through libkmod, which skips the modules ``modprobe.blacklist`` names on the
#: kernel's command line, without reading them. The course's own modules are loaded by path (insmod): no list
#: applies to them.
UNUSED_DRIVERS = (
    "kvm",
    "kvm_amd",
    "kvm_intel",
    "ccp",
    "aesni_intel",
    "ghash_clmulni_intel",
    "sha1_ssse3",
    "sha256_ssse3",
    "sha512_ssse3",
    "crc32_pclmul",
    "crc32c_intel",
    "crct10dif_pclmul",
    "polyval_clmulni",
    "ahci",
    "sr_mod",
    "sg",
    "i6300esb",
    "iTCO_wdt",
    "lpc_ich",
    "i2c_i801",
    "intel_pmc_bxt",
    "pcspkr",
    "psmouse",
    "serio_raw",
    "evdev",
    "button",
    "qemu_fw_cfg",
    "powernow_k8",
)

#: The kernel parameter that keeps them out (one word, comma-separated as libkmod reads it).
UNUSED_DRIVERS_PARAMETER = "modprobe.blacklist=" + ",".join(UNUSED_DRIVERS)


class VmError(RuntimeError):
    """The VM cannot be started here; the message says what is missing and how to get it."""


@dataclass
class VmRun:
    """What one boot produced."""

    jobs: list[dict]  # one per module load, as written by course.kernel.kernel_guest
    console: str
    exit_status: int | None  # None: stopped after the timeout
    seconds: float
    guest: dict = field(default_factory=dict)  # the guest's provenance (course.kernel.kernel_guest.guest_machine)
    first_job_seconds: float | None = None  # from the boot's start to the guest helper's first job (None: never)


def vng_path() -> Path:
    """virtme-ng's ``vng``, installed in the course's virtual environment."""
    candidate = Path(sys.executable).parent / "vng"
    if candidate.is_file():
        return candidate
    found = shutil.which("vng")
    if found is None:
        raise VmError("virtme-ng (vng) not found; install it with: pip install -r requirements.lock")
    return Path(found)


def require_qemu() -> None:
    if shutil.which("qemu-system-x86_64") is None:
        raise VmError("qemu-system-x86_64 not found; install it with: apt-get install qemu-system-x86")


def vng_command(
    kernel: GuestKernel,
    acceleration: str,
    exec_command: str,
    rwdir: Path | None = None,
    hardware: GuestHardware = DEFAULT_HARDWARE,
) -> list[str]:
    """The boot's command line; ``hardware`` (checked by course.kernel.guest_hardware): CPU model, kernel parameters.

    The host's root reaches the guest over 9p on every host (``--force-9p``): vng would first try
    virtiofsd, and a guest that reads its files another way is another guest (other counts). Here
    virtiofsd does not start and vng waited five seconds for it before falling back to 9p anyway.
    """
    command = [str(vng_path()), "--run", str(kernel.image), "--memory", "1G", "--cpus", "1", "--force-9p"]
    if rwdir is not None:
        command += ["--rwdir", str(rwdir)]
    if acceleration != "kvm":
        command.append("--disable-kvm")
    icount = "-icount shift=0" if acceleration == "tcg-icount" else ""
    qemu = " ".join(part for part in (icount, hardware.qemu_options()) if part)
    # One word each, "--option=value": vng's parser would read a value that starts with "-" and a
    # letter of one of its short options ("-cpu ...": -c) as that option, not as the value.
    if qemu:
        command.append(f"--qemu-opts={qemu}")
    command.append(f"--append={UNUSED_DRIVERS_PARAMETER}")
    command += [f"--append={parameter}" for parameter in hardware.append]
    return [*command, "--exec", exec_command]


def booted_kernel(layout: Layout, kernel: GuestKernel) -> GuestKernel:
    """The kernel as a guest boots it: uncompressed, at its PVH entry, where it can be (course.kernel.boot_image).

    vng splits the kernel's path at spaces: a build folder whose path has one boots the bzImage.
    """
    if not PLAIN_PATH.fullmatch(str(layout.build)):
        return kernel
    image = boot_image.uncompressed(layout.build, kernel.image)
    return dataclasses.replace(kernel, image=image) if image else kernel


def _environment() -> dict[str, str]:
    # vng starts its helpers (virtme-run) by name: they sit beside it in the venv.
    return {**os.environ, "PATH": f"{vng_path().parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _run(command: list[str], timeout: float, on_line: Callable[[str], None]) -> tuple[int | None, str]:
    """Run a boot in a session of its own, streaming its console; kill everything it started on timeout.

    The console is read as bytes, at most ``OUTPUT_LIMIT_BYTES`` of it (a guest that floods it
    is stopped), and shown with any byte that is not UTF-8 escaped.
    """
    partial = bytearray()

    def lines(_pipe: int, data: bytes) -> None:
        partial.extend(data)
        *complete, rest = partial.split(b"\n")
        partial[:] = rest
        for line in complete:
            on_line(line.decode("utf-8", "backslashreplace").rstrip("\r"))

    with owned_process(
        command,
        guarded=True,  # QEMU dies with this process, even of a SIGKILL
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_environment(),
    ) as process:
        if _cancelled.is_set():  # a kernel matrix interrupted while this boot started: kill_owned() missed it
            raise KeyboardInterrupt("the kernel matrix was interrupted")
        beside = getattr(_turns, "beside", None)
        if beside is not None:  # started beside a boot (while_booting): that boot's end kills it
            beside.pids.add(process.pid)
            if beside.stop.is_set():  # the boot ended while this one started
                raise KeyboardInterrupt("the boot this one ran beside was interrupted")
        try:
            output = read_output(process, timeout, on_data=lines)
        finally:
            if beside is not None:  # ended: its pid is no longer one to kill
                beside.pids.discard(process.pid)
    console = output.streams[0].decode("utf-8", "backslashreplace").replace("\r\n", "\n")
    if output.stopped:
        return None, f"{console}\n[course] {stop_note(output.stopped, timeout)}\n"
    return process.returncode, console


def guest_progress(line: str, jobs: list[dict]) -> str:
    """A guest's ``course-guest:`` line as the terminal shows it, with what tells its job's variants apart.

    The guest says ``[3/8] 09-khttpd/serve (user space)`` four times over for lesson 9's four servers; the
    host knows each job's arguments (a program's, or a server module's parameters) and adds them. The
    guest's own words stay as they are: what it runs is what it measures.
    """
    said = line.removeprefix("course-guest:").strip()
    number = re.match(r"\[(\d+)/\d+\] ", said)
    if number and 0 < int(number[1]) <= len(jobs):
        job = jobs[int(number[1]) - 1]
        variant = job.get("params") if "client" in job else job.get("args") if "binary" in job else None
        if variant:
            said += ": " + " ".join(variant)
    return printable(said)  # the guest's words: an escape sequence in them would drive the terminal


def probe_kvm(kernel: GuestKernel, timeout: float = PROBE_SECONDS) -> tuple[bool, str]:
    """Boot once under KVM and see whether the guest runs a command: (works, why)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is absent or not accessible"
    marker = "course-kvm-probe-ok"
    started = time.monotonic()
    status, console = _run(vng_command(kernel, "kvm", f"echo {marker}"), timeout, lambda line: None)
    seconds = time.monotonic() - started
    if status == 0 and marker in console:
        return True, f"a probe boot under KVM ran a command in {seconds:.1f} s"
    if status is None:
        return False, f"a probe boot under KVM hung (no answer in {timeout:.0f} s)"
    last = [line for line in console.strip().splitlines() if line.strip()][-1:] or ["no output"]
    return False, f"a probe boot under KVM failed (exit {status}: {last[0][:160]})"


def choose_acceleration(
    layout: Layout, kernel: GuestKernel, wanted: str, progress: Callable[[str], None]
) -> tuple[str, str]:
    """The acceleration to use and why. ``auto`` probes KVM once per machine and kernel, and remembers."""
    if wanted in ACCELERATIONS:
        return wanted, "asked for"
    if wanted != "auto":
        raise VmError(f"unknown acceleration {wanted!r}; choose auto or one of {', '.join(ACCELERATIONS)}")
    verdicts = layout.build / "vm" / "kvm-verdict.json"
    key = f"{os.uname().release} {kernel.release}"
    known = _remembered(verdicts, progress)
    if key not in known:
        progress(f"  probe  KVM (a boot of at most {PROBE_SECONDS} s, remembered for this machine)")
        works, why = probe_kvm(kernel)
        known[key] = {"kvm": works, "why": why, "at": store.now()}
        store.write_json(verdicts, known)
    verdict = known[key]
    if verdict["kvm"]:
        return "kvm", verdict["why"]
    return "tcg", f"software emulation: {verdict['why']} (probed {verdict['at']})"


def _remembered(verdicts: Path, progress: Callable[[str], None]) -> dict[str, dict]:
    """The KVM verdicts probed before; a damaged file is only a cache, so it is probed again, not fatal."""
    if not verdicts.is_file():
        return {}
    try:
        known = json.loads(verdicts.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError) as error:  # not JSON, not UTF-8, unreadable, or nested absurdly
        progress(f"  probe  {verdicts} is unreadable ({str(error)[:200]}); probing KVM again")
        return {}
    if not isinstance(known, dict):
        progress(f"  probe  {verdicts} is not a table of verdicts; probing KVM again")
        return {}
    shape = {"kvm": bool, "why": str, "at": str}
    return {
        key: verdict
        for key, verdict in known.items()
        if isinstance(verdict, dict) and all(isinstance(verdict.get(k), kind) for k, kind in shape.items())
    }


#: The lock a kernel matrix's threads take turns with (see :func:`taking_turns`), per thread.
_turns = threading.local()

#: Set when a kernel matrix is interrupted (Ctrl-C): no boot starts, and one cut short stores nothing.
_cancelled = threading.Event()


def boot_cancelled() -> bool:
    """Whether the boot this thread works beside (``while_booting``), or the whole kernel matrix, was stopped.

    Work beside a boot asks before each long step it starts (packing an initramfs, another QEMU).
    """
    beside = getattr(_turns, "beside", None)
    return _cancelled.is_set() or (beside is not None and beside.stop.is_set())


def cancel_boots(cancel: bool = True) -> None:
    """Stop every boot of a kernel matrix (its threads then end with KeyboardInterrupt), or allow boots again."""
    if not cancel:
        _cancelled.clear()
        return
    _cancelled.set()
    kill_owned()


@contextlib.contextmanager
def taking_turns(lock: threading.Lock) -> Iterator[None]:
    """Run the block holding ``lock``, but let it go while this thread's VM boots (:func:`run_jobs`).

    A kernel matrix measures each guest kernel in a thread of its own: builds, the store and the
    report take turns, as in a run of one kernel, and only the boots overlap. Under ``tcg-icount``
    a boot's figures count guest instructions, whatever else the host is running.
    """
    _turns.lock = lock
    try:
        with lock:
            yield
    finally:
        _turns.lock = None


@contextlib.contextmanager
def others_may_run() -> Iterator[None]:
    """Within :func:`taking_turns`, let the other threads go on meanwhile (work that touches only its own files)."""
    lock = getattr(_turns, "lock", None)
    if lock is None:
        yield
        return
    lock.release()
    try:
        yield
    finally:
        lock.acquire()


def run_jobs(
    layout: Layout,
    kernel: GuestKernel,
    jobs: list[dict],
    acceleration: str,
    progress: Callable[[str], None],
    timeout: float = 900,
    hardware: GuestHardware = DEFAULT_HARDWARE,
    helper: Callable[[Path, Path], list[str]] = kernel_guest.command,
    while_booting: Callable[[Path], None] | None = None,
) -> VmRun:
    """Boot once, load every module of ``jobs`` in the guest, and return what each load logged.

    ``helper`` is the command the guest runs on the plan: :mod:`course.kernel.kernel_guest`'s, or
    another helper's (:mod:`course.classroom.grading_guest` builds and runs students' exercises).
    ``while_booting`` runs beside the boot, given the boot's shared folder (the modules' build,
    whose end the guest's helper waits for: :func:`course.kernel.kernel_guest.wait_for_built`).
    """
    require_qemu()
    rundir = new_run_folder(layout)
    try:
        with others_may_run():
            if _cancelled.is_set():
                raise KeyboardInterrupt("the kernel matrix was interrupted")
            boot = _boot(
                layout,
                kernel,
                jobs,
                acceleration,
                progress,
                timeout,
                rundir,
                hardware=hardware,
                helper=helper,
                while_booting=while_booting,
            )
        if _cancelled.is_set():  # killed by cancel_boots(): what it logged is not a result
            raise KeyboardInterrupt("the kernel matrix was interrupted")
        return boot
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


def new_run_folder(layout: Layout, kind: str = "run") -> Path:
    """A folder of its own for one boot (mode 0700; the caller removes it): two runs never share one, and a run
    killed before removing its own has it removed here, by the next. vng and the guest's kernel command line
    cannot take a space in its path: then it goes to a plain temp folder. ``kind`` starts its name: ``run`` for
    a virtme-ng boot, ``ram`` for the guest from memory's (course.kernel.ram_guest)."""
    (layout.build / "vm").mkdir(parents=True, exist_ok=True)
    if PLAIN_PATH.fullmatch(str(layout.build / "vm")):
        parent, prefix = layout.build / "vm", f"{kind}-"
    else:
        parent, prefix = Path(plain_temp()), f"course-vm-{kind}-"
    remove_stale_runs(parent, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def remove_stale_runs(parent: Path, prefix: str = "run-") -> list[Path]:
    """Remove the boot folders (``run-<pid>-*``) of runs that ended without removing theirs (SIGKILL); those removed.

    A folder whose process is alive is kept: the boots of a kernel matrix run side by side, and
    another checkout's runs may share the plain temp folder.
    """
    removed = []
    for folder in parent.glob(f"{prefix}*"):
        owner = folder.name.removeprefix(prefix).split("-", 1)[0]
        if not folder.is_dir() or (owner.isdecimal() and _alive(int(owner))):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _boot(
    layout: Layout,
    kernel: GuestKernel,
    jobs: list[dict],
    acceleration: str,
    progress: Callable[[str], None],
    timeout: float,
    rundir: Path,
    hardware: GuestHardware = DEFAULT_HARDWARE,
    helper: Callable[[Path, Path], list[str]] = kernel_guest.command,
    while_booting: Callable[[Path], None] | None = None,
) -> VmRun:
    plan, results = kernel_guest.prepare(rundir, jobs)
    kernel = booted_kernel(layout, kernel)
    root = shlex.quote(str(layout.root))
    guest = f"cd {root} && PYTHONPATH={root} {shlex.join(helper(plan, results))}"
    started = time.monotonic()
    first_job: list[float] = []  # when the helper announced its first job: the boot's own share of the time

    def show(line: str) -> None:
        if line.startswith("course-guest:"):
            if not first_job:
                first_job.append(time.monotonic() - started)
            progress("  vm     " + guest_progress(line, jobs))

    beside: list[BaseException] = []
    # What runs beside the boot sees its end (boot_cancelled) and registers the boots it starts (_run).
    state = SimpleNamespace(stop=threading.Event(), pids=set())

    def work() -> None:
        _turns.beside = state
        try:
            while_booting(rundir)
        except BaseException as error:  # raised here, once the boot is over
            beside.append(error)

    worker = threading.Thread(target=work, name="while booting") if while_booting else None
    if worker:
        worker.start()
    try:
        status, console = _run(vng_command(kernel, acceleration, guest, rwdir=rundir, hardware=hardware), timeout, show)
    except BaseException as error:
        # Ctrl-C, SIGTERM or a failure: what runs beside ends now, not when its own QEMU times out.
        state.stop.set()
        if not isinstance(error, Exception):
            kill_owned()  # the whole run ends: its builds too
        for pid in set(state.pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        raise
    finally:
        if worker:
            worker.join()
    if beside:
        raise beside[0]
    seconds = time.monotonic() - started
    jobs_done, guest = kernel_guest.recorded(results)
    return VmRun(jobs_done, console, status, seconds, guest, first_job[0] if first_job else None)
