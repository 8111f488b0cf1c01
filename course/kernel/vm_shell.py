"""``invoke vm --lesson N``: a shell in the lesson's disposable guest, to load its modules by hand.

The pipeline loads every module itself; a student also wants to type ``insmod``, read
``dmesg`` and ``rmmod`` as linux-kernel-labs and LKMPG let them. This builds the lesson's
modules (against the guest kernel) and programs (on the host: the guest shares the host's
files read-only, at the same paths), prints a short guide, and boots the guest with its
serial console in this terminal. Leaving the shell powers the guest off; whatever happens
(Ctrl-C before the guest takes the terminal, SIGTERM, a crash of this process), QEMU is
killed with everything it started, and the terminal's settings are put back.

The guest's shell is the course's, not the host user's: virtme-ng would start the user's shell
with its start-up files (~/.bashrc: pyenv, prompts, PATH for the host), which make no sense in
the guest and, under emulation, cost a student seconds before the first prompt (19 s of
emulated pyenv here). vng's ``--shell`` names a script of this session instead
(``virtme_shell``: virtme-ng-init starts it with ``su -s``), which starts bash with the course's
start-up only: a prompt naming the guest, its kernel and the lesson, in the lesson's folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import shutil
import sys
import termios
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from course.kernel import kernel_build, vm
from course.kernel.kernel_build import GuestKernel
from course.measure import lessons as lesson_catalog
from course.measure.build import BuildError, Program, build_program
from course.measure.lessons import Lesson
from course.measure.runners import owned_process
from course.results import runlock
from course.results.layout import Layout

#: The guest's parameters for a module loaded by hand: fewer samples than the pipeline's, so
#: that a load under software emulation answers in seconds.
HAND_PARAMS = {"samples": "200"}


class ShellError(RuntimeError):
    """The shell cannot be opened; the message says why and what to do."""


@dataclass(frozen=True)
class Prepared:
    """What a hand session offers: the lesson's modules and programs, built, at paths the guest sees."""

    lesson: Lesson
    kernel: GuestKernel
    modules: list[tuple[str, Path, tuple[str, ...]]]  # name, .ko, parameters for a load by hand
    clients: dict[str, list[str]]  # a server module's name -> the command of its client
    programs: list[tuple[str, Path, tuple[str, ...]]]  # name as lesson.toml says it, binary, its arguments


def require_terminal(stdin: TextIO) -> None:
    if not stdin.isatty():
        raise ShellError(
            "invoke vm opens a shell in the guest and needs a terminal (standard input is not one); "
            "run it in an interactive terminal"
        )


def _hand_params(params: tuple[str, ...]) -> tuple[str, ...]:
    """The lesson's parameters, with the sample counts made small enough for a load by hand."""
    shown = []
    for param in params:
        name, _, value = param.partition("=")
        shown.append(f"{name}={HAND_PARAMS.get(name, value)}")
    return tuple(shown)


def prepare(layout: Layout, number: int, release: str, progress: Callable[[str], None]) -> Prepared:
    """Build the lesson's modules against the guest kernel and the programs it runs in the guest."""
    lesson = lesson_catalog.find(layout, number)
    kernel = kernel_build.find_kernel(release)
    modules, clients = [], {}
    owners = {each.name: each for each in lesson_catalog.discover(layout)}
    for module in lesson.modules:
        if module.expect != "load" or module.name in clients:
            continue  # a module meant not to build (lesson 5's oldstyle) has nothing to load; a server is shown once
        try:
            built = kernel_build.build_module(layout, lesson, module, kernel)
        except BuildError as error:
            raise ShellError(f"{error}; run invoke lesson {number} to see the compiler's words") from None
        progress(f"  build  {module.name}.ko for {kernel.release}{'' if built.rebuilt else ' (unchanged)'}")
        modules.append((module.name, built.ko, _hand_params(module.params)))
        if module.client:
            client = _build(layout, owners[module.client_lesson], module.client_name)
            clients[module.name] = [str(client.binary), *module.client_args]
    programs = []
    for spec in lesson.guest_runs:
        program = _build(layout, owners[spec.lesson], spec.name)
        progress(f"  build  {spec.program}{'' if program.rebuilt else ' (unchanged)'}")
        programs.append((spec.program, program.binary, spec.args))
    if not modules and not programs:
        with_modules = [str(each.number) for each in owners.values() if each.modules]
        raise ShellError(
            f"lesson {number} has no module or program to run in the guest; "
            f"the lessons with modules are {', '.join(with_modules)}"
        )
    return Prepared(lesson, kernel, modules, clients, programs)


def _build(layout: Layout, owner: Lesson, name: str) -> Program:
    """One of ``owner``'s programs, linked as its lesson links it on the host (-luring)."""
    libs = next((run.libs for run in owner.runs if run.program == name), ())
    try:
        return build_program(layout, owner, name, libs=libs)
    except BuildError as error:
        raise ShellError(str(error)) from None


#: Each acceleration in words, as the terminal says it.
ACCELERATION_WORDS = {
    "kvm": "hardware virtualisation (KVM)",
    "tcg": "software emulation (TCG)",
    "tcg-icount": "software emulation counting instructions (TCG with -icount)",
}


def acceleration_line(chosen: str, why: str, asked: str) -> str:
    """Which acceleration the guest boots with, and why, in words (never the bare "tcg: asked for")."""
    words = ACCELERATION_WORDS.get(chosen, chosen)
    if why == "asked for":  # vm.choose_acceleration's words for an acceleration named on the command line
        return f"{words}, as asked by --acceleration {asked}"
    return f"{words}: {why.removeprefix('software emulation: ')}"


def boot_time(acceleration: str) -> str:
    """What a boot's time depends on: emulated, every guest instruction runs on this machine's busy or idle CPU."""
    if acceleration == "kvm":
        return "A boot under KVM takes seconds."
    return (
        "A boot under software emulation takes from tens of seconds to a few minutes: QEMU runs every "
        "instruction of the guest on this machine's CPU, so a slower or busier machine (builds, tests or "
        "other guests at the same time) waits longer."
    )


def guide(prepared: Prepared, acceleration: str) -> str:
    """The few lines printed before the boot: what to type in the guest."""
    lines = [
        f"Lesson {prepared.lesson.number} in a disposable guest: kernel {prepared.kernel.release}, "
        f"{ACCELERATION_WORDS.get(acceleration, acceleration)}.",
        boot_time(acceleration),
        "The guest sees this machine's files read-only at the same paths; /tmp is its own. Its shell is the",
        "course's: your own start-up files (~/.bashrc, ~/.profile, ~/.inputrc) are not read there, and its",
        f"history is its own. It starts in {shlex.quote(str(start_folder(prepared)))}.",
        "",
    ]
    for name, ko, params in prepared.modules:
        client = prepared.clients.get(name)
        if client:  # a server: it stays loaded while its client talks to it
            lines += [
                f"  module {name} (a server on 127.0.0.1; run 'ip link set lo up' first):",
                f"    insmod {shlex.join([str(ko), *params])}",
                f"    {shlex.join(client)}   # its client: requests, every answer checked",
                f"    dmesg | grep 'course:'; rmmod {name}",
            ]
            continue
        lines += [
            f"  module {name}:",
            f"    insmod {shlex.join([str(ko), *params])} < /dev/null   # load it (stdin is what it reads)",
            "    dmesg | grep 'course:'        # its lines in the kernel log",
            f"    lsmod | grep {name}; rmmod {name}   # if it stayed loaded, unload it",
        ]
    if any(name not in prepared.clients for name, _, _ in prepared.modules):
        lines.append("  A module that measures and leaves refuses to stay loaded: insmod then says")
        lines.append("  'Invalid parameters' (init returned -EINVAL on purpose); its figures are in dmesg.")
    for name, binary, args in prepared.programs:
        lines.append(f"  program {name}: {shlex.join([str(binary), *args])}")
    lines += ["", "Leave the shell (exit or Ctrl-D) to power the guest off; nothing is left running.", ""]
    return "\n".join(lines)


@contextlib.contextmanager
def terminal_restored(fd: int) -> Iterator[None]:
    """QEMU puts the terminal in raw mode; killed, it cannot put it back: this does."""
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        saved = None
    try:
        yield
    finally:
        if saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def start_folder(prepared: Prepared) -> Path:
    """Where the guest's shell starts: the folder of the lesson's modules (else of its first program)."""
    if prepared.modules:
        return prepared.modules[0][1].parent
    return prepared.programs[0][1].parent


def shell_rc(prepared: Prepared) -> str:
    """The guest shell's start-up file: the course's prompt and folder, nothing of the host user's.

    Every value from outside (the kernel's release, a folder's name) is one shell-quoted word; the
    prompt names them through variables, which bash expands once at each prompt and never reads
    again as prompt escapes or commands.
    """
    return "\n".join(
        [
            "# invoke vm's shell in the guest (course/kernel/vm_shell.py): the course's start-up only.",
            f"COURSE_GUEST_KERNEL={shlex.quote(prepared.kernel.release)}",
            f"COURSE_LESSON={int(prepared.lesson.number)}",
            "PS1='guest ${COURSE_GUEST_KERNEL} lesson ${COURSE_LESSON} \\$ '",
            "unset HISTFILE  # the host user's history is neither read nor written",
            f"cd -- {shlex.quote(str(start_folder(prepared)))}",
            "",
        ]
    )


def shell_script(rc: Path) -> str:
    """The program vng's --shell names: bash reading the course's start-up file instead of the user's."""
    return "\n".join(
        [
            "#!/bin/sh",
            "# invoke vm's shell in the guest (course/kernel/vm_shell.py), started by virtme-ng-init's su -s.",
            "export INPUTRC=/etc/inputrc  # readline's system file, not the user's ~/.inputrc",
            f"exec bash --noprofile --rcfile {shlex.quote(str(rc))} -i",
            "",
        ]
    )


@contextlib.contextmanager
def shell_folder(layout: Layout, prepared: Prepared) -> Iterator[Path]:
    """A folder of this session's own holding the guest shell's script and start-up file; the script's path.

    The guest sees it at the same path (the host's files, /tmp through its overlay). vng puts the
    script's path in a shell command and on the guest kernel's command line: a boot's own folder
    (:func:`course.kernel.vm.new_run_folder`), as every boot's. Removed when the session ends; one
    left by a killed session goes at the next boot.
    """
    folder = vm.new_run_folder(layout)
    try:
        rc, script = folder / "shellrc", folder / "shell"
        rc.write_text(shell_rc(prepared), encoding="utf-8")
        script.write_text(shell_script(rc), encoding="utf-8")
        # Modes of their own, not the umask's: under a umask of 0 another user could add commands to them.
        rc.chmod(0o644)
        script.chmod(0o755)
        folder.chmod(0o755)  # mkdtemp's is 0700: the guest's shell may run as another user (vng's --user)
        yield script
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def shell_command(prepared: Prepared, acceleration: str, shell: Path) -> list[str]:
    """vng without --exec: the course's shell (``shell``) on the guest's serial console, in this terminal."""
    command = vm.vng_command(prepared.kernel, acceleration, "true")
    command = command[: command.index("--exec")]
    return [*command, "--shell", str(shell)]


def open_shell(
    layout: Layout,
    number: int,
    release: str,
    acceleration: str,
    progress: Callable[[str], None] = print,
    stdin: TextIO | None = None,
) -> int:
    """Build, print the guide, boot the guest with its console here; return the shell's exit status."""
    stdin = stdin or sys.stdin
    require_terminal(stdin)
    vm.require_qemu()
    # The build folder's lock while building only: a shell may stay open for an hour.
    with runlock.hold(layout.build, f"invoke vm --lesson {number} (building)"):
        prepared = prepare(layout, number, release, progress)
        chosen, why = vm.choose_acceleration(layout, prepared.kernel, acceleration, progress)
        # Started at its PVH entry, as the pipeline's boots are: under emulation its decompressor costs seconds.
        booted = dataclasses.replace(prepared, kernel=vm.booted_kernel(layout, prepared.kernel))
    progress(f"  vm     {acceleration_line(chosen, why, acceleration)}")
    print(guide(prepared, chosen), flush=True)
    with (
        shell_folder(layout, prepared) as shell,
        terminal_restored(stdin.fileno()),
        # Guarded, as every boot: QEMU is vng's grandchild, and were invoke itself killed (SIGKILL), the guard
        # still ends it (before, a killed shell left its QEMU running, orphaned).
        owned_process(
            shell_command(booted, chosen, shell), guarded=True, env=vm._environment(), cwd=layout.root
        ) as process,
    ):
        # The console is this terminal: QEMU reads and writes it directly, nothing is piped.
        status = process.wait()
    print(f"\nthe guest powered off (exit {status}); nothing of it is left running", flush=True)
    return status
