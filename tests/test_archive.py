"""Result sets between machines: export, import, and every kind of archive that must be refused."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from course import archive, store

ROOT = Path(__file__).resolve().parents[1]
CANNED = ROOT / "tests" / "roots" / "test-course" / "results" / "canned-machine"


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    return archive.export_set(CANNED, tmp_path / "out" / "canned-machine.tar.gz")


def test_export_then_import_round_trips_a_set_exactly(exported: Path, tmp_path: Path) -> None:
    target = archive.import_set(exported, tmp_path / "results")
    assert target == tmp_path / "results" / "canned-machine"
    originals = sorted(CANNED.glob("*.json"))
    assert sorted(p.name for p in target.iterdir()) == [p.name for p in originals]
    for original in originals:
        assert (target / original.name).read_bytes() == original.read_bytes()


def test_every_shipped_set_exports_and_imports(tmp_path: Path) -> None:
    for set_path in sorted((ROOT / "results").iterdir()):
        if (set_path / "set.json").is_file():
            made = archive.export_set(set_path, tmp_path / f"{set_path.name}.tar.gz")
            archive.import_set(made, tmp_path / "results")
    assert store.load_all(tmp_path / "results").keys() == store.load_all(ROOT / "results").keys()


def test_an_existing_set_is_replaced_only_with_force(exported: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    archive.import_set(exported, results)
    (results / "canned-machine" / "extra.json").write_text('{"schema": 1}')
    with pytest.raises(archive.ArchiveError, match=r"already exists .* use --force"):
        archive.import_set(exported, results)
    archive.import_set(exported, results, force=True)
    assert not (results / "canned-machine" / "extra.json").exists(), "replaced whole"
    assert [p.name for p in results.iterdir()] == ["canned-machine"], "no staging folder left behind"


def _tar(path: Path, members: list[tuple[str, bytes | None, str]]) -> Path:
    """An archive made by hand: (name, data, kind) where kind is file, symlink or dir."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
    return path


def _members_of(exported: Path) -> dict[str, bytes]:
    with tarfile.open(exported) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def _rebuilt(tmp_path: Path, members: dict[str, bytes], fix_manifest: bool = True) -> Path:
    if fix_manifest:
        manifest = {
            "schema": 1,
            "set": "canned-machine",
            "files": {
                name.split("/")[1]: hashlib.sha256(data).hexdigest()
                for name, data in members.items()
                if not name.endswith(archive.MANIFEST)
            },
        }
        members["canned-machine/MANIFEST.json"] = json.dumps(manifest).encode()
    return _tar(tmp_path / "bad.tar.gz", [(name, data, "file") for name, data in members.items()])


def test_not_an_archive(tmp_path: Path) -> None:
    bad = tmp_path / "notes.tar.gz"
    bad.write_text("just some text")
    with pytest.raises(archive.ArchiveError, match="is not a result-set archive"):
        archive.import_set(bad, tmp_path / "results")


def test_truncated_archive(exported: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(exported.read_bytes()[: exported.stat().st_size // 2])
    with pytest.raises(archive.ArchiveError, match="truncated or damaged"):
        archive.import_set(cut, tmp_path / "results")


def test_path_escape_is_refused(tmp_path: Path) -> None:
    bad = _tar(tmp_path / "escape.tar.gz", [("canned-machine/../../evil.json", b"{}", "file")])
    with pytest.raises(archive.ArchiveError, match="would land outside the set"):
        archive.import_set(bad, tmp_path / "results")
    assert not (tmp_path / "evil.json").exists()


def test_links_are_refused(tmp_path: Path) -> None:
    bad = _tar(tmp_path / "link.tar.gz", [("canned-machine/set.json", None, "symlink")])
    with pytest.raises(archive.ArchiveError, match="is a link or special file"):
        archive.import_set(bad, tmp_path / "results")


def test_altered_file_does_not_match_the_manifest(exported: Path, tmp_path: Path) -> None:
    members = _members_of(exported)
    members["canned-machine/03-timing.json"] = members["canned-machine/03-timing.json"].replace(b"1234", b"1000")
    with pytest.raises(archive.ArchiveError, match=r"03-timing.json does not match the manifest's checksum"):
        archive.import_set(_rebuilt(tmp_path, members, fix_manifest=False), tmp_path / "results")


def test_archive_without_manifest(exported: Path, tmp_path: Path) -> None:
    members = {k: v for k, v in _members_of(exported).items() if not k.endswith("MANIFEST.json")}
    with pytest.raises(archive.ArchiveError, match=r"has no MANIFEST.json"):
        archive.import_set(_rebuilt(tmp_path, members, fix_manifest=False), tmp_path / "results")


def test_missing_provenance(exported: Path, tmp_path: Path) -> None:
    members = _members_of(exported)
    info = json.loads(members["canned-machine/set.json"])
    del info["machine"]["kernel_release"], info["machine"]["compiler"]
    members["canned-machine/set.json"] = json.dumps(info).encode()
    with pytest.raises(archive.ArchiveError, match="lacks the machine's provenance: kernel_release, compiler"):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")


def test_impossible_values(exported: Path, tmp_path: Path) -> None:
    members = _members_of(exported)
    data = json.loads(members["canned-machine/03-timing.json"])
    data["measurements"]["03-timing/read.tty"]["median"] = 1
    members["canned-machine/03-timing.json"] = json.dumps(data).encode()
    with pytest.raises(archive.ArchiveError, match=r"read.tty is not ordered min <= median"):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")


def test_newer_schema(exported: Path, tmp_path: Path) -> None:
    members = _members_of(exported)
    data = json.loads(members["canned-machine/03-timing.json"])
    data["schema"] = store.SCHEMA + 1
    members["canned-machine/03-timing.json"] = json.dumps(data).encode()
    with pytest.raises(archive.ArchiveError, match="newer than this course's"):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")


def test_two_sets_in_one_archive(exported: Path, tmp_path: Path) -> None:
    members = _members_of(exported)
    members["other-machine/set.json"] = members["canned-machine/set.json"]
    with pytest.raises(archive.ArchiveError, match="holds 2 top folders"):
        archive.import_set(_rebuilt(tmp_path, members, fix_manifest=False), tmp_path / "results")
