"""The pages to write handed to the writing processes a few at a time, so that they start sooner and end together.

In a parallel build Sphinx's main process resolves the pages one by one (references, the search
index's words) and hands them to the writing processes in runs it cuts with ``make_chunks``: for the
site's 43 pages after the first (written in the main process), three runs of 14 and one of 1. The first
writer waited for the main process to resolve 14 pages (the API reference's among them, the costliest)
before it started, and when the main process had resolved the last page, a writer still had a whole run
of 14 to write alone. In
runs of :data:`PAGES_A_RUN` the writers start after a few pages and the last run is short. Reading
is cut as before: only the writing phase of a parallel build takes these runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sphinx import builders
from sphinx.application import Sphinx
from sphinx.util.parallel import make_chunks

#: How many pages a writing process takes at a time: each run is one fork of the main process, a few
#: hundredths of a second of its time, against the pages a writer would otherwise wait for.
PAGES_A_RUN = 4

#: Whether a parallel build is in its writing phase in this process (one build at a time runs in a process).
_writing = False


def chunks(arguments: Sequence[str], nproc: int, maxbatch: int = 10) -> list[Any]:
    """Sphinx's ``make_chunks``, in runs of :data:`PAGES_A_RUN` while pages are written."""
    if not _writing:
        return make_chunks(arguments, nproc, maxbatch)
    return [list(arguments[start : start + PAGES_A_RUN]) for start in range(0, len(arguments), PAGES_A_RUN)]


def _start(app: Sphinx, builder: Any) -> None:
    global _writing
    _writing = True


def _stop(app: Sphinx, exception: Exception | None) -> None:
    global _writing
    _writing = False


def install() -> None:
    """Make the writing phase of every later build in this process cut its runs here (again: the same)."""
    builders.make_chunks = chunks  # type: ignore[attr-defined] - the name Builder._write_parallel calls


def setup(app: Sphinx) -> dict[str, bool]:
    install()
    app.connect("write-started", _start)
    app.connect("build-finished", _stop)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
