"""Result sets between machines: export, import, and every kind of archive that must be refused."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from course import commands, pipeline
from course.measure import lesson_run
from course.results import archive, fingerprint, store, validate
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
CANNED = ROOT / "tests" / "roots" / "test-course" / "results" / "canned-machine"


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    return archive.export_set(CANNED, tmp_path / "out" / "canned-machine.tar.gz")


def test_export_then_import_round_trips_a_set_exactly(exported: Path, tmp_path: Path) -> None:
    target = archive.import_set(exported, tmp_path / "archives" / "results")
    assert target == tmp_path / "archives" / "results" / "canned-machine"
    originals = sorted(CANNED.glob("*.json"))
    assert sorted(p.name for p in target.iterdir()) == [p.name for p in originals]
    for original in originals:
        if original.name != "set.json":
            assert (target / original.name).read_bytes() == original.read_bytes()
    # set.json, the same but for the record of the import (which keeps the set from passing as this machine's)
    info = json.loads((target / "set.json").read_text())
    imported = info.pop("imported")
    assert imported == {"at": imported["at"], "archive": "canned-machine.tar.gz"}
    assert info == json.loads((CANNED / "set.json").read_text())


def test_every_shipped_measured_set_exports_and_imports(tmp_path: Path) -> None:
    shipped = store.load_all(ROOT / "results")
    # The set of the machine running the test (shipped when this kind of machine measured it)
    # is exported but never imported here: import refuses this machine's own name.
    mine = fingerprint.set_name()
    measured = [key for key, result_set in shipped.items() if result_set.kind != "reference" and key != mine]
    for key in measured:
        made = archive.export_set(shipped[key].path, tmp_path / f"{key}.tar.gz")
        archive.import_set(made, tmp_path / "results")
    if mine in shipped:
        assert archive.export_set(shipped[mine].path, tmp_path / f"{mine}.tar.gz").is_file()
    assert list(store.load_all(tmp_path / "results")) == measured


def test_a_reference_set_is_never_exported(tmp_path: Path) -> None:
    with pytest.raises(archive.ArchiveError, match=r"cannot export .*reference-2000: set.json says kind 'reference'"):
        archive.export_set(ROOT / "results" / "reference-2000", tmp_path / "reference.tar.gz")
    assert not list(tmp_path.iterdir()), "no archive, not even a partial one"


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
    with pytest.raises(archive.ArchiveError, match=r"read.tty'\] not ordered min <= median"):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")


def test_a_lesson_file_of_too_many_measurements_is_refused_on_import_and_on_load(
    exported: Path, tmp_path: Path
) -> None:
    def extra(data: dict) -> None:
        for i in range(validate.MAX_MEASUREMENTS + 1):
            data["measurements"][f"03-timing/x{i:05d}"] = {"status": "ok", "unit": "ticks", "min": 1, "tsc_hz": 3e9}

    members = _with(exported, "03-timing.json", extra)
    limit = r"03-timing.json holds 2\d\d\d measurements, more than the 2000 a lesson file may hold"
    with pytest.raises(archive.ArchiveError, match=limit):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")
    assert _left_in(tmp_path / "results") == []
    # A set copied by hand into results/ is refused by the site's load likewise, naming the file.
    shutil.copytree(CANNED, tmp_path / "copied" / "canned-machine")
    (tmp_path / "copied" / "canned-machine" / "03-timing.json").write_bytes(members["canned-machine/03-timing.json"])
    with pytest.raises(store.StoreError, match=r"canned-machine/03-timing.json holds 2\d\d\d measurements"):
        store.load_all(tmp_path / "copied")


def test_a_measurement_of_another_lesson_is_refused(exported: Path, tmp_path: Path) -> None:
    def foreign(data: dict) -> None:
        data["measurements"]["01-user-kernel/x"] = {"status": "ok", "unit": "ticks", "min": 1, "tsc_hz": 3e9}

    members = _with(exported, "03-timing.json", foreign)
    with pytest.raises(archive.ArchiveError, match=r"03-timing.json has measurements\['01-user-kernel/x'\], not of"):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")


@pytest.mark.parametrize(
    ("file", "change", "field"),
    [
        ("set.json", lambda d: d.update(label="Lab \u202eCP 7"), "label"),
        ("set.json", lambda d: d["machine"].update(cpu_model="EPYC \x1b[31mred"), "machine.cpu_model"),
        ("set.json", lambda d: d["machine"].update(os="Debian\u2028x"), "machine.os"),
        ("03-timing.json", lambda d: d["measurements"]["03-timing/read.tty"].update(note="a\x00b"), "note"),
    ],
)
def test_an_invisible_character_in_shown_text_is_refused(
    exported: Path, tmp_path: Path, file: str, change, field: str
) -> None:
    members = _with(exported, file, change)
    with pytest.raises(archive.ArchiveError, match=rf"{file} has .*{re.escape(field)} holding the invisible character"):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")
    assert _left_in(tmp_path / "results") == []


def test_a_reason_may_quote_lines(exported: Path, tmp_path: Path) -> None:
    def failed(data: dict) -> None:
        data["measurements"]["03-timing/read.tty"] = {"status": "failed", "reason": "cc: error\n\tline 3"}

    archive.import_set(_rebuilt(tmp_path, _with(exported, "03-timing.json", failed)), tmp_path / "results")


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


# --- untrusted archives: each refused with its own message, nothing left behind ---------------


def _with(exported: Path, file: str, change) -> dict[str, bytes]:
    """The exported members, with ``file``'s JSON content changed in place by ``change``."""
    members = _members_of(exported)
    content = json.loads(members[f"canned-machine/{file}"])
    change(content)
    members[f"canned-machine/{file}"] = json.dumps(content).encode()
    return members


def _left_in(results: Path) -> list[str]:
    return sorted(p.name for p in results.iterdir()) if results.exists() else []


def test_a_member_bigger_than_a_result_file_is_refused_unread(tmp_path: Path) -> None:
    # A header announcing 6 GiB, and no data: refused from the header alone, nothing decompressed.
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tar:
        info = tarfile.TarInfo("canned-machine/03-timing.json")
        info.size = 6 * 1024**3
        tar.addfile(info)
    with pytest.raises(archive.ArchiveError, match=r"'canned-machine/03-timing.json' holds 6144 MiB, over the 16 MiB"):
        archive.import_set(bomb, tmp_path / "results")
    assert _left_in(tmp_path / "results") == []


def test_an_archive_expanding_past_the_limit_is_refused_with_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "MAX_TOTAL", 1 * archive.MiB)
    zeros = bytes(512 * 1024)
    bomb = _tar(tmp_path / "bomb.tar.gz", [(f"canned-machine/{n:02}.json", zeros, "file") for n in range(40)])
    assert bomb.stat().st_size < 100_000, "20 MiB of zeros in a few KiB: a small gzip bomb"
    tracemalloc.start()
    try:
        with pytest.raises(archive.ArchiveError, match=r"bomb.tar.gz expands to more than 1 MiB, the limit"):
            archive.import_set(bomb, tmp_path / "results")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * archive.MiB


def test_a_huge_pax_header_counts_against_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # tarfile reads an extended header whole before any member is seen: the bound must sit below it.
    monkeypatch.setattr(archive, "MAX_TOTAL", 1 * archive.MiB)
    bomb = tmp_path / "pax.tar.gz"
    with tarfile.open(bomb, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("canned-machine/set.json")
        info.pax_headers = {"comment": "x" * (3 * archive.MiB)}
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(archive.ArchiveError, match="expands to more than 1 MiB"):
        archive.import_set(bomb, tmp_path / "results")


def test_the_stated_limits() -> None:
    assert (archive.MAX_TOTAL, archive.MAX_FILE, archive.MAX_FILES) == (64 * 1024**2, 16 * 1024**2, 256)
    guide = (Path(__file__).resolve().parents[1] / "docs" / "instructors.md").read_text()
    for stated in (f"**{archive.MAX_TOTAL // archive.MiB} MiB**", f"**{archive.MAX_FILE // archive.MiB} MiB**"):
        assert stated in guide, f"the instructor guide states the import limit {stated}"
    assert f"**{archive.MAX_FILES} files**" in guide


def test_a_set_claiming_to_be_a_reference_is_refused(exported: Path, tmp_path: Path) -> None:
    members = _with(exported, "set.json", lambda info: info.update(kind="reference", citation="trust me"))
    with pytest.raises(archive.ArchiveError, match=r"set.json says kind 'reference'; reference sets come with"):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")
    assert _left_in(tmp_path / "results") == []


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (b"[1, 2]", r"MANIFEST.json is not a result file \(expected a JSON object\)"),
        (b'{"schema": 1, "set": "canned-machine", "files": ["set.json"]}', r"MANIFEST.json is malformed"),
        (b'{"schema": 1, "set": "canned-machine", "files": {"set.json": 7}}', r"MANIFEST.json is malformed"),
        (b'{"schema": 1, "set": "canned-', r"MANIFEST.json is corrupt \(Unterminated string"),
        (b'{"schema": 1, "set": NaN}', r"MANIFEST.json holds NaN"),
        (b'{"schema": 2}', r"MANIFEST.json uses schema 2, newer than this course's 1; update the course"),
    ],
)
def test_a_malformed_manifest_is_refused(exported: Path, tmp_path: Path, manifest: bytes, message: str) -> None:
    members = _members_of(exported)
    members["canned-machine/MANIFEST.json"] = manifest
    with pytest.raises(archive.ArchiveError, match=message):
        archive.import_set(_rebuilt(tmp_path, members, fix_manifest=False), tmp_path / "results")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(measurements=["03-timing/read.tty"]), r"measurements = \[\.\.\.\] \(a list\), not an"),
        (lambda d: d["measurements"].update({"03-timing/x": 5}), r"measurements\['03-timing/x'\] = 5, not an"),
        (lambda d: d["measurements"]["03-timing/read.tty"].update(min="12"), r"read.tty'\]\.min = '12', not a finite"),
        (lambda d: d["measurements"]["03-timing/read.tty"].update(samples=0), r"samples = 0, not a whole number above"),
        (lambda d: d["measurements"]["03-timing/read.tty"].update(status=None), r"status = None, not one of ok"),
        (lambda d: d.update(captures={"03-timing/out": {"command": "x"}}), r"captures\['03-timing/out'\] without its"),
    ],
)
def test_a_lesson_file_of_the_wrong_shape_is_refused(exported: Path, tmp_path: Path, change, message: str) -> None:
    members = _with(exported, "03-timing.json", change)
    with pytest.raises(archive.ArchiveError, match=r"bad.tar.gz: 03-timing.json has .*" + message):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")
    assert _left_in(tmp_path / "results") == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda i: i["machine"].update(mitigations="all on"), r"machine.mitigations = 'all on', not an object of text"),
        (lambda i: i["machine"].update(tsc_flags="tsc"), r"machine.tsc_flags = 'tsc', not a list of text"),
        (lambda i: i["machine"].update(tsc_hz="2 GHz"), r"machine.tsc_hz = '2 GHz', not a rate in Hz"),
        (lambda i: i["machine"].update(cpu_model=None), r"machine.cpu_model = None, not text"),
        (lambda i: i.update(machine="Canned CPU"), r"has machine = 'Canned CPU', not an object"),
        (lambda i: i.update(label=["a"]), r"has label = \[\.\.\.\] \(a list\), not text"),
    ],
)
def test_a_set_description_that_would_break_the_site_is_refused(
    exported: Path, tmp_path: Path, change, message: str
) -> None:
    members = _with(exported, "set.json", change)
    with pytest.raises(archive.ArchiveError, match=r"set.json has " + message.removeprefix("has ")):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")


def test_non_finite_and_negative_figures_are_refused(exported: Path, tmp_path: Path) -> None:
    members = _members_of(exported)
    text = members["canned-machine/03-timing.json"].decode()
    for bad, message in (("NaN", "holds NaN"), ("Infinity", "holds Infinity"), ("1e999", "holds the number 1e999")):
        members["canned-machine/03-timing.json"] = text.replace('"min": 1234', f'"min": {bad}', 1).encode()
        with pytest.raises(archive.ArchiveError, match=message):
            archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")
    members = _with(exported, "03-timing.json", lambda d: d["measurements"]["03-timing/read.tty"].update(min=-5))
    with pytest.raises(archive.ArchiveError, match=r"min = -5, not a finite number >= 0"):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")


def test_force_never_replaces_this_machines_set(exported: Path, tmp_path: Path, monkeypatch) -> None:
    results = tmp_path / "results"
    archive.import_set(exported, results)
    (results / "canned-machine" / "03-timing.json").write_text('{"schema": 1, "mine": true}')
    monkeypatch.setattr(archive.fingerprint, "set_name", lambda asked=None, info=None: "canned-machine")
    with pytest.raises(
        archive.ArchiveError, match="'canned-machine' is named as this machine's own set; an import never"
    ):
        archive.import_set(exported, results, force=True)
    assert json.loads((results / "canned-machine" / "03-timing.json").read_text())["mine"] is True
    assert _left_in(results) == ["canned-machine"]


def test_force_never_replaces_a_reference_set(exported: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    store.save_set_info(results / "canned-machine", {"kind": "reference", "citation": "the article", "machine": {}})
    before = (results / "canned-machine" / "set.json").read_bytes()
    with pytest.raises(archive.ArchiveError, match="'canned-machine' is a reference set, part of the course"):
        archive.import_set(exported, results, force=True, own_set="elsewhere")
    assert (results / "canned-machine" / "set.json").read_bytes() == before


def test_force_never_replaces_a_set_it_cannot_read(exported: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    (results / "canned-machine").mkdir(parents=True)
    (results / "canned-machine" / "set.json").write_text("{ not json")
    with pytest.raises(archive.ArchiveError, match=r"'canned-machine' is not replaced: .*set.json is corrupt"):
        archive.import_set(exported, results, force=True, own_set="elsewhere")


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_import_leaves_nothing_behind(exported: Path, tmp_path: Path, monkeypatch, failure) -> None:
    results = tmp_path / "results"
    written = Path.write_bytes

    def second_write_fails(self: Path, data: bytes) -> int:
        if len(list(self.parent.iterdir())) == 1:
            raise failure
        return written(self, data)

    monkeypatch.setattr(Path, "write_bytes", second_write_fails)
    if isinstance(failure, OSError):
        with pytest.raises(archive.ArchiveError, match=r"\(No space left on device\); nothing was changed"):
            archive.import_set(exported, results)
    else:
        with pytest.raises(KeyboardInterrupt):
            archive.import_set(exported, results)
    assert _left_in(results) == [], "no .import-* folder"
    assert store.load_all(results) == {}


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_replacement_cut_short_keeps_the_previous_set(exported: Path, tmp_path: Path, monkeypatch, failure) -> None:
    results = tmp_path / "results"
    archive.import_set(exported, results)
    (results / "canned-machine" / "extra.json").write_text('{"schema": 1}')
    renamed = Path.rename

    def staging_cannot_move(self: Path, target):
        if self.name.startswith(".import-"):  # after the previous set was moved aside
            raise failure
        return renamed(self, target)

    monkeypatch.setattr(Path, "rename", staging_cannot_move)
    with pytest.raises(archive.ArchiveError if isinstance(failure, OSError) else KeyboardInterrupt):
        archive.import_set(exported, results, force=True, own_set="elsewhere")
    assert _left_in(results) == ["canned-machine"], "no .import-* nor .replaced-* folder"
    assert (results / "canned-machine" / "extra.json").is_file(), "the previous set, whole"


def test_imported_files_keep_ordinary_modes(exported: Path, tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        target = archive.import_set(exported, tmp_path / "results")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in target.iterdir()} == {0o644}


def _repacked(tmp_path: Path, exported: Path, arcname: str, root: str = "canned-machine") -> Path:
    """The exported set unpacked and packed again by hand, as `tar czf` would (folder entries included)."""
    unpacked = tmp_path / "unpacked"
    for name, data in _members_of(exported).items():
        (unpacked / name).parent.mkdir(parents=True, exist_ok=True)
        (unpacked / name).write_bytes(data)
    repacked = tmp_path / "repacked.tar.gz"
    with tarfile.open(repacked, "w:gz") as tar:
        tar.add(unpacked / root, arcname=arcname)
    return repacked


@pytest.mark.parametrize("arcname", ["canned-machine", "./canned-machine"])
def test_a_plain_tar_repack_with_folder_entries_is_accepted(exported: Path, tmp_path: Path, arcname: str) -> None:
    repacked = _repacked(tmp_path, exported, arcname)
    with tarfile.open(repacked) as tar:
        assert any(member.isdir() for member in tar), "tar lists the folder itself"
    target = archive.import_set(repacked, tmp_path / "results")
    assert store.load_set(target).info["label"] == "Canned machine"


def test_a_repack_of_the_files_alone_is_refused_with_the_cause(exported: Path, tmp_path: Path) -> None:
    repacked = _repacked(tmp_path, exported, ".")  # tar czf x.tar.gz -C canned-machine .
    with pytest.raises(
        archive.ArchiveError, match=r"'\./.*\.json' is not inside a set's folder; pack the set's folder"
    ):
        archive.import_set(repacked, tmp_path / "results")


def test_a_sub_folder_is_refused_with_the_cause(exported: Path, tmp_path: Path) -> None:
    repacked = _repacked(tmp_path, exported, "canned-machine/nested")
    with pytest.raises(archive.ArchiveError, match=r"'canned-machine/nested' is a sub-folder"):
        archive.import_set(repacked, tmp_path / "results")


def test_export_checks_the_set_first(tmp_path: Path) -> None:
    broken = tmp_path / "results" / "canned-machine"
    shutil.copytree(CANNED, broken)
    timing = json.loads((broken / "03-timing.json").read_text())
    timing["measurements"]["03-timing/read.tty"]["median"] = "fast"
    (broken / "03-timing.json").write_text(json.dumps(timing))
    with pytest.raises(
        archive.ArchiveError, match=r"cannot export .*03-timing.json has .*median = 'fast'.*git checkout"
    ):
        archive.export_set(broken, tmp_path / "out" / "canned-machine.tar.gz")
    (broken / "03-timing.json").unlink()
    (broken / "03-timing.json").mkdir()
    with pytest.raises(archive.ArchiveError, match=r"cannot export .*03-timing.json cannot be read \(Is a directory\)"):
        archive.export_set(broken, tmp_path / "out" / "canned-machine.tar.gz")
    assert _left_in(tmp_path / "out") == [], "no archive, not even a partial one"


def test_a_member_twice_is_refused(exported: Path, tmp_path: Path) -> None:
    members = list(_members_of(exported).items())
    bad = _tar(tmp_path / "twice.tar.gz", [(name, data, "file") for name, data in members + members[:1]])
    with pytest.raises(archive.ArchiveError, match=r"member 'canned-machine/.*' appears twice"):
        archive.import_set(bad, tmp_path / "results")


def test_a_member_that_is_not_a_result_file_is_refused(exported: Path, tmp_path: Path) -> None:
    members = _members_of(exported)
    members["canned-machine/run.sh"] = b"#!/bin/sh\n"
    with pytest.raises(archive.ArchiveError, match=r"member 'canned-machine/run.sh' is not a result file"):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")


def test_too_many_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_FILES", 3)
    bad = _tar(tmp_path / "many.tar.gz", [(f"canned-machine/{n}.json", b"{}", "file") for n in range(5)])
    with pytest.raises(archive.ArchiveError, match="holds more than 3 files, the limit for a set"):
        archive.import_set(bad, tmp_path / "results")


def test_export_refuses_what_an_import_would_refuse_for_size(tmp_path: Path, monkeypatch) -> None:
    big = tmp_path / "results" / "canned-machine"
    shutil.copytree(CANNED, big)
    monkeypatch.setattr(archive, "MAX_FILE", 1000)
    with pytest.raises(archive.ArchiveError, match=r"cannot export .*\.json is over the 0 MiB an import accepts"):
        archive.export_set(big, tmp_path / "out.tar.gz")
    monkeypatch.setattr(archive, "MAX_FILES", 3)
    monkeypatch.setattr(archive, "MAX_FILE", archive.MiB)
    with pytest.raises(archive.ArchiveError, match=r"cannot export .* files make it bigger than an import accepts"):
        archive.export_set(big, tmp_path / "out.tar.gz")
    assert not (tmp_path / "out.tar.gz").exists()


# --- what the attacker's review found -----------------------------------------------------------


def test_a_sparse_member_is_refused_before_its_holes_are_made_up(tmp_path: Path) -> None:
    # `tar --sparse --format=posix` of truncated files: a few bytes each, which tarfile would
    # extract as 16 MiB of zeros it never reads (and _Bounded never counts): 250 of them made 2 GB.
    hole_map = b"1\n0\n0\n".ljust(512, b"\0")  # one data region, of 0 bytes, at 0: the file is all hole
    sparse = tmp_path / "sparse.tar.gz"
    with tarfile.open(sparse, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for number in range(250):
            info = tarfile.TarInfo(f"canned-machine/{number:03}.json")
            info.size = len(hole_map)
            info.pax_headers = {
                "GNU.sparse.major": "1",
                "GNU.sparse.minor": "0",
                "GNU.sparse.name": info.name,
                "GNU.sparse.realsize": str(archive.MAX_FILE),
            }
            tar.addfile(info, io.BytesIO(hole_map))
    assert sparse.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(archive.ArchiveError, match=r"'canned-machine/000.json' is a sparse file \(tar --sparse\)"):
            archive.import_set(sparse, tmp_path / "results")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * archive.MiB
    assert _left_in(tmp_path / "results") == []


def test_a_long_member_name_is_shortened_in_the_message(tmp_path: Path) -> None:
    # A GNU long name of MiBs: the message quotes 60 characters of it, not the name whole.
    bad = tmp_path / "longname.tar.gz"
    with tarfile.open(bad, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("canned-machine/" + "y" * archive.MiB + ".json")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(
        archive.ArchiveError, match=r"member 'canned-machine/yyy.*\.\.\.' is not a result file"
    ) as refused:
        archive.import_set(bad, tmp_path / "results")
    assert len(str(refused.value)) < len(str(bad)) + 200


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # Each passed every check and then stopped `invoke site` (KeyError, math.ceil(inf), 2.4 GB).
        (
            lambda d: d["measurements"].update(
                {"03-timing/bench-x": {"status": "ok", "min": 1, "goal": 1, "unit": "s"}}
            ),
            r"measurements\['03-timing/bench-x'\] with a goal but no value to compare it with",
        ),
        (
            lambda d: d["measurements"].update(
                {
                    "03-timing/bench-x": {
                        "status": "ok",
                        "value": 1,
                        "unit": "%",
                        "timeline": {"seconds": [0, 1, 2], "values": [1e-300, 1e-300, 9e18]},
                    }
                }
            ),
            r"03-timing/bench-x'\]\.timeline\.values holding 1e-300, not 0 nor at least 1e-06",
        ),
        (
            lambda d: d["measurements"]["03-timing/read.tty"].update(
                histogram={"start": 0, "width": 1, "counts": [1] * 1001, "above": 0}
            ),
            r"read.tty'\]\.histogram\.counts of 1,001 entries, more than the 1,000 a result file may hold",
        ),
        (
            lambda d: d["measurements"].update(
                {
                    "03-timing/bench-x": {
                        "status": "ok",
                        "value": 1,
                        "unit": "%",
                        "timeline": {"seconds": [1] * 20_001, "values": [1] * 20_001},
                    }
                }
            ),
            r"timeline\.values of 20,001 entries, more than the 20,000",
        ),
    ],
)
def test_a_set_that_would_stop_the_site_is_refused(exported: Path, tmp_path: Path, change, message: str) -> None:
    members = _with(exported, "03-timing.json", change)
    with pytest.raises(archive.ArchiveError, match=r"bad.tar.gz: 03-timing.json has .*" + message):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")
    assert _left_in(tmp_path / "results") == []


@pytest.mark.parametrize("field", ["label", "cpu_model"])
def test_a_lone_surrogate_is_refused(exported: Path, tmp_path: Path, field: str) -> None:
    # "\ud800" is valid JSON, but no character: printing it (invoke results.list) raised UnicodeEncodeError.
    members = _members_of(exported)
    info = json.loads(members["canned-machine/set.json"])
    (info["machine"] if field == "cpu_model" else info)[field] = "AAAA"
    members["canned-machine/set.json"] = json.dumps(info).replace("AAAA", "A\\ud800A").encode()
    with pytest.raises(archive.ArchiveError, match=r"set.json holds text with a lone surrogate \('A\\ud800A'\)"):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")
    assert _left_in(tmp_path / "results") == []


def test_a_schema_below_1_is_refused(exported: Path, tmp_path: Path) -> None:
    members = _with(exported, "set.json", lambda info: info.update(schema=-5))
    with pytest.raises(
        archive.ArchiveError, match=r"set.json has schema -5, not a version of the layout \(1 or more\)"
    ):
        archive.import_set(_rebuilt(tmp_path, members), tmp_path / "results")


def test_a_set_named_as_this_machine_is_refused_even_when_absent(exported: Path, tmp_path: Path, monkeypatch) -> None:
    # Planted while this machine has no set, a run would then reuse its figures ("unchanged") and its label.
    results = tmp_path / "results"
    monkeypatch.setattr(archive.fingerprint, "set_name", lambda asked=None, info=None: asked or "canned-machine")
    for force in (False, True):
        with pytest.raises(archive.ArchiveError, match=r"'canned-machine' is named as this machine's own set"):
            archive.import_set(exported, results, force=force)
    assert _left_in(results) == []


def test_the_configured_set_is_protected_too(tmp_path: Path) -> None:
    # INVOKE_COURSE_SET=mine: `invoke results.import --force` of an archive named mine must not replace it.
    layout = Layout(ROOT, results_dir=tmp_path / "results")
    shutil.copytree(CANNED, tmp_path / "elsewhere" / "mine")
    made = archive.export_set(tmp_path / "elsewhere" / "mine", tmp_path / "mine.tar.gz")
    shutil.copytree(CANNED, layout.results / "mine")
    before = {p.name: p.read_bytes() for p in (layout.results / "mine").iterdir()}
    with pytest.raises(archive.ArchiveError, match=r"'mine' is named as this machine's own set"):
        commands.import_(layout, made, force=True, set_name="mine")
    assert {p.name: p.read_bytes() for p in (layout.results / "mine").iterdir()} == before
    # Named otherwise, the same archive is imported (and marked as imported).
    target = commands.import_(layout, made, force=True, set_name="other")
    assert store.load_set(target).info["imported"]["archive"] == "mine.tar.gz"


def _exported_as(tmp_path: Path, name: str) -> Path:
    shutil.copytree(CANNED, tmp_path / "made" / name)
    return archive.export_set(tmp_path / "made" / name, tmp_path / f"{name}.tar.gz")


def test_a_set_whose_name_differs_only_in_case_from_a_stored_one_is_refused_even_forced(tmp_path: Path) -> None:
    # On a case-insensitive file system results/Canned-Machine is results/canned-machine: --force would replace it.
    results = tmp_path / "results"
    shutil.copytree(CANNED, results / "canned-machine")
    before = {p.name: p.read_bytes() for p in (results / "canned-machine").iterdir()}
    made = _exported_as(tmp_path, "Canned-Machine")
    for force in (False, True):
        with pytest.raises(archive.ArchiveError) as refused:
            archive.import_set(made, results, force=force, own_set="elsewhere")
        message = str(refused.value)
        assert message.startswith("result set 'Canned-Machine' differs only in case from 'canned-machine' (in "), (
            message
        )
        assert "\n" not in message and message.endswith(archive.RENAME_AND_EXPORT)
    assert _left_in(results) == ["canned-machine"]
    assert {p.name: p.read_bytes() for p in (results / "canned-machine").iterdir()} == before
    # The same name exactly keeps the usual rule: replaced with --force.
    archive.import_set(_exported_as(tmp_path / "again", "canned-machine"), results, force=True, own_set="elsewhere")


def test_a_set_whose_name_differs_only_in_case_from_this_machines_is_refused_even_when_absent(tmp_path: Path) -> None:
    made = _exported_as(tmp_path, "AMD-EPYC-6.18.44-fc-v782-vm")
    with pytest.raises(
        archive.ArchiveError, match=r"differs only in case from 'amd-epyc-6.18.44-fc-v782-vm' \(this mach"
    ):
        archive.import_set(made, tmp_path / "results", force=True, own_set=["amd-epyc-6.18.44-fc-v782-vm"])
    assert _left_in(tmp_path / "results") == []


def test_a_hand_copied_pair_of_sets_differing_only_in_case_stops_the_load(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for name in ("Lab", "lab"):
        shutil.copytree(CANNED, results / name)
    with pytest.raises(store.StoreError) as refused:
        store.load_all(results)
    message = str(refused.value)
    assert "result sets 'Lab' and 'lab' differ only in case" in message, message
    assert "\n" not in message and message.endswith("rename or remove one of the two folders")
    (results / "Lab").rename(results / "lab-2")
    assert sorted(store.load_all(results)) == ["lab", "lab-2"]


def test_a_run_never_measures_into_an_imported_set(exported: Path, tmp_path: Path) -> None:
    layout = Layout(ROOT, results_dir=tmp_path / "results", build_dir=tmp_path / "build")
    target = archive.import_set(exported, layout.results)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(lesson_run.MachineError, match=r"'canned-machine' came by import .*never measures into"):
        pipeline.open_set(layout, "canned-machine")
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before


# --- export: never over what is not an earlier archive -----------------------------------------


@pytest.fixture
def results_copy(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    shutil.copytree(CANNED, results / "canned-machine")
    return results


def test_export_replaces_an_archive_only_with_force(results_copy: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.tar.gz"
    output.write_bytes(b"an earlier archive")
    with pytest.raises(
        archive.ArchiveError, match=r"out.tar.gz already exists; choose another --output, or use --force"
    ):
        archive.export_set(results_copy / "canned-machine", output)
    assert output.read_bytes() == b"an earlier archive"
    archive.export_set(results_copy / "canned-machine", output, force=True)
    assert tarfile.is_tarfile(output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar.gz", "results"], "no temporary left"


@pytest.mark.parametrize("kind", ["fifo", "symlink", "folder"])
def test_export_never_replaces_what_is_not_a_regular_file(results_copy: Path, tmp_path: Path, kind: str) -> None:
    # As root, --output /dev/null replaced the device with a regular file: a FIFO stands in for it here.
    output = tmp_path / "special"
    if kind == "fifo":
        os.mkfifo(output)
    elif kind == "symlink":
        (tmp_path / "kept.txt").write_text("kept")
        output.symlink_to(tmp_path / "kept.txt")
    else:
        output.mkdir()
    with pytest.raises(
        archive.ArchiveError, match=r"special exists and is not a regular file; an export never replaces"
    ):
        archive.export_set(results_copy / "canned-machine", output, force=True)
    assert {"fifo": stat.S_ISFIFO, "symlink": stat.S_ISLNK, "folder": stat.S_ISDIR}[kind](output.lstat().st_mode)


def test_export_never_writes_into_the_results_folder(results_copy: Path) -> None:
    set_json = results_copy / "canned-machine" / "set.json"
    before = set_json.read_bytes()
    for output in (set_json, results_copy / "canned-machine.tar.gz", results_copy / "new" / "x.tar.gz"):
        with pytest.raises(archive.ArchiveError, match=r"is inside the results folder .*; write the archive elsewhere"):
            archive.export_set(results_copy / "canned-machine", output, force=True)
    assert set_json.read_bytes() == before
    assert sorted(p.name for p in results_copy.iterdir()) == ["canned-machine"]


def test_export_to_a_place_that_cannot_be_written_is_one_line(results_copy: Path, tmp_path: Path) -> None:
    # /proc/version exists (refused without --force) and nothing can be created beside it.
    command = [sys.executable, "-m", "invoke", "results.export", "--set", "canned-machine", "--output", "/proc/version"]
    env = {**os.environ, "INVOKE_COURSE_RESULTS": str(results_copy), "INVOKE_COURSE_BUILD": str(tmp_path / "b")}
    for extra, expected in (([], "error: /proc/version already exists"), (["--force"], "error: cannot write /proc/")):
        finished = subprocess.run([*command, *extra], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
        assert finished.returncode == 2, finished.stderr
        (line,) = finished.stderr.strip().splitlines()
        assert line.startswith(expected) and "choose another --output" in line, line


def test_the_site_never_marks_an_imported_set_as_this_machine(exported: Path, tmp_path: Path, monkeypatch) -> None:
    # INVOKE_COURSE_SET naming an imported set: `invoke site` must not call it "this machine".
    layout = Layout(ROOT, results_dir=tmp_path / "results", build_dir=tmp_path / "build")
    archive.import_set(exported, layout.results)
    asked: list[str] = []
    monkeypatch.setattr(commands.site, "build_site", lambda layout, strict, current_set, **_: asked.append(current_set))
    commands.build_site(layout, set_name="canned-machine")
    assert asked == [""]


@pytest.mark.parametrize("name", ["nul", "CON", "Aux", "prn.old", "com1", "LPT9.set", "canned-machine."])
def test_a_set_named_as_windows_cannot_name_a_folder_is_refused(tmp_path: Path, name: str) -> None:
    # Copied to Windows, "x." and "x" are one folder, and con, nul, com1 ... name devices, never folders.
    assert store.page_name_problem(name)
    made = _exported_as(tmp_path, name)
    with pytest.raises(
        archive.ArchiveError, match=rf"set name {re.escape(repr(name))} (ends with a dot|is the name of a)"
    ):
        archive.import_set(made, tmp_path / "results", force=True, own_set="elsewhere")
    assert _left_in(tmp_path / "results") == []


@pytest.mark.parametrize("name", ["console", "null-device", "com10", "lpt", "a.b", "canned-machine"])
def test_names_that_only_look_like_a_windows_device_pass(name: str) -> None:
    assert store.page_name_problem(name) == ""
