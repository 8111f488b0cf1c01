"""A page that lists a reread page in its toctree is written again only when what it lists of it changed.

Sphinx writes again every page whose toctree includes a page it read again (``env.files_to_rebuild``):
the reread page's title or sections may have changed, and the toctree shows them. A student's rerun
rereads lesson 3 for its new figures, and Sphinx rewrote the course's home page with it, the very same
text, about a tenth of the rerun's site build. Here the entries a toctree draws of each reread page
(its title, its sections, its own toctrees, their numbers) are compared with those before it was read;
when they are the same, its including pages are not written for it. The environment is pickled
before writing starts: what Sphinx keeps for the next build is left whole.
"""

from __future__ import annotations

import weakref
from typing import Any

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

#: Of each build's environment: what a toctree drew of each page about to be read again.
_BEFORE: weakref.WeakKeyDictionary[BuildEnvironment, dict[str, str]] = weakref.WeakKeyDictionary()

#: Of each build's environment: its own ``files_to_rebuild``, while writing uses the narrowed one.
_WHOLE: weakref.WeakKeyDictionary[BuildEnvironment, dict[str, set[str]]] = weakref.WeakKeyDictionary()


def listed(env: BuildEnvironment, docname: str) -> str | None:
    """What an including page's toctree shows of ``docname``: its title, sections, toctrees and numbers."""
    if docname not in env.tocs or docname not in env.titles:
        return None
    return repr(
        (
            env.titles[docname].pformat(),
            env.tocs[docname].pformat(),
            env.toctree_includes.get(docname),
            sorted(env.toc_secnumbers.get(docname, {}).items()),
            env.metadata.get(docname, {}).get("tocdepth"),
        )
    )


def _remember(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
    _BEFORE[env] = {docname: shown for docname in docnames if (shown := listed(env, docname)) is not None}


def _narrow(app: Sphinx, builder: Any) -> None:
    """For writing only: no including page is written for a reread page that its toctree shows as before."""
    env = builder.env
    before = _BEFORE.pop(env, {})
    same = {docname for docname, shown in before.items() if listed(env, docname) == shown}
    if same:
        _WHOLE[env] = env.files_to_rebuild
        env.files_to_rebuild = {name: pages for name, pages in env.files_to_rebuild.items() if name not in same}


def _restore(app: Sphinx, exception: Exception | None) -> None:
    whole = _WHOLE.pop(app.env, None)
    if whole is not None:
        app.env.files_to_rebuild = whole


def setup(app: Sphinx) -> None:
    app.connect("env-before-read-docs", _remember, priority=300)
    app.connect("write-started", _narrow)
    app.connect("build-finished", _restore, priority=100)
