"""The real site with a class of 60 imported sets, in headless Chromium: no table of the home page or of a
lesson is wider than the content column at 1366 px; screenshots at 390 px are kept for a reader to look at.

It builds this checkout's site (its generated machine pages): listed in conftest's CHECKOUT_SITE_MODULES.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import chromium_driver

from course.publish import site
from course.results.class_sets import import_class
from course.results.layout import Layout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"

#: The shipped host set the students' sets copy (every lesson measured), and this machine's set in the build.
SOURCE = "amd-epyc-6.18.44-fc-v1272-vm"

#: Each table's width against its content column (the article), every fold opened first.
WIDTHS = """
for (const fold of document.querySelectorAll("details")) fold.open = true;
const column = document.querySelector("article").getBoundingClientRect().width;
return [column, [...document.querySelectorAll("article table")].map(
    (table) => [table.getBoundingClientRect().width, (table.querySelector("caption, th") || table).textContent.trim()]
)];
"""


@pytest.fixture(scope="module")
def class_site(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    """The whole site from the shipped sets and 60 students' sets imported beside them."""
    scratch = tmp_path_factory.mktemp("class-of-60")
    layout = Layout(ROOT, results_dir=scratch / "results", build_dir=scratch / "build")
    shutil.copytree(ROOT / "results", layout.results, ignore=shutil.ignore_patterns("_*", ".*"))
    import_class(layout.results, SOURCE, 60)
    site.build_site(layout, strict=False, current_set=SOURCE)
    return layout


def _browser(width: int, height: int):
    return chromium_driver(f"--window-size={width},{height}")


def _pages(layout: Layout) -> list[Path]:
    return [layout.html / "docs" / "index.html", *sorted(layout.html.glob("lessons/*.html"))]


def test_no_table_is_wider_than_its_column_at_1366_px(class_site: Layout) -> None:
    pages = _pages(class_site)
    assert len(pages) >= 10, pages
    home = pages[0].read_text(encoding="utf-8")
    assert re.search(r"the class: 6[0-9] other machines", home), "the home table sums the class up"
    # The students' sets are copies of one machine's: imported, each is another machine, never another build.
    lesson = (class_site.html / "lessons" / "03-timing.html").read_text(encoding="utf-8")
    assert "the class: 60 other machines" in lesson and "the class (60 machines): median" in lesson
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
