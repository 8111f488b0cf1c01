"""Answer first, checked on the real site built from the shipped result sets: each lesson opens with its
question and its answer (2000 beside today, one unit), its chart answers it, and no section is a wall of text.
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest

from course.kernel import guest_kernels
from course.publish.sphinxext import published
from course.publish.sphinxext.data import same_hardware
from course.results import fingerprint, store
from course.results.layout import Layout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

#: The lessons whose opening answers in one sentence, with a figure of 2000 and one of today.
ANSWERED = [
    "01-user-kernel",
    "02-read-path",
    "03-timing",
    "04-kernel-read",
    "06-skipping-layers",
    "07-bytes",
    "08-since-2000",
]
#: The lessons whose question needs a chart of 2000 against today: every one that answers with both figures.
CHARTED = ANSWERED
#: Kernel lessons: their tables show a guest's figures under this machine's set.
KERNEL_LESSONS = ["04-kernel-read", "06-skipping-layers"]
#: A section may run this many words of prose before a figure, a code block, a table or a list.
MOST_WORDS = 350
#: The mark beside the current set's label: "(this machine" where this host has a set among the shipped ones,
#: else that of the newest measured set standing in for it (set names hold the CPU generation: a new host has none).
CURRENT_MARK = "(this machine" if (ROOT / "results" / fingerprint.set_name()).is_dir() else f"({published.STAND_IN}"


@pytest.fixture(scope="module")
def html(checkout_site: Layout) -> Path:
    return checkout_site.html


def _page(html: Path, lesson: str) -> str:
    return (html / "lessons" / f"{lesson}.html").read_text(encoding="utf-8")


def _article(page: str) -> str:
    return page.split('<article role="main"', 1)[1].split("</article>", 1)[0]


def _text(fragment: str) -> str:
    fragment = re.sub(r"<svg.*?</svg>", " ", fragment, flags=re.DOTALL)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def _values(fragment: str) -> list[tuple[str, str]]:
    """(set, shown text) of each stored figure in ``fragment`` (a ratio of two figures is not one)."""
    found = re.findall(
        r'class="course-value[^"]*"[^>]*data-set="([^"]*)" data-field="([^"]*)"[^>]*>(.*?)</(?:a|span)>', fragment, re.S
    )
    return [(set_id, _text(text)) for set_id, field, text in found if field != "vs-2000"]


def _unit(text: str) -> str:
    return text.split(" ", 1)[1] if " " in text else ""


@pytest.mark.parametrize("lesson", [f"{n:02d}" for n in range(1, 10)])
def test_every_lesson_opens_with_its_question_and_its_answer(html: Path, lesson: str) -> None:
    page = next((html / "lessons").glob(f"{lesson}-*.html")).read_text(encoding="utf-8")
    article = _article(page)
    assert "<strong>The question:</strong>" in article and "<strong>The answer:</strong>" in article
    before = article.split("<strong>The answer:</strong>", 1)[0]
    assert "<h2" not in before and "course-opening" not in before, "first, before any section or preamble"


@pytest.mark.parametrize("lesson", ANSWERED)
def test_the_opening_answers_with_2000_beside_today_in_one_unit(html: Path, lesson: str) -> None:
    article = _article(_page(html, lesson))
    question = article.split("<strong>The question:</strong>", 1)
    assert len(question) == 2, "the lesson opens with its question"
    answer = question[1].split("<strong>The answer:</strong>", 1)[1].split("</p>", 1)[0]
    assert "<h2" not in question[0].split("<h1", 1)[-1].split("</h1>", 1)[-1], "before any section"
    values = _values(answer)
    then = [text for set_id, text in values if set_id == "reference-2000"]
    now = [text for set_id, text in values if set_id != "reference-2000"]
    assert then and now, "a 2000 figure and a figure of today"
    units_then, units_now = {_unit(text) for text in then}, {_unit(text) for text in now}
    assert units_now <= units_then, f"today's figures in 2000's units: {then} against {now}"


@pytest.mark.parametrize("lesson", CHARTED)
def test_the_lesson_has_a_chart_of_2000_against_today(html: Path, lesson: str) -> None:
    article = _article(_page(html, lesson))
    charts = re.findall(r'<div class="course-chart[^"]*docutils container">(.*?)</details>', article, re.DOTALL)
    answering = [chart for chart in charts if "2000" in _text(chart.split("<summary>", 1)[1]) and "<svg" in chart]
    assert answering, "a chart whose figures include 2000's"
    figures = _text(answering[0].split("<summary>", 1)[1])
    assert re.search(rf"\b(host|guest)\b|{re.escape(CURRENT_MARK)}", figures), "and today's beside them"


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d[\d,]*(?:\.\d+)?", text)


@pytest.mark.parametrize("lesson", [*CHARTED, "09-khttpd"])
def test_the_opening_chart_shows_every_figure_the_answer_gives(html: Path, lesson: str) -> None:
    article = _article(_page(html, lesson))
    answer = article.split("<strong>The answer:</strong>", 1)[1].split("</p>", 1)[0]
    chart = re.findall(r'<div class="course-chart[^"]*docutils container">(.*?)</details>', article, re.S)[0]
    drawn = set(_numbers(_text(chart.split("<summary>", 1)[1])))  # the chart's figures, as its table gives them
    given = [text for _, text in _values(answer)]
    assert given, "the answer gives its figures"
    missing = [text for text in given if _numbers(text)[0] not in drawn]
    assert not missing, f"{lesson}: the answer gives {missing}, which its chart does not show"


@pytest.mark.parametrize("lesson", KERNEL_LESSONS)
def test_a_hosts_stand_in_says_so_on_its_bar(html: Path, lesson: str) -> None:
    """No module runs on the host: its share is the invalid call's, and its bar's row says so, not only a note."""
    article = _article(_page(html, lesson))
    chart = article.split('class="course-chart course-answer', 1)[1].split("</details>", 1)[0]
    svg, table = chart.split("</svg>", 1)
    rows = [_text(row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)]
    hosts = [row for row in rows if " host " in f" {row}"]
    assert hosts and all(": invalid call " in row for row in hosts), hosts
    assert ": invalid call</text>" in svg, "on the bar's row as drawn"


#: The lessons that open with an answer chart (``course-answer``), which a phone shows on its first screen.
ANSWER_CHARTS = ["01-user-kernel", "04-kernel-read", "06-skipping-layers", "08-since-2000", "09-khttpd"]

#: Where the answer chart, its first bar and its legend are on the page, and the window's height, in CSS px.
ANSWER_CHART_BOX = """
const figure = document.querySelector('article .course-chart.course-answer');
const svg = figure.querySelector('svg.course-chart'), legend = figure.querySelector('.course-legend');
const bar = svg.querySelector('rect');
return [svg.getBoundingClientRect().top, bar.getBoundingClientRect().bottom,
        svg.getBoundingClientRect().bottom, legend.getBoundingClientRect().top, innerHeight];
"""


#: A phone's viewport, 390 x 844 CSS px.
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}


@pytest.fixture(scope="module")
def phone(start_chromium):
    """Headless Chromium with a phone's window, 390 x 844 CSS px."""
    driver = start_chromium("--disable-background-networking")
    # A headless window is never narrower than 500 px: a phone's viewport is emulated instead.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    yield driver
    driver.quit()


@pytest.mark.parametrize("lesson", ANSWER_CHARTS)
def test_on_a_phone_the_answer_chart_is_on_the_first_screen(html: Path, phone, lesson: str) -> None:
    """Under the question and the answer, before anything else: its first bars on screen, its legend after it."""
    phone.get((html / "lessons" / f"{lesson}.html").as_uri())
    assert phone.execute_script("return [innerWidth, innerHeight]") == [390, 844]
    top, first_bar, bottom, legend, height = phone.execute_script(ANSWER_CHART_BOX)
    assert first_bar <= height, f"{lesson}: the answer chart's first bar is at {first_bar:.0f} px, below {height} px"
    assert top <= height - 250, f"{lesson}: only {height - top:.0f} px of the answer chart on the first screen"
    assert legend >= bottom, f"{lesson}: the legend comes before the chart's bars"


#: Whether the machines overview's box scrolls sideways, whether the hint above it shows, and what it says.
SCROLL_HINT = """
const box = document.querySelector("p.course-scroll-hint + .table-wrapper");
const hint = box.previousElementSibling;
return [box.scrollWidth > box.clientWidth, getComputedStyle(hint).display !== "none", hint.textContent];
"""


def test_the_machines_overview_says_it_scrolls_sideways_where_it_does(html: Path, phone) -> None:
    """On a phone its eight columns run past the screen: a line above the table says so; at 1400 px it fits, unsaid."""
    page = (html / "docs" / "machines.html").as_uri()
    phone.get(page)
    scrolls, shown, text = phone.execute_script(SCROLL_HINT)
    assert scrolls and shown, "on a phone the table scrolls, and the hint says so"
    assert "scrolls sideways" in text and "columns" in text, text
    wide = {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    phone.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", wide)
    try:
        phone.get(page)
        assert phone.execute_script(SCROLL_HINT)[:2] == [False, False], "a table that fits says nothing"
    finally:
        phone.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)


@pytest.mark.parametrize("lesson", ANSWER_CHARTS)
def test_each_answer_bar_grows_from_zero_a_cost_to_the_left(html: Path, lesson: str) -> None:
    """A negative share (lesson 9's kernel server against sendfile()) is a bar left of zero, with its figure."""
    chart = _article(_page(html, lesson)).split('class="course-chart course-answer', 1)[1].split("</details>", 1)[0]
    svg, table = chart.split("</svg>", 1)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)]
    values = [
        float(found[0].replace(",", "")) for row in cells if row and (found := re.match(r"-?[\d,.]+", _text(row[2])))
    ]
    bars = [
        (float(x), float(width))
        for x, width in re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="16" fill="#\w+"/>', svg)
    ]
    assert len(bars) == len(values), "a bar for each figure of the table"
    zero = float(re.search(r'<text x="([\d.]+)" [^>]*text-anchor="middle">0(?: %)?</text>', svg)[1])
    for value, (x, width) in zip(values, bars, strict=True):
        if value < 0:
            assert x < zero and x + width == pytest.approx(zero, abs=0.02), f"{lesson}: {value} left of zero"
        else:
            assert x == pytest.approx(zero, abs=0.02), f"{lesson}: {value} from zero to the right"
    costs = any(value < 0 for value in values)
    assert ("costs more</text>" in svg) == costs, "the sides named where a figure is a cost"
    if ">0 %</text>" in svg and not costs:
        assert ">100 %</text>" in svg, f"{lesson}: shares that are all savings keep the 0-100 % axis"


def _other_hosts(html: Path) -> list[str]:
    """The shipped sets of machines other than the one the site marks current (:func:`_current_id`): hosts, not
    guests."""
    current = _current_id(html)
    return [
        set_id
        for set_id, result_set in store.load_all(ROOT / "results").items()
        if result_set.kind != "reference" and not guest_kernels.matrix_guest(result_set) and set_id != current
    ]


@pytest.mark.parametrize("lesson", CHARTED)
def test_the_opening_chart_sets_2000_beside_this_machine_and_no_other_host(html: Path, lesson: str) -> None:
    """Answer first: the opening chart answers for this machine; another host's bars belong to the overview."""
    article = _article(_page(html, lesson))
    chart = re.findall(r'<div class="course-(?:chart|answer)[^"]*docutils container">(.*?)</details>', article, re.S)
    assert chart, f"{lesson}: an opening chart"
    shown = _text(chart[0])
    others = [set_id for set_id in _other_hosts(html) if set_id in shown]
    assert not others, f"{lesson}'s opening chart also draws {others}"


@pytest.mark.parametrize("lesson", [*KERNEL_LESSONS, "09-khttpd"])
def test_a_table_of_emulated_ticks_shows_this_machines_guest_alone(html: Path, lesson: str) -> None:
    """Emulated ticks are their host's clock: no other host's guest sits in a column beside this one's."""
    article = _article(_page(html, lesson))
    tables = [t for t in re.findall(r"<table.*?</table>", article, re.S) if "in emulated ticks" in _text(t)[:400]]
    assert tables, f"{lesson}: a table of emulated ticks"
    hosts = _other_hosts(html)
    for table in tables:
        head = _text(table.split("</thead>", 1)[0])
        others = [set_id for set_id in hosts if set_id in head]
        assert not others, f"{lesson}: a table of emulated ticks has columns of {others}"


def test_no_lesson_chart_repeats_a_machine_under_another_build_tag(html: Path) -> None:
    builds: dict[tuple, list[str]] = {}
    for result_set in store.load_all(ROOT / "results").values():
        key = same_hardware(result_set)
        if key is not None:
            builds.setdefault(key, []).append(result_set.id)
    assert any(len(ids) > 1 for ids in builds.values()), "the shipped sets hold several builds of one machine"
    for page in sorted((html / "lessons").glob("*.html")):
        article = _article(page.read_text(encoding="utf-8"))
        for chart in re.findall(r'<div class="course-chart[^"]*docutils container">(.*?)</details>', article, re.S):
            shown = _text(chart)
            for ids in builds.values():
                drawn = [set_id for set_id in ids if set_id in shown]
                assert len(drawn) <= 1, f"{page.name} draws {drawn}, one machine under several build tags"


@pytest.mark.parametrize("lesson", KERNEL_LESSONS)
def test_a_column_of_kernel_figures_names_its_guest_kernel(html: Path, lesson: str) -> None:
    article = _article(_page(html, lesson))
    heads = re.findall(r"<thead>(.*?)</thead>", article, re.DOTALL)
    host_columns = [_text(th) for head in heads for th in re.findall(r"<th[^>]*>(.*?)</th>", head, re.S)]
    host_columns = [title for title in host_columns if "amd-epyc" in title]
    assert host_columns, "this machine's set has a column"
    for title in host_columns:
        assert re.search(r"guest kernel \S+ \(QEMU", title), f"{title!r} names only the host's set"


@pytest.mark.parametrize("lesson", [*KERNEL_LESSONS, "09-khttpd"])
def test_a_guests_column_names_the_host_by_its_set_never_as_this_machine(html: Path, lesson: str) -> None:
    article = _article(_page(html, lesson))
    heads = re.findall(r"<thead>(.*?)</thead>", article, re.DOTALL)
    titles = [_text(th) for head in heads for th in re.findall(r"<th[^>]*>(.*?)</th>", head, re.S)]
    guests_on_host = [title for title in titles if title.startswith("guest kernel") and "amd-epyc" in title]
    assert guests_on_host, "the host's set has a column of a guest's figures"
    for title in guests_on_host:
        assert "this machine" not in title, f"{title!r} calls a guest's figure this machine's"
        assert re.search(r"on the host amd-epyc\S*-vm\b", title), f"{title!r} names the host by its set"


#: The units a figure in a table's cell can have: ticks of a real clock (2000's or today's), emulated, counted.
TICKS = re.compile(r"\d (emulated ticks|icount ticks|ticks)\b")


@pytest.mark.parametrize("lesson", [f"{n:02d}" for n in range(1, 10)])
def test_no_lesson_table_sets_figures_of_two_units_side_by_side(html: Path, lesson: str) -> None:
    page = next((html / "lessons").glob(f"{lesson}-*.html"))
    for table in re.findall(r'<table class="course-table.*?</table>', _article(page.read_text(encoding="utf-8")), re.S):
        body = _text(table.split("<tbody>", 1)[-1])
        units = set(TICKS.findall(body))
        caption = _text(re.search(r"<caption>(.*?)</caption>", table, re.S)[1]) if "<caption>" in table else ""
        assert len(units) <= 1, f"{page.name}: the table {caption!r} sets {sorted(units)} side by side"


def _walls(article: str) -> list[tuple[str, int]]:
    """Each run of prose longer than MOST_WORDS words, with the section heading it is under."""
    pieces = re.split(
        r"(<h[1-6][^>]*>.*?</h[1-6]>|<svg.*?</svg>|<pre.*?</pre>|<table.*?</table>|<ul.*?</ul>|<ol.*?</ol>"
        r"|<object.*?</object>|<img[^>]*>)",
        article,
        flags=re.DOTALL,
    )
    walls, heading, words = [], "", 0
    for piece in pieces:
        if re.match(r"<h[1-6]", piece):
            heading, words = _text(piece), 0
        elif re.match(r"<(svg|pre|table|ul|ol|object|img)", piece):
            words = 0
        else:
            words += len(_text(piece).split())
            if words > MOST_WORDS:
                walls.append((heading, words))
    return walls


@pytest.mark.parametrize("lesson", [f"{n:02d}" for n in range(1, 10)])
def test_no_section_runs_on_without_a_figure_code_or_list(html: Path, lesson: str) -> None:
    page = next((html / "lessons").glob(f"{lesson}-*.html"))
    walls = _walls(_article(page.read_text(encoding="utf-8")))
    assert not walls, f"{page.name}: prose without a figure, code or list under {sorted(set(walls))}"


def test_the_compiler_errors_wrap_and_the_answer_columns_come_first(html: Path) -> None:
    lesson = _page(html, "05-get-fs")
    assert re.search(r'class="[^"]*course-output[^"]*course-wrap', lesson), "lesson 5's compiler errors wrap"
    css = (html / "_static" / "course.css").read_text()
    assert ".course-output.course-wrap pre { white-space: pre-wrap;" in css
    machines = (html / "docs" / "machines.html").read_text(encoding="utf-8")
    head = re.findall(r"<th[^>]*>(.*?)</th>", machines.split("<thead>", 1)[1].split("</thead>", 1)[0], re.S)
    assert _text(head[0]) == "set" and "vs 2000" in _text(head[1]), "the figures against 2000 right after the set"
    # The course's code listings wrap a long line rather than hide its end past the box's right edge.
    assert ".course-code pre { white-space: pre-wrap;" in css
    assert re.search(r'class="[^"]*course-code[^"]*".*?<pre>', _page(html, "09-khttpd"), re.S)


def test_a_site_built_where_this_host_has_no_set_never_calls_the_set_standing_in_this_machine(html: Path) -> None:
    """Where this host has no set yet, the newest measured set stands in: no page calls it "this machine"."""
    if CURRENT_MARK == "(this machine":
        pytest.skip(f"this host has its own set, {fingerprint.set_name()}, among the shipped ones")
    said = []
    for page in sorted(html.rglob("*.html")):
        text = re.sub(r"<(pre|code|script|style)\b.*?</\1>", " ", page.read_text(encoding="utf-8"), flags=re.S)
        if "this machine" in _text(text).lower():
            said.append(page.relative_to(html).as_posix())
    assert said == []


def _who(name: str) -> str:
    """The set a legend's words name, whatever chart wrote them: 2000, this machine, or a guest kernel."""
    if name.startswith("2000"):
        return "2000"
    guest = re.match(r"(6\.\d+(?:-rt)?) guest:", name) or re.search(r"Debian (6\.\d+(?:-rt)?) guest", name)
    if guest:
        return f"guest {guest[1]}"
    return "this machine" if name.startswith("host") or CURRENT_MARK in name else name


def test_a_set_has_one_colour_in_every_chart_of_every_lesson(html: Path) -> None:
    colours: dict[str, set[str]] = {}
    for page in sorted((html / "lessons").glob("*.html")):
        swatch = r'course-swatch" style="background: (#[0-9A-Fa-f]{6})"></span>([^<]*)</li>'
        legend = re.findall(swatch, page.read_text(encoding="utf-8"))
        for colour, name in legend:
            colours.setdefault(_who(unescape(name)), set()).add(colour.lower())
    assert {"2000", "this machine", "guest 6.1", "guest 6.12", "guest 6.1-rt"} <= set(colours)
    assert all(len(found) == 1 for found in colours.values()), colours
    used = [next(iter(found)) for found in colours.values()]
    assert len(used) == len(set(used)), f"two sets share a colour: {colours}"


def test_the_home_table_is_in_one_unit_and_names_this_machine_a_vm(html: Path) -> None:
    """Nanoseconds in every column (ticks of three clocks never share a row); a host that is a VM says so."""
    page = (html / "docs" / "index.html").read_text(encoding="utf-8")
    tables = re.findall(r'<table class="course-table (?!course-chart-table).*?</table>', page, re.S)  # not a chart's
    table = tables[0]
    head, body = table.split("</thead>", 1)
    cells = [
        _text(cell)
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[1:]
    ]
    assert cells and all(re.fullmatch(r"[\d.,]+ (ns|times)|—", cell) for cell in cells), cells
    assert 'data-field="min-ns"' in body, "each figure links to the nanoseconds it shows"
    sets = store.load_all(ROOT / "results").values()
    current = next(s for s in sets if f"{s.label} {CURRENT_MARK}" in _text(head))
    if current.machine.get("hypervisor"):
        assert f"{current.label} {CURRENT_MARK}, itself a VM)" in _text(head)


#: The one stored figure every page shows for the way into the kernel and back: lesson 8's entry.c, at best.
WAY_IN_AND_OUT = "08-since-2000/invalid-syscall"
#: Other programs that time the same call, for a reason of their own, and the words that name them on a page.
OTHER_PROGRAMS = {
    "03-timing/invalid-syscall": r"(?i)(lesson 3|this lesson).s program, timed in the same rounds",
    "07-bytes/invalid-syscall.file": r"bytes\.c.* in the same run as the reads",
}


def _current_id(html: Path) -> str:
    page = _page(html, "01-user-kernel")
    return re.search(rf'data-measurement="{WAY_IN_AND_OUT}" data-set="([^"]*)"', page)[1]


@pytest.mark.parametrize(
    "page",
    [
        "docs/index",
        "lessons/01-user-kernel",
        "lessons/03-timing",
        "lessons/07-bytes",
        "lessons/08-since-2000",
        "docs/machines",
    ],
)
def test_the_way_in_and_out_is_one_stored_figure_wherever_it_is_quoted(html: Path, page: str) -> None:
    """The same program's minimum in the answers and the overview; another program's figure says which and why."""
    article = _article((html / f"{page}.html").read_text(encoding="utf-8"))
    current = _current_id(html)
    found = re.findall(
        r'data-measurement="([^"]*invalid-syscall[^"]*)" data-set="([^"]*)" data-field="([^"]*)"', article
    )
    host = {(key, field) for key, set_id, field in found if set_id == current}
    assert (WAY_IN_AND_OUT, "min-ns") in host, host
    if "<strong>The answer:</strong>" in article:
        answer = article.split("<strong>The answer:</strong>", 1)[1].split("</p>", 1)[0]
        shown = re.findall(rf'data-measurement="([^"]*invalid-syscall[^"]*)" data-set="{current}"', answer)
        assert set(shown) <= {WAY_IN_AND_OUT}, f"the answer quotes {shown}"
    text = _text(article)
    for key in {key for key, _ in host} - {WAY_IN_AND_OUT}:
        assert key in OTHER_PROGRAMS and re.search(OTHER_PROGRAMS[key], text), f"{key}: which program, and why"


def test_the_machines_overview_sets_2000s_crossing_beside_todays_with_the_mitigations_next_to_it(html: Path) -> None:
    """2000's crossing is the article's breakdown (as lessons 1 and 8 chart it); the table says what it leaves out."""
    page = (html / "docs" / "machines.html").read_text(encoding="utf-8")
    table, rest = page.split("<table", 1)[1].split("</table>", 1)
    head = [_text(cell) for cell in re.findall(r"<th[^>]*>(.*?)</th>", table.split("</thead>", 1)[0], re.S)]
    assert head[1].startswith("the way in and out (entry and exit alone)") and head[2] == "mitigations", head[:3]
    # Nanoseconds only (each set's page has the ticks); "vs 2000" only over a figure the article has.
    assert "getppid() (C library) (best, ns)" in head and not any("ticks" in cell for cell in head), head
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)]
    sets = store.load_all(ROOT / "results")
    breakdown = sets["reference-2000"].measurement("08-since-2000/entry-exit.article")
    ns = breakdown["value"] / breakdown["tsc_hz"] * 1e9
    first = next(row for row in rows if row and _text(row[0]).startswith("2000"))
    assert _text(first[1]) == f"{ns:,.0f} ns", "as lessons 1 and 8 chart it"
    figures = [[_text(cell) for cell in row[1:6] if _text(cell) != "—"] for row in rows if row]
    assert all(figures), "no row of dashes (a guest's instruction counts are on its own page)"
    way = sets[_current_id(html)].measurement(WAY_IN_AND_OUT)
    mine = next(row for row in rows if row and CURRENT_MARK in _text(row[0]))
    way_ns = way["min"] / way["tsc_hz"] * 1e9
    shown_ns = f"{way_ns:,.1f}" if way_ns < 100 else f"{way_ns:,.0f}"  # the site's own rounding: a tenth below 100
    assert _text(mine[1]).startswith(f"{shown_ns} ns"), "the figure the lessons show"
    notes = [_text(note) for note in re.findall(r'<p class="course-table-note">(.*?)</p>', rest, re.S)]
    shown = len(rows) - 1
    if shown < len(sets):
        assert f"It shows {shown} of the {len(sets)} stored sets" in notes[0], notes[0]
    # This machine's crossing against each other host's, with the files in which their kernels differ.
    current = next(s for s in sets.values() if f"{s.label} {CURRENT_MARK}" in _text(page))
    for other in sets.values():
        if other is current or other.kind == "reference" or not other.measurement("08-since-2000/invalid-syscall"):
            continue
        mine, theirs = current.machine.get("mitigations") or {}, other.machine.get("mitigations") or {}
        differ = sorted(name for name in {*mine, *theirs} if mine.get(name) != theirs.get(name))
        assert f"{other.label} (" in notes[1] and ", ".join(differ) in notes[1], (other.id, differ, notes[1])


def _answer_charts(article: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Each answer chart of a page in order: its caption and its rows (figure, set, value) as its table gives them."""
    found = []
    for chart in article.split('class="course-chart course-answer')[1:]:
        chart = chart.split("</details>", 1)[0]
        caption = _text(re.search(r'<p class="course-chart-caption">(.*?)</p>', chart, re.S)[1])
        table = chart.split("</svg>", 1)[1].split("<tbody>", 1)[1]
        rows = [[_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in table.split("</tr>")]
        found.append((caption, [(row[0], row[1], row[2]) for row in rows if len(row) >= 3]))
    return found


@pytest.mark.parametrize("lesson", KERNEL_LESSONS)
def test_a_kernel_lesson_answers_in_time_shares_and_charts_the_counts_below(html: Path, lesson: str) -> None:
    """The opening chart holds shares of time only (2000's and this machine's); the guests' shares of instructions
    are another measure and get a chart of their own, further down."""
    article = _article(_page(html, lesson))
    (caption, rows), *below = _answer_charts(article)
    assert rows and all(figure.endswith("a share of time") for figure, _, _ in rows), rows
    assert "instructions" not in caption and "time" in caption, caption
    assert {"2000"} < {who for _, who, _ in rows}, "2000 beside today"
    counted = [row for _, chart in below for row in chart]
    assert counted and all(figure.endswith("a share of instructions") for figure, _, _ in counted), counted
    assert all(" guest" in who for _, who, _ in counted), "instruction counts are the guests' alone"


def test_lesson_6_does_not_open_with_lesson_4s_chart(html: Path) -> None:
    openings = [_answer_charts(_article(_page(html, lesson)))[0] for lesson in KERNEL_LESSONS]
    assert openings[0][1] != openings[1][1] and openings[0][0] != openings[1][0]


def test_a_panel_title_names_one_figure_across_lessons_4_and_6(html: Path) -> None:
    """A panel named alike on both pages shows the same figures: lesson 4's kernel_read() skips more than
    lesson 6's ksys_read(), and its title says so."""
    shown: dict[tuple, set[tuple[str, str]]] = {}
    for lesson in KERNEL_LESSONS:
        for _, rows in _answer_charts(_article(_page(html, lesson))):
            for figure, who, value in rows:
                # "entry and exit skipped" and "skipping entry and exit" name one layer: the words count, not the order
                layers = tuple(word for word in ("entry", "exit", "lookup", "method") if word in figure)
                shown.setdefault((layers, figure.rsplit(": a share of", 1)[-1]), set()).add((who, value))
    for title, figures in shown.items():
        sets = [who for who, _ in figures]
        assert len(sets) == len(set(sets)), f"{title!r} shows different figures for one set: {sorted(figures)}"
    titles = [row[0] for _, rows in _answer_charts(_article(_page(html, "04-kernel-read"))) for row in rows]
    assert any("descriptor lookup" in title and "kernel_read()" in title for title in titles), titles


def test_lesson_9s_answer_gives_every_guest_and_says_so_when_the_sign_flips(html: Path) -> None:
    """Not one kernel's figures: every guest's, and against sendfile() the sign flips if, and only if, the stored
    figures of the guests have both signs."""
    article = _article(_page(html, "09-khttpd"))
    answer = article.split("<strong>The answer:</strong>", 1)[1].split("</p>", 1)[0]
    sets = store.load_all(ROOT / "results")
    guests = [set_id for set_id in sets if re.fullmatch(r"qemu-icount-debian-6\.\d+(-rt)?", set_id)]
    assert len(guests) == 3, guests
    given = [set_id for set_id, _ in _values(answer)]
    for guest in guests:
        assert given.count(guest) == 2, f"{guest}: against read()+write() and against sendfile()"
    signs = {sets[guest].measurement("09-khttpd/saving-percent.sendfile")["value"] > 0 for guest in guests}
    assert ("sign flips" in _text(answer)) == (len(signs) == 2), _text(answer)


def test_lesson_9_explains_its_tails_and_its_emulated_times_beside_the_tables(html: Path) -> None:
    """The counted table's p99 runs far above its median, and the emulated table disagrees with the counts: the
    paragraph right after each table says why."""
    article = _article(_page(html, "09-khttpd"))
    after = {}
    for table in re.findall(r'<table class="course-table.*?</table>', article, re.S):
        caption = _text(re.search(r"<caption>(.*?)</caption>", table, re.S)[1]) if "<caption>" in table else ""
        rest = article.split(table, 1)[1].split("<table", 1)[0]
        prose = re.findall(r"<p>(.*?)</p>", rest, re.S)  # the table's own notes have a class
        after[caption] = _text(prose[0]) if prose else ""
    counted = next(text for caption, text in after.items() if "counted in instructions (QEMU -icount)" in caption)
    emulated = next(text for caption, text in after.items() if "plain emulation" in caption)
    assert "99th percentile" in counted and "interrupt" in counted, counted
    assert "emulated" in emulated and "instruction counts" in emulated and "inference" in emulated, emulated


def test_the_home_page_opens_with_its_answer_and_one_chart_of_2000_against_today_in_ns(html: Path) -> None:
    article = _article((html / "docs" / "index.html").read_text(encoding="utf-8"))
    opening = article.split("<h2", 1)[0]
    assert "<strong>The question:</strong>" in opening and "<strong>The answer:</strong>" in opening
    answer = opening.split("<strong>The answer:</strong>", 1)[1].split("</p>", 1)[0]
    values = _values(answer)
    assert {set_id == "reference-2000" for set_id, _ in values} == {True, False}, "2000 beside today"
    assert {_unit(text) for _, text in values} == {"ns"}, values
    assert "08-since-2000.html" in answer, "the answer points to lesson 8"
    charts = _answer_charts(opening)
    assert len(charts) == 1, "one chart"
    rows = charts[0][1]
    assert {who for _, who, _ in rows} >= {"2000"} and any(who.startswith("host") for _, who, _ in rows), rows
    assert all(value.endswith(" ns") for _, _, value in rows), rows
    drawn = {_numbers(value)[0] for _, _, value in rows}
    assert {_numbers(text)[0] for _, text in values} <= drawn, "the chart shows every figure the answer gives"


def _answer_panels(html: Path, lesson: str) -> list[str]:
    """The titles of the panels of a lesson's answer chart (its bold lines), in order."""
    article = _article(_page(html, lesson))
    chart = article.split('class="course-chart course-answer', 1)[1].split("</svg>", 1)[0]
    return [unescape(title) for title in re.findall(r'<text[^>]*font-weight="bold"[^>]*>([^<]*)</text>', chart)]


def test_lesson_8_answers_since_2000_with_a_chart_of_its_own_not_lesson_1s(html: Path) -> None:
    """Lesson 1 charts the way in and out alone; lesson 8 sets it beside the empty read it is part of."""
    first, since = _answer_panels(html, "01-user-kernel"), _answer_panels(html, "08-since-2000")
    assert first and since and since != first, (first, since)
    assert since[0] == "an empty read of a terminal" and any("the way in and out" in title for title in since), since


def test_no_page_names_the_checkout_that_built_it(html: Path) -> None:
    """A published page is the same wherever it was built: the API pages named the builder's folder."""
    root = str(Path(__file__).resolve().parents[1])
    naming = [str(page.relative_to(html)) for page in html.rglob("*.html") if root in page.read_text(encoding="utf-8")]
    assert not naming, f"these pages name the checkout {root}: {naming}"
