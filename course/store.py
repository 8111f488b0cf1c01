"""The results store: one folder per result set, one JSON file per lesson.

``results/<set>/set.json`` describes the machine (see :func:`course.fingerprint.machine`);
``results/<set>/<lesson>.json`` holds that lesson's measurements, captured outputs and
failures. The schema is documented in ``docs/results.md``. Files are replaced
atomically, so an interrupted run never leaves half a file behind.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Version of the JSON layout; a file with a higher number comes from a newer course.
SCHEMA = 1

SET_FILE = "set.json"


class StoreError(ValueError):
    """A result file that cannot be used; the message names the file and the fix."""


def slug_safe(name: str) -> str:
    """``name`` if it is a safe set folder name (letters, digits, dot, dash, underscore), else ``""``."""
    return name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name) else ""


def now() -> str:
    """The current time, as stored in result files (UTC, ISO 8601, seconds)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=1, sort_keys=True)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict:
    """A result file's content, checked for being JSON of a schema this course knows."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise StoreError(
            f"{path} is corrupt ({error.msg} at line {error.lineno}); "
            "restore it with git checkout or delete it and measure again"
        ) from error
    if not isinstance(data, dict):
        raise StoreError(f"{path} is not a result file (expected a JSON object)")
    schema = data.get("schema")
    if not isinstance(schema, int):
        raise StoreError(f"{path} has no schema number; it is not a result file of this course")
    if schema > SCHEMA:
        raise StoreError(
            f"{path} uses schema {schema}, newer than this course's {SCHEMA}; update the course (git pull)"
        )
    return data


@dataclass
class ResultSet:
    """One machine's measurements, or the article's reference figures."""

    id: str
    path: Path
    info: dict
    lessons: dict[str, dict] = field(default_factory=dict)  # lesson name -> file content

    @property
    def label(self) -> str:
        return self.info.get("label") or self.id

    @property
    def kind(self) -> str:
        return self.info.get("kind", "measured")

    @property
    def machine(self) -> dict:
        return self.info.get("machine", {})

    def measurement(self, measurement_id: str) -> dict | None:
        lesson = measurement_id.split("/", 1)[0]
        for name in (lesson, "reference"):
            found = self.lessons.get(name, {}).get("measurements", {}).get(measurement_id)
            if found is not None:
                return found
        return None

    def capture(self, capture_id: str) -> dict | None:
        lesson = capture_id.split("/", 1)[0]
        return self.lessons.get(lesson, {}).get("captures", {}).get(capture_id)

    def lesson_file(self, lesson: str) -> Path:
        return self.path / f"{lesson}.json"

    def updated(self) -> str:
        stamps = [data.get("measured_at", "") for data in self.lessons.values()]
        return max(stamps, default=self.info.get("updated", ""))


def load_set(path: Path) -> ResultSet:
    """The result set stored in folder ``path``."""
    info = read_json(path / SET_FILE)
    lessons = {file.stem: read_json(file) for file in sorted(path.glob("*.json")) if file.name != SET_FILE}
    return ResultSet(id=path.name, path=path, info=info, lessons=lessons)


def load_all(results: Path) -> dict[str, ResultSet]:
    """Every result set under ``results``, reference sets first, then by id."""
    if not results.is_dir():
        return {}
    sets = [load_set(folder) for folder in sorted(results.iterdir()) if (folder / SET_FILE).is_file()]
    sets.sort(key=lambda s: (s.kind != "reference", s.id))
    return {s.id: s for s in sets}


def save_set_info(path: Path, info: dict) -> None:
    """Create or refresh a set's ``set.json``, keeping fields measured earlier.

    The file is rewritten only when something besides its date changes: an unchanged
    machine then leaves it alone, so pages that depend on it are not rebuilt and a
    committed set does not show as modified after a run that measured nothing.
    """
    target = path / SET_FILE
    previous = read_json(target) if target.is_file() else {}
    merged = {**previous, **info, "schema": SCHEMA}
    if {**merged, "updated": None} == {**previous, "updated": None}:
        return
    write_json(target, {**merged, "updated": now()})


def save_lesson(result_set: Path, lesson: str, new: dict) -> dict:
    """Store a lesson's fresh results, keeping earlier good figures that a failed run lost.

    When the run recorded failures, every measurement and capture it did not produce
    keeps its previous value (each with its own date), so a failure never erases what
    was measured before. A clean run replaces the file whole.
    """
    target = result_set / f"{lesson}.json"
    previous = read_json(target) if target.is_file() and new.get("failures") else {}
    stored = {
        **new,
        "schema": SCHEMA,
        "lesson": lesson,
        "measurements": {**previous.get("measurements", {}), **new.get("measurements", {})},
        "captures": {**previous.get("captures", {}), **new.get("captures", {})},
    }
    write_json(target, stored)
    return stored
