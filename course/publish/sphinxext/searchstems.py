"""The search index's word stems, kept between builds: stemming is most of indexing a page here.

Sphinx indexes every page it writes for the search page, stemming each word of it with the
Snowball stemmer, which runs as pure Python (no PyStemmer): about a fifth of a second a lesson
page, in the main process even when pages are written in parallel. A word's stem depends only
on the word and on the stemmer, so the stems of earlier builds are looked up instead of computed
again; the file is thrown away when the language or the stemmer's version differs.

The stems live in the build's doctree folder (``course-stems.json``).
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

from course.results import store

FILE = "course-stems.json"

#: At most this many stems are kept; beyond it, only those of the last build.
MOST = 50_000


def _stemmer_key(lang: Any) -> str:
    try:
        version = metadata.version("snowballstemmer")
    except metadata.PackageNotFoundError:
        version = "none"
    return f"{type(lang).__module__}.{type(lang).__qualname__} {lang.lang} snowballstemmer {version}"


def _remember_stems(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Once a build, before its first page is indexed: the indexer's stemmer through the stored stems."""
    indexer = getattr(app.builder, "indexer", None)
    if indexer is None or getattr(indexer.lang, "course_stems", None) is not None:
        return
    lang = indexer.lang
    key = _stemmer_key(lang)
    try:
        stored = json.loads((Path(app.doctreedir) / FILE).read_text(encoding="utf-8"))
        known: dict[str, str] = stored["stems"] if stored.get("key") == key else {}
    except (OSError, ValueError, KeyError, TypeError):
        known = {}
    used: set[str] = set()
    stem = lang.stem

    def remembered(word: str) -> str:
        used.add(word)
        found = known.get(word)
        if found is None:
            found = known[word] = stem(word)
        return found

    lang.stem = remembered  # an attribute of this instance: what IndexBuilder.feed calls
    lang.course_stems = (key, known, used)


def _store_stems(app: Sphinx, exception: Exception | None) -> None:
    indexer = getattr(getattr(app, "builder", None), "indexer", None)
    remembered = getattr(getattr(indexer, "lang", None), "course_stems", None)
    if exception is not None or remembered is None:
        return
    key, known, used = remembered
    if not used:
        return
    kept = known if len(known) <= MOST else {word: known[word] for word in used}
    store.write_text(Path(app.doctreedir) / FILE, json.dumps({"key": key, "stems": kept}, sort_keys=True))


def setup(app: Sphinx) -> None:
    # A page is resolved just before it is indexed, and the indexer exists by its first page.
    app.connect("doctree-resolved", _remember_stems)
    app.connect("build-finished", _store_stems)
