"""The course's code that shapes the guest from memory is a source of its figures: a change to it shows them stale.

Lesson 9's guest from memory runs an ``/init`` and an initramfs that course/kernel/ram_guest.py writes
(course.results.code_parts): the definitions that shape them are recorded with each figure, and the site's
check of a kernel matrix's set names them when their code changes, as it names a changed file of code/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sphinx.testing.util import SphinxTestApp

from course import pipeline
from course.kernel import memory_boot, ram_guest
from course.measure import lessons
from course.results import code_parts, store
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]

GUEST_CODE = '''"""The guest's init."""

#: How long a job may take.
SECONDS = 120


def init_script(jobs):
    """The /init."""
    return "#!/bin/busybox sh\\n" + "sleep %d\\n" % SECONDS  # one line per job


def shown(jobs):
    return "progress"
'''


def test_only_the_code_of_the_named_definitions_counts() -> None:
    names = ("SECONDS", "init_script")
    before = code_parts.parts_digest(GUEST_CODE, names)
    worded = GUEST_CODE.replace('"""The /init."""', '"""Its /init, reworded."""').replace("# one line", "# a line")
    assert code_parts.parts_digest(worded, names) == before, "docstrings and comments are words, not code"
    assert code_parts.parts_digest(GUEST_CODE.replace('"progress"', '"shown"'), names) == before, "another function"
    assert code_parts.parts_digest(GUEST_CODE.replace("busybox sh", "sh"), names) != before, "the init it writes"
    assert code_parts.parts_digest(GUEST_CODE.replace("= 120", "= 60"), names) != before, "a constant it uses"
    gone = GUEST_CODE.replace("def init_script", "def init_lines")
    assert code_parts.parts_digest(gone, names) != before, "a definition that is gone is a change"
    assert code_parts.parts_digest("def (", names) != before, "a file that is no Python matches nothing"


def test_a_source_key_names_its_file_and_definitions(tmp_path: Path) -> None:
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "guest.py").write_text(GUEST_CODE)
    source_key = code_parts.key("course/guest.py", ("SECONDS", "init_script"))
    assert source_key == "course/guest.py::SECONDS,init_script" and code_parts.is_parts(source_key)
    digest = code_parts.current(tmp_path, source_key)
    assert digest == code_parts.parts_digest(GUEST_CODE, ("SECONDS", "init_script"))
    assert code_parts.changed({source_key: digest, "code/user/x.c": "0" * 64}, tmp_path) == [], "only definitions"
    (tmp_path / "course" / "guest.py").write_text(GUEST_CODE.replace("120", "121"))
    assert code_parts.changed({source_key: digest}, tmp_path) == [source_key]
    assert code_parts.current(tmp_path, "course/gone.py::init_script") is None


@pytest.mark.parametrize(
    "source_key",
    [
        "..::x",
        "code/..::x",
        "course/../../etc/passwd.py::x",
        "/course/x.py::x",
        ".venv/pyvenv.cfg::x",
        "course/results.json::x",
        "course/x.py::" + ",".join(f"n{i}" for i in range(51)),
        "course/x.py::a b",
    ],
)
def test_the_schema_refuses_a_source_key_of_no_python_of_the_course(source_key: str) -> None:
    from course.results import validate
    from course.results.schema_types import SchemaError

    with pytest.raises(SchemaError) as refused:
        validate.check_lesson_file({"sources": {source_key: "0" * 64}})
    assert len(str(refused.value).splitlines()) == 1 and str(refused.value).startswith("has the source ")
    assert "under course/" in refused.value.fix
    validate.check_lesson_file({"sources": {"course/kernel/ram_guest.py::SECONDS,init_script": "0" * 64}})


def test_a_source_key_reads_no_link_no_large_file_and_no_file_outside_course(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    (root / "course").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "guest.py").write_text(GUEST_CODE)
    (root / "course" / "guest.py").write_text(GUEST_CODE)
    (root / "guest.py").write_text(GUEST_CODE)
    assert code_parts.current(root, "course/guest.py::SECONDS") is not None
    (root / "course" / "linked.py").symlink_to(outside / "guest.py")
    (root / "course" / "linked").symlink_to(outside)
    (root / "course" / "big.py").write_text("x = 1\n" + "#" * code_parts.MAX_FILE_BYTES)
    (root / "course" / "folder.py").mkdir()
    for source_key in (
        "course/linked.py::SECONDS",  # a link inside the checkout leads anywhere
        "course/linked/guest.py::SECONDS",
        "course/big.py::x",  # parsed, it would take ~180 bytes of memory per byte
        "course/folder.py::x",
        "guest.py::SECONDS",  # not under course/
        "code/../course/guest.py::SECONDS",
    ):
        assert code_parts.current(root, source_key) is None, source_key
    assert code_parts.changed({"course/big.py::x": "0" * 64}, root) == ["course/big.py::x"], "read as missing: stale"


def test_the_guests_figures_carry_the_code_that_packed_it() -> None:
    """What record_in_memory adds to each job's figures: the digests of ram_guest's definitions as they are now."""
    recorded = ram_guest.guest_code_sources()
    packing = code_parts.key("course/kernel/ram_guest.py", ram_guest.GUEST_CODE["course/kernel/ram_guest.py"])
    assert packing in recorded and {"init_script", "make_initramfs", "qemu_command"} <= set(
        packing.partition("::")[2].split(",")
    )
    assert code_parts.changed(recorded) == [], "recorded from the checkout's own files"
    program = memory_boot._with_sources({"binary": "/b", "sources": {"code/user/x.c": "1"}}, recorded)
    server = memory_boot._with_sources(
        {"ko": "/k.ko", "client": "/c", "client_sources": {"code/user/c.c": "2"}}, recorded
    )
    assert program["sources"] == {"code/user/x.c": "1", **recorded}
    assert server["client_sources"] == {"code/user/c.c": "2", **recorded}
    alone = {"ko": "/k.ko"}
    assert memory_boot._with_sources(alone, recorded) == alone, "a module's own figures take its lesson's sources"


def test_plain_tcgs_figures_carry_its_own_code_and_the_shipped_icount_sets_stay_current() -> None:
    """Plain tcg's guest has its own source keys (its options and boot), so the shipped icount sets, whose
    keys name the icount boot's definitions, are not made stale by the tcg path beside it."""
    icount, tcg = ram_guest.guest_code_sources("tcg-icount"), ram_guest.guest_code_sources("tcg")
    (tcg_key,) = [key for key in tcg if key.startswith("course/kernel/ram_guest.py")]
    names = set(tcg_key.partition("::")[2].split(","))
    assert {"TCG_OPTIONS", "tcg_command", "run_tcg_jobs", "init_script"} <= names
    assert "ICOUNT_OPTIONS" not in names and tcg_key not in icount
    shipped = {
        source_key: digest
        for path in sorted(ROOT.glob("results/qemu-icount-*/*.json"))
        if path.name != store.SET_FILE
        for figure in json.loads(path.read_text()).get("measurements", {}).values()
        for source_key, digest in figure.get("sources", {}).items()
        if code_parts.is_parts(source_key)
    }
    assert shipped and code_parts.changed(shipped) == [], "the shipped icount sets' guest code is as it was measured"


def _plant(srcdir: Path, code: str) -> str:
    """The guest's code under the test project, and its digest recorded with one figure of the 6.1 guest's set."""
    guest = srcdir / "course" / "kernel" / "ram_guest.py"
    guest.parent.mkdir(parents=True, exist_ok=True)
    guest.write_text(code)
    source_key = code_parts.key("course/kernel/ram_guest.py", ("SECONDS", "init_script"))
    lesson = srcdir / "results" / "qemu-icount-debian-6.1" / "04-kernel-read.json"
    data = json.loads(lesson.read_text())
    figure = data["measurements"]["04-kernel-read/read-iter.pipe"]
    figure["sources"] = {source_key: code_parts.parts_digest(GUEST_CODE, ("SECONDS", "init_script"))}
    lesson.write_text(json.dumps(data))
    page = srcdir / "index.md"
    shown = "\n\nFrom memory: {measure}`qemu-icount-debian-6.1@04-kernel-read/read-iter.pipe:median`.\n"
    if shown not in page.read_text():
        page.write_text(page.read_text() + shown)
    return source_key


@pytest.mark.sphinx("html", testroot="course-kernels")
def test_a_change_to_the_guests_init_makes_its_figures_stale(app: SphinxTestApp, make_app) -> None:
    srcdir = Path(app.srcdir)  # each build below loads the sets as it starts: planted before it
    source_key = _plant(srcdir, GUEST_CODE)
    first = make_app("html", srcdir=app.srcdir)
    first.build()
    assert "stale" not in first._warning.getvalue(), "the code it was measured with"

    _plant(srcdir, GUEST_CODE.replace("# one line per job", "# each job"))
    reworded = make_app("html", srcdir=app.srcdir)
    reworded.build()
    assert "stale" not in reworded._warning.getvalue(), "a comment changes no count"

    _plant(srcdir, GUEST_CODE.replace("busybox sh", "sh -e"))
    changed = make_app("html", srcdir=app.srcdir)
    changed.build()  # incremental: the page is read again because the guest's code changed
    warnings = changed._warning.getvalue()
    assert (
        f"measurement '04-kernel-read/read-iter.pipe' of 'qemu-icount-debian-6.1' is stale: {source_key} changed"
        in warnings
    )
    assert "run `invoke run --lesson 4 --guest-kernels 6.1 --acceleration tcg-icount`" in warnings


def test_a_lesson_whose_guest_code_changed_is_measured_again(tmp_path: Path) -> None:
    """A lesson file that records the guest's code reruns once that code is not what it was: it is an input."""
    root = tmp_path / "course"
    (root / "lessons").mkdir(parents=True)
    (root / "conf.py").write_text("")
    (root / "lessons" / "01-mini.md").write_text("# Mini\n")
    code = root / "code" / "user" / "01-mini"
    code.mkdir(parents=True)
    (root / "code" / "user" / "common").mkdir()
    (code / "lesson.toml").write_text('[[run]]\nprogram = "prog"\n')
    (code / "prog.c").write_text(
        '#include <stdio.h>\nint main(void) { printf("course: measure x unit=ticks samples=2\\n'
        'course: hist x 5x2\\n"); return 0; }\n'
    )
    layout = Layout(root)
    set_path = pipeline.open_set(layout)
    lesson = lessons.find(layout, 1)
    quiet = lambda line: None  # noqa: E731
    assert not pipeline.measure_lesson(layout, lesson, set_path, progress=quiet).cached
    assert pipeline.measure_lesson(layout, lesson, set_path, progress=quiet).cached, "nothing changed"
    stored = store.read_json(set_path / "01-mini.json")
    recorded = ram_guest.guest_code_sources()
    store.save_lesson(set_path, "01-mini", {**stored, "sources": {**stored["sources"], **recorded}})
    assert pipeline.measure_lesson(layout, lesson, set_path, progress=quiet).cached, "the same guest code"
    stored = store.read_json(set_path / "01-mini.json")
    packing = next(iter(recorded))
    store.save_lesson(set_path, "01-mini", {**stored, "sources": {**stored["sources"], packing: "0" * 64}})
    assert not pipeline.measure_lesson(layout, lesson, set_path, progress=quiet).cached, "its guest's code changed"
