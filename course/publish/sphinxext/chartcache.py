"""Charts drawn once per content: each is kept under a key of what it shows and of the code that draws it.

A page is reread when one of its figures changes, and so are all of its charts; most of them
show other figures, unchanged. A chart function decorated with :func:`cached` returns the chart
stored under the digest of its arguments (the figures, labels and title it draws) and of the
drawing code (its module's source and the SVG writer's), and draws only when no such chart is
stored: a lesson rerun redraws the charts of its own figures.

The charts live in the build's doctree folder (``course-charts``), one JSON file per chart,
written once and never rewritten; those that no page uses any more are removed after a build.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

from course.publish.sphinxext import chart_parts, svg
from course.results import store

#: Changes when the stored form below changes: older files are then never read (2: written without matplotlib;
#: 3: keyed without the table's notes, which are stored beside the rows).
FORMAT = 3

FOLDER = "course-charts"

Draw = TypeVar("Draw", bound=Callable[..., Any])

#: The build this process serves (set when its builder starts): where charts are kept, which page is read.
_build: dict[str, Any] = {}


def cached(draw: Draw) -> Draw:
    """``draw`` (returning a ``charts.Chart``) through the cache, when a Sphinx build is under way."""

    @functools.wraps(draw)
    def through_cache(*args: Any, **kwargs: Any) -> Any:
        folder: Path | None = _build.get("folder")
        if folder is None:  # not in a build (a unit test, a script): just draw
            return draw(*args, **kwargs)
        key = chart_key(draw, args, kwargs)
        _note_use(key)
        notes: list[str] = []
        _table_notes(args, notes)
        stored = _read(folder / f"{key}.json")
        if stored is not None:
            # The key leaves out the notes of the figures' table (when, at which rate): the picture is the
            # stored one, its table takes today's notes in their place, or it is drawn again if that is unclear.
            chart, old = stored
            pairs = set(zip(old, notes, strict=False))
            if len(old) == len(notes) and len(pairs) == len(set(old)):  # each old note has one note of today
                swap = dict(pairs)
                rows = [(*row[:-1], swap.get(row[-1], row[-1])) if row else row for row in chart.rows]
                return type(chart)(chart.svg, chart.header, rows)
            return draw(*args, **kwargs)
        chart = draw(*args, **kwargs)
        content = {"format": FORMAT, "svg": chart.svg, "header": chart.header, "rows": chart.rows, "notes": notes}
        store.write_text(folder / f"{key}.json", json.dumps(content, sort_keys=True))  # atomic: two readers may race
        return chart

    return through_cache  # type: ignore[return-value]


def chart_key(draw: Callable, args: tuple, kwargs: dict) -> str:
    """The digest of a chart: the drawing code, the function and every argument but its table's notes.

    The arguments are the figures as the directive hands them over (frozen dataclasses, dicts
    loaded from JSON, strings): their ``repr`` is exact (floats included) and ordered as given, so
    a directive hands over its figures as drawn (nanoseconds as printed, not converted to the tenth
    digit). The notes (:data:`TABLE_ONLY`: when and how a figure was taken) show in the table only.
    """
    digest = hashlib.sha256(_code_digest(draw).encode())
    digest.update(repr((draw.__qualname__, _table_notes(args, []), sorted(kwargs.items()))).encode())
    return digest.hexdigest()[:32]


#: Fields of a chart's figures that only its table shows, never its picture (a figure's date, its rate):
#: a rerun renews them while the picture stays the same, so they are no part of a chart's key.
TABLE_ONLY = ("note", "what")


def _table_notes(value: Any, notes: list[str]) -> Any:
    """``value`` with its figures' table notes emptied, each note appended to ``notes`` in order."""
    if isinstance(value, (list, tuple)):
        return type(value)(_table_notes(item, notes) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {field.name for field in dataclasses.fields(value)}
        emptied = {}
        for name in TABLE_ONLY:
            if name in fields and getattr(value, name):
                notes.append(getattr(value, name))
                emptied[name] = ""
        inner = {
            field.name: _table_notes(getattr(value, field.name), notes)
            for field in dataclasses.fields(value)
            if isinstance(getattr(value, field.name), (list, tuple))
        }
        return dataclasses.replace(value, **emptied, **inner) if emptied or inner else value
    return value


@functools.cache
def _code_digest(draw: Callable) -> str:
    """The digest of the code that draws: ``draw``'s module, the parts every chart is made of, the SVG writer."""
    digest = hashlib.sha256(f"{FORMAT}".encode())
    for module in (inspect.getfile(draw), chart_parts.__file__, svg.__file__):
        digest.update(b"\0" + Path(module).read_bytes())
    return digest.hexdigest()


def _read(path: Path) -> Any:
    """The chart stored at ``path`` and its table's notes, or None (absent, or unreadable: then it is drawn again)."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        if content.get("format") != FORMAT:
            return None
        chart = svg.Chart(content["svg"], tuple(content["header"]), [tuple(row) for row in content["rows"]])
        return chart, [str(note) for note in content["notes"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _note_use(key: str) -> None:
    env: BuildEnvironment | None = _build.get("env")
    if env is None or not env.docname:
        return
    _uses(env).setdefault(env.docname, set()).add(key)


def _uses(env: BuildEnvironment) -> dict[str, set[str]]:
    uses = getattr(env, "course_charts", None)
    if uses is None:
        uses = env.course_charts = {}  # type: ignore[attr-defined]
    return uses


def folder_of(app: Sphinx) -> Path:
    return Path(app.doctreedir) / FOLDER


def _start(app: Sphinx) -> None:
    folder = folder_of(app)
    folder.mkdir(parents=True, exist_ok=True)
    _build.update(folder=folder, env=app.env)


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    _uses(env).pop(docname, None)


def _merge(app: Sphinx, env: BuildEnvironment, docnames: set, other: BuildEnvironment) -> None:
    theirs = _uses(other)
    _uses(env).update({docname: theirs[docname] for docname in docnames if docname in theirs})


def _prune(app: Sphinx, exception: Exception | None) -> None:
    """Remove the charts no page shows any more (a rerun's old figures); only after a build that succeeded."""
    _build.clear()
    if exception is not None:
        return
    used = {key for keys in _uses(app.env).values() for key in keys}
    for path in folder_of(app).glob("*.json"):
        if path.stem not in used:
            path.unlink(missing_ok=True)


def setup(app: Sphinx) -> None:
    app.connect("builder-inited", _start)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("build-finished", _prune)
