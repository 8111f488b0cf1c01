"""``invoke lab``: hosts from the command line or an inventory, and a real lab over SSH.

The hosts are this machine: a throwaway ``sshd`` on 127.0.0.1 (Debian's openssh-server,
installed by ``invoke setup --tests``) with its own host and user keys, reached as two hosts
with different scratch folders and set names, beside a closed port and a port that never
speaks SSH. The remote steps are real (upload, ``invoke run --lesson 1 --kernel-runner none``,
``results.export``, download, import) except ``./bootstrap``: each host links this checkout's
``.venv`` instead (the inventory's ``venv`` test seam), so no test reinstalls from PyPI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from course import bench, commands, fingerprint, inventory, lab, store, validate
from course.inventory import Host, InventoryError
from course.layout import Layout
from course.local_sshd import LocalSshd, free_port

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"

#: Short limits: a test that hangs fails instead (the real defaults are in minutes).
TIMEOUTS = lab.Timeouts(connect=3, transfer=60, bootstrap=120, run=300, cleanup=30)

needs_sshd = pytest.mark.skipif(
    not any(Path(folder, "sshd").exists() for folder in ("/usr/sbin", "/usr/local/sbin")),
    reason="no sshd: install openssh-server (invoke setup --tests)",
)


# -- hosts and inventories ------------------------------------------------------------------------


def test_hosts_from_the_command_line() -> None:
    hosts = inventory.parse_hosts("root@pc-07.lab:2222, 10.0.0.8", user="student")
    assert [(h.host, h.user, h.port) for h in hosts] == [("pc-07.lab", "root", 2222), ("10.0.0.8", "student", 22)]
    assert hosts[0].address == "root@pc-07.lab:2222"
    assert hosts[1].set is None  # a host's set keeps its own name
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
    assert (second.user, second.port, second.folder, second.set) == ("student", 2222, "/var/tmp", None)
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
    assert lab._clean("error: \x1b[2J\x1b]0;owned\x07gone\n  next") == "error: ?[2J?]0;owned?gone next"
    assert len(lab._clean("x" * 1000)) == 300


def test_the_upload_is_the_committed_tree_without_results(tmp_path: Path) -> None:
    commit, _ = lab.committed_tree(ROOT, tmp_path / "tree.tar.gz")
    assert len(commit) == 40
    with tarfile.open(tmp_path / "tree.tar.gz") as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert "tasks.py" in members and "course/archive.py" in members
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


def _until(condition, seconds: float = 15.0):
    """Wait (bounded) for ``condition()`` to be falsy; return its last value."""
    deadline = time.monotonic() + seconds
    while (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def _nothing_left(sshd: LocalSshd, folder: Path) -> None:
    assert _until(lambda: _processes_in(folder)) == []
    left = _until(lambda: [_describe(pid) for pid in sshd.sessions() if not _zombie(pid)])
    assert left == []  # every client went, and with it everything the sessions ran


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone
    return stat[stat.rindex(")") + 2] == "Z"


def _describe(pid: int) -> str:
    try:
        return f"{pid} " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return f"{pid} (gone)"


@needs_sshd
@pytest.mark.slow
def test_a_lab_of_two_hosts_brings_both_sets_and_reports_the_failing_ones(
    sshd: LocalSshd, lab_layout: Layout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
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
        _host(sshd, remote / "e"),  # no set name: the host's own, which is this machine's (same machine)
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
    (failed,) = lab.run_lab(lab_layout, [_host(sshd, remote, set="lab-run")], _options(sshd, lessons=[99])).hosts
    assert failed.step == "run"
    assert failed.failure.startswith("run failed (exit 2): error: ") and "99" in failed.failure
    assert not failed.imported and not (lab_layout.results / "lab-run").exists()
    assert list(remote.iterdir()) == []
    _nothing_left(sshd, remote)


@needs_sshd
def test_a_step_that_times_out_is_stopped_on_the_host(sshd: LocalSshd, lab_layout: Layout, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    options = _options(sshd, keep=True, timeouts=lab.Timeouts(connect=3, transfer=60, bootstrap=120, run=1))
    (slow,) = lab.run_lab(lab_layout, [_host(sshd, remote, set="lab-slow")], options).hosts
    assert slow.step == "run"
    assert slow.failure == "run timed out after 1 s (stopped on the host)"
    (kept,) = list(remote.iterdir())  # --keep: the scratch folder stays, with the tree in it
    assert (kept / "tasks.py").is_file() and (kept / "bootstrap").is_file()
    _nothing_left(sshd, remote)
    assert not (lab_layout.results / "lab-slow").exists()
    assert slow.log is not None and "invoke run --lesson 1" in slow.log.read_text()


@needs_sshd
@pytest.mark.slow
def test_the_bench_times_a_lab_of_one_host_and_of_two(scratch_layout: Layout) -> None:
    lines: list[str] = []
    found = bench.lab_speed(scratch_layout, progress=lines.append)["bench/lab.two-hosts-over-one"]
    assert found["status"] == "ok", found
    one, two = found["runs"]
    assert one > 0 and two > 0 and found["value"] == round(two / one, 2) and found["goal"] == bench.LAB_GOAL
    validate.check_measurement("bench/lab.two-hosts-over-one", found)  # as bench.json stores it
    assert any("two hosts" in line for line in lines)
