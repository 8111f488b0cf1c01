"""The guest from memory's launcher: a program's or insmod's standard input and open files, of each kind.

On the host and in a virtme-ng guest the course's Python opens them (``course.measure.runners``:
``stdin_of_kind``, ``files_of_kinds``). The guest from memory has no Python, only busybox, so
this small C program does the same there, kind for kind: a pseudo-terminal, a small file, an
empty pipe and one end of a socket pair whose other ends it keeps open and silent, ``/dev/null``,
``/dev/zero``; the program's own descriptors are listed in ``COURSE_FILES`` as ``stamp.h`` reads
them. It waits for the program and exits with its status. It is compiled statically, once per
source, into the build folder, and packed into the initramfs.

A program runs as the user the guest's init names (its first argument): each job has a uid and gid
of its own (:data:`course.kernel.ram_guest.JOB_UID_BASE` plus its index), with no supplementary group,
so that it can write neither the guest's tools, nor another job's files, nor what the init records
of another job. The launcher opens the files as root, then its child drops to that user
(``setgroups``, ``setgid``, ``setuid``, each checked, and checked again by reading the ids back and
by a ``setuid(0)`` that must fail) before it runs the program. ``root`` keeps root: the module loads,
which need ``CAP_SYS_MODULE``, and the traced program, which writes to ftrace's files.

It also loads the modules (``--load KO PARAMS...`` in place of a program): one ``finit_module()``,
as kmod's ``insmod`` does on the host and in a virtme-ng guest. Busybox's ``insmod`` would not do:
when ``finit_module()`` fails it tries ``init_module()`` with the same file, so a module that
measures in its init and returns an error, as the course's do, would run, and print, twice.

A job's program also gets an IPC namespace of its own (its System V objects and POSIX message
queues end with it, none reaches the next job) and a limit on the size of the files it writes
(``RLIMIT_FSIZE``, :data:`RECORD_LIMIT_BYTES` and one byte): its standard output and error, which
the init records in the guest's memory, cannot fill it.

Its file lives in the job's own ``/tmp``, a tmpfs the guest's init mounts afresh for each job
(:func:`course.kernel.ram_guest.init_script`): its reads go through shmem's ``->read_iter``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

#: The kinds it opens, as course.measure.runners.stdin_of_kind names them.
KINDS = ("devnull", "file", "pipe", "tty", "zero", "socket")

#: What the small file holds: runners.stdin_of_kind's text, 8.6 KiB (lesson 7 reads up to 4 KiB of it).
FILE_TEXT = "A small disk file, read as standard input.\n" * 200

#: How much of each file the init records of a job comes back to the host (course.kernel.ram_guest); a job's
#: programs may write files of at most one byte more (RLIMIT_FSIZE), so that one output cannot fill the guest's
#: memory, and the host can tell an output that was cut.
RECORD_LIMIT_BYTES = 256 * 1024

#: Where the guest writes it: a folder of root's, which the guest's init makes before each job runs (on the
#: job's own fresh /tmp).
SCRATCH_PATH = "/tmp/course-scratch"
FILE_PATH = f"{SCRATCH_PATH}/stdin.txt"

#: How it is compiled: static (the guest has no libraries of its own for it), stripped.
CFLAGS = ("-static", "-O2", "-s", "-Wall")

SOURCE = r"""
/* course-launch: run a program with standard input and open files of the course's kinds. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char file_text[] = FILE_TEXT;

static void die(const char *what, const char *kind)
{
	fprintf(stderr, "course-launch: %s %s: %s\n", what, kind, strerror(errno));
	exit(126);
}

/* A descriptor of the kind for the program; the other end, if any, stays here (close-on-exec). */
static int open_kind(const char *kind)
{
	int fds[2], fd;

	if (!strcmp(kind, "devnull"))
		fd = open("/dev/null", O_RDONLY);
	else if (!strcmp(kind, "zero"))
		fd = open("/dev/zero", O_RDONLY);
	else if (!strcmp(kind, "file")) {
		struct stat folder;

		/* Root writes here: a folder of its own (the guest's init makes it before any job runs), */
		/* never one a job made in /tmp, nor a link a job left to make it write elsewhere. */
		mkdir(SCRATCH_PATH, 0755);
		if (lstat(SCRATCH_PATH, &folder) < 0 || !S_ISDIR(folder.st_mode) || folder.st_uid != geteuid()
			|| (folder.st_mode & 022)) {
			errno = EPERM;
			die("not our own folder for", kind);
		}
		fd = open(FILE_PATH, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (fd < 0 || write(fd, file_text, sizeof(file_text) - 1) != sizeof(file_text) - 1)
			die("cannot write", kind);
		close(fd);
		fd = open(FILE_PATH, O_RDONLY);
	} else if (!strcmp(kind, "pipe")) {
		/* The write end stays open and empty: a read never sees end-of-file. */
		if (pipe2(fds, O_CLOEXEC) < 0)
			die("cannot open", kind);
		fd = fds[0];
		fcntl(fd, F_SETFD, 0);
	} else if (!strcmp(kind, "socket")) {
		/* The other end stays open and silent, like the pipe's writer. */
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
			die("cannot open", kind);
		fd = fds[1];
		fcntl(fd, F_SETFD, 0);
	} else if (!strcmp(kind, "tty")) {
		int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);

		if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0)
			die("cannot open", kind);
		fd = open(ptsname(master), O_RDWR | O_NOCTTY);
	} else {
		errno = EINVAL;
		die("unknown kind of file", kind);
	}
	if (fd < 0)
		die("cannot open", kind);
	return fd;
}

/* Load a module as kmod's insmod does: its parameters joined by spaces, one finit_module(), no second try. */
static int load(int argc, char **argv)
{
	char params[4096] = "";
	int fd, i;

	for (i = 1; i < argc; i++) {
		size_t used = strlen(params);
		int wrote = snprintf(params + used, sizeof(params) - used, "%s%s", used ? " " : "", argv[i]);

		if (wrote < 0 || (size_t)wrote >= sizeof(params) - used) {
			fprintf(stderr, "course-launch: the parameters of %s are too long\n", argv[0]);
			return 1;
		}
	}
	fd = open(argv[0], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || syscall(SYS_finit_module, fd, params, 0) != 0) {
		fprintf(stderr, "course-launch: could not insert module %s: %s\n", argv[0], strerror(errno));
		return 1;
	}
	return 0;
}

/* Become the job's user for good: no group of root's kept, no way back (each step checked, then the result). */
static void drop_to(uid_t id, const char *program)
{
	gid_t groups[1];

	if (setgroups(0, NULL) < 0 || setgid(id) < 0 || setuid(id) < 0)
		die("cannot drop root's rights for", program);
	if (getuid() != id || geteuid() != id || getgid() != id || getegid() != id || getgroups(1, groups) != 0
		|| setuid(0) == 0) {
		errno = EPERM;
		die("still has root's rights for", program);
	}
}

/* The user a program runs as: "root", or a uid of a job's own (a number from 1 to 65533). */
static int user_of(const char *word, uid_t *id)
{
	char *end;
	unsigned long number;

	if (!strcmp(word, "root")) {
		*id = 0;
		return 0;
	}
	errno = 0;
	number = strtoul(word, &end, 10);
	if (errno || end == word || *end || word[0] < '1' || word[0] > '9' || number > 65533)
		return -1;
	*id = number;
	return 0;
}

int main(int argc, char **argv)
{
	char listed[512] = "", *kinds, *kind;
	int fd, status;
	pid_t child;
	uid_t user;

	if (argc < 6 || strcmp(argv[4], "--") || user_of(argv[1], &user) < 0) {
		fprintf(stderr, "usage: course-launch root|UID STDIN FILES|- -- PROGRAM [ARG...] | --load MODULE [PARAM...]\n");
		return 2;
	}
	argv++;
	argc--;
	fd = open_kind(argv[1]);
	if (dup2(fd, 0) < 0)
		die("cannot make standard input of", argv[1]);
	if (fd != 0)
		close(fd);
	kinds = strcmp(argv[2], "-") ? argv[2] : NULL;
	for (kind = kinds ? strtok(kinds, ",") : NULL; kind; kind = strtok(NULL, ",")) {
		size_t used = strlen(listed);

		fd = open_kind(kind);
		snprintf(listed + used, sizeof(listed) - used, "%s%s=%d", used ? " " : "", kind, fd);
	}
	if (listed[0] && setenv("COURSE_FILES", listed, 1) < 0)
		die("cannot set", "COURSE_FILES");
	child = fork();
	if (child < 0)
		die("cannot fork for", argv[4]);
	if (child == 0) {
		/* What the init records of the job (its standard output and error) stops growing at the limit: */
		/* one byte past what the host reads back, so that the host can tell it was cut. */
		struct rlimit record = { RECORD_LIMIT + 1, RECORD_LIMIT + 1 };

		if (setrlimit(RLIMIT_FSIZE, &record) < 0)
			die("cannot limit the output of", argv[4]);
		/* A job's System V objects and POSIX message queues end with it: an IPC namespace of its own, */
		/* made while it is root, gone when its last process is. */
		if (user != 0 && unshare(CLONE_NEWIPC) < 0)
			die("cannot give an IPC namespace of its own to", argv[4]);
		if (user != 0)
			drop_to(user, argv[4]);
		if (!strcmp(argv[4], "--load"))
			_exit(argc > 5 ? load(argc - 5, argv + 5) : 2);
		execv(argv[4], argv + 4);
		die("cannot run", argv[4]);
	}
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			die("cannot wait for", argv[4]);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
"""


#: A kernel matrix packs its kernels' guests in threads of one process: one compiles, the others wait for it.
_compiling = threading.Lock()


class LauncherError(RuntimeError):
    """The launcher could not be compiled; the message says why."""


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def compiled(folder: Path) -> Path:
    """The launcher, compiled statically into ``folder`` (once per source and file text)."""
    defines = [
        f"-DFILE_TEXT={_c_string(FILE_TEXT)}",
        f"-DFILE_PATH={_c_string(FILE_PATH)}",
        f"-DSCRATCH_PATH={_c_string(SCRATCH_PATH)}",
        f"-DRECORD_LIMIT={RECORD_LIMIT_BYTES}",
    ]
    digest = hashlib.sha256("\0".join([SOURCE, *CFLAGS, *defines]).encode()).hexdigest()[:16]
    binary = folder / f"course-launch-{digest}"
    with _compiling:
        if not binary.is_file():
            _compile(folder, binary, defines)
    return binary


def _compile(folder: Path, binary: Path, defines: list[str]) -> None:
    """Compiled in a folder of this process's own, then renamed into place: another run may compile it too.

    Stripped (``-s``), and from a source of the same name wherever it is built: a symbol table naming
    the file would make the launcher another size in another checkout, and the guest another boot.
    """
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{binary.name}.", dir=folder))
    source, partial = scratch / "course-launch.c", scratch / "course-launch"
    source.write_text(SOURCE)
    made = subprocess.run(
        ["gcc", *CFLAGS, *defines, "-o", "course-launch", "course-launch.c"],
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if made.returncode == 0:
        partial.replace(binary)
    shutil.rmtree(scratch, ignore_errors=True)
    if made.returncode != 0:
        raise LauncherError(f"gcc could not build the guest's launcher (static libc: libc6-dev): {made.stderr[:300]}")
