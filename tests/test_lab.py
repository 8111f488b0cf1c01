"""``invoke lab``: hosts from the command line or an inventory, and a real lab over SSH.

The hosts are this machine: a throwaway ``sshd`` on 127.0.0.1 (Debian's openssh-server,
installed by ``invoke setup --tests``) with its own host and user keys, reached as two hosts
with different scratch folders and set names, beside a closed port and a port that never
speaks SSH. The remote steps are real (upload, ``invoke run --lesson 1 --kernel-runner none``,
``results.export``, download, import) except ``./bootstrap``: each host links this checkout's
``.venv`` instead (the inventory's ``venv`` test seam), so no test reinstalls from PyPI. Where a
test looks at the lab rather than at what a host measured, the host's ``invoke run`` stores a set
of lesson 1 measured once here (``measured_set``) instead of measuring again.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import alive, gone_within, until

from course import bench, bench_speed, commands
from course.lab import inventory, ssh
from course.lab import options as lab_options
from course.lab import remote as lab
from course.lab.inventory import Host, InventoryError
from course.lab.local_sshd import LocalSshd, free_port
from course.results import fingerprint, store, validate
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"

#: Short limits: a test that hangs fails instead (the real defaults are in minutes).
TIMEOUTS = lab_options.Timeouts(connect=3, transfer=60, bootstrap=120, run=300, cleanup=30)

needs_sshd = pytest.mark.skipif(
    not any(Path(folder, "sshd").exists() for folder in ("/usr/sbin", "/usr/local/sbin")),
    reason="no sshd: install openssh-server (invoke setup --tests)",
)


# -- hosts and inventories ------------------------------------------------------------------------


def test_hosts_from_the_command_line() -> None:
    hosts = inventory.parse_hosts("root@pc-07.lab:2222, 10.0.0.8", user="student")
    assert [(h.host, h.user, h.port) for h in hosts] == [("pc-07.lab", "root", 2222), ("10.0.0.8", "student", 22)]
    assert hosts[0].address == "root@pc-07.lab:2222"
    assert hosts[1].set == "10.0.0.8"  # a host's set is named after the host
    assert [(h.host, h.port) for h in inventory.parse_hosts("[::1]:2222,::1")] == [("::1", 2222), ("::1", 22)]
    for bad in ("-oProxyCommand=x", "pc:port", "pc:70000", ","):
        with pytest.raises(InventoryError):
            inventory.parse_hosts(bad)


def test_an_inventory_with_defaults_sets_and_labels(tmp_path: Path) -> None:
    (tmp_path / "lab_key").write_text("not really a key")
    path = tmp_path / "lab.yaml"
    path.write_text(
        "defaults:\n  user: root\n  key: lab_key\n"
        "hosts:\n"
        "  - host: pc-07.lab\n    set: Lab PC 7\n    label: Lab PC 7\n"
        "  - host: pc-08.lab\n    port: 2222\n    user: student\n    folder: /var/tmp/\n"
        "  - pc-09.lab\n"
    )
    first, second, third = inventory.load(path)
    assert (first.user, first.key, first.set, first.label) == ("root", tmp_path / "lab_key", "lab-pc-7", "Lab PC 7")
    assert (second.user, second.port, second.folder, second.set) == ("student", 2222, "/var/tmp", "pc-08.lab-2222")
    assert (third.host, third.user, third.folder) == ("pc-09.lab", "root", "/tmp")
    assert inventory.names([first, second, third]) == ["lab-pc-7", "pc-08.lab-2222", "pc-09.lab"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("hosts: []\n", "expected `hosts:`"),
        ("hosts:\n  - host: a\n    sets: x\n", "unknown keys ['sets']"),
        ("hosts:\n  - host: a\n    port: ssh\n", "is not a number"),
        ("hosts:\n  - host: a\n    key: missing_key\n", "no key file"),
        ("hosts:\n  - host: a\n    folder: tmp\n", "must be an absolute path"),
        ("hosts:\n  - user: root\n", "is not a host name"),
        ("defaults:\n  set: x\nhosts: [a]\n", "cannot give `host` or `set`"),
        ("hosts: [a\n", "is not valid YAML"),
    ],
)
def test_a_bad_inventory_says_what_to_fix(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    with pytest.raises(InventoryError) as raised:
        inventory.load(path)
    assert says in str(raised.value)


def test_the_lab_needs_hosts_one_way_only(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="either --hosts"):
        inventory.from_arguments(None, None, None, None)
    with pytest.raises(InventoryError, match="either --hosts"):
        inventory.from_arguments("a", str(tmp_path / "lab.yaml"), None, None)


def test_same_host_twice_gets_two_names() -> None:
    hosts = [Host("127.0.0.1", port=2222), Host("127.0.0.1", port=2222), Host("pc", set="lab-a")]
    assert inventory.names(hosts) == ["127.0.0.1-2222", "127.0.0.1-2222-2", "lab-a"]


def test_what_a_host_prints_never_drives_the_terminal() -> None:
    assert ssh.cleaned("error: \x1b[2J\x1b]0;owned\x07gone\n  next") == "error: \\x1b[2J\\x1b]0;owned\\x07gone next"
    assert len(ssh.cleaned("x" * 1000)) == 300
    assert ssh.cleaned("a\u202eb\rc\n", keep_lines=True) == "a\\u202eb\\rc\n"


def test_the_upload_is_the_committed_tree_without_results(tmp_path: Path) -> None:
    commit, _ = lab.committed_tree(ROOT, tmp_path / "tree.tar.gz")
    assert len(commit) == 40
    with tarfile.open(tmp_path / "tree.tar.gz") as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert "tasks.py" in members and "course/results/archive.py" in members
    assert members["bootstrap"].mode & 0o111  # still executable on the host
    assert not [name for name in members if name.split("/")[0] in ("results", "build", ".venv")]
    with pytest.raises(lab.LabError, match="git clone"):
        lab.committed_tree(tmp_path, tmp_path / "none.tar.gz")


def test_the_task_says_which_host_failed_and_exits_non_zero(tmp_path: Path) -> None:
    env = {**os.environ, "INVOKE_COURSE_RESULTS": str(tmp_path / "results"), "INVOKE_COURSE_BUILD": str(tmp_path)}
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "lab", "--hosts", f"127.0.0.1:{port}", "--timeout", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"lab: 1 of 1 hosts failed:\n127.0.0.1:{port} (127.0.0.1-{port}): unreachable" in done.stderr
    assert "connection refused" in done.stderr
    assert "FAILED" in done.stdout  # the summary table
    for wrong, says in ((["--kernel-runner", "vmm"], "unknown kernel runner"), (["--lessons", "99"], "99")):
        refused = subprocess.run(
            [sys.executable, "-m", "invoke", "lab", "--hosts", f"127.0.0.1:{port}", *wrong],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 2 and says in refused.stderr and "lab  " not in refused.stdout, refused.stderr
    neither = subprocess.run(
        [sys.executable, "-m", "invoke", "lab"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert neither.returncode == 2 and "either --hosts" in neither.stderr


# -- a lab over SSH -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSshd]:
    daemon = LocalSshd(tmp_path_factory.mktemp("sshd"))
    with daemon:
        yield daemon
    assert daemon.process is None


@pytest.fixture
def lab_layout(tmp_path: Path) -> Layout:
    layout = Layout(ROOT, results_dir=tmp_path / "results", build_dir=tmp_path / "build")
    shutil.copytree(ROOT / "results" / "reference-2000", layout.results / "reference-2000")
    return layout


def _host(sshd: LocalSshd, folder: Path, **fields) -> Host:
    folder.mkdir(parents=True, exist_ok=True)
    given = {"user": sshd.user, "port": sshd.port, "key": sshd.user_key, "venv": str(VENV), **fields}
    return Host("127.0.0.1", folder=str(folder), **given)


def _options(sshd: LocalSshd, **fields) -> lab.LabOptions:
    given = {"lessons": [1], "kernel_runner": "none", "known_hosts": sshd.known_hosts, "timeouts": TIMEOUTS}
    return lab.LabOptions(**{**given, **fields})


def _misbehaving_venv(folder: Path, **tasks: str) -> str:
    """A host's environment whose ``invoke`` first runs ``tasks[task]`` (shell words), then the real task.

    A host that misbehaves on purpose: ``run="sleep 4444 &"`` leaves a process behind,
    ``run="exit 3"`` fails, and so on (``results_export`` stands for ``results.export``).
    Its ``invoke setup --check`` (the seam's bootstrap) passes at once unless ``setup`` says
    otherwise: the hosts that link this checkout's own ``.venv`` check the packages for real.
    """
    tasks = {"setup": "exit 0", **tasks}
    (folder / "bin").mkdir(parents=True)
    cases = "".join(f"  {name.replace('_', '.')}) {words} ;;\n" for name, words in tasks.items())
    script = f'#!/bin/sh\ncase "$1" in\n{cases}esac\nexec {shlex.quote(str(VENV / "bin" / "invoke"))} "$@"\n'
    (folder / "bin" / "invoke").write_text(script)
    (folder / "bin" / "invoke").chmod(0o755)
    return str(folder)


@pytest.fixture(scope="module")
def measured_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A set of lesson 1 measured here once (``invoke run --lesson 1 --kernel-runner none``, as a host runs it), for
    hosts whose test looks at the lab, not at a measurement: their run step copies it (:func:`_stand_in_run`)."""
    scratch = tmp_path_factory.mktemp("measured")
    env = {**os.environ, "INVOKE_COURSE_RESULTS": str(scratch / "results"), "INVOKE_COURSE_BUILD": str(scratch)}
    command = [sys.executable, "-m", "invoke", "run", "--lesson", "1", "--kernel-runner", "none", "--set", "lab-1"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert store.load_set(scratch / "results" / "lab-1").lessons["01-user-kernel"]["measurements"]
    return scratch / "results" / "lab-1"


def _stand_in_run(measured: Path) -> str:
    """Shell words for a host's ``invoke run`` that store ``measured`` as the set the run would have made (the one
    ``--set`` names, else ``INVOKE_COURSE_SET``, else the host's own), then end: the other steps stay real."""
    own = shlex.quote(fingerprint.set_name())
    return (
        f'name=${{INVOKE_COURSE_SET:-{own}}}; prev=; for word in "$@"; do [ "$prev" = --set ] && name=$word; '
        f'prev=$word; done; mkdir -p results && cp -R {shlex.quote(str(measured))} "results/$name" && exit 0'
    )


def _processes_in(folder: Path) -> list[str]:
    """Processes whose working folder is inside ``folder``: what a step left behind on the "host"."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cwd = os.readlink(entry / "cwd") if entry.name.isdigit() else ""
        except OSError:
            continue
        if cwd == str(folder) or cwd.startswith(f"{folder}/"):
            found.append(_describe(int(entry.name)))
    return found


def _nothing_left(sshd: LocalSshd, folder: Path) -> None:
    assert until(lambda: _processes_in(folder)) == []
    left = until(lambda: [_describe(pid) for pid in sshd.sessions() if alive(pid)])
    assert left == []  # every client went, and with it everything the sessions ran


def _describe(pid: int) -> str:
    try:
        return f"{pid} " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return f"{pid} (gone)"


@needs_sshd
def test_the_test_sshd_ends_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    """A test run killed by a timeout (SIGKILL, no teardown) leaves no daemon listening behind."""
    starter = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from course.lab.local_sshd import LocalSshd\n"
        "daemon = LocalSshd(Path(sys.argv[1])).start()\n"
        "print(daemon.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", starter, str(tmp_path / "sshd")], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        daemon = int(process.stdout.readline())
        assert alive(daemon)  # it was listening
    finally:
        process.kill()
        process.wait(timeout=30)
    assert gone_within(daemon, 15.0), f"sshd {daemon} outlived the process that started it"


@needs_sshd
@pytest.mark.slow
def test_a_lab_of_two_hosts_brings_both_sets_and_reports_the_failing_ones(
    sshd: LocalSshd, lab_layout: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str], measured_set: Path
) -> None:
    remote = tmp_path / "remote"
    silent = socket.socket()  # accepts connections and never says a word: no SSH banner
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    closed = free_port()
    hosts = [
        _host(sshd, remote / "a", set="lab-a"),
        _host(sshd, remote / "b", set="lab-b", label="Lab B"),
        _host(sshd, remote / "c", port=closed, set="lab-c"),
        _host(sshd, remote / "d", port=silent.getsockname()[1], set="lab-d"),
        # No set name: the host's own, which is this machine's (same machine); only its import is looked at.
        _host(sshd, remote / "e", venv=_misbehaving_venv(tmp_path / "venv-e", run=_stand_in_run(measured_set))),
    ]
    try:
        outcome = commands.lab(lab_layout, hosts, _options(sshd))
    finally:
        silent.close()
    printed = capsys.readouterr().out

    assert sorted(outcome.imported) == ["lab-a", "lab-b"]
    for name in ("lab-a", "lab-b"):
        result_set = store.load_set(lab_layout.results / name)
        assert result_set.lessons["01-user-kernel"]["measurements"], name
        assert result_set.info.get("imported"), "imported as results.import imports"
        assert (lab_layout.build / "lab" / f"{name}.tar.gz").is_file()  # the archive is kept
        assert (lab_layout.html / "docs" / "machines" / f"{name}.html").is_file()  # and the site shows it
        assert name in (lab_layout.html / "docs" / "machines.html").read_text()
    assert store.load_set(lab_layout.results / "lab-b").label == "Lab B"

    assert not outcome.ok
    lines = outcome.failure_lines()
    assert len(lines) == 3, lines
    assert f"127.0.0.1:{closed}" in lines[0] and "connection refused" in lines[0]
    assert "no SSH server answered" in lines[1]
    own = fingerprint.set_name()
    assert f"its set {own!r} has this machine's own set name" in lines[2]
    assert not (lab_layout.results / own).exists()
    assert "lab-a" in printed and "lab-b" in printed and "FAILED" in printed and "site built" in printed
    for run in outcome.hosts[:2]:
        assert run.lessons == 1 and run.seconds > 0

    for folder in ("a", "b", "c", "d", "e"):
        assert list((remote / folder).iterdir()) == [], f"scratch folder left in {folder}"
    _nothing_left(sshd, remote)


@needs_sshd
def test_host_keys_are_checked_and_a_new_one_is_accepted_only_when_asked(
    sshd: LocalSshd, lab_layout: Layout, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    # A venv that is not there: the host fails at bootstrap, after the key was checked.
    host = _host(sshd, tmp_path / "remote", set="lab-keys", venv="/nonexistent/venv")

    (refused,) = lab.run_lab(lab_layout, [host], _options(sshd, known_hosts=known)).hosts
    assert refused.step == "connect"
    assert f"of [127.0.0.1]:{sshd.port} is not in {known}" in refused.failure
    assert "--accept-new-host-keys" in refused.failure
    assert known.read_text() == ""

    (accepted,) = lab.run_lab(lab_layout, [host], _options(sshd, known_hosts=known, accept_new_host_keys=True)).hosts
    assert accepted.step == "bootstrap" and "bootstrap failed" in accepted.failure
    assert known.read_text().startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    assert (tmp_path / "remote").is_dir() and list((tmp_path / "remote").iterdir()) == []

    # A key that differs from the known one is refused, even when new keys may be accepted.
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30)
    kind, key = Path(f"{other}.pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    (changed,) = lab.run_lab(lab_layout, [host], _options(sshd, known_hosts=known, accept_new_host_keys=True)).hosts
    assert changed.step == "connect" and "host key differs" in changed.failure
    _nothing_left(sshd, tmp_path / "remote")


@needs_sshd
def test_a_key_the_host_refuses_is_reported(sshd: LocalSshd, lab_layout: Layout, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True, timeout=30)
    host = _host(sshd, tmp_path / "remote", key=stranger, set="lab-stranger")
    (refused,) = lab.run_lab(lab_layout, [host], _options(sshd)).hosts
    assert refused.step == "connect"
    assert f"the host refused user {sshd.user} with key {stranger}" in refused.failure


@needs_sshd
def test_a_run_that_fails_is_reported_in_the_hosts_words(sshd: LocalSshd, lab_layout: Layout, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    venv = _misbehaving_venv(tmp_path / "venv")  # the real run, after a bootstrap that passes at once
    host = _host(sshd, remote, set="lab-run", venv=venv)
    (failed,) = lab.run_lab(lab_layout, [host], _options(sshd, lessons=[99])).hosts
    assert failed.step == "run"
    assert failed.failure.startswith("run failed (exit 2): error: ") and "99" in failed.failure
    assert not failed.imported and not (lab_layout.results / "lab-run").exists()
    assert list(remote.iterdir()) == []
    _nothing_left(sshd, remote)


@needs_sshd
def test_a_step_that_times_out_is_stopped_on_the_host(sshd: LocalSshd, lab_layout: Layout, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    options = _options(sshd, keep=True, timeouts=lab_options.Timeouts(connect=3, transfer=60, bootstrap=120, run=1))
    venv = _misbehaving_venv(tmp_path / "venv", run="sleep 4446")  # a run that would outlast any limit
    (slow,) = lab.run_lab(lab_layout, [_host(sshd, remote, set="lab-slow", venv=venv)], options).hosts
    assert slow.step == "run"
    assert slow.failure == "run timed out after 1 s (stopped on the host)"
    (kept,) = list(remote.iterdir())  # --keep: the scratch folder stays, with the tree in it
    assert (kept / "tasks.py").is_file() and (kept / "bootstrap").is_file()
    _nothing_left(sshd, remote)
    assert not (lab_layout.results / "lab-slow").exists()
    assert slow.log is not None and "invoke run --lesson 1" in slow.log.read_text()


@needs_sshd
def test_the_lab_bench_interleaves_its_labs_and_divides_their_medians(
    scratch_layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run is a lab of one host then one of two, each lab's hosts with sets of their own; the ratio is of the
    medians, so one lab slowed by the machine (9 s here) moves nothing. The labs stand in: their seconds are set."""
    seconds = iter([2.0, 3.0, 9.0, 3.1, 2.2, 30.0])  # one, two, one, two, one, two
    clock = [0.0]
    labs: list[list[str]] = []

    def stand_in_lab(layout: Layout, hosts: list[Host], options: object, progress: object = None) -> object:
        labs.append([host.set for host in hosts])
        clock[0] += next(seconds)
        return type("Outcome", (), {"ok": True})()

    monkeypatch.setattr(bench_speed.lab, "run_lab", stand_in_lab)
    monkeypatch.setattr(bench_speed, "time", type("Clock", (), {"monotonic": staticmethod(lambda: clock[0])}))
    found = bench.lab_speed(scratch_layout, progress=lambda line: None, warm_up=False, runs=3)
    record = found["bench/lab.two-hosts-over-one"]
    assert [len(hosts) for hosts in labs] == [1, 2, 1, 2, 1, 2]
    assert len({name for hosts in labs for name in hosts}) == 9, "every host of every lab stores a set of its own"
    assert record["runs"] == [2.2, 3.1] and record["value"] == pytest.approx(3.1 / 2.2, abs=0.01)
    assert "medians of 3 labs each" in record["runs_unit"]


@needs_sshd
def test_a_quiet_step_is_waited_for_asleep_not_polled(
    sshd: LocalSshd, lab_layout: Layout, tmp_path: Path, measured_set: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host that says nothing for 4 s wakes its reader a few times for it (output, its end, the deadline), not
    every few milliseconds: a lab of sixty hosts waits on sixty channels. Each turn of the reader asks the channel
    whether output is ready, so the turns are counted there: the lab's other steps take some 30-40 on a loaded
    machine, polling every 20 ms took 200 for the silence alone."""
    from paramiko import Channel

    turns: list[float] = []
    real = Channel.recv_ready
    monkeypatch.setattr(Channel, "recv_ready", lambda channel: turns.append(time.monotonic()) or real(channel))
    venv = _misbehaving_venv(tmp_path / "venv", run=f"sleep 4; {_stand_in_run(measured_set)}")
    host = _host(sshd, tmp_path / "remote", set="lab-quiet", venv=venv)
    (done,) = lab.run_lab(lab_layout, [host], _options(sshd)).hosts
    assert done.ok, done.failure
    assert len(turns) < 100, f"{len(turns)} turns of the reader for a lab whose run step is 4 s of silence"


@needs_sshd
@pytest.mark.slow
def test_the_bench_times_a_lab_of_one_host_and_of_two(
    scratch_layout: Layout, tmp_path: Path, measured_set: Path
) -> None:
    lines: list[str] = []
    # No warm-up lab, and each host stores the set measured once here: only the record's shape and its ratio's
    # arithmetic are checked, not its figure against the goal.
    venv = _misbehaving_venv(tmp_path / "venv", run=_stand_in_run(measured_set))
    found = bench.lab_speed(scratch_layout, progress=lines.append, warm_up=False, venv=venv)
    found = found["bench/lab.two-hosts-over-one"]
    assert found["status"] == "ok", found
    one, two = found["runs"]
    # The ratio is of the unrounded seconds; the runs are stored to the hundredth.
    assert one > 0 and two > 0 and found["goal"] == bench_speed.LAB_GOAL
    assert found["value"] == pytest.approx(two / one, abs=0.02)
    validate.check_measurement("bench/lab.two-hosts-over-one", found)  # as bench.json stores it
    assert any("two hosts" in line for line in lines)


@needs_sshd
def test_what_a_step_leaves_running_ends_with_the_step(
    sshd: LocalSshd, lab_layout: Layout, tmp_path: Path, measured_set: Path
) -> None:
    """Debian's sh is dash: the group kill must be in words it takes (``kill -s TERM -- -PGID``)."""
    remote = tmp_path / "remote"
    # A duration no other test sleeps: the check looks at every process on the machine (one that left the host's
    # folder too), and must not count another test's leftovers.
    venv = _misbehaving_venv(tmp_path / "venv", run=f"sleep 4447 & {_stand_in_run(measured_set)}")
    (run,) = lab.run_lab(lab_layout, [_host(sshd, remote, set="lab-left", venv=venv)], _options(sshd)).hosts
    assert run.ok and run.imported, run.failure
    assert not [line for line in _processes_everywhere() if "sleep 4447" in line]
    _nothing_left(sshd, remote)


def test_a_step_cannot_have_no_time_limit() -> None:
    # `timeout 0 ...` on the host would never stop the step: a zero or negative limit is refused.
    for seconds in (0, -60, float("nan"), float("inf")):
        with pytest.raises(lab.LabError, match="positive number of seconds"):
            lab_options.Timeouts(run=seconds)


def _processes_everywhere() -> list[str]:
    return [_describe(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


@needs_sshd
@pytest.mark.slow
def test_a_host_that_prints_300_mb_costs_what_a_quiet_one_does(
    sshd: LocalSshd, lab_layout: Layout, tmp_path: Path, measured_set: Path
) -> None:
    """Only a bounded tail of a step's output comes back: this process's CPU time and memory stay a quiet host's."""

    def lab_of(name: str, run: str) -> tuple[lab.HostRun, float, int]:
        venv = _misbehaving_venv(tmp_path / f"venv-{name}", run=f"{run}; {_stand_in_run(measured_set)}")
        host = _host(sshd, tmp_path / f"remote-{name}", set=f"lab-{name}", venv=venv)
        tracemalloc.reset_peak()
        cpu = time.process_time()
        (done,) = lab.run_lab(lab_layout, [host], _options(sshd)).hosts
        return done, time.process_time() - cpu, tracemalloc.get_traced_memory()[1]

    tracemalloc.start()
    try:
        quiet, quiet_cpu, quiet_memory = lab_of("quiet", "true")
        # 300 MB of lines on standard output and error, then the set (both hosts store the one measured here).
        loud, loud_cpu, loud_memory = lab_of(
            "loud", "yes 'flood of a host' | head -c 150000000; yes | head -c 150000000 >&2"
        )
    finally:
        tracemalloc.stop()
    assert quiet.ok and loud.ok, (quiet.failure, loud.failure)
    assert loud_cpu < 2 * quiet_cpu + 1.0, (loud_cpu, quiet_cpu)
    assert loud_memory < 2 * quiet_memory + 2 * lab_options.TAIL_BYTES, (loud_memory, quiet_memory)
    assert loud.log is not None and loud.log.stat().st_size < 20 * lab_options.TAIL_BYTES
    assert "bytes before these are in" in loud.log.read_text()
    assert not (quiet.log and "bytes before these" in quiet.log.read_text())


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@needs_sshd
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_lab_stops_every_host_cleans_up_and_prints_the_summary(
    sshd: LocalSshd, tmp_path: Path, number: signal.Signals
) -> None:
    remote = tmp_path / "remote"
    venv = _misbehaving_venv(tmp_path / "venv", run="sleep 4444 & sleep 4445")
    hosts = [_host(sshd, remote / name, set=f"lab-{name}", venv=venv) for name in ("a", "b")]
    lines = [f"  - host: 127.0.0.1\n    port: {h.port}\n    user: {h.user}\n    key: {h.key}\n" for h in hosts]
    extra = [f"    set: {h.set}\n    folder: {h.folder}\n    venv: {h.venv}\n" for h in hosts]
    (tmp_path / "lab.yaml").write_text("hosts:\n" + "".join(a + b for a, b in zip(lines, extra, strict=True)))
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "reference-2000", results / "reference-2000")
    before = _tree(results)
    env = {**os.environ, "INVOKE_COURSE_RESULTS": str(results), "INVOKE_COURSE_BUILD": str(tmp_path / "build")}
    command = [sys.executable, "-m", "invoke", "lab", "--inventory", str(tmp_path / "lab.yaml")]
    command += ["--lessons", "1", "--kernel-runner", "none", "--known-hosts", str(sshd.known_hosts)]
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        try:
            # Both hosts are in their run step (a sleep that would last an hour), with a process left beside it.
            assert not until(lambda: len([p for p in _processes_in(remote) if "sleep 4445" in p]) < 2, 120)
            process.send_signal(number)
            assert process.wait(timeout=90) == 130
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    printed = (tmp_path / "out").read_text()
    assert "interrupted during run" in printed and "host" in printed.splitlines()[-4], printed  # the summary
    assert "interrupted: every host's step was stopped" in (tmp_path / "err").read_text()
    _nothing_left(sshd, remote)
    assert list((remote / "a").iterdir()) == [] and list((remote / "b").iterdir()) == []
    assert _tree(results) == before
    assert not [path.name for path in (tmp_path / "build" / "lab").iterdir() if path.name.startswith(".")]


@needs_sshd
def test_a_download_cut_short_leaves_no_partial_file(
    sshd: LocalSshd, lab_layout: Layout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lab, "DOWNLOAD_CHUNK", 512)  # slow enough to be interrupted half-way
    # No lesson is measured (the run step succeeds at once): only the download of the host's archive is looked at.
    venv = _misbehaving_venv(
        tmp_path / "venv", run="exit 0", results_export='head -c 8000000 /dev/urandom > "$3"; exit 0'
    )
    folder = lab.lab_folder(lab_layout)
    main = threading.main_thread().ident
    assert main is not None

    def interrupt_when_a_part_appears() -> None:
        if not until(lambda: not (folder.is_dir() and list(folder.glob(".*.part"))), 120):
            signal.pthread_kill(main, signal.SIGINT)

    watcher = threading.Thread(target=interrupt_when_a_part_appears)
    watcher.start()
    try:
        outcome = lab.run_lab(lab_layout, [_host(sshd, tmp_path / "remote", set="lab-part", venv=venv)], _options(sshd))
    finally:
        watcher.join()
    (run,) = outcome.hosts
    assert outcome.interrupted and run.failure == "interrupted during download"
    assert not list(folder.glob(".*"))
    _nothing_left(sshd, tmp_path / "remote")


#: 358 bytes that expand to 9**9 strings when a loader follows every alias ("billion laughs").
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"{y}: &{y} [{','.join([f'*{x}'] * 9)}]\n" for x, y in zip("abcdefgh", "bcdefghi", strict=True))
    + "hosts:\n  - host: pc\n    set: *i\n"
)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (ALIAS_BOMB, "uses a YAML alias"),
        ("hosts:\n  - host: pc\n    set: [1, 2]\n", "set must be a text, not a list"),
        ("hosts:\n  - host: {a: b}\n", "host must be a text, not a dict"),
        ("hosts:\n  - host: pc\n    label: " + "x" * 5000 + "\n", "label must be a short text"),
        ("hosts:\n  - host: pc\n    user: '" + "u" * 5000 + "'\n", "is not a user name"),
        ("hosts: [" + "x" * (2 * inventory.MAX_BYTES) + "]\n", "over 1024 KiB"),
    ],
)
def test_an_inventory_is_read_with_bounds_and_its_values_checked_before_shown(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    started = time.process_time()
    with pytest.raises(InventoryError) as raised:
        inventory.load(path)
    assert says in str(raised.value) and len(str(raised.value)) < 400, str(raised.value)[:500]
    assert time.process_time() - started < 5


def test_an_inventory_that_is_not_a_file_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "INVOKE_COURSE_RESULTS": str(tmp_path / "results"), "INVOKE_COURSE_BUILD": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "lab", "--inventory", "/dev/zero"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        done.returncode == 2
        and done.stderr == "error: the inventory /dev/zero is not a regular file; give a YAML file (lab.yaml)\n"
    )


@needs_sshd
def test_a_hosts_error_output_is_escaped_and_a_carriage_return_hides_nothing(
    sshd: LocalSshd, lab_layout: Layout, tmp_path: Path
) -> None:
    venv = _misbehaving_venv(
        tmp_path / "venv", run="printf 'evil \\342\\200\\256txt\\nreal error\\rall fine\\n' >&2; exit 3"
    )
    (run,) = lab.run_lab(
        lab_layout, [_host(sshd, tmp_path / "remote", set="lab-bidi", venv=venv)], _options(sshd)
    ).hosts
    assert run.failure == "run failed (exit 3): real error\\rall fine"
    assert run.log is not None and "evil \\u202etxt" in run.log.read_text() and "\u202e" not in run.log.read_text()


@needs_sshd
def test_an_export_that_is_a_fifo_is_refused_as_such(sshd: LocalSshd, lab_layout: Layout, tmp_path: Path) -> None:
    # No lesson is measured (the run step succeeds at once): only the export's kind of file is looked at.
    venv = _misbehaving_venv(tmp_path / "venv", run="exit 0", results_export='mkfifo "$3"; exit 0')
    (run,) = lab.run_lab(
        lab_layout, [_host(sshd, tmp_path / "remote", set="lab-fifo", venv=venv)], _options(sshd)
    ).hosts
    assert run.step == "download" and "is a FIFO, not an archive" in run.failure, run.failure
    _nothing_left(sshd, tmp_path / "remote")


def test_an_unknown_host_name_is_said_so(lab_layout: Layout, tmp_path: Path) -> None:
    host = Host("no-such-host.invalid", folder=str(tmp_path))
    (run,) = lab.run_lab(lab_layout, [host], lab.LabOptions(lessons=[1], timeouts=TIMEOUTS)).hosts
    assert run.failure.startswith("unreachable: unknown host name 'no-such-host.invalid'"), run.failure


@needs_sshd
def test_known_hosts_markers_are_honoured_or_skipped_with_a_note(
    sshd: LocalSshd, lab_layout: Layout, tmp_path: Path
) -> None:
    host = _host(sshd, tmp_path / "remote", set="lab-markers", venv="/nonexistent/venv")
    kind, key = sshd.known_hosts.read_text().split()[1:3]
    known = tmp_path / "known_hosts"
    authority = f"@cert-authority *.lab.example {kind} {key}\n"
    known.write_text(authority + sshd.known_hosts.read_text())
    lines: list[str] = []
    (run,) = lab.run_lab(lab_layout, [host], _options(sshd, known_hosts=known), progress=lines.append).hosts
    assert run.step == "bootstrap", run.failure  # connected: the plain line was honoured
    assert any("skipped 1 @cert-authority line" in line for line in lines)

    known.write_text(f"@revoked [127.0.0.1]:{sshd.port} {kind} {key}\n" + sshd.known_hosts.read_text())
    (run,) = lab.run_lab(lab_layout, [host], _options(sshd, known_hosts=known, accept_new_host_keys=True)).hosts
    assert run.step == "connect" and "is marked @revoked in" in run.failure, run.failure
    _nothing_left(sshd, tmp_path / "remote")


@needs_sshd
def test_force_replaces_only_the_set_the_inventory_assigns_a_host(
    sshd: LocalSshd, lab_layout: Layout, tmp_path: Path, measured_set: Path
) -> None:
    victim = lab_layout.results / "lab-victim"
    shutil.copytree(lab_layout.results / "reference-2000", victim)
    before = _tree(victim)
    # A host without `set:` that names its set after one here.
    named = "export INVOKE_COURSE_SET=lab-victim"
    venv = _misbehaving_venv(tmp_path / "venv", run=f"{named}; {_stand_in_run(measured_set)}", results_export=named)
    (run,) = lab.run_lab(lab_layout, [_host(sshd, tmp_path / "remote", venv=venv)], _options(sshd, force=True)).hosts
    assert run.step == "import" and "--force replaces only the set the inventory assigns" in run.failure, run.failure
    assert _tree(victim) == before


def test_invoke_clean_keeps_the_labs_archives_and_logs(tmp_path: Path) -> None:
    layout = Layout(ROOT, results_dir=tmp_path / "results", build_dir=tmp_path / "build")
    kept = lab.lab_folder(layout)
    kept.mkdir(parents=True)
    (kept / "pc-07.log").write_text("what pc-07 printed\n")
    (kept / "pc-07.tar.gz").write_bytes(b"its archive")
    (layout.build / "html").mkdir()
    (layout.build / "html" / "index.html").write_text("<html>")
    (layout.build / "stamp").write_text("")
    commands.clean(layout)
    assert sorted(path.name for path in layout.build.iterdir()) == ["lab"]
    assert sorted(path.name for path in kept.iterdir()) == ["pc-07.log", "pc-07.tar.gz"]


def test_clashing_set_names_stop_the_lab_before_anything_runs(lab_layout: Layout) -> None:
    options = lab.LabOptions(lessons=[1], timeouts=TIMEOUTS)
    twice = inventory.parse_hosts("pc-07.lab.invalid,root@pc-07.lab.invalid")
    with pytest.raises(lab.LabError, match=r"would both bring set 'pc-07\.lab\.invalid'"):
        lab.run_lab(lab_layout, twice, options)
    with pytest.raises(lab.LabError, match="this machine's own"):
        lab.run_lab(lab_layout, [Host("pc", set=fingerprint.set_name())], options)
    shutil.copytree(lab_layout.results / "reference-2000", lab_layout.results / "pc-08.lab.invalid")
    with pytest.raises(lab.LabError, match=r"is here already .* pass --force"):
        lab.run_lab(lab_layout, inventory.parse_hosts("pc-08.lab.invalid"), options)
    assert not lab.lab_folder(lab_layout).exists() or not list(lab.lab_folder(lab_layout).iterdir())


@needs_sshd
def test_parallel_bounds_the_hosts_at_once(sshd: LocalSshd, lab_layout: Layout, tmp_path: Path) -> None:
    steps = tmp_path / "steps"
    venv = _misbehaving_venv(tmp_path / "venv", run=f"echo start >> {steps}; sleep 1; echo end >> {steps}; exit 0")
    hosts = [_host(sshd, tmp_path / "remote" / name, set=f"lab-{name}", venv=venv) for name in ("a", "b", "c")]
    outcome = lab.run_lab(lab_layout, hosts, _options(sshd, parallel=1))
    assert steps.read_text().split() == ["start", "end"] * 3  # one host at a time
    assert all(run.step == "export" for run in outcome.hosts)  # the run stored no set: each stops there
    _nothing_left(sshd, tmp_path / "remote")


def test_each_host_keeps_its_environment_between_runs(tmp_path: Path) -> None:
    """What the bootstrap step runs before ./bootstrap, in two scratch folders one after the other."""
    first, second = tmp_path / "course-lab.first", tmp_path / "course-lab.second"
    outputs = []
    for scratch in (first, second):
        scratch.mkdir()
        shutil.copy(ROOT / "requirements.lock", scratch)
        shutil.copy(ROOT / "pyproject.toml", scratch)
        done = subprocess.run(
            ["sh", "-c", lab.kept_venv(str(tmp_path))], cwd=scratch, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
        if scratch == first:  # as ./bootstrap stamps the packages it installed
            subprocess.run(
                "sha256sum requirements.lock pyproject.toml > .venv/.requirements.lock.sha256",
                shell=True,
                cwd=scratch,
                check=True,
            )
            shutil.rmtree(first)  # the lab removes a scratch folder at the end of each run
    kept = tmp_path / lab.KEPT_VENV
    assert (second / ".venv").resolve() == kept and (kept / "bin" / "python").exists()
    assert str(kept) in (kept / "bin" / "pip").read_text().splitlines()[0]  # its scripts name it, not a scratch folder
    assert lab.REUSED not in outputs[0] and lab.REUSED in outputs[1]
    (second / "requirements.lock").write_text("sphinx==0.1\n")  # a lock that changed: reinstalled
    (second / ".venv").unlink()
    again = subprocess.run(["sh", "-c", lab.kept_venv(str(tmp_path))], cwd=second, capture_output=True, text=True)
    assert lab.REUSED not in again.stdout


# -- a hostile host's SSH server: paramiko's, in this process, answering each command as a test scripts ----------


@pytest.fixture
def hostile_host() -> Iterator:
    """``connect(script)``: a step session whose host runs ``script(channel)`` for each command, in a thread
    (``None``: the host never answers the request to run it).

    A real SSH server (paramiko's) over a socket pair, so the step's reader meets the very packets a host
    can send, an empty data packet included; no sshd, no network.
    """
    import paramiko

    transports: list = []
    released = threading.Event()

    class Hostile(paramiko.ServerInterface):
        def __init__(self, script) -> None:
            self.script = script

        def get_allowed_auths(self, username: str) -> str:
            return "none"

        def check_auth_none(self, username: str) -> int:
            return paramiko.AUTH_SUCCESSFUL

        def check_channel_request(self, kind: str, chanid: int) -> int:
            return paramiko.OPEN_SUCCEEDED

        def check_channel_exec_request(self, channel, command: bytes) -> bool:
            if self.script is None:
                released.wait()
                return False
            threading.Thread(target=self.script, args=(channel,), daemon=True).start()
            return True

    def connect(script) -> ssh.SshSession:
        mine, theirs = socket.socketpair()
        server, client = paramiko.Transport(theirs), paramiko.Transport(mine)
        transports.extend([server, client])
        server.add_server_key(paramiko.RSAKey.generate(1024))
        started = threading.Thread(target=server.start_server, kwargs={"server": Hostile(script)}, daemon=True)
        started.start()
        client.start_client(timeout=10)
        client.auth_none("student")
        session = ssh.SshSession()
        session.connection = type("Connected", (), {"is_connected": True, "transport": client})()  # type: ignore[attr-defined]
        session.timeouts = TIMEOUTS  # type: ignore[attr-defined]
        return session

    yield connect
    released.set()
    for transport in transports:
        transport.close()


def _raw_data(channel, data: bytes = b"") -> None:
    """An SSH_MSG_CHANNEL_DATA as a hostile host sends it: of no bytes (valid, and paramiko marks the channel
    readable for it), or past the window the reader granted (paramiko takes it all the same)."""
    import paramiko

    message = paramiko.Message()
    message.add_byte(paramiko.common.cMSG_CHANNEL_DATA)
    message.add_int(channel.remote_chanid)
    message.add_string(data)
    channel.transport._send_user_message(message)


def test_an_empty_data_packet_does_not_make_the_reader_spin(hostile_host, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paramiko sets the channel's pipe for a data packet of no bytes, and only a read clears it: the reader
    must not wake again and again for it (a busy loop of one core, for as long as the step may take)."""
    from paramiko import Channel

    def script(channel) -> None:
        time.sleep(0.3)  # once the reader waits on the channel
        _raw_data(channel)
        time.sleep(1.5)
        channel.sendall(b"done\n")
        channel.send_exit_status(0)
        channel.shutdown_write()
        channel.close()

    session = hostile_host(script)
    turns: list[float] = []
    real = Channel.recv_ready
    monkeypatch.setattr(Channel, "recv_ready", lambda channel: turns.append(time.monotonic()) or real(channel))
    answer = session._exec("invoke run", 30)
    assert (answer.exited, answer.stdout) == (0, "done\n")
    assert len(turns) < 100, f"{len(turns)} turns of the reader in 1.8 s of a host that sent one empty packet"


def test_a_host_that_never_stops_sending_is_stopped_at_the_deadline(
    hostile_host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Output that arrives faster than it is read (a busy lab machine, a host that ignores the window it was
    granted) kept the reader reading past its deadline, for as long as the host went on (a hostile host: for
    ever); each turn looks at the deadline."""
    real = ssh._Tail.add
    monkeypatch.setattr(ssh._Tail, "add", lambda tail, data: time.sleep(0.01) or real(tail, data))  # a slow reader

    def script(channel) -> None:
        chunk, ends = b"y\n" * 16384, time.monotonic() + 4
        while time.monotonic() < ends and not channel.closed:
            _raw_data(channel, chunk)  # 6.5 MB/s, twice what the reader takes
            time.sleep(0.005)

    session = hostile_host(script)
    started = time.monotonic()
    with pytest.raises(ssh._HostSilent):
        session._exec("invoke run", 1.0)
    assert time.monotonic() - started < 4, "the step's deadline was 1 s"


def test_a_host_that_sends_past_its_window_is_stopped_before_it_fills_this_sides_memory(
    hostile_host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paramiko keeps whatever a host sends, past the window it granted: a host that ignores it, faster than the
    reader takes it (a busy lab machine), grew this side's memory without bound. More than twice the window unread
    is no SSH server's doing: the step fails, saying so."""
    import paramiko

    def script(channel) -> None:
        chunk = b"y\n" * 16384
        for _ in range(256):  # 8 MiB at once, four times the window
            if channel.closed:
                return
            try:
                _raw_data(channel, chunk)
            except EOFError:  # the reader gave up and closed the connection: what the test expects of it
                return
        channel.send_exit_status(0)
        channel.close()

    real = ssh._Tail.add
    monkeypatch.setattr(ssh._Tail, "add", lambda tail, data: time.sleep(0.01) or real(tail, data))  # a slow reader
    session = hostile_host(script)
    with pytest.raises(paramiko.SSHException, match="past the window"):
        session._exec("invoke run", 30)


def test_a_host_that_never_answers_the_request_to_run_a_command_is_given_up_on(
    hostile_host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paramiko waits for the host's answer to "exec" without a limit: a host that accepted the channel and never
    answered held its step (and the lab's end) for ever. The close that ends the wait is slowed here, as a loaded
    machine may slow it: the step must still say the host was silent, not that its channel closed."""
    import paramiko

    real_close = paramiko.Channel.close
    monkeypatch.setattr(paramiko.Channel, "close", lambda channel: (real_close(channel), time.sleep(0.5))[0])
    session = hostile_host(None)
    raised: list[BaseException] = []

    def step() -> None:
        try:
            session._exec("invoke run", 30)
        except BaseException as error:  # what the step raised is the test's finding
            raised.append(error)

    waiting = threading.Thread(target=step, daemon=True)
    waiting.start()
    waiting.join(TIMEOUTS.connect + 3)
    assert not waiting.is_alive(), f"still waiting for the host's answer {TIMEOUTS.connect + 3} s on"
    assert isinstance(raised[0], ssh._HostSilent) and raised[0].seconds == TIMEOUTS.connect
