"""A lab host's SSH session: connect with checked host keys, run a step under its timeout, say why it failed."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import select
import shlex
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from course.lab.options import DRAIN_SECONDS, KILL_GRACE, LOCAL_MARGIN, PID_FILE, TAIL_BYTES, TIMED_OUT, StepFailed
from course.publish import report
from course.results import archive

if TYPE_CHECKING:  # Fabric (and paramiko) load only when a lab runs
    from fabric import Connection


#: The longest a step's reader sleeps before it looks at its deadline and its drain again.
WAKE_SECONDS = 0.2
#: How long the reader naps when the channel says ready with nothing to read (a hostile host's empty packets).
IDLE_WAKE_SECONDS = 0.05
#: How many windows of output a host may have sent unread before the step fails: an SSH server sends one at most.
UNREAD_WINDOWS = 2


class SshSession:
    """What a host's job does over SSH; the job (:class:`course.lab.remote._HostJob`) holds the connection."""

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
            raise StepFailed(f"{self.run.step}: `{command}` failed on the host: {_last_line(result)}")
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
            self._start(channel, command)
            channel.shutdown_write()
            out, err = _Tail(), _Tail()
            deadline = time.monotonic() + seconds
            exited_at: float | None = None
            while True:
                # Every turn, output or not: a host that sends faster than this side reads (or past the window it
                # was granted, or after its end: paramiko takes it all the same) is never found silent otherwise.
                now = time.monotonic()
                if now > deadline:
                    raise _HostSilent(seconds)
                # ... and kept in memory: more than the window it granted unread is no SSH server's doing.
                unread = len(channel.in_buffer) + len(channel.in_stderr_buffer)
                if unread > UNREAD_WINDOWS * channel.in_window_size:
                    import paramiko

                    raise paramiko.SSHException(
                        f"the host sent past the window of {channel.in_window_size:,} bytes it was granted "
                        f"({unread:,} unread; no SSH server does): check what answers on its port"
                    )
                if channel.recv_ready():
                    out.add(channel.recv(32768))
                elif channel.recv_stderr_ready():
                    err.add(channel.recv_stderr(32768))
                elif channel.closed or (channel.eof_received and channel.exit_status_ready()):
                    break
                elif exited_at is not None and now > exited_at + DRAIN_SECONDS:
                    break  # something it left holds its output open: what came is enough
                elif channel.eof_received:  # its output ended before its exit status came: wait for that
                    channel.status_event.wait(WAKE_SECONDS)
                else:
                    if exited_at is None and channel.exit_status_ready():
                        exited_at = now
                    # Asleep until output arrives or the channel ends (paramiko's pipe behind fileno()), instead of
                    # waking every few milliseconds for each host of a lab; bounded, for the deadline and the drain.
                    woke = select.select([channel], [], [], WAKE_SECONDS)[0]
                    if woke and not (channel.recv_ready() or channel.recv_stderr_ready() or channel.eof_received):
                        # Paramiko sets its pipe for a data packet of no bytes, and only a read clears it: awake
                        # with nothing to read, the reader would spin (a core) until output came; it naps instead.
                        time.sleep(IDLE_WAKE_SECONDS)
            if not channel.exit_status_ready():
                raise EOFError("the connection closed before the command ended")
            return _Answer(channel.recv_exit_status(), out.text(), err.text())
        finally:
            channel.close()

    def _start(self, channel: Any, command: str) -> None:
        """Ask the host to run ``command`` on ``channel``: paramiko waits for its answer without a limit, so a host
        that never answers gets its channel closed after the connect limit (which ends paramiko's wait)."""
        import paramiko

        limit = self.timeouts.connect
        gave_up = threading.Event()

        def give_up() -> None:
            gave_up.set()  # before the close: the wait it ends may raise while the timer's thread still runs
            channel.close()

        closer = threading.Timer(limit, give_up)
        closer.start()
        try:
            channel.exec_command(command)
        except paramiko.SSHException as error:
            if gave_up.is_set():  # it was the timer that closed the channel
                raise _HostSilent(limit) from error
            raise
        finally:
            closer.cancel()

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
            raise StepFailed(f"{step} timed out after {limit} s (stopped on the host)")
        if result.exited != 0 and result.exited not in allowed:
            raise StepFailed(f"{step} failed (exit {result.exited}): {_last_line(result)}")
        return result.exited

    def _log(self, command: str, result: _Answer) -> None:
        """Everything the host printed, cleaned, in build/lab/<name>.log (the summary shows one line)."""
        assert self.run.log is not None
        with self.run.log.open("a", encoding="utf-8") as log:
            log.write(f"$ {command}\n(exit {result.exited})\n{cleaned(result.stdout, keep_lines=True)}")
            if result.stderr:
                log.write(f"--- stderr ---\n{cleaned(result.stderr, keep_lines=True)}")
            log.write("\n")

    def _why(self, error: BaseException) -> str:
        """One line saying why this host failed."""
        import paramiko

        step, host, limit = self.run.step, self.host, self.timeouts.connect
        if isinstance(error, StepFailed | _UnknownHostKey):
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
            return f"unreachable: unknown host name {host.host!r} ({cleaned(error.strerror or str(error))})"
        # Paramiko's words for a port that never shakes hands: no banner, or a negotiation that ran
        # out of time (then it says "No existing session").
        silent = "banner" in str(error) or "No existing session" in str(error)
        if isinstance(error, paramiko.SSHException) and self.connection is None and silent:
            return f"unreachable: no SSH server answered on port {host.port} within {limit:g} s"
        if isinstance(error, OSError | paramiko.SSHException | EOFError):
            return f"{step}: {type(error).__name__}: {cleaned(str(error))}"
        return f"{step}: unexpected {type(error).__name__}: {cleaned(str(error))} (a bug of the lab: please report it)"

    def connection_user(self) -> str:
        return self.connection.user if self.connection is not None else (self.host.user or "(the local user)")


#: A signal to a whole process group, in words that dash (Debian's sh) and bash both take:
#: dash reads ``kill -TERM -- -PGID`` as a bad number, ``kill -s TERM -- -PGID`` as meant.
_KILL_GROUP = 'kill -s {signal} -- "-{group}" 2>/dev/null'


def stop_step(pid_file: str) -> str:
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


def cleaned(text: str, keep_lines: bool = False, limit: int = 300) -> str:
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
            return cleaned(lines[-1])
    return "(it printed nothing)"
