"""`invoke results`: what an instructor reads of the stored sets, within 100 columns, even when two clash."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course import commands
from course.publish import report
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
ICOUNT = "qemu-icount-debian-6.1-rt-skylake-server-v4-mitigations-off"  # the longest name the course ships


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    for name in ("reference-2000", "qemu-icount-debian-6.12", ICOUNT):
        shutil.copytree(ROOT / "results" / name, folder / name)
    shutil.copytree(ROOT / "tests" / "roots" / "test-course" / "results" / "canned-machine", folder / "canned-machine")
    return folder


def _column(listed: str, header: str, following: str) -> str:
    """The text of one column of a listing, its wrapped lines joined (as a reader reads them)."""
    lines = listed.splitlines()
    start, end = lines[0].index(header), lines[0].index(following)
    return " ".join(line[start:end].strip() for line in lines[2:] if line[start:end].strip())


def test_the_listing_fits_100_columns_and_says_where_each_set_ran(results: Path) -> None:
    listed = commands.results(Layout(ROOT, results_dir=results))
    assert max(len(line) for line in listed.splitlines()) <= 100, listed
    lines = listed.splitlines()
    first = len(lines[1].split("  ")[0])  # the first column's width: the rule's first dashes
    where = " ".join(line[:first].strip() for line in lines if line.startswith("  "))
    # An icount set ran in a guest: its release, the CPU model QEMU showed it, its parameters and the acceleration,
    # never the host that ran QEMU (whose CPU and kernel the set's "machine" holds).
    assert "guest 6.12.118+deb12-amd64, tcg-icount" in where, listed
    assert "guest 6.1.0-57-rt-amd64 on Skylake-Server-v4 with mitigations=off, tcg-icount" in where, listed
    assert "6.18.44" not in listed, "the host's kernel is not where an icount set ran"
    # A set's name is never broken: a reader copies it whole into a command.
    assert ICOUNT in lines, listed
    assert any(line.startswith("qemu-icount-debian-6.12  ") for line in lines), listed
    # A host set names its CPU and kernel; the article's set its machine.
    assert (
        "host Canned CPU 1000, kernel 6.1.0-canned" in where
        and "2000: Rubini's 500 MHz PC, kernel 2.4.0-test8" in where
    )
    # The counts add up: what is not ok was skipped, and the key says what each counts.
    assert lines[0].split()[-3:] == ["ok", "skipped", "failed"] and "skipped: not measured there" in listed
    verbose = commands.results(Layout(ROOT, results_dir=results), verbose=True)
    assert "QEMU -icount, Debian 6.12 guest" in verbose and "host cpu" in verbose


def test_a_stacked_table_never_breaks_a_name() -> None:
    rows = [["a-rather-long-name-that-takes-the-line", "where it ran, in several words", "1", "2"]]
    rows.append(["short", "here", "30", "4"])
    stacked = report.stacked_table(["set", "ok", "skipped"], rows, 30, "where")
    assert stacked.splitlines() == [
        "set / where        ok  skipped",
        "-----------------  --  -------",
        "a-rather-long-name-that-takes-the-line",
        "  where it ran,     1        2",
        "  in several",
        "  words",
        "short              30        4",
        "  here",
    ]


def test_two_sets_differing_only_in_case_are_listed_with_a_warning(results: Path, capsys) -> None:
    shutil.copytree(results / "canned-machine", results / "Canned-Machine")
    listed = commands.results(Layout(ROOT, results_dir=results))
    assert "Canned-Machine" in listed and "\ncanned-machine " in listed, listed
    warning = capsys.readouterr().err
    assert warning.startswith("warning: ") and "'Canned-Machine' and 'canned-machine' differ only in case" in warning
    assert "rename or remove one of the two folders" in warning
    # On the command line: the table, the warning, and exit status 0 (the site still refuses the pair).
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "results"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "INVOKE_COURSE_RESULTS": str(results)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Canned-Machine" in done.stdout and "differ only in case" in done.stderr


def test_a_wrapped_cell_breaks_at_spaces_then_after_dashes() -> None:
    assert report.wrapped_cell("guest 6.1.0-57-amd64, tcg-icount", 22) == ["guest 6.1.0-57-amd64,", "tcg-icount"]
    assert report.wrapped_cell("qemu-icount-debian-6.1-rt", 12) == ["qemu-icount-", "debian-6.1-", "rt"]
    assert report.wrapped_cell("x" * 10, 4) == ["xxxx", "xxxx", "xx"]
    assert report.wrapped_cell("", 4) == [""]


def full_width(text: str) -> str:
    """ASCII letters, digits and brackets as their full-width forms (U+FF01 on), two columns each."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


#: A CPU model as an imported set may spell it: full-width letters, ideographic spaces (U+3000), katakana.
WIDE_CPU = "\u3000".join([full_width("AMD"), full_width("EPYC"), full_width("7763"), "64コア", "プロセッサ"])
WIDE_CPU += full_width(" (") + "研究室\u3000第三教室" + full_width(")")


def test_wide_characters_and_accents_are_measured_in_columns_not_code_points(results: Path) -> None:
    """A full-width CPU model takes two columns a character: the listing still fits 100, and U+3000 shows as a space."""
    info_path = results / "canned-machine" / "set.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    info["machine"]["cpu_model"] = WIDE_CPU
    info["label"] = "Cafe\u0301 de\u0301ja\u0300 vu \u00e0 l'e\u0301cole"  # combining accents: no column each
    info_path.write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    listed = commands.results(Layout(ROOT, results_dir=results))
    assert max(report.columns(line) for line in listed.splitlines()) <= 100, listed
    assert "\\u3000" not in listed and full_width("AMD") in listed, "an ideographic space is text, not an escape"
    assert all(line.strip() for line in listed.splitlines()[2:] if line), "no line that looks blank"
    verbose = commands.results(Layout(ROOT, results_dir=results), verbose=True)
    assert WIDE_CPU in verbose, "whole, its spaces as they are"
    row = next(line for line in verbose.splitlines() if line.startswith("canned-machine"))
    header = verbose.splitlines()[0]
    # Each column starts where its header does: padding counts columns, so the cells after the CPU line up.
    assert report.columns(row[: row.index("6.1.0-canned")]) == header.index("host kernel"), verbose


def test_a_cell_is_measured_and_cut_in_columns() -> None:
    assert report.columns("abc") == 3 and report.columns(full_width("AB")) == 4 and report.columns("e\u0301") == 1
    assert report.columns("\u3000") == 2
    assert report.wrapped_cell(full_width("ABCDE"), 4) == [full_width("AB"), full_width("CD"), full_width("E")]
    assert report.wrapped_cell("e\u0301" * 6, 4) == ["e\u0301" * 4, "e\u0301" * 2], "a mark stays with its letter"
    assert report.table(["x", "n"], [[full_width("AB"), "1"], ["abcd", "22"]]).splitlines() == [
        "x     n",
        "----  --",
        full_width("AB") + "   1",
        "abcd  22",
    ]
