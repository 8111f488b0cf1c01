"""Every timed call's result is kept: a call that fails while it is timed makes its figure not run.

The programs check a call once, untimed, before timing it; a call can still start failing
later (a descriptor closed by another thread, a device gone). Each program here is compiled
with its ``read``/``pread`` replaced by one that fails for a window of calls chosen to fall
halfway through one measurement's timed samples: that measurement must be stored as not run,
with the value the call returned, and the others measured as usual.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from course.measure import lessons, protocol
from course.measure.lesson_run import LessonRun, record
from course.measure.runners import run_on_host
from course.results.layout import Layout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

# The program's own source, with read() and pread() counting their calls and failing with
# EIO (returning -1) for calls FAIL_FROM to FAIL_FROM + FAIL_COUNT - 1.
FAILING = """
#include "{stamp}"
#include <errno.h>
#include <sys/stat.h>
static long course_calls;
static int course_fails(void)
{{
	course_calls++;
	if (course_calls >= FAIL_FROM && course_calls < FAIL_FROM + FAIL_COUNT) {{
		errno = EIO;
		return 1;
	}}
	return 0;
}}
static inline ssize_t failing_read(int fd, void *buffer, size_t size)
{{
	return course_fails() ? -1 : read(fd, buffer, size);
}}
static inline ssize_t failing_pread(int fd, void *buffer, size_t size, off_t at)
{{
	return course_fails() ? -1 : pread(fd, buffer, size, at);
}}
#define read failing_read
#define pread failing_pread
#include "{program}"
"""


def _build_failing(tmp_path: Path, program: str, fail_from: int, fail_count: int = 1) -> Path:
    source = tmp_path / f"failing-{fail_from}.c"
    source.write_text(FAILING.format(stamp=ROOT / "code/user/common/stamp.h", program=ROOT / "code/user" / program))
    binary = tmp_path / f"failing-{fail_from}"
    command = ["cc", "-O2", "-Wall", "-Wextra", "-Werror", f"-DFAIL_FROM={fail_from}", f"-DFAIL_COUNT={fail_count}"]
    subprocess.run([*command, "-o", binary, source], check=True)
    return binary


def _run(binary: Path, stdin: str, *args: str) -> protocol.ProgramOutput:
    outcome = run_on_host(binary, args, stdin, binary.parent / "scratch", 60)
    assert outcome.ok, outcome.stdout + outcome.stderr
    return protocol.parse(outcome.stdout)


# usystime 1600: one untimed check (call 1), 16 warm-up reads (2-17), then 100 rounds of 16
# single reads and 2 batches of 8: round r's singles are calls 18 + 32 r to 33 + 32 r.
USYSTIME_CALLS = {"read.stdin": 17 + 32 * 50 + 1, "read-x8.stdin": 17 + 32 * 50 + 17}


@pytest.mark.parametrize("failing", sorted(USYSTIME_CALLS))
def test_a_read_failing_halfway_through_usystimes_samples_is_stored_as_not_run(tmp_path: Path, failing: str) -> None:
    parsed = _run(_build_failing(tmp_path, "03-timing/usystime.c", USYSTIME_CALLS[failing]), "devnull", "1600")
    assert failing in parsed.skipped, "a timed call that failed was timed as a read"
    assert "returned -1, not 0" in parsed.skipped[failing]
    (other,) = set(USYSTIME_CALLS) - {failing}
    assert parsed.measurements[other].samples > 0, "a failure elsewhere spoils only its own figure"

    run = LessonRun(lessons.find(Layout(ROOT), 3), previous={})
    record(run, ("devnull",), "devnull", parsed, {"runner": "host"})
    stored = run.measurements[f"03-timing/{failing}"]
    assert stored["status"] == "skipped" and "returned -1" in stored["reason"]
    assert run.measurements[f"03-timing/{other}"]["status"] == "ok"


def test_every_read_succeeding_is_measured_as_before(tmp_path: Path) -> None:
    parsed = _run(_build_failing(tmp_path, "03-timing/usystime.c", 10**9), "devnull", "1600")
    assert set(parsed.measurements) >= set(USYSTIME_CALLS) and not parsed.skipped


def test_measure_keeps_every_result_a_pread_failing_halfway_makes_its_size_not_run(tmp_path: Path) -> None:
    # bytes 200 on a file: read-0's check is call 1, its warm-up 2-201, its timed samples 202-401.
    parsed = _run(_build_failing(tmp_path, "07-bytes/bytes.c", 301), "file", "200")
    assert "read-0" in parsed.skipped
    assert "returned -1, not 0: Input/output error" in parsed.skipped["read-0"]
    assert {"read-1", "read-4096"} <= set(parsed.measurements)


def test_fences_keeps_every_result(tmp_path: Path) -> None:
    # fences 200: checks (1), then 2 rounds of warm-up per start; a failure late in the run
    # falls in the timed samples of one start, which alone is not run.
    parsed = _run(_build_failing(tmp_path, "03-timing/fences.c", 5000), "devnull", "200")
    assert len([name for name in parsed.skipped if name.endswith("read.stdin")]) == 1
    assert "begin1.stamp-pair" in parsed.measurements


@pytest.mark.parametrize("extra, refused", [("16384, 65536", False), ("131072", True)])
def test_lesson_7s_exercise_sizes_fit_bytes_buffer_and_a_larger_one_is_refused(
    tmp_path: Path, extra: str, refused: bool
) -> None:
    # Lesson 7's exercise adds 16384 and 65536 to the sizes: they must be read whole, into the
    # program's own buffer; a size beyond it is refused with one line, never read past its end.
    text = (ROOT / "code/user/07-bytes/bytes.c").read_text()
    sizes = "static const size_t sizes[] = { 0, 1, 8, 64, 256, 1024, 4096 };"
    assert sizes in text
    source = tmp_path / "bytes.c"
    source.write_text(
        text.replace(sizes, sizes.replace("4096 }", f"4096, {extra} }}")).replace(
            '"../common/stamp.h"', f'"{ROOT / "code/user/common/stamp.h"}"'
        )
    )
    binary = tmp_path / "bytes"
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", binary, source], check=True)
    outcome = run_on_host(binary, ("50",), "zero", tmp_path / "scratch", 60)
    if refused:
        assert outcome.exit_status == 2 and not outcome.stdout
        assert "131072 bytes does not fit the 65536-byte buffer" in outcome.stderr
    else:
        parsed = protocol.parse(outcome.stdout)
        assert {"read-16384", "read-65536"} <= set(parsed.measurements), outcome.stdout


def test_no_user_space_program_casts_a_calls_result_away() -> None:
    # The behaviour tests above cover usystime, bytes and fences; this keeps every other program
    # (and a new one) from timing a call whose result it throws away. MEASURE itself takes the
    # expected result as an argument: a call without one does not compile.
    discarded = re.compile(r"\(void\)\s*\w+\s*\(")
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "code" / "user").rglob("*.c"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if discarded.search(line)
    ]
    assert found == []
