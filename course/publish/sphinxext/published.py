"""A published site names the instructor's machine by its label, never "this machine".

Built by ``invoke site`` on the instructor's machine, a page rightly says "this machine"; read
on the web, the reader's own machine is not the one meant. With ``course_published = True``
(``invoke publish`` sets it) a late transform rewrites the words in the text of every page,
titles and the charts' SVG titles included, leaving code and captured output alone: "this machine" becomes the label
of the set the site marks current (the instructor's), and its mark "(this machine)" beside
that label becomes "(the instructor's machine)".

A site built where this machine has no set yet (a fresh clone, a student before measuring) shows the
newest measured set in its place (``CourseData.current_is_this_machine`` is False): the machine that
built it did not measure those figures, so its pages are rewritten the same way, the mark saying
what the set is: "(the newest measured set)".
"""

from __future__ import annotations

import html
import re

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.transforms import SphinxTransform

from course.publish.sphinxext.data import CourseData, data_of

#: The phrase, with its possessive, either case; a paragraph's source may break its line between the two words.
_PHRASE = re.compile(r"\b([Tt])his\s+machine('s)?")

#: The mark beside the current set's label: "(this machine)", or "(this machine, itself a VM)".
_MARK = re.compile(r"\(this\s+machine(?=[),])")

#: Text never rewritten: code, captured output, raw markup.
_LEFT_ALONE = (nodes.literal_block, nodes.literal, nodes.raw, nodes.FixedTextElement)


#: The mark beside the current set's label on a published site, and where the set only stands in for this machine's.
INSTRUCTORS = "the instructor's machine"
STAND_IN = "the newest measured set"


def published_text(text: str, label: str, mark: str = INSTRUCTORS) -> str:
    """``text`` with "this machine" replaced by ``label`` (and its mark "(this machine)" by ``mark``)."""
    # The mark may carry more: "(this machine, itself a VM)" becomes "(the instructor's machine, itself a VM)".
    text = _MARK.sub(lambda found: f"({mark}", text)
    return _PHRASE.sub(lambda found: label + (found.group(2) or ""), text)


def naming(published: bool, data: CourseData) -> tuple[str, str] | None:
    """What "this machine" and its mark become in this build's pages, (label, mark); None where they stay."""
    current = data.current
    if published:
        return (current.label if current is not None else INSTRUCTORS), INSTRUCTORS
    if current is not None and not data.current_is_this_machine:
        return current.label, STAND_IN
    return None


class NameTheMachine(SphinxTransform):
    default_priority = 870  # before Sphinx reads the titles for the navigation (DoctreeReadEvent, 880)

    def apply(self, **kwargs: object) -> None:
        named = naming(self.config.course_published, data_of(self.env))
        if named is None:
            return
        label, mark = named
        rewritten = False
        for raw in list(self.document.findall(nodes.raw)):  # a chart's SVG names its sets in its titles
            if "html" in raw.get("format", "").split():
                changed = published_text(raw.astext(), html.escape(label), mark)
                if changed != raw.astext():
                    raw.replace(raw.children[0], nodes.Text(changed))
                    rewritten = True
        for element in list(self.document.findall(nodes.Element)):
            if any(isinstance(node, _LEFT_ALONE) for node in _ancestors(element)):
                continue
            # A line break in a paragraph's source is a Text node of its own between "this" and "machine": the
            # words are rewritten across each run of Text nodes side by side.
            run: list[nodes.Text] = []
            for child in [*element.children, None]:
                if isinstance(child, nodes.Text):
                    run.append(child)
                    continue
                if run:
                    rewritten = _rewrite(element, run, label, mark) or rewritten
                run = []
        if rewritten:  # read again when the naming changes (_outdated_when_naming_changes): prose reads no set
            _machine_docs(self.env).add(self.env.docname)


def _rewrite(element: nodes.Element, run: list[nodes.Text], label: str, mark: str) -> bool:
    """Rewrite the words in ``run``, Text nodes side by side in ``element``, as one; whether anything changed."""
    said = "".join(str(text) for text in run)
    changed = published_text(said, label, mark)
    if changed == said:
        return False
    # By identity: a Text node is a str, and docutils finds a child by equality, so an earlier "\n" of the same
    # paragraph was replaced instead, and the sentence moved.
    start = next(index for index, child in enumerate(element.children) if child is run[0])
    element[start : start + len(run)] = [nodes.Text(changed)]
    return True


def _ancestors(node: nodes.Node):
    while node is not None:
        yield node
        node = node.parent


def _machine_docs(env: BuildEnvironment) -> set[str]:
    """The pages read while "this machine" was rewritten: those to read again when the naming changes."""
    docs = getattr(env, "course_machine_docs", None)
    if docs is None:
        docs = env.course_machine_docs = set()  # type: ignore[attr-defined]
    return docs


def _outdated_when_naming_changes(
    app: Sphinx, env: BuildEnvironment, added: set, changed: set, removed: set
) -> list[str]:
    """The pages to read again when what "this machine" becomes changed: those rewritten, or every page when the
    last build rewrote none (which pages say "this machine" was not recorded then).

    A set measured on this machine after a build that showed the newest one in its place makes every "this
    machine" true again, and no result file of a page of prose changed for it.
    """
    named = naming(app.config.course_published, data_of(env))
    before = getattr(env, "course_machine_naming", ())  # (): not known (a fresh environment has no page to read)
    if before == named:
        return []
    env.course_machine_naming = named  # type: ignore[attr-defined]
    return sorted(env.all_docs if before in (None, ()) else _machine_docs(env) & set(env.all_docs))


def _forget_doc(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    _machine_docs(env).discard(docname)


def _merge(app: Sphinx, env: BuildEnvironment, docnames: set, other: BuildEnvironment) -> None:
    _machine_docs(env).update(_machine_docs(other) & docnames)


def setup(app: Sphinx) -> None:
    """Called from the extension's own setup."""
    app.add_config_value("course_published", False, "env", types=[bool])
    app.add_transform(NameTheMachine)
    app.connect("env-get-outdated", _outdated_when_naming_changes)
    app.connect("env-purge-doc", _forget_doc)
    app.connect("env-merge-info", _merge)
