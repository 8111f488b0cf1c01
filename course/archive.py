"""Moving result sets between machines: one archive per set, checked before it is trusted.

An archive is a gzipped tar holding ``<set>/set.json``, the set's other JSON files and
``<set>/MANIFEST.json`` (each file's SHA-256 and the schema). Import refuses anything
it cannot vouch for, each with its own message: not an archive, cut short, a member
that is not a plain file or would land outside the set, files that do not match the
manifest, a newer schema, missing provenance, impossible figures, or a set that is
already there (unless forced).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from course import store

MANIFEST = "MANIFEST.json"

#: What a measured set must say about its machine for its figures to mean anything.
REQUIRED_MACHINE = ("cpu_model", "kernel_release", "virtualization", "tsc_flags", "mitigations", "compiler")


class ArchiveError(ValueError):
    """An archive that cannot be imported; the message says what is wrong with it."""


def export_set(set_path: Path, output: Path) -> Path:
    """Write the set in ``set_path`` to ``output`` as one archive (byte-for-byte the same files)."""
    if not (set_path / store.SET_FILE).is_file():
        raise ArchiveError(f"{set_path} is not a result set (no {store.SET_FILE})")
    files = sorted(path for path in set_path.glob("*.json") if path.name != MANIFEST)
    manifest = {
        "schema": store.SCHEMA,
        "set": set_path.name,
        "files": {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files},
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(output, "w:gz") as tar:
        for name, data in [(path.name, path.read_bytes()) for path in files] + [
            (MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
        ]:
            info = tarfile.TarInfo(f"{set_path.name}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return output


def _read_members(archive: Path) -> tuple[str, dict[str, bytes]]:
    """The set's name and its files' bytes, refusing any member that is not a plain file inside the set."""
    files: dict[str, bytes] = {}
    top: set[str] = set()
    opened = False
    try:
        with tarfile.open(archive, "r:gz") as tar:
            opened = True
            for member in tar:
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts or len(path.parts) != 2:
                    raise ArchiveError(f"{archive}: member {member.name!r} would land outside the set; refused")
                if not member.isfile():
                    raise ArchiveError(f"{archive}: member {member.name!r} is a link or special file; refused")
                top.add(path.parts[0])
                extracted = tar.extractfile(member)
                assert extracted is not None
                files[path.parts[1]] = extracted.read()
    except (tarfile.TarError, EOFError, OSError) as error:
        if not opened:
            raise ArchiveError(
                f"{archive} is not a result-set archive (a .tar.gz from `invoke results.export`): {error}"
            ) from error
        raise ArchiveError(f"{archive} is truncated or damaged ({error}); export it again") from error
    if len(top) != 1:
        raise ArchiveError(f"{archive} holds {len(top)} top folders; an archive holds exactly one set")
    return top.pop(), files


def _check_manifest(archive: Path, name: str, files: dict[str, bytes]) -> None:
    if MANIFEST not in files:
        raise ArchiveError(f"{archive} has no {MANIFEST}; it was not made by `invoke results.export`")
    manifest = json.loads(files.pop(MANIFEST))
    if manifest.get("set") != name:
        raise ArchiveError(f"{archive}: the manifest names set {manifest.get('set')!r} but the folder is {name!r}")
    listed, present = set(manifest.get("files", {})), set(files)
    if listed != present:
        missing, extra = sorted(listed - present), sorted(present - listed)
        raise ArchiveError(f"{archive} does not match its manifest: missing {missing}, extra {extra}")
    for file, digest in manifest["files"].items():
        if hashlib.sha256(files[file]).hexdigest() != digest:
            raise ArchiveError(f"{archive}: {file} does not match the manifest's checksum (altered or damaged)")


def _parse(archive: Path, name: str, data: bytes) -> dict:
    try:
        content = json.loads(data)
    except json.JSONDecodeError as error:
        raise ArchiveError(f"{archive}: {name} is not valid JSON ({error.msg})") from error
    if not isinstance(content, dict) or not isinstance(content.get("schema"), int):
        raise ArchiveError(f"{archive}: {name} is not a result file (no schema number)")
    if content["schema"] > store.SCHEMA:
        raise ArchiveError(
            f"{archive}: {name} uses schema {content['schema']}, newer than this course's {store.SCHEMA}; "
            "update the course (git pull) before importing"
        )
    return content


def _check_provenance(archive: Path, info: dict) -> None:
    if info.get("kind") == "reference":
        if not info.get("citation"):
            raise ArchiveError(f"{archive}: a reference set must cite its source (set.json has no citation)")
        return
    machine = info.get("machine")
    missing = [key for key in REQUIRED_MACHINE if not isinstance(machine, dict) or key not in machine]
    if missing:
        raise ArchiveError(f"{archive}: set.json lacks the machine's provenance: {', '.join(missing)}")


def _check_values(archive: Path, file: str, content: dict) -> None:
    for key, measurement in content.get("measurements", {}).items():
        if measurement.get("status") != "ok":
            continue
        figures = [measurement.get(field) for field in ("min", "median", "p90", "p99", "max")]
        present = [value for value in figures if value is not None]
        if not present and measurement.get("value") is None and measurement.get("mean") is None:
            raise ArchiveError(f"{archive}: {file}: {key} is marked ok but has no figure")
        for value in [*present, measurement.get("value"), measurement.get("mean")]:
            if value is not None and (not isinstance(value, int | float) or not math.isfinite(value) or value < 0):
                raise ArchiveError(f"{archive}: {file}: {key} has an impossible figure {value!r}")
        if present != sorted(present):
            raise ArchiveError(f"{archive}: {file}: {key} is not ordered min <= median <= p90 <= p99 <= max")
        samples = measurement.get("samples")
        if samples is not None and (not isinstance(samples, int) or samples <= 0):
            raise ArchiveError(f"{archive}: {file}: {key} has an impossible sample count {samples!r}")


def import_set(archive: Path, results: Path, force: bool = False) -> Path:
    """Add the set in ``archive`` to ``results`` after checking it; return its folder."""
    if not archive.is_file():
        raise ArchiveError(f"no archive {archive}")
    name, files = _read_members(archive)
    if name != store.slug_safe(name):
        raise ArchiveError(f"{archive}: set name {name!r} is not a safe folder name")
    _check_manifest(archive, name, files)
    if store.SET_FILE not in files:
        raise ArchiveError(f"{archive} has no {store.SET_FILE}: not a result set")
    contents = {file: _parse(archive, file, data) for file, data in files.items()}
    _check_provenance(archive, contents[store.SET_FILE])
    for file, content in contents.items():
        _check_values(archive, file, content)
    target = results / name
    if target.exists() and not force:
        raise ArchiveError(f"result set {name!r} already exists in {results}; use --force to replace it")
    results.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".import-{name}-", dir=results))
    for file, data in files.items():
        (staging / file).write_bytes(data)
    # Swap in whole: a reader sees the old set or the new one, never a mixture.
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".replaced-{name}-", dir=results))
        target.rename(old / name)
        staging.rename(target)
        shutil.rmtree(old)
    else:
        staging.rename(target)
    return target
