"""The navigation's entry of each page made once a process: every page written exactly as Sphinx writes it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sphinx.util._pathlib import _StrPath

from course.publish.sphinxext import titlesonly

PAGES = {
    "index.rst": """
        Home
        ====

        .. toctree::
           :caption: Lessons
           :numbered:

           lessons/one
           lessons/two

        .. toctree::
           :hidden:

           reference

        .. toctree::
           :titlesonly:

           lessons/two
    """,
    "lessons/one.rst": """
        One
        ===

        A section
        ---------

        Text.

        A deeper one
        ~~~~~~~~~~~~

        .. toctree::

           three

        .. only:: html

           .. toctree::

              four

        .. only:: latex

           .. toctree::

              five
    """,
    "lessons/two.rst": """
        Two
        ===

        First
        -----

        Second
        ------

        .. toctree::
           :maxdepth: 1

           /reference
    """,
    "lessons/three.rst": "Three\n=====\n\nIts section\n-----------\n",
    "lessons/four.rst": "Four\n====\n\nIts section\n-----------\n",
    "lessons/five.rst": "Five\n====\n",
    "reference.rst": """
        Reference
        =========

        .. py:function:: read(fd, count=1)

           Reads.

        .. py:class:: Store(root)

           .. py:method:: load(name)

              Loads.
    """,
}


def _project(folder: Path, with_cache: bool) -> _StrPath:
    for name, text in PAGES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    extensions = ["course.publish.sphinxext.titlesonly"] if with_cache else []
    (folder / "conf.py").write_text(f"extensions = {extensions!r}\nhtml_theme = 'furo'\n", encoding="utf-8")
    return _StrPath(folder)


def _pages(outdir: Path) -> dict[str, str]:
    return {str(page.relative_to(outdir)): page.read_text(encoding="utf-8") for page in sorted(outdir.rglob("*.html"))}


def test_every_page_is_written_as_without_it_and_the_entries_are_made_once(
    make_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    sphinx_entry = titlesonly.sphinx_toctree_entry
    monkeypatch.setattr(titlesonly, "sphinx_toctree_entry", lambda *args: made.append(args[1]) or sphinx_entry(*args))
    titlesonly.install()  # in both builds: the one without the extension's events still counts what Sphinx makes
    written = {}
    entries_made = {}
    for with_cache in (False, True):  # Sphinx's own first: the module's functions stay installed once loaded
        folder = tmp_path / ("with" if with_cache else "without")
        folder.mkdir()
        made.clear()
        app = make_app("html", srcdir=_project(folder, with_cache), freshenv=True)
        app.build()
        # A second application in one test says again that Sphinx's own nodes and roles are registered: not the pages'.
        warnings = [line for line in app.warning.getvalue().splitlines() if "already registered" not in line]
        assert warnings == []
        written[with_cache] = _pages(Path(app.outdir))
        entries_made[with_cache] = len(made)
    assert written[True] == written[False]
    assert len(written[True]) == len(PAGES) + 2, "every page, the index and the search page"
    assert 'class="toctree-l1 current has-children current-page"' in written[True]["lessons/two.html"], "marked current"
    # Without the build's events, every entry goes to Sphinx's own function: once for each page that draws it.
    assert entries_made[False] > 2 * entries_made[True] > 0, entries_made
    assert titlesonly._MADE == {}, "nothing kept after the build"


def test_titles_only_is_what_sphinx_keeps_and_doing_it_twice_changes_nothing() -> None:
    from docutils import nodes
    from sphinx import addnodes

    sub = addnodes.toctree()
    toc = nodes.bullet_list(
        "",
        nodes.list_item(
            "",
            addnodes.compact_paragraph("", "", nodes.reference("", "Title", refuri="a", anchorname="")),
            nodes.bullet_list(
                "",
                nodes.list_item("", addnodes.compact_paragraph("", "", nodes.reference("", "S", refuri="a"))),
                nodes.list_item("", nodes.bullet_list("", sub)),
            ),
        ),
        nodes.list_item("", addnodes.compact_paragraph("", "", nodes.reference("", "Other", refuri="b"))),
    )
    titlesonly.titles_only_entry(toc)
    once = toc.pformat()
    titlesonly.titles_only_entry(toc)
    assert toc.pformat() == once
    assert "S" not in toc.astext() and "Title" in toc.astext()
    assert list(toc[0][1].children) == [sub], "the title's own toctree is kept, directly under it"
