"""The code on the page: listings cut from the course's real C files when the site is built.

- ``{course-code} code/user/03-timing/usystime.c`` shows a whole file, ``:function: main`` one C
  function (with the comment just above it), ``:region: loop`` the lines between the markers
  ``course: region loop`` and ``course: end loop`` (comments in the source, never shown);
  ``:emphasize:`` names the lines that matter by what they contain (`` | `` between several);
  the listing keeps the file's own line numbers and its caption links to the whole file;
  ``:folded: Solution`` folds the listing until the reader opens it (an exercise's solution).
- ``{course-downloads} 03-timing``: every file of a lesson's programs and modules, to download.

The student edition (``course_edition = "student"``, :mod:`course.publish.edition`) leaves every
solution out: a listing of one becomes a line saying so, and the downloads skip them.

A function, region or emphasized text the file no longer has is a warning naming it (an
error with ``-W``); the page depends on the file, so a change in the C source rebuilds it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective, SphinxTranslator

from course.publish import edition

logger = logging.getLogger(__name__)

#: What a language is called by Pygments, by the file's name.
LANGUAGES = {".c": "c", ".h": "c", ".toml": "toml", "Kbuild": "make", "Makefile": "make"}


class CodeError(Exception):
    """The listing asked for is not in the file: the message names what is missing."""


class course_code(nodes.container):  # docutils names its nodes in lower case
    """A listing: the file and first line ride along, so a test can hold the page against the file."""


class course_fold(nodes.Element):
    """Content folded until opened (HTML ``<details>``); other builders show it plainly."""


def visit_course_code(self: SphinxTranslator, node: course_code) -> None:
    attributes = {"data-source": node["source"], "data-first-line": str(node["first_line"])}
    self.body.append(self.starttag(node, "div", CLASS="docutils container", **attributes))  # type: ignore[attr-defined]


def depart_course_code(self: SphinxTranslator, node: course_code) -> None:
    self.body.append("</div>\n")  # type: ignore[attr-defined]


def visit_course_fold(self: SphinxTranslator, node: course_fold) -> None:
    self.body.append(self.starttag(node, "details", CLASS="course-fold"))  # type: ignore[attr-defined]
    self.body.append(f"<summary>{self.encode(node['summary'])}</summary>\n")  # type: ignore[attr-defined]


def depart_course_fold(self: SphinxTranslator, node: course_fold) -> None:
    self.body.append("</details>\n")  # type: ignore[attr-defined]


def _pass(self: SphinxTranslator, node: nodes.Element) -> None:
    pass


def language_of(path: Path) -> str:
    return LANGUAGES.get(path.suffix, LANGUAGES.get(path.name, "text"))


def region_lines(lines: list[str], name: str) -> tuple[int, int]:
    """The 0-based span [start, end) between ``course: region NAME`` and ``course: end NAME``."""
    begin = re.compile(rf"\bcourse: region {re.escape(name)}\b")
    end = re.compile(rf"\bcourse: end {re.escape(name)}\b")
    starts = [i for i, line in enumerate(lines) if begin.search(line)]
    if len(starts) != 1:
        raise CodeError(f"region {name!r} is marked {len(starts)} times (once expected)")
    stops = [i for i, line in enumerate(lines) if end.search(line) and i > starts[0]]
    if not stops:
        raise CodeError(f"region {name!r} has no end marker")
    return starts[0] + 1, stops[0]


def _is_comment(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(("/*", "*", "//"))  # not a line of code that ends in a comment


def function_lines(lines: list[str], name: str) -> tuple[int, int]:
    """The 0-based span of C function ``name``: the comment just above it, its head, its body."""
    head = re.compile(rf"^[A-Za-z_].*\b{re.escape(name)}\s*\(")
    for index, line in enumerate(lines):
        if not head.match(line) or line.rstrip().endswith(";"):
            continue  # a call or a declaration, not the definition
        depth, opened = 0, False
        for stop in range(index, len(lines)):
            depth += lines[stop].count("{") - lines[stop].count("}")
            opened = opened or "{" in lines[stop]
            if stop > index and not opened and lines[stop].rstrip().endswith(";"):
                break  # a prototype spread over lines
            if opened and depth <= 0:
                start = index
                while start > 0 and _is_comment(lines[start - 1]):
                    start -= 1
                return start, stop + 1
    raise CodeError(f"no definition of function {name!r}")


class CourseCode(SphinxDirective):
    """A listing cut from a real file of the course (see the module's docstring)."""

    required_arguments = 1
    option_spec: ClassVar[dict] = {
        "function": directives.unchanged_required,
        "region": directives.unchanged_required,
        "emphasize": directives.unchanged_required,
        "caption": directives.unchanged,
        "folded": directives.unchanged,
    }

    def run(self) -> list[nodes.Node]:
        relative = self.arguments[0]
        if self.config.course_edition == "student" and edition.is_solution(relative):
            text = "The reference solution is not part of the student edition of the course."
            return [nodes.paragraph(text=text, classes=["course-solution-left-out"])]
        path = Path(self.env.srcdir) / relative
        if not path.is_file():
            return self._missing(relative, "no such file")
        self.env.note_dependency(str(path))  # a change in the source rebuilds the page
        lines = path.read_text(encoding="utf-8").splitlines()
        try:
            start, stop = self._span(lines)
            shown = lines[start:stop]
            emphasized = self._emphasized(shown)
        except CodeError as error:
            return self._missing(relative, str(error))
        text = "\n".join(shown)
        block = nodes.literal_block(text, text, language=language_of(path), linenos=True)
        # Pygments counts hl_lines from the block's first line, whatever number that line shows.
        block["highlight_args"] = {"linenostart": start + 1, "hl_lines": emphasized}
        self.set_source_info(block)
        listing = course_code("", classes=["literal-block-wrapper", "course-code"], literal_block=True, source=relative)
        listing["first_line"] = start + 1
        listing["ids"].append(self._anchor(f"code-{path.stem}-{start + 1}"))  # the caption's permalink
        listing += self._caption(relative, path, start, stop, len(lines))
        listing += block
        if "folded" in self.options:
            fold = course_fold(summary=self.options["folded"] or f"Show {path.name}")
            fold += listing
            return [fold]
        return [listing]

    def _anchor(self, wanted: str) -> str:
        anchor = nodes.make_id(wanted)
        if anchor in self.state.document.ids:
            anchor = f"{anchor}-{self.env.new_serialno('course-code')}"
        self.state.document.ids[anchor] = self.state.document  # reserved, so the next listing picks another
        return anchor

    def _span(self, lines: list[str]) -> tuple[int, int]:
        if "function" in self.options:
            return function_lines(lines, self.options["function"])
        if "region" in self.options:
            return region_lines(lines, self.options["region"])
        return 0, len(lines)

    def _emphasized(self, shown: list[str]) -> list[int]:
        wanted = [part.strip() for part in self.options.get("emphasize", "").split(" | ") if part.strip()]
        found = []
        for text in wanted:
            matches = [number for number, line in enumerate(shown, 1) if text in line]
            if not matches:
                raise CodeError(f"no line of the listing contains {text!r} (:emphasize:)")
            found.extend(matches)
        return sorted(set(found))

    def _caption(self, relative: str, path: Path, start: int, stop: int, total: int) -> nodes.caption:
        caption = nodes.caption()
        if self.options.get("caption"):
            caption += nodes.Text(self.options["caption"] + " ")
        caption += nodes.Text("(")
        caption += download_link(relative, path.name)
        if (start, stop) != (0, total):
            caption += nodes.Text(f", lines {start + 1}\u2013{stop}")  # an en dash, as in print
        caption += nodes.Text(")")
        return caption

    def _missing(self, relative: str, why: str) -> list[nodes.Node]:
        logger.warning("course: %s: %s", relative, why, location=self.get_location(), type="course", subtype="code")
        return [nodes.paragraph(text=f"[missing code: {relative}: {why}]", classes=["course-code-missing"])]


def download_link(relative: str, label: str) -> addnodes.download_reference:
    """A link that copies ``relative`` (from the project's root) into the site for download."""
    link = addnodes.download_reference("", "", reftarget="/" + relative, refexplicit=True, refdomain="")
    link += nodes.literal(label, label)
    return link


class CourseDownloads(SphinxDirective):
    """Every file of one lesson's programs and modules, each a download link."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        lesson = self.arguments[0]
        code = self.config.course_code_dir
        root = Path(self.env.srcdir)
        student = self.config.course_edition == "student"
        items = nodes.bullet_list(classes=["course-downloads"])
        for part in ("user", "kernel"):
            folder = root / code / part / lesson
            for path in sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []:
                relative = path.relative_to(root).as_posix()
                if student and edition.is_solution(relative):
                    continue
                item = nodes.list_item()
                paragraph = nodes.paragraph()
                # The whole path: a lesson may have a lesson.toml (or a Makefile) on each side.
                paragraph += download_link(relative, relative)
                item += paragraph
                items += item
                self.env.note_dependency(str(path))
        if not items.children:
            logger.warning(
                "course: no code for lesson %r under %s", lesson, code, location=self.get_location(), type="course"
            )
        return [items]


class CourseSolutionProse(SphinxDirective):
    """Prose that gives an exercise's solution away: in the full edition only.

    The student edition of the site shows nothing of it, and a student copy of the repository has
    the block cut out of its pages (:func:`course.publish.edition.without_solution_prose`).
    """

    has_content = True

    def run(self) -> list[nodes.Node]:
        if self.config.course_edition == "student":
            return []
        return self.parse_content_to_nodes()


def _no_page_sources_for_students(app: Sphinx, config: Any) -> None:
    """The student edition publishes no page's MyST source (``_sources/``): the solution prose is in it."""
    if config.course_edition == "student":
        config.html_copy_source = False
        config.html_show_sourcelink = False


def setup(app: Sphinx) -> None:
    """Called from the extension's own setup."""
    app.add_config_value("course_code_dir", "code", "env", types=[str])
    app.add_config_value("course_edition", "full", "env", types=[str])
    app.connect("config-inited", _no_page_sources_for_students)
    passes = (_pass, _pass)
    app.add_node(course_code, html=(visit_course_code, depart_course_code))
    app.add_node(course_fold, html=(visit_course_fold, depart_course_fold), latex=passes, text=passes)
    app.add_directive("course-code", CourseCode)
    app.add_directive("course-downloads", CourseDownloads)
    app.add_directive(edition.SOLUTION_PROSE, CourseSolutionProse)
