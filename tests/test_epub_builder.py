"""The EPUB builder with a root page in a folder (course.publish.sphinxext.epub), through Sphinx's testing fixtures.

Sphinx 9.0.4's own builder links the book's table of contents relative to the root's folder: its spine names
pages the manifest does not hold (``docs/../lessons/...``) and ``toc.ncx`` and ``nav.xhtml`` link files the book
does not have. ``invoke publish`` builds the book from the site's own doctrees, whose root is ``docs/index``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sphinx.testing.util import SphinxTestApp

from course import __version__


@pytest.mark.sphinx("epub", testroot="epub-folder-root")
def test_the_books_spine_and_tables_of_contents_link_its_own_pages_from_its_top(app: SphinxTestApp) -> None:
    app.build()
    book = Path(app.outdir)
    package = (book / "content.opf").read_text(encoding="utf-8")
    manifest = dict(re.findall(r'<item id="([^"]+)" href="([^"]+)"', package))
    spine = [manifest.get(idref, f"missing {idref}") for idref in re.findall(r'<itemref idref="([^"]+)"', package)]
    assert spine[:3] == ["docs/index.xhtml", "lessons/one.xhtml", "docs/guide.xhtml"], "in reading order, once each"
    for contents, link in (("toc.ncx", r'<content src="([^"]+)"'), ("nav.xhtml", r'<a href="([^"]+)"')):
        links = re.findall(link, (book / contents).read_text(encoding="utf-8"))
        assert "lessons/one.xhtml" in links and "docs/guide.xhtml#a-section-of-the-guide" in links, contents
        assert [target for target in links if not (book / target.partition("#")[0]).is_file()] == [], contents
    assert f'<meta property="ibooks:version">{__version__}</meta>' in package, "never empty (epubcheck RSC-005)"
