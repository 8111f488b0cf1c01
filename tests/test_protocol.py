from __future__ import annotations

import pytest

from course.measure.protocol import ProtocolError, parse

OUTPUT = """\
getppid() through the C library:   42
course: meta pinned=cpu1
course: meta tsc_hz=2596147322
course: measure stamp-pair unit=ticks samples=5
course: hist stamp-pair 26x2 52x3
course: measure read unit=ticks samples=6 subtract=stamp-pair
course: hist read 468x1 494x2
course: hist read 494x1 9000x2
course: skip vfs-read symbol look-up refused: kprobes disabled
plain text after
"""


def test_sorts_measurements_meta_skips_and_text() -> None:
    parsed = parse(OUTPUT)
    assert parsed.meta == {"pinned": "cpu1", "tsc_hz": "2596147322"}
    assert parsed.measurements["stamp-pair"].counts == {26: 2, 52: 3}
    assert parsed.measurements["stamp-pair"].subtract is None
    read = parsed.measurements["read"]
    assert read.subtract == "stamp-pair"
    assert read.counts == {468: 1, 494: 3, 9000: 2}, "hist lines of one measurement accumulate"
    assert parsed.skipped == {"vfs-read": "symbol look-up refused: kprobes disabled"}
    assert parsed.text == ["getppid() through the C library:   42", "plain text after"]


def test_reads_kernel_log_lines_with_their_prefixes() -> None:
    log = (
        "[   12.345678] ksystime: course: measure tsc unit=ticks samples=2\n"
        "[   12.345679] ksystime: course: hist tsc 40x2\n"
    )
    assert parse(log).measurements["tsc"].counts == {40: 2}


def test_output_cut_short_is_refused() -> None:
    with pytest.raises(ProtocolError, match="announced 5 samples but its histogram holds 2"):
        parse("course: measure read unit=ticks samples=5\ncourse: hist read 10x2\n")


def test_histogram_before_its_measure_line_is_refused() -> None:
    with pytest.raises(ProtocolError, match="line 1"):
        parse("course: hist read 10x2\n")


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ProtocolError, match="unknown kind 'frobnicate'"):
        parse("course: frobnicate x\n")


def test_numbers_the_course_cannot_use_are_refused_with_the_line() -> None:
    for output, message in (
        ("course: measure a samples=0\n", r"line 1: .*samples must be a whole number from 1 up to 2\*\*63, not 0"),
        ("course: measure a samples=1 per=0\ncourse: hist a 5x1\n", r"per must be a whole number from 1"),
        ("course: measure a samples=1 per=8589934592\ncourse: hist a 5x1\n", r"per must be at most 4294967296"),
        ("course: measure a samples=1\ncourse: hist a -5x1\n", r"line 2: .*a value \(ticks\) must be a whole number"),
        ("course: measure a samples=1\ncourse: hist a 5x0\n", r"a count must be a whole number from 1"),
        ("course: meta tsc_hz=nan\n", r"tsc_hz must be a rate in Hz \(a number from 1 up to 2\*\*63\), not 'nan'"),
        ("course: meta tsc_hz=1e400\n", r"tsc_hz must be a rate in Hz"),
        ("course: meta tsc_hz=0.5\n", r"tsc_hz must be a rate in Hz"),
    ):
        with pytest.raises(ProtocolError, match=message):
            parse(output)


def test_an_output_cannot_grow_a_result_file_without_bound() -> None:
    many = "".join(f"course: measure m{n} samples=1\ncourse: hist m{n} 5x1\n" for n in range(257))
    with pytest.raises(ProtocolError, match="announces more than 256 measurements and skips"):
        parse(many)
    with pytest.raises(ProtocolError, match="meta lines hold more than 4096 characters"):
        parse(f"course: meta note={'x' * 5000}\n")
    # A line of megabytes is quoted short in the failure it becomes.
    with pytest.raises(ProtocolError) as refused:
        parse(f"course: measure a samples=x{'y' * 1_000_000}\n")
    assert len(str(refused.value)) < 2000
