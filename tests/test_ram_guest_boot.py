"""The guest from memory runs every kind of job of the icount lessons, and a second boot counts the same.

Under ``tcg-icount`` every kernel lesson's guest work (lesson 4's module with each kind of standard
input, the user-space programs with their open files, lesson 2's trace) runs in one boot of
course.kernel.ram_guest per kernel; lesson 9 (``boot = "own"``) in one of its own. Two real boots
here, with small sample counts (the second stopped where the trace, compared with nothing, begins), a job
among them that tries to write what no job may (the guest's tools, another job's files and records), and two
that look for what one job leaves the next (a tree in /tmp too deep for ``rm -rf``, System V and POSIX IPC
objects) and write more than the guest keeps; then lesson 9 alone, as a student reruns it, against the
matrix's set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from course.kernel import guest_launcher, kernel_build, ram_guest
from course.measure import build, lessons, protocol
from course.results import store
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]

KINDS = ["tty", "file", "devnull", "pipe", "zero", "socket"]


def test_every_job_of_the_icount_lessons_goes_to_the_guest_from_memory() -> None:
    program = {"lesson": "04-kernel-read", "lessons": ["04-kernel-read", "06-skipping-layers"], "binary": "/b/u"}
    jobs = [
        {**program, "stdin": "devnull", "files": KINDS},
        {"lesson": "04-kernel-read", "module": "ksystime", "ko": "/b/k.ko", "stdin": "socket"},
        {"lesson": "02-read-path", "trace": "trace", "binary": "/b/t", "files": KINDS, "graph": ["x"]},
        {"lesson": "09-khttpd", "module": "khttpd", "ko": "/b/h.ko", "client": "/b/s", "client_args": []},
    ]
    assert ram_guest.lessons_in_memory(jobs) == {"02-read-path", "04-kernel-read", "06-skipping-layers", "09-khttpd"}
    odd = {"lesson": "06-skipping-layers", "module": "ksyslayers", "ko": "/b/l.ko", "stdin": "fifo"}
    assert ram_guest.lessons_in_memory([*jobs, odd]) == {"02-read-path", "09-khttpd"}, (
        "a kind the launcher cannot open keeps its lesson in virtme-ng, and the lesson sharing a program with it"
    )


def test_kernels_side_by_side_compile_one_launcher_between_them(tmp_path: Path) -> None:
    """A kernel matrix packs each kernel's guest in a thread of one process: one launcher, none left half-made."""
    made: list[Path] = []
    threads = [threading.Thread(target=lambda: made.append(guest_launcher.compiled(tmp_path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 3 and len(set(made)) == 1 and made[0].is_file()
    assert [path.name for path in tmp_path.iterdir()] == [made[0].name], "no source or partial binary left"
    opened = subprocess.run(
        [str(made[0]), "root", "pipe", "tty,file,socket", "--", "/bin/sh", "-c", 'echo "$COURSE_FILES"'],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert opened.returncode == 0 and re.fullmatch(r"tty=\d+ file=\d+ socket=\d+\n", opened.stdout), opened
    # Another process in another folder (another checkout) makes the same bytes: else its guest is another boot.
    elsewhere = tmp_path.parent / f"{tmp_path.name}-another-checkout" / "launcher"
    code = f"import pathlib, course.kernel.guest_launcher as g; g.compiled(pathlib.Path({str(elsewhere)!r}))"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=Path(__file__).parents[1])
    (other,) = elsewhere.iterdir()
    assert other.read_bytes() == made[0].read_bytes()


@pytest.mark.skipif(os.geteuid() != 0, reason="the launcher drops root's rights: run as root, as in the guest")
def test_the_launcher_runs_a_program_as_the_user_it_is_given_with_no_way_back(tmp_path: Path) -> None:
    """The files are opened as root, then the program runs as the job's uid and gid, with no group of root's."""
    launcher = str(guest_launcher.compiled(tmp_path))
    script = 'id -u; id -g; id -G; head -c 7 <&"${COURSE_FILES##*file=}"; echo; (: >>/etc/hostname) 2>/dev/null'
    script += " || echo refused"
    ran = subprocess.run(
        [launcher, "4242", "devnull", "tty,file", "--", "/bin/sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.returncode == 0 and ran.stdout.splitlines() == ["4242", "4242", "4242", "A small", "refused"], ran
    for user in ("0", "-1", "+5", "65534", "12x", ""):  # root is said "root"; nobody's uid and junk are refused
        refused = subprocess.run([launcher, user, "devnull", "-", "--", "/bin/true"], capture_output=True, timeout=30)
        assert refused.returncode == 2 and b"usage" in refused.stderr, user


def _kernel_ready() -> bool:
    try:
        kernel_build.find_kernel()
        ram_guest.busybox()
    except (kernel_build.KernelError, ram_guest.RamGuestError):
        return False
    return all(shutil.which(tool) for tool in ("qemu-system-x86_64", "cpio", "make", "gcc"))


#: What a job tries that it must not be able to do (busybox's sh, as the probe job between the program and the module
#: loads, its uid JOB_UID_BASE + 1): write the guest's tools and init, another job's files and records (before and
#: after it), load a module, hard-link root's file where it may write. Run as root, every one but the first two
#: (busy: ETXTBSY) is done. A write opens for appending and writes
#: nothing, so that a defect shows in the test without breaking the jobs after it.
FORBIDDEN = {
    "/bin/busybox": ": >>/bin/busybox",
    "/bin/course-launch": ": >>/bin/course-launch",
    "/bin/new": ": >/bin/new",
    "/init": ": >>/init",
    "/job/0/usystime": ": >>/job/0/usystime",
    "/job/1/new": ": >/job/1/new",
    "/job/4/ksystime.ko": ": >>/job/4/ksystime.ko",
    "/job/10/readtrace": ": >>/job/10/readtrace",
    "/job/9": "mkdir /job/9",
    "/out": "ls /out",
    "/out/0/stdout": ": >>/out/0/stdout",
    "/out/1/stdout": ": >>/out/1/stdout",
    "/out/2": "mkdir /out/2",
    "/tmp/course-scratch/stdin.txt": ": >>/tmp/course-scratch/stdin.txt",
    "/etc/hostname": ": >>/etc/hostname",
    # Refused for want of the right, not for the module's init returning an error, as it does for root.
    "insmod": "! insmod /job/4/ksystime.ko samples=1 2>&1 | grep -q 'not permitted'",
    "/tmp/hard-link": "ln /job/0/usystime /tmp/hard-link",
}
PROBE = "id -u; id -g; id -G; : >/tmp/mine && echo wrote /tmp/mine\n" + "".join(
    f"if ({command}) 2>/dev/null >&2; then echo wrote {name}; else echo refused {name}; fi\n"
    for name, command in FORBIDDEN.items()
)


#: A job's leftovers (uid JOB_UID_BASE + 2: ``leave``) and the next job's look for them (+ 3: ``look``), which then
#: writes 2 MiB to its standard output, eight times what the guest keeps of it (ram_guest.FILE_LIMIT_BYTES).
LEFTOVERS = r"""
#include <dirent.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <string.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY 0x636f7572
#define QUEUE "/course-left"

int main(int argc, char **argv)
{
	static char name[201], block[65536];
	struct mq_attr attr = { .mq_maxmsg = 1, .mq_msgsize = 16 };
	struct dirent *entry;
	DIR *tmp;

	if (argc > 1 && !strcmp(argv[1], "leave")) {
		memset(name, 'd', 200);
		if (chdir("/tmp") || mkdir("deep", 0755) || chdir("deep"))
			return 1;
		for (int i = 0; i < 30; i++)  /* 30 * 201 bytes: past PATH_MAX, where busybox's rm -rf stops */
			if (mkdir(name, 0755) || chdir(name))
				return 2;
		if (open("secret", O_WRONLY | O_CREAT, 0644) < 0)
			return 3;
		if (msgget(KEY, IPC_CREAT | 0666) < 0 || shmget(KEY, 4096, IPC_CREAT | 0666) < 0
			|| semget(KEY, 1, IPC_CREAT | 0666) < 0 || mq_open(QUEUE, O_CREAT | O_RDWR, 0666, &attr) < 0)
			return 4;
		puts("left");
		return 0;
	}
	tmp = opendir("/tmp");
	printf("tmp:");
	while (tmp && (entry = readdir(tmp)))
		if (entry->d_name[0] != '.' && strcmp(entry->d_name, "course-scratch"))
			printf(" %s", entry->d_name);
	printf("\nmsg: %s\nshm: %s\nsem: %s\nmq: %s\n", msgget(KEY, 0) < 0 ? "none" : "left",
		shmget(KEY, 0, 0) < 0 ? "none" : "left", semget(KEY, 0, 0) < 0 ? "none" : "left",
		mq_open(QUEUE, O_RDONLY) < 0 ? "none" : "left");
	fflush(stdout);
	memset(block, 'x', sizeof(block));
	for (long left = 32 * sizeof(block), wrote; left > 0; left -= wrote)  /* a short write: on to the next */
		if ((wrote = write(1, block, left < (long)sizeof(block) ? left : (long)sizeof(block))) <= 0)
			return 5;
	return 0;
}
"""


def _jobs(layout: Layout, kernel: kernel_build.GuestKernel) -> list[dict]:
    """Lesson 3's empty reads with every kind open, a job that tries what it must not, one that leaves what it can
    and one that looks for it, lesson 4's module with each kind of input, lesson 2's trace."""
    catalog = {lesson.name: lesson for lesson in lessons.discover(layout)}
    usystime = build.build_program(layout, catalog["03-timing"], "usystime")
    readtrace = build.build_program(layout, catalog["02-read-path"], "readtrace")
    lesson_4 = catalog["04-kernel-read"]
    module = next(module for module in lesson_4.modules if module.name == "ksystime")
    ko = kernel_build.build_module(layout, lesson_4, module, kernel).ko
    trace = next(spec for spec in catalog["02-read-path"].traces)
    program = {"lesson": "04-kernel-read", "lessons": ["04-kernel-read"], "program": "03-timing/usystime"}
    helper = layout.build / "leftovers"
    helper.parent.mkdir(parents=True, exist_ok=True)
    helper.with_suffix(".c").write_text(LEFTOVERS)
    subprocess.run(["cc", "-O2", "-o", str(helper), str(helper.with_suffix(".c"))], check=True, timeout=120)
    return [
        {**program, "binary": str(usystime.binary), "args": ["200"], "stdin": "devnull", "files": KINDS},
        {**program, "program": "probe", "binary": str(ram_guest.busybox()), "args": ["sh", "-c", PROBE]},
        {**program, "program": "leftovers", "binary": str(helper), "args": ["leave"]},
        {**program, "program": "leftovers", "binary": str(helper), "args": ["look"]},
        *(
            {"lesson": "04-kernel-read", "module": "ksystime", "ko": str(ko), "params": ["samples=200"], "stdin": kind}
            for kind in KINDS
        ),
        {
            "lesson": "02-read-path",
            "trace": "trace",
            "program": "02-read-path/readtrace",
            "binary": str(readtrace.binary),
            "files": KINDS,
            "graph": list(trace.graph),
            "notrace": list(trace.notrace),
            "timeout": 60,
        },
    ]


class _LastJobReached(Exception):
    """The guest announced its last job: the boot is stopped there (QEMU is killed as the boot's block is left)."""


def _boot_until_the_last_job(layout: Layout, kernel: kernel_build.GuestKernel, jobs: list[dict]) -> str:
    """The console of a boot of ram_guest.run_jobs, until the last job begins."""
    lines: list[str] = []

    def until_the_last(line: str) -> None:
        lines.append(line)
        if line.startswith(f"course-guest: [{len(jobs)}/{len(jobs)}] "):
            raise _LastJobReached

    with pytest.raises(_LastJobReached):
        ram_guest.run_jobs(layout, kernel, jobs, lambda line: None, timeout=600, on_line=until_the_last)
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@pytest.mark.skipif(not _kernel_ready(), reason="needs a guest kernel with headers, QEMU, busybox-static, cpio")
def test_two_boots_from_memory_run_every_kind_of_job_and_count_the_same(course_root: Path, tmp_path: Path) -> None:
    layout = Layout(course_root, results_dir=tmp_path / "results", build_dir=tmp_path / "build")
    kernel = kernel_build.find_kernel()
    jobs = _jobs(layout, kernel)
    assert ram_guest.lessons_in_memory(jobs) == {"02-read-path", "04-kernel-read"}
    boot = ram_guest.run_jobs(layout, kernel, jobs, lambda line: None, timeout=600)
    assert boot.exit_status == 0 and len(boot.jobs) == len(jobs), boot.console[-3000:]
    program, probe, leaver, looker, *loads, trace = boot.jobs
    assert program["ok"], program["stderr"]
    assert leaver["ok"] and leaver["stdout"] == "left\n", leaver
    # Nothing of the job before reached this one (its /tmp a tmpfs of its own, its IPC objects in a namespace
    # of its own); its 2 MiB output stopped at the guest's limit (SIGXFSZ: 128 + 25), and the host says so.
    found = (looker["stdout"].split("\n")[:5], looker["ended"], len(looker["stdout"]))
    assert found == (
        ["tmp:", "msg: none", "shm: none", "sem: none", "mq: none"],
        "exited with 153; its stdout passed the guest's limit of 256 KiB and was cut",
        ram_guest.FILE_LIMIT_BYTES,
    ), found[:2]
    # The probe ran as a user of its own: none of what it must not do could it do, and it could write in /tmp.
    uid = str(ram_guest.JOB_UID_BASE + 1)
    assert probe["ok"] and probe["stdout"].splitlines() == [uid, uid, uid, "wrote /tmp/mine"] + [
        f"refused {name}" for name in FORBIDDEN
    ], probe["stdout"] + probe["stderr"]
    read = protocol.parse(program["stdout"])
    assert {f"read.{kind}" for kind in KINDS} <= set(read.measurements), "every kind was open in the guest"
    for load in loads:  # init measures and returns an error: nothing stays loaded (as root, after the probe)
        parsed = protocol.parse(load["log"])
        assert parsed.meta.get("done") == "1", load["log"][-2000:]
        # One load: busybox's insmod would try init_module() after the failed finit_module(), measuring twice.
        assert load["log"].count("course: meta done=1") == 1 and load["exit_status"] != 0, load["insmod_output"]
        assert "read-iter" in parsed.measurements or "read-iter" in parsed.skipped, load["stdin"]
    assert trace["ok"] and trace["graph"] and "shmem_file_read_iter" in trace["trace_text"], (
        "the small file lies on a tmpfs, the job's own /tmp"
    )
    # Two boots of one initramfs are one boot: every sample of every figure repeats, not only the medians.
    # The second stops where the trace, the last job (compared with nothing), begins: half of a boot's time.
    console = _boot_until_the_last_job(layout, kernel, jobs)
    again = ram_guest.job_results(jobs, ram_guest.read_back(console))
    assert len(again) == len(jobs) - 1, "the second boot ran every job before the trace"
    assert again[1]["stdout"] == probe["stdout"] and again[3]["stdout"] == looker["stdout"]
    measured = [boot.jobs[0], *loads]
    first = [job.get("stdout", "") + job.get("log", "") for job in measured]
    second = [job.get("stdout", "") + job.get("log", "") for job in [again[0], *again[4:]]]
    counted = [[line for line in text.splitlines() if "course: hist" in line] for text in first]
    assert all(counted) and counted == [
        [line for line in text.splitlines() if "course: hist" in line] for text in second
    ], "icount counts differ between two boots of the guest from memory"


@pytest.mark.slow
@pytest.mark.skipif(not _kernel_ready(), reason="needs a guest kernel with headers, QEMU, busybox-static, cpio")
def test_lesson_9_alone_counts_what_the_kernel_matrix_counted(lesson_9_twice: tuple[dict, dict]) -> None:
    """``invoke run --lesson 9 --acceleration tcg-icount`` (lesson 9 alone in its boot, as a student reruns it;
    the first of the two runs test_khttpd.py compares) gives the shipped matrix set's counts: the matrix boots
    lesson 9 from memory on its own too, with the very same jobs (lesson 9's exercise 1)."""
    kernel = kernel_build.find_kernel()
    shipped = store.read_json(ROOT / "results" / "qemu-icount-debian-6.1" / "09-khttpd.json")
    counted = {key: figure for key, figure in shipped["measurements"].items() if figure.get("status") == "ok"}
    if {figure["guest_kernel"] for figure in counted.values() if "guest_kernel" in figure} != {kernel.release}:
        pytest.skip(f"the shipped matrix set was counted on another 6.1 than this machine's {kernel.release}")
    (lesson_9,) = [lesson for lesson in lessons.discover(Layout(ROOT)) if lesson.name == "09-khttpd"]
    assert lesson_9.own_boot, 'lesson 9 says boot = "own"'
    run, _ = lesson_9_twice
    assert run["kernel_run"]["guest_kernel"] == kernel.release, run["kernel_run"]
    boots = [step["name"] for step in run["steps"] if "boot" in step["name"]]
    assert len(boots) == 1 and boots[0].startswith("vm boot from memory"), boots
    alone = run["measurements"]
    assert len(counted) >= 30, sorted(counted)  # the requests, calls, copies and savings of five servers
    figure = {key: _figure(alone.get(key, {})) for key in counted}
    differ = {
        key: (_figure(shipped_one), figure[key])
        for key, shipped_one in counted.items()
        if _figure(shipped_one) != figure[key]
    }
    assert not differ, f"lesson 9 alone and the matrix count differently (matrix, alone): {differ}"


def _figure(stored: dict) -> float | None:
    """What a page shows of a stored figure: a measurement's median, a derived figure's value."""
    return stored.get("median", stored.get("value"))
