"""Which result files each page read, compared by content: a rerun rebuilds the pages whose figures changed.

Sphinx's own dependencies (``env.note_dependency``) compare modification times, so a result
file rewritten by a rerun rebuilds every page that read it, and ``set.json``, which a run
rewrites whenever the measured TSC rate moves by one hertz, is read by nearly every page.
Here each page records, for each result file it read, a digest of the part of that file it
shows (a *view*); ``env-get-outdated`` rereads exactly the pages whose views changed.

Views:

- ``bytes``: the whole file (a lesson's figures, a machine page's full provenance);
- ``set``: a set's identity as pages show it: ``set.json`` without its date and the TSC rate
  in hertz, and which lesson files the set holds (a lesson measured for the first time
  rebuilds the pages that said it was missing);
- others registered by the directive that shows them (:func:`register`), from the real code
  that renders the text, so that a page is rebuilt when what it says changes, and only then;
- ``ids``: which measurements a lesson file holds (what a glob of a table's rows expands to);
- figure views (:func:`register_figure`, :func:`note_figure`): of a lesson file, what a page
  shows of one measurement: ``measurement``, the whole measurement as stored (a value, a table
  row, a chart's bars), which a student's rerun leaves as it was for every program it keeps, or
  less (a table cell of its minimum), which a rerun often leaves as it was while every sample
  in the file changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

from course.results import store

#: A view: from a set's ``set.json`` content (a dict), what a page shows of it (anything ``repr``-able).
View = Callable[[dict], Any]

BYTES = "bytes"
SET = "set"
IDS = "ids"

_VIEWS: dict[str, View] = {}

#: A figure view: from one measurement (None when the file no longer holds it) and the argument the
#: page gave (say, the 2000 figure it is set against), what the page shows of it.
FigureView = Callable[[dict | None, str], Any]

_FIGURE_VIEWS: dict[str, FigureView] = {}

#: The first item of a figure view's record key (a JSON list; other keys are ``view:path``).
_FIGURE = "figure"

#: The figure view of a whole measurement, as stored: what a value, a table row or a chart of it is drawn from.
MEASUREMENT = "measurement"

#: Digests computed in this process for this build: a file is read once however many pages use it.
_DIGESTS: dict[tuple[str, str], str] = {}

#: The measurements of each lesson file read for figure views in this build: parsed once, however many figures.
_MEASUREMENTS: dict[str, dict] = {}


def register(name: str, view: View) -> None:
    """A view of ``set.json`` named ``name`` (for :func:`note`), computed by ``view``."""
    _VIEWS[name] = view


def register_figure(name: str, view: FigureView) -> None:
    """A view of one measurement of a lesson file named ``name`` (for :func:`note_figure`), computed by ``view``."""
    _FIGURE_VIEWS[name] = view


def identity(info: dict) -> dict:
    """``set.json`` as most pages show it: without its date and without the TSC rate, which every run remeasures."""
    machine = {key: value for key, value in (info.get("machine") or {}).items() if key != "tsc_hz"}
    return {**{key: value for key, value in info.items() if key != "updated"}, "machine": machine}


def digest(path: Path, view: str = BYTES) -> str:
    """The digest of ``view`` of the file at ``path``; "absent" (or "unreadable") when it cannot be read."""
    key = (str(path), view)
    if key not in _DIGESTS:
        _DIGESTS[key] = _compute(path, view)
    return _DIGESTS[key]


def _compute(path: Path, view: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "absent"
    except OSError:
        return "unreadable"
    if view == BYTES:
        return hashlib.sha256(data).hexdigest()
    try:
        info = json.loads(data)
    except ValueError:
        return "unreadable"  # the site build names the file and the fix
    if not isinstance(info, dict):
        return "unreadable"
    if view == IDS:
        measurements = info.get("measurements")
        ids = sorted(measurements) if isinstance(measurements, dict) else []
        return hashlib.sha256(json.dumps(ids).encode()).hexdigest()
    files = sorted(f.name for f in store.result_files(path.parent))  # which lessons the set holds
    shown = identity(info) if view == SET else (identity(info), _VIEWS[view](info))
    text = json.dumps([shown, files], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def figure_digest(path: Path, view: str, measurement_id: str, argument: str = "") -> str:
    """The digest of what ``view`` shows of ``measurement_id`` in the lesson file at ``path``."""
    key = (str(path), json.dumps([_FIGURE, view, measurement_id, argument]))
    if key not in _DIGESTS:
        try:
            measurement = _measurements(path).get(measurement_id)
            if measurement is None and path.name != REFERENCE_FILE:  # where the set's own lookup looks next
                measurement = _measurements(path.with_name(REFERENCE_FILE), missing_ok=True).get(measurement_id)
            shown = _FIGURE_VIEWS[view](measurement, argument)
        except (OSError, ValueError, AttributeError):
            shown = "unreadable"  # gone or broken: the page is read again and the build names the file
        _DIGESTS[key] = hashlib.sha256(json.dumps(shown, sort_keys=True, default=repr).encode()).hexdigest()
    return _DIGESTS[key]


#: A set's file of reference figures, where :meth:`course.results.store.ResultSet.measurement` looks after the lesson's.
REFERENCE_FILE = "reference.json"


def _measurements(path: Path, missing_ok: bool = False) -> dict:
    """The measurements of the lesson file at ``path``, parsed once a build; OSError or ValueError when unreadable."""
    key = str(path)
    if key not in _MEASUREMENTS:
        try:
            found = json.loads(path.read_bytes()).get("measurements") or {}
        except FileNotFoundError:
            if not missing_ok:
                raise
            found = {}
        if not isinstance(found, dict):
            raise ValueError(f"{path}: measurements is no mapping")
        _MEASUREMENTS[key] = found
    return _MEASUREMENTS[key]


def note_figure(env: BuildEnvironment, path: Path, view: str, measurement_id: str, argument: str = "") -> None:
    """Record that the page being read shows ``view`` of one measurement of ``path``, as it is now."""
    if view not in _FIGURE_VIEWS:
        raise ValueError(f"unknown figure view {view!r} of {path}")
    key = json.dumps([_FIGURE, view, measurement_id, argument, str(path)])
    _records(env).setdefault(env.docname, {})[key] = figure_digest(path, view, measurement_id, argument)


def _current(key: str) -> str | None:
    """The digest a recorded key has now; None when the key is of no view this build knows."""
    if key.startswith("["):
        try:
            kind, view, measurement_id, argument, path = json.loads(key)
        except ValueError:
            return None
        if kind != _FIGURE or view not in _FIGURE_VIEWS:
            return None
        return figure_digest(Path(path), view, measurement_id, argument)
    view, _, path = key.partition(":")
    return digest(Path(path), view) if view in (BYTES, SET, IDS, *_VIEWS) else None


def note(env: BuildEnvironment, path: Path, view: str = BYTES) -> None:
    """Record that the page being read shows ``view`` of ``path``, as it is now."""
    if view not in (BYTES, SET, IDS, *_VIEWS):
        raise ValueError(f"unknown view {view!r} of {path}")
    record = _records(env).setdefault(env.docname, {})
    record[f"{view}:{path}"] = digest(path, view)


def _records(env: BuildEnvironment) -> dict[str, dict[str, str]]:
    records = getattr(env, "course_depends", None)
    if records is None:
        records = env.course_depends = {}  # type: ignore[attr-defined]
    return records


def changed_docs(env: BuildEnvironment) -> list[str]:
    """The pages of which some recorded view differs from the files as they are now."""
    changed = []
    for docname, record in _records(env).items():
        for key, old in record.items():
            now = _current(key)
            if now is None or now != old:
                changed.append(docname)
                break
    return sorted(changed)


def _outdated(app: Sphinx, env: BuildEnvironment, added: set, changed: set, removed: set) -> list[str]:
    return [docname for docname in changed_docs(env) if docname in env.found_docs]


def _fresh(app: Sphinx) -> None:
    _DIGESTS.clear()  # a new build: the files may have changed since the last one in this process
    _MEASUREMENTS.clear()


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    _records(env).pop(docname, None)


def _merge(app: Sphinx, env: BuildEnvironment, docnames: set, other: BuildEnvironment) -> None:
    theirs = _records(other)
    _records(env).update({docname: theirs[docname] for docname in docnames if docname in theirs})


register_figure(MEASUREMENT, lambda measurement, argument: measurement)


def setup(app: Sphinx) -> None:
    app.connect("builder-inited", _fresh, priority=100)  # before the data is loaded (priority 500)
    app.connect("env-get-outdated", _outdated)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)


@functools.cache
def code_version() -> int:
    """A number that changes with this extension's code (its modules' bytes, read once a process).

    Every page depends on it: the extension's ``env_version``, and the set downloads' digest.
    """
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return int(digest.hexdigest()[:8], 16)
