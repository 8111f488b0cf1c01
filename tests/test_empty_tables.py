"""A table no set has a figure for says what was run instead, and the build warns (``--strict`` fails)."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
from sphinx.testing.util import SphinxTestApp

PAGE = """---
orphan: true
---
# Lesson 4, rerun under -icount

```{course-table}
:unit: emulated ticks
:caption: The same under plain emulation, in emulated ticks
04-kernel-read/kernel-read.tty kernel_read, tty
04-kernel-read/read-iter.tty read_iter, tty
```

```{course-table}
:unit: icount ticks
:caption: Counted in instructions
04-kernel-read/kernel-read.tty kernel_read, tty
```

```{course-table}
:unit: icount ticks
:caption: Host figures counted in instructions
03-timing/read.pipe pipe
```
"""


def _rerun_under_icount(srcdir: Path) -> None:
    """This machine's lesson 4 as ``invoke lesson 4 --acceleration tcg-icount`` leaves it: a guest's counts."""
    path = srcdir / "results" / "canned-machine" / "04-kernel-read.json"
    data = json.loads(path.read_text())
    for measurement in data["measurements"].values():
        measurement.update(unit="icount ticks", runner="vm", acceleration="tcg-icount", guest_kernel="6.1.0-57-amd64")
    path.write_text(json.dumps(data))
    (srcdir / "rerun.md").write_text(PAGE)
    # The other machine's set as a kernel matrix set of the same guest kernel (as qemu-icount-debian-6.1 is).
    info_path = srcdir / "results" / "other-machine" / "set.json"
    info = json.loads(info_path.read_text())
    info["guest"] = {"name": "6.1", "release": "6.1.0-57-amd64", "acceleration": "tcg-icount"}
    info_path.write_text(json.dumps(info))


def _text(html: str) -> str:
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())
    return text.replace("\u2019", "'").replace("( ", "(").replace(" )", ")")


@pytest.mark.sphinx("html", testroot="course", srcdir="course-empty-tables")
def test_a_table_without_figures_says_why_and_warns(make_app, app: SphinxTestApp) -> None:
    _rerun_under_icount(Path(app.srcdir))
    built = make_app("html", srcdir=app.srcdir)
    built.build()
    text = _text((Path(built.outdir) / "rerun.html").read_text())
    # No table of row labels alone: what was run instead, where, and the command that measures the table's unit.
    assert (
        "The same under plain emulation, in emulated ticks: not run. This machine's last run counted icount ticks "
        "in a guest kernel 6.1.0-57-amd64 (QEMU icount), not emulated ticks; invoke lesson 4 --acceleration tcg "
        "measures them." in text
    ), text
    assert "kernel_read, tty" in text.split("Counted in instructions")[1], "the icount table keeps its rows"
    # The guest's counts stand under their own heading: the guest kernel, never "this machine".
    heading = text.split("Counted in instructions")[1].split("kernel_read, tty")[0]
    assert "guest kernel 6.1.0-57-amd64 (QEMU icount), in a VM on the host" in heading, heading
    assert "this machine" not in heading
    # Where and when: the guest, the host it ran on, and the date of its figures.
    provenance = (
        "guest kernel 6.1.0-57-amd64 (QEMU icount), in a VM on the host Canned machine, measured 2026-11-01 00:00 UTC"
    )
    assert provenance in heading, heading
    # Its counts repeat those of the kernel set of the same guest kernel: the page says why, once, under that table.
    same = "The guest that Canned machine booted ran kernel 6.1.0-57-amd64 under QEMU -icount, as Other machine did"
    assert text.count(same) == 1 and same in text.split("Counted in instructions")[1], text
    # Figures that ran on the host have no remedy in another acceleration: said as they are.
    assert "Host figures counted in instructions: not run. This machine's figures of it are in ticks" in text, text
    warnings = [line for line in built._warning.getvalue().splitlines() if "empty-table" in line]
    assert len(warnings) == 2, built._warning.getvalue()
    assert "the table 'The same under plain emulation, in emulated ticks' has no figures" in warnings[0]


@pytest.mark.sphinx("html", testroot="course")
def test_the_canned_pages_have_no_empty_table(app: SphinxTestApp) -> None:
    app.build()
    assert "empty-table" not in app._warning.getvalue()
    assert "not run." not in (Path(app.outdir) / "kernel.html").read_text()


def test_the_guide_says_a_table_without_figures_is_a_warning() -> None:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "instructors.md").read_text()
    assert "a table that no set has a figure for" in " ".join(guide.split())
