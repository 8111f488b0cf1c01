"""A student's rerun (``invoke lesson N``): the exercise and its solution rerun, unchanged programs keep their figures.

Real compiles and real runs of a small lesson shaped like lesson 3 (programs, a derivation, an exercise
with its solution); what is asserted is which programs ran (the step list, each figure's date), never a time.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from course import commands, pipeline
from course.measure import lessons
from course.publish import report
from course.results import store
from course.results.clock import utc_minute
from course.results.layout import Layout

pytestmark = pytest.mark.slow


def program(name: str, ticks: int) -> str:
    """A program that prints one measurement, ``name``, of two samples of ``ticks`` each."""
    return (
        "#include <stdio.h>\n"
        f'int main(void) {{ printf("course: measure {name} unit=ticks samples=2\\ncourse: hist {name} {ticks}x2\\n");'
        " return 0; }\n"
    )


def exercise(verdict: str) -> str:
    return (
        "#include <stdio.h>\n"
        'int main(void) { printf("course: measure one unit=ticks samples=2\\ncourse: hist one 7x2\\n");'
        f' printf("course: check x {verdict} detail\\n"); return 0; }}\n'
    )


LESSON = """
[[run]]
program = "alpha"

[[run]]
program = "beta"

[[run]]
program = "gamma"

[[derive]]
name = "alpha-less-beta"
expression = "median(01-mini/a) - median(01-mini/b)"

[[exercise]]
name = "x"
program = "exercise-x"
solution = "solutions/exercise-x"
"""


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines as long as they come: the terminal the suite runs in may be any width (CI's is 80 columns);
    the tests of the width itself set their own."""
    monkeypatch.setenv("COLUMNS", "250")


@pytest.fixture
def mini(tmp_path: Path) -> Layout:
    root = tmp_path / "course"
    (root / "lessons").mkdir(parents=True)
    (root / "conf.py").write_text("")
    (root / "lessons" / "01-mini.md").write_text("# Mini\n")
    code = root / "code" / "user" / "01-mini"
    (code / "solutions").mkdir(parents=True)
    (root / "code" / "user" / "common").mkdir()
    (code / "lesson.toml").write_text(LESSON)
    for name, figure, ticks in (("alpha", "a", 50), ("beta", "b", 20), ("gamma", "c", 9)):
        (code / f"{name}.c").write_text(program(figure, ticks))
    (code / "exercise-x.c").write_text(exercise("fail"))
    (code / "solutions" / "exercise-x.c").write_text(exercise("ok"))
    return Layout(root)


def rerun(layout: Layout, every: bool = False):
    """What ``invoke lesson 1`` (``--all``: ``every``) measures, without the site."""
    set_path = pipeline.open_set(layout)
    lesson = lessons.find(layout, 1)
    quiet = lambda line: None  # noqa: E731
    return pipeline.measure_lessons(layout, [lesson], set_path, force=True, keep_unchanged=not every, progress=quiet)[0]


def ran(lesson_report) -> set[str]:
    """The programs whose runs really happened (a kept program's step is a cached one)."""
    steps = [s for s in lesson_report.steps if s["name"].startswith(("run ", "exercise "))]
    return {s["name"].split(" ")[1] for s in steps if not s.get("cached")}


def dates(layout: Layout) -> dict[str, str]:
    stored = store.read_json(pipeline.open_set(layout) / "01-mini.json")
    return {key: m["measured_at"] for key, m in stored["measurements"].items()}


def later() -> None:
    """Let the clock pass a second: dates are stored to the second, and a rerun must show a new one."""
    time.sleep(1.1)


def test_an_edit_of_the_exercise_reruns_only_the_exercise_and_its_solution(mini: Layout) -> None:
    first = rerun(mini)
    assert ran(first) == {"alpha", "beta", "gamma", "exercise-x", "solutions/exercise-x"}
    assert first.kept == {}, "the first run has nothing to keep"
    before = dates(mini)
    later()
    (mini.root / "code/user/01-mini/exercise-x.c").write_text(exercise("ok"))  # the student's edit
    second = rerun(mini)
    assert ran(second) == {"exercise-x", "solutions/exercise-x"}
    assert set(second.kept) == {"alpha", "beta", "gamma"}
    after = dates(mini)
    for key in ("01-mini/a", "01-mini/b", "01-mini/c"):
        assert after[key] == before[key], f"{key} keeps its own date"
    for key in ("01-mini/exercise.x.one", "01-mini/solution.x.one"):
        assert after[key] > before[key], f"{key} was measured again"
    stored = store.read_json(pipeline.open_set(mini) / "01-mini.json")
    assert stored["exercises"]["x"]["yours"]["status"] == "works"
    assert stored["measurements"]["01-mini/alpha-less-beta"]["value"] == 30, "derived from the kept figures"
    assert stored["captures"].keys() == {"01-mini/alpha.output", "01-mini/beta.output", "01-mini/gamma.output"}
    assert stored["kept"] == {p: before[f"01-mini/{f}"] for p, f in (("alpha", "a"), ("beta", "b"), ("gamma", "c"))}
    # The execution report's "last run" says both dates: the rerun's, and the kept figures'.
    from course.publish.sphinxext.context import kept_since, last_run

    # The rerun's last figure: the exercise and its solution may be taken a second apart.
    assert last_run(stored) == max(after["01-mini/solution.x.one"], after["01-mini/exercise.x.one"])
    # As the lesson's page says it: to the minute, in UTC (an ISO stamp broke at its hyphens in a phone's column).
    assert kept_since(stored) == f" (figures of alpha, beta, gamma kept from {utc_minute(before['01-mini/a'])})"
    assert utc_minute(before["01-mini/a"]).endswith(" UTC")
    line = report.kept_line(second)
    assert line.startswith("reran the exercise x and its solution; kept 3 programs' figures (alpha, beta, gamma)")
    assert line.endswith("invoke lesson 1 --all reruns them")
    table = report.lesson_table(second, compare=True, width=100)
    assert "\na (kept)" in table and "exercise.x.one (kept)" not in table
    # A kept row is the previous figure itself: nothing beside it; the rerun ones beside the run they follow.
    rows = {line.split()[0]: line for line in table.splitlines()[3:]}
    assert rows["a"].split()[-1] == "(kept)" or rows["a"].split()[-1] != rows["a"].split()[2], table
    assert len(rows["a"].split()) == len(rows["exercise.x.one"].split()) - 2 + 1, table
    previous = second.previous["measurements"]["01-mini/exercise.x.one"]["measured_at"]
    assert table.splitlines()[0] == f"measurements of 01-mini/; prev: the run of {utc_minute(previous)}", table
    assert max(len(line) for line in table.splitlines()) <= 100


def test_the_lesson_table_fits_the_terminal(mini: Layout, monkeypatch) -> None:
    rerun(mini)
    later()
    second = rerun(mini)
    narrow = report.lesson_table(second, compare=True, width=90)
    assert max(len(line) for line in narrow.splitlines()) <= 90, narrow
    lines = narrow.splitlines()
    assert "alpha-less-beta (from kept)" in lines, "a name too long for its column is a line, never broken"
    assert lines[lines.index("alpha-less-beta (from kept)") + 1].split() == ["ticks", "30.00"], narrow
    monkeypatch.setenv("COLUMNS", "95")
    assert max(len(line) for line in report.lesson_table(second, compare=True).splitlines()) <= 95
    monkeypatch.setenv("COLUMNS", "70")
    line = report.kept_line(second)
    assert max(len(part) for part in line.splitlines()) <= 70 and len(line.splitlines()) > 1, line
    monkeypatch.delenv("COLUMNS")
    assert report.terminal_width() == 100, "not a terminal (pytest captures the output): 100 columns"


def test_an_edited_program_reruns_and_a_derivation_never_mixes_runs(mini: Layout) -> None:
    rerun(mini)
    before = dates(mini)
    later()
    (mini.root / "code/user/01-mini/gamma.c").write_text(program("c", 11))
    second = rerun(mini)
    assert ran(second) == {"gamma", "exercise-x", "solutions/exercise-x"}, "a changed source is never kept"
    assert store.read_json(pipeline.open_set(mini) / "01-mini.json")["measurements"]["01-mini/c"]["min"] == 11
    assert dates(mini)["01-mini/a"] == before["01-mini/a"]
    kept_since = dates(mini)
    later()
    # alpha feeds a derivation with beta: rerunning alpha alone would set figures of two runs side by side.
    (mini.root / "code/user/01-mini/alpha.c").write_text(program("a", 60))
    third = rerun(mini)
    assert ran(third) == {"alpha", "beta", "exercise-x", "solutions/exercise-x"}
    assert set(third.kept) == {"gamma"}
    after = store.read_json(pipeline.open_set(mini) / "01-mini.json")["measurements"]
    assert after["01-mini/alpha-less-beta"]["value"] == 40
    # Both measured again by this run (each program's figures are stamped when it ends, to the second).
    assert after["01-mini/a"]["measured_at"] > kept_since["01-mini/a"]
    assert after["01-mini/b"]["measured_at"] > kept_since["01-mini/b"]


def test_all_reruns_every_program(mini: Layout) -> None:
    rerun(mini)
    later()
    everything = rerun(mini, every=True)
    assert ran(everything) == {"alpha", "beta", "gamma", "exercise-x", "solutions/exercise-x"}
    assert everything.kept == {}
    assert report.kept_line(everything) == "reran the exercise x and its solution, alpha, beta, gamma"
    # A derived figure measured again is set beside the previous one.
    rows = {line.split()[0]: line.split() for line in report.lesson_table(everything, compare=True).splitlines()}
    assert rows["alpha-less-beta"] == ["alpha-less-beta", "ticks", "30.00", "30.00"], rows


def test_a_changed_setting_or_a_failed_run_keeps_nothing(mini: Layout) -> None:
    rerun(mini)
    toml = mini.root / "code/user/01-mini/lesson.toml"
    toml.write_text(toml.read_text().replace('program = "gamma"', 'program = "gamma"\nargs = ["5"]'))
    assert ran(rerun(mini)) >= {"alpha", "beta", "gamma"}, "another lesson.toml: every figure is taken again"
    (mini.root / "code/user/01-mini/solutions/exercise-x.c").write_text(exercise("fail"))
    failed = rerun(mini)
    assert failed.failures, "the reference solution failing its check is a failure of the run"
    (mini.root / "code/user/01-mini/solutions/exercise-x.c").write_text(exercise("ok"))
    assert ran(rerun(mini)) >= {"alpha", "beta", "gamma"}, "after a failed run, the next one reruns whole"


def test_the_lesson_command_says_what_it_kept(mini: Layout, capsys, monkeypatch) -> None:
    monkeypatch.setattr(commands.site, "build_site", lambda *args, **kwargs: 0.0)
    assert commands.lesson(mini, 1)
    capsys.readouterr()
    assert commands.lesson(mini, 1)
    out = capsys.readouterr().out
    assert "; kept 3 programs' figures (alpha, beta, gamma) from " in out
    assert commands.lesson(mini, 1, every=True)
    out = capsys.readouterr().out
    assert "reran the exercise x and its solution, alpha, beta, gamma\n" in out and "kept" not in out, out


def test_a_program_set_beside_the_exercise_by_a_derivation_always_reruns(mini: Layout) -> None:
    toml = mini.root / "code/user/01-mini/lesson.toml"
    derivation = '[[derive]]\nname = "x-over-c"\nexpression = "median(01-mini/exercise.x.one) / median(01-mini/c)"\n'
    toml.write_text(toml.read_text() + derivation)
    rerun(mini)
    second = rerun(mini)
    assert set(second.kept) == {"alpha", "beta"}, "gamma's figure is divided into the exercise's, rerun each time"
    assert ran(second) == {"gamma", "exercise-x", "solutions/exercise-x"}


def test_in_a_student_copy_the_line_names_no_solution(mini: Layout) -> None:
    first = rerun(mini)
    first.stored["exercises"]["x"].pop("solution")  # a student copy measures no solution beside yours
    assert report.kept_line(first) == "reran the exercise x, alpha, beta, gamma"


@pytest.mark.parametrize(
    "change",
    [
        {"mitigations": {"spectre_v2": "Vulnerable"}},
        {"cpu_count": 1},
        {"cmdline": "root=/dev/sda1 mitigations=off"},
        {"kernel_release": "6.12"},
        {"microcode": "0x2"},
        {"cpu_family": "26"},  # another generation under the same model name ("AMD EPYC")
        {"cpu_stepping": "2"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_reboot_with_other_mitigations_a_command_line_or_cpus_reruns_and_keeps_nothing(
    mini: Layout, monkeypatch, change: dict
) -> None:
    # Both keys read one setting: what makes a student's rerun keep nothing makes a plain run rerun.
    from course.measure.lesson_run import LessonRun
    from course.results import fingerprint

    run = LessonRun(lessons.find(mini, 1), {})
    machine = {"cpu_model": "cpu", "microcode": "0x1", "cpu_count": 4, "mitigations": {"spectre_v2": "IBRS"}}
    monkeypatch.setattr(fingerprint, "kernel_cmdline", lambda: "root=/dev/sda1")
    keys = (pipeline.setting_key(run, machine), pipeline.inputs_key(run, machine, {}))
    assert (pipeline.setting_key(run, dict(machine)), pipeline.inputs_key(run, dict(machine), {})) == keys
    cmdline = change.get("cmdline", "root=/dev/sda1")
    monkeypatch.setattr(fingerprint, "kernel_cmdline", lambda: cmdline)
    other = {**machine, **{k: v for k, v in change.items() if k != "cmdline"}}
    assert pipeline.setting_key(run, other) != keys[0], "a rerun keeps nothing"
    assert pipeline.inputs_key(run, other, {}) != keys[1], "a plain run reruns"


def test_a_plain_run_after_a_change_of_mitigations_reruns_the_lesson(mini: Layout, monkeypatch) -> None:
    from course.results import fingerprint

    def measure():
        set_path = pipeline.open_set(mini)
        return pipeline.measure_lessons(mini, [lessons.find(mini, 1)], set_path, progress=lambda line: None)[0]

    monkeypatch.setattr(fingerprint, "mitigations", lambda: {"spectre_v2": "Mitigation: IBRS"})
    assert not measure().cached
    assert measure().cached, "nothing changed: reused"
    monkeypatch.setattr(fingerprint, "mitigations", lambda: {"spectre_v2": "Vulnerable"})  # rebooted mitigations=off
    assert not measure().cached, "the stored figures were taken with other mitigations"


def test_a_program_whose_last_run_only_skipped_is_never_kept(mini: Layout) -> None:
    from course.measure import keep
    from course.measure.build import Program, program_sources
    from course.measure.lesson_run import LessonRun

    lesson = lessons.find(mini, 1)
    sources = program_sources(mini, lesson, "gamma")
    figure = {"measured_at": "2026-12-01T10:00:00Z", "sources": sources}

    def keepable(status: str) -> dict[str, list[str]]:
        skipped = {"status": "skipped", "reason": "no two readings were 20 updates apart"}
        previous = {"measurements": {"01-mini/c": {**figure, **({"status": "ok"} if status == "ok" else skipped)}}}
        run = LessonRun(lesson, previous)
        run.programs["gamma"] = Program("gamma", Path("/x"), sources, "cc", (), False)
        return keep.keepable(mini, run)

    assert keepable("ok") == {"gamma": ["01-mini/c"]}
    assert keepable("skipped") == {}, "a skip (a loaded machine) is measured again on the next rerun"
