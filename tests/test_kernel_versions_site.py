"""The kernel matrix on the site (course.publish.sphinxext.kernels): a table and chart across guest kernels, and the
difference between two kernels' call graphs of one read. Canned sets in ``roots/test-course-kernels``; their
call graphs are those of a real icount matrix run (6.1, 6.12 and 6.1 with PREEMPT_RT).
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest
from sphinx.testing.util import SphinxTestApp


def _text(html: str) -> str:
    """The page's text, one space between words, SVG left out."""
    html = re.sub(r"<svg.*?</svg>", " ", html, flags=re.DOTALL)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def _page(app: SphinxTestApp) -> str:
    return (Path(app.outdir) / "index.html").read_text(encoding="utf-8")


@pytest.mark.sphinx("html", testroot="course-kernels")
def test_one_row_per_guest_kernel_with_the_change_from_6_1(app: SphinxTestApp) -> None:
    app.build()
    assert app._warning.getvalue() == ""
    table = _page(app).split('class="course-table course-kernels', 1)[1].split("</table>", 1)[0]
    rows = [_text(row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.DOTALL)]
    assert rows[0] == " guest kernel (icount ticks) read() from user space ->read_iter descriptor lookup ", "one unit"
    kernels = [row.split()[0] for row in rows[1:]]
    assert kernels == ["6.1", "6.12", "6.1-rt"], "the baseline first, then the known kernels in their order"
    assert "6.1.0-56-rt-amd64 · PREEMPT_RT" in rows[3], "its provenance beside its name"
    assert "QEMU showed every guest the CPU QEMU TCG CPU version 2.5+." in _text(_page(app)), "said once"
    assert " 97 (-21.8 %) " in rows[2] and " 33 (-23.3 %) " in rows[2]
    assert " 124 " in rows[1] and "%" not in rows[1], "the baseline has no change from itself"
    assert " 685 (+0.0 %) " in rows[3]
    # Each figure is a value of its own set, linked to the set's page; its change under it.
    assert (
        'data-set="qemu-icount-debian-6.12" data-field="median">97</a><br/>'
        '<span class="course-spread course-change">(-21.8 %)' in table
    )
    assert 'href="machines/qemu-icount-debian-6.1-rt.html"' in table


@pytest.mark.sphinx("html", testroot="course-kernels")
def test_the_chart_draws_every_kernel_in_one_icount_panel(app: SphinxTestApp) -> None:
    app.build()
    html = _page(app)
    chart = html.split('class="course-chart', 1)[1].split("</details>", 1)[0]
    assert "<title>Canned kernel versions</title>" in chart
    figures = _text(chart.split("<summary>", 1)[1])
    for kernel in ("6.1", "6.12", "6.1-rt"):
        assert f"->read_iter {kernel} " in figures
    assert figures.count("icount ticks (guest instructions, the same on every host)") == 9, "one panel, one unit"
    assert "emulated" not in figures, "the tcg set is not drawn beside icount ticks"


@pytest.mark.sphinx("html", testroot="course-kernels")
def test_emulated_ticks_of_two_boots_get_no_change_in_percent(app: SphinxTestApp) -> None:
    """Under tcg a figure is the host's time spent emulating: never set against another boot's."""
    app.build()
    tables = _page(app).split('class="course-table course-kernels')
    emulated = _text(tables[2].split("</table>", 1)[0])
    assert "guest kernel (emulated ticks)" in emulated and " 97 " in emulated
    assert "%" not in emulated.split("->read_iter", 1)[1]
    assert "6.1-rt" not in emulated, "only the sets measured under the asked acceleration"


@pytest.mark.sphinx("html", testroot="course-kernels")
def test_the_trace_difference_names_functions_added_removed_and_moved(app: SphinxTestApp) -> None:
    app.build()
    html = _page(app)
    summary = _text(html.split('class="course-table course-trace-diff', 1)[1].split("</table>", 1)[0])
    assert "6.12 (6.12.117+deb12-amd64) against 6.1 (6.1.0-56-amd64)" in summary
    disk = summary.split("disk file", 1)[1].split("pipe", 1)[0]
    assert "fdget_pos()" in disk and "__fdget_pos() , __fget_light() , __get_task_ioprio()" in disk
    assert "mutex_lock() : from __fdget_pos() to fdget_pos()" in disk
    # The RT kernel's terminal, whole: every line of both graphs, the changes marked.
    diff = html.split('<div class="highlight-diff', 1)[1].split("</pre>", 1)[0]
    lines = _text(diff)
    assert "--- 6.1 (6.1.0-56-amd64)" in lines and "+++ 6.1-rt (6.1.0-56-rt-amd64)" in lines
    assert "+ rt_spin_lock() {" in lines and "- _raw_spin_lock_irqsave();" in lines
    assert "tty_read() {" in lines, "unchanged lines are shown too"


@pytest.mark.sphinx("html", testroot="course-kernels", confoverrides={"course_sets": ["canned-machine"]})
def test_without_the_matrix_a_page_says_how_to_measure_it(app: SphinxTestApp) -> None:
    app.build()
    warnings = app._warning.getvalue()
    assert "no result set of the kernel matrix under tcg-icount" in warnings
    assert "invoke run --guest-kernels 6.1,6.12,6.1-rt --acceleration tcg-icount" in warnings
    assert "no result set of guest kernel 6.1" in warnings
    assert "[missing: the kernel matrix; run invoke run --guest-kernels" in _text(_page(app))
