"""A published site names the instructor's machine by its label, never "this machine".

Built by ``invoke site`` on the instructor's machine, a page rightly says "this machine"; read
on the web, the reader's own machine is not the one meant. With ``course_published = True``
(``invoke publish`` sets it) a late transform rewrites the words in the text of every page,
titles and the charts' SVG titles included, leaving code and captured output alone: "this machine" becomes the label
of the set the site marks current (the instructor's), and its mark "(this machine)" beside
that label becomes "(the instructor's machine)".
"""

from __future__ import annotations

import html
import re

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform

from course.publish.sphinxext.data import data_of

#: The phrase, with its possessive, either case.
_PHRASE = re.compile(r"\b([Tt])his machine('s)?")

#: Text never rewritten: code, captured output, raw markup.
_LEFT_ALONE = (nodes.literal_block, nodes.literal, nodes.raw, nodes.FixedTextElement)


def published_text(text: str, label: str) -> str:
    """``text`` with "this machine" replaced by ``label`` (and its mark by "the instructor's machine")."""
    # The mark may carry more: "(this machine, itself a VM)" becomes "(the instructor's machine, itself a VM)".
    for mark in ("(this machine)", "(this machine,"):
        text = text.replace(mark, mark.replace("this machine", "the instructor's machine"))
    return _PHRASE.sub(lambda found: label + (found.group(2) or ""), text)


class NameTheMachine(SphinxTransform):
    default_priority = 870  # before Sphinx reads the titles for the navigation (DoctreeReadEvent, 880)

    def apply(self, **kwargs: object) -> None:
        if not self.config.course_published:
            return
        current = data_of(self.env).current
        label = current.label if current is not None else "the instructor's machine"
        for raw in list(self.document.findall(nodes.raw)):  # a chart's SVG names its sets in its titles
            if "html" in raw.get("format", "").split():
                changed = published_text(raw.astext(), html.escape(label))
                if changed != raw.astext():
                    raw.replace(raw.children[0], nodes.Text(changed))
        for text in list(self.document.findall(nodes.Text)):
            parent = text.parent
            if parent is None or any(isinstance(node, _LEFT_ALONE) for node in _ancestors(parent)):
                continue
            changed = published_text(str(text), label)
            if changed != str(text):
                parent.replace(text, nodes.Text(changed))


def _ancestors(node: nodes.Node):
    while node is not None:
        yield node
        node = node.parent


def setup(app: Sphinx) -> None:
    """Called from the extension's own setup."""
    app.add_config_value("course_published", False, "env", types=[bool])
    app.add_transform(NameTheMachine)
