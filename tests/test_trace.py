"""Lesson 2's call graphs of one read: the [[trace]] entry, the guest helper's tracer set-up, and the parsing.

The canned trace (``data/readtrace-vm-results.json``) is what the helper returned from a real
TCG boot of Debian's 6.1 kernel: six kinds of file, three rounds each, one of the terminal's
reads hit by a timer interrupt. The real capture in a VM boot is checked in test_pipeline.py.
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from course.kernel import call_graphs, guest_records, kernel_guest, kernel_runs
from course.kernel.options import KernelOptions
from course.measure import lessons
from course.measure.lesson_run import LessonRun
from course.measure.lessons import LessonError
from course.measure.runners import run_on_host
from course.pipeline import inputs_key
from course.results import validate
from course.results.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
TCG = {"runner": "vm", "acceleration": "tcg", "guest_kernel": "6.1.0-56-amd64"}
KINDS = ["tty", "file", "devnull", "pipe", "zero", "socket"]

#: The method each kind's read ends in, in the guest (its /tmp is an overlay filesystem).
METHODS = {
    "devnull": "read_null();",
    "zero": "read_zero();",
    "pipe": "pipe_read();",
    "socket": "sock_read_iter();",
    "file": "ovl_read_iter [overlay]();",
    "tty": "tty_read() {",
}


def _canned() -> dict:
    return json.loads((DATA / "readtrace-vm-results.json").read_text())["jobs"][0]


def _lesson_2() -> LessonRun:
    return LessonRun(lessons.find(Layout(ROOT), 2), previous={})


def _job() -> dict:
    job = _canned()
    keep = ("lesson", "trace", "program", "binary", "shown_as", "files", "graph", "notrace", "timeout")
    return {key: job[key] for key in keep}


# --- the lesson's entry ---------------------------------------------------------------------------------------------


def test_lesson_2_asks_for_a_trace_of_every_kind_in_the_vm() -> None:
    lesson = lessons.find(Layout(ROOT), 2)
    assert lesson.in_vm and not lesson.modules, "a kernel lesson with a trace and no module"
    assert lesson.kernel_dir == ROOT / "code" / "kernel" / "02-read-path"
    (trace,) = lesson.traces
    assert (trace.name, trace.program, trace.files) == ("trace", "02-read-path/readtrace", tuple(KINDS))
    assert trace.graph[0] == "x64_sys_call" and "__x64_sys_read" in trace.graph
    assert trace.notrace == ("__x64_sys_write",)
    # It is not a [[run]]: lesson 2's own runs on this machine never trace its kernel.
    assert "readtrace" not in [run.program for run in lesson.runs]


def _with_trace(tmp_path: Path, toml: str, user: bool = False) -> Layout:
    root = tmp_path / "course"
    for part in ("lessons", "code"):
        shutil.copytree(ROOT / part, root / part)
    (root / "conf.py").write_text("")
    folder = root / "code" / ("user" if user else "kernel") / "02-read-path"
    (folder / "lesson.toml").write_text(toml)
    return Layout(root)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[[trace]]\nname = "t"\nprogram = "02-read-path/readtrace"\nfiles = ["tty"]\ngraph = ["*"]\n',
            "graph must be a list of kernel function names",
        ),
        (
            '[[trace]]\nname = "t"\nprogram = "02-read-path/readtrace"\nfiles = ["tty"]\n'
            'graph = ["vfs_read:mod:ext4"]\n',
            "graph must be a list of kernel function names",
        ),
        (
            '[[trace]]\nname = "t"\nprogram = "02-read-path/readtrace"\nfiles = ["tty"]\ngraph = []\n',
            "graph must name at least one function",
        ),
        ('[[trace]]\nname = "t"\nprogram = "readtrace"\nfiles = ["tty"]\ngraph = ["ksys_read"]\n', "lesson's program"),
        (
            '[[trace]]\nname = "t"\nprogram = "02-read-path/nothing"\nfiles = ["tty"]\ngraph = ["ksys_read"]\n',
            "no source 02-read-path/nothing.c",
        ),
        ('[[trace]]\nname = "t"\nprogram = "02-read-path/readtrace"\ngraph = ["ksys_read"]\n', "needs files"),
        (
            '[[trace]]\nname = "t"\nprogram = "02-read-path/readtrace"\nfiles = ["disk"]\ngraph = ["ksys_read"]\n',
            r"unknown files kind\(s\) \['disk'\]",
        ),
        (
            '[[trace]]\nname = "a b"\nprogram = "02-read-path/readtrace"\nfiles = ["tty"]\ngraph = ["ksys_read"]\n',
            "must be a plain name",
        ),
        (
            '[[trace]]\nname = "t"\nprogram = "02-read-path/readtrace"\nfiles = ["tty"]\ngraph = ["ksys_read"]\n'
            "timout = 5\n",
            "did you mean 'timeout'",
        ),
    ],
)
def test_a_bad_trace_entry_is_refused_naming_it(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(LessonError, match=message):
        lessons.discover(_with_trace(tmp_path, toml))


def test_a_trace_entry_in_the_user_lesson_toml_is_sent_to_the_kernel_one(tmp_path: Path) -> None:
    toml = '[[trace]]\nname = "t"\nprogram = "02-read-path/readtrace"\nfiles = ["tty"]\ngraph = ["ksys_read"]\n'
    with pytest.raises(LessonError, match=r"\[\[trace\]\] belongs in code/kernel/NN-slug/lesson.toml"):
        lessons.discover(_with_trace(tmp_path, toml, user=True))


def test_where_the_trace_runs_is_part_of_lesson_2s_inputs() -> None:
    run = _lesson_2()
    vm, none = {"runner": "vm", "acceleration": "tcg"}, {"runner": "none", "unavailable": "not asked"}
    assert inputs_key(run, {}, vm) != inputs_key(run, {}, none), "another runner retakes the trace"


# --- parsing the trace ----------------------------------------------------------------------------------------------


def test_a_real_trace_gives_three_graphs_of_each_kind_between_its_markers() -> None:
    graphs = call_graphs.call_graphs(_canned()["trace_text"])
    assert sorted(graphs) == sorted(KINDS)
    for kind, rounds in graphs.items():
        assert len(rounds) == 3, kind
        for graph in rounds:
            assert graph.returned == 0
            assert graph.lines[0].strip() == "x64_sys_call() {" and graph.lines[-1].strip() == "}"
            text = "\n".join(graph.lines)
            assert "course-trace" not in text, "a marker's own write is never part of a read"
            assert "__x64_sys_write" not in text
            for step in ("__x64_sys_read() {", "ksys_read() {", "vfs_read() {", "rw_verify_area() {"):
                assert step in text, (kind, step)
            assert METHODS[kind] in text, kind
    assert sorted(len(graph.lines) for graph in graphs["tty"])[-1] > 100, "the canned trace has an interrupted read"


def test_the_stored_graph_is_the_shortest_round_with_how_it_was_taken() -> None:
    run, job, result = _lesson_2(), _job(), _canned()
    guest_records.record_results([run], [job], [result], console="", status=0, where=TCG)
    assert run.failures == []
    assert sorted(run.captures) == sorted(f"02-read-path/trace.{kind}" for kind in KINDS)
    tty = run.captures["02-read-path/trace.tty"]
    assert "handle_softirqs" not in tty["text"], "the interrupted round is not the one kept"
    assert tty["text"].splitlines()[0] == "x64_sys_call() {", "indentation kept, relative to the graph"
    assert "    ksys_read() {" in tty["text"].splitlines()
    command = tty["command"]
    assert command.startswith("build/code/02-read-path/readtrace /sys/kernel/tracing")
    assert "# the read of tty: function_graph from x64_sys_call __x64_sys_read" in command, "each graph names its file"
    assert "(not in this kernel: no_such_function_here)" in command, "a name the kernel lacked is said"
    assert "not into __x64_sys_write" in command and "kernel 6.1.0-56-amd64 (tcg)" in command
    assert command.endswith("the shortest of 3 reads, read returned 0")
    assert "read_null();" in run.captures["02-read-path/trace.devnull"]["text"]
    assert [step["name"] for step in run.steps] == ["trace 02-read-path/readtrace under function_graph, in the VM"]
    # What is stored passes the result file's own checks.
    validate.check_lesson_file({"schema": 1, "captures": run.captures, "steps": run.steps})


def test_a_kernel_without_x64_sys_call_and_the_duration_columns_still_parse() -> None:
    """6.1.0 to 6.1.84 call through sys_call_table[]: the graph starts at the read, markers stand alone."""
    trace = "\n".join(
        [
            "# tracer: function_graph",
            "#",
            "# CPU  DURATION                  FUNCTION CALLS",
            " 0)   1.002 us    |  } /* x64_sys_call */",  # a call that began before tracing was on
            " 0)               |  /* course-trace begin pipe */",
            " 0)               |  __x64_sys_read() {",
            " 0)               |    ksys_read() {",
            " 0)   0.291 us    |      __fdget_pos();",
            " 0) + 12.345 us   |      pipe_read();",
            " 0) ! 123.4 us    |    }",
            " ------------------------------------------",
            " 0)  readtra-12    =>  kworker-3  ",
            " ------------------------------------------",
            "CPU:0 [LOST 3 EVENTS]",
            " 0)   2.000 us    |  }",
            " 0)               |  /* course-trace end pipe returned 0 */",
            " 0)               |  /* course-trace begin zero */",
            " 0)               |  /* course-trace end zero returned -14 */",
        ]
    )
    graphs = call_graphs.call_graphs(trace)
    (pipe,) = graphs["pipe"]
    assert [line.strip() for line in pipe.lines] == [
        "__x64_sys_read() {",
        "ksys_read() {",
        "__fdget_pos();",
        "pipe_read();",
        "}",
        "}",
    ]
    assert pipe.returned == 0 and pipe.text().splitlines()[1] == "  ksys_read() {"
    assert graphs["zero"][0].lines == [] and graphs["zero"][0].returned == -14


def test_a_graph_is_bounded_in_lines_and_width() -> None:
    graph = call_graphs.CallGraph("tty", ["x64_sys_call() {", *(f"  f{i}();" for i in range(400)), "}"])
    graph.lines[1] = "  " + "g" * 500 + "();"
    lines = graph.text().splitlines()
    assert len(lines) == call_graphs.GRAPH_LINES
    assert lines[-1] == f"[... {402 - call_graphs.GRAPH_LINES + 1} more lines of this call graph not kept]"
    assert len(lines[1]) == call_graphs.GRAPH_LINE_CHARS and lines[1].endswith("...")


def test_a_kind_without_a_graph_is_a_failure_with_the_trace() -> None:
    run, job, result = _lesson_2(), _job(), _canned()
    cut = result["trace_text"].split("/* course-trace begin socket */")[0]
    guest_records.record_results([run], [job], [{**result, "trace_text": cut}], console="", status=0, where=TCG)
    assert [(f["step"], f["what"]) for f in run.failures] == [
        ("parse", "trace trace (02-read-path/readtrace) in the guest, socket")
    ]
    assert "no call graph between the markers of socket" in run.failures[0]["message"]
    assert "02-read-path/trace.socket" not in run.captures and "02-read-path/trace.pipe" in run.captures


def test_a_trace_that_failed_or_never_ran_is_a_failure_and_no_graph() -> None:
    run, job = _lesson_2(), _job()
    failed = {**_canned(), "ok": False, "ended": "this kernel has none of the functions to start the graph at (x)"}
    guest_records.record_results([run], [job], [failed], console="", status=0, where=TCG)
    assert [(f["step"], f["message"]) for f in run.failures] == [("run", f"it {failed['ended']}")]
    assert run.captures == {}

    run = _lesson_2()
    guest_records.record_results([run], [job], [], console="boot log", status=None, where=TCG)
    assert "the VM stopped after its timeout before this trace was taken" in run.failures[0]["message"]
    assert run.captures == {}


def test_a_trace_is_stored_as_the_kernel_printed_it() -> None:
    """Kernel output is text: markup in it is kept verbatim (the site shows captures as literal blocks)."""
    result = _canned()
    hostile = result["trace_text"].replace("read_null();", "read_null```{raw} html<script>();", 3)
    run = _lesson_2()
    guest_records.record_results([run], [_job()], [{**result, "trace_text": hostile}], console="", status=0, where=TCG)
    assert "read_null```{raw} html<script>();" in run.captures["02-read-path/trace.devnull"]["text"]


# --- jobs, and runs that do not trace -------------------------------------------------------------------------------


def test_the_trace_job_runs_the_program_built_on_the_host(tmp_path: Path) -> None:
    layout = Layout(ROOT, build_dir=tmp_path / "build")
    run = LessonRun(lessons.find(layout, 2), previous={})
    kernel_runs.build_guest_programs(layout, run, progress=lambda line: None)
    assert kernel_runs.guest_program_jobs(layout, [run]) == [], "a trace is not a like-for-like program run"
    (job,) = kernel_runs.trace_jobs(layout, [run])
    assert job["trace"] == "trace" and job["files"] == KINDS and job["notrace"] == ["__x64_sys_write"]
    assert Path(job["binary"]).is_file() and job["binary"].endswith("code/02-read-path/readtrace")
    assert "02-read-path/readtrace" in run.programs, "its source is one of the lesson's inputs"


def test_no_kernel_runner_keeps_the_earlier_graphs_and_says_why_for_new_ones(tmp_path: Path) -> None:
    layout = Layout(ROOT, build_dir=tmp_path / "build")
    earlier = {"02-read-path/trace.tty": {"text": "x64_sys_call() {\n}", "command": "readtrace", "measured_at": "t"}}
    previous = {"captures": earlier, "kernel_run": TCG}
    run = LessonRun(lessons.find(layout, 2), previous=previous)
    where = kernel_runs.setting(layout, KernelOptions(runner="none"), progress=lambda line: None)
    kernel_runs.measure(layout, [run], KernelOptions(runner="none"), where, progress=lambda line: None)
    assert run.failures == []
    assert run.captures["02-read-path/trace.tty"] == earlier["02-read-path/trace.tty"]
    assert run.kernel["acceleration"] == "tcg", "kept with where it was taken"
    pipe = run.captures["02-read-path/trace.pipe"]["text"]
    assert pipe.startswith("(not traced: kernel examples were not asked for")


# --- the guest helper's side ----------------------------------------------------------------------------------------

#: A stand-in for readtrace: it checks the tracer was set up, then appends a canned trace.
FAKE_PROGRAM = """#!/bin/sh
T="$1"
for f in current_tracer tracing_on options/funcgraph-duration options/funcgraph-irqs set_graph_function \\
         set_graph_notrace; do cat "$T/$f"; echo; done > {seen}
echo $$ > "$T/set_ftrace_pid"
cat {canned} >> "$T/trace"
"""


def _tracefs(folder: Path) -> Path:
    """A folder shaped like tracefs, as a test can write it (the helper only reads and writes files)."""
    (folder / "options").mkdir(parents=True)
    for name, value in {
        "trace": "",
        "tracing_on": "1",
        "current_tracer": "nop",
        "set_graph_function": "",
        "set_graph_notrace": "",
        "set_ftrace_pid": "",
    }.items():
        (folder / name).write_text(value)
    for name in kernel_guest.TRACE_OPTIONS:
        (folder / "options" / name).write_text("1")
    return folder


def test_the_helper_sets_the_tracer_up_runs_the_program_and_puts_everything_back(tmp_path: Path) -> None:
    tracefs = _tracefs(tmp_path / "tracing")
    canned, seen = tmp_path / "canned.txt", tmp_path / "seen.txt"
    canned.write_text(_canned()["trace_text"])
    program = tmp_path / "readtrace"
    program.write_text(FAKE_PROGRAM.format(seen=seen, canned=canned))
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    job = {**_job(), "binary": str(program), "graph": ["x64_sys_call", "__x64_sys_read"], "files": ["pipe", "zero"]}
    result = kernel_guest.run_trace_job(job, tmp_path / "scratch", tracefs=tracefs)
    assert result["ok"], result["ended"] + result["stderr"]
    # While the program ran: the graph tracer, tracing still off (the program turns it on), no
    # durations, no interrupts, each function on a line of its own.
    expected = ["function_graph", "0", "0", "0", "x64_sys_call", "__x64_sys_read", "__x64_sys_write"]
    assert seen.read_text().split() == expected
    assert result["graph"] == ["x64_sys_call", "__x64_sys_read"] and result["graph_missing"] == []
    assert call_graphs.call_graphs(result["trace_text"])["pipe"], "the trace it wrote came back"
    assert not result["trace_truncated"]
    # Afterwards: as it was, or cleared.
    assert (tracefs / "current_tracer").read_text() == "nop" and (tracefs / "tracing_on").read_text() == "1"
    for name in ("set_graph_function", "set_graph_notrace", "set_ftrace_pid", "trace"):
        assert (tracefs / name).read_text() == "", name
    for name in kernel_guest.TRACE_OPTIONS:
        assert (tracefs / "options" / name).read_text() == "1", name


def test_a_tracefs_that_cannot_be_set_up_is_a_failed_job_not_a_crash(tmp_path: Path) -> None:
    tracefs = _tracefs(tmp_path / "tracing")
    (tracefs / "current_tracer").unlink()  # a kernel without the tracer
    result = kernel_guest.run_trace_job(_job(), tmp_path / "scratch", tracefs=tracefs)
    assert not result["ok"] and result["ended"].startswith(f"could not set up or read ftrace in {tracefs}")
    assert (tracefs / "tracing_on").read_text() == "0", "tracing stays off when its state could not be read"


def test_a_runaway_trace_is_cut_at_its_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tracefs = _tracefs(tmp_path / "tracing")
    program = tmp_path / "flood"
    program.write_text('#!/bin/sh\nyes "  f();" | head -c 5000 >> "$1/trace"\n')
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(kernel_guest, "TRACE_LIMIT_BYTES", 1000)
    result = kernel_guest.run_trace_job({**_job(), "binary": str(program)}, tmp_path / "scratch", tracefs=tracefs)
    assert result["ok"] and result["trace_truncated"] and len(result["trace_text"]) == 1000


def test_the_trace_program_never_traces_when_run_by_hand(tmp_path: Path) -> None:
    """Without the tracing folder as its argument, readtrace only makes its reads."""
    layout = Layout(ROOT, build_dir=tmp_path / "build")
    run = LessonRun(lessons.find(layout, 2), previous={})
    kernel_runs.build_guest_programs(layout, run, progress=lambda line: None)
    binary = run.programs["02-read-path/readtrace"].binary
    outcome = run_on_host(binary, (), "devnull", tmp_path / "scratch", 30, files=("pipe", "zero"))
    assert outcome.ok, outcome.stderr
    assert outcome.stdout.splitlines() == [
        f"round {r}: read({kind}, buf, 0) = 0" for r in (1, 2, 3) for kind in ("pipe", "zero")
    ]
