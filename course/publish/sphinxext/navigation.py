"""The theme's navigation of a page, kept between builds while the site's table of contents is unchanged.

Furo draws the whole site's navigation into every page it writes: Sphinx resolves the global
table of contents for that page (a deep copy of every page's sections, then pruned to titles),
about a tenth of a second a page here with sixty machine pages, most of the writing phase of a
lesson rerun. Its HTML depends only on the table of contents (every page's sections and
toctrees, their titles and numbers, the pages that exist), on the page it is drawn for (which
entry is current, links relative to it), on the builder, its tags and a few settings, and on
the arguments of the call. Those are hashed, with Sphinx's and docutils' versions and the
builder's link and file suffixes; under that key the HTML of the last build is
used again, and a key that differs draws it afresh: the page is written exactly as without
this cache.

The HTML lives in the build's doctree folder (``course-navigation``), one file a page and call,
replaced when its key changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docutils
import sphinx
from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx

from course.results import store

FOLDER = "course-navigation"

#: The digest of the table of contents, computed once a build (and inherited by the processes that write pages).
_digest: dict[int, str] = {}


def contents_digest(app: Sphinx) -> str:
    """A digest of everything the resolved table of contents is made of, but the page it is drawn for.

    Nodes count by their text form (``pformat``: every attribute, sorted, and every child), not
    by their pickle, which differs between a node read back from the environment and its original.
    """
    env = app.env
    master = env.get_doctree(app.config.root_doc)
    config = ("root_doc", "include_patterns", "exclude_patterns", "html_compact_lists", "html_secnumber_suffix")
    state = (
        sphinx.__version__,
        docutils.__version__,
        app.builder.name,
        # The suffix of every link drawn (html_link_suffix) and of the files written.
        getattr(app.builder, "link_suffix", None),
        getattr(app.builder, "out_suffix", None),
        repr(app.registry.translators.get(app.builder.name)),  # the HTML writer of the partial render
        sorted(app.builder.tags),
        [(name, repr(app.config[name])) for name in config],
        sorted(env.found_docs),
        sorted((docname, repr(env.metadata[docname].get("tocdepth", 0))) for docname in env.metadata),
        [(docname, env.tocs[docname].pformat()) for docname in sorted(env.tocs)],
        [(docname, env.titles[docname].pformat()) for docname in sorted(env.titles)],
        sorted((docname, list(included)) for docname, included in env.toctree_includes.items()),
        sorted((docname, sorted(numbers.items())) for docname, numbers in env.toc_secnumbers.items()),
        sorted(env.numbered_toctrees),
        sorted(env.glob_toctrees),
        [node.pformat() for node in master.findall(addnodes.toctree)],
    )
    return hashlib.sha256(repr(state).encode()).hexdigest()


def stored_path(folder: Path, pagename: str, kwargs: dict[str, Any]) -> Path:
    """Where the navigation of ``pagename`` drawn with ``kwargs`` is kept."""
    return folder / (hashlib.sha256(repr((pagename, sorted(kwargs.items()))).encode()).hexdigest()[:32] + ".html")


def _cached_toctree(app: Sphinx, pagename: str, toctree: Callable[..., str]) -> Callable[..., str]:
    folder = Path(app.doctreedir) / FOLDER

    def toctree_html(**kwargs: Any) -> str:
        digest = _digest.get(id(app.env))
        if digest is None:
            digest = _digest[id(app.env)] = contents_digest(app)
        path = stored_path(folder, pagename, kwargs)
        try:
            stored_digest, html = path.read_text(encoding="utf-8").split("\n", 1)
            if stored_digest == digest:
                return html
        except (OSError, ValueError):
            pass
        html = toctree(**kwargs)
        folder.mkdir(parents=True, exist_ok=True)
        store.write_text(path, f"{digest}\n{html}")  # atomic: the writing processes may race
        return html

    return toctree_html


def _use_stored_navigation(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: nodes.document | None
) -> None:
    if app.builder.format == "html" and callable(context.get("toctree")):
        context["toctree"] = _cached_toctree(app, pagename, context["toctree"])


def _forget(app: Sphinx, *args: Any) -> None:
    _digest.clear()


def setup(app: Sphinx) -> None:
    # Before the theme's own handler (priority 500), which calls the toctree it finds in the context.
    app.connect("html-page-context", _use_stored_navigation, priority=400)
    app.connect("env-updated", _forget)
    app.connect("build-finished", _forget)
