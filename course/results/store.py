"""The results store: one folder per result set, one JSON file per lesson.

``results/<set>/set.json`` describes the machine (see :func:`course.results.fingerprint.machine`);
``results/<set>/<lesson>.json`` holds that lesson's measurements, captured outputs and
failures. The schema is documented in ``docs/results.md`` and checked on every read
(:mod:`course.results.validate`). Files are replaced atomically, so an interrupted run never
leaves half a file behind, and get ordinary modes: results are published and shared.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import secrets
import stat
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course.results import derive, schema_types, shown_text, validate
from course.results.child import Meanwhile
from course.results.clock import now  # store.now(): every writer's time stamp

#: Version of the JSON layout; a file with a higher number comes from a newer course.
SCHEMA = validate.SCHEMA

SET_FILE = "set.json"

#: What to do about a result file that cannot be used.
REPAIR = "restore it with git checkout or delete it and measure again"

#: The most characters of a captured output a lesson file keeps (each may take up to 6 bytes
#: of JSON, as \u001b): a run's lesson file stays under the read limit (validate.MAX_BYTES).
CAPTURE_CHARS = 64 * 1024


class StoreError(ValueError):
    """A result file that cannot be used; the message names the file and the fix."""


def slug_safe(name: str) -> str:
    """``name`` if it is a safe set folder name (letters, digits, dot, dash, underscore), else ``""``."""
    return name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name) else ""


#: Pages of the site a set's page must not stand for: Sphinx's own (the search, the general index) and a
#: folder's index page, which a server shows for the folder (``docs/machines/index.html``); compared
#: without case, as a case-insensitive file system would.
SITE_PAGE_NAMES = ("index", "search", "genindex", "modindex", "py-modindex")


#: Names Windows keeps for its devices, in any case and with any extension.
WINDOWS_DEVICE_NAMES = frozenset(
    ["con", "nul", "aux", "prn"] + [f"{port}{n}" for port in ("com", "lpt") for n in range(1, 10)]
)


def page_name_problem(name: str) -> str:
    """What makes ``name`` unfit to name a set's page (a predicate: "is ..."), or ``""``."""
    if not slug_safe(name):
        return "is not a safe folder name"
    if name.lower() in SITE_PAGE_NAMES:
        return "is the name of one of the site's own pages"
    # Windows, where a results folder or a site may be copied, drops a trailing dot (two names, one
    # folder) and gives a device's name (with any extension: nul.json) no file at all.
    if name.endswith("."):
        return "ends with a dot, which Windows drops from a folder's name"
    if name.split(".", 1)[0].lower() in WINDOWS_DEVICE_NAMES:
        return "is the name of a Windows device (con, nul, aux, prn, com1-9, lpt1-9), which no folder may have there"
    return ""


def case_twins(name: str, others: list[str]) -> list[str]:
    """The names in ``others`` that differ from ``name`` in case alone (Unicode casefold).

    A case-insensitive file system (macOS, Windows: where a site or a results folder may be copied) takes
    them for one folder, and the site's pages for one page: the one replaces the other.
    """
    folded = name.casefold()
    return sorted({other for other in others if other != name and other.casefold() == folded})


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically: a reader sees the old file or the new one."""
    write_text(path, json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n")  # NaN is no figure


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8): a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 would make published results unreadable to the group; 0666 less the umask.
    temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_regular(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of ``path``, a regular file: a FIFO, a device or a folder raises at once.

    Opened without blocking (a FIFO would wait for a writer for ever), then checked for what it is.
    """
    handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(handle, "rb") as stream:
        mode = os.fstat(handle).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        if not stat.S_ISREG(mode):
            raise OSError("not a regular file, but a FIFO, a socket or a device")
        return stream.read(limit)


def read_json(path: Path, shown: bool = True) -> dict:
    """A result file's content, checked against the schema (``set.json`` as a set, any other as a lesson).

    ``shown=False`` for a file no page shows as it is (the guest helper's record of its jobs, whose
    programs' output keeps its line breaks): its text is checked when it reaches a result file.
    """
    try:
        data = read_regular(path, validate.MAX_BYTES + 1)  # bounded, and never /dev/zero nor a FIFO
    except IsADirectoryError as error:
        raise StoreError(f"{path} is a folder where a result file belongs; remove it and measure again") from error
    except OSError as error:
        raise StoreError(
            f"{path} cannot be read ({error.strerror or error}); check that it is a readable file"
        ) from error
    if len(data) > validate.MAX_BYTES:
        raise StoreError(
            f"{path} holds more than {validate.MAX_BYTES // 2**20} MiB, too much for a result file; {REPAIR}"
        )
    key = _checked_key(path, data, shown)
    try:
        # Parsed as a checked file always is (no NaN, no Infinity, no lone surrogate), even when its key is
        # known: a key stored in a build's file could have been planted there.
        content = validate.decode(data)
        if key in _CHECKED:  # these very bytes passed these very checks
            _SEEN.add(key)
            return content
        _check(path, content)
        # As an import checks it: a set copied into results/ by hand is anyone's too. Not when writing: a
        # run's own text is never lost for a character, and the next read names it.
        if shown:
            shown_text.check_shown_text(path.name, content)
    except validate.SchemaError as error:
        raise StoreError(f"{path} {error}; {error.fix or REPAIR}") from error
    _CHECKED.add(key)
    _SEEN.add(key)
    return content


#: Keys (``_checked_key``) of file contents that passed :func:`read_json`'s checks, in this process and, when
#: a site build remembers them (``remember_checked``), in earlier builds: checking every file again would cost
#: each rebuild a third of a second (the course's sets) to most of a second (a class of 60 imported sets). A key
#: changes with a single byte of the file or of the checking code, so nothing changed is trusted.
_CHECKED: set[str] = set()
#: The keys of the files read in this process: what ``checked_keys`` gives (never the keys of files long gone).
_SEEN: set[str] = set()


def _checked_key(path: Path, data: bytes, shown: bool = True) -> str:
    role = b"set" if path.name == SET_FILE else b"lesson"  # set.json is checked as a set, others as lessons
    role += b"" if shown else b" (text not checked)"  # never trusted later as a file whose text passed
    return hashlib.sha256(_checker_version() + role + b"\0" + data).hexdigest()


@functools.cache
def _checker_version() -> bytes:
    """The checking code itself (this module, ``validate`` and the field types and shown-text check it uses),
    and what it runs on (Python, whose Unicode tables decide which character is printable): a stricter check
    trusts no earlier key.
    """
    checkers = (validate.__file__, schema_types.__file__, shown_text.__file__, __file__)
    code = b"".join(hashlib.sha256(Path(source).read_bytes()).digest() for source in checkers)
    return code + f"\0{sys.version}\0{unicodedata.unidata_version}\0".encode()


def remember_checked(keys: Iterable[str]) -> None:
    """Trust ``keys`` (an earlier build's :func:`checked_keys`) as if checked in this process.

    Whoever can plant a key can plant a file that skips the shape and text checks: the caller keeps them where
    forging them is no new power (the site: in Sphinx's pickled environment, which a build loads and so runs).
    """
    _CHECKED.update(key for key in keys if isinstance(key, str) and len(key) == 64)


def checked_keys() -> list[str]:
    """The keys of the contents read (and checked) in this process, for the next build of the same output."""
    return sorted(_SEEN)


def _check(path: Path, content: dict) -> None:
    if path.name == SET_FILE:
        validate.check_set_info(content)
    else:
        validate.check_lesson_file(content)


def _write_checked(path: Path, content: dict) -> None:
    """Write a result file only if it would be read back: a run never stores what the site must refuse."""
    try:
        _check(path, content)
    except validate.SchemaError as error:
        raise StoreError(
            f"{path} not written: the new content {error}; the previous file is kept (a bug: please report it)"
        ) from error
    write_json(path, content)


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


def result_files(path: Path) -> list[Path]:
    """The JSON files of the set in ``path``, sorted; hidden ones (temporaries) are not the set's."""
    return sorted(file for file in path.glob("*.json") if not file.name.startswith("."))


def load_set(path: Path) -> ResultSet:
    """The result set stored in folder ``path``, every file checked."""
    info = read_json(path / SET_FILE)
    lessons = {file.stem: read_json(file) for file in result_files(path) if file.name != SET_FILE}
    result_set = ResultSet(id=path.name, path=path, info=info, lessons=lessons)
    if result_set.kind == "reference":
        _derive_reference(result_set)
    return result_set


def _derive_reference(result_set: ResultSet) -> None:
    """Recompute a reference set's derived figures (the 2000 percentages) from its printed ones.

    The article's figures are typed, as printed; what is computed from them never is: each
    derived entry's ``how`` is evaluated by :mod:`course.results.derive` over the set's own figures, so
    54.4 % is 216 against 474 ticks, whatever value the file holds.
    """
    for content in result_set.lessons.values():
        for key, measurement in content.get("measurements", {}).items():
            if not measurement.get("derived"):
                continue
            try:
                computed = derive.evaluate(
                    measurement.get("how", ""), measurement.get("unit", ""), result_set.measurement
                )
            except derive.DeriveError as error:
                raise StoreError(
                    f"{result_set.path}: the reference figure {key!r} cannot be computed from its 'how' ({error}); "
                    "restore the set from the course (git checkout results/)"
                ) from None
            measurement["value"] = computed["value"]
            rates = {(result_set.measurement(used) or {}).get("tsc_hz") for used in computed["from"]}
            if measurement.get("unit") == "ticks" and len(rates) == 1 and None not in rates:
                measurement["tsc_hz"] = rates.pop()  # ticks of one clock: the sum converts to ns like its parts


def load_all(results: Path, case_twins_allowed: bool = False, processes: int = 1) -> dict[str, ResultSet]:
    """Every result set under ``results``, reference sets first, then by id.

    Dot-folders are never sets: an import stages into ``.import-*`` and an interrupted one
    may leave it behind (likewise ``.replaced-*``). A results folder not made yet holds no set;
    one that is a file is refused (a misspelled INVOKE_COURSE_RESULTS must not look like no sets).
    ``processes`` above 1 shares the files' checks out (:func:`_load_sharing_checks`).
    """
    names = set_folders(results, case_twins_allowed=case_twins_allowed)
    if processes > 1 and len(names) > 1:
        sets = _load_sharing_checks(results, names, processes)
    else:
        sets = [load_set(results / name) for name in names]
    sets.sort(key=lambda s: (s.kind != "reference", s.id))
    return {s.id: s for s in sets}


def _load_sharing_checks(results: Path, names: list[str], processes: int) -> list[ResultSet]:
    """The sets ``names``, the checks of all but the first share made meanwhile by forked processes (one a core).

    The checks are most of a load (a class of 60 imported sets: over a second of 1.8). A forked process checks
    its share's files and hands back the keys of the contents that passed (``checked_keys``); this process then
    reads that share as it reads any file already checked. One that fails hands back nothing: its sets are
    checked here, and a bad file is named just as a load in one process names it, in the same order.
    """
    size = -(-len(names) // processes)
    shares = [names[start : start + size] for start in range(0, len(names), size)]
    helpers: list[Meanwhile[list[str]]] = []
    try:
        for share in shares[1:]:
            helpers.append(Meanwhile(functools.partial(_check_share, results, share)))
        sets = [load_set(results / name) for name in shares[0]]
        for helper, share in zip(helpers, shares[1:], strict=True):
            remember_checked(helper.result() or ())
            sets += [load_set(results / name) for name in share]
        return sets
    finally:
        for helper in helpers:
            helper.close()


def _check_share(results: Path, names: list[str]) -> list[str]:
    """In a forked process: check the sets ``names``; the keys of what passed (it raises if any did not)."""
    for name in names:
        load_set(results / name)
    return checked_keys()


def set_folders(results: Path, case_twins_allowed: bool = False) -> list[str]:
    """The names of the folders under ``results`` that :func:`load_all` loads as sets, without reading them.

    Two names that differ in case alone are refused (the site and an import refuse them), unless
    ``case_twins_allowed``: the listing of ``invoke results`` shows them, and :func:`case_clash` says why they must go.
    """
    if not results.is_dir():
        if results.exists():
            raise StoreError(
                f"{results} is not a folder; point INVOKE_COURSE_RESULTS (or course.results) at the results folder"
            )
        return []
    names = [
        folder.name
        for folder in sorted(results.iterdir())
        if not folder.name.startswith(".") and (folder / SET_FILE).exists()
    ]
    clash = case_clash(results, names)
    if (
        clash and not case_twins_allowed
    ):  # copied by hand (an import refuses it): two pages a copy of the site makes one
        raise StoreError(clash)
    return names


def case_clash(results: Path, names: list[str]) -> str:
    """One line naming the first two of ``names`` that differ only in case, and the fix; ``""`` when none do."""
    for name in names:
        twins = case_twins(name, names)
        if twins:
            return (
                f"{results}: result sets {name!r} and {twins[0]!r} differ only in case, one folder and one page "
                "on a case-insensitive file system (macOS, Windows); rename or remove one of the two folders"
            )
    return ""


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
    _write_checked(target, {**merged, "updated": now()})


def save_lesson(result_set: Path, lesson: str, new: dict) -> dict:
    """Store a lesson's fresh results, keeping earlier good figures that a failed run lost.

    When the run recorded failures, every measurement and capture it did not produce
    keeps its previous value (each with its own date), so a failure never erases what
    was measured before. A clean run replaces the file whole.
    """
    target = result_set / f"{lesson}.json"
    previous = read_json(target) if target.is_file() and new.get("failures") else {}
    captures = {**previous.get("captures", {}), **new.get("captures", {})}
    stored = {
        **new,
        "schema": SCHEMA,
        "lesson": lesson,
        "measurements": {**previous.get("measurements", {}), **new.get("measurements", {})},
        "captures": {key: _clipped_capture(capture) for key, capture in captures.items()},
    }
    stored = _within_read_limit(target, stored)
    _write_checked(target, stored)
    return stored


def _clipped_capture(capture: dict) -> dict:
    text = capture.get("text")
    return {**capture, "text": clipped(text)} if isinstance(text, str) else capture  # not text: refused when written


def clipped(text: str, most: int = CAPTURE_CHARS) -> str:
    """``text`` cut to ``most`` characters, saying how much was left out."""
    if len(text) <= most:
        return text
    return text[:most] + f"\n[... {len(text) - most:,} more characters not kept: a capture keeps {most:,}]"


def _within_read_limit(path: Path, content: dict) -> dict:
    """``content`` as it can be written and read back: captures emptied if the file would pass the read limit."""
    if _size(content) <= validate.MAX_BYTES:
        return content
    note = "[output not kept: with it, this lesson's file would pass the limit of a result file]"
    content = {**content, "captures": {key: {**capture, "text": note} for key, capture in content["captures"].items()}}
    size = _size(content)
    if size > validate.MAX_BYTES:
        raise StoreError(
            f"{path} not written: this run's results take {size / 2**20:.0f} MiB, over the "
            f"{validate.MAX_BYTES // 2**20} MiB a result file may hold; the previous file is kept "
            "(the lesson's programs print too many measurements)"
        )
    return content


def _size(content: dict) -> int:
    # As write_json writes it; ASCII (ensure_ascii), so characters are bytes.
    return len(json.dumps(content, indent=1, sort_keys=True)) + 1
