"""A student's submission: their exercise sources and their result set, in one archive.

``invoke submit --student NAME`` writes ``NAME.tar.gz`` holding ``NAME/SUBMISSION.json``
(who, when, which files), ``NAME/code/user/<lesson>/<exercise>.c`` for each exercise of the
course, and ``NAME/set.tar.gz``, the student's result set as ``invoke results.export`` makes
it (when they have one). The instructor grades it with ``invoke grade`` (:mod:`course.classroom.grading`).

A submission is untrusted input. Reading one is bounded (size, member count, one file's
size), takes only plain files at the places above, and never believes what the archive says
about how the exercises went: a status in the set, or anywhere else, is shown as
self-reported at most; the grade comes from the instructor's own run.
"""

from __future__ import annotations

import gzip
import io
import json
import secrets
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from course.measure import lessons
from course.results import archive, fingerprint, store
from course.results.layout import Layout

INFO = "SUBMISSION.json"
SET_ARCHIVE = "set.tar.gz"
KiB, MiB = 1024, 1024 * 1024

#: The most one exercise source may hold: a student's variant is a page or two of C.
MAX_SOURCE = 256 * KiB
#: The most a whole submission may expand to (the set archive is the big part, and it is compressed).
MAX_TOTAL = 16 * MiB
#: The most members a submission may hold.
MAX_MEMBERS = 64
#: The most the tar inside a submission may hold, headers and padding included: decompression stops there.
MAX_TAR = MAX_TOTAL + (MAX_MEMBERS + 2) * 1024 + 20 * 512

#: Names no student may take: grading names its own jobs so (the reference solution's, the class's folder).
RESERVED_NAMES = frozenset({"reference", "solution", "student", "students"})


class SubmissionError(ValueError):
    """A submission that cannot be made or read; the message says why and what to do."""


@dataclass
class Submission:
    """What an archive brings: the student's name, sources by path, and their set's archive (if any)."""

    student: str
    archive: Path
    submitted_at: str
    sources: dict[str, bytes] = field(default_factory=dict)  # "code/user/03-timing/exercise-onebyte.c" -> bytes
    set_archive: bytes = b""


def exercise_sources(layout: Layout) -> dict[str, Path]:
    """Each exercise variant of the course, by its path from the checkout's root."""
    found = {}
    for lesson in lessons.discover(layout):
        for spec in lesson.exercises:
            path = lesson.source(spec.program)
            found[path.relative_to(layout.root).as_posix()] = path
    return found


def pack(layout: Layout, student: str, output: Path | None = None, set_name: str | None = None) -> Path:
    """Write the student's submission archive; return its path (default: ``build/submit/STUDENT.tar.gz``)."""
    if not store.slug_safe(student):
        raise SubmissionError(
            f"{student[:60]!r} is not a usable student name; use letters, digits, dot, dash or underscore "
            "(e.g. --student ada-lovelace)"
        )
    if student.lower() in RESERVED_NAMES:
        raise SubmissionError(reserved(student))
    output = output or layout.build / "submit" / f"{student}.tar.gz"
    members: dict[str, bytes] = {}
    for relative, path in exercise_sources(layout).items():
        data = store.read_regular(path, MAX_SOURCE + 1)
        if len(data) > MAX_SOURCE:
            raise SubmissionError(f"{relative} is over {MAX_SOURCE // KiB} KiB; an exercise is a page or two of C")
        members[relative] = data
    set_path = layout.results / fingerprint.set_name(set_name)
    has_set = (set_path / store.SET_FILE).is_file()
    if has_set:
        with tempfile.TemporaryDirectory() as scratch:
            exported = archive.export_set(set_path, Path(scratch) / SET_ARCHIVE)
            members[SET_ARCHIVE] = exported.read_bytes()
    info = {
        "schema": 1,
        "student": student,
        "submitted_at": store.now(),
        "sources": sorted(name for name in members if name != SET_ARCHIVE),
        "set": set_path.name if has_set else None,
    }
    members[INFO] = json.dumps(info, indent=1, sort_keys=True).encode()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{secrets.token_hex(4)}.tmp")
    try:
        with tarfile.open(partial, "x:gz") as tar:
            for name, data in sorted(members.items()):
                entry = tarfile.TarInfo(f"{student}/{name}")
                entry.size, entry.mode, entry.mtime = len(data), 0o644, 0
                tar.addfile(entry, io.BytesIO(data))
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return output


def reserved(student: str) -> str:
    return (
        f"{student!r} is a name grading keeps for itself ({', '.join(sorted(RESERVED_NAMES))}); "
        "submit under your own name (e.g. --student ada-lovelace)"
    )


def _member_path(where: Path, member: tarfile.TarInfo, expected: dict[str, bool]) -> tuple[str, str] | None:
    """(student folder, path inside it) of a plain file the submission may hold; None for a folder entry."""
    path = PurePosixPath(member.name)
    shown = repr(member.name[:80])
    if path.is_absolute() or ".." in path.parts:
        raise SubmissionError(f"{where}: member {shown} would land outside the submission; refused")
    if member.isdir():
        return None
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.issparse():
        raise SubmissionError(f"{where}: member {shown} is a link, a special or a sparse file; refused")
    if len(path.parts) < 2:
        raise SubmissionError(f"{where}: member {shown} is not in the student's folder; make it with invoke submit")
    inner = "/".join(path.parts[1:])
    if inner not in expected:
        raise SubmissionError(
            f"{where}: member {shown} is not an exercise source of this course nor the set; "
            "a submission holds only what invoke submit puts in it"
        )
    return path.parts[0], inner


def _gunzip(where: Path) -> bytes:
    """The tar inside ``where``, decompressed here with a hard limit before tarfile parses a byte (tar bombs)."""
    with gzip.open(where, "rb") as compressed:
        data = compressed.read(MAX_TAR + 1)  # bounded: gzip inflates no more than asked
    if len(data) > MAX_TAR:
        raise SubmissionError(
            f"{where} expands to more than {MAX_TAR // MiB} MiB, over what a submission may hold; refused"
        )
    return data


def read(where: Path, layout: Layout) -> Submission:
    """Read and check one submission archive (bounded); the sources it may hold are this course's exercises."""
    expected = {**{name: True for name in exercise_sources(layout)}, INFO: True, SET_ARCHIVE: True}
    files: dict[str, bytes] = {}
    folders: set[str] = set()
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(_gunzip(where)), mode="r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise SubmissionError(f"{where} holds more than {MAX_MEMBERS} members; refused")
                placed = _member_path(where, member, expected)
                if placed is None:
                    continue
                folder, inner = placed
                folders.add(folder)
                limit = MAX_TOTAL if inner == SET_ARCHIVE else MAX_SOURCE
                total += member.size
                if member.size > limit or total > MAX_TOTAL:
                    raise SubmissionError(f"{where}: {inner} is bigger than a submission may be; refused")
                if inner in files:
                    raise SubmissionError(f"{where}: {inner} appears twice; refused")
                extracted = tar.extractfile(member)
                assert extracted is not None
                files[inner] = extracted.read(member.size)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise SubmissionError(f"{where} is not a submission archive (made by invoke submit): {error}") from None
    if len(folders) != 1:
        raise SubmissionError(f"{where} holds {len(folders)} student folders; a submission holds exactly one")
    student = folders.pop()
    if not store.slug_safe(student):
        raise SubmissionError(f"{where}: {student[:60]!r} is not a usable student name; refused")
    if student.lower() in RESERVED_NAMES:
        raise SubmissionError(f"{where}: {reserved(student)}; refused")
    if INFO not in files:
        raise SubmissionError(f"{where} has no {INFO}; make it with invoke submit")
    try:
        info = json.loads(files.pop(INFO))
    except (ValueError, RecursionError):
        raise SubmissionError(f"{where}: {INFO} is not JSON; make the submission again with invoke submit") from None
    if not isinstance(info, dict) or info.get("student") != student:
        raise SubmissionError(f"{where}: {INFO} names another student than its folder {student!r}; refused")
    submitted = info.get("submitted_at")
    return Submission(
        student=student,
        archive=where,
        submitted_at=submitted if isinstance(submitted, str) and len(submitted) <= 40 else "",
        sources={name: data for name, data in files.items() if name != SET_ARCHIVE},
        set_archive=files.get(SET_ARCHIVE, b""),
    )
