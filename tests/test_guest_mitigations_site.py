"""Lesson 8's mitigations in the guests: ``course-guest-mitigations`` on four canned sets of real runs.

The sets in ``roots/test-course-mitigations`` are trimmed copies of a real run (6.1 and 6.12 under
tcg-icount, QEMU showing Skylake-Server-v4, booted by default and with ``mitigations=off``).
"""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
from sphinx.testing.util import SphinxTestApp

from course.publish.sphinxext.guest_mitigations import difference, pairs
from course.results.store import load_all

ROOT = Path(__file__).resolve().parent / "roots" / "test-course-mitigations"


def _text(html: str) -> str:
    html = re.sub(r"<svg.*?</svg>", " ", html, flags=re.DOTALL)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def _page(app: SphinxTestApp) -> str:
    return (Path(app.outdir) / "index.html").read_text(encoding="utf-8")


def _median(set_id: str, key: str) -> float:
    data = json.loads((ROOT / "results" / set_id / "04-kernel-read.json").read_text())
    return data["measurements"][key]["median"]


@pytest.mark.sphinx("html", testroot="course-mitigations")
def test_each_kernel_shows_both_boots_and_what_the_mitigations_add(app: SphinxTestApp) -> None:
    app.build()
    table = _page(app).split('class="course-table', 1)[1].split("</table>", 1)[0]
    rows = [_text(row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.DOTALL)]
    assert [row.split()[0] for row in rows[1:]] == ["6.1", "6.12"], "one row per kernel, the matrix's order"
    floor = "04-kernel-read/user.entry.invalid-syscall"
    on = _median("qemu-icount-debian-6.1-skylake-server-v4", floor)
    off = _median("qemu-icount-debian-6.1-skylake-server-v4-mitigations-off", floor)
    assert (
        f" {on:,.0f} icount ticks {off:,.0f} icount ticks {on - off:+,.0f} ({100 * (on - off) / on:.1f} %) " in rows[1]
    )
    # Each boot's figure links to its own set's page.
    assert 'href="machines/qemu-icount-debian-6.1-skylake-server-v4-mitigations-off.html"' in table


@pytest.mark.sphinx("html", testroot="course-mitigations")
def test_the_chart_draws_what_the_mitigations_add_in_percent_and_the_guests_lists_follow(app: SphinxTestApp) -> None:
    """One bar a kernel and figure: the table's on-minus-off over on, never the two boots' counts again."""
    app.build()
    html = _page(app)
    chart = html.split('class="course-chart', 1)[1].split("</details>", 1)[0]
    figures = _text(chart.split("<summary>", 1)[1])
    svg = chart.split("</svg>", 1)[0]
    floor = "04-kernel-read/user.entry.invalid-syscall"
    for kernel in ("6.1", "6.12"):
        on = _median(f"qemu-icount-debian-{kernel}-skylake-server-v4", floor)
        off = _median(f"qemu-icount-debian-{kernel}-skylake-server-v4-mitigations-off", floor)
        added = f"{100 * (on - off) / on:.1f}"
        assert f" floor {kernel} {added} % " in figures, f"{kernel}'s bar is its share added"
        assert f" {added}</text>" in svg, "drawn beside its bar, the axis naming the unit"
    assert figures.count("instructions added, % of the call with mitigations on") == 4, "one panel, one unit"
    table = chart.split("<summary>", 1)[1]
    assert table.count("<tr") - 1 == 4, "four bars: two kernels, two figures"
    assert "icount ticks" not in svg and "mitigations=off" not in svg, "neither boot's count drawn again"
    lists = _text(html.split('class="course-guest-vulnerabilities', 1)[1].split("</ul>", 1)[0])
    assert "6.1, mitigations on (default): " in lists and "meltdown: Mitigation: PTI" in lists
    assert "6.1, mitigations=off: " in lists and "meltdown: Vulnerable" in lists, "the guest's own words, both boots"


@pytest.mark.sphinx("html", testroot="course-mitigations")
def test_the_mitigation_sets_stay_out_of_other_charts_but_keep_their_pages(app: SphinxTestApp) -> None:
    app.build()
    html = _page(app)
    other_chart = _text(html.split('class="course-chart"', 2)[2])
    assert "QEMU -icount, Debian 6.1 guest (deterministic path lengths)" in other_chart, "the matrix's own set"
    assert "Skylake" not in other_chart, "a general chart would double every kernel"
    pages = {path.name for path in (Path(app.outdir) / "machines").glob("*.html")}
    assert "qemu-icount-debian-6.12-skylake-server-v4-mitigations-off.html" in pages


def test_a_difference_is_only_between_instruction_counts() -> None:
    counted = {"status": "ok", "unit": "icount ticks", "median": 222.0}
    assert difference(counted, {**counted, "median": 212.0}, "median") == (10.0, pytest.approx(4.504, abs=0.001))
    assert difference(counted, {**counted, "unit": "emulated ticks"}, "median") is None
    assert difference(counted, {"status": "skipped", "reason": "x"}, "median") is None


def test_sets_pair_by_kernel_and_parameters_never_with_another_cpu() -> None:
    sets = list(load_all(ROOT / "results").values())
    found = pairs(sets, "Skylake-Server-v4")
    assert [(name, on.id, off.id) for name, on, off in found] == [
        ("6.1", "qemu-icount-debian-6.1-skylake-server-v4", "qemu-icount-debian-6.1-skylake-server-v4-mitigations-off"),
        (
            "6.12",
            "qemu-icount-debian-6.12-skylake-server-v4",
            "qemu-icount-debian-6.12-skylake-server-v4-mitigations-off",
        ),
    ]
    assert pairs(sets, "EPYC-Rome-v2") == []
