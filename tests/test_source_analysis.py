"""Autodoc's source analysis in the site build: the same results, without the pass nobody reads."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from sphinx.pycode import ModuleAnalyzer
from sphinx.pycode.parser import DefinitionFinder, Parser

from course.publish.sphinxext import sourceanalysis

ROOT = Path(__file__).resolve().parent.parent

#: Modules of the course and of the libraries whose classes the API pages name (bases, constants' types).
MODULES = ["course.results.store", "course.publish.sphinxext.charts", "docutils.nodes", "pathlib", "typing"]


@pytest.fixture
def fresh_analyzers(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty analysis cache, and Sphinx's own classes put back after the test."""
    monkeypatch.setattr(ModuleAnalyzer, "cache", {})
    monkeypatch.setattr("sphinx.pycode.Parser", Parser)
    if "tags" in ModuleAnalyzer.__dict__:
        monkeypatch.setattr(ModuleAnalyzer, "tags", ModuleAnalyzer.__dict__["tags"])
    else:  # removed again at the end: the class had no attribute of that name
        monkeypatch.setattr(ModuleAnalyzer, "tags", None, raising=False)
        monkeypatch.delattr(ModuleAnalyzer, "tags")


@pytest.mark.parametrize("modname", MODULES)
def test_an_analysis_finds_what_sphinxs_own_parser_finds(fresh_analyzers: None, modname: str) -> None:
    source = ModuleAnalyzer.get_module_source(modname)[1] or Path(importlib.import_module(modname).__file__).read_text()
    own = Parser(source)
    own.parse()
    sourceanalysis.install()
    analyzer = ModuleAnalyzer.for_module(modname)
    analyzer.analyze()
    assert analyzer.attr_docs == {scope: [*(comment or "").splitlines(), ""] for scope, comment in own.comments.items()}
    assert (analyzer.annotations, analyzer.finals, analyzer.tagorder) == (own.annotations, own.finals, own.deforders)
    assert analyzer.overloads.keys() == own.overloads.keys()
    assert analyzer.find_tags() == own.definitions and analyzer.tags == own.definitions
    assert own.definitions, "the module defines classes or functions: the comparison compares something"


def test_the_line_ranges_are_found_only_when_read_and_once(
    fresh_analyzers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[int] = []
    token_pass = DefinitionFinder.parse
    monkeypatch.setattr(DefinitionFinder, "parse", lambda self: passes.append(1) or token_pass(self))
    sourceanalysis.install()
    sourceanalysis.install()  # a second build in the same process
    analyzer = ModuleAnalyzer.for_module("course.results.store")
    analyzer.analyze()
    assert analyzer.attr_docs and analyzer.tagorder, "what autodoc reads is there"
    assert passes == [], "no token pass for autodoc"
    assert "write_json" in analyzer.find_tags() and "write_json" in analyzer.tags
    assert passes == [1], "made once, on the first read"


def test_a_failed_token_pass_is_a_parse_error_as_before(fresh_analyzers: None) -> None:
    sourceanalysis.install()
    analyzer = ModuleAnalyzer.for_string("def f():\n    return 1\n", "broken")
    analyzer.analyze()
    analyzer.__dict__["tags"].parser.code = "def f(:\n"  # what the token pass reads is now broken
    with pytest.raises(Exception, match="parsing '<string>' failed"):
        analyzer.find_tags()


def _signature_type_comments(text: str) -> list[int]:
    """The lines of the functions whose signature has a type comment, as autodoc would read it."""
    found = []
    for node in ast.walk(ast.parse(text, type_comments=True)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            if node.type_comment or any(argument.type_comment for argument in arguments):
                found.append(node.lineno)
    return found


def test_the_course_writes_its_signatures_types_as_annotations_never_as_type_comments() -> None:
    """conf.py has autodoc look for no signature type comments (autodoc_use_type_comments): there are none."""
    assert _signature_type_comments("def f(a):\n    # type: (int) -> str\n    return str(a)\n") == [1]
    sources = sorted((ROOT / "course").rglob("*.py"))
    assert len(sources) > 50
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sources
        for line in _signature_type_comments(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "annotate these signatures instead (autodoc reads no type comments here): " + ", ".join(found)
