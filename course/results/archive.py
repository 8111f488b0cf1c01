"""Moving result sets between machines: one archive per set, checked before it is trusted.

An archive is a gzipped tar holding ``<set>/set.json``, the set's other JSON files and
``<set>/MANIFEST.json`` (each file's SHA-256 and the schema). An archive is untrusted
input: import refuses anything it cannot vouch for, each with its own message (not an
archive, cut short, bigger than a result set can be, a member that is not a plain file
or would land outside the set, files that do not match the manifest, a newer schema, a
field of the wrong type, missing provenance, impossible figures, a reference set, or a
set that is already there unless forced; never, even forced, a reference set or this
machine's own, which no import may create either, nor a set whose name differs only in case
from one there or this machine's). An imported set's ``set.json`` gets an ``imported``
record, so that it is never taken for this machine's set. Export runs the same checks, so
a bad set fails where it can be mended, and never replaces a file unless forced.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from course.results import fingerprint, shown_text, store, validate

MANIFEST = "MANIFEST.json"

MiB = 1024 * 1024
#: The most an archive may expand to; a measured set is well under 1 MiB.
MAX_TOTAL = 64 * MiB
#: The most one file of a set may hold (as when it is read from disk).
MAX_FILE = validate.MAX_BYTES
#: The most files a set may hold (one per lesson, and a few more).
MAX_FILES = 256

#: What a measured set must say about its machine for its figures to mean anything.
REQUIRED_MACHINE = ("cpu_model", "kernel_release", "virtualization", "tsc_flags", "mitigations", "compiler")

#: What to do about an archive whose content is refused.
EXPORT_AGAIN = "export the set again from a good copy (invoke results.export)"


class ArchiveError(ValueError):
    """An archive that cannot be imported, or a set that cannot be exported; the message says why."""


#: What to do with a set whose name may not be imported here: a set is named by its folder.
RENAME_AND_EXPORT = (
    "on the machine it came from, rename its folder (mv results/OLD results/NEW) and export it again "
    "with invoke results.export --set NEW"
)


def export_set(set_path: Path, output: Path, force: bool = False) -> Path:
    """Write the set in ``set_path`` to ``output`` as one archive (byte-for-byte the same files).

    The set is checked first, as an import would check it, so a corrupt set fails here.
    ``output`` must not exist, unless ``force`` (and then it must be a regular file), and must
    lie outside the results folder (``set_path``'s parent).
    """
    if not (set_path / store.SET_FILE).is_file():
        raise ArchiveError(f"{set_path} is not a result set (no {store.SET_FILE})")
    if not store.slug_safe(set_path.name):
        raise ArchiveError(
            f"cannot export {set_path}: {short_name(set_path.name)} is not a safe set name; rename the folder"
        )
    _check_output(output, set_path.parent, force)
    files: dict[str, bytes] = {}
    for path in store.result_files(set_path):
        if path.name == MANIFEST:
            continue
        try:
            files[path.name] = store.read_regular(path, MAX_FILE + 1)
        except OSError as error:
            raise ArchiveError(
                f"cannot export {set_path}: {path.name} cannot be read ({error.strerror or error})"
            ) from error
        if len(files[path.name]) > MAX_FILE:
            raise ArchiveError(
                f"cannot export {set_path}: {path.name} is over the {MAX_FILE // MiB} MiB an import accepts "
                f"for one result file; {store.REPAIR}"
            )
    # An import's other limits; 1 MiB is left for the tar headers and the manifest.
    if len(files) >= MAX_FILES or sum(map(len, files.values())) > MAX_TOTAL - MiB:
        raise ArchiveError(
            f"cannot export {set_path}: {len(files)} files make it bigger than an import accepts "
            f"({MAX_FILES} files, {MAX_TOTAL // MiB} MiB in all)"
        )
    try:
        _check_contents(files)
    except validate.SchemaError as error:
        raise ArchiveError(f"cannot export {set_path}: {error}; {error.fix or store.REPAIR}") from error
    manifest = {
        "schema": store.SCHEMA,
        "set": set_path.name,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    members = [*files.items(), (MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())]
    # Written beside and renamed: a full disk or Ctrl-C never leaves half an archive under its name.
    partial = output.with_name(f".{output.name}.{secrets.token_hex(4)}.tmp")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(partial, "x:gz") as tar:
            for name, data in members:
                info = tarfile.TarInfo(f"{set_path.name}/{name}")
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
        _put_in_place(partial, output, force)
    except OSError as error:
        raise ArchiveError(
            f"cannot write {output} ({error.strerror or error}); choose another --output (nothing was written)"
        ) from error
    finally:
        partial.unlink(missing_ok=True)
    return output


def _check_output(output: Path, results: Path, force: bool) -> None:
    """Refuse an output that would replace what is not an earlier archive, or land among the results."""
    try:
        found = output.lstat()
    except FileNotFoundError:
        found = None
    except OSError as error:
        raise ArchiveError(f"cannot write {output} ({error.strerror or error}); choose another --output") from error
    if found is not None and not stat.S_ISREG(found.st_mode):
        # A device (/dev/null, as root), a link or a folder: replacing it would destroy it.
        raise ArchiveError(
            f"{output} exists and is not a regular file; an export never replaces it: choose another --output"
        )
    if found is not None and not force:
        raise _exists(output)
    where = output.parent.resolve() / output.name
    if where.is_relative_to(results.resolve()):
        # A file there could replace a result file (results/<set>/set.json) or be taken for a set.
        raise ArchiveError(f"{output} is inside the results folder {results}; write the archive elsewhere")


def _put_in_place(partial: Path, output: Path, force: bool) -> None:
    """Rename the finished archive to ``output``; without ``force``, never over a file that appeared meanwhile."""
    if force:
        os.replace(partial, output)
        return
    try:
        os.link(partial, output)  # fails, atomically, if anything is there
    except FileExistsError:
        raise _exists(output) from None
    except OSError:  # a file system without hard links: check again, then rename
        if os.path.lexists(output):
            raise _exists(output) from None
        os.replace(partial, output)


def _exists(output: Path) -> ArchiveError:
    return ArchiveError(f"{output} already exists; choose another --output, or use --force to replace it")


class _Bounded(io.RawIOBase):
    """The decompressed stream, refused once it passes :data:`MAX_TOTAL`: memory stays bounded (gzip bombs)."""

    def __init__(self, stream: gzip.GzipFile, archive: Path) -> None:
        super().__init__()
        self.stream, self.archive, self.total = stream, archive, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        room = MAX_TOTAL - self.total + 1  # one byte more than allowed tells "too big" from "just fits"
        data = self.stream.read(room if size is None or size < 0 else min(size, room))
        self.total += len(data)
        if self.total > MAX_TOTAL:
            raise ArchiveError(
                f"{self.archive} expands to more than {MAX_TOTAL // MiB} MiB, the limit for a result set; "
                "refused (it is not an archive made by invoke results.export)"
            )
        return data


def short_name(name: str) -> str:
    """A member's or a set's name as a message quotes it: a repr of at most 60 characters (a name may be MiBs)."""
    text = repr(name[:61])
    return text if len(text) <= 60 else text[:56] + "...'"


def _read_members(archive: Path) -> tuple[str, dict[str, bytes]]:
    """The set's name and its files' bytes, refusing any member that is not a plain file inside the set."""
    files: dict[str, bytes] = {}
    top: set[str] = set()
    opened = False
    extracted_bytes = 0
    try:
        with gzip.open(archive, "rb") as compressed:
            stream = _Bounded(compressed, archive)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                opened = True
                for member in tar:
                    file = _place(archive, member, top)
                    if file is None:
                        continue
                    if file in files:
                        raise ArchiveError(f"{archive}: member {short_name(member.name)} appears twice; refused")
                    if len(files) == MAX_FILES:
                        raise ArchiveError(f"{archive} holds more than {MAX_FILES} files, the limit for a set")
                    if member.size > MAX_FILE:
                        raise ArchiveError(
                            f"{archive}: {short_name(member.name)} holds {member.size / MiB:.0f} MiB, over the "
                            f"{MAX_FILE // MiB} MiB limit for one result file; refused"
                        )
                    # What is extracted counts too, not only what is read: the two differ if tarfile
                    # ever makes up content (as it makes up a sparse file's holes; _place refuses those).
                    extracted_bytes += member.size
                    if extracted_bytes > MAX_TOTAL:
                        raise ArchiveError(
                            f"{archive} expands to more than {MAX_TOTAL // MiB} MiB, the limit for a result set; "
                            "refused (it is not an archive made by invoke results.export)"
                        )
                    extracted = tar.extractfile(member)
                    assert extracted is not None  # a regular file always has content
                    files[file] = extracted.read(member.size)
            while stream.read(MiB):  # to the end, so gzip checks its length and checksum
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        if not opened and not isinstance(error, EOFError):  # a gzip cut short ends in EOFError
            raise ArchiveError(
                f"{archive} is not a result-set archive (a .tar.gz from `invoke results.export`): {error}"
            ) from error
        raise ArchiveError(f"{archive} is truncated or damaged ({error}); export it again") from error
    if not top:
        raise ArchiveError(f"{archive} holds no set folder; an archive holds exactly one set")
    return top.pop(), files


def _place(archive: Path, member: tarfile.TarInfo, top: set[str]) -> str | None:
    """The file name of ``member`` inside the set (None for the set's own folder entry), or why it is refused."""
    path = PurePosixPath(member.name)  # also drops "." parts: ./name/set.json is name/set.json
    name = short_name(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise ArchiveError(f"{archive}: member {name} would land outside the set; refused")
    if member.issparse() or any(key.startswith("GNU.sparse.") for key in member.pax_headers):
        # tarfile makes up a sparse file's holes as zeros, unread: megabytes out of a few bytes.
        raise ArchiveError(
            f"{archive}: member {name} is a sparse file (tar --sparse); refused: export the set "
            "with invoke results.export, or pack it without --sparse"
        )
    if member.isdir():
        if len(path.parts) > 1:
            raise ArchiveError(f"{archive}: member {name} is a sub-folder; a set's files sit directly in its folder")
        _one_folder(archive, top, *path.parts)  # `tar czf` lists the set's folder itself: fine
        return None
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise ArchiveError(f"{archive}: member {name} is a link or special file; refused")
    if len(path.parts) != 2:
        where = "is not inside a set's folder" if len(path.parts) < 2 else "is in a sub-folder"
        raise ArchiveError(
            f"{archive}: member {name} {where}; pack the set's folder itself "
            "(tar czf NAME.tar.gz -C results NAME), or use invoke results.export"
        )
    folder, file = path.parts
    if file != MANIFEST and not (store.slug_safe(file) and file.endswith(".json")):
        raise ArchiveError(f"{archive}: member {name} is not a result file (NAME.json); refused")
    _one_folder(archive, top, folder)
    return file


def _one_folder(archive: Path, top: set[str], *folder: str) -> None:
    """Note the set's folder; a second one is refused at once, before its files are read."""
    top.update(folder)
    if len(top) > 1:
        shown = ", ".join(short_name(name) for name in sorted(top))
        raise ArchiveError(f"{archive} holds {len(top)} top folders ({shown}); an archive holds exactly one set")


def _check_manifest(archive: Path, name: str, files: dict[str, bytes]) -> None:
    if MANIFEST not in files:
        raise ArchiveError(f"{archive} has no {MANIFEST}; it was not made by `invoke results.export`")
    try:
        manifest = validate.decode(files.pop(MANIFEST))
    except validate.SchemaError as error:
        raise ArchiveError(f"{archive}: {MANIFEST} {error}; {error.fix or EXPORT_AGAIN}") from error
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not all(isinstance(digest, str) for digest in listed.values()):
        raise ArchiveError(f"{archive}: {MANIFEST} is malformed (no files -> SHA-256 list); {EXPORT_AGAIN}")
    if manifest.get("set") != name:
        named = manifest.get("set")
        raise ArchiveError(
            f"{archive}: the manifest names set {short_name(named) if isinstance(named, str) else repr(named)[:60]} "
            f"but the folder is {short_name(name)}"
        )
    if set(listed) != set(files):
        missing, extra = sorted(set(listed) - set(files)), sorted(set(files) - set(listed))
        raise ArchiveError(f"{archive} does not match its manifest: missing {_names(missing)}, extra {_names(extra)}")
    for file, digest in listed.items():
        if hashlib.sha256(files[file]).hexdigest() != digest:
            raise ArchiveError(f"{archive}: {file} does not match the manifest's checksum (altered or damaged)")


def few_names(names: list[str]) -> str:
    """A few names of a list, each shortened: a manifest may list thousands, a command line hold a huge one."""
    shown = ", ".join(short_name(name) for name in names[:5])
    return shown + (f", and {len(names) - 5} more" if len(names) > 5 else "")


def _names(names: list[str]) -> str:
    return f"[{few_names(names)}]"


def _check_contents(files: dict[str, bytes]) -> None:
    """What import and export both demand of a set's files; a problem names its file."""
    if store.SET_FILE not in files:
        raise validate.SchemaError(f"has no {store.SET_FILE}", fix="it is not a result set")
    for file, data in sorted(files.items()):
        try:
            content = validate.decode(data)
            if file == store.SET_FILE:
                validate.check_set_info(content)
                _check_provenance(content)
            else:
                validate.check_lesson_file(content, file.removesuffix(".json"))
            shown_text.check_shown_text(file, content)
        except validate.SchemaError as error:
            raise validate.SchemaError(f"{file} {error}", error.fix) from error


def _check_provenance(info: dict) -> None:
    if info.get("kind") == "reference":
        raise validate.SchemaError(
            "says kind 'reference'", fix="reference sets come with the course (git pull), never in an archive"
        )
    machine = info.get("machine", {})
    missing = [key for key in REQUIRED_MACHINE if key not in machine]
    if missing:
        raise validate.SchemaError(f"lacks the machine's provenance: {', '.join(missing)}")


def import_set(archive: Path, results: Path, force: bool = False, own_set: str | Iterable[str] | None = None) -> Path:
    """Add the set in ``archive`` to ``results`` after checking it; return its folder.

    ``force`` replaces a set of the same name, but never a reference set nor ``own_set``
    (this machine's set, by default :func:`course.results.fingerprint.set_name`; or several names,
    such as the derived one and the one configured with ``--set``), which an import may not
    create either: runs would measure into it and the site would show it as this machine's.
    """
    if not archive.is_file():
        raise ArchiveError(f"no archive {archive}")
    name, files = _read_members(archive)
    if name != store.slug_safe(name):
        raise ArchiveError(f"{archive}: set name {short_name(name)} is not a safe folder name")
    problem = store.page_name_problem(name)  # "index": its page would be what a server shows for docs/machines/
    if problem:
        raise ArchiveError(f"{archive}: set name {name!r} {problem}; rename the set's folder and export it again")
    _check_manifest(archive, name, files)
    try:
        _check_contents(files)
    except validate.SchemaError as error:
        raise ArchiveError(f"{archive}: {error}; {error.fix or EXPORT_AGAIN}") from error
    own = [fingerprint.set_name()] if own_set is None else [own_set] if isinstance(own_set, str) else list(own_set)
    if name in own:
        raise ArchiveError(
            f"result set {name!r} is named as this machine's own set; an import never creates or replaces it "
            "(runs measure into it, the site shows it as this machine): " + RENAME_AND_EXPORT
        )
    _refuse_case_twin(name, own, results)
    target = results / name
    if target.exists():
        if not force:
            raise ArchiveError(f"result set {name!r} already exists in {results}; use --force to replace it")
        _refuse_protected(target)
    files[store.SET_FILE] = _marked_imported(files[store.SET_FILE], archive)
    try:
        _install(results, name, files)
    except OSError as error:
        raise ArchiveError(
            f"could not write {name!r} into {results} ({error.strerror or error}); nothing was changed"
        ) from error
    return target


def _refuse_case_twin(name: str, own: list[str], results: Path) -> None:
    """Refuse a name that differs only in case from this machine's set or a folder in ``results``, even forced.

    On a case-insensitive file system ``results/Lab`` is ``results/lab`` (--force would replace it, this
    machine's own set included); elsewhere the two pages would clash once the site is copied to one.
    """
    stored = [entry.name for entry in results.iterdir()] if results.is_dir() else []
    for twins, where in (
        (store.case_twins(name, own), "this machine's own set"),
        (store.case_twins(name, stored), f"in {results}"),
    ):
        if twins:
            raise ArchiveError(
                f"result set {name!r} differs only in case from {twins[0]!r} ({where}): a case-insensitive file "
                "system (macOS, Windows) takes them for one folder and one page: " + RENAME_AND_EXPORT
            )


def _marked_imported(data: bytes, archive: Path) -> bytes:
    """``set.json`` with an ``imported`` record: the set is never taken for this machine's, nor measured into."""
    info = validate.decode(data)
    # The archive's name as text that is always UTF-8 (a file name may hold any bytes).
    shown = os.fsencode(archive.name).decode("utf-8", "backslashreplace")
    # ... and one that shows: a bidi override or an escape in it would make every later load refuse the set.
    shown = "".join(c if shown_text.shows(c) else f"\\u{ord(c):04x}" for c in shown)[:200]
    info["imported"] = {"at": store.now(), "archive": shown}
    return (json.dumps(info, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def _refuse_protected(target: Path) -> None:
    """Refuse to replace what --force must never touch: a reference set, a set unread."""
    keep = "an import never replaces it, even with --force"
    try:
        kind = store.read_json(target / store.SET_FILE).get("kind")
    except store.StoreError as error:  # what cannot be read cannot be told apart from a reference set
        raise ArchiveError(f"result set {target.name!r} is not replaced: {error}") from error
    if kind == "reference":
        raise ArchiveError(f"result set {target.name!r} is a reference set, part of the course; {keep}")


def _install(results: Path, name: str, files: dict[str, bytes]) -> None:
    """Put the files in place as ``results/<name>``, whole: a reader sees the old set or the new one.

    Staging and replaced folders are dot-folders (never loaded as sets) and are removed
    whatever happens, Ctrl-C and a full disk included.
    """
    results.mkdir(parents=True, exist_ok=True)
    target = results / name
    staging = _new_folder(results, f".import-{name}-")
    old: Path | None = None
    try:
        for file, data in files.items():
            (staging / file).write_bytes(data)  # 0666 less the umask, as any file the user makes
        if target.exists():
            old = _new_folder(results, f".replaced-{name}-")
            target.rename(old / name)
        staging.rename(target)
    finally:
        if old is not None and not target.exists() and (old / name).exists():
            (old / name).rename(target)  # interrupted between the two renames: the previous set comes back
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _new_folder(parent: Path, prefix: str) -> Path:
    """A new, empty folder; not mkdtemp, whose 0700 would hide an imported set from the group."""
    while True:
        folder = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
