"""Smart quotes taught only to the blocks they can change: every page as Sphinx's own transform leaves it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from docutils import nodes
from docutils.utils import smartquotes as docutils_smartquotes
from sphinx.util._pathlib import _StrPath

from course.publish.sphinxext import smartquotes

PAGES = {
    "index.rst": r"""
        Quotes "everywhere"
        ===================

        .. toctree::

           prose

        Plain words with no marks at all, and a full stop.

        "A quote that *spans an emphasis" and* ends 'later'... or not. It's Rubini's.

        Escaped: \"not smart\", a backslash \\ and an entity &amp; plain &#39; text.

        ``"literal" quotes`` stay; so do the quotes in :code:`"this"` and in this block::

            printf("%s\n", "quoted");

        Ellipses. . . spaced, and two dots.. and three... in a row.

        .. class:: language-de

        „Deutsch“ "auf Deutsch" quoted.

        .. py:function:: read(fd, path="/dev/null", count=1)

           Reads ``count`` bytes; "quoted" and plain.
    """,
    "prose.md": """
        # Prose in MyST

        A sentence without marks, then "one with quotes" and an ellipsis...

        - an item's apostrophe
        - an item without

        `"code"` and "text" -- two hyphens stay.
    """,
}


def _project(folder: Path, course_quotes: bool) -> _StrPath:
    for name, text in PAGES.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    extensions = ["myst_parser"] + (["course.publish.sphinxext.smartquotes"] if course_quotes else [])
    conf = f"extensions = {extensions!r}\nsmartquotes_action = 'qe'\n"
    (folder / "conf.py").write_text(conf, encoding="utf-8")
    return _StrPath(folder)


def test_every_page_is_as_sphinxs_smart_quotes_leave_it_and_plain_blocks_are_passed_over(
    make_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    educated: list[int] = []
    educate = docutils_smartquotes.educate_tokens

    def counted(*args, **kwargs):
        educated.append(1)
        return educate(*args, **kwargs)

    monkeypatch.setattr(docutils_smartquotes, "educate_tokens", counted)
    pages, blocks = {}, {}
    for course_quotes in (False, True):
        folder = tmp_path / ("course" if course_quotes else "sphinx")
        folder.mkdir()
        educated.clear()
        app = make_app("html", srcdir=_project(folder, course_quotes), freshenv=True)
        app.build()
        pages[course_quotes] = {
            str(page.relative_to(app.outdir)): page.read_text(encoding="utf-8")
            for page in sorted(Path(app.outdir).rglob("*.html"))
        }
        blocks[course_quotes] = len(educated)
    assert pages[True] == pages[False]
    index = pages[True]["index.html"]
    assert "\u201cA quote that" in index and "Rubini\u2019s" in index and "later\u2019\u2026" in index, (
        "quotes still taught"
    )
    assert '"not smart"' in index or "&quot;not smart&quot;" in index, "an escaped quote stays plain"
    assert "two hyphens" in pages[True]["prose.html"] and "--" in pages[True]["prose.html"]
    assert 0 < blocks[True] < blocks[False], blocks


@pytest.mark.parametrize(
    ("text", "unchanged"),
    [
        ("Plain words, a full stop.", True),
        ("It's", False),
        ('a "quote"', False),
        ("and so...", False),
        ("spaced. . .", False),
        ("a \\ backslash", False),
        ("an &amp; entity", False),
        ("an escaped\x00 mark", False),
    ],
)
def test_only_a_text_without_quotes_dots_or_escapes_is_passed_over(text: str, unchanged: bool) -> None:
    assert smartquotes.unchanged_by([nodes.Text("plain"), nodes.Text(text)], "qe") is unchanged
    assert smartquotes.unchanged_by([nodes.Text("plain")], "qDe") is False, "dashes: docutils decides"
