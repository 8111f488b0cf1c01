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
  that renders the text, so that a page is rebuilt when what it says changes, and only then.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

from course import store

#: A view: from a set's ``set.json`` content (a dict), what a page shows of it (anything ``repr``-able).
View = Callable[[dict], Any]

BYTES = "bytes"
SET = "set"

_VIEWS: dict[str, View] = {}

#: Digests computed in this process for this build: a file is read once however many pages use it.
_DIGESTS: dict[tuple[str, str], str] = {}


def register(name: str, view: View) -> None:
    """A view of ``set.json`` named ``name`` (for :func:`note`), computed by ``view``."""
    _VIEWS[name] = view


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
    files = sorted(f.name for f in store.result_files(path.parent))  # which lessons the set holds
    shown = identity(info) if view == SET else (identity(info), _VIEWS[view](info))
    text = json.dumps([shown, files], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def note(env: BuildEnvironment, path: Path, view: str = BYTES) -> None:
    """Record that the page being read shows ``view`` of ``path``, as it is now."""
    if view not in (BYTES, SET, *_VIEWS):
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
            view, _, path = key.partition(":")
            if view not in (BYTES, SET, *_VIEWS) or digest(Path(path), view) != old:
                changed.append(docname)
                break
    return sorted(changed)


def _outdated(app: Sphinx, env: BuildEnvironment, added: set, changed: set, removed: set) -> list[str]:
    return [docname for docname in changed_docs(env) if docname in env.found_docs]


def _fresh(app: Sphinx) -> None:
    _DIGESTS.clear()  # a new build: the files may have changed since the last one in this process


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    _records(env).pop(docname, None)


def _merge(app: Sphinx, env: BuildEnvironment, docnames: set, other: BuildEnvironment) -> None:
    theirs = _records(other)
    _records(env).update({docname: theirs[docname] for docname in docnames if docname in theirs})


def setup(app: Sphinx) -> None:
    app.connect("builder-inited", _fresh, priority=100)  # before the data is loaded (priority 500)
    app.connect("env-get-outdated", _outdated)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
