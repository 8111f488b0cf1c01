"""What an imported (untrusted) result set can never do to the site: pose as the course's own sets, switch a
class column's unit, pool an emulated figure, blow up the build, or carry control characters to the page."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from course.kernel import guest_kernels, vm
from course.publish.sphinxext import ResultFileError, guest_mitigations
from course.publish.sphinxext.data import SETS_IN_FULL, CourseData, data_of
from course.publish.sphinxext.figures import class_cell, class_figure, class_spread
from course.results import archive, shown_text, store, validate
from course.results.store import ResultSet

ROOT = Path(__file__).resolve().parents[1]
CANNED = ROOT / "tests" / "roots" / "test-course" / "results" / "canned-machine"


def _guest_set(set_id: str, name: str, imported: bool = False, **guest: str) -> ResultSet:
    info: dict = {"kind": "measured", "label": set_id, "guest": {"name": name, "acceleration": "tcg-icount", **guest}}
    if imported:
        info["imported"] = {"at": "2026-12-01T00:00:00+00:00", "archive": f"{set_id}.tar.gz"}
    return ResultSet(set_id, Path("/nonexistent") / set_id, info)


def test_an_imported_set_with_a_guest_record_is_never_one_of_the_matrix() -> None:
    own = [_guest_set("qemu-icount-debian-6.1", "6.1"), _guest_set("qemu-icount-debian-6.12", "6.12")]
    posing = _guest_set("aaa-guest", "6.1", imported=True)
    assert guest_kernels.guest_sets([posing, *own]) == own, "never a kernel of the matrix, nor its baseline"
    assert guest_kernels.matrix_guest(posing) == {} and posing.info["guest"]["name"] == "6.1", "kept as provenance"
    # Lesson 8: a zzz-... set never replaces the real mitigations-off boot.
    cpu, off = "EPYC-Rome-v2", guest_mitigations.OFF
    real_on = _guest_set("on", "6.1", cpu_requested=cpu)
    real_off = _guest_set("off", "6.1", cpu_requested=cpu, kernel_parameters=off)
    fake_off = _guest_set("zzz-mitigations", "6.1", imported=True, cpu_requested=cpu, kernel_parameters=off)
    assert guest_mitigations.pairs([real_on, real_off, fake_off], cpu) == [("6.1", real_on, real_off)]


def test_an_imported_guest_set_is_pooled_in_the_class_not_shown_as_the_course_own(tmp_path: Path) -> None:
    data = CourseData(tmp_path / "none", ROOT)
    own = [_guest_set(f"qemu-{i}", f"6.{i}") for i in range(3)]
    imported = [_guest_set(f"aaa-{i}", "6.1", imported=True) for i in range(SETS_IN_FULL)]
    shown, pooled = data.compared([*own, *imported])
    assert shown == own and pooled == imported


def test_two_own_sets_claiming_one_guest_boot_are_named_both() -> None:
    one, other = _guest_set("qemu-a", "6.1"), _guest_set("qemu-b", "6.1")
    imported = _guest_set("aaa", "6.1", imported=True)
    assert guest_kernels.duplicate_guests([other, imported, one]) == [(one, other)]
    assert guest_kernels.duplicate_guests([one, _guest_set("qemu-c", "6.1", kernel_parameters="x")]) == []


def test_one_set_in_ns_never_switches_the_class_column_of_a_percentage_row() -> None:
    share = {"unit": "%", "value": 50.0, "status": "ok"}
    hijack = {"unit": "ns", "value": 1.0, "status": "ok", "runner": "host"}
    class_figures = [{**share, "value": 40.0 + i} for i in range(20)] + [hijack]
    spread = class_spread(class_figures, "value", anchors=[share])
    assert spread is not None and spread.unit == "%" and spread.count == 20 and spread.other_unit == 1
    assert (spread.low, spread.high) == (40.0, 59.0)
    # Without a figure of the course's own, the class's majority decides: still not the one set in ns.
    spread = class_spread(class_figures, "value")
    assert spread is not None and spread.unit == "%" and spread.other_unit == 1
    cell = class_cell(class_spread(class_figures, "value", anchors=[share]), 21).astext()
    assert "20 of 21 sets (1 in another unit left out)" in cell, cell


def test_a_misspelt_runner_or_acceleration_is_never_pooled_nor_stored() -> None:
    real = {"unit": "ticks", "min": 3000, "tsc_hz": 3e9, "status": "ok"}
    assert class_figure({**real, "runner": "vm", "acceleration": "TCG"}, "min") is None, "pooled by allow-list"
    assert class_figure({**real, "runner": "VM", "acceleration": "tcg"}, "min") is None
    assert class_figure({**real, "runner": "vm", "acceleration": "kvm"}, "min") == (1000.0, "ns")
    assert class_figure({**real, "runner": "host-kernel", "acceleration": "host-kernel"}, "min") == (1000.0, "ns")
    with pytest.raises(validate.SchemaError, match=r"acceleration = 'TCG', not one of kvm, tcg"):
        validate.check_measurement("m", {**real, "runner": "vm", "acceleration": "TCG"})
    with pytest.raises(validate.SchemaError, match=r"runner = 'guest', not one of host"):
        validate.check_measurement("m", {**real, "runner": "guest"})
    with pytest.raises(validate.SchemaError, match="unit 'ticks' under acceleration 'tcg'"):
        validate.check_measurement("m", {**real, "runner": "vm", "acceleration": "tcg"})
    validate.check_measurement("m", {**real, "unit": "emulated ticks", "runner": "vm", "acceleration": "tcg"})
    assert set(validate.ACCELERATIONS) == {*vm.ACCELERATIONS, "host-kernel"}, "one list of accelerations"


def test_every_shipped_set_still_validates() -> None:
    sets = store.load_all(ROOT / "results")
    assert "reference-2000" in sets and len(sets) > 10


@pytest.mark.sphinx("html", testroot="course", srcdir="course-duplicate-guest")
def test_the_site_warns_of_two_own_sets_claiming_one_guest_boot_naming_both(make_app, app) -> None:
    results = Path(app.srcdir) / "results"
    for name in ("guest-a", "guest-b", "guest-imported"):
        shutil.copytree(results / "other-machine", results / name)
        info = json.loads((results / name / "set.json").read_text())
        info["guest"] = {"name": "6.1", "acceleration": "tcg-icount"}
        if name == "guest-imported":
            info["imported"] = {"at": "2026-12-01T00:00:00+00:00", "archive": "x.tar.gz"}
        (results / name / "set.json").write_text(json.dumps(info))
    built = make_app("html", srcdir=app.srcdir)
    built.build()
    warnings = [line for line in built._warning.getvalue().splitlines() if "kernel matrix's boot" in line]
    assert len(warnings) == 1 and "'guest-a' and 'guest-b'" in warnings[0], warnings
    assert "guest-imported" not in warnings[0]


@pytest.mark.parametrize(
    ("file", "change", "field"),
    [
        ("set.json", lambda d: d.update(label="Lab \u202eCP 7"), "label"),
        (
            "03-timing.json",
            lambda d: d["measurements"]["03-timing/read.tty"].update(note="a\x1b[2Jb"),
            "measurements['03-timing/read.tty'].note",
        ),
    ],
)
def test_a_set_copied_by_hand_with_an_invisible_character_is_refused_on_load_naming_field_and_file(
    tmp_path: Path, file: str, change, field: str
) -> None:
    """Not imported, so not checked by the import: the load checks it as the import would, in one line."""
    copied = tmp_path / "results" / "canned-machine"
    shutil.copytree(CANNED, copied)
    data = json.loads((copied / file).read_text())
    change(data)
    (copied / file).write_text(json.dumps(data))
    with pytest.raises(store.StoreError) as refused:
        store.load_all(tmp_path / "results")
    message = str(refused.value)
    assert message.startswith(f"{copied / file} has {field} holding the invisible character U+"), message
    assert "\n" not in message and "remove control, bidi and other format characters" in message


@pytest.mark.parametrize("name", ["index", "search", "genindex", "Index"])
def test_a_set_named_after_a_page_of_the_site_is_refused_on_import(tmp_path: Path, name: str) -> None:
    shutil.copytree(CANNED, tmp_path / "made" / name)
    made = archive.export_set(tmp_path / "made" / name, tmp_path / f"{name}.tar.gz")
    with pytest.raises(archive.ArchiveError, match=rf"set name '{name}' is the name of one of the site's own pages"):
        archive.import_set(made, tmp_path / "results", own_set="mine")
    assert not (tmp_path / "results" / name).exists()


@pytest.mark.sphinx("html", testroot="course", srcdir="course-set-named-index")
def test_a_set_copied_by_hand_as_index_gets_no_page_and_a_warning(make_app, app) -> None:
    results = Path(app.srcdir) / "results"
    shutil.copytree(results / "other-machine", results / "index")
    built = make_app("html", srcdir=app.srcdir)
    built.build()
    warnings = [line for line in built._warning.getvalue().splitlines() if "course:" in line]
    assert len(warnings) == 1 and "'index' is the name of one of the site's own pages; not shown" in warnings[0]
    assert not (Path(built.outdir) / "machines" / "index.html").exists()
    assert (Path(built.outdir) / "machines" / "other-machine.html").is_file()


@pytest.mark.sphinx("html", testroot="course", srcdir="course-sets-differing-in-case")
def test_a_hand_copied_pair_of_sets_differing_only_in_case_stops_the_build_in_one_line(make_app, app) -> None:
    """Two pages on Linux, one (the other lost) once the site is copied to macOS or a Windows checkout."""
    results = Path(app.srcdir) / "results"
    shutil.copytree(results / "other-machine", results / "Other-Machine")
    with pytest.raises(ResultFileError) as refused:
        make_app("html", srcdir=app.srcdir)
    message = str(refused.value)
    assert "result sets 'Other-Machine' and 'other-machine' differ only in case" in message, message
    assert "\n" not in message


def test_a_file_checked_once_is_checked_again_when_one_byte_changes(tmp_path: Path) -> None:
    """The checks' memory (in the process, and a build's file of keys) trusts contents, never names nor dates."""
    copied = tmp_path / "results" / "canned-machine"
    shutil.copytree(CANNED, copied)
    assert "canned-machine" in store.load_all(tmp_path / "results")
    keys = store.checked_keys()
    file = copied / "03-timing.json"
    text = file.read_text()
    stat = file.stat()
    # The same size and date: only the content says it changed.
    file.write_text(text.replace('"status": "ok"', '"status": "no"', 1))
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file.stat().st_size == stat.st_size
    store.remember_checked(keys)
    with pytest.raises(store.StoreError, match=r"03-timing.json has measurements\[.*\].status = 'no'"):
        store.load_all(tmp_path / "results")


@pytest.mark.sphinx("html", testroot="course", srcdir="course-planted-checked-key")
def test_a_key_planted_beside_the_doctrees_never_spares_a_file_its_checks(
    make_app, app, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checked keys ride in Sphinx's pickled environment: a file of keys beside it is no way in."""
    app.build()
    set_file = Path(app.srcdir) / "results" / "other-machine" / "set.json"
    info = json.loads(set_file.read_text())
    info["label"] = "Lab \u202ePC 7"
    set_file.write_text(json.dumps(info))
    # As a new process would start (the first build's keys are in its environment, the planted ones in the file).
    monkeypatch.setattr(store, "_CHECKED", set())
    monkeypatch.setattr(store, "_SEEN", set())
    planted = Path(app.doctreedir) / "course-checked-files.txt"
    planted.write_text(store._checked_key(set_file, set_file.read_bytes()) + "\n")
    with pytest.raises(ResultFileError, match=r"set.json has label holding the invisible character U\+202E"):
        make_app("html", srcdir=app.srcdir)


@pytest.mark.sphinx("html", testroot="course", srcdir="course-checked-keys-kept")
def test_an_unchanged_rebuild_checks_no_file_again(make_app, app, monkeypatch: pytest.MonkeyPatch) -> None:
    app.build()
    monkeypatch.setattr(store, "_CHECKED", set())  # as a new process starts
    monkeypatch.setattr(store, "_SEEN", set())
    checked: list[str] = []
    real_check = store._check
    monkeypatch.setattr(store, "_check", lambda path, content: (checked.append(path.name), real_check(path, content)))
    rebuilt = make_app("html", srcdir=app.srcdir)
    assert checked == [], "the first build's keys came back with its environment"
    assert "other-machine" in data_of(rebuilt.env).sets
    # A changed file is checked again, and only that one.
    lesson = Path(app.srcdir) / "results" / "other-machine" / "03-timing.json"
    lesson.write_text(lesson.read_text() + "\n")
    monkeypatch.setattr(store, "_CHECKED", set())
    make_app("html", srcdir=app.srcdir)
    assert checked == ["03-timing.json"]


@pytest.mark.parametrize(
    ("measurement", "field"),
    [
        ({"unit": "ns", "median": 5e-324}, "m.median"),
        ({"unit": "ns", "min": 1, "histogram": {"start": 9e18, "width": 1e-3, "counts": [1]}}, "m.histogram.width"),
        ({"unit": "ns", "min": 1, "timeline": {"seconds": [0, 5e-324], "values": [1, 1]}}, "m.timeline.seconds"),
    ],
)
def test_a_subnormal_figure_or_a_bin_that_moves_nothing_is_refused(measurement: dict, field: str) -> None:
    with pytest.raises(validate.SchemaError, match=rf"has {field} = "):
        validate.check_measurement("m", {"status": "ok", **measurement})


def test_an_archive_named_with_invisible_characters_is_imported_with_them_escaped(tmp_path: Path) -> None:
    """Its name is recorded after the checks: stored as it was, every later load refused the set."""
    shutil.copytree(CANNED, tmp_path / "made" / "other")
    made = archive.export_set(tmp_path / "made" / "other", tmp_path / "other.tar.gz")
    renamed = made.rename(tmp_path / "class-\u202egz.tar.\x1b[31m.tar.gz")
    archive.import_set(renamed, tmp_path / "results", own_set="mine")
    loaded = store.load_all(tmp_path / "results")
    recorded = json.loads((tmp_path / "results" / "other" / "set.json").read_text())["imported"]["archive"]
    assert recorded == "class-\\u202egz.tar.\\u001b[31m.tar.gz" and "other" in loaded


@pytest.mark.parametrize(
    ("file", "content", "field"),
    [
        ("set.json", {"machine": {"mitigations": {"MIT\u202eKEY": "Vulnerable"}}}, "machine.mitigations["),
        ("set.json", {"machine": {"mitigations": {"meltdown": "a\x1b[2Jb"}}}, "machine.mitigations.meltdown"),
        ("set.json", {"machine": {"MACH\u202e": "x"}}, "machine["),
        ("set.json", {"label": "two\nlines"}, "label"),
        ("01-x.json", {"kernel_run": {"why": "a\x07b"}}, "kernel_run.why"),
        ("01-x.json", {"kernel_run": {"guest_machine": {"mitigations": {"m": "\u2066x"}}}}, "kernel_run.guest_machine"),
        ("01-x.json", {"measurements": {"01-x/a": {"unit": "n\ns"}}}, "measurements['01-x/a'].unit"),
        ("01-x.json", {"exercises": {"e": {"a\x1bb": {"status": "ok"}}}}, "exercises['e']"),
        ("01-x.json", {"sources": {"code/\u202ea.c": "0" * 64}}, "sources["),
        ("01-x.json", {"captures": {"01-x/c": {"text": "out\x01put\u202e"}}}, "captures['01-x/c'].text"),
    ],
)
def test_every_key_and_text_of_a_file_is_checked_for_invisible_characters(file: str, content: dict, field: str) -> None:
    with pytest.raises(validate.SchemaError, match=r"invisible character U\+") as refused:
        shown_text.check_shown_text(file, content)
    assert str(refused.value).startswith(f"has {field}"), str(refused.value)


def test_output_logs_and_free_text_keep_their_lines_and_tabs() -> None:
    shown_text.check_shown_text(
        "01-x.json",
        {
            "captures": {"01-x/run": {"text": "a\tb\nc\n"}},
            "failures": [{"step": "s", "message": "x\ny", "log": "l\n"}],
            "measurements": {"01-x/a": {"reason": "cc said:\n\terror", "unit": "ns"}},
            "exercises": {"e": {"student": {"status": "not yet", "detail": "line\nline"}}},
        },
    )


def test_a_kernel_runs_acceleration_is_one_the_course_knows() -> None:
    with pytest.raises(validate.SchemaError, match=r"kernel_run.acceleration = 'TCG', not one of kvm, tcg"):
        validate.check_lesson_file({"schema": 1, "kernel_run": {"acceleration": "TCG"}})
    validate.check_lesson_file({"schema": 1, "kernel_run": {"acceleration": "tcg-icount"}})
    validate.check_lesson_file({"schema": 1, "kernel_run": {"acceleration": None}})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(label="L" * 1_000_000), "has label of 1,000,000 characters, more than the 200 it may hold"),
        (lambda d: d.update(citation="c" * 201), "has citation of 201 characters, more than the 200"),
        (lambda d: d["machine"].update(cpu_model="C" * 300), "has machine.cpu_model of 300 characters"),
        (lambda d: d["machine"].update(note="n" * 2001), "has machine.note of 2,001 characters, more than the 2,000"),
        (lambda d: d["machine"].update(mitigations={"m" * 201: "x"}), "has machine.mitigations (a name) of 201"),
        (lambda d: d["machine"].update(tsc_flags=["f"] * 201), "has machine.tsc_flags of 201 entries"),
        (lambda d: d.update(guest={"name": "g" * 201}), "has guest['name'] of 201 characters"),
    ],
)
def test_over_long_text_of_a_set_is_refused_naming_field_and_bound(tmp_path: Path, change, message: str) -> None:
    """A 1,000,000-character label made a 32 MB site (every page names the set)."""
    copied = tmp_path / "results" / "canned-machine"
    shutil.copytree(CANNED, copied)
    info = json.loads((copied / "set.json").read_text())
    change(info)
    (copied / "set.json").write_text(json.dumps(info))
    with pytest.raises(store.StoreError) as refused:
        store.load_all(tmp_path / "results")
    assert f"{copied / 'set.json'} {message}" in str(refused.value) and "\n" not in str(refused.value)
    assert "shorten it" in str(refused.value) or "entries" in message
    with pytest.raises(validate.SchemaError, match=r"it may hold|a result file may hold"):
        validate.check_set_info(info)


def test_the_shipped_sets_longest_text_is_well_within_the_bounds() -> None:
    for info in (json.loads(path.read_text()) for path in (ROOT / "results").glob("*/set.json")):
        validate.check_set_info(info)
        assert len(info.get("label", "")) < validate.MOST_IN_NAME, "room for a longer label"


@pytest.mark.parametrize("filler", ["\u3164", "\u115f", "\u1160", "\u2800", "\u034f", "\uffa0", "\u180e", "\u17b4"])
def test_a_printable_filler_that_shows_nothing_is_refused(filler: str) -> None:
    """A label of Hangul fillers or braille blanks looks empty (or like another set's label) on every page."""
    with pytest.raises(validate.SchemaError, match=rf"has label holding the invisible character U\+{ord(filler):04X}"):
        shown_text.check_shown_text("set.json", {"label": f"Lab{filler}CP 7"})
    with pytest.raises(validate.SchemaError, match=r"captures\['01-x/c'\]\.text holding"):
        shown_text.check_shown_text("01-x.json", {"captures": {"01-x/c": {"text": f"out\x01{filler}"}}})
    assert not shown_text.shows(filler)


def test_a_character_under_more_combining_marks_than_unicode_streams_is_refused() -> None:
    """300 accents on one letter draw over the lines around it (and wrapped into lines that looked blank)."""
    with pytest.raises(validate.SchemaError, match=r"has machine.cpu_model with more than 30 combining marks"):
        shown_text.check_shown_text("set.json", {"machine": {"cpu_model": "CPU e" + "\u0301" * 300}})
    with pytest.raises(validate.SchemaError, match=r"has label with more than 30"):
        shown_text.check_shown_text("set.json", {"label": "a" + "\u0301\u0302" * 16})
    for mark in ("\u0489", "\u20dd", "\u07a6"):  # marks whose combining class is 0 (enclosing, Thaana)
        with pytest.raises(validate.SchemaError, match=r"has label with more than 30"):
            shown_text.check_shown_text("set.json", {"label": "e" + mark * 300})
    # What scripts write passes: Vietnamese stacks two marks, and many letters each carry some.
    shown_text.check_shown_text("set.json", {"label": "Tie\u0302\u0301ng Vie\u0323\u0302t " + "e\u0301" * 100})


def test_an_ideographic_space_is_accepted_and_shown_as_itself() -> None:
    shown_text.check_shown_text("set.json", {"machine": {"cpu_model": "AMD\u3000EPYC"}})
    assert shown_text.printable("AMD\u3000EPYC\u00a0x") == "AMD\u3000EPYC\u00a0x", "a space, not \\u3000"
    assert shown_text.printable("a\x1b[2Jb\u202ec") == "a\\x1b[2Jb\\u202ec", "controls and bidi still escaped"


@pytest.mark.parametrize(
    ("kept", "message"),
    [
        ({"tscstep": "2026-10-31T09:15:00+00:00" + "0" * 1_000_000}, r"kept\['tscstep'\] = .*, not a time stamp"),
        ({"tscstep": "yesterday"}, r"kept\['tscstep'\] = 'yesterday', not a time stamp"),
        ({"p" * 201: "2026-10-31T09:15:00+00:00"}, r"kept \(a name\) of 201 characters"),
        ({f"p{n}": "2026-10-31T09:15:00+00:00" for n in range(201)}, r"kept of 201 entries"),
    ],
)
def test_a_student_reruns_kept_dates_are_time_stamps_of_bounded_length(kept: dict, message: str) -> None:
    with pytest.raises(validate.SchemaError, match=message):
        validate.check_lesson_file({"schema": 1, "kept": kept})
    validate.check_lesson_file({"schema": 1, "kept": {"tscstep": "2026-10-31T09:15:00+00:00"}})
