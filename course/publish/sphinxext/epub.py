"""Sphinx's EPUB builder, mended for a root page in a folder: the book is built from the HTML build's doctrees.

The site's root page is ``docs/index``. Its table of contents, resolved by Sphinx, links every page
relative to ``docs/`` (``measuring.xhtml``, ``../lessons/01-....xhtml``), but the book's package file,
``toc.ncx`` and ``nav.xhtml`` sit at the book's top. Sphinx 9.0.4 (``sphinx/builders/_epub_base.py``)
gets this wrong twice: ``get_toc`` prefixes the root's folder without normalising the path
(``docs/../lessons/01-....xhtml``: a spine entry the manifest does not hold, epubcheck OPF-049), and
``build_toc`` and ``epub3.build_navigation_doc`` resolve the root's toctree again and prefix nothing
(``measuring.xhtml``: a file the book does not have, RSC-007). Here every toctree link the builder
collects from the root page is made a path from the book's top, once, where it is collected
(:meth:`FolderRootEpubBuilder.get_refnodes`), and ``get_toc`` no longer prefixes it again.

So the book needs no root page of its own, reads the pages under the site's own configuration, and
``invoke publish`` builds it from the HTML build's doctrees instead of reading every page again.
Sphinx leaves ``version`` empty in the package file (``ibooks:version``, which epubcheck rejects
empty) unless it is configured, and ``version`` is a setting that makes Sphinx read every page
again: the book takes the course's version instead, and the site's ``version`` stays unset.
"""

from __future__ import annotations

import html
import posixpath
from typing import Any
from urllib.parse import urlsplit

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.builders.epub3 import Epub3Builder

from course import __version__


class FolderRootEpubBuilder(Epub3Builder):
    """``-b epub``: Sphinx's EPUB 3 builder, its table of contents linked from the book's top."""

    name = "epub"

    def get_refnodes(self, doctree: nodes.Node, result: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found = super().get_refnodes(doctree, result)
        if isinstance(doctree, nodes.document):  # the root page, resolved (the recursion passes its elements)
            root_page = self.config.root_doc + self.out_suffix
            # A page's toctree may name an address (Sphinx leaves out only http://, https://, irc:, mailto:):
            # it is no file of the book, and as one it would break the book (a spine entry the manifest lacks).
            found[:] = [node for node in found if not urlsplit(html.unescape(node["refuri"])).scheme]
            for node in found:
                node["refuri"] = _from_top(root_page, node["refuri"])
        return found

    def get_toc(self) -> None:
        """Sphinx's ``get_toc`` without its prefix of the root's folder: :meth:`get_refnodes` made the paths."""
        doctree = self.env.get_and_resolve_doctree(
            self.config.root_doc, self, tags=self.tags, prune_toctrees=False, includehidden=True
        )
        self.refnodes = self.get_refnodes(doctree, [])
        self.toc_add_files(self.refnodes)

    def content_metadata(self) -> dict[str, Any]:
        metadata = super().content_metadata()
        metadata["version"] = metadata["version"] or html.escape(__version__)
        return metadata


def _from_top(root_page: str, refuri: str) -> str:
    """``refuri``, a link on ``root_page`` (a path from the book's top), as a path from the book's top."""
    path, hash_mark, fragment = refuri.partition("#")
    if not path:  # a section of the root page itself
        return root_page + hash_mark + fragment
    return posixpath.normpath(posixpath.join(posixpath.dirname(root_page), path)) + hash_mark + fragment


def setup(app: Sphinx) -> dict[str, bool]:
    app.add_builder(FolderRootEpubBuilder, override=True)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
