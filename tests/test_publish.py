"""invoke publish: a folder that opens from disk and from a server with every asset, a valid EPUB, no "this machine".

The folder is conftest's session fixture ``published`` (``invoke publish --pdf --strict``), which test_edition.py
reads too."""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

from course.publish import bundle as publish

ROOT = Path(__file__).resolve().parents[1]
EPUBCHECK = Path("/usr/share/java/epubcheck.jar")  # Debian's epubcheck package
#: A JVM for one short check: the first JIT tier only and one GC thread. The same check in half the CPU time (7.6
#: against 16.5 s here); the server JIT and parallel GC pay off only in a longer run.
SHORT_RUN_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


class _Assets(HTMLParser):
    """Every file a page loads or links to inside the site: stylesheets, scripts, images, objects, links."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        for key in ("href", "src", "data"):
            if found.get(key) and tag in ("a", "link", "script", "img", "object", "source"):
                self.found.append(found[key])


def missing_assets(folder: Path) -> list[str]:
    missing = []
    for page in sorted(folder.rglob("*.html")):
        parser = _Assets()
        parser.feed(page.read_text(encoding="utf-8"))
        for reference in parser.found:
            parts = urlparse(reference)
            if parts.scheme or reference.startswith(("//", "mailto:", "#")) or not parts.path:
                continue
            if not (page.parent / unquote(parts.path)).exists():
                missing.append(f"{page.relative_to(folder)} -> {reference}")
    return missing


def visible_text(page: Path) -> str:
    """What a reader reads on a page, code and captured output left out (they quote programs, not the site)."""
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"<(pre|code|script|style)\b.*?</\1>", " ", text, flags=re.DOTALL)
    return html.unescape(re.sub(r"<[^>]+>", " ", text))


def test_read_the_docs_builds_the_published_student_edition_and_runs_nothing() -> None:
    config = yaml.safe_load((ROOT / ".readthedocs.yaml").read_text())
    assert config["version"] == 2 and config["sphinx"]["configuration"] == "conf.py"
    assert "jobs" not in config["build"] and "commands" not in config["build"], "nothing but Sphinx runs there"
    assert (ROOT / config["python"]["install"][0]["requirements"]).is_file()
    settings: dict = {"__file__": str(ROOT / "conf.py")}
    saved = os.environ.get("READTHEDOCS")
    os.environ["READTHEDOCS"] = "True"
    try:
        exec(compile((ROOT / "conf.py").read_text(), "conf.py", "exec"), settings)
    finally:
        os.environ.pop("READTHEDOCS") if saved is None else os.environ.__setitem__("READTHEDOCS", saved)
    assert settings["course_published"] is True and settings["course_edition"] == "student"


@pytest.mark.slow
def test_the_published_folder_is_whole_with_nojekyll_and_the_epub_beside_it(published: Path) -> None:
    folder = published / publish.FOLDER
    assert (folder / ".nojekyll").is_file() and (folder / "index.html").is_file()
    assert (folder / publish.EPUB_NAME).stat().st_size > 50_000
    handout = folder / publish.PDF_NAME
    assert handout.read_bytes()[:5] == b"%PDF-" and 100_000 < handout.stat().st_size < 30_000_000
    assert missing_assets(folder) == []
    with tarfile.open(published / publish.TARBALL) as tar:
        names = set(tar.getnames())
    assert {"site/.nojekyll", "site/index.html", f"site/{publish.EPUB_NAME}", "site/_static/course.css"} <= names
    from tests.test_edition import solutions_in

    assert solutions_in(folder) == [], "the published (student) edition shows no solution"


@pytest.mark.slow
def test_the_published_site_never_says_this_machine(published: Path) -> None:
    folder = published / publish.FOLDER
    said = [
        page.relative_to(folder).as_posix()
        for page in sorted(folder.rglob("*.html"))
        if "this machine" in visible_text(page).lower()
    ]
    assert said == []
    # The apostrophe as smart quotes write it: an entity, or the character itself.
    home = (folder / "docs" / "index.html").read_text().replace("&#8217;", "'").replace("\u2019", "'")
    assert "(the instructor's machine)" in home or "(the instructor's machine, itself a VM)" in home


@pytest.mark.slow
def test_the_epub_passes_epubcheck(published: Path) -> None:
    if not EPUBCHECK.is_file() or shutil.which("java") is None:
        pytest.fail("epubcheck is needed: invoke setup --tests installs it (Debian's epubcheck)")
    checked = subprocess.run(
        ["java", *SHORT_RUN_JVM, "-jar", str(EPUBCHECK), str(published / publish.FOLDER / publish.EPUB_NAME)],
        capture_output=True,
        text=True,
    )
    errors = [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith(("ERROR", "FATAL"))]
    assert checked.returncode == 0 and errors == [], "\n".join(errors[:20])


def test_the_epubs_table_of_contents_lists_every_lesson(published: Path) -> None:
    with zipfile.ZipFile(published / publish.FOLDER / publish.EPUB_NAME) as book:
        navigation = book.read("nav.xhtml").decode()
    listed = set(re.findall(r'href="(lessons/[^"#]+)\.xhtml"', navigation))
    assert listed == {f"lessons/{page.stem}" for page in (ROOT / "lessons").glob("0*.md")}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def chromium(start_chromium):
    driver = start_chromium("--window-size=1366,900")
    yield driver
    driver.quit()


def _missing_assets(driver) -> list[str]:
    """The stylesheets and images of the page that did not load."""
    return driver.execute_script(
        "return [...document.querySelectorAll('link[rel=stylesheet]')]"
        ".filter(l => !l.sheet).map(l => l.href)"
        ".concat([...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src))"
    )


def _wait_until_listening(port: int) -> None:
    """The server answers before the browser asks: a page fetched too early would miss its assets."""
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.slow
def test_the_published_site_opens_from_disk_and_from_a_plain_server_with_every_asset(published: Path, chromium) -> None:
    folder = published / publish.FOLDER
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    driver = chromium
    try:
        _wait_until_listening(port)
        pages = ["index.html", "docs/index.html", "lessons/03-timing.html", "docs/machines.html"]
        for base in (folder.as_uri(), f"http://127.0.0.1:{port}"):
            for page in pages:
                driver.get(f"{base}/{page}")
                broken = _missing_assets(driver)
                if broken:  # a loaded machine may still be fetching: ask again, once, after the page settles
                    time.sleep(3)
                    broken = _missing_assets(driver)
                assert broken == [], f"{base}/{page}: {broken}"
                assert driver.find_element("css selector", "article").text.strip(), f"{base}/{page} is empty"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_published_page_names_the_instructors_machine_when_it_is_itself_a_vm() -> None:
    """The home table's mark of a host that is a VM carries more words; it is renamed all the same."""
    from course.publish.sphinxext.published import published_text

    text = published_text("amd-epyc (this machine, itself a VM)", "amd-epyc")
    assert text == "amd-epyc (the instructor's machine, itself a VM)"
    assert "this machine" not in published_text("on this machine; (this machine)", "amd-epyc")


def test_the_words_are_rewritten_where_they_stand_in_their_paragraph() -> None:
    """A Text node is a str: found by equality, the run to rewrite was an earlier line break of the same paragraph,
    and the sentence moved ahead of the literals before it (the guide's first paragraph, once published)."""
    from docutils import nodes

    from course.publish.sphinxext.published import _rewrite

    paragraph = nodes.paragraph()
    paragraph += [nodes.literal(text="a"), nodes.Text(","), nodes.Text("\n"), nodes.literal(text="b")]
    paragraph += [nodes.Text("\n"), nodes.Text("every example this machine can run"), nodes.literal(text="c")]
    run = list(paragraph.children[4:6])
    assert _rewrite(paragraph, run, "LABEL", "the instructor's machine")
    assert paragraph.astext() == "a,\nb\nevery example LABEL can runc"


@pytest.mark.parametrize("strict", [True, False])
def test_strict_turns_only_the_pages_warnings_into_errors(
    strict: bool, scratch_layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``invoke publish --strict`` gives the HTML pages' build Sphinx's -W, and its failure stops the publishing
    with Sphinx's reason (the session's ``published`` fixture only ever sees it succeed)."""
    ran: list[list[str]] = []

    def warned(command: list[str], **_: object) -> subprocess.CompletedProcess:
        ran.append(command)
        failed = "-W" in command
        stderr = "WARNING: a figure of no stored set\n" if failed else ""
        return subprocess.CompletedProcess(command, 1 if failed else 0, "", stderr)

    monkeypatch.setattr(publish.subprocess, "run", warned)
    if strict:
        with pytest.raises(publish.site.SiteError, match=r"the html build failed .*a figure of no stored set"):
            publish.publish(scratch_layout, strict=True, progress=lambda line: None)
        assert len(ran) == 1, "nothing is built after the pages failed"
    else:
        with pytest.raises(FileNotFoundError, match="epub"):  # the fake EPUB build wrote no book to pack
            publish.publish(scratch_layout, strict=False, progress=lambda line: None)
        assert [command[command.index("-b") + 1] for command in ran] == ["html", "epub"]
        pages, book = ran
        assert book[book.index("-d") + 1] == pages[pages.index("-d") + 1], "the book reads no page again"
    pages = ran[0]
    assert pages[pages.index("-b") + 1] == "html" and ("-W" in pages) == strict
    assert not any("-W" in command for command in ran[1:]), "the EPUB and the handout stay lenient"


def test_an_address_in_a_pages_toctree_is_no_file_of_the_book() -> None:
    """A lesson's toctree may name an address of any scheme (Sphinx itself leaves out only http(s), irc, mailto);
    the book's contents link pages of the book alone, each from the book's top."""
    from types import SimpleNamespace

    from docutils import nodes
    from docutils.utils import new_document

    from course.publish.sphinxext.epub import FolderRootEpubBuilder

    builder = object.__new__(FolderRootEpubBuilder)
    builder.config = SimpleNamespace(root_doc="docs/index")
    builder.out_suffix = ".xhtml"
    builder.toctree_template = "toctree-l%d"
    document = new_document("docs/index")
    listed = nodes.bullet_list()
    for refuri in ("HTTP://example.org/", "ftp://example.org/x", "../lessons/01-user-kernel.xhtml", "#answer"):
        item = nodes.list_item(classes=["toctree-l1"])  # as Sphinx resolves a toctree (a compact_paragraph)
        item += nodes.paragraph("", "", nodes.reference("", "a page", refuri=refuri), classes=["toctree-l1"])
        listed += item
    document += listed
    found = [node["refuri"] for node in builder.get_refnodes(document, [])]
    assert found == ["lessons/01-user-kernel.xhtml", "docs/index.xhtml#answer"], found
