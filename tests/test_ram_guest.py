"""The initramfs guest of the icount lessons: which jobs it takes, its init script, what it reads back."""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from course.kernel import memory_boot, ram_guest

SERVER = {
    "lesson": "09-khttpd",
    "module": "khttpd",
    "ko": "/b/khttpd.ko",
    "params": ["port=8080", "requests=100"],
    "client": "/b/serve",
    "client_args": ["client", "8080", "100", "batch"],
    "client_shown_as": "build/code/09-khttpd/serve",
    "stdin": "devnull",
}
PROGRAM = {
    "lesson": "09-khttpd",
    "lessons": ["09-khttpd"],
    "program": "09-khttpd/serve",
    "binary": "/b/serve",
    "args": ["read-write", "100", "batch"],
    "stdin": "devnull",
    "files": [],
    "shown_as": "build/code/09-khttpd/serve",
}


def test_a_lesson_goes_to_memory_unless_one_of_its_jobs_needs_a_kind_the_launcher_lacks() -> None:
    assert ram_guest.lessons_in_memory([PROGRAM, SERVER]) == {"09-khttpd"}
    load = {"lesson": "04-kernel-read", "module": "kread", "ko": "/b/kread.ko", "stdin": "pipe"}
    assert ram_guest.lessons_in_memory([load]) == {"04-kernel-read"}, "a module loaded with a pipe as its input"
    with_input = {**PROGRAM, "stdin": "file", "files": ["tty", "socket"]}
    assert ram_guest.lessons_in_memory([with_input, SERVER]) == {"09-khttpd"}, "a program with input and files"
    odd = {**PROGRAM, "stdin": "fifo"}
    assert ram_guest.lessons_in_memory([odd, SERVER]) == set(), "a kind it cannot open: the whole lesson stays"
    shared = {**odd, "lessons": ["09-khttpd", "04-kernel-read"]}
    assert ram_guest.lessons_in_memory([shared, SERVER, load]) == set(), "so does a lesson that shares that job"


def test_a_lesson_that_says_boot_own_boots_alone_and_the_others_share_one_boot() -> None:
    """The planning of a kernel's boots from memory: which jobs go in which boot, in the order given."""
    shared = {"lesson": "04-kernel-read", "lessons": ["04-kernel-read", "09-khttpd"], "binary": "/b/u", "args": []}
    load = {"lesson": "04-kernel-read", "module": "ksystime", "ko": "/b/k.ko", "stdin": "tty"}
    trace = {"lesson": "02-read-path", "trace": "trace", "binary": "/b/t", "files": ["tty"], "graph": ["x"]}
    jobs = [shared, PROGRAM, load, SERVER, trace]
    lessons = {"02-read-path", "04-kernel-read", "09-khttpd"}
    boots = memory_boot.memory_boots(jobs, lessons, own={"09-khttpd"})
    assert boots == [
        ({"02-read-path", "04-kernel-read"}, [{**shared, "lessons": ["04-kernel-read"]}, load, trace]),
        # The program both lessons ask for runs in each boot, for the lesson that boots there.
        ({"09-khttpd"}, [{**shared, "lesson": "09-khttpd", "lessons": ["09-khttpd"]}, PROGRAM, SERVER]),
    ]
    # Lesson 9 alone (invoke lesson 9): the very jobs of its boot in the matrix, so the same initramfs.
    alone = {**shared, "lesson": "09-khttpd", "lessons": ["09-khttpd"]}
    assert memory_boot.memory_boots([alone, PROGRAM, SERVER], {"09-khttpd"}, {"09-khttpd"}) == [boots[1]]
    assert memory_boot.memory_boots(jobs, lessons, own=set()) == [(lessons, jobs)], "no lesson of its own: one boot"
    assert memory_boot.memory_boots([load], {"04-kernel-read"}, {"09-khttpd"}) == [({"04-kernel-read"}, [load])]
    assert memory_boot.memory_boots([], lessons, {"09-khttpd"}) == [], "nothing to run: no boot"


def test_the_init_script_quotes_every_word_it_was_given() -> None:
    odd = {**PROGRAM, "args": ["read-write", "$(reboot)", "a b;c"]}
    script = ram_guest.init_script([odd, {**SERVER, "params": ["port=8080", "x=`id`"]}])
    assert "/bin/course-launch 1000 devnull - -- /job/0/serve read-write '$(reboot)' 'a b;c' >/out/0/stdout" in script
    assert "/bin/course-launch root devnull - -- --load /job/1/khttpd.ko port=8080 'x=`id`' >/out/1/insmod" in script
    load = {"lesson": "04-kernel-read", "module": "ksystime", "ko": "/b/k.ko", "params": ["s=`id`"], "stdin": "pipe"}
    assert "/bin/course-launch root pipe - -- --load /job/0/k.ko 's=`id`' >/out/0/insmod" in ram_guest.init_script(
        [load]
    )
    assert "rmmod khttpd" in script and script.rstrip().endswith("poweroff -f")


def test_each_jobs_programs_run_as_a_user_of_its_own_and_only_loads_and_traces_as_root() -> None:
    """A program (a server's client too) runs as the uid of its job, never root; the init records each job in a
    folder of root's alone, made fresh for it; /tmp, the one folder jobs may write, is a tmpfs of each job's own."""
    trace = {"lesson": "02-read-path", "trace": "trace", "program": "02-read-path/t", "binary": "/b/t", "graph": ["x"]}
    script = ram_guest.init_script([PROGRAM, SERVER, PROGRAM, trace])
    launched = [shlex.split(line.partition("/bin/course-launch ")[2])[:5] for line in script.splitlines()]
    users = [(words[0], words[4]) for words in launched if words]
    base = ram_guest.JOB_UID_BASE
    assert users == [
        (str(base), "/job/0/serve"),
        ("root", "--load"),  # the server module
        (str(base + 1), "/job/1/serve"),  # its client
        (str(base + 2), "/job/2/serve"),
        ("root", "/job/3/t"),  # the traced program writes to ftrace's files
    ], users
    for index in range(4):
        assert f"mkdir -m 700 /out/{index};" in script, "a fresh folder of root's for each job's record"
    assert "mkdir -p /out" not in script, "no folder a job could have made first is taken as its record"
    for index in range(4):  # the job's own /tmp, made before it starts: nothing of the job before reaches it
        assert f"mkdir -m 700 /out/{index}; fresh {index};" in script
    assert "kill -9 -1; umount /tmp 2>/dev/null || umount -l /tmp" in script, "gone, whole, after each job"
    assert "echo 1 >/proc/sys/fs/protected_symlinks; echo 1 >/proc/sys/fs/protected_hardlinks" in script


def _console(files: dict[str, dict[str, str]]) -> str:
    lines = ["[    0.1] a kernel line", "course-guest: [1/2] ..."]
    for job, named in files.items():
        for name, text in named.items():
            encoded = base64.encodebytes(text.encode()).decode().splitlines()
            lines += [f"@@course {job} {name} begin", *encoded, f"@@course {job} {name} end"]
    return "\r\n".join(lines) + "\r\n"


def test_what_the_guest_printed_becomes_each_jobs_result() -> None:
    listening = "  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 0A 0\n"
    files = {
        "0": {"status": "0\n", "stdout": "course: meta x=1\n", "stderr": ""},
        "1": {
            "status": "0\n",
            "client_status": "0\n",
            "stdout": "course: measure request.khttpd unit=ticks samples=1\n",
            "log": "course: meta done=1\n",
            "modules": "khttpd 16384 0 - Live 0x0\n",
            "tcp": listening,
            "insmod": "",
            "rmmod": "",
        },
        "guest": {
            "release": "6.1.0-1-amd64\n",
            "cpuinfo": "model name\t: QEMU TCG CPU\n",
            "mitigations": "/sys/devices/system/cpu/vulnerabilities/meltdown:Not affected\n",
        },
    }
    read = ram_guest.read_back(_console(files))
    assert read["0"]["stdout"] == "course: meta x=1\n" and read["guest"]["release"] == "6.1.0-1-amd64\n"
    program, server = ram_guest.job_results([PROGRAM, SERVER], read)
    assert program["ok"] and program["command"] == "build/code/09-khttpd/serve read-write 100 batch < /dev/null"
    assert server["exit_status"] == 0 and server["client_result"]["ok"]
    assert server["client_result"]["stdout"].startswith("course: measure request.khttpd")
    assert server["left_loaded"] is True and server["left_listening"] == ["0100007F:8080 (tcp)"]
    guest = ram_guest.guest_of(read)
    assert guest["cpu_model"] == "QEMU TCG CPU" and guest["mitigations"] == {"meltdown": "Not affected"}


def test_a_job_the_guest_never_finished_ends_the_results_there() -> None:
    files = {"0": {"status": "0\n", "stdout": ""}, "1": {"stdout": "half"}}
    assert len(ram_guest.job_results([PROGRAM, SERVER], ram_guest.read_back(_console(files)))) == 1
    damaged = _console({"0": {"status": "0\n"}}).replace("MAo=", "M!o=")
    assert ram_guest.job_results([PROGRAM], ram_guest.read_back(damaged)) == []


def test_a_block_cut_short_or_undecodable_leaves_its_job_unfinished_not_empty() -> None:
    """A flood can cut the console inside a block: the job it belongs to must not read as having printed nothing."""
    whole = _console({"0": {"status": "0\n", "stdout": "course: measure a unit=ticks samples=1\n"}})
    assert ram_guest.job_results([PROGRAM], ram_guest.read_back(whole))[0]["ok"]
    cut = whole[: whole.index("@@course 0 stdout end")]  # the console ends inside the stdout block
    assert ram_guest.job_results([PROGRAM], ram_guest.read_back(cut)) == []
    unended = whole.replace("@@course 0 stdout end\r\n", "")  # a block that never ends before the next
    unended += _console({"1": {"status": "0\n"}})
    assert "0" not in ram_guest.read_back(unended)
    garbled = whole.replace("@@course 0 stdout begin\r\n", "@@course 0 stdout begin\r\n!!!!\r\n")
    assert ram_guest.job_results([PROGRAM], ram_guest.read_back(garbled)) == []


def test_the_boot_is_emulated_and_repeatable_never_kvm() -> None:
    class Kernel:
        image = Path("/boot/vmlinuz")

    command = ram_guest.qemu_command(Kernel(), Path("/x/initramfs.cpio"))  # type: ignore[arg-type]
    assert command[command.index("-accel") + 1] == "tcg" and "kvm" not in " ".join(command)
    assert "shift=0,sleep=off,align=off" in command and "-seed" in command and "-rtc" in command


def test_under_plain_tcg_the_same_boot_runs_without_icount_keeping_seed_and_date() -> None:
    class Kernel:
        image = Path("/boot/vmlinuz")

    icount = ram_guest.qemu_command(Kernel(), Path("/x/initramfs.cpio"))  # type: ignore[arg-type]
    command = ram_guest.tcg_command(Kernel(), Path("/x/initramfs.cpio"))  # type: ignore[arg-type]
    assert command[command.index("-accel") + 1] == "tcg" and "kvm" not in " ".join(command)
    assert "-icount" not in command and command[-len(ram_guest.TCG_OPTIONS) :] == list(ram_guest.TCG_OPTIONS)
    assert "-seed" in command and "-rtc" in command
    assert command[: -len(ram_guest.TCG_OPTIONS)] == icount[: -len(ram_guest.ICOUNT_OPTIONS)], "the same guest else"
    assert "-icount" not in ram_guest.described("tcg") and "-icount" in ram_guest.described("tcg-icount")


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs cpio")
def test_the_initramfs_is_the_same_bytes_whenever_it_is_made(tmp_path: Path) -> None:
    """Files copied at another time or built elsewhere make another boot: dates, inode numbers and debugging
    sections are left out of the archive."""
    try:
        ram_guest.busybox()
    except ram_guest.RamGuestError:
        pytest.skip("no static busybox here")
    programs, made = [], []
    for folder in ("one", "a-longer-build-folder"):  # the compiler writes the folder into the debugging sections
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "prog.c").write_text("int main(void) { return 0; }\n")
        program = tmp_path / folder / "prog"
        subprocess.run(["cc", "-g", "-o", str(program), "prog.c"], cwd=tmp_path / folder, check=True)
        programs.append(program.read_bytes())
        made.append(ram_guest.make_initramfs([{**PROGRAM, "binary": str(program)}], tmp_path / folder / "guest"))
    assert len(programs[0]) != len(programs[1]), "built in two folders, the programs differ"
    assert made[0].read_bytes() == made[1].read_bytes()


def _linked_program(tmp_path: Path, runpath: str, with_library: bool = True) -> Path:
    """A program that needs libf.so, found by the loader through ``runpath`` (as a build's rpath would say)."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "f.c").write_text("int f(void) { return 0; }\n")
    (tmp_path / "m.c").write_text("int f(void);\nint main(void) { return f(); }\n")
    library = tmp_path / "lib" / "libf.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), "f.c"], cwd=tmp_path, check=True)
    program = tmp_path / "m"
    link = ["cc", "-o", str(program), "m.c", f"-L{tmp_path / 'lib'}", "-lf", f"-Wl,-rpath,{runpath}"]
    subprocess.run(link, cwd=tmp_path, check=True)
    if not with_library:
        library.unlink()
    return program


@pytest.mark.skipif(shutil.which("cpio") is None or shutil.which("ldd") is None, reason="needs cpio and ldd")
def test_a_library_path_with_dot_dot_is_never_copied_outside_the_guests_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ldd prints the rpath as it is: "/../../<tmp>/lib/libf.so" joined onto root/ pointed above it.
    # As many ".." as root lies below tmp_path: the old code wrote the copy to tmp_path/<tmp_path>/lib/libf.so.
    folder = tmp_path / "deep" / "er" / "guest"
    program = _linked_program(
        tmp_path, "/.." * len((folder / "root").relative_to(tmp_path).parts) + str(tmp_path / "lib")
    )
    assert any(".." in str(path) for path in ram_guest.libraries(program)), "the reproducer needs a '..' path"
    monkeypatch.setattr(ram_guest, "busybox", lambda: Path("/bin/true"))
    with pytest.raises(ram_guest.RamGuestError, match="outside the guest's root"):
        ram_guest.make_initramfs([{**PROGRAM, "binary": str(program)}], folder)
    copied = [path for path in tmp_path.rglob("libf.so") if path != tmp_path / "lib" / "libf.so"]
    assert copied == [], f"copied outside the guest: {copied}"


@pytest.mark.skipif(shutil.which("ldd") is None, reason="needs ldd")
def test_a_library_the_host_lacks_is_named_before_the_boot(tmp_path: Path) -> None:
    program = _linked_program(tmp_path, str(tmp_path / "lib"), with_library=False)
    with pytest.raises(ram_guest.RamGuestError, match=r"m needs libf\.so, which the host does not have"):
        ram_guest.libraries(program)


def test_a_status_that_is_not_a_number_leaves_the_job_unfinished() -> None:
    for status in ("not-a-number\n", "1e9\n", "123456\n", "0 0\n", "\n"):
        read = ram_guest.read_back(_console({"0": {"status": status, "stdout": "ok\n"}}))
        assert ram_guest.job_results([PROGRAM], read) == [], status
    read = ram_guest.read_back(_console({"0": {"status": "0\n", "client_status": "x"}}))
    (server,) = ram_guest.job_results([SERVER], read)
    assert server["client_result"]["exit_status"] == -1 and server["client_result"]["ended"] == "did not finish"


def test_a_second_block_of_a_file_is_damage_not_a_replacement() -> None:
    # A process the job left running (or a kernel line) printing a block after the real one.
    real = _console({"0": {"status": "0\n", "stdout": "ok\n"}, "guest": {"release": "6.1\n"}})
    forged = _console({"0": {"status": "7\n"}, "guest": {"release": "forged\n"}})
    read = ram_guest.read_back(real + forged)
    assert "0" not in read and "guest" not in read
    assert ram_guest.job_results([PROGRAM], read) == []
    assert ram_guest.read_back(real)["guest"]["release"] == "6.1\n"


def test_the_guest_kills_what_the_jobs_left_running_before_printing_their_files() -> None:
    script = ram_guest.init_script([PROGRAM])
    assert script.index("kill -9 -1") < script.index("base64")


def test_a_servers_client_leaves_nothing_running_when_its_module_is_unloaded_and_its_port_read() -> None:
    """The client's leftovers (its uid's processes) are killed, and waited for, as soon as it ends: before rmmod
    (a connection they hold would keep the module loaded for the jobs after) and before the records that say
    what was left loaded and listening (one listening on the module's port would be blamed on the module)."""
    script = ram_guest.init_script([PROGRAM, SERVER])
    job = script[script.index("course-guest: [2/2]") :]
    user = str(ram_guest.JOB_UID_BASE + 1)
    client = job.index(f"/bin/course-launch {user} ")
    reap = job.index(f"reap {user}\n")
    assert client < reap < job.index("rmmod khttpd") < job.index("cat /proc/modules") < job.index("/proc/net/tcp")
    assert "reap() { kill -9 -1; " in script and "alive $1; do sleep 0.1;" in script, "killed, then waited for"


def _in_a_pid_namespace() -> bool:
    if shutil.which("unshare") is None or shutil.which("cpio") is None:
        return False
    tried = subprocess.run(["unshare", "-p", "-f", "-m", "true"], capture_output=True, timeout=30)
    return tried.returncode == 0


@pytest.mark.skipif(not _in_a_pid_namespace(), reason="needs cpio and unshare (a PID namespace)")
def test_a_hung_job_or_a_big_file_loses_only_itself(tmp_path: Path) -> None:
    """The guest's /init, run in a PID namespace of its own (its kill -9 -1 kills nothing else) and chrooted
    into the initramfs folder: the hung job is killed at its timeout, the big file is cut, the rest comes back."""
    try:
        ram_guest.busybox()
    except ram_guest.RamGuestError:
        pytest.skip("no static busybox here")
    sources = {
        "hang": "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n",
        "big": "#include <stdio.h>\nint main(void) { for (int i = 0; i < 1 << 20; i++) putchar('x'); return 0; }\n",
        "fine": '#include <stdio.h>\nint main(void) { puts("ok"); return 0; }\n',
    }
    jobs = []
    for name, source in sources.items():
        (tmp_path / f"{name}.c").write_text(source)
        subprocess.run(["cc", "-o", name, f"{name}.c"], cwd=tmp_path, check=True)
        jobs.append(
            {**PROGRAM, "program": f"09-khttpd/{name}", "binary": str(tmp_path / name), "args": [], "timeout": 1}
        )
    ram_guest.make_initramfs(jobs, tmp_path / "guest")
    root = tmp_path / "guest" / "root"
    # The lines that need a kernel of their own: mounts, the kernel's log, the network, the power-off.
    host_safe = [
        line
        for line in (root / "init").read_text().splitlines()
        if not line.startswith(("mount ", "dmesg -n", "ip link", "poweroff"))
    ]
    # The guest's devtmpfs: the host's /dev, bound in a mount namespace of the test's own.
    inside = f'mount --bind /dev {shlex.quote(str(root / "dev"))} && exec chroot {shlex.quote(str(root))} "$@"'
    ran = subprocess.run(
        [
            "unshare",
            "-p",
            "-f",
            "--kill-child",
            "-m",
            "sh",
            "-c",
            inside,
            "sh",
            "/bin/busybox",
            "sh",
            "-c",
            "\n".join(host_safe),
        ],
        capture_output=True,
        text=True,
        timeout=30,  # the namespace dies with unshare (--kill-child)
    )
    read = ram_guest.read_back(ran.stdout)
    hung, big, fine = ram_guest.job_results(jobs, read)
    assert hung["exit_status"] == 137, "killed (SIGKILL) at its one-second timeout"
    # Stopped at the launcher's limit (SIGXFSZ: 128 + 25), what it wrote up to there back, and the cut said.
    assert big["exit_status"] == 153 and len(big["stdout"]) == ram_guest.FILE_LIMIT_BYTES
    assert big["ended"] == "exited with 153; its stdout passed the guest's limit of 256 KiB and was cut", big["ended"]
    assert fine["ok"] and fine["stdout"] == "ok\n"
    assert read["guest"]["release"].strip()


def test_a_folder_left_by_a_killed_run_goes_on_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from course.kernel import vm
    from course.results.layout import Layout

    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True).stdout.strip()
    parent = tmp_path / "build" / "vm"
    left = parent / f"ram-{dead}-abc"  # a run killed by SIGKILL never removed it
    (left / "root").mkdir(parents=True)
    alive = parent / f"ram-{os.getpid()}-xyz"  # another boot of this process, still running
    alive.mkdir()
    seen: list[str] = []

    def booted(command: list[str], timeout: float, on_line) -> tuple[int, str]:
        seen.extend(path.name for path in parent.iterdir())
        return 0, ""

    monkeypatch.setattr(vm, "require_qemu", lambda: None)
    monkeypatch.setattr(vm, "_run", booted)
    monkeypatch.setattr(ram_guest, "make_initramfs", lambda jobs, folder, *launchers: folder / "none")

    class Kernel:
        image = Path("/boot/vmlinuz")

    ram_guest.run_jobs(Layout(tmp_path, build_dir=tmp_path / "build"), Kernel(), [], lambda line: None)  # type: ignore[arg-type]
    assert not left.exists() and alive.exists()
    assert any(name.startswith(f"ram-{os.getpid()}-") and name != alive.name for name in seen), seen
    assert sorted(path.name for path in parent.iterdir()) == [alive.name], "its own folder removed at its end"


def test_the_guest_from_memorys_folder_is_made_as_every_boots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """vm.new_run_folder's three steps (parent, stale-run clean-up, mkdtemp), so its choice of parent too: a build
    folder whose path has a space puts the boot's folder in a plain temp folder, named for the guest from memory;
    the launcher is still compiled once, in the build folder."""
    from course.kernel import kernel_build, vm
    from course.results.layout import Layout

    layout = Layout(tmp_path, build_dir=tmp_path / "a build" / "build")
    packed: list[tuple[Path, Path | None]] = []

    def pack(jobs: list[dict], folder: Path, launchers: Path | None = None) -> Path:
        packed.append((folder, launchers))
        return folder / "none"

    monkeypatch.setattr(vm, "require_qemu", lambda: None)
    monkeypatch.setattr(vm, "_run", lambda command, timeout, on_line: (0, ""))
    monkeypatch.setattr(ram_guest, "make_initramfs", pack)

    class Kernel:
        image = Path("/boot/vmlinuz")

    ram_guest.run_jobs(layout, Kernel(), [], lambda line: None)  # type: ignore[arg-type]
    ((folder, launchers),) = packed
    assert folder.parent == Path(kernel_build.plain_temp()) and folder.name.startswith(f"course-vm-ram-{os.getpid()}-")
    assert launchers == layout.build / "vm" / "launcher" and not folder.exists()


def test_each_job_of_a_tcg_boot_takes_the_time_between_its_announcement_and_the_next() -> None:
    results = [{"program": "a", "seconds": 0.0}, {"program": "b", "seconds": 0.0}, {"program": "c", "seconds": 0.0}]
    timed = ram_guest.with_seconds(results, {0: 10.0, 1: 12.5, 2: 13.0}, 20.0)
    assert [result["seconds"] for result in timed] == [2.5, 0.5, 7.0]
    assert ram_guest.with_seconds(results, {1: 12.5}, 13.0)[0]["seconds"] == 0.0, "never announced: untimed"
    # A program printed "[3/3]" while job 0 ran: that announcement is dropped (job 2 untimed), no time negative.
    forged = ram_guest.with_seconds(results, {0: 10.0, 1: 12.5, 2: 11.0}, 20.0)
    assert all(result["seconds"] >= 0 for result in forged), forged
