"""Smart quotes (``smartquotes_action``) taught only to the blocks of text they can change.

Docutils' transform (0.22, ``docutils.transforms.universal.SmartQuotes``, as Sphinx 9.0's
``SphinxSmartQuotes`` runs it) runs every block of every page through its quote, ellipsis and
escape rules and puts a new text node in place of each old one, changed or not: an eighth of a clean
build's reading, most of it on the API pages, whose blocks are names, types and short sentences.
With the course's ``qe`` (quotes and ellipses), a text can change only where it holds a quote, two
dots in a row, a backslash, an ampersand (the escapes' entities) or a null (docutils' mark of an
escaped character): a block whose texts hold none of these is left as the transform would leave it,
and every other block goes through the transform's own steps, in the same order, with the same
context. Other actions (dashes, backticks) are not taken this way: the transform decides each block.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes, utils
from docutils.utils import smartquotes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxSmartQuotes

#: The actions whose every change needs one of :data:`ACTIVE` in the text.
TAUGHT_HERE = frozenset("qe")

#: What a text must hold for quotes, ellipses and the escapes to change it (``..`` for an ellipsis).
ACTIVE = ("'", '"', "\\", "&", "\x00", "..", ". .")


def unchanged_by(texts: list[nodes.Text], action: str) -> bool:
    """Whether smart quotes with ``action`` would leave every one of ``texts`` as it is."""
    if not set(action) <= TAUGHT_HERE:
        return False
    return not any(mark in text for text in texts for mark in ACTIVE)


class CourseSmartQuotes(SphinxSmartQuotes):
    """Sphinx's smart quotes, passing over the blocks of text they would leave as they are."""

    def apply(self, **kwargs: Any) -> None:
        if not self.is_available():
            return
        self.smartquotes_action = self.config.smartquotes_action
        self._educate_blocks()

    def _educate_blocks(self) -> None:
        """Docutils' ``SmartQuotes.apply``, each block first checked with :func:`unchanged_by`."""
        smart_quotes = self.document.settings.setdefault("smart_quotes", False)
        if not smart_quotes:
            return
        try:
            alternative = smart_quotes.startswith("alt")
        except AttributeError:
            alternative = False
        document_language = self.document.settings.language_code
        lc_smartquotes = self.document.settings.smartquotes_locales
        if lc_smartquotes:
            smartquotes.smartchars.quotes.update(dict(lc_smartquotes))
        for node in self.document.findall(nodes.TextElement):
            if isinstance(node, self.nodes_to_skip) or isinstance(node.parent, nodes.TextElement):
                continue  # preformatted or special, or within a block: as docutils
            texts = node.findall(nodes.Text)
            txtnodes = [txtnode for txtnode in texts if not isinstance(txtnode.parent, nodes.option_string)]
            lang = node.get_language_code(document_language)
            if alternative:
                lang = lang.replace("-x-altquot", "") if "-x-altquot" in lang else lang + "-x-altquot"
            for tag in utils.normalize_language_tag(lang):
                if tag in smartquotes.smartchars.quotes:
                    lang = tag
                    break
            else:  # as docutils: one warning a language without smart quotes, and the quotes left plain
                if lang not in self.unsupported_languages:
                    self.document.reporter.warning(f'No smart quotes defined for language "{lang}".', base_node=node)
                self.unsupported_languages.add(lang)
                lang = ""
            if unchanged_by(txtnodes, self.smartquotes_action):
                continue
            teacher = smartquotes.educate_tokens(self.get_tokens(txtnodes), attr=self.smartquotes_action, language=lang)
            for txtnode, newtext in zip(txtnodes, teacher, strict=False):
                txtnode.parent.replace(txtnode, nodes.Text(newtext))
        self.unsupported_languages.clear()


def setup(app: Sphinx) -> None:
    """Put these smart quotes in the place of Sphinx's, among the transforms every page is read with."""
    transforms = app.registry.transforms
    transforms[:] = [CourseSmartQuotes if transform is SphinxSmartQuotes else transform for transform in transforms]
