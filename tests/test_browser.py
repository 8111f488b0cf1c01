"""The site as a reader sees it, in a real headless browser (Debian's Chromium, driven by Selenium).

Every page renders; its figures and charts are visible; each number shown equals the
stored value it names; internal links resolve; screenshots of the home page and of one
lesson are kept in ``build/screenshots/`` as artifacts of the run.
"""

from __future__ import annotations

import functools
import json
import pkgutil
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from course.publish.sphinxext.setdata import figure_anchor
from course.results import store
from course.results.layout import Layout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"


@pytest.fixture(scope="module")
def browser(start_chromium):
    driver = start_chromium(
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1300,2000",
    )
    yield driver
    driver.quit()


def _pages(layout: Layout) -> list[Path]:
    html = layout.html
    return sorted([*html.glob("lessons/*.html"), *html.glob("docs/*.html"), *html.glob("docs/machines/*.html")])


def _first_number(text: str) -> float:
    found = re.search(r"-?[\d,]+(?:\.\d+)?", text)
    assert found, f"no number in {text!r}"
    return float(found[0].replace(",", ""))


def _expected(sets: dict, measurement: str, set_id: str, field: str) -> tuple[float, float]:
    """The stored value a figure stands for, and how far rounding on the page may move it."""
    stored = sets[set_id].measurement(measurement)
    assert stored is not None, f"{measurement} of {set_id} is shown but not stored"
    if field == "vs-2000":  # 2000's nanoseconds over this machine's: "N times"
        then = next(s for s in sets.values() if s.kind == "reference").measurement(measurement)
        return (then["min"] / then["tsc_hz"]) / (stored["min"] / stored["tsc_hz"]), 0.051
    name = field.removesuffix("-ns")
    value = stored[name]
    if field.endswith("-ns"):
        return value / stored["tsc_hz"] * 1e9, 0.51
    return value, 0.51 if stored.get("unit") not in ("%", "s") else 0.051


#: Selenium's own check of whether an element is displayed (the atom WebElement.is_displayed runs), for the scripts
#: below: each reads a page in one call to the browser (a call for each figure, line number or link took most of the
#: CPU of these tests).
IS_DISPLAYED = (
    "const isDisplayed = (" + pkgutil.get_data("selenium.webdriver.remote", "isDisplayed.js").decode("utf-8") + ");\n"
)

#: Each figure of a page as the reader sees it: its text, then, unless it says it was not run or failed, whether it
#: is displayed once scrolled to and which stored value it names.
FIGURES = """
[...document.querySelectorAll('.course-value')].map((element) => {
  const text = element.innerText.trim();
  if (text.startsWith('not run') || text.startsWith('failed')) return [text];
  element.scrollIntoView();
  return [text, isDisplayed(element), ...['measurement', 'set', 'field'].map((n) => element.getAttribute('data-' + n))];
})
"""

#: Each chart of a page once scrolled to, as WebDriver would see it: displayed, its height in CSS px (the element's
#: rect), how many marks it draws (not just its axes) and how many texts (axes and labels) it has.
CHARTS = """
[...document.querySelectorAll('svg.course-chart')].map((chart) => {
  chart.scrollIntoView();
  return [isDisplayed(chart), chart.getBoundingClientRect().height,
          chart.querySelectorAll("rect, circle, path[stroke^='#']").length, chart.querySelectorAll('text').length];
})
"""

#: Each listing of a page: its file and first line, the text of its <pre> without the line numbers, the line
#: numbers' text (none where they are not displayed: a folded listing is not rendered until opened) and where its
#: download link points.
LISTINGS = """
[...document.querySelectorAll('div.course-code')].map((listing) => {
  const pre = listing.querySelector('pre').cloneNode(true);
  pre.querySelectorAll('.linenos').forEach((n) => n.remove());
  const numbers = [...listing.querySelectorAll('.linenos')].map((n) => (isDisplayed(n) ? n.innerText : ''));
  const link = listing.querySelector('.code-block-caption a.download');
  return [listing.getAttribute('data-source'), listing.getAttribute('data-first-line'), pre.textContent, numbers,
          link && link.href];
})
"""

#: Each link of a page to a kernel function or a system call's manual: where it points, its text as shown (none
#: where it is not displayed) and its classes.
KERNEL_LINKS = """
[...document.querySelectorAll('article a.extlink-kfunc, article a.extlink-man2')].map(
  (link) => [link.href, isDisplayed(link) ? link.innerText.trim() : '', link.getAttribute('class')])
"""

#: The anchors of a machine page's rows, one a figure (hundreds a page).
FIGURE_ROWS = """
[...document.querySelectorAll("tr[id^='figure-']")].map((row) => row.getAttribute('id'))
"""

#: A machine page's download links: each one's text as shown (none where it is not displayed) and where it points.
DATA_LINKS = """
[...document.querySelectorAll('.course-data a')].map(
  (link) => [isDisplayed(link) ? link.innerText.trim() : '', link.href])
"""

#: A page as the reader first sees it, read in one call once it has loaded: its title (displayed, its text), its
#: favicon, its listings, its kernel links, its opening's text and its links to the glossary, a machine page's rows
#: and download links; then its figures and its charts, each scrolled to (last: the scrolling changes nothing the
#: others read).
VISIT = (
    IS_DISPLAYED
    + "const heading = document.querySelector('article h1');\n"
    + "const icon = document.querySelector(\"link[rel~='icon']\");\n"
    + "const opening = document.querySelector('article .course-opening');\n"
    + "const read = {heading: heading && [isDisplayed(heading), heading.innerText.trim()], icon: icon && icon.href,\n"
    + f"  listings: {LISTINGS.strip()},\n  kernel_links: {KERNEL_LINKS.strip()},\n"
    + "  opening: opening && opening.innerText,\n"
    + f"  figure_rows: {FIGURE_ROWS.strip()},\n  data_links: {DATA_LINKS.strip()},\n"
    + "  glossary: [...document.querySelectorAll(\"article a[href*='glossary.html#term-']\")].map((a) => a.href)};\n"
    + f"read.figures = {FIGURES.strip()};\nread.charts = {CHARTS.strip()};\nreturn read;\n"
)


@pytest.fixture(scope="module")
def desktop_visits(built_site: Layout, browser) -> dict[Path, dict]:
    """Every page of the site, loaded once in the desktop window, and what :data:`VISIT` read of it.

    The tests that only read a page as it loads share these visits (each page load costs Chromium about
    0.3 CPU-s here): the figures, the favicon, the listings, the kernel links, the openings and the machine
    pages' rows and downloads of one load. On the pages with code to copy (the lessons and the home page), the copy
    buttons are then clicked, once read (:func:`_copy_sweep`), in the same load.
    """
    visits = {}
    copied = {*_lesson_pages(built_site), built_site.html / "docs/index.html"}
    for page in _pages(built_site):
        browser.get(page.as_uri())
        visits[page] = browser.execute_script(VISIT)
        if page in copied:
            visits[page]["copies"] = _copy_sweep(browser)
    return visits


def test_every_page_renders_with_its_figures_equal_to_the_stored_values(
    built_site: Layout, desktop_visits: dict[Path, dict]
) -> None:
    sets = store.load_all(built_site.results)
    checked = 0
    for page in _pages(built_site):
        read = desktop_visits[page]
        displayed, title = read["heading"] or (False, "")
        assert displayed and title, f"{page.name} shows no title"
        for text, *seen in read["figures"]:
            if not seen:  # not run, or failed
                continue
            displayed, measurement, set_id, field = seen
            assert displayed, f"{page.name}: a figure is hidden"
            expected, slack = _expected(sets, measurement, set_id, field)
            assert abs(_first_number(text) - expected) <= slack, (
                f"{page.name}: {text!r} shown for {measurement}, stored {expected}"
            )
            checked += 1
        for displayed, height, marks, texts in read["charts"]:
            assert displayed and height > 20, f"{page.name}: a chart is not drawn"
            assert marks, f"{page.name}: a chart draws nothing"
            assert texts, f"{page.name}: a chart has no axes or labels"
    assert checked >= 40, f"only {checked} figures were found on the pages"


def test_screenshots_of_home_and_a_lesson_are_kept(built_site: Layout, browser) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, page in (("home", "docs/index.html"), ("lesson-03", "lessons/03-timing.html")):
        browser.get((built_site.html / page).as_uri())
        target = SCREENSHOTS / f"{name}.png"
        assert browser.save_screenshot(str(target))
        assert target.stat().st_size > 10_000


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(found["id"])
        if tag in ("a", "link") and found.get("href"):
            self.hrefs.append(found["href"])


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_every_internal_link_resolves(built_site: Layout) -> None:
    broken = []
    parsed = functools.cache(_parse)  # each page once: a machine page is the target of thousands of links
    for page in sorted(built_site.html.rglob("*.html")):
        for href in parsed(page).hrefs:
            parts = urlparse(href)
            if parts.scheme or href.startswith(("mailto:", "//")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.exists():
                broken.append(f"{page.relative_to(built_site.html)} -> {href}")
            elif parts.fragment and target.suffix == ".html" and parts.fragment not in parsed(target).ids:
                broken.append(f"{page.relative_to(built_site.html)} -> {href} (no such anchor)")
    assert broken == []


def test_linkcheck_finds_no_broken_internal_link(built_site: Layout, measured_course) -> None:
    _, set_path, _ = measured_course
    out = built_site.build / "linkcheck"
    # The session's HTML build's doctrees, copied (its own are left as they are): the same pages under the same
    # options, so Sphinx reads none of them again (3 CPU-s instead of 11 here) and checks the links of
    # exactly the site the other tests look at.
    doctrees = built_site.build / "lc-doctrees"
    shutil.rmtree(doctrees, ignore_errors=True)
    shutil.copytree(built_site.doctrees, doctrees)
    command = [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        "linkcheck",
        "-q",
        "-d",
        str(doctrees),
        str(ROOT),
        str(out),
        "-D",
        f"course_results_dir={built_site.results}",
        "-D",
        f"course_current_set={set_path.name}",
        "-D",
        "linkcheck_ignore=https?://.*",
    ]
    finished = subprocess.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    results = [json.loads(line) for line in (out / "output.json").read_text().splitlines() if line.strip()]
    assert [r for r in results if r["status"] == "broken"] == []
    checked = {r["filename"] for r in results}
    assert {f"lessons/{page.stem}.md" for page in _lesson_pages(built_site)} <= checked, "every lesson's links"


def _lesson_pages(layout: Layout) -> list[Path]:
    pages = sorted(layout.html.glob("lessons/*.html"))
    assert len(pages) == 9, f"{len(pages)} lesson pages"
    return pages


def test_every_lesson_shows_code_equal_to_its_source_file(built_site: Layout, desktop_visits: dict[Path, dict]) -> None:
    for page in _lesson_pages(built_site):
        listings = desktop_visits[page]["listings"]
        assert listings, f"{page.name} shows no code"
        for file, first_line, code, shown_numbers, href in listings:
            source = (ROOT / file).read_text(encoding="utf-8").splitlines()
            first = int(first_line)
            shown = code.rstrip("\n").split("\n")
            assert shown == source[first - 1 : first - 1 + len(shown)], f"{page.name}: a listing differs from its file"
            numbers = [int(n) for n in shown_numbers if n.strip()]
            if numbers:  # a folded listing is not rendered until opened, so its numbers have no text yet
                assert numbers == list(range(first, first + len(shown))), f"{page.name}: not the file's own numbers"
            assert href, f"{page.name}: a listing has no download link"
            whole = Path(unquote(urlparse(href).path)).read_text(encoding="utf-8")
            assert whole.splitlines() == source, f"{page.name}: the link does not give the whole file"


#: Listen for every copy on the page, and keep what each copied (the text the button selected to copy) under the
#: number of the button clicked last (set by AIM): one listener for the whole page, read once after every click.
LISTEN = """
window.courseCopied = [];
window.courseClicked = null;
document.addEventListener('copy', () => {
  const a = document.activeElement;
  const copied = a && a.value !== undefined ? a.value.slice(a.selectionStart, a.selectionEnd) : String(getSelection());
  window.courseCopied[window.courseClicked] = copied;
});
"""

#: The button ``arguments[0]``, number ``arguments[1]``, is the one clicked next: in view, to copy under its number.
AIM = """
window.courseClicked = arguments[1];
arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});  // not smooth: the click comes at once
"""


#: Each copy button of a page, read in one call (a call for each of its fields took most of this test's CPU): the
#: button, whether the block it copies is a command, and the file and first line of the listing it is in (none for
#: a block that is not a listing).
BUTTONS = """
return [...document.querySelectorAll('button.copybtn')].map((button) => {
  const target = document.querySelector(button.dataset.clipboardTarget);
  const listing = target.closest('div.course-code');
  return [button, (target.getAttribute('class') || '').includes('course-command'),
          listing && listing.getAttribute('data-source'), listing && listing.getAttribute('data-first-line')];
});
"""


def _copies(browser, buttons: list) -> list[str | None]:
    """What a reader's click on each of ``buttons`` copies (a real click: copying needs a user's gesture), in order."""
    browser.execute_script(LISTEN)
    for number, button in enumerate(buttons):
        browser.execute_script(AIM, button, number)
        button.click()
    copied = browser.execute_script("return window.courseCopied")
    return [*copied, *[None] * (len(buttons) - len(copied))]  # a button that copied nothing left a hole, or none


def _copy_sweep(browser) -> tuple[int, list[tuple]]:
    """On the loaded page, its folds opened: how many code blocks and commands it has, and for each copy button
    whether it copies a command, the file and first line of its listing, and what a reader's click on it copies."""
    from selenium.webdriver.common.by import By

    # The visit scrolled to each figure (smoothly, in this theme): that scroll is ended here, at the top, so the
    # clicks below land where each button is put. Then the folded listings are opened, to be copied too.
    browser.execute_script(
        "window.scrollTo({top: 0, behavior: 'instant'});"
        "document.querySelectorAll('details').forEach((fold) => (fold.open = true));"
    )
    blocks = browser.find_elements(By.CSS_SELECTOR, "div.highlight pre, code.course-command")
    buttons = browser.execute_script(BUTTONS)
    copies = _copies(browser, [button for button, *_ in buttons])
    return len(blocks), [(*fields, copied) for (_, *fields), copied in zip(buttons, copies, strict=True)]


def test_every_code_block_and_command_has_a_copy_button_that_copies_it_exactly(
    built_site: Layout, desktop_visits: dict[Path, dict]
) -> None:
    commands, listings = [], []
    for page in [*_lesson_pages(built_site), built_site.html / "docs/index.html"]:
        blocks, buttons = desktop_visits[page]["copies"]
        assert blocks and len(buttons) == blocks, f"{page.name}: {blocks} blocks, {len(buttons)} buttons"
        for command, source_file, first_line, copied in buttons:
            assert copied, f"{page.name}: a copy button copied nothing"
            if command:
                commands.append(copied)
            elif source_file is not None:  # a listing copies as its file has it: no line numbers
                source = (ROOT / source_file).read_text(encoding="utf-8").splitlines()
                first = int(first_line)
                lines = copied.split("\n")
                assert lines == source[first - 1 : first - 1 + len(lines)], f"{page.name}: copied {copied[:80]!r}"
            elif page.name == "index.html":
                listings.append(copied)
    assert any("objdump -d --no-show-raw-insn" in command for command in commands), commands
    assert not any("\u2013" in command for command in commands), "a command would be copied with an en dash"
    console = next(text for text in listings if "bootstrap" in text)
    assert console.startswith("./bootstrap generate"), "a console block copies its commands without the prompt"
    assert "\n$ " not in console


def test_an_exercise_solution_is_folded_until_opened(built_site: Layout, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get((built_site.html / "lessons/01-user-kernel.html").as_uri())
    fold = browser.find_element(By.CSS_SELECTOR, "details.course-fold")
    code = fold.find_element(By.CSS_SELECTOR, "div.course-code")
    assert not code.is_displayed()
    browser.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", fold)
    fold.find_element(By.TAG_NAME, "summary").click()
    assert code.is_displayed() and "int $0x80" in code.text
    downloads = browser.find_elements(By.CSS_SELECTOR, "ul.course-downloads a.download")
    folder = "code/user/01-user-kernel/"
    wanted = {folder + name for name in ("three-ways.c", "lesson.toml", "solutions/exercise-int80.c")}
    assert {link.text for link in downloads} >= wanted


#: The element of each id in ``arguments[0]``: its tag and its text as shown (none where it is not displayed), or null.
TERMS = """
return arguments[0].map((id) => {
  const term = document.getElementById(id);
  return term && [term.tagName.toLowerCase(), isDisplayed(term) ? term.innerText.trim() : ''];
});
"""


def test_each_lesson_opens_with_its_aims_and_links_its_terms_to_the_glossary(
    built_site: Layout, browser, desktop_visits: dict[Path, dict]
) -> None:

    terms = set()
    for page in _lesson_pages(built_site):
        opening, links = desktop_visits[page]["opening"], desktop_visits[page]["glossary"]
        assert opening is not None, f"{page.name} has no opening"
        for part in ("You will learn", "You need"):
            assert part in opening, f"{page.name}: the opening says nothing under {part!r}"
        assert links, f"{page.name} links no term to the glossary"
        terms |= set(links)
    anchors: dict[str, list[str]] = {}  # each page the links land on (the glossary), loaded once for its terms
    for href in sorted(terms):
        parts = urlparse(href)
        anchors.setdefault(parts._replace(fragment="").geturl(), []).append(parts.fragment)
    for url, ids in anchors.items():
        browser.get(url)
        for anchor, found in zip(ids, browser.execute_script(IS_DISPLAYED + TERMS, ids), strict=True):
            assert found and found[0] == "dt" and found[1], f"{url}#{anchor} lands on no glossary term"
    assert len(terms) >= 15, f"only {len(terms)} distinct terms are linked"


def test_home_lists_each_lesson_with_a_line_and_the_sidebar_separates_the_parts(built_site: Layout, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get((built_site.html / "docs/index.html").as_uri())
    items = browser.find_elements(By.CSS_SELECTOR, "article ol > li")
    lessons = [item for item in items if item.find_elements(By.CSS_SELECTOR, "a[href*='lessons/']")]
    assert len(lessons) == 9 and all(": " in item.text for item in lessons), [item.text for item in lessons]
    captions = [
        c.get_attribute("textContent").strip() for c in browser.find_elements(By.CSS_SELECTOR, ".sidebar-tree .caption")
    ]
    assert captions == ["Lessons", "Figures and machines", "Reference"]


def test_kernel_functions_link_to_the_guest_kernels_source_and_calls_to_their_manual(
    built_site: Layout, desktop_visits: dict[Path, dict]
) -> None:
    import runpy

    version = runpy.run_path(str(ROOT / "conf.py"))["course_guest_kernel"]
    for page in _lesson_pages(built_site):
        links = desktop_visits[page]["kernel_links"]
        assert links, f"{page.name} links no kernel function or system call"
        for href, text, kind in links:
            if "extlink-kfunc" in kind:
                assert href == f"https://elixir.bootlin.com/linux/v{version}/A/ident/{text.removesuffix('()')}"
            else:
                assert href == f"https://man7.org/linux/man-pages/man2/{text.removesuffix('(2)')}.2.html"


#: The page's own width against its viewport's, the smallest chart label as drawn, and the width of each table of the
#: article (of its scrolling wrapper, where it has one), in CSS px: read in one call (a call for each table's box and
#: another for its size took most of this test's calls; the width is the element's rect, as WebDriver's size).
NARROW = """
const page = document.documentElement;
const sizes = [...document.querySelectorAll('svg.course-chart')].flatMap(svg => {
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  return [...svg.querySelectorAll('text')].map(t => parseFloat(getComputedStyle(t).fontSize) * scale);
});
const tables = [...document.querySelectorAll('article table')].map(
  (table) => (table.closest('.table-wrapper') || table).getBoundingClientRect().width);
return [page.scrollWidth, page.clientWidth, sizes.length ? Math.min(...sizes) : null, sizes.length, tables];
"""


def test_on_a_phone_no_page_scrolls_sideways_and_chart_labels_stay_readable(built_site: Layout, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.set_window_size(390, 844)
    try:
        labels = shown_tables = 0
        for page in _pages(built_site):
            browser.get(page.as_uri())
            scroll, width, smallest, count, tables = browser.execute_script(NARROW)
            assert scroll <= width, f"{page.name} scrolls sideways at 390 px: {scroll} px wide in {width}"
            if count:
                assert smallest >= 10, f"{page.name}: a chart label is {smallest:.1f} px at 390 px"
                labels += count
            assert all(table <= width for table in tables), f"{page.name}: a table is wider than the page"
            shown_tables += len(tables)
        assert labels, "no chart was drawn"
        assert shown_tables, "no table was measured"
        # Lesson 2's path diagram: its labels legible at phone width, its thick arrow visibly thick.
        browser.get((built_site.html / "lessons/02-read-path.html").as_uri())
        figure = browser.find_element(By.CSS_SELECTOR, "object.graphviz")
        assert figure.get_attribute("aria-label").startswith("The path of read"), "the figure has a name"
        source = browser.execute_script("return arguments[0].data", figure)  # the SVG file's absolute URL
        svg = Path(unquote(urlparse(source).path)).read_text(encoding="utf-8")
        view = [float(v) for v in re.search(r'viewBox="([^"]+)"', svg)[1].split()]
        scale = figure.size["width"] / view[2]
        smallest = min(float(size) for size in re.findall(r'font-size="([\d.]+)"', svg)) * scale
        thickest = max(float(w) for w in re.findall(r'stroke-width="([\d.]+)"', svg)) * scale
        assert smallest >= 10, f"lesson 2's diagram has labels of {smallest:.1f} px on a phone"
        assert thickest >= 4, f"lesson 2's thick arrow is {thickest:.1f} px"
    finally:
        browser.set_window_size(1300, 2000)


def _tap(browser, element) -> None:
    """A tap of a finger on ``element``: touch pointer events, as a phone sends them, not a mouse's."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    actions = ActionBuilder(browser, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"))
    actions.pointer_action.move_to(element).pointer_down().pointer_up()
    actions.perform()


#: The row a link landed on (the target, or the row of a target cell), and where it is in the window.
TARGET = """
const target = document.querySelector(':target');
if (!target) return null;
const row = target.closest('tr');
const box = row.getBoundingClientRect();
return [row.id, row.textContent, box.top, box.bottom, innerHeight];
"""


#: The right edge of the landed row's cell that shows ``arguments[0]``.
CELL_RIGHT = """
const row = document.querySelector(':target').closest('tr');
const cell = [...row.cells].slice(1).find(c => c.textContent.trim() === arguments[0]);
return cell ? cell.getBoundingClientRect().right : null;
"""

#: The first figure of a field (``arguments[0]``) a finger can reach: in view, not under another element.
FIRST_TAPPABLE = """
for (const figure of document.querySelectorAll(`article a.course-value[data-field="${arguments[0]}"]`)) {
  figure.scrollIntoView({block: 'center', behavior: 'instant'});
  const box = figure.getBoundingClientRect();
  if (document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2)?.closest('a') === figure) return figure;
}
return null;
"""


@pytest.mark.parametrize(
    ("page", "field"), [("03-timing", "min"), ("01-user-kernel", "median"), ("03-timing", "min-ns")]
)
def test_a_tap_shows_a_figures_note_and_a_second_tap_lands_on_it(built_site: Layout, browser, page, field) -> None:
    """On a phone: the note, then the figure's row on its machine's page with the figure's own cell in view."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(390, 844)
    try:
        browser.get((built_site.html / f"lessons/{page}.html").as_uri())
        figure = browser.execute_script(FIRST_TAPPABLE, field)
        assert figure is not None, f"no figure of field {field} can be tapped on {page}"
        url, note_text, shown = browser.current_url, figure.get_attribute("title"), figure.text
        measurement = figure.get_attribute("data-measurement")
        _tap(browser, figure)
        notes = browser.find_elements(By.CSS_SELECTOR, ".course-note")
        assert browser.current_url == url, "the first tap follows the link instead of showing the note"
        assert len(notes) == 1 and notes[0].is_displayed() and note_text in notes[0].text
        _tap(browser, figure)
        WebDriverWait(browser, 5).until(lambda b: b.current_url != url)
        assert browser.current_url.startswith((built_site.html / "docs/machines").as_uri())
        # The theme scrolls smoothly: wait for the row to come to rest in view.
        WebDriverWait(browser, 5).until(
            lambda b: (found := b.execute_script(TARGET)) and 0 <= found[2] < found[3] <= found[4]
        )
        row_id, text, *_ = browser.execute_script(TARGET)
        assert row_id == figure_anchor(measurement)
        assert measurement in text and shown in text, f"the row {text!r} is not the figure {shown!r}"
        # On a phone the row is wider than the screen: the cell with the figure itself is in view.
        WebDriverWait(browser, 5).until(
            lambda b: (
                (right := b.execute_script(CELL_RIGHT, shown)) is not None
                and right <= b.execute_script("return innerWidth")
            )
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / f"figure-{field}-on-a-phone.png"))
    finally:
        browser.set_window_size(1300, 2000)


def test_each_machine_page_downloads_its_figures_as_json_and_csv(
    built_site: Layout, desktop_visits: dict[Path, dict]
) -> None:
    import csv
    import io

    pages = sorted(built_site.html.glob("docs/machines/*.html"))
    assert pages
    for page in pages:
        rows = set(desktop_visits[page]["figure_rows"])
        assert rows, f"{page.name} lists no figure"
        links = dict(desktop_visits[page]["data_links"])
        assert set(links) == {"JSON", "CSV"}, f"{page.name}: {links}"
        files = {form: Path(unquote(urlparse(href).path)) for form, href in links.items()}
        data = json.loads(files["JSON"].read_text(encoding="utf-8"))
        table = list(csv.DictReader(io.StringIO(files["CSV"].read_text(encoding="utf-8"))))
        assert {figure_anchor(m["id"]) for m in data["measurements"]} == rows, page.name
        assert {figure_anchor(row["measurement"]) for row in table} == rows, page.name
        assert data["set"] == page.stem and {row["set"] for row in table} == {page.stem}


def test_every_page_has_the_course_favicon(built_site: Layout, desktop_visits: dict[Path, dict]) -> None:
    for page in _pages(built_site):
        icon = desktop_visits[page]["icon"]
        assert icon, f"{page.name} has no favicon link"
        assert Path(unquote(urlparse(icon).path)).read_text().startswith("<svg"), page.name
