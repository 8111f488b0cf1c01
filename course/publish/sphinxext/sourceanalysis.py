"""Autodoc's analysis of a module's source, without the definitions' line ranges until someone reads them.

For every module the API pages document, and for the modules of the objects they name (base classes, the
values of module constants), autodoc has Sphinx analyse the source (``ModuleAnalyzer.analyze``) in two
passes: one over the syntax tree for the ``#:`` comments, annotations, overloads and the order of the
definitions, and one over the tokens for where each class and function starts and ends (``tags``). Autodoc
reads only the first; the second, pure Python and well over half of the analysis (a clean build's reading
processes spent 1.4 s each analysing, 0.6 s without it), serves the source links of ``sphinx.ext.viewcode``,
which the site does not use. It is made here when ``tags`` is first read
(``find_tags``), from the same parser, so a reader of it gets exactly what it got before.
"""

from __future__ import annotations

from typing import Any

from sphinx import pycode
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.pycode.parser import Parser


class _LineRangesLater:
    """The token pass of ``parser``, made when a ``ModuleAnalyzer``'s ``tags`` are read."""

    def __init__(self, parser: Parser) -> None:
        self.parser = parser


class ParserOfCommentsFirst(Parser):
    """Sphinx's parser, its ``parse`` leaving the definitions' line ranges for later."""

    def parse(self) -> None:
        """The syntax tree's pass; the token pass waits for the first read of the analyser's ``tags``."""
        self.parse_comments()
        self.definitions = _LineRangesLater(self)  # type: ignore[assignment] - ModuleAnalyzer.analyze copies it to tags


class TagsWhenRead:
    """``ModuleAnalyzer.tags``: stored as ``analyze`` sets it; a later pass is made on its first read."""

    def __get__(self, analyzer: ModuleAnalyzer | None, owner: type | None = None) -> Any:
        if analyzer is None:
            return self
        try:
            tags = analyzer.__dict__["tags"]
        except KeyError:
            raise AttributeError("tags") from None  # not analysed yet, as before
        if isinstance(tags, _LineRangesLater):
            try:
                tags.parser.parse_definition()
            except Exception as exc:  # as ModuleAnalyzer.analyze says a failed parse
                raise PycodeError(f"parsing {analyzer.srcname!r} failed: {exc!r}") from exc
            tags = analyzer.__dict__["tags"] = tags.parser.definitions
        return tags

    def __set__(self, analyzer: ModuleAnalyzer, value: Any) -> None:
        analyzer.__dict__["tags"] = value


def install() -> None:
    """Make every later analysis in this process leave the line ranges until they are read (again: the same)."""
    ModuleAnalyzer.tags = TagsWhenRead()  # type: ignore[assignment]
    pycode.Parser = ParserOfCommentsFirst  # type: ignore[misc] - the name ModuleAnalyzer.analyze parses with


def setup(app: Any) -> None:
    install()
