"""The pipeline with a real compiler and real runs (marked slow: they take seconds)."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from course import pipeline
from course.kernel import call_graphs
from course.measure import lessons
from course.measure.runners import run_on_host
from course.results import store
from course.results.layout import Layout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_every_lesson_ran_without_a_failure(measured_course) -> None:
    _, _, reports = measured_course
    assert [failure for report in reports for failure in report.failures] == []


def test_lesson_3_measures_plausible_figures(measured_course) -> None:
    _, set_path, _ = measured_course
    measured = store.read_json(set_path / "03-timing.json")["measurements"]
    stamp = measured["03-timing/stamp-pair"]  # measured once, for every kind of file
    for kind in ("tty", "file", "devnull", "pipe", "zero", "socket"):
        read = measured[f"03-timing/read.{kind}"]
        assert stamp["status"] == read["status"] == "ok"
        assert read["files"] == ["tty", "file", "devnull", "pipe", "zero", "socket"]  # how it was measured
        assert stamp["min"] > 0, "the stamp pair itself takes time"
        # read figures have the stamp pair subtracted: the raw read costs more than the pair
        assert read["overhead"]["ticks"] == stamp["min"]
        assert read["min"] > 0
        assert read["min"] <= read["median"] <= read["p90"] <= read["p99"] <= read["max"]
        assert read["samples"] == 200000
        assert sum(read["histogram"]["counts"]) + read["histogram"]["above"] == read["samples"]
    info = store.read_json(set_path / "set.json")
    assert info["machine"]["tsc_hz"] > 1e8, "the TSC rate was measured and recorded"
    sources = store.read_json(set_path / "03-timing.json")["sources"]
    assert set(sources) >= {"code/user/03-timing/usystime.c", "code/user/common/stamp.h"}


def test_every_kernel_variant_has_a_figure_or_a_reason(measured_course) -> None:
    """The VM booted (once) and each module variant either measured or said why not."""
    layout, set_path, _ = measured_course
    for lesson in lessons.discover(layout):
        if not lesson.modules:
            continue
        stored = store.read_json(set_path / f"{lesson.name}.json")
        assert stored["kernel_run"]["runner"] == "vm"
        assert stored["kernel_run"]["acceleration"] in ("kvm", "tcg")
        assert "unavailable" not in stored["kernel_run"], stored["kernel_run"].get("unavailable")
        for module in lesson.modules:
            # A server module (lesson 9) is measured by its client, not once per kind of standard input.
            ids = (
                [f"{lesson.name}/{name}" for name in module.measures]
                if module.client
                else [f"{lesson.name}/{name}.{stdin}" for stdin in module.stdin for name in module.measures]
            )
            for measurement_id in ids:
                measurement = stored["measurements"][measurement_id]
                if measurement["status"] == "ok":
                    assert measurement["samples"] > 0 and measurement["min"] >= 0
                else:
                    assert measurement["status"] == "skipped" and measurement["reason"]
    lesson_4 = store.read_json(set_path / "04-kernel-read.json")["measurements"]
    assert lesson_4["04-kernel-read/read-iter.tty"]["status"] == "ok"
    assert lesson_4["04-kernel-read/kernel-read.devnull"]["status"] == "skipped", "/dev/null has ->read"
    boots = [s for r in measured_course[2] for s in r.steps if s.get("shared") and s["name"].startswith("vm boot")]
    assert len({s["name"] for s in boots}) == 1, "all kernel examples share one VM boot"


def test_the_user_space_side_ran_in_the_modules_own_boot(measured_course) -> None:
    """Lessons 4 and 6 compare a program's empty read with the module's from one boot: one kernel, one unit."""
    _, set_path, reports = measured_course
    for lesson in ("04-kernel-read", "06-skipping-layers"):
        stored = store.read_json(set_path / f"{lesson}.json")
        figures = stored["measurements"]
        user, kernel = figures[f"{lesson}/user.usystime.read.tty"], figures[f"{lesson}/read-iter.tty"]
        assert user["status"] == "ok" and kernel["status"] == "ok"
        for key in ("unit", "runner", "acceleration", "guest_kernel"):
            assert user[key] == kernel[key], f"{lesson}: both sides share {key}"
        assert user["runner"] == "vm" and user["guest_kernel"] != os.uname().release
        saving = figures[f"{lesson}/saving.read-iter.tty"]
        assert saving["status"] == "ok" and saving["unit"] == kernel["unit"]
        assert saving["value"] == pytest.approx(user["median"] - kernel["median"])
        percent = figures[f"{lesson}/saving-percent.read-iter.tty"]
        assert percent["unit"] == "%" and percent["value"] == pytest.approx(100 * saving["value"] / user["median"])
        guest = stored["kernel_run"]["guest_machine"]
        assert guest["kernel_release"] == user["guest_kernel"], "the guest's own provenance is kept"
    lesson_4 = store.read_json(set_path / "04-kernel-read.json")["measurements"]
    assert lesson_4["04-kernel-read/user.entry.invalid-syscall"]["status"] == "ok"
    assert lesson_4["04-kernel-read/user.slope.file"]["status"] == "ok"
    lesson_7 = store.read_json(set_path / "07-bytes.json")["measurements"]
    kernel_saving = lesson_7["07-bytes/kernel-saving.tty"]
    if lesson_4["04-kernel-read/user.slope.file"]["acceleration"] == "tcg":
        # Emulated ticks keep no proportions between a call and a copy: that break-even is refused.
        assert kernel_saving["status"] == "skipped" and "keep no proportions" in kernel_saving["reason"]
    else:
        assert kernel_saving["status"] == "ok" and kernel_saving["unit"] == "bytes", kernel_saving.get("reason")
    # The break-even on this machine's own clock: its floor over its slope, both from one run of bytes.c.
    floor, slope = lesson_7["07-bytes/break-even.floor.file"], lesson_7["07-bytes/slope.file"]
    if slope["status"] == "skipped":  # a loaded machine's run: its fitted byte cost fell below its noise
        assert "below this run's noise" in slope["reason"], slope["reason"]
        assert floor["status"] == "skipped" and "slope.file" in floor["reason"], floor
    else:
        assert floor["status"] == "ok" and floor["unit"] == "bytes" and floor.get("runner", "host") == "host"
        assert floor["value"] == pytest.approx(lesson_7["07-bytes/invalid-syscall.file"]["median"] / slope["value"])
    guest_runs = [s["name"] for r in reports for s in r.steps if s["name"] == "run 03-timing/usystime in the guest"]
    assert guest_runs == ["run 03-timing/usystime in the guest"], "one run serves both lessons"


def test_lesson_2_traced_one_read_of_each_kind_in_the_modules_boot(measured_course) -> None:
    """The call graphs of lesson 2 come from the modules' one VM boot, one per kind of file, kept as text."""
    _, set_path, reports = measured_course
    stored = store.read_json(set_path / "02-read-path.json")
    assert stored["runner"] == "host", "its programs ran here; only the trace ran in the VM"
    run = stored["kernel_run"]
    assert run["runner"] == "vm" and run["acceleration"] in ("kvm", "tcg") and run["guest_kernel"]
    methods = {
        "devnull": "read_null();",
        "zero": "read_zero();",
        "pipe": "pipe_read();",
        "socket": "sock_read_iter();",
        "tty": "tty_read() {",
        "file": "read_iter",
    }
    for kind, method in methods.items():
        capture = stored["captures"][f"02-read-path/trace.{kind}"]
        text, lines = capture["text"], capture["text"].splitlines()
        # x64_sys_call() where the kernel has the switch (6.1.85 and later), else the read itself.
        assert lines[0] in ("x64_sys_call() {", "__x64_sys_read() {"), lines[:3]
        for step in ("ksys_read() {", "vfs_read() {", "rw_verify_area() {", method):
            assert step in text, (kind, step)
        assert "course-trace" not in text and len(lines) <= call_graphs.GRAPH_LINES
        assert capture["command"].endswith("read returned 0") and run["guest_kernel"] in capture["command"]
    steps = [s["name"] for r in reports if r.lesson.name == "02-read-path" for s in r.steps]
    assert "trace 02-read-path/readtrace under function_graph, in the VM" in steps
    (boot,) = {s["name"] for r in reports for s in r.steps if s.get("shared") and s["name"].startswith("vm boot")}
    # virtme-ng's boot says "(tcg)", the guest from memory's "(tcg, initramfs guest ...)"
    assert f"and 1 traces ({run['acceleration']}" in boot, "the trace shares the modules' boot"


def test_lesson_8_timed_the_empty_read_under_seccomp_filters(measured_course) -> None:
    _, set_path, _ = measured_course
    stored = store.read_json(set_path / "08-since-2000.json")
    figures = stored["measurements"]
    for lane in ("read-unfiltered", "read-allow-all", "read-filter-runs"):
        read = figures[f"08-since-2000/seccomp.{lane}"]
        assert read["status"] == "ok" and read["samples"] == 100000, read.get("reason")
        assert read["overhead"]["from"] == "08-since-2000/seccomp.stamp-pair"
    for name in ("allow-all", "filter-runs"):
        cost = figures[f"08-since-2000/seccomp.cost.{name}"]
        assert cost["status"] == "ok" and cost["unit"] == "ticks" and cost["runner"] == "host"
        assert figures[f"08-since-2000/seccomp.percent.{name}"]["unit"] == "%"
    output = stored["captures"]["08-since-2000/seccomp.output"]["text"]
    assert "allow-all filter: Seccomp_filters:\t1" in output and "no filter: Seccomp:\t0" in output


def test_unchanged_inputs_reuse_results_and_changed_ones_rerun(scratch_layout: Layout) -> None:
    set_path = pipeline.open_set(scratch_layout)
    lesson = lessons.find(scratch_layout, 1)
    first = pipeline.measure_lesson(scratch_layout, lesson, set_path, progress=lambda line: None)
    second = pipeline.measure_lesson(scratch_layout, lesson, set_path, progress=lambda line: None)
    forced = pipeline.measure_lesson(scratch_layout, lesson, set_path, force=True, progress=lambda line: None)
    assert not first.cached and second.cached and not forced.cached
    assert second.stored["measured_at"] == first.stored["measured_at"]


def _mini_course(tmp_path: Path, program: str, toml: str) -> Layout:
    root = tmp_path / "course"
    (root / "lessons").mkdir(parents=True)
    (root / "conf.py").write_text("")
    (root / "lessons" / "01-mini.md").write_text("# Mini\n")
    code = root / "code" / "user" / "01-mini"
    code.mkdir(parents=True)
    (root / "code" / "user" / "common").mkdir()
    (code / "lesson.toml").write_text(toml)
    (code / "prog.c").write_text(program)
    return Layout(root)


GOOD = r"""#include <stdio.h>
int main(void) { printf("course: measure x unit=ticks samples=2\ncourse: hist x 5x2\n"); return 0; }
"""


def test_a_failed_build_keeps_earlier_results_and_records_the_log(tmp_path: Path) -> None:
    layout = _mini_course(tmp_path, GOOD, '[[run]]\nprogram = "prog"\n')
    set_path = pipeline.open_set(layout)
    lesson = lessons.find(layout, 1)
    assert pipeline.measure_lesson(layout, lesson, set_path, progress=lambda line: None).failures == []
    (lesson.code_dir / "prog.c").write_text("int main(void) { return syntax error; }\n")
    report = pipeline.measure_lesson(layout, lesson, set_path, progress=lambda line: None)
    assert [f["step"] for f in report.failures] == ["build"]
    assert "error" in report.failures[0]["log"]
    stored = store.read_json(set_path / "01-mini.json")
    assert stored["measurements"]["01-mini/x"]["min"] == 5, "the earlier figure is kept"


def test_a_crashing_or_hanging_program_is_a_recorded_failure(tmp_path: Path) -> None:
    crash = "#include <stdlib.h>\nint main(void) { abort(); }\n"
    layout = _mini_course(tmp_path, crash, '[[run]]\nprogram = "prog"\n')
    set_path = pipeline.open_set(layout)
    report = pipeline.measure_lesson(layout, lessons.find(layout, 1), set_path, progress=lambda line: None)
    assert report.failures[0]["step"] == "run" and "exited with -6" in report.failures[0]["message"]

    hang = "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n"
    layout = _mini_course(tmp_path / "hang", hang, '[[run]]\nprogram = "prog"\ntimeout = 1\n')
    set_path = pipeline.open_set(layout)
    report = pipeline.measure_lesson(layout, lessons.find(layout, 1), set_path, progress=lambda line: None)
    assert "stopped (timeout)" in report.failures[0]["message"]


def test_unknown_lesson_on_the_command_line_lists_the_lessons(course_root: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "invoke", "lesson", "99"], cwd=course_root, capture_output=True, text=True
    )
    assert finished.returncode == 2
    assert "there is no lesson 99; the lessons are: 1 (01-user-kernel), 2 (02-read-path), 3" in finished.stderr


def test_the_whole_site_builds_without_a_warning(built_site: Layout) -> None:
    """The site, built with -W (a warning fails the fixture) from the results measured in this session."""
    layout = built_site
    page = (layout.html / "lessons" / "03-timing.html").read_text()
    assert "course-value" in page and "<svg" in page
    assert "emulated ticks" in (layout.html / "lessons" / "04-kernel-read.html").read_text()
    assert (layout.html / "docs" / "api" / "results.html").read_text().count("course.results.store") > 1


#: Pages Sphinx writes at the end of every build, whatever changed: its indices and the search page.
SPHINX_OWN_PAGES = {"genindex.html", "py-modindex.html", "search.html"}


def _dates(folder: Path, pattern: str) -> dict[str, int]:
    return {path.relative_to(folder).as_posix(): path.stat().st_mtime_ns for path in folder.rglob(pattern)}


def _texts(folder: Path) -> dict[str, str]:
    return {path.relative_to(folder).as_posix(): path.read_text(encoding="utf-8") for path in folder.rglob("*.html")}


def test_a_rerun_of_lesson_3_rewrites_exactly_the_pages_that_show_its_figures(
    built_site: Layout, measured_course
) -> None:
    """``invoke lesson 3``'s work, for real: the programs run again, then the site is built again (with -W).

    The pages rewritten are those whose text changed, every page that shows a figure of this set's
    lesson 3 among them, and no other page is even read again; a chart is drawn again only when
    what it shows changed. The session's site is left built from the new figures, as a rerun leaves it.
    """
    from course.publish import site
    from course.publish.sphinxext import chartcache

    layout, set_path, _ = measured_course
    # The session's site as built: a build writes its generated machine pages beside its own doctrees (other tests'
    # builds of this checkout never touch them), so this one starts Sphinx only if an input changed since.
    site.build_site(layout, strict=True, current_set=set_path.name)
    charts = layout.doctrees / chartcache.FOLDER
    pages, doctrees, drawn = _dates(layout.html, "*.html"), _dates(layout.doctrees, "*.doctree"), _dates(charts, "*")
    before = _texts(layout.html)
    time.sleep(0.01)  # a file written from here on has a later date, whatever the clock's step
    report = pipeline.measure_lesson(layout, lessons.find(layout, 3), set_path, force=True)
    assert report.failures == [] and not report.cached, "the programs ran again"
    site.build_site(layout, strict=True, current_set=set_path.name)

    after = _texts(layout.html)
    rewritten = {page for page, date in _dates(layout.html, "*.html").items() if pages.get(page) != date}
    rewritten -= SPHINX_OWN_PAGES
    changed = {page for page, text in after.items() if before.get(page) != text}
    assert rewritten == changed, "a page was rewritten the same, or a changed page was not rewritten"
    figure = re.compile(rf'data-measurement="03-timing/[^"]*" data-set="{re.escape(set_path.name)}"')
    showing = {page for page, text in after.items() if figure.search(text)}
    # A chart carries no figure's id: the pages that drew one from lesson 3's file are read from Sphinx's
    # environment, where each page notes the result files it shows, whole ("bytes:<file>") or one measurement
    # of them (["figure", "measurement", id, "", file]: course.publish.sphinxext.depends).
    environment = pickle.loads((layout.doctrees / "environment.pickle").read_bytes())
    lesson_file = f"/{set_path.name}/03-timing.json"

    def shows_lesson_3(key: str) -> bool:
        if key.startswith("["):
            _, view, _, _, path = json.loads(key)
            return view == "measurement" and path.endswith(lesson_file)
        return key.startswith("bytes:") and key.endswith(lesson_file)

    charted = {
        f"{docname}.html"
        for docname, records in environment.course_depends.items()
        if any(shows_lesson_3(key) for key in records)
    }
    showing |= charted
    assert "lessons/03-timing.html" in showing and showing <= rewritten, "a figure of lesson 3 left as it was"
    # Beside the pages that show a lesson 3 figure (lessons 4, 6 and 8 set the host's entry and exit, measured in
    # lesson 3's run, against 2000), only the set's own overview pages may change: its figures, its run's time.
    overview = {"docs/index.html", "docs/machines.html", f"docs/machines/{set_path.name}.html", "docs/report.html"}
    assert rewritten - showing <= overview, "a page that shows no figure of lesson 3 was rewritten"
    assert {"lessons/05-get-fs.html", "docs/glossary.html"}.isdisjoint(rewritten)
    read_again = {name for name, date in _dates(layout.doctrees, "*.doctree").items() if doctrees.get(name) != date}
    assert {name.removesuffix(".doctree") + ".html" for name in read_again} == rewritten, "a page read for nothing"

    now = _dates(charts, "*")
    assert all(now[name] == date for name, date in drawn.items() if name in now), "an unchanged chart was redrawn"
    new = [json.loads((charts / name).read_text())["svg"] for name in now.keys() - drawn.keys()]
    assert new, "lesson 3's histograms show new figures: they are drawn again"
    assert not any(svg in text for svg in new for text in before.values()), "a chart drawn again showed the same"
    assert all(any(svg in after[page] for page in rewritten) for svg in new)


def test_a_module_that_does_not_build_is_a_recorded_failure(tmp_path: Path) -> None:
    """A real kernel build (make against the installed headers) that fails; no VM is booted for it."""
    layout = _mini_course(tmp_path, GOOD, '[[run]]\nprogram = "prog"\n')
    kernel = layout.root / "code" / "kernel" / "01-mini"
    kernel.mkdir(parents=True)
    (layout.root / "code" / "kernel" / "common").mkdir()
    (kernel / "broken.c").write_text("#include <linux/module.h>\nstatic int __init f(void) { return nope; }\n")
    (kernel / "Kbuild").write_text("obj-m := broken.o\n")
    (kernel / "lesson.toml").write_text('[[module]]\nname = "broken"\nmeasures = ["x"]\n')
    set_path = pipeline.open_set(layout)
    lines: list[str] = []
    report = pipeline.measure_lesson(layout, lessons.find(layout, 1), set_path, progress=lines.append)
    assert [(f["step"], f["what"]) for f in report.failures] == [("build", "module broken")]
    assert "nope" in report.failures[0]["log"], "the compiler's own error is kept"
    assert not any("booting" in line for line in lines), "nothing to load, no VM"
    assert report.stored["measurements"]["01-mini/x"]["min"] == 5, "the user-space part still ran"


def test_invoke_build_compiles_every_program_with_its_libraries(tmp_path: Path, course_root: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "invoke", "build", "--lesson", "8"],
        cwd=course_root,
        capture_output=True,
        text=True,
        env={**os.environ, "INVOKE_COURSE_BUILD": str(tmp_path)},
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert (tmp_path / "code" / "08-since-2000" / "uring").is_file(), "linked with -luring"


def test_serve_shows_the_site_locally(tmp_path: Path, course_root: Path, checkout_site: Layout) -> None:
    """The preview builds the site, then serves it: its build is Sphinx's own, run on the session's build of this
    checkout (conftest.py: the same sources, results and edition), so it reads only what is out of date there."""
    build = tmp_path / "build"
    shutil.copytree(checkout_site.build, build, symlinks=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "invoke", "serve", "--port", str(port)],
        cwd=course_root,
        env={**os.environ, "INVOKE_COURSE_BUILD": str(build)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline, page = time.monotonic() + 180, ""
        while time.monotonic() < deadline and "Kernel System Calls" not in page:
            time.sleep(1)
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/docs/index.html", timeout=5).read().decode()
            except OSError:
                continue
        assert "Kernel System Calls" in page, "the preview served the home page"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_files_are_open_in_the_program_and_named_in_its_environment(tmp_path: Path) -> None:
    script = 'for pair in $COURSE_FILES; do echo "${pair%=*} $(readlink /proc/self/fd/${pair#*=})"; done'
    outcome = run_on_host(Path("/bin/sh"), ("-c", script), "devnull", tmp_path, 30, files=("pipe", "tty", "file"))
    assert outcome.ok, outcome.stderr
    opened = dict(line.split(" ", 1) for line in outcome.stdout.splitlines())
    assert opened["pipe"].startswith("pipe:[") and opened["tty"].startswith("/dev/pts/")
    assert opened["file"] == str(tmp_path / "stdin.txt")
    assert outcome.command.endswith("< /dev/null (files open: pipe, tty, file)")
