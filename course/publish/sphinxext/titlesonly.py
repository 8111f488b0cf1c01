"""The navigation's entry of each page, made once a process and copied for every page that draws it.

The theme (furo) draws the whole site's navigation into every page, as a toctree of titles only.
For each page listed in it, Sphinx (9.0, ``sphinx.environment.adapters.toctree``) copies that page's
whole table of contents (every section and, on the API pages, every documented object: thousands
of entries) and then drops all but its title and its own toctrees; for every page it writes, again.
That was most of the theme's share of a clean build's writing. The entry a page gets depends only on
the page listed, the title its toctree gives it, whether it is an ancestor of the page being written
(then Sphinx copies it whole, unpruned), the pruning options and the builder's tags, and on the
tables of contents, which stay the same while pages are written: under those it is made once, as
Sphinx makes it, and each page gets a deep copy of it (its ``current`` marks are added to the copy).
A toctree that draws more than titles, and any entry Sphinx warns about, is made as before, each time.
"""

from __future__ import annotations

import contextvars
import weakref
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.domains.std import StandardDomain
from sphinx.environment import BuildEnvironment
from sphinx.environment.adapters import toctree
from sphinx.util.matching import Matcher

#: Sphinx's own functions, which the ones here call.
sphinx_entries_from_toctree = toctree._entries_from_toctree
sphinx_toctree_entry = toctree._toctree_entry

#: Whether the toctree being resolved draws titles only (Sphinx passes it to the entries' caller, not to each entry).
_TITLES_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("course_titles_only", default=False)

#: Of each environment, while its pages are written: each titles-only entry made, by what it depends on.
_MADE: weakref.WeakKeyDictionary[BuildEnvironment, dict[tuple, tuple[nodes.Element, str]]] = weakref.WeakKeyDictionary()

#: Of each environment: whether its tables of contents are settled (its pages being written), so entries may be kept.
_WRITING: weakref.WeakSet[BuildEnvironment] = weakref.WeakSet()


def titles_only_entry(toc: nodes.Element) -> None:
    """Drop all but each top-level entry's title and toctrees, as Sphinx does for a titles-only toctree.

    Doing it twice leaves what once left: Sphinx does it again on the copy it is given.
    """
    for top_level in toc.children:
        if len(top_level) > 1:  # type: ignore[arg-type]
            subtrees = list(top_level.findall(toctree.addnodes.toctree))
            if subtrees:
                top_level[1][:] = subtrees  # type: ignore[index]
            else:
                top_level.pop(1)  # type: ignore[attr-defined]


def _entries_from_toctree(env: BuildEnvironment, prune: bool, titles_only: bool, *args: Any, **kwargs: Any) -> Any:
    """Sphinx's ``_entries_from_toctree``, its entries knowing whether it draws titles only."""
    token = _TITLES_ONLY.set(titles_only)
    try:
        return sphinx_entries_from_toctree(env, prune, titles_only, *args, **kwargs)
    finally:
        _TITLES_ONLY.reset(token)


def _toctree_entry(
    title: str,
    ref: str,
    env: BuildEnvironment,
    prune: bool,
    collapse: bool,
    tags: Any,
    toctree_ancestors: Any,
    included: Matcher,
    excluded: Matcher,
    toctreenode: Any,
    parents: list[str],
) -> tuple[nodes.Element, str]:
    """Sphinx's ``_toctree_entry``; for a titles-only toctree's page while pages are written, made once and copied."""
    arguments = (title, ref, env, prune, collapse, tags, toctree_ancestors, included, excluded, toctreenode, parents)
    made = _MADE.get(env) if env in _WRITING else None
    standard = (
        made is not None
        and _TITLES_ONLY.get()
        and ref in env.tocs
        and ref != "self"
        and ref not in StandardDomain._virtual_doc_names
        and ref not in parents  # a circular reference: Sphinx warns
        and not toctree.url_re.match(ref)
    )
    if not standard:
        return sphinx_toctree_entry(*arguments)
    key = (title, ref, ref in toctree_ancestors, prune, collapse, tuple(sorted(tags)))
    if key not in made:  # type: ignore[operator]
        toc, refdoc = sphinx_toctree_entry(*arguments)
        if not toc.children:
            return toc, refdoc  # Sphinx warned that the page has no title: it warns each time
        titles_only_entry(toc)
        made[key] = (toc, refdoc)  # type: ignore[index]
    toc, refdoc = made[key]  # type: ignore[index]
    return toc.deepcopy(), refdoc


def _start(app: Sphinx, builder: Any) -> None:
    _MADE[app.env] = {}
    _WRITING.add(app.env)


def _stop(app: Sphinx, exception: Exception | None) -> None:
    _MADE.pop(app.env, None)
    _WRITING.discard(app.env)


def install() -> None:
    """Make the toctrees of every later build in this process take their titles-only entries from here (again: same)."""
    toctree._entries_from_toctree = _entries_from_toctree  # the name Sphinx calls it by, in its recursion too
    toctree._toctree_entry = _toctree_entry


def setup(app: Sphinx) -> dict[str, bool]:
    install()
    app.connect("write-started", _start)
    app.connect("build-finished", _stop)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
