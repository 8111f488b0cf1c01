"""Lesson 9: the servers answer byte for byte, the in-kernel one leaves nothing behind, icount repeats itself."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from course.kernel import guest_kernels, guest_records, kernel_build, kernel_guest, ram_guest
from course.measure import lessons, protocol
from course.measure.build import build_program
from course.measure.lesson_run import LessonRun
from course.publish import edition
from course.results.layout import Layout

SERVERS = ("read-write", "sendfile", "splice", "io_uring")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layout = Layout(ROOT, build_dir=tmp_path_factory.mktemp("build"))
    lesson = lessons.find(layout, 9)
    return build_program(layout, lesson, "serve", libs=("-luring",)).binary


@pytest.mark.parametrize("server", SERVERS)
def test_each_user_space_server_answers_every_request_and_counts_its_calls(serve: Path, server: str) -> None:
    finished = subprocess.run([str(serve), server, "50"], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    parsed = protocol.parse(finished.stdout)
    assert parsed.meta["answers_checked"] == "50", "the client compared all 50 answers with the page"
    calls = parsed.measurements[f"server-syscalls.{server}"]
    copied = parsed.measurements[f"server-copied.{server}"]
    assert calls.samples == copied.samples == parsed.measurements[f"request.{server}"].samples == 50
    # Counted by the server as it made its calls: the few each design needs, most of the time.
    usual = max(calls.counts, key=calls.counts.__getitem__)
    assert usual == {"read-write": 3, "sendfile": 3, "splice": 4, "io_uring": 1}[server]
    crossed = max(copied.counts, key=copied.counts.__getitem__)
    page_crosses = server in ("read-write", "io_uring")  # through a user buffer, or not at all
    assert (crossed > 4096) == page_crosses, f"{server} copied {crossed} bytes per request"


def test_the_batch_word_makes_both_sched_batch_with_fixed_addresses_and_says_so(serve: Path) -> None:
    """The guest's runs take "batch": their figures' metadata says how they ran; without the word, nothing changes."""
    finished = subprocess.run([str(serve), "read-write", "5", "batch"], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    parsed = protocol.parse(finished.stdout)
    assert parsed.meta["scheduling"] == "batch" and parsed.meta["addresses"] == "unrandomized"
    assert parsed.measurements["request.read-write"].samples == 5
    plain = protocol.parse(subprocess.run([str(serve), "read-write", "5"], capture_output=True, text=True).stdout)
    assert "scheduling" not in plain.meta, "without the word, the default scheduling"


def _wrong_server(listener: socket.socket, answers: list[bytes]) -> None:
    conn, _ = listener.accept()
    with conn:
        for answer in answers:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(1024)
            conn.sendall(answer)


def test_the_client_fails_on_a_single_wrong_byte(serve: Path, tmp_path: Path) -> None:
    """The byte-for-byte check can fail: a server that changes one byte of the second answer is caught."""
    page = tmp_path / "page.html"
    env = {**os.environ, "COURSE_KHTTPD_PAGE": str(page)}
    # The right answer, learned from a real server's page: the client writes it before connecting.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        answers: list[bytes] = []
        ready = threading.Event()

        def serve_once() -> None:
            ready.wait(10)
            _wrong_server(listener, answers)

        thread = threading.Thread(target=serve_once, daemon=True)
        thread.start()
        client = subprocess.Popen(
            [str(serve), "client", str(port), "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(100):
            if page.is_file() and page.stat().st_size == 2048:
                break
            threading.Event().wait(0.05)
        body = page.read_bytes()
        header = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2048\r\n\r\n"
        wrong = bytearray(body)
        wrong[1000] ^= 1
        answers += [header + body, header + bytes(wrong)]
        ready.set()
        out, err = client.communicate(timeout=60)
        thread.join(10)
    assert client.returncode == 1
    assert "1 of 2 answers differ from the page" in err
    assert "answers_checked" not in out, "no figure from a run whose answers were wrong"


def test_the_client_never_writes_through_what_it_finds_at_the_page_path(serve: Path, tmp_path: Path) -> None:
    """The page's path is in /tmp and the client may run as root: a symbolic link planted there is replaced,
    never followed (the file it points to keeps its bytes)."""
    victim = tmp_path / "victim"
    victim.write_text("not the page\n")
    page = tmp_path / "page.html"
    page.symlink_to(victim)
    with socket.socket() as closed:  # a port where nothing listens: the client writes the page, then fails
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        env = {**os.environ, "COURSE_KHTTPD_PAGE": str(page)}
        finished = subprocess.run(
            [str(serve), "client", str(port), "1"], env=env, capture_output=True, text=True, timeout=60
        )
    assert finished.returncode == 1 and "connect to 127.0.0.1" in finished.stderr
    assert victim.read_text() == "not the page\n", "the client wrote through the link"
    assert not page.is_symlink() and page.stat().st_size == 2048, "the page is a new file of its own"


def test_a_page_path_too_long_for_the_client_is_refused_not_cut(serve: Path, tmp_path: Path) -> None:
    """A path over the client's 255 bytes, cut short, would name another file: one line, nothing written."""
    folder = tmp_path / ("d" * (219 - len(str(tmp_path))))  # 220 bytes in all
    folder.mkdir()
    page = folder / ("p" * (299 - len(str(folder))))  # 300 bytes, cut at 255 inside its name: a file beside it
    assert len(str(page)) == 300 and len(str(folder)) < 255
    env = {**os.environ, "COURSE_KHTTPD_PAGE": str(page)}
    finished = subprocess.run([str(serve), "client", "8080", "1"], env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2 and finished.stdout == ""
    assert finished.stderr.count("\n") == 1 and "COURSE_KHTTPD_PAGE is 300 bytes long" in finished.stderr
    assert "over the 255" in finished.stderr and "shorter path" in finished.stderr
    assert not Path(str(page)[:255]).exists() and list(folder.iterdir()) == [], "no page written under a cut name"


def test_batch_runs_itself_again_once_and_says_why_when_the_flag_does_not_hold(serve: Path, tmp_path: Path) -> None:
    """A set-user-ID copy loses ADDR_NO_RANDOMIZE at every exec (PER_CLEAR_ON_SETID): one line, never a loop."""
    if os.geteuid() != 0 or os.statvfs(tmp_path).f_flag & os.ST_NOSUID:
        pytest.skip("needs root and a folder without nosuid, to make a set-user-ID root copy")
    copy = tmp_path / "serve-setuid"
    copy.write_bytes(serve.read_bytes())
    copy.chmod(0o4755)
    finished = subprocess.run([str(copy), "read-write", "2", "batch"], capture_output=True, text=True, timeout=20)
    assert finished.returncode == 1
    assert finished.stderr.count("\n") == 1 and "address randomization is back on" in finished.stderr
    assert "course: measure" not in finished.stdout


def test_what_listens_and_what_is_loaded_are_read_from_the_kernel_tables(tmp_path: Path) -> None:
    tcp = tmp_path / "tcp"
    tcp.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n"  # 127.0.0.1:8080, listening
        "   1: 0100007F:1F91 0100007F:C350 01 00000000:00000000\n"  # 127.0.0.1:8081, established
    )
    assert kernel_guest.listening_on(8080, (tcp,)) == ["0100007F:8080 (tcp)"]
    assert kernel_guest.listening_on(8081, (tcp,)) == [], "a connection is not a listener"
    modules = tmp_path / "modules"
    modules.write_text("khttpd 20480 0 - Live 0x0000000000000000 (OE)\nksystime 16384 0 - Live 0x0\n")
    assert kernel_guest.loaded("khttpd", modules) and not kernel_guest.loaded("khttp", modules)


def _server_result(**changes: object) -> dict:
    client = {"ok": True, "ended": "exited with 0", "stdout": "", "stderr": "", "command": "serve client 8080 3"}
    result = {"exit_status": 0, "insmod_output": "", "client_result": client, "rmmod_output": ""}
    return {**result, "left_loaded": False, "left_listening": [], **changes}


def test_a_server_module_left_loaded_or_listening_fails_the_lesson(course_root: Path) -> None:
    lesson = lessons.find(Layout(course_root), 9)
    for result, said in (
        (_server_result(left_loaded=True), "still loaded"),
        (_server_result(left_listening=["0100007F:8080 (tcp)"]), "0100007F:8080"),
        (_server_result(exit_status=1, insmod_output="Operation not permitted"), "insmod failed"),
        (
            _server_result(client_result={"ok": False, "ended": "exited with 1", "stdout": "", "stderr": "differ"}),
            "byte for byte",
        ),
    ):
        run = LessonRun(lesson, {})
        assert not guest_records._server_behaved(run, "module khttpd", result, "")
        assert said in str(run.failures), run.failures
    run = LessonRun(lesson, {})
    assert guest_records._server_behaved(run, "module khttpd", _server_result(), "") and not run.failures


def _stub_says() -> str:
    """The line the stub of lesson 9's exercise prints in the guest: its course_print()'s string literals, joined."""
    stub = (ROOT / "code/kernel/09-khttpd/exercise-zerocopy.c").read_text()
    call = re.search(r"course_print\(((?:\s*\"[^\"]*\")+)\s*\);", stub)
    assert call, "the stub says, in the course's protocol, that it is a stub"
    return "".join(re.findall(r'"([^"]*)"', call[1]))


def test_the_module_says_why_the_zerocopy_exercise_failed_its_client(course_root: Path) -> None:
    """The stub of lesson 9's exercise: the run's failure quotes the module's check, the student's clue."""
    lesson = lessons.find(Layout(course_root), 9)
    client = {"ok": False, "ended": "exited with 1", "stdout": "", "stderr": "serve: client: no answer to request 1"}
    stub = (
        "[ 9.1] khttpd: course: meta listening=127.0.0.1:8081 requests=100 timeout=60\n"
        f"[ 9.2] khttpd: course: {_stub_says()}\n"
    )
    run = LessonRun(lesson, {})
    assert not guest_records._server_behaved(run, "module khttpd", _server_result(client_result=client), stub)
    (failure,) = run.failures
    said = failure["message"]
    assert "byte for byte); the module's check zerocopy: send_page_zerocopy() is still the stub" in said, said
    assert "exercise-zerocopy.c" in said and "invoke lesson 9" in said, said
    run = LessonRun(lesson, {})
    unreadable = "[ 9.2] khttpd: course: check zerocopy maybe\n"  # recorded where the log's figures are read
    assert not guest_records._server_behaved(run, "module khttpd", _server_result(client_result=client), unreadable)
    assert "byte for byte" in str(run.failures) and "module's check" not in str(run.failures)


def _without_solutions(tmp_path: Path) -> Layout:
    """The course's lessons and code as a student copy has them: no ``solutions/`` folder."""
    root = tmp_path / "course"
    for part in ("lessons", "code"):
        shutil.copytree(ROOT / part, root / part, ignore=shutil.ignore_patterns("solutions"))
    for toml in (root / "code").rglob("lesson.toml"):
        toml.write_text(edition.without_solutions(toml.read_text()))
    (root / "conf.py").write_text("")
    return Layout(root, results_dir=tmp_path / "results", build_dir=tmp_path / "build")


def test_the_zerocopy_exercise_is_built_from_the_solution_here_and_from_the_stub_in_a_student_copy(
    tmp_path: Path,
) -> None:
    """khttpd.c includes the solution where the checkout has it: the module's sources say which file was built."""
    here = Layout(ROOT, build_dir=tmp_path / "build")
    lesson = lessons.find(here, 9)
    sources = kernel_build.module_sources(here, lesson, lesson.modules[1])
    assert "code/kernel/09-khttpd/solutions/exercise-zerocopy.c" in sources
    assert "code/kernel/09-khttpd/exercise-zerocopy.c" not in sources, "the stub is not built here"
    student = _without_solutions(tmp_path)
    lesson = lessons.find(student, 9)
    sources = kernel_build.module_sources(student, lesson, lesson.modules[1])
    assert "code/kernel/09-khttpd/exercise-zerocopy.c" in sources
    assert not [name for name in sources if "solutions" in name]
    khttpd = (ROOT / "code/kernel/09-khttpd/khttpd.c").read_text()
    assert '#if __has_include("solutions/exercise-zerocopy.c")' in khttpd and "send_page_zerocopy(struct" not in khttpd


@pytest.mark.slow
def test_a_student_copy_builds_the_stub_against_every_guest_kernel(tmp_path: Path) -> None:
    """The stub builds (no solution in the tree, none left from another build) and sends nothing without a copy."""
    student = _without_solutions(tmp_path)
    lesson = lessons.find(student, 9)
    try:
        kernels = [guest_kernels.find(name) for name in ("6.1", "6.12")]
    except kernel_build.KernelError as error:
        pytest.skip(f"{error}; invoke setup --tests installs every guest kernel")
    for kernel in kernels:
        # A solution left in the build tree by another build must not take the stub's place.
        planted = student.build / "kernel" / kernel.release / "09-khttpd" / "solutions" / "exercise-zerocopy.c"
        planted.parent.mkdir(parents=True)
        shutil.copy2(ROOT / "code/kernel/09-khttpd/solutions/exercise-zerocopy.c", planted)
        built = kernel_build.build_module(student, lesson, lesson.modules[1], kernel)
        assert built.ko.is_file() and not planted.exists()
        symbols = subprocess.run(["nm", "-u", str(built.ko)], capture_output=True, text=True, check=True).stdout
        assert "kernel_sendpage" not in symbols and "sock_sendmsg" not in symbols, f"the stub sends nothing ({kernel})"
    here = Layout(ROOT, build_dir=tmp_path / "full")
    full = kernel_build.build_module(here, lessons.find(here, 9), lesson.modules[1], kernels[0])
    symbols = subprocess.run(["nm", "-u", str(full.ko)], capture_output=True, text=True, check=True).stdout
    assert "kernel_sendpage" in symbols, "the course's own build is the solution's (6.1 still has kernel_sendpage)"


def test_a_client_must_be_a_lesson_program(tmp_path: Path, course_root: Path) -> None:
    toml = tmp_path / "lesson.toml"
    layout = Layout(course_root)
    with pytest.raises(lessons.LessonError, match="client must be a lesson's program"):
        lessons._module_spec(layout, toml, {"name": "khttpd", "client": "/bin/sh"})
    with pytest.raises(lessons.LessonError, match=r"no source 09-khttpd/nothing\.c"):
        lessons._module_spec(layout, toml, {"name": "khttpd", "client": "09-khttpd/nothing"})
    with pytest.raises(lessons.LessonError, match="client_args without a client"):
        lessons._module_spec(layout, toml, {"name": "khttpd", "client_args": ["x"]})


@pytest.mark.slow
def test_lesson_9_in_the_guest_checks_every_answer_leaves_nothing_and_counts_the_same_twice(
    lesson_9_twice: tuple[dict, dict],
) -> None:
    """Two icount boots of lesson 9 (two runs of ``invoke run --lesson 9 --acceleration tcg-icount``, made once with
    test_ram_guest_boot.py's): all five servers answer byte for byte; every count repeats exactly."""
    first, second = lesson_9_twice
    assert first["failures"] == [], "a server left loaded or listening, or an answer that differed, fails the run"
    measured = first["measurements"]
    requests = {
        "09-khttpd/request.khttpd",
        "09-khttpd/request.khttpd-zerocopy",
        *(f"09-khttpd/user.serve.request.{server}" for server in SERVERS),
    }
    for key in requests:
        assert measured[key]["status"] == "ok" and measured[key]["unit"] == "icount ticks", key
        assert measured[key]["meta"]["answers_checked"] == str(measured[key]["samples"]), key
        assert measured[key]["meta"]["scheduling"] == "batch", f"{key}: client and server SCHED_BATCH"
    assert measured["09-khttpd/server-syscalls.khttpd"]["status"] == "skipped", "a kernel thread makes no call"
    guest_code = ram_guest.guest_code_sources().items()  # the course's code that made the guest: a source of each
    assert all(guest_code <= measured[key]["sources"].items() for key in requests), "a change to it makes them stale"
    again = second["measurements"]
    in_guest = {k: v for k, v in measured.items() if k.startswith("09-khttpd/user.") or ".khttpd" in k}
    counts = {k: v for k, v in in_guest.items() if v.get("unit") in ("calls", "bytes")}
    assert len(counts) == 18 and {k: again[k]["histogram"] for k in counts} == {
        k: v["histogram"] for k, v in counts.items()
    }, "every call and byte counted is the same in both boots, request by request"
    # The guest boots from memory with QEMU's clock and random numbers fixed (course.kernel.ram_guest): two
    # boots are the same boot, so every request's count repeats, not only the medians. In virtme-ng
    # boots (the host's files over 9p) medians moved by up to 70 instructions, within a boot too.
    assert first["kernel_run"]["qemu_options"] == " ".join(ram_guest.ICOUNT_OPTIONS), "how the guest ran is stored"
    moved = {
        key: (measured[key]["median"], again[key]["median"])
        for key in requests
        if measured[key]["histogram"] != again[key]["histogram"] or measured[key]["median"] != again[key]["median"]
    }
    assert not moved, f"icount counts differ between two boots of one kernel: {moved}"
