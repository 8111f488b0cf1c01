"""The real site with a class of 60 imported sets, in headless Chromium: no table of the home page or of a
lesson is wider than the content column at 1366 px; screenshots at 390 px are kept for a reader to look at.

The site is the one the class benchmark builds and keeps (conftest.py's timed_class_site, shared with test_bench.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import chromium_driver

from course.results.layout import Layout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"

#: Each table's width against its content column (the article), every fold opened first.
WIDTHS = """
for (const fold of document.querySelectorAll("details")) fold.open = true;
const column = document.querySelector("article").getBoundingClientRect().width;
return [column, [...document.querySelectorAll("article table")].map(
    (table) => [table.getBoundingClientRect().width, (table.querySelector("caption, th") || table).textContent.trim()]
)];
"""


@pytest.fixture(scope="module")
def class_site(timed_class_site) -> Layout:
    """The whole site from the shipped sets and 60 students' sets imported beside them, marking the set they copy
    current: the site test_bench.py's class benchmark timed, kept (conftest.py's timed_class_site)."""
    assert timed_class_site.found["bench/pipeline.site-class"]["status"] == "ok"
    return timed_class_site.layout


def _browser(width: int, height: int):
    return chromium_driver(f"--window-size={width},{height}")


def _pages(layout: Layout) -> list[Path]:
    return [layout.html / "docs" / "index.html", *sorted(layout.html.glob("lessons/*.html"))]


def test_no_table_is_wider_than_its_column_at_1366_px(class_site: Layout) -> None:
    pages = _pages(class_site)
    assert len(pages) >= 10, pages
    home = pages[0].read_text(encoding="utf-8")
    assert re.search(r"the class: 6[0-9] other machines", home), "the home table sums the class up"
    # The students' sets are copies of one machine's: imported, each is another machine, never another build. The
    # class holds every other host machine shipped beside them too (another CPU generation under the same name).
    lesson = (class_site.html / "lessons" / "03-timing.html").read_text(encoding="utf-8")
    noted = {int(n) for n in re.findall(r"the class: (\d+) other machines", lesson)}
    charted = {int(n) for n in re.findall(r"the class \((\d+) machines\): median", lesson)}
    assert len(noted) == 1 and noted == charted and min(noted) >= 60, (noted, charted)
    browser = _browser(1366, 900)
    try:
        wide = []
        for page in pages:
            browser.get(page.as_uri())
            column, tables = browser.execute_script(WIDTHS)
            assert 1300 < browser.execute_script("return document.documentElement.clientWidth") <= 1366
            assert column > 600, f"{page.name}: a content column of {column} px at 1366 px"
            wide += [
                f"{page.name}: {what[:60]!r} {width:.0f} px > {column:.0f} px"
                for width, what in tables
                if width > column + 1
            ]
        assert not wide, "\n".join(wide)
    finally:
        browser.quit()


def test_screenshots_of_a_lesson_at_390_px_are_kept(class_site: Layout) -> None:
    """Lesson 3's tables on a phone, for a reader to look at (build/screenshots/class-*)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser = _browser(390, 844)
    # A headless window is never narrower than 500 px: a phone's viewport is emulated instead.
    metrics = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        browser.get((class_site.html / "lessons" / "03-timing.html").as_uri())
        assert browser.execute_script("return document.documentElement.clientWidth") <= 390
        tables = browser.find_elements("css selector", "article table.course-table:not(.course-chart-table)")
        assert tables
        for index, table in enumerate(tables[:4]):
            # Instantly: the theme scrolls smoothly, and the picture would be taken on the way.
            browser.execute_script(
                "arguments[0].scrollIntoView({block: 'start', behavior: 'instant'});"
                "window.scrollBy({top: -60, behavior: 'instant'})",
                table,
            )
            assert browser.save_screenshot(str(SCREENSHOTS / f"class-03-timing-table-{index}.png"))
    finally:
        browser.quit()
