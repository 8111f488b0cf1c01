"""Publishing the course: one self-contained folder and its tarball, to put on any static host.

``invoke publish`` builds, from the stored results (it measures nothing):

- the HTML site, with ``.nojekyll`` (GitHub Pages' Jekyll would drop ``_static/`` and every
  folder whose name starts with ``_``), readable from a ``file://`` URL or any plain server;
- the EPUB beside it (``kernel-system-calls.epub``), for a reader;
- ``publish.tar.gz``, the same folder in one file;
- with ``--pdf``, a PDF handout beside them (``kernel-system-calls.pdf``): Sphinx's single-page
  HTML printed by headless Chromium (Debian's ``chromium``, which the tests install anyway).
  Measured here: about 200 pages and 9 MB for the whole course. LaTeX would need texlive's
  hundreds of MB of packages; rinohtype and WeasyPrint are not in the lock and render the
  course's inline SVG charts no better, so the browser that already checks the site prints it.

A published page names the instructor's machine by its set's label, never "this machine"
(``course.publish.sphinxext.published``). The default edition is the student one: a site put online
for a class must not show the solutions (``--edition full`` asks for them).

The EPUB comes from Sphinx's own builder, from the HTML build's doctrees (nothing is read twice), its
table of contents mended for a root page in a folder (``course.publish.sphinxext.epub``), and with the
mends Sphinx does not make in the book's files (:func:`mend_epub`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from course.measure.runners import owned_process, read_output, stop_note
from course.publish import site
from course.results.layout import Layout

#: The book's and the handout's file names, in the published folder.
EPUB_NAME = "kernel-system-calls.epub"
PDF_NAME = "kernel-system-calls.pdf"

#: The longest the browser may take to print the handout.
PDF_SECONDS = 600

#: The published folder and tarball, under ``build/publish/``.
FOLDER, TARBALL = "site", "publish.tar.gz"

#: The tarball's gzip level (gzip's own default; see :func:`publish`).
TARBALL_LEVEL = 6


@dataclass
class Published:
    folder: Path
    tarball: Path
    epub: Path
    pages: int
    notes: list[str]


def _sphinx(
    layout: Layout,
    builder: str,
    out: Path,
    doctrees: Path,
    edition: str,
    current_set: str,
    *extra: str,
    strict: bool = False,
) -> None:
    """Run one Sphinx build of the published kind into ``out``; a failure is a SiteError with Sphinx's reason."""
    command = site.sphinx_command(
        layout, builder, strict=strict, current_set=current_set, edition_name=edition, out=out, doctrees=doctrees
    )
    command += ["-D", "course_published=1", *extra]
    finished = subprocess.run(command, capture_output=True, text=True, errors="backslashreplace")
    if finished.returncode != 0:
        raise site.SiteError(
            f"the {builder} build failed (exit {finished.returncode}): {site.sphinx_reason(finished.stderr)}"
        )


def _without_has_rules(css: str) -> str:
    """The stylesheet less its ``:has()`` rules: epubcheck 4.2 cannot parse them, and a book has no ``:target`` row."""
    return re.sub(r"[^{}]*:has\([^{}]*\{[^{}]*\}", "", css)


def mend_epub(epub: Path) -> int:
    """Mark each page that holds an inline ``<svg>`` with ``properties="svg"`` in the EPUB's package file.

    EPUB 3 requires it (epubcheck OPF-014) and Sphinx does not write it; the course's stylesheet
    loses its ``:has()`` rules (:func:`_without_has_rules`). The archive is written again with
    ``mimetype`` first and stored, as the format demands. Returns how many pages hold an SVG.
    """
    with zipfile.ZipFile(epub) as book:
        entries = [(info, book.read(info.filename)) for info in book.infolist()]
    pages = {
        info.filename
        for info, data in entries
        if info.filename.endswith(".xhtml") and b"<svg" in data and not info.filename.startswith("_")
    }
    mended = []
    for info, data in entries:
        if info.filename == "content.opf":
            text = data.decode("utf-8")
            for page in pages:
                pattern = re.compile(
                    rf'(<item id="[^"]+" href="{re.escape(page)}" media-type="application/xhtml\+xml")( />)'
                )
                text = pattern.sub(r'\1 properties="svg"\2', text)
            data = text.encode("utf-8")
        elif info.filename == "_static/course.css":
            data = _without_has_rules(data.decode("utf-8")).encode("utf-8")
        mended.append((info, data))
    partial = epub.with_name(f".{epub.name}.tmp")
    with zipfile.ZipFile(partial, "w") as book:
        for info, data in sorted(mended, key=lambda entry: entry[0].filename != "mimetype"):
            kind = zipfile.ZIP_STORED if info.filename == "mimetype" else zipfile.ZIP_DEFLATED
            book.writestr(info.filename, data, compress_type=kind)
    partial.replace(epub)
    return len(pages)


def print_pdf(single_page: Path, output: Path, timeout: float = PDF_SECONDS) -> None:
    """Print one HTML page to ``output`` with headless Chromium; every process it starts ends with it."""
    browser = shutil.which("chromium")
    if browser is None:
        raise site.SiteError("the PDF handout is printed by Chromium: apt-get install chromium (invoke setup --tests)")
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-pdf-header-footer",
        f"--print-to-pdf={output}",
        single_page.as_uri(),
    ]
    with owned_process(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as process:
        outcome = read_output(process, timeout)
    if outcome.stopped or not output.is_file():
        why = stop_note(outcome.stopped, timeout) if outcome.stopped else "it wrote no file"
        raise site.SiteError(f"Chromium did not print the handout ({why})")


def publish(
    layout: Layout,
    *,
    edition: str = "student",
    current_set: str = "",
    pdf: bool = False,
    strict: bool = False,
    progress=print,
) -> Published:
    """Build the published folder, the EPUB beside its pages, and the tarball; return where they are.

    ``strict`` fails the HTML pages' build on a Sphinx warning, as ``invoke site --strict`` does (a stale or
    missing figure, a broken reference): the tests publish so, and read the student edition there. The EPUB's
    and the handout's builds, of the same pages, stay lenient.
    """
    work = layout.build / "publish"
    html, book = work / "html", work / "epub"
    progress(f"publish: the HTML site ({edition} edition) ...")
    _sphinx(layout, "html", html, work / "doctrees-html", edition, current_set, strict=strict)
    progress("publish: the EPUB ...")
    shutil.rmtree(book, ignore_errors=True)  # Sphinx zips what the folder holds: nothing stale goes in
    # The HTML build's doctrees: the same pages under the same settings, read once; the book overrides only
    # settings that do not make Sphinx read a page again (course.publish.sphinxext.epub).
    _sphinx(
        layout,
        "epub",
        book,
        work / "doctrees-html",
        edition,
        current_set,
        *("-D", f"epub_basename={Path(EPUB_NAME).stem}", "-D", "graphviz_output_format=png"),
    )
    mend_epub(book / EPUB_NAME)
    handout = work / PDF_NAME
    if pdf:
        progress("publish: the PDF handout (one page of HTML, printed by Chromium) ...")
        single = work / "singlehtml"
        # The HTML build's doctrees: the same pages under the same options, read once (Sphinx's own Makefile
        # shares one doctrees folder between its builders); only the single page is written.
        _sphinx(layout, "singlehtml", single, work / "doctrees-html", edition, current_set)
        handout.unlink(missing_ok=True)
        print_pdf(single / "docs" / "index.html", handout)

    folder, partial = work / FOLDER, work / f".{FOLDER}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(html, partial, ignore=shutil.ignore_patterns(".buildinfo", ".doctrees"))
    (partial / ".nojekyll").write_text("")  # GitHub Pages: serve _static/ and _downloads/ as they are
    shutil.copyfile(book / EPUB_NAME, partial / EPUB_NAME)
    if pdf:
        shutil.copyfile(handout, partial / PDF_NAME)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    tarball, partial_tar = work / TARBALL, work / f".{TARBALL}.partial"
    # gzip's own default level: tarfile's 9 took 1.15 CPU-s here for a tarball 1.8 % smaller (4.54 against 4.62 MB)
    # than level 6's 0.40 s (the handout, half of the folder, is 10.8 MB of which gzip -9 saves 2 % more than -6).
    with tarfile.open(partial_tar, "w:gz", compresslevel=TARBALL_LEVEL) as tar:
        tar.add(folder, arcname=FOLDER)
    partial_tar.replace(tarball)
    pages = sum(1 for _ in folder.rglob("*.html"))
    notes = [f"PDF:     {folder / PDF_NAME} ({handout.stat().st_size / 1e6:.1f} MB)"] if pdf else []
    return Published(folder, tarball, folder / EPUB_NAME, pages, notes)
