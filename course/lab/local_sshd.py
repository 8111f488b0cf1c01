"""A throwaway ``sshd`` on 127.0.0.1, the "remote" of the lab's tests and of ``invoke bench``.

It listens on a free port with a host key and a user key of its own (made here, in a
folder of the caller's), without PAM and without touching ``/etc/ssh``, and logs in only
the user who started it (root in CI), whose commands skip bash's ~/.bashrc.
:meth:`LocalSshd.stop` ends the daemon and every process below it, so nothing it served
outlives it.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from course.lab.options import LabError
from course.results.child import die_with_parent

#: How long the daemon may take to answer on its port.
START_SECONDS = 10.0


def _sshd() -> str:
    # Not on a user's PATH (it lives in /usr/sbin), and sshd wants an absolute path (re-exec).
    found = shutil.which("sshd", path=os.pathsep.join(["/usr/sbin", "/usr/local/sbin", os.environ.get("PATH", "")]))
    if found is None:
        raise LabError("no sshd here: install Debian's openssh-server (invoke setup --tests)")
    return str(Path(found).resolve())


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (at the moment it is asked)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, from /proc (children of children included)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended while we looked
            continue
        # The command name, in parentheses, may hold spaces: the fields after its last ')' are fixed.
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


class LocalSshd:
    """``sshd -D -e`` on 127.0.0.1:``port``; ``known_hosts`` and ``user_key`` are what a client needs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.user = getpass.getuser()
        self.port = 0
        self.host_key = folder / "host_ed25519"
        self.user_key = folder / "user_ed25519"
        self.known_hosts = folder / "known_hosts"
        self.log = folder / "sshd.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> LocalSshd:
        self.folder.mkdir(parents=True, exist_ok=True)
        for key in (self.host_key, self.user_key):
            if not key.exists():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "course-lab-test", "-f", str(key)],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
        if os.geteuid() == 0:
            # sshd started as root wants its privilege separation folder (systemd makes it at boot).
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.port = free_port()
        config = self.folder / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.folder / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.user_key}.pub",
                    f"AllowUsers {self.user}",
                    "UsePAM no",
                    "PermitRootLogin yes",  # CI runs as root
                    "StrictModes no",  # the keys live in a temporary folder of whatever mode
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "Subsystem sftp internal-sftp",
                    "LogLevel INFO",
                    # bash (the user's login shell) sources ~/.bashrc for a command sshd runs only as a top-level
                    # shell (bash's shell.c, run_startup_files: `shell_level < 2`); SHLVL=1 makes it the second
                    # level. Here that rc is pyenv's init, ~0.1 CPU-s and ~0.3 s a command, some 7 commands a host:
                    # the lab's steps are what the tests and the bench time, not the user's start-up files.
                    "SetEnv SHLVL=1",
                    "",
                ]
            )
        )
        host_public = (self.host_key.with_name(self.host_key.name + ".pub")).read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_public[0]} {host_public[1]}\n")
        parent = os.getpid()
        with self.log.open("ab") as log:
            # A session of its own: a Ctrl-C at the terminal reaches the test, which stops it in order.
            # Should the test's process be killed before it can (a timeout's SIGKILL), the daemon ends too.
            self.process = subprocess.Popen(
                [_sshd(), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=lambda: die_with_parent(parent, signal.SIGTERM),
            )
        self._wait_until_it_answers()
        return self

    def _wait_until_it_answers(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise LabError(f"sshd ended at start (exit {self.process.returncode}): {self.log.read_text()[-500:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.settimeout(2)
                if sock.recv(4).startswith(b"SSH-"):
                    return
            time.sleep(0.1)
        self.stop()
        raise LabError(f"sshd did not answer on 127.0.0.1:{self.port} within {START_SECONDS:g} s")

    def sessions(self) -> list[int]:
        """The processes the daemon runs for its clients (none once every client has gone)."""
        return descendants(self.process.pid) if self.process and self.process.poll() is None else []

    def stop(self, seconds: float = 10.0) -> None:
        """End the daemon and everything below it; waits at most ``seconds``."""
        if self.process is None:
            return
        below = descendants(self.process.pid)
        for pid in [self.process.pid, *below]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=seconds)
        for pid in below:  # a session that ignored SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process = None

    def __enter__(self) -> LocalSshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
