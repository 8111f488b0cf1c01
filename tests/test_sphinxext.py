"""The Sphinx extension, through Sphinx's own testing fixtures and small projects with canned results."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
from conftest import gone_within, helpers_after_killing_their_parent
from sphinx.testing.util import SphinxTestApp

from course.publish import site
from course.publish.sphinxext import chartcache, context, figures, machines, setdata
from course.publish.sphinxext.base import value_text
from course.results import store
from course.results.layout import Layout


def _html(app: SphinxTestApp, page: str = "index") -> str:
    return (Path(app.outdir) / f"{page}.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def course_site(rootdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SphinxTestApp]:
    """The "course" test root built once, by Sphinx's test application, for the tests that only read its pages, its
    downloads and its warnings. A test that changes the root or the build's settings builds a copy of its own
    (``srcdir=``): here, it would change what the others read."""
    srcdir = tmp_path_factory.mktemp("course-site") / "course"
    shutil.copytree(rootdir / "test-course", srcdir)
    site = SphinxTestApp("html", srcdir=srcdir)
    try:
        site.build()
        yield site
    finally:
        site.cleanup()


def test_values_are_placed_with_their_provenance(course_site: SphinxTestApp) -> None:
    assert course_site._warning.getvalue() == ""
    html = _html(course_site)
    values = re.findall(r'data-measurement="([^"]+)" data-set="[^"]+" data-field="min">([^<]+)<', html)
    assert ("03-timing/read.tty", "1,234 ticks") in values
    # hover text says what the figure is and where it comes from; the link leads to the machine
    assert 'title="minimum of 1,000 samples; stamp-pair cost of 30 ticks subtracted; result set Canned machine' in html
    assert 'href="machines/canned-machine.html#figure-03-timing/read.tty"' in html  # its own row there
    assert ">1,300 ticks<" in html  # the median
    assert ">617 ns<" in html  # 1234 ticks at 2 GHz
    assert ">474 ticks<" in html  # the reference set, asked for by name
    assert "not run (no terminal here)" in html


def test_a_tables_note_says_each_thing_once_a_page_and_2000_only_under_a_2000_column(
    course_site: SphinxTestApp,
) -> None:
    notes = [
        unescape(note) for note in re.findall(r'<p class="course-table-note">(.*?)</p>', _html(course_site, "today"))
    ]
    first, second = notes  # today.md: a pipe alone (no 2000 figure), then the same beside 2000 with the ratio
    assert first.startswith("Each cell: minimum / median") and "2000" not in first
    assert "Each cell" not in second, "not repeated under the next table"
    assert second.startswith("The 2000 figures are Rubini") and "the column after this machine" in second


def test_an_optional_figure_not_yet_measured_is_said_so_without_a_warning(course_site: SphinxTestApp) -> None:
    assert course_site._warning.getvalue() == ""
    assert "not measured yet: run invoke bench" in _html(course_site)


def test_table_has_one_column_per_set_reference_first(course_site: SphinxTestApp) -> None:
    table = _html(course_site).split('<table class="course-table', 1)[1].split("</table>", 1)[0]
    headers = re.findall(r"<th[^>]*><p>([^<]+)</p>", table)
    assert headers == [
        "measurement",
        "2000 reference",
        "Canned machine (this machine)",
        "2000 ÷ this machine (ns)",  # beside the two figures it divides, not after every other set
        "Other machine",
    ]
    assert "1,234 ticks (617 ns) / 1,300" in table
    assert "456 ticks (228 ns) / 470" in table  # the ns beside the minimum they convert
    assert "—" in table  # no 2000 figure for the pipe


def test_a_table_has_no_column_of_dashes_for_a_2000_that_measured_none_of_its_rows(course_site: SphinxTestApp) -> None:
    plain, with_ratio = _html(course_site, "today").split('<table class="course-table')[1:3]
    assert "2000 reference" not in plain and "Canned machine (this machine)" in plain
    assert "2000 reference" in with_ratio, "the ratio to 2000 keeps its column, to say there is none"


def test_charts_are_drawn_from_the_data(course_site: SphinxTestApp) -> None:
    html = _html(course_site)
    assert html.count('<svg class="course-chart" role="img"') == 3
    assert "<title>Canned bars</title>" in html and "<title>Canned histogram</title>" in html
    assert "samples (log scale)" in html  # the histogram's count axis


def test_each_chart_has_its_figures_as_a_table_for_a_screen_reader(course_site: SphinxTestApp) -> None:
    html = _html(course_site)
    tables = re.findall(r'<div class="course-chart-data docutils container">(.*?)</details>', html, re.S)
    assert len(tables) == 3, "one table under each chart"
    bars = tables[0]
    assert "<summary>The chart&#x27;s figures, as a table</summary>" in bars or "The chart's figures" in bars
    assert "<p>1,234 ticks</p>" in bars and "<p>Canned machine (this machine)</p>" in bars
    assert "<p>600</p>" in tables[1], "a histogram bin's count, as text"


def test_a_timeline_draws_each_probe_and_says_what_is_not_measured(course_site: SphinxTestApp) -> None:
    assert course_site._warning.getvalue() == ""
    html = _html(course_site)
    chart = html.split("<title>Canned timeline</title>", 1)[1].split("</svg>", 1)[0]
    assert chart.count('<g class="course-chart-panel"') == 2, "a panel per probe"
    assert ">empty read</text>" in chart and ">wide loop</text>" in chart
    assert "Not measured here" not in html  # nothing drawn, so no caption under nothing
    assert html.count("not measured yet: run invoke bench") == 2  # the chain timeline and bench/pipeline.cold
    assert "r = 0.95" in html


def test_across_eras_the_table_and_the_text_give_the_ratio_of_nanoseconds(course_site: SphinxTestApp) -> None:
    assert course_site._warning.getvalue() == ""
    html = _html(course_site)
    # 474 ticks at 500 MHz = 948 ns in 2000, 1234 ticks at 2 GHz = 617 ns: the 2000 read took 1.5 times as long
    ratios = re.findall(r'data-measurement="([^"]+)" data-set="canned-machine" data-field="vs-2000">([^<]+)<', html)
    assert ratios.count(("03-timing/read.tty", "1.5 times")) == 2, "once in the text, once in the table"
    assert 'title="948 ns in 2000' in html
    table = html.split('<table class="course-table', 1)[1].split("</table>", 1)[0]
    pipe = table.split("<code", 2)[2]
    assert pipe.rstrip().endswith("<td><p>—</p></td>\n</tr>\n</tbody>"), "no 2000 figure for the pipe, no ratio"
    assert "Ticks compare within one machine only" in html


@pytest.mark.sphinx("html", testroot="course-missing", srcdir="course-missing-units")
def test_a_ratio_or_nanoseconds_that_would_compare_other_units_is_refused(app: SphinxTestApp) -> None:
    app.build()
    warnings = app._warning.getvalue()
    assert "cannot compare '03-timing/read.pipe' with 2000: the 2000 reference has no figure for it" in warnings
    assert "cannot compare '04-kernel-read/kernel-read.tty' with 2000: its figure is in emulated ticks" in warnings
    assert "'04-kernel-read/kernel-read.tty:ns' is in emulated ticks, which have no nanoseconds" in warnings
    html = _html(app)
    assert "[no ratio: 04-kernel-read/kernel-read.tty:vs-2000]" in html
    assert "[no ns: 04-kernel-read/kernel-read.tty:ns]" in html


def _chart_panels(html: str, title: str) -> dict[str, str]:
    """Each panel of the chart titled ``title``: its title (its bold text) and the texts drawn in it."""
    chart = html.split(f"<title>{title}</title>", 1)[1].split("</svg>", 1)[0]
    panels = {}
    for chunk in chart.split('<g class="course-chart-panel"')[1:]:
        heading = re.findall(r'<text [^>]*font-weight="bold"[^>]*>([^<]*)</text>', chunk)
        assert heading, "every panel is titled"
        panels[unescape(" ".join(heading))] = "".join(f">{text}<" for text in re.findall(r">([^<]+)</text>", chunk))
    return panels


def test_a_chart_draws_each_unit_in_a_panel_titled_with_it(course_site: SphinxTestApp) -> None:
    assert course_site._warning.getvalue() == ""
    panels = _chart_panels(_html(course_site, "kernel"), "Kernel bars")
    emulated = "emulated ticks (host time spent emulating): Canned machine (this machine)"
    icount = "icount ticks (guest instructions, the same on every host)"
    assert list(panels) == [emulated, icount]
    # Beside each bar its figure; the panel's axis names the unit.
    assert "> 990<" in panels[emulated] and "icount" not in panels[emulated] and "353" not in panels[emulated]
    assert "> 353<" in panels[icount] and "emulated" not in panels[icount] and "990" not in panels[icount]
    assert all(">kernel_read, tty<" in drawn for drawn in panels.values()), "each panel names its rows"


def test_in_a_chart_of_nanoseconds_a_figure_without_them_keeps_its_unit_in_a_panel_of_its_own(
    course_site: SphinxTestApp,
) -> None:
    panels = _chart_panels(_html(course_site, "kernel"), "Kernel bars in nanoseconds")
    emulated = "emulated ticks (host time spent emulating): Canned machine (this machine)"
    icount = "icount ticks (guest instructions, the same on every host)"
    assert list(panels) == ["nanoseconds", emulated, icount]
    # the figure beside each bar starts with a space; a tick label does not
    assert re.findall(r"> ([\d,]+)<", panels["nanoseconds"]) == ["948", "617", "1,000", "848"]
    assert "> 936<" in panels[emulated] and "> 353<" in panels[icount]
    assert "468 ns" not in _html(course_site, "kernel"), "a rate beside emulated ticks does not make them time"


def test_a_table_in_nanoseconds_gives_none_for_emulated_ticks(course_site: SphinxTestApp) -> None:
    table = _html(course_site, "kernel").split("Kernel table", 1)[1].split("</table>", 1)[0]
    assert ">424 ticks (848 ns)<" in table
    assert ">936 emulated ticks / 990<" in table, "a rate recorded beside emulated ticks gives them no ns"


def test_a_table_of_one_unit_has_a_column_only_for_the_sets_that_count_in_it(course_site: SphinxTestApp) -> None:
    assert course_site._warning.getvalue() == ""
    page = _html(course_site, "kernel")

    def heads(caption: str) -> list[str]:
        table = page.split(caption, 1)[1].split("</table>", 1)[0]
        found = re.findall(r"<th[^>]*>(.*?)</th>", table, re.S)
        return [unescape(re.sub(r"<[^>]+>", "", head)).strip() for head in found]

    # The same row in three units (the article's ticks, emulated ticks, icount ticks): one table each.
    assert heads("Instructions only") == ["measurement", "Other machine"]
    assert heads("Ticks of 2000 only") == ["measurement", "2000 reference"]


def test_a_percentage_counts_in_the_unit_it_was_computed_from() -> None:
    results = Path(__file__).resolve().parents[1] / "results"
    share = "06-skipping-layers/saving-percent.ksys-read.tty"
    units = {}
    for name in ("reference-2000", "qemu-icount-debian-6.1", "amd-epyc-6.18.44-fc-v1272-vm"):
        result_set = store.load_set(results / name)
        units[name] = figures.basis_unit(result_set, result_set.measurement(share))
    assert units == {
        "reference-2000": "ticks",
        "qemu-icount-debian-6.1": "icount ticks",
        "amd-epyc-6.18.44-fc-v1272-vm": "emulated ticks",
    }

    class Looping:  # an imported set whose percentages are computed from each other
        def measurement(self, key: str) -> dict:
            return {"unit": "%", "from": ["b" if key == "a" else "a"]}

    assert figures.basis_unit(Looping(), {"unit": "%", "from": ["a"]}) == "%"  # type: ignore[arg-type]


def test_ticks_of_two_machines_never_share_a_scale(course_site: SphinxTestApp) -> None:
    panels = _chart_panels(_html(course_site), "Canned bars")
    assert list(panels) == [
        "ticks of the time-stamp counter: 2000 reference",
        "ticks of the time-stamp counter: Canned machine (this machine)",
        "ticks of the time-stamp counter: Other machine",
    ]
    assert "> 474<" in panels["ticks of the time-stamp counter: 2000 reference"]
    assert "474" not in panels["ticks of the time-stamp counter: Canned machine (this machine)"]


def test_the_kernel_run_note_says_why_in_words_and_the_machine_page_keeps_the_record(
    course_site: SphinxTestApp,
) -> None:
    assert course_site._warning.getvalue() == ""
    note = _html(course_site, "kernel").split("Where the kernel figures on this page come from", 1)[1]
    note = note.split("</div>", 1)[0]
    assert "Figures counted in icount ticks on this page come from other boots" in note, "tcg is not the matrix"
    assert "Emulation was used because a test boot with hardware virtualisation (KVM) failed" in note
    assert "time spent emulating, not work of the guest" in note
    # Said in full once, in the section every box links to (docs/measuring.md on the site), not on every page.
    assert 'href="plain.html#kernel-figures-under-emulation"' in note and "QEMU derives" not in note
    measuring = (Path(__file__).resolve().parents[1] / "docs" / "measuring.md").read_text(encoding="utf-8")
    section = measuring.split("(kernel-figures-under-emulation)=", 1)[1].split("\n### ", 2)[1]
    assert "QEMU derives the guest's time-stamp counter from the host's clock" in section
    assert "Assertion" not in note and "kvm.c" not in note, "QEMU's own words are not for the lesson"
    assert 'href="machines/canned-machine.html"' in note
    page = _html(course_site, "machines/canned-machine")
    words = unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page)))
    assert "kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed." in words, "QEMU's words, verbatim"


def test_the_kernel_run_note_opens_with_where_the_icount_figures_come_from(course_site: SphinxTestApp) -> None:
    note = _html(course_site, "kernel").split("Where the kernel figures on this page come from", 1)[1]
    paragraphs = [
        unescape(re.sub(r"<[^>]+>", "", p)) for p in re.findall(r"<p>(.*?)</p>", note.split("</div>", 1)[0], re.S)
    ]
    assert paragraphs[0].startswith("Figures counted in icount ticks on this page come from other boots"), paragraphs
    assert "(QEMU -icount shift=0): Other machine, each named" in paragraphs[0], "the icount boots, by name"
    assert paragraphs[1].startswith(
        "The kernel figures of this machine\u2019s own last run (shown under Canned machine) come from software"
    ), "the emulated ticks are this machine's own run's, not the page's icount figures"


@pytest.mark.sphinx("html", testroot="course", srcdir="course-kernel-not-run")
def test_a_kernel_run_that_did_not_happen_still_opens_with_the_icount_boots(app: SphinxTestApp, make_app) -> None:
    kernel = Path(app.srcdir) / "results" / "canned-machine" / "04-kernel-read.json"
    data = json.loads(kernel.read_text())
    data["kernel_run"] = {"unavailable": "no QEMU on this machine (install qemu-system-x86)"}
    _later(kernel, json.dumps(data))
    again = make_app("html", srcdir=app.srcdir)  # the fixture's app read the results as it started
    again.build()
    note = _html(again, "kernel").split("Where the kernel figures on this page come from", 1)[1].split("</div>", 1)[0]
    words = unescape(re.sub(r"<[^>]+>", "", note))
    assert words.index("come from other boots") < words.index("Not run on Canned machine: no QEMU"), words
    assert "software emulation (QEMU TCG)" not in words, "nothing is said of a run that did not happen"


@pytest.mark.sphinx("html", testroot="course", srcdir="course-kernel-from-memory")
def test_the_kernel_run_note_names_the_guest_a_run_booted(app: SphinxTestApp, make_app) -> None:
    """A tcg run's guest from memory is named in its box: what a small file is there depends on it."""
    from course.kernel import ram_guest

    app.build()
    words = unescape(re.sub(r"<[^>]+>", "", _html(app, "kernel").split("Where the kernel figures", 1)[1]))
    assert "acceleration: tcg. " in words and "; guest:" not in words, "a virtme-ng run's record names none"
    kernel = Path(app.srcdir) / "results" / "canned-machine" / "04-kernel-read.json"
    data = json.loads(kernel.read_text())
    data["kernel_run"]["guest_system"] = ram_guest.described("tcg")
    _later(kernel, json.dumps(data))
    again = make_app("html", srcdir=app.srcdir)
    again.build()
    note = _html(again, "kernel").split("Where the kernel figures on this page come from", 1)[1].split("</div>", 1)[0]
    words = unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", note)))
    assert "acceleration: tcg; guest: initramfs guest (busybox init, no host file system), QEMU -seed 1" in words


def test_other_boots_are_named_by_kernel_and_by_label() -> None:
    from course.publish.sphinxext.context import boots_in_words

    class Boot:
        def __init__(self, label: str, name: str = "") -> None:
            self.label, self.info = label, {"guest": {"name": name}} if name else {}

    boots = [Boot("g1", "6.1"), Boot("g2", "6.12"), Boot("g3", "6.1-rt"), Boot("Other machine")]
    words = boots_in_words(boots)  # type: ignore[arg-type]
    assert words == "the kernel matrix's guests (6.1, 6.12 and 6.1-rt) and Other machine"
    assert boots_in_words([Boot("Other machine")]) == "Other machine"  # type: ignore[list-item]


def test_why_is_said_in_words_for_every_record_the_runner_makes() -> None:
    from course.publish.sphinxext.context import why_in_words

    def words(acceleration: str, why: str) -> str:
        return why_in_words({"acceleration": acceleration, "why": why})

    probed = " (probed 2026-11-01T00:00:00+00:00)"
    assert "no usable /dev/kvm" in words("tcg", "software emulation: /dev/kvm is absent or not accessible" + probed)
    assert "did not finish" in words("tcg", "software emulation: a probe boot under KVM hung (no answer in 45 s)")
    assert "failed" in words("tcg", "software emulation: a probe boot under KVM failed (exit 1: qemu: oops)" + probed)
    assert "oops" not in words("tcg", "software emulation: a probe boot under KVM failed (exit 1: qemu: oops)")
    assert "--acceleration tcg-icount" in words("tcg-icount", "asked for")
    assert "--acceleration tcg)" in words("tcg", "asked for")
    assert "works on this machine" in words("kvm", "a probe boot under KVM ran a command in 3.1 s")
    assert words("host-kernel", "") == ""


def test_captured_output_is_escaped_and_captioned(course_site: SphinxTestApp) -> None:
    html = _html(course_site)
    assert "empty read() &lt;returned&gt; 0 &amp; more" in html
    caption = re.sub(r"</?span[^>]*>", "", html)
    # "< tty" names a kind of file, not a path: copied, it would be a shell error, so it is said in words.
    assert 'course-command docutils literal notranslate">./usystime 1000</code>' in caption
    assert "(standard input: a pseudo-terminal)" in caption


def test_each_set_has_a_page_with_its_provenance(course_site: SphinxTestApp) -> None:
    assert course_site._warning.getvalue() == ""
    html = _html(course_site, "machines/canned-machine")
    assert "Canned CPU 1000" in html and "6.1.0-canned" in html
    assert re.search(r"meltdown.{0,80}: Not affected", html), "each vulnerability is listed with its state"
    assert "This is the machine that built this site: canned-machine, on bare hardware." in html
    assert "03-timing/read.tty" in html  # every figure of the set is listed
    assert "Rubini, Linux Magazine, 2000" in _html(course_site, "machines/reference-2000")
    assert "This is the machine" not in _html(course_site, "machines/other-machine")


def test_each_figure_links_to_its_own_row_on_its_sets_page(course_site: SphinxTestApp) -> None:
    links = set(re.findall(r'class="course-value[^"]*" href="machines/([^"#]+)\.html#([^"]+)"', _html(course_site)))
    assert ("canned-machine", "figure-03-timing/read.tty") in links
    assert ("reference-2000", "figure-03-timing/read.tty") in links
    # A median, or a figure in ns, lands on its own cell of that row: on a phone the row is wider than the screen.
    assert ("canned-machine", "figure-03-timing/read.tty~median") in links
    assert ("canned-machine", "figure-03-timing/read.tty~min-ns") in links
    for set_id, target in links:
        page = _html(course_site, f"machines/{set_id}")
        anchor, _, field = target.partition("~")
        row = re.search(rf'<tr[^>]* id="{re.escape(anchor)}">(.*?)</tr>', page, re.S)
        assert row, f"no row {anchor} on {set_id}'s page"
        assert anchor.removeprefix("figure-") in row[1]
        if field:
            cell = re.search(rf'<td id="{re.escape(target)}"><p>([^<]+)</p>', row[1])
            assert cell, f"no cell {target} in its row on {set_id}'s page"
    canned = _html(course_site, "machines/canned-machine")
    assert re.search(r'<td id="figure-03-timing/read.tty~median"><p>1,300 ticks</p>', canned)
    assert re.search(r'<td id="figure-03-timing/read.tty~min-ns"><p>617 ns</p>', canned)
    row = re.search(r'id="figure-03-timing/read.tty">(.*?)</tr>', _html(course_site, "machines/canned-machine"), re.S)
    assert "1,234 ticks" in row[1] and "1,300 ticks" in row[1]


def test_a_figures_anchor_is_one_of_its_own_and_needs_no_escaping() -> None:
    names = ["03-timing/read.tty", "03-timing/read_tty", "03-timing/read tty", 'a"b<c>', "é", "_20_"]
    anchors = [setdata.figure_anchor(name) for name in names]
    assert anchors[0] == "figure-03-timing/read.tty"
    assert len(set(anchors)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9./_-]+", anchor) for anchor in anchors)


def test_each_set_downloads_as_json_and_as_csv_with_a_row_a_measurement(course_site: SphinxTestApp) -> None:
    machines = Path(course_site.outdir) / "machines"
    page = _html(course_site, "machines/canned-machine")
    assert 'href="canned-machine.json" download="">JSON</a>' in page
    assert 'href="canned-machine.csv" download="">CSV</a>' in page
    stored = {}
    for lesson in (Path(course_site.srcdir) / "results" / "canned-machine").glob("*.json"):
        if lesson.name != "set.json":
            stored.update(json.loads(lesson.read_text())["measurements"])
    data = json.loads((machines / "canned-machine.json").read_text())
    assert data["set"] == "canned-machine" and data["machine"]["cpu_model"] == "Canned CPU 1000"
    assert {m["id"]: m["min"] for m in data["measurements"] if "min" in m} == {
        key: m["min"] for key, m in stored.items() if "min" in m
    }
    rows = list(csv.DictReader(io.StringIO((machines / "canned-machine.csv").read_text())))
    assert sorted(row["measurement"] for row in rows) == sorted(stored)
    tty = next(row for row in rows if row["measurement"] == "03-timing/read.tty")
    assert (tty["min"], tty["unit"], tty["min_ns"], tty["stamp_pair_subtracted"]) == ("1234", "ticks", "617", "30")
    assert {path.name for path in machines.glob("*.csv")} == {
        "canned-machine.csv",
        "other-machine.csv",
        "reference-2000.csv",
    }


@pytest.mark.sphinx("html", testroot="course", srcdir="course-formula-set")
def test_text_from_a_set_never_becomes_a_spreadsheet_formula(make_app, app: SphinxTestApp) -> None:
    lesson = Path(app.srcdir) / "results" / "other-machine" / "03-timing.json"
    data = json.loads(lesson.read_text())
    key = next(iter(data["measurements"]))
    data["measurements"][key]["command"] = '=HYPERLINK("http://evil.example/","x")'
    data["measurements"]["03-timing/+1"] = {"status": "skipped", "reason": "@SUM(1)", "measured_at": "2026"}
    data["measurements"]["03-timing/semicolon"] = {
        "status": "skipped",
        "reason": 'not run;=HYPERLINK("x")',
        "measured_at": "2026",
    }
    lesson.write_text(json.dumps(data))
    rebuilt = make_app("html", srcdir=app.srcdir)
    rebuilt.build()
    text = (Path(rebuilt.outdir) / "machines" / "other-machine.csv").read_text()
    rows = {row["measurement"]: row for row in csv.DictReader(io.StringIO(text))}
    assert rows[key]["command"] == '\'=HYPERLINK("http://evil.example/","x")'
    assert rows["03-timing/+1"]["reason"] == "'@SUM(1)"
    # Quoted whole: a spreadsheet splitting on ";" sees one cell of text, not a formula after the ";".
    assert '"not run;=HYPERLINK(""x"")"' in text

    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows.values() for cell in row.values() if cell)


@pytest.mark.sphinx("html", testroot="course", srcdir="course-copied-figure")
def test_a_figure_copied_into_another_lessons_file_is_neither_a_row_nor_a_download(
    make_app, app: SphinxTestApp
) -> None:
    """A hand-made set may hold a figure's id twice; the page and the files keep the one the lessons show."""
    other = Path(app.srcdir) / "results" / "other-machine"
    timing = json.loads((other / "03-timing.json").read_text())
    key = next(k for k, m in timing["measurements"].items() if m.get("min"))
    forged = {**timing["measurements"][key], "min": 1, "id": "01-forged/x", "lesson": "01-forged"}
    kernel = json.loads((other / "04-kernel-read.json").read_text())
    kernel["measurements"][key] = forged
    (other / "04-kernel-read.json").write_text(json.dumps(kernel))
    timing["measurements"][key] = {**timing["measurements"][key], "id": "01-forged/y"}
    (other / "03-timing.json").write_text(json.dumps(timing))
    rebuilt = make_app("html", srcdir=app.srcdir)
    rebuilt.build()
    page = _html(rebuilt, "machines/other-machine")
    assert page.count(f'id="{setdata.figure_anchor(key)}"') == 1
    machines_out = Path(rebuilt.outdir) / "machines"
    data = json.loads((machines_out / "other-machine.json").read_text())
    shown = [m for m in data["measurements"] if m["id"] == key]
    assert len(shown) == 1 and shown[0]["min"] == timing["measurements"][key]["min"]
    assert shown[0]["lesson"] == "03-timing", "a measurement's own fields never rename it"
    assert not any(m["id"].startswith("01-forged") for m in data["measurements"])
    table = list(csv.DictReader(io.StringIO((machines_out / "other-machine.csv").read_text())))
    assert [row["min"] for row in table if row["measurement"] == key] == [str(timing["measurements"][key]["min"])]


def test_a_site_with_two_measured_sets_shows_both_and_compares_them(course_site: SphinxTestApp) -> None:
    overview = _html(course_site, "machines")
    for name in ("2000 reference", "Canned machine (this machine)", "Other machine"):
        assert name in overview
    assert "Other CPU 2000" in overview and "1 mitigation, 1 vulnerable" in overview
    # 474 ticks at 500 MHz = 948 ns in 2000; 1234 ticks at 2 GHz = 617 ns; 3000 ticks at 3 GHz = 1000 ns
    assert "<p>617 ns / 1.5 times faster</p>" in overview, "nanoseconds only: ticks are on the set's page"
    assert "<p>1,000 ns / 0.9 times faster</p>" in overview
    # Emulated ticks are compared with nothing, even beside a recorded rate; icount ticks neither.
    assert "<p>936 emulated ticks</p>" in overview and "<p>353 icount ticks</p>" in overview
    assert 'href="machines/other-machine.html"' in overview
    titles = " ".join(_chart_panels(_html(course_site), "Canned bars"))
    assert "Other machine" in titles and "Canned machine (this machine)" in titles


@pytest.mark.sphinx("html", testroot="course", srcdir="course-chosen-sets")
def test_which_sets_appear_is_configurable(make_app, app: SphinxTestApp) -> None:
    chosen = make_app("html", srcdir=app.srcdir, confoverrides={"course_sets": ["canned-machine"]})
    chosen.build()
    table = _html(chosen).split('<table class="course-table', 1)[1].split("</table>", 1)[0]
    assert "Canned machine" in table and "Other machine" not in table
    assert "2000 reference" in table, "the 2000 reference is always compared"
    assert (Path(chosen.outdir) / "machines" / "other-machine.html").is_file(), "a set not compared keeps its page"


@pytest.mark.sphinx("html", testroot="course-missing")
def test_missing_stale_and_malformed_values_are_warnings_that_name_them(app: SphinxTestApp) -> None:
    app.build()
    warnings = app._warning.getvalue()
    assert "measurement '03-timing/read.nowhere' missing from result set 'canned-machine'" in warnings
    assert "measurement '03-timing/read.stale' is stale: code/program.c changed since it was measured" in warnings
    assert "unknown field 'average'" in warnings
    assert "output '03-timing/absent.output' missing" in warnings
    assert "measurement '03-timing/read.absent' missing" in warnings
    assert "index.md" in warnings  # each warning says where
    assert "[missing: 03-timing/read.nowhere]" in _html(app)


@pytest.mark.sphinx("html", testroot="course", srcdir="course-changed-result")
def test_a_changed_result_rebuilds_exactly_the_pages_that_use_it(app: SphinxTestApp, make_app) -> None:
    app.build()
    srcdir = Path(app.srcdir)
    result = srcdir / "results" / "canned-machine" / "03-timing.json"
    data = json.loads(result.read_text())
    data["measurements"]["03-timing/read.tty"]["min"] = 999
    result.write_text(json.dumps(data))

    again = make_app("html", srcdir=app.srcdir)
    read = _pages_read(again)
    again.build()
    assert "index" in read
    assert "plain" not in read
    assert ">999 ticks<" in _html(again)


def _pages_read(app: SphinxTestApp) -> list[str]:
    """The pages ``app`` reads (parses) in its next build, filled in as it reads them."""
    read: list[str] = []
    app.connect("doctree-read", lambda app, doctree: read.append(app.env.docname))
    return read


def _later(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with a date after its previous one (a rerun's write, whatever the clock)."""
    later = max(path.stat().st_mtime_ns, time.time_ns()) + 10**9
    path.write_text(text)
    os.utime(path, ns=(later, later))


@pytest.mark.sphinx("html", testroot="course", srcdir="course-rewritten-alike")
def test_a_result_file_rewritten_with_the_same_figures_rebuilds_no_page(app: SphinxTestApp, make_app) -> None:
    app.build()
    results = Path(app.srcdir) / "results" / "canned-machine"
    for name in ("03-timing.json", "04-kernel-read.json", "set.json"):
        _later(results / name, (results / name).read_text())
    again = make_app("html", srcdir=app.srcdir)
    read = _pages_read(again)
    again.build()
    assert read == []


@pytest.mark.sphinx("html", testroot="course", srcdir="course-new-tsc-rate")
def test_a_new_tsc_rate_rebuilds_only_the_pages_that_show_it(app: SphinxTestApp, make_app) -> None:
    """A rerun remeasures the TSC rate and rewrites set.json: only the pages that print the rate are reread."""
    app.build()
    info_file = Path(app.srcdir) / "results" / "canned-machine" / "set.json"
    info = json.loads(info_file.read_text())
    info["machine"]["tsc_hz"] += 1
    info["updated"] = "2031-01-01T00:00:00+00:00"
    _later(info_file, json.dumps(info))
    again = make_app("html", srcdir=app.srcdir)
    read = _pages_read(again)
    again.build()
    # The set's own page prints the rate in hertz; the overview prints it in GHz to the hundredth, unchanged.
    assert sorted(read) == ["machines/canned-machine"]
    assert f"{info['machine']['tsc_hz']:,}" in _html(again, "machines/canned-machine")

    info["machine"]["tsc_hz"] += 10**7  # 2.00 -> 2.01 GHz: now the overview says something else
    _later(info_file, json.dumps(info))
    third = make_app("html", srcdir=app.srcdir)
    read = _pages_read(third)
    third.build()
    assert sorted(read) == ["machines", "machines/canned-machine"]
    assert "2.01 GHz" in _html(third, "machines")


@pytest.mark.sphinx("html", testroot="course", srcdir="course-same-minimum")
def test_a_rerun_that_leaves_a_minimum_as_it_was_leaves_the_overview_unread(app: SphinxTestApp, make_app) -> None:
    """The overview of machines shows each figure's minimum: new samples with the same minimum do not reread it."""
    app.build()
    result = Path(app.srcdir) / "results" / "canned-machine" / "03-timing.json"
    data = json.loads(result.read_text())
    figure = data["measurements"]["03-timing/read.tty"]
    figure["median"] += 7
    figure["histogram"]["counts"][1] += 1
    _later(result, json.dumps(data))
    again = make_app("html", srcdir=app.srcdir)
    read = _pages_read(again)
    again.build()
    assert "index" in read and "machines" not in read  # index shows the median; the overview only the minimum
    shown = _html(again, "machines")
    figure["min"] -= 2  # 617 ns at the canned set's 2 GHz becomes 616 ns: the overview shows nanoseconds
    _later(result, json.dumps(data))
    third = make_app("html", srcdir=app.srcdir)
    read = _pages_read(third)
    third.build()
    assert "machines" in read
    assert "616 ns" in _html(third, "machines") and "616 ns" not in shown


@pytest.mark.sphinx("html", testroot="course", srcdir="course-one-figure-rerun")
def test_a_rerun_that_changes_one_figure_rereads_only_the_pages_that_show_it(app: SphinxTestApp, make_app) -> None:
    """A student's rerun rewrites its lesson's file and keeps most figures as they were (every program it did not
    run again): a page that shows figures of that file, none of them changed, is not read again."""
    app.build()
    result = Path(app.srcdir) / "results" / "canned-machine" / "03-timing.json"
    data = json.loads(result.read_text())
    data["measurements"]["03-timing/read.pipe"]["median"] = 473  # the pipe's program alone ran again
    data["measurements"]["03-timing/read.pipe"]["measured_at"] = data["measured_at"] = "2031-01-01T00:00:00+00:00"
    _later(result, json.dumps(data))
    again = make_app("html", srcdir=app.srcdir)
    read = _pages_read(again)
    again.build()
    # host and kernel show the terminal's figure alone, the overview its minimum; the index shows the file's
    # failures and a capture of it besides, the set's page every figure.
    assert sorted(read) == ["index", "machines/canned-machine", "today"]
    assert "456 ticks / 473" in _html(again, "today")


@pytest.mark.sphinx("html", testroot="course", srcdir="course-glob-rows")
def test_a_table_of_a_glob_is_read_again_when_a_figure_it_matches_appears(app: SphinxTestApp, make_app) -> None:
    """A glob's rows are the measurements the sets hold: a new one is a new row, though no figure shown changed."""
    srcdir = Path(app.srcdir)
    (srcdir / "globs.md").write_text("---\norphan: true\n---\n\n# Globs\n\n```{course-table}\n03-timing/read.p*\n```\n")
    first = make_app("html", srcdir=app.srcdir)
    first.build()
    assert "read.pipe" in _html(first, "globs") and "read.pty" not in _html(first, "globs")
    result = srcdir / "results" / "canned-machine" / "03-timing.json"
    data = json.loads(result.read_text())
    data["measurements"]["03-timing/read.pty"] = {**data["measurements"]["03-timing/read.pipe"], "min": 457}
    _later(result, json.dumps(data))
    again = make_app("html", srcdir=app.srcdir)
    read = _pages_read(again)
    again.build()
    assert "globs" in read and {"host", "kernel", "machines"}.isdisjoint(read)
    assert "read.pty" in _html(again, "globs") and "457 ticks" in _html(again, "globs")


@pytest.mark.sphinx("html", testroot="course", srcdir="course-parallel-handful", parallel=2)
def test_a_parallel_build_reads_a_handful_of_pages_in_its_own_process(app: SphinxTestApp, make_app) -> None:
    """Forking a process per chunk and merging its pickled environment costs more than reading a rerun's few
    pages: those are read (and written) here; a build of many pages still reads them in other processes."""
    here = _pages_read(app)
    app.build()
    assert app.parallel == 2 and here == [], "every page of a first build, read in other processes"
    result = Path(app.srcdir) / "results" / "canned-machine" / "03-timing.json"
    data = json.loads(result.read_text())
    data["measurements"]["03-timing/read.pipe"]["median"] = 473
    _later(result, json.dumps(data))
    again = make_app("html", srcdir=app.srcdir, parallel=2)
    here = _pages_read(again)
    again.build()
    assert sorted(here) == ["index", "machines/canned-machine", "today"] and again.parallel == 1
    assert "456 ticks / 473" in _html(again, "today")


@pytest.mark.sphinx("html", testroot="course", srcdir="course-toctree-parent")
def test_a_page_is_written_again_for_a_reread_page_of_its_toctree_only_when_its_entry_changed(
    app: SphinxTestApp, make_app
) -> None:
    """New figures on a page its toctree lists leave the index's text as it was: it is not written again; a new
    title of that page is a new entry, and it is."""
    app.build()
    outdir, srcdir = Path(app.outdir), Path(app.srcdir)
    kernel = srcdir / "results" / "canned-machine" / "04-kernel-read.json"
    data = json.loads(kernel.read_text())
    data["measurements"]["04-kernel-read/kernel-read.tty"]["median"] = 977  # drawn on the kernel page alone
    _later(kernel, json.dumps(data))
    before = {page.name: page.stat().st_mtime_ns for page in outdir.glob("*.html")}
    again = make_app("html", srcdir=app.srcdir)
    again.build()
    written = {page.name for page in outdir.glob("*.html") if page.stat().st_mtime_ns != before.get(page.name)}
    assert "kernel.html" in written and "index.html" not in written
    assert ">977 " in _html(again, "kernel")

    page = srcdir / "kernel.md"
    _later(page, page.read_text().replace("# Kernel figures", "# Figures from the kernel", 1))
    third = make_app("html", srcdir=app.srcdir)
    third.build()
    assert "Figures from the kernel" in _html(third, "index"), "the index lists the page under its new title"
    assert third.env.files_to_rebuild.get("kernel") == {"index"}, "the environment keeps what Sphinx recorded"


def _charts(app: SphinxTestApp) -> dict[str, int]:
    """The stored charts of ``app``'s build: file name and date."""
    return {path.name: path.stat().st_mtime_ns for path in chartcache.folder_of(app).glob("*.json")}


@pytest.mark.sphinx("html", testroot="course", srcdir="course-chart-cache")
def test_a_chart_is_drawn_again_only_when_its_own_figures_changed(app: SphinxTestApp, make_app) -> None:
    app.build()
    before = _charts(app)
    assert len(before) == 5  # the index's bars, histogram and timeline, the kernel page's two bar charts
    kernel = Path(app.srcdir) / "results" / "canned-machine" / "04-kernel-read.json"
    data = json.loads(kernel.read_text())
    data["measurements"]["04-kernel-read/kernel-read.tty"]["median"] = 977  # drawn by "Kernel bars" only
    _later(kernel, json.dumps(data))
    again = make_app("html", srcdir=app.srcdir)
    read = _pages_read(again)
    again.build()
    # The pages that show the changed median, and no other (the overview of machines shows minimums).
    assert sorted(read) == ["kernel", "machines/canned-machine"]
    after = _charts(again)
    kept = before.keys() & after.keys()
    assert len(kept) == 4 and all(after[name] == before[name] for name in kept), "an unchanged chart was redrawn"
    assert len(after.keys() - before.keys()) == 1, "the changed chart is drawn once"  # and its old one is gone
    assert ">977 " in _html(again, "kernel")


def test_every_chart_function_goes_through_the_chart_cache() -> None:
    """A chart function added without ``@cached`` would be drawn again on every read of its page."""
    import inspect

    from course.publish.sphinxext import charts

    drawing = [
        function
        for name, function in inspect.getmembers(charts, inspect.isfunction)
        if function.__module__ == charts.__name__
        and inspect.signature(function).return_annotation == "Chart"
        and not name.startswith("_")  # a helper of the drawing functions (the chart of nothing to draw)
    ]
    assert len(drawing) >= 3
    assert [f.__name__ for f in drawing if not hasattr(f, "__wrapped__")] == [], "decorate them with @cached"


def test_a_charts_key_is_its_figures_and_its_drawing_code(monkeypatch: pytest.MonkeyPatch) -> None:
    from course.publish.sphinxext import charts

    bars = [charts.Bar("read", "this machine", 1234.0, "1,234 ticks", unit="ticks")]
    key = chartcache.chart_key(charts.bar_chart, (bars, "title"), {})
    assert key == chartcache.chart_key(charts.bar_chart, (list(bars), "title"), {})
    other = [charts.Bar("read", "this machine", 1235.0, "1,235 ticks", unit="ticks")]
    assert key != chartcache.chart_key(charts.bar_chart, (other, "title"), {})
    assert key != chartcache.chart_key(charts.bar_chart, (bars, "another title"), {})
    monkeypatch.setattr(chartcache, "_code_digest", lambda draw: "the drawing code, edited")
    assert key != chartcache.chart_key(charts.bar_chart, (bars, "title"), {})


def test_a_charts_key_leaves_out_its_tables_notes_and_a_stored_chart_takes_todays(tmp_path: Path) -> None:
    """A rerun renews each figure's date (a note of the table, never drawn): the picture is kept, the table renewed."""
    from course.publish.sphinxext import charts

    bars = [charts.Bar("read", "this machine", 1234.0, "1,234 ns", "measured at 10:00", unit="ns")]
    again = [charts.Bar("read", "this machine", 1234.0, "1,234 ns", "measured at 11:00", unit="ns")]
    key = chartcache.chart_key(charts.bar_chart, (bars, "title"), {})
    assert key == chartcache.chart_key(charts.bar_chart, (again, "title"), {})
    relabelled = [charts.Bar("read", "this machine", 1234.0, "1,235 ns", "measured at 10:00", unit="ns")]
    assert key != chartcache.chart_key(charts.bar_chart, (relabelled, "title"), {}), "a label is drawn"
    folder = tmp_path / chartcache.FOLDER
    folder.mkdir()
    chartcache._build.update(folder=folder)
    try:
        first = charts.bar_chart(bars, "title")
        stored = {path.name: path.stat().st_mtime_ns for path in folder.glob("*.json")}
        second = charts.bar_chart(again, "title")
        assert {path.name: path.stat().st_mtime_ns for path in folder.glob("*.json")} == stored, "not drawn again"
    finally:
        chartcache._build.clear()
    assert second.svg == first.svg
    assert [row[-1] for row in second.rows] == ["measured at 11:00"], "the table says today's note"


def test_a_charts_key_changes_when_the_svg_writer_changes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from course.publish.sphinxext import charts, svg

    bars = [charts.Bar("read", "this machine", 1234.0, "1,234 ticks", unit="ticks")]
    chartcache._code_digest.cache_clear()
    key = chartcache.chart_key(charts.bar_chart, (bars, "title"), {})
    edited = tmp_path / "svg.py"
    edited.write_text(Path(svg.__file__).read_text() + "\n# the writer, edited\n")
    monkeypatch.setattr(svg, "__file__", str(edited))
    chartcache._code_digest.cache_clear()
    try:
        assert chartcache.chart_key(charts.bar_chart, (bars, "title"), {}) != key, "drawn again with the new writer"
    finally:
        chartcache._code_digest.cache_clear()


@pytest.mark.sphinx("html", testroot="course", srcdir="course-no-matplotlib")
def test_a_rebuild_whose_charts_did_not_change_never_imports_matplotlib(
    app: SphinxTestApp, make_app, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.build()
    timing = Path(app.srcdir) / "results" / "canned-machine" / "03-timing.json"
    data = json.loads(timing.read_text())
    data["measurements"]["03-timing/read.skipped"]["reason"] = "no terminal on this bench"  # a value, in no chart
    _later(timing, json.dumps(data))
    for name in [name for name in sys.modules if name.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # any import of it now fails
    again = make_app("html", srcdir=app.srcdir)
    read = _pages_read(again)
    again.build()
    assert "index" in read  # its four charts were placed again, from the stored ones
    html = _html(again)
    assert "not run (no terminal on this bench)" in html
    assert html.count('<svg class="course-chart"') == 3  # the bars, the histogram, the timeline


@pytest.mark.sphinx("html", testroot="course", srcdir="course-drawn-without-matplotlib")
def test_a_site_build_draws_every_chart_without_importing_matplotlib(app: SphinxTestApp, tmp_path: Path) -> None:
    """A build with no chart stored draws all of them, in a process of its own that never imports matplotlib."""
    out, doctrees = tmp_path / "html", tmp_path / "doctrees"
    build = f"""
import sys
from sphinx.cmd.build import build_main
status = build_main(["-b", "html", "-q", "-d", {str(doctrees)!r}, {str(app.srcdir)!r}, {str(out)!r}])
print(status, "matplotlib" in sys.modules)
"""
    root = Path(__file__).parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", build], capture_output=True, text=True, env=env, timeout=300)
    assert done.stdout.splitlines()[-1:] == ["0 False"], done.stdout + done.stderr
    assert len(list((doctrees / chartcache.FOLDER).glob("*.json"))) >= 3, "the charts were drawn in that build"
    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.count('<svg class="course-chart"') == 3  # the bars, the histogram, the timeline
    assert "<title>Canned bars</title>" in html and "<title>Canned histogram</title>" in html


FURO = {"html_theme": "furo"}  # the site's theme, whose every page draws the whole site's navigation


@pytest.mark.sphinx("html", testroot="course", srcdir="course-navigation", confoverrides=FURO)
def test_a_pages_navigation_is_drawn_again_only_when_the_contents_change(
    app: SphinxTestApp, make_app, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sphinx.builders.html import StandaloneHTMLBuilder

    app.build()
    srcdir = Path(app.srcdir)
    drawn: list[str] = []
    draw = StandaloneHTMLBuilder._get_local_toctree

    def counted(self, docname: str, *args, **kwargs) -> str:
        drawn.append(docname)
        return draw(self, docname, *args, **kwargs)

    monkeypatch.setattr(StandaloneHTMLBuilder, "_get_local_toctree", counted)

    def rebuilt() -> tuple[SphinxTestApp, list[str]]:
        again = make_app("html", srcdir=srcdir, confoverrides=FURO)
        written: list[str] = []
        again.connect("html-page-context", lambda app, pagename, *rest: written.append(pagename))
        drawn.clear()
        again.build()
        return again, written

    # A figure changes: its page is written again, its navigation taken from the last build.
    timing = srcdir / "results" / "canned-machine" / "03-timing.json"
    data = json.loads(timing.read_text())
    data["measurements"]["03-timing/read.skipped"]["reason"] = "no terminal on this bench"
    _later(timing, json.dumps(data))
    again, written = rebuilt()
    assert "index" in written and drawn == [], "no navigation drawn: the contents did not change"
    # ... and the page is the one a build with nothing stored writes, byte for byte.
    fresh_source = tmp_path / "fresh"
    shutil.copytree(srcdir, fresh_source, ignore=shutil.ignore_patterns("_build"))
    fresh = make_app("html", srcdir=fresh_source, confoverrides=FURO, freshenv=True)
    fresh.build()
    for page in written:
        if page not in ("genindex", "search"):
            assert _html(again, page) == _html(fresh, page), f"{page}: written otherwise with the stored navigation"
    assert "no terminal on this bench" in _html(again)

    # A page's title changes: every page written draws its navigation again, with the new title.
    plain = srcdir / "plain.md"
    text = plain.read_text()
    _later(plain, re.sub(r"^# .*$", "# A renamed page", text, count=1, flags=re.MULTILINE))
    renamed, written = rebuilt()
    assert "plain" in written and set(written) <= set(drawn)
    assert _html(renamed, "plain").count("A renamed page") >= 2, "in the page and in its navigation"


@pytest.mark.sphinx("html", testroot="course", srcdir="course-search-stems")
def test_the_search_index_built_with_the_stems_of_earlier_builds_is_the_same(
    app: SphinxTestApp, make_app, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sphinx.search.en import SearchEnglish

    from course.publish.sphinxext import searchstems

    app.build()
    srcdir = Path(app.srcdir)
    stored = json.loads((Path(app.doctreedir) / searchstems.FILE).read_text())
    assert stored["stems"]["measured"] == "measur" and len(stored["stems"]) > 100
    stemmed: list[str] = []
    stem = SearchEnglish.stem
    monkeypatch.setattr(SearchEnglish, "stem", lambda self, word: stemmed.append(word) or stem(self, word))
    timing = srcdir / "results" / "canned-machine" / "03-timing.json"
    data = json.loads(timing.read_text())
    data["measurements"]["03-timing/read.skipped"]["reason"] = "no terminal on this bench, zyxwvut"
    _later(timing, json.dumps(data))
    again = make_app("html", srcdir=srcdir)
    again.build()
    assert "zyxwvut" in stemmed and len(stemmed) < 10, "only the words never seen before are stemmed"
    fresh_source = tmp_path / "fresh"
    shutil.copytree(srcdir, fresh_source, ignore=shutil.ignore_patterns("_build"))
    fresh = make_app("html", srcdir=fresh_source, freshenv=True)
    fresh.build()
    index = (Path(again.outdir) / "searchindex.js").read_text()
    assert "zyxwvut" in index and index == (Path(fresh.outdir) / "searchindex.js").read_text()


@pytest.mark.sphinx("html", testroot="course", srcdir="course-kept")
def test_a_rerun_that_kept_figures_says_which_and_from_when(app: SphinxTestApp, make_app) -> None:
    app.build()
    assert "course-kept" not in _html(app), "nothing is said when nothing was kept"
    lesson = Path(app.srcdir) / "results" / "canned-machine" / "03-timing.json"
    data = json.loads(lesson.read_text())
    data["kept"] = {"tscstep": "2026-09-30T09:15:00+00:00", "<b>fences</b>": "2026-09-30T09:15:40+00:00"}
    _later(lesson, json.dumps(data))
    again = make_app("html", srcdir=app.srcdir)
    again.build()
    html = _html(again)
    line = unescape(re.sub(r"<[^>]+>", "", html.split('class="course-kept"', 1)[1].split("</p>", 1)[0]))
    assert "kept from 2026-09-30 09:15 UTC" in line and ": <b>fences</b>, tscstep" in line, "each date once"
    assert line.startswith(">Last run "), line
    assert "invoke lesson 3 --all reruns them" in line
    assert "&lt;b&gt;fences&lt;/b&gt;" in html and "<b>fences" not in html, "a set's names are text, never markup"
    # Figures kept for weeks say how much older they are than the run beside them (the canned run: 2026-11-01).
    assert "kept from 2026-09-30 09:15 UTC (31 days before the last run): <b>fences</b>, tscstep" in line, line


def test_a_kept_figures_age_is_said_from_a_day_on() -> None:
    from course.publish.sphinxext.context import days_before

    last = "2026-12-05T13:47:10+00:00"
    assert days_before("2026-12-05T09:00:00+00:00", last) == "", "the same day: the date says it"
    assert days_before("2026-12-04T13:00:00+00:00", last) == " (1 day before the last run)"
    assert days_before("2026-06-05T13:47:10+00:00", last) == " (183 days before the last run)"
    assert days_before("not a date", last) == days_before("2026-12-05T13:47:10+00:00", "") == ""


def test_a_failed_run_is_shown_as_a_failure_box_with_its_log(course_site: SphinxTestApp) -> None:
    html = _html(course_site)
    assert "Failed: run usystime (stdin=tty)" in html
    assert "exited with -11" in html and "Figures below from earlier runs are kept with their own dates" in html
    assert "Segmentation fault &lt;core dumped&gt; &amp; more" in html, "the log is shown, escaped"


#: A label as an attacker would write it: a MyST include of a local file, a role, raw HTML, a script.
HOSTILE = (
    "Evil ```{include} /etc/passwd\n```\n\n```{include} /etc/passwd\n```\n"
    " {raw}`html <b>bold</b>` <script>alert(1)</script> <img src=x onerror=alert(2)> $x$ # end"
)


@pytest.mark.sphinx("html", testroot="course", srcdir="course-hostile-set")
def test_strings_from_a_result_set_are_text_never_markup(make_app, app: SphinxTestApp) -> None:
    results = Path(app.srcdir) / "results"
    info = json.loads((results / "other-machine" / "set.json").read_text())
    # Line breaks, a bidi override and other invisible characters are refused when the set is read
    # (test_untrusted_sets): what reaches the pages is markup made of visible characters.
    info["label"] = HOSTILE.replace("\n", " ")
    info["machine"]["cpu_model"] = "<script>alert(3)</script> {include}`/etc/passwd`"
    info["machine"]["kernel_release"] = "```{raw} html <script>alert(4)</script> ```"
    info["machine"]["mitigations"] = {"<script>x</script>": "<script>alert(5)</script>"}
    (results / "other-machine" / "set.json").write_text(json.dumps(info))
    rebuilt = make_app("html", srcdir=app.srcdir)
    rebuilt.build()
    for page in ("machines/other-machine", "machines", "index"):
        html = _html(rebuilt, page)
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold</b>" not in html, page
        assert "root:x:0:0" not in html, f"{page} includes /etc/passwd"
    titles = re.findall(r'title="([^"]*)"', _html(rebuilt, "index"))
    assert any("Evil" in title for title in titles), "the hostile set's figures have notes"
    assert not any("\n" in title for title in titles), "a note is one line of visible text"
    page = _html(rebuilt, "machines/other-machine")
    # The label is the page's title, shown as the characters it holds.
    assert "Evil ```{include} /etc/passwd ```" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "{raw}`html &lt;b&gt;bold&lt;/b&gt;`" in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page and "&lt;script&gt;alert(5)&lt;/script&gt;" in page


@pytest.mark.sphinx("html", testroot="course", srcdir="course-guest-set")
def test_a_set_measured_only_in_a_guest_is_described_by_the_guest(make_app, app: SphinxTestApp) -> None:
    """An icount set's figures come from the guest: its kernel, QEMU's CPU, its mitigations, not the host's."""
    other = Path(app.srcdir) / "results" / "other-machine"
    kernel_file = other / "04-kernel-read.json"
    content = json.loads(kernel_file.read_text())
    guest = {
        "cpu_model": "QEMU Virtual CPU version 2.5+",
        "kernel_release": "6.1.0-guest",
        "tsc_flags": ["tsc"],
        "mitigations": {"meltdown": "Mitigation: PTI (in the guest)"},
    }
    content["kernel_run"]["guest_machine"] = guest
    kernel_file.write_text(json.dumps(content))
    rebuilt = make_app("html", srcdir=app.srcdir)
    rebuilt.build()
    page = _html(rebuilt, "machines/other-machine")
    assert "The guest, as it reported itself" in page
    assert "QEMU Virtual CPU version 2.5+" in page and "Mitigation: PTI (in the guest)" in page
    # The set still has a lesson measured on the host: its overview row is the host's.
    assert "6.12.0-other" in _html(rebuilt, "machines")
    (other / "03-timing.json").unlink()
    only_guest = make_app("html", srcdir=app.srcdir, freshenv=True)
    only_guest.build()
    overview = _html(only_guest, "machines")
    row = overview.split("machines/other-machine.html", 1)[1].split("</tr>", 1)[0]
    assert "6.1.0-guest" in row and "QEMU Virtual CPU" in row and "6.12.0-other" not in row
    # Its ticks are the guest's: the host's TSC rate would say nothing of them.
    acceleration = content["kernel_run"]["acceleration"]
    assert machines.GUEST_CLOCKS[acceleration] in row and "GHz" not in row


# --- what the attacker's review found -----------------------------------------------------------


def _imported(set_path: Path, updated: str = "9999-01-01T00:00:00+00:00") -> None:
    """Mark ``set_path`` as `invoke results.import` does, with the date an archive may claim."""
    info = json.loads((set_path / "set.json").read_text())
    info["imported"] = {"at": "2026-11-02T00:00:00+00:00", "archive": "theirs.tar.gz"}
    info["updated"] = updated
    (set_path / "set.json").write_text(json.dumps(info))


def test_an_imported_set_is_never_taken_for_this_machines(rootdir: Path, tmp_path: Path) -> None:
    from course.publish.sphinxext.data import CourseData

    results = tmp_path / "results"
    shutil.copytree(rootdir / "test-course" / "results", results)
    _imported(results / "other-machine")  # "updated" 9999: it was the newest set, so "this machine"
    assert CourseData(results, tmp_path).current_id == "canned-machine"
    shutil.rmtree(results / "canned-machine")
    assert CourseData(results, tmp_path).current_id == "", "no set of this machine: none is shown as one"


def test_a_lesson_takes_two_cpu_generations_under_one_model_name_for_two_machines() -> None:
    """Builds of one machine (same CPU and kernel, other build tags) stand for each other in a lesson; a set of
    another CPU family under the same generic name does not, nor one whose CPU is known beside one stored before
    the identity was recorded."""
    from course.publish.sphinxext.data import same_hardware

    def host(name: str, release: str, **identity: str) -> store.ResultSet:
        machine = {"cpu_model": "AMD EPYC", "kernel_release": release, "virtualization": "vm", "cpu_count": 2}
        return store.ResultSet(name, Path(name), {"kind": "measured", "machine": {**machine, **identity}})

    zen5 = {"cpu_vendor": "AuthenticAMD", "cpu_family": "26", "cpu_model_number": "2", "cpu_stepping": "1"}
    zen3 = {**zen5, "cpu_family": "25", "cpu_model_number": "1"}
    assert same_hardware(host("a", "6.18.44-fc-v595")) == same_hardware(host("b", "6.18.44-fc-v782"))
    assert same_hardware(host("c", "6.18.44-fc-v595", **zen5)) == same_hardware(host("d", "6.18.44-fc-v782", **zen5))
    assert same_hardware(host("e", "6.18.44-fc-v595", **zen5)) != same_hardware(host("f", "6.18.44-fc-v782", **zen3))
    assert same_hardware(host("g", "6.18.44-fc-v595", **zen5)) != same_hardware(host("h", "6.18.44-fc-v782"))


def test_a_machine_page_names_the_cpu_generation_where_the_set_records_it() -> None:
    machine = {"cpu_model": "AMD EPYC", "kernel_release": "6.18.44-fc-v1272", "virtualization": "vm"}
    identity = {"cpu_vendor": "AuthenticAMD", "cpu_family": "26", "cpu_model_number": "2", "cpu_stepping": "1"}
    new = dict(machines.provenance(store.ResultSet("new", Path("new"), {"machine": {**machine, **identity}})))
    assert new["CPU vendor, family, model, stepping"] == "AuthenticAMD, 26, 2, 1"
    for older in (machine, {**machine, **dict.fromkeys(identity, "unknown")}):  # stored before; not x86
        rows = dict(machines.provenance(store.ResultSet("old", Path("old"), {"machine": older})))
        assert "CPU vendor, family, model, stepping" not in rows and rows["CPU"] == "AMD EPYC"


@pytest.mark.sphinx("html", testroot="course", srcdir="course-goal-field")
def test_a_goal_is_compared_only_with_a_figure_that_is_there(make_app, app: SphinxTestApp) -> None:
    # A table of `mean` over a benchmark with a value and a goal: measurement["mean"] was a KeyError.
    srcdir = Path(app.srcdir)
    bench = srcdir / "results" / "canned-machine" / "bench.json"
    content = json.loads(bench.read_text())
    content["measurements"]["bench/pipeline.cold"] = {"status": "ok", "value": 1.5, "goal": 2, "unit": "s"}
    bench.write_text(json.dumps(content))
    with (srcdir / "index.md").open("a") as page:
        page.write("\n```{course-table}\n:field: mean\nbench/pipeline.cold cold generation\n```\n")
    rebuilt = make_app("html", srcdir=app.srcdir)
    rebuilt.build()
    html = _html(rebuilt)
    assert "no mean" in html and "1.5 s (goal ≤ 2.0 s: met)" in html


@pytest.mark.sphinx("html", testroot="course", srcdir="course-crashing-chart")
def test_a_set_the_site_cannot_draw_is_named_in_one_line(make_app, app: SphinxTestApp, monkeypatch) -> None:
    from course.publish.sphinxext import charts
    from course.publish.sphinxext.data import ResultSetError

    def crash(*args, **kwargs):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(charts, "histogram_chart", crash)  # a case the checks would miss
    with pytest.raises(ResultSetError, match=r"result set 'canned-machine' \(.*canned-machine\) cannot be shown "):
        app.build()


@pytest.mark.sphinx("html", testroot="course", srcdir="course-control-characters")
def test_control_characters_of_a_capture_are_shown_escaped(make_app, app: SphinxTestApp) -> None:
    srcdir = Path(app.srcdir)
    timing = srcdir / "results" / "canned-machine" / "03-timing.json"
    content = json.loads(timing.read_text())
    capture = content["captures"]["03-timing/usystime.tty.output"]
    capture["text"] = "NUL\x00 ESC\x1b[31m red\x07\n\tnext line"
    capture["command"] = "./usystime\x1b]0;title\x07"
    timing.write_text(json.dumps(content))
    rebuilt = make_app("html", srcdir=app.srcdir)
    rebuilt.build()
    html = _html(rebuilt)
    assert "\x00" not in html and "\x1b" not in html and "\x07" not in html
    assert r"NUL\x00 ESC\x1b[31m red\x07" in html and "\n\tnext line" in html
    assert r"./usystime\x1b]0;title\x07" in html


def _site_of(rootdir: Path, tmp_path: Path) -> Layout:
    """The small test course as a checkout of its own, built by `invoke site`'s code into a scratch folder."""
    shutil.copytree(rootdir / "test-course", tmp_path / "course")
    return Layout(tmp_path / "course", build_dir=tmp_path / "build")


def test_a_removed_sets_machine_page_is_removed_from_the_site(rootdir: Path, tmp_path: Path) -> None:
    layout = _site_of(rootdir, tmp_path)
    site.build_site(layout, strict=False)
    pages = layout.html / "machines"
    assert (pages / "other-machine.html").is_file() and (
        layout.html / "_sources/machines/other-machine.md.txt"
    ).is_file()
    shutil.rmtree(layout.results / "other-machine")
    site.build_site(layout, strict=False)
    assert not (pages / "other-machine.html").exists(), "a deleted set is no longer published"
    assert not (layout.html / "_sources/machines/other-machine.md.txt").exists()
    assert (pages / "canned-machine.html").is_file() and (layout.html / "index.html").is_file()


def test_a_site_build_writes_its_machine_pages_beside_its_doctrees_not_into_the_checkout(
    rootdir: Path, tmp_path: Path
) -> None:
    """Two builds of one checkout (the test workers) never share a generated page; one left by an older build goes."""
    layout = _site_of(rootdir, tmp_path)
    (layout.root / "machines").mkdir()
    (layout.root / "machines" / "gone-machine.md").write_text(f"{site.GENERATED}\n# Gone\n", encoding="utf-8")
    legacy = layout.root / "machines" / "gone-machine.md"
    before = {path: path.stat().st_mtime_ns for path in layout.root.rglob("*") if path.is_file() and path != legacy}
    site.build_site(layout, strict=False)
    after = {path: path.stat().st_mtime_ns for path in layout.root.rglob("*") if path.is_file()}
    assert after == before, "the build added, removed or rewrote files of the checkout"
    shown = ["canned-machine", "other-machine", "reference-2000"]
    generated = layout.doctrees / site.GENERATED_FOLDER / "machines"
    assert sorted(page.stem for page in generated.glob("*.md")) == shown
    for name in shown:
        assert (layout.html / "machines" / f"{name}.html").is_file()
        assert (layout.html / "_sources" / "machines" / f"{name}.md.txt").is_file()
    assert not (layout.html / "machines" / "gone-machine.html").exists()
    toc = (layout.html / "machines.html").read_text(encoding="utf-8")
    assert 'href="machines/other-machine.html"' in toc  # the overview's toctree finds them


@pytest.mark.sphinx("html", testroot="course", srcdir="course-furo-machine-pages", confoverrides={"html_theme": "furo"})
def test_machine_pages_are_listed_on_the_overview_not_in_every_pages_sidebar(app: SphinxTestApp) -> None:
    """With a class of 60, a toctree of the machine pages put 80 links in the sidebar of every page of the site."""
    app.build()
    assert app._warning.getvalue() == "", "no machine page 'isn't included in any toctree'"
    listed = _html(app, "machines").split('<ul class="course-machine-pages simple">', 1)[1].split("</ul>", 1)[0]
    links = re.findall(r'href="machines/([^"]+)\.html"><span class="doc">([^<]+)<', listed)
    assert links == [
        ("reference-2000", "2000 reference"),
        ("canned-machine", "Canned machine (this machine)"),
        ("other-machine", "Other machine"),
    ], links
    for page in ("index", "machines", "machines/other-machine"):
        sidebar = _html(app, page).split('<div class="sidebar-tree">', 1)[1].split("</div>", 1)[0]
        assert ">Machines</a>" in sidebar and "other-machine" not in sidebar, page
    assert "Other machine" in _html(app, "machines/other-machine"), "the page is built, with its own title"
    # One folder, in no toctree: every machine page shows the same navigation (rendered once for all of them).
    sidebars = {_html(app, f"machines/{name}").split('<div class="sidebar-tree">', 1)[1] for name, _ in links}
    assert len({sidebar.split("</div>", 1)[0] for sidebar in sidebars}) == 1


def test_a_site_whose_inputs_did_not_change_is_not_built_again(
    rootdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = _site_of(rootdir, tmp_path)
    site.build_site(layout, strict=False)
    started: list[list[str]] = []
    popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda command, **kw: started.append(command) or popen(command, **kw))
    site.build_site(layout, strict=False)
    assert started == [], "nothing changed: Sphinx is not started"
    site.build_site(layout, strict=True)
    assert len(started) == 1, "another command (-W) is another build"
    result = layout.results / "canned-machine" / "03-timing.json"
    _later(result, result.read_text())
    site.build_site(layout, strict=True)
    assert len(started) == 2, "a result file written again"
    _later(layout.root / "plain.md", (layout.root / "plain.md").read_text() + "\nOne more line.\n")
    site.build_site(layout, strict=True)
    assert len(started) == 3 and "One more line." in (layout.html / "plain.html").read_text()
    site.build_site(layout, strict=True)
    assert len(started) == 3
    (layout.html / "index.html").unlink()
    site.build_site(layout, strict=True)
    assert len(started) == 4 and (layout.html / "index.html").is_file(), "an output removed is built again"


def test_a_set_the_site_cannot_use_is_one_line_naming_it(rootdir: Path, tmp_path: Path) -> None:
    # Put there by hand (or by git), not imported: the site build names the file and the fix.
    layout = _site_of(rootdir, tmp_path)
    bench = layout.results / "canned-machine" / "bench.json"
    content = json.loads(bench.read_text())
    content["measurements"]["bench/pipeline.cold"] = {"status": "ok", "min": 1, "goal": 1, "unit": "s"}
    bench.write_text(json.dumps(content))
    with pytest.raises(site.SiteError) as failed:
        site.build_site(layout, strict=False)
    message = str(failed.value)
    assert "\n" not in message
    assert f"{bench} has measurements['bench/pipeline.cold'] with a goal but no value to compare it with" in message


def _listing(html: str, caption: str) -> str:
    return html.split(caption, 1)[1].split("</pre>", 1)[0]


def _code_text(listing: str) -> str:
    """A listing's code as a reader copies it: no line numbers, no markup."""
    return unescape(re.sub(r"<[^>]+>", "", re.sub(r'<span class="linenos">[^<]*</span>', "", listing)))


@pytest.mark.sphinx("html", testroot="course", srcdir="course-code")
def test_a_listing_is_cut_from_the_file_with_its_own_line_numbers(app: SphinxTestApp) -> None:
    app.build()
    assert "code.rst" not in app._warning.getvalue() and "code.md" not in app._warning.getvalue()
    html = _html(app, "code")
    source = (Path(app.srcdir) / "code/user/03-timing/timing.c").read_text().splitlines()
    function = _listing(html, "The empty read")
    assert _code_text(function).splitlines()[-4:] == source[6:10], "the comment above the function, then its body"
    assert re.findall(r'<span class="linenos">\s*(\d+)</span>', function)[0] == "6"
    assert '<span class="hll"><span class="linenos"> 9</span>' in function, "the line that matters is emphasized"
    assert 'data-first-line="6" data-source="code/user/03-timing/timing.c"' in html
    assert "lines 6\u201310" in function
    region = html.split('data-first-line="17"', 1)[1].split("<pre>", 1)[1].split("</pre>", 1)[0]
    assert _code_text(region).splitlines() == source[16:18], "between the markers, markers left out"
    # the caption links to the whole file, copied into the site
    link = re.search(r'href="(_downloads/[^"]+/timing\.c)"', html)
    assert link and (Path(app.outdir) / link[1]).read_text().splitlines() == source


@pytest.mark.sphinx("html", testroot="course", srcdir="course-code-changed")
def test_a_change_in_the_source_changes_the_page(app: SphinxTestApp, make_app) -> None:
    app.build()
    source = Path(app.srcdir) / "code/user/03-timing/timing.c"
    source.write_text(source.read_text().replace("read(0, buf, 0)", "read(0, buf, 0) + 0"))
    again = make_app("html", srcdir=app.srcdir)
    again.build()
    assert 'read</span><span class="p">(</span><span class="mi">0</span>' in _html(again, "code")
    assert '+</span><span class="w"> </span><span class="mi">0</span>' in _html(again, "code")


@pytest.mark.sphinx("html", testroot="course", srcdir="course-code-gone")
def test_a_marker_or_function_that_no_longer_exists_is_a_warning(app: SphinxTestApp, make_app) -> None:
    source = Path(app.srcdir) / "code/user/03-timing/timing.c"
    source.write_text(
        source.read_text().replace("course: region loop", "a comment").replace("empty_read(void)", "nothing(void)")
    )
    app.build()
    warnings = app._warning.getvalue()
    assert "code/user/03-timing/timing.c: region 'loop' is marked 0 times (once expected)" in warnings
    assert "code/user/03-timing/timing.c: no definition of function 'empty_read'" in warnings
    assert "[missing code: code/user/03-timing/timing.c" in _html(app, "code")


@pytest.mark.sphinx("html", testroot="course", srcdir="course-code-downloads")
def test_every_file_of_a_lesson_downloads_and_a_solution_is_folded(app: SphinxTestApp) -> None:
    app.build()
    html = _html(app, "code")
    downloads = html.split('class="course-downloads', 1)[1].split("</ul>", 1)[0]
    names = re.findall(r'href="_downloads/[^"]+"[^>]*><code[^>]*><span class="pre">([^<]+)</span>', downloads)
    assert names == [  # whole paths: the user and the kernel side may each have a lesson.toml
        "code/user/03-timing/lesson.toml",
        "code/user/03-timing/solutions/exercise-one.c",
        "code/user/03-timing/timing.c",
        "code/kernel/03-timing/ktiming.c",
    ]
    for href in re.findall(r'href="(_downloads/[^"]+)"', downloads):
        assert (Path(app.outdir) / href).is_file()
    fold = html.split('<details class="course-fold">', 1)[1].split("</details>", 1)[0]
    assert "<summary>Solution</summary>" in fold and "the solution of the canned exercise" in fold


@pytest.mark.sphinx("html", testroot="course", srcdir="course-commands")
def test_a_command_is_shown_exactly_in_monospace_with_a_copy_button(make_app, app: SphinxTestApp) -> None:
    timing = Path(app.srcdir) / "results" / "canned-machine" / "03-timing.json"
    content = json.loads(timing.read_text())
    content["captures"]["03-timing/usystime.tty.output"]["command"] = "objdump -d --no-show-raw-insn ./callsite"
    timing.write_text(json.dumps(content))
    rebuilt = make_app("html", srcdir=app.srcdir)
    rebuilt.build()
    html = _html(rebuilt)
    command = html.split('class="course-command docutils literal notranslate">', 1)[1].split("</code>", 1)[0]
    assert unescape(re.sub(r"<[^>]+>", "", command)) == "objdump -d --no-show-raw-insn ./callsite"
    assert "\u2013no-show" not in html, "smart quotes must not turn -- into an en dash"
    assert "copybutton.js" in html
    options = (Path(rebuilt.outdir) / "_static" / "copybutton.js").read_text()
    assert "code.course-command" in options, "the commands of captions get a button too"
    css = (Path(rebuilt.outdir) / "_static" / "course.css").read_text()
    assert re.search(r"\.course-output \.code-block-caption \{ font-family: var\(--font-stack--monospace", css)


def test_kernel_functions_and_system_calls_link_from_one_configured_template() -> None:
    import runpy

    conf = runpy.run_path(str(Path(__file__).resolve().parents[1] / "conf.py"))
    assert "sphinx.ext.extlinks" in conf["extensions"]
    kfunc, caption = conf["extlinks"]["kfunc"]
    assert kfunc % "vfs_read" == f"https://elixir.bootlin.com/linux/v{conf['course_guest_kernel']}/A/ident/vfs_read"
    assert caption % "vfs_read" == "vfs_read()"
    assert conf["extlinks"]["man2"][0] % "read" == "https://man7.org/linux/man-pages/man2/read.2.html"
    lessons = Path(__file__).resolve().parents[1] / "lessons"
    for page in sorted(lessons.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        assert "{kfunc}`" in text or "{man2}`" in text, f"{page.name} links no kernel function or manual page"
        assert "elixir.bootlin.com" not in text, f"{page.name} types a source link instead of using the template"


def test_a_graphviz_figure_is_named_by_its_alt_text_not_its_dot_source(course_site: SphinxTestApp) -> None:
    assert course_site._warning.getvalue() == ""
    figure = re.search(r'<object [^>]*class="graphviz[^>]*>(.*?)</object>', _html(course_site, "figure"), re.S)
    assert figure, "the figure is placed"
    assert 'role="img" aria-label="A step &lt;one&gt; leads to step two &amp; back."' in figure[0]
    assert "digraph" not in figure[0], "the DOT source is no fallback"


def test_the_api_reference_documents_every_module_of_the_package() -> None:
    import pkgutil

    import course

    root = Path(__file__).resolve().parents[1]
    modules = {info.name for info in pkgutil.walk_packages(course.__path__, "course.")}
    documented = set(
        re.findall(
            r"automodule:: (course[\w.]*)", "".join(page.read_text() for page in (root / "docs" / "api").glob("*.md"))
        )
    )
    assert modules - documented == set(), "add these to a page of docs/api/"
    assert documented - modules == set(), "these documented modules no longer exist"


def test_a_csvs_nanoseconds_carry_only_the_decimals_the_counters_step_supports() -> None:
    from course.publish.sphinxext.setdata import counter_step, ns_text

    # A 26-tick step at 2.6 GHz is 10 ns: whole nanoseconds, never 14 decimals.
    listed = [("03-timing", "03-timing/tsc-step", {"status": "ok", "median": 26.0})]
    step = counter_step(listed)
    figure = {"tsc_hz": 2.6e9, "calls_per_sample": 1}
    assert ns_text(1234 / 2.6, figure, step) == "475"
    # Sixteen calls a sample divide the step: 0.625 ns, still whole nanoseconds.
    assert ns_text(1234 / 2.6 / 16, {**figure, "calls_per_sample": 16}, step) == "30"
    # Without a measured step, one tick (0.38 ns here) is the resolution, a sixteenth of it 0.024 ns.
    assert ns_text(1234 / 2.6, figure, counter_step([])) == "475"
    assert ns_text(1234 / 2.6 / 16, {**figure, "calls_per_sample": 16}, counter_step([])) == "29.7"


def test_the_host_is_named_with_whether_it_is_a_virtual_machine_from_its_set(course_site: SphinxTestApp) -> None:
    assert "{host}" not in course_site._warning.getvalue()
    text = unescape(re.sub(r"<[^>]+>", "", _html(course_site, "host")))
    assert "own kernel (canned-machine, on bare hardware)." in text  # no hypervisor flag in its set
    said = context.host_kind("some-vm", {"hypervisor": True})
    assert said.startswith("some-vm, itself a virtual machine") and "hypervisor" in said


@pytest.mark.sphinx("html", testroot="course", srcdir="course-navigation-suffix", confoverrides=FURO)
def test_a_rebuild_with_another_link_suffix_draws_its_navigation_with_it(app: SphinxTestApp, make_app) -> None:
    """The stored navigation's key holds the builder's link suffix: a stored one links to .html."""
    app.build()
    assert 'href="plain.html"' in _html(app)
    again = make_app("html", srcdir=Path(app.srcdir), confoverrides={**FURO, "html_link_suffix": ".xhtml"})
    again.build()
    html = _html(again)
    assert 'href="plain.xhtml"' in html and 'href="plain.html"' not in html, "every link, the navigation's too"


def test_a_figure_a_byte_is_printed_without_needless_zeros() -> None:
    from course.publish.sphinxext.data import format_value

    assert format_value(4.0, "ns/byte") == "4 ns/byte", "2000's two ticks a byte at 500 MHz, not 4.000"
    assert format_value(2.5, "ticks/byte") == "2.5 ticks/byte"
    assert format_value(0.0214, "ns/byte") == "0.021 ns/byte", "a thousandth kept where it is a digit"


def test_the_costliest_pages_are_dealt_to_the_reads_that_start_at_once() -> None:
    from sphinx.util.parallel import make_chunks

    from course.publish.sphinxext import _balanced_chunks

    costs = {"api/a": 100, "api/b": 90, "api/c": 80, **{f"page{number:02}": 1 for number in range(27)}}
    sizes = [len(chunk) for chunk in make_chunks(sorted(costs), 2)]
    assert len(sizes) > 2 and {"api/a", "api/b", "api/c"} <= set(make_chunks(sorted(costs), 2)[0]), "one process"
    chunks = _balanced_chunks(costs, sizes, processes=2)
    assert [len(chunk) for chunk in chunks] == sizes
    assert sorted(name for chunk in chunks for name in chunk) == sorted(costs), "every page read once"
    first, second = (sum(costs[docname] for docname in chunk) for chunk in chunks[:2])
    assert abs(first - second) <= max(costs.values()) and first + second >= sum(costs.values()) - len(costs)
    assert all(not name.startswith("api/") for chunk in chunks[2:] for name in chunk), "later chunks: cheap pages"


def test_a_page_of_autodoc_directives_costs_more_than_a_long_page(tmp_path: Path) -> None:
    from course.publish.sphinxext import _reading_cost

    api, long = tmp_path / "api.md", tmp_path / "long.md"
    api.write_text(
        "```{eval-rst}\n" + "".join(f".. automodule:: course.m{n}\n   :members:\n\n" for n in range(3)) + "```\n"
    )
    long.write_text("A lesson's prose.\n" * 600)  # about 11 kB
    assert _reading_cost(api) > _reading_cost(long) > _reading_cost(tmp_path / "gone.md") == 1
    # A module documented costs by the length of its source: autodoc's work grows with it.
    large, small = tmp_path / "large.md", tmp_path / "small.md"
    large.write_text("```{eval-rst}\n.. automodule:: course.publish.sphinxext.charts\n   :members:\n```\n")
    small.write_text("```{eval-rst}\n.. automodule:: course.results.clock\n   :members:\n```\n")
    assert _reading_cost(large) > 2 * _reading_cost(small)


@pytest.mark.sphinx("html", testroot="course", srcdir="course-parallel-read")
def test_a_parallel_build_writes_the_same_site_as_a_serial_one(app: SphinxTestApp, make_app, tmp_path: Path) -> None:
    """Two processes read the pages in the order the extension chose, and the pages come out byte for byte alike."""
    srcdir = Path(app.srcdir)
    (srcdir / "api.md").write_text(
        "# API\n\n```{eval-rst}\n.. automodule:: course.publish.sphinxext.setdata\n   :members:\n```\n"
    )
    (srcdir / "index.md").write_text((srcdir / "index.md").read_text() + "\n```{toctree}\napi\n```\n")
    extensions = {
        "extensions": ["myst_parser", "sphinx.ext.graphviz", "sphinx.ext.autodoc", "course.publish.sphinxext"]
    }
    serial_source = tmp_path / "serial"
    shutil.copytree(srcdir, serial_source, ignore=shutil.ignore_patterns("_build"))
    serial = make_app("html", srcdir=serial_source, confoverrides=extensions, freshenv=True)
    serial.build()
    parallel = make_app("html", srcdir=srcdir, confoverrides=extensions, freshenv=True, parallel=2)
    order: list[str] = []
    parallel.connect("env-before-read-docs", lambda app, env, docnames: order.extend(docnames), priority=900)
    writers: list[int] = []
    write_parallel = parallel.builder._write_parallel
    parallel.builder._write_parallel = lambda docnames, nproc: writers.append(nproc) or write_parallel(docnames, nproc)
    parallel.build()
    assert sorted(order) != order and set(order) >= {"api", "index", "plain"}, "the pages read in the chosen order"
    assert writers == [2], "written by two processes beside the main one (Sphinx's own: one fewer than -j)"
    pages = sorted(page.relative_to(serial.outdir) for page in Path(serial.outdir).rglob("*.html"))
    assert pages == sorted(page.relative_to(parallel.outdir) for page in Path(parallel.outdir).rglob("*.html"))
    for page in pages:
        assert (Path(serial.outdir) / page).read_bytes() == (Path(parallel.outdir) / page).read_bytes(), page
    assert "as_json" in _html(parallel, "api")
    # The set downloads, made in a process of their own while the parallel build writes its pages: the same bytes.
    downloads = [
        sorted(path.relative_to(out) for path in Path(out).rglob("*.[jc]s[ov]*"))
        for out in (serial.outdir, parallel.outdir)
    ]
    assert downloads[0] == downloads[1] and {path.suffix for path in downloads[0]} >= {".json", ".csv"}
    for download in downloads[0]:
        assert (Path(serial.outdir) / download).read_bytes() == (Path(parallel.outdir) / download).read_bytes()


@pytest.mark.sphinx("html", testroot="course", srcdir="course-set-downloads-again")
def test_a_rebuild_makes_the_downloads_of_the_changed_sets_only(
    make_app, app: SphinxTestApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A student's rerun changes one set of many: the others' files stay, made from the same bytes."""
    app.build()
    machines = Path(app.outdir) / "machines"
    made = []
    real_texts = setdata.texts
    monkeypatch.setattr(setdata, "texts", lambda sets: made.append(sorted(s.id for s in sets)) or real_texts(sets))

    make_app("html", srcdir=app.srcdir).build()
    assert made == [[]], "nothing changed: no set's files made again"

    lesson = Path(app.srcdir) / "results" / "other-machine" / "03-timing.json"
    data = json.loads(lesson.read_text())
    key = next(k for k, m in data["measurements"].items() if m.get("min"))
    data["measurements"][key]["min"] += 1
    lesson.write_text(json.dumps(data))
    (machines / "reference-2000.csv").unlink()  # a file gone from the output is made again too
    make_app("html", srcdir=app.srcdir).build()
    assert made[-1] == ["other-machine", "reference-2000"]
    stored = json.loads((machines / "other-machine.json").read_text())
    assert next(m["min"] for m in stored["measurements"] if m["id"] == key) == data["measurements"][key]["min"]
    assert (machines / "reference-2000.csv").is_file()


def test_set_downloads_made_meanwhile_are_those_made_at_the_end() -> None:
    """The forked process gives the texts the build would compute itself, and ends, taken or not."""
    import multiprocessing

    sets = list(store.load_all(Path(__file__).resolve().parents[1] / "results").values())[:4]
    meanwhile = setdata.TextsMeanwhile(sets)
    assert meanwhile.result() == setdata.texts(sets) and len(setdata.texts(sets)) == 2 * len(sets)
    setdata.TextsMeanwhile(sets).close()  # a build that failed: nothing taken
    assert multiprocessing.active_children() == []


#: A build whose download texts (2 MB, more than a pipe holds) wait in the helper's pipe: it prints the
#: helper's pid and waits, to be killed.
_TEXTS_PARENT = """
import time
from course.publish.sphinxext import setdata
setdata.texts = lambda sets: {"x.json": "x" * 2_000_000}
meanwhile = setdata.TextsMeanwhile([])
print(meanwhile.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("number", [signal.SIGKILL, signal.SIGTERM])
def test_the_set_downloads_helper_ends_with_a_killed_build(number: int) -> None:
    """A build killed (a CI cancel, ``timeout``) while its texts wait in the pipe leaves no helper blocked for ever."""
    (helper,) = helpers_after_killing_their_parent(_TEXTS_PARENT, number, settle=0.5)
    assert gone_within(helper, 5.0), "the helper outlived its build"


def test_a_figures_reason_spans_the_figure_columns_of_its_machine_page(course_site: SphinxTestApp) -> None:
    """Why a figure is missing spans the columns its figures would fill, and may wrap there: a reason of a few
    hundred characters kept on one line made a machine page's table three screens wide."""
    page = _html(course_site, "machines/canned-machine")
    (row,) = [row for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S) if "no terminal here" in row]
    cells = re.findall(r"<td([^>]*)>", row)
    headers = len(re.findall(r"<th[ >]", page.split("Every figure of this set", 1)[1].split("</thead>", 1)[0]))
    assert 'class="course-reason"' in row and f'colspan="{headers - 2}"' in row, row
    assert len(cells) == 3, "the figure's name, its reason across the figure columns, when it was measured"
    css = (Path(course_site.outdir) / "_static" / "course.css").read_text(encoding="utf-8")
    assert "td.course-reason p { white-space: normal" in css


def test_a_reason_for_no_figure_never_breaks_inside_an_arrow() -> None:
    """A reason such as "no ->read method" in a narrow cell: a line may break anywhere but inside the arrow."""
    skipped = value_text({"status": "skipped", "reason": "no ->read method"}, "min", False)
    failed = value_text({"status": "failed", "reason": "f_op->read_iter refused"}, "min", False)
    assert skipped == "not run (no -\u2060>read method)" and failed == "failed (f_op-\u2060>read_iter refused)"
    assert value_text({"status": "ok", "min": 5, "unit": "ticks"}, "min", False) == "5 ticks"


@pytest.mark.sphinx("html", testroot="course", srcdir="course-python-lookups")
def test_the_python_domain_looks_each_object_up_once_while_the_objects_stay_the_same(
    app: SphinxTestApp, monkeypatch
) -> None:
    """The API pages' references to types that are no documented object scan the index once, not once each."""
    from sphinx.domains.python import PythonDomain

    domain = app.env.get_domain("py")
    assert isinstance(domain, PythonDomain)
    scans: list[str] = []
    real_find_obj = PythonDomain.find_obj
    monkeypatch.setattr(
        PythonDomain, "find_obj", lambda self, *args, **kw: scans.append(args[3]) or real_find_obj(self, *args, **kw)
    )
    app.env.current_document.docname = "index"
    domain.note_object("course.results.store.load_all", "function", "load-all")
    for _ in range(3):
        assert domain.find_obj(app.env, "course.x", None, "str", "class", 1) == []
        assert [name for name, _ in domain.find_obj(app.env, "course.x", None, "load_all", None, 1)] == [
            "course.results.store.load_all"
        ], "found by its suffix, as Sphinx finds it"
    assert scans == ["str", "load_all"], "each lookup made once"
    domain.note_object("course.results.progress.str", "class", "str")  # an object noted: the answers may change
    assert [name for name, _ in domain.find_obj(app.env, "course.x", None, "str", "class", 1)] == [
        "course.results.progress.str"
    ]
    assert scans == ["str", "load_all", "str"]


@pytest.mark.sphinx("html", testroot="course", srcdir="course-shared-checks")
def test_a_clean_parallel_build_shares_the_checks_and_a_rebuild_has_none_to_share(
    app: SphinxTestApp, make_app, monkeypatch
) -> None:
    shared: list[int] = []
    real_sharing = store._load_sharing_checks
    monkeypatch.setattr(store, "_load_sharing_checks", lambda *args: shared.append(args[2]) or real_sharing(*args))
    make_app("html", srcdir=Path(app.srcdir), freshenv=True, parallel=2).build()
    assert shared == [2], "a fresh environment: every file checked, on both cores"
    make_app("html", srcdir=Path(app.srcdir), parallel=2).build()
    assert shared == [2], "a rebuild knows its files' checks: no helper is started"


# --- a site built where this machine has no set yet --------------------------------------------------


def test_a_set_given_to_the_site_is_this_machines_and_a_guessed_one_only_under_this_machines_name(
    rootdir: Path, tmp_path: Path
) -> None:
    from course.publish.sphinxext.data import CourseData
    from course.results import fingerprint

    results = tmp_path / "results"
    shutil.copytree(rootdir / "test-course" / "results", results)
    given = CourseData(results, tmp_path, current="other-machine")
    assert given.current_id == "other-machine" and given.current_is_this_machine, "invoke passed it, or --set"
    guessed = CourseData(results, tmp_path)
    assert guessed.current_id in ("canned-machine", "other-machine") and not guessed.current_is_this_machine
    # The same set, standing in or given: the pages that mark it are read again when it changes.
    assert guessed.signature != CourseData(results, tmp_path, current=guessed.current_id).signature
    (results / "canned-machine").rename(results / fingerprint.set_name())
    mine = CourseData(results, tmp_path)
    assert mine.current_id == fingerprint.set_name() and mine.current_is_this_machine


def _read_text(page: Path) -> str:
    """What a reader reads on a page, code and captured output left out (they quote programs, not the site)."""
    text = re.sub(r"<(pre|code|script|style)\b.*?</\1>", " ", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", text))).replace("\u2019", "'")


def _saying_this_machine(app: SphinxTestApp) -> list[str]:
    outdir = Path(app.outdir)
    pages = sorted(outdir.rglob("*.html"))
    return [page.relative_to(outdir).as_posix() for page in pages if "this machine" in _read_text(page).lower()]


#: A page of prose alone, which reads no set: "this machine" in it must follow what the current set is too, even
#: where the source breaks its line between the two words.
PROSE = "\nFigures of this machine, and this\nmachine's own kernel.\n"


@pytest.mark.sphinx("html", testroot="course", srcdir="course-stand-in", confoverrides={"course_current_set": ""})
def test_a_site_built_where_this_machine_has_no_set_never_calls_the_newest_set_this_machine(
    app: SphinxTestApp, make_app
) -> None:
    """A fresh clone, a student before measuring: the newest measured set stands in, and no page calls it
    "this machine" (its mark, the lessons' prose, the charts' titles); its page says whose it is not."""
    from course.publish.sphinxext.data import data_of
    from course.results import fingerprint

    assert not (Path(app.srcdir) / "results" / fingerprint.set_name()).exists(), "this machine has no set here"
    plain = Path(app.srcdir) / "plain.md"
    plain.write_text(plain.read_text(encoding="utf-8") + PROSE, encoding="utf-8")
    app.build()
    data = data_of(app.env)
    stand_in = data.current
    assert stand_in is not None and not data.current_is_this_machine
    assert _saying_this_machine(app) == []
    index = _read_text(Path(app.outdir) / "index.html")
    assert f"{stand_in.label} (the newest measured set)" in index
    plain_page = _read_text(Path(app.outdir) / "plain.html")
    assert f"Figures of {stand_in.label}, and {stand_in.label}'s own kernel." in plain_page
    page = _read_text(Path(app.outdir) / "machines" / f"{stand_in.id}.html")
    assert "This is the machine that built this site" not in page
    assert "The machine that built this site has no result set yet: the site shows this one, the newest" in page
    assert "in its place. measures that machine into a set of its own." in page  # the command is code, left out
    assert '<span class="pre">invoke</span> <span class="pre">generate</span></code> measures' in _html(
        app, f"machines/{stand_in.id}"
    )
    assert f"# {stand_in.label} \\(the newest measured set\\)" in (  # escaped as MyST text
        Path(app.outdir) / "_sources" / "machines" / f"{stand_in.id}.md.txt"
    ).read_text(encoding="utf-8")

    # This machine measures its own set: the next build says "this machine" of it, on the prose page too.
    shutil.copytree(stand_in.path, Path(app.srcdir) / "results" / fingerprint.set_name())
    again = make_app("html", srcdir=app.srcdir, confoverrides={"course_current_set": ""})
    again.build()
    assert data_of(again.env).current_is_this_machine
    assert "Figures of this machine, and this machine's own kernel." in _read_text(Path(again.outdir) / "plain.html")
    mine = _read_text(Path(again.outdir) / "machines" / f"{fingerprint.set_name()}.html")
    assert "This is the machine that built this site" in mine


@pytest.mark.sphinx("html", testroot="course", srcdir="course-own-set", confoverrides={"course_current_set": ""})
def test_a_site_built_where_this_machine_has_its_set_calls_it_this_machine(app: SphinxTestApp, make_app) -> None:
    """Found under this machine's own name (not given by invoke), the set is this machine's: the words stay."""
    from course.publish.sphinxext.data import data_of
    from course.results import fingerprint

    results = Path(app.srcdir) / "results"
    (results / "canned-machine").rename(results / fingerprint.set_name())
    built = make_app("html", srcdir=app.srcdir, confoverrides={"course_current_set": ""})
    built.build()
    data = data_of(built.env)
    assert data.current_id == fingerprint.set_name() and data.current_is_this_machine
    assert "Canned machine (this machine)" in _read_text(Path(built.outdir) / "index.html")
    assert "the newest measured set" not in " ".join(_read_text(page) for page in Path(built.outdir).rglob("*.html"))
    page = _read_text(Path(built.outdir) / "machines" / f"{fingerprint.set_name()}.html")
    assert "This is the machine that built this site" in page
