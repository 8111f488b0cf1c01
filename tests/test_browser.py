"""The site as a reader sees it, in a real headless browser (Debian's Chromium, driven by Selenium).

Every page renders; its figures and charts are visible; each number shown equals the
stored value it names; internal links resolve; screenshots of the home page and of one
lesson are kept in ``build/screenshots/`` as artifacts of the run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from course import store
from course.layout import Layout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        pytest.fail("chromium and chromium-driver are needed: invoke setup --tests installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1300,2000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
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


def test_every_page_renders_with_its_figures_equal_to_the_stored_values(built_site: Layout, browser) -> None:
    from selenium.webdriver.common.by import By

    sets = store.load_all(built_site.results)
    checked = 0
    for page in _pages(built_site):
        browser.get(page.as_uri())
        heading = browser.find_element(By.CSS_SELECTOR, "article h1")
        assert heading.is_displayed() and heading.text, f"{page.name} shows no title"
        for element in browser.find_elements(By.CSS_SELECTOR, ".course-value"):
            text = element.text
            if text.startswith(("not run", "failed")):
                continue
            browser.execute_script("arguments[0].scrollIntoView()", element)
            assert element.is_displayed(), f"{page.name}: a figure is hidden"
            expected, slack = _expected(
                sets,
                element.get_attribute("data-measurement"),
                element.get_attribute("data-set"),
                element.get_attribute("data-field"),
            )
            assert abs(_first_number(text) - expected) <= slack, (
                f"{page.name}: {text!r} shown for {element.get_attribute('data-measurement')}, stored {expected}"
            )
            checked += 1
        for chart in browser.find_elements(By.CSS_SELECTOR, "svg.course-chart"):
            browser.execute_script("arguments[0].scrollIntoView()", chart)
            assert chart.is_displayed() and chart.size["height"] > 20, f"{page.name}: a chart is not drawn"
            assert chart.find_elements(By.TAG_NAME, "rect"), f"{page.name}: a chart has no bars"
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
    for page in sorted(built_site.html.rglob("*.html")):
        for href in _parse(page).hrefs:
            parts = urlparse(href)
            if parts.scheme or href.startswith(("mailto:", "//")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.exists():
                broken.append(f"{page.relative_to(built_site.html)} -> {href}")
            elif parts.fragment and target.suffix == ".html" and parts.fragment not in _parse(target).ids:
                broken.append(f"{page.relative_to(built_site.html)} -> {href} (no such anchor)")
    assert broken == []


def test_linkcheck_finds_no_broken_internal_link(built_site: Layout, measured_course) -> None:
    _, set_path, _ = measured_course
    out = built_site.build / "linkcheck"
    command = [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        "linkcheck",
        "-q",
        "-d",
        str(built_site.build / "lc-doctrees"),
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
