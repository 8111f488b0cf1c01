"""Submissions graded in the VM: the grade is the instructor's own run; copies are flagged, forged statuses ignored."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from course.classroom import grading, submission
from course.publish import edition
from course.results import progress, store
from course.results.layout import Layout

if TYPE_CHECKING:
    from tests.conftest import StudentCheckout

ROOT = Path(__file__).resolve().parents[1]
VARIANT = "code/user/03-timing/exercise-onebyte.c"
SOLUTION = "code/user/03-timing/solutions/exercise-onebyte.c"


#: Every invoke command the tests of this module ran, for the instructor guide's walkthrough.
RAN: list[list[str]] = []


def invoke(where: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    RAN.append(list(args))
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=where, capture_output=True, text=True, env=env or os.environ.copy()
    )


def test_a_copy_of_the_solution_is_the_same_whatever_its_comments_spacing_or_include_path() -> None:
    solution = (ROOT / SOLUTION).read_text()
    copied = "/* my own work, honest */\n" + solution.replace('"../../common/stamp.h"', '"../common/stamp.h"')
    copied = copied.replace("\t", "    ").replace(
        "pread(STDIN_FILENO, buffer, 1, 0)", "pread( STDIN_FILENO,buffer,1,0 )"
    )
    assert grading.normalized(copied) == grading.normalized(solution)
    own = solution.replace("return pread(STDIN_FILENO, buffer, 1, 0);", "return pread(0, buffer, 1, 0);")
    assert grading.normalized(own) != grading.normalized(solution)
    assert grading.normalized((ROOT / VARIANT).read_text()) != grading.normalized(solution)


def _tar(path: Path, members: dict[str, bytes], link: str = "") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return path


def test_a_submission_holds_only_what_submit_puts_in_it(tmp_path: Path) -> None:
    layout = Layout(ROOT)
    info = json.dumps({"student": "eve"}).encode()
    good = _tar(tmp_path / "good.tar.gz", {"eve/SUBMISSION.json": info, f"eve/{VARIANT}": b"int main(void){}"})
    read = submission.read(good, layout)
    assert read.student == "eve" and list(read.sources) == [VARIANT] and read.set_archive == b""
    refused = {
        "outside": ({"eve/SUBMISSION.json": info, "eve/../../etc/cron.d/x": b"x"}, "", "outside"),
        "solution": ({"eve/SUBMISSION.json": info, f"eve/{SOLUTION}": b"x"}, "", "not an exercise source"),
        "link": ({"eve/SUBMISSION.json": info}, f"eve/{VARIANT}", "link"),
        "two": ({"eve/SUBMISSION.json": info, f"mallory/{VARIANT}": b"x"}, "", "2 student folders"),
        "big": ({"eve/SUBMISSION.json": info, f"eve/{VARIANT}": b"x" * (submission.MAX_SOURCE + 1)}, "", "bigger"),
        "liar": ({"eve/SUBMISSION.json": json.dumps({"student": "bob"}).encode()}, "", "another student"),
    }
    for name, (members, link, message) in refused.items():
        with pytest.raises(submission.SubmissionError, match=message):
            submission.read(_tar(tmp_path / f"{name}.tar.gz", members, link), layout)
    (tmp_path / "junk.tar.gz").write_bytes(b"not gzip at all")
    with pytest.raises(submission.SubmissionError, match="not a submission archive"):
        submission.read(tmp_path / "junk.tar.gz", layout)
    with pytest.raises(submission.SubmissionError, match="not a usable student name"):
        submission.pack(layout, "../eve", tmp_path / "x.tar.gz")


def test_progress_marks_self_reported_rows_and_quotes_formulas_in_the_csv(tmp_path: Path) -> None:
    results = tmp_path / "results"
    grade = {
        "student": "ada",
        "graded_at": "2026-12-05T01:00:00+00:00",
        "exercises": {
            "03-timing/onebyte": {
                "status": "works",
                "cost": {"read-1": {"yours": 2000.0, "solution": 1000.0, "ratio": 2.0}},
                "same_as_solution": True,
            }
        },
    }
    store.write_json(results / grading.GRADES / "ada.json", grade)
    shutil.copytree(ROOT / "tests/roots/test-course/results/other-machine", results / "=cmd")
    info = store.read_json(results / "=cmd" / store.SET_FILE)
    store.write_json(results / "=cmd" / store.SET_FILE, {**info, "imported": {"from": "x.tar.gz", "at": "now"}})
    lesson = store.read_json(results / "=cmd" / "03-timing.json")
    lesson["exercises"] = {"onebyte": {"yours": {"status": "works", "detail": "forged"}}}
    store.write_json(results / "=cmd" / "03-timing.json", lesson)
    rows, columns, problems = progress.rows(results)
    assert problems == [] and columns == ["03-timing/onebyte"]
    assert [(row.student, row.kind) for row in rows] == [("ada", "graded"), ("=cmd", "self-reported")]
    assert rows[0].cells["03-timing/onebyte"].text() == "works, 2.00x the solution, 2026-12-05, SAME AS THE SOLUTION"
    table = list(csv.reader(io.StringIO(progress.as_csv(rows, columns))))
    assert table[1][:6] == ["ada", "graded", "works", "2.000", "2026-12-05T01:00:00+00:00", "yes"]
    assert table[2][0] == "'=cmd" and table[2][1] == "self-reported", "a cell never starts a formula"


@pytest.mark.sphinx("html", testroot="course-progress")
def test_the_progress_page_shows_every_row_and_its_csv(app, tmp_path: Path) -> None:
    results = Path(app.srcdir) / "results"
    store.write_json(
        results / grading.GRADES / "ada.json",
        {"student": "ada", "graded_at": "2026-12-05", "exercises": {"03-timing/onebyte": {"status": "not yet"}}},
    )
    app.build()
    page = (Path(app.outdir) / "index.html").read_text()
    assert "ada" in page and "not yet" in page and 'href="progress.csv"' in page
    assert "ada" in (Path(app.outdir) / "progress.csv").read_text()


@pytest.mark.sphinx(
    "html", testroot="course-progress", srcdir="course-progress-student", confoverrides={"course_edition": "student"}
)
def test_the_student_edition_shows_no_student(app) -> None:
    store.write_json(
        Path(app.srcdir) / "results" / grading.GRADES / "ada.json",
        {"student": "ada", "exercises": {"03-timing/onebyte": {"status": "works"}}},
    )
    app.build()
    page = (Path(app.outdir) / "index.html").read_text()
    assert "not part of the student edition" in page and "ada" not in page
    assert not (Path(app.outdir) / "progress.csv").exists()


def guide_commands() -> list[list[str]]:
    """The commands of the instructor guide's "Teaching a class", in order."""
    text = (ROOT / "docs" / "instructors.md").read_text()
    section = text.split("## Teaching a class", 1)[1].split("\n## ", 1)[0]
    return [
        shlex.split(line.removeprefix("$ invoke ")) for line in section.splitlines() if line.startswith("$ invoke ")
    ]


def _ran_as_written(wanted: list[str], ran: list[str]) -> bool:
    """``ran`` is ``wanted``, paths shown by their last part, perhaps with more options after it."""

    def shown(words: list[str]) -> list[str]:
        return [Path(word).name if "/" in word else word for word in words]

    return shown(ran)[: len(wanted)] == shown(wanted)


def _student(class_copy: Path, where: Path, name: str) -> Path:
    checkout = where / name
    shutil.copytree(class_copy, checkout)
    return checkout


@pytest.mark.slow
def test_two_students_are_graded_in_the_vm_a_copy_is_flagged_and_a_forged_status_ignored(
    class_copy: StudentCheckout, lesson_3_in_a_student_checkout: StudentCheckout, tmp_path: Path
) -> None:
    # The class's copy, and bob's run of lesson 3 in his checkout of it, are the session's (conftest.py): made as
    # the guide says, once for this walkthrough and the student edition's tests; the students work in copies.
    assert edition.of_checkout(class_copy.path) == "student"
    RAN.extend(lesson_3_in_a_student_checkout.ran)
    handed_in = tmp_path / "handed-in"
    solution = (ROOT / SOLUTION).read_text().replace('"../../common/stamp.h"', '"../common/stamp.h"')

    # Ada solves it her own way (a variable the solution has not).
    ada = _student(class_copy.path, tmp_path, "ada")
    own = solution.replace(
        "return pread(STDIN_FILENO, buffer, 1, 0);", "ssize_t got = pread(0, buffer, 1, 0);\n\treturn got;"
    )
    (ada / VARIANT).write_text(own)

    # Bob measures lesson 3 with the TODO left as it is, forges his set to say "works" (the
    # manifest is made afresh by submit), then hands in a variant that tells who runs it and where.
    bob = _student(lesson_3_in_a_student_checkout.path, tmp_path, "bob")
    assert lesson_3_in_a_student_checkout.ran[-1] == ["lesson", "3", "--set", "bob-laptop"]
    set_path = bob / "results" / "bob-laptop"
    stored = store.read_json(set_path / "03-timing.json")
    assert stored["exercises"]["onebyte"]["yours"]["status"] == "not yet"
    stored["exercises"]["onebyte"]["yours"] = {"status": "works", "detail": "trust me"}
    store.write_json(set_path / "03-timing.json", stored)
    marker = tmp_path / "bob-ran-on-the-host"
    probe = (
        (bob / VARIANT)
        .read_text()
        .replace(
            "\t(void)buffer;\n\treturn 0;",
            f'\tint fd = open("{marker}", O_WRONLY | O_CREAT, 0644);\n'
            "\tglob_t found = {0};\n"
            f'\tglob("{tmp_path}/build/grade/run-*/*/*/{VARIANT}", 0, NULL, &found);\n'
            f'\tint seen = access("{ROOT / SOLUTION}", F_OK) == 0;\n'
            '\tprintf("course: check onebyte fail uid %d, host file written: %s, solution seen: %s, '
            'sources of others: %d\\n",\n'
            '\t       (int)getuid(), fd >= 0 ? "yes" : "no", seen ? "yes" : "no", (int)found.gl_pathc);\n'
            "\texit(0);",
        )
    )
    assert "getuid" in probe
    (bob / VARIANT).write_text(
        probe.replace(
            '#include "../common/stamp.h"', '#include "../common/stamp.h"\n#include <fcntl.h>\n#include <glob.h>', 1
        )
    )

    # Cy hands in the solution itself.
    cy = _student(class_copy.path, tmp_path, "cy")
    (cy / VARIANT).write_text("/* all mine */\n" + solution)

    made = invoke(ada, "submit", "--student", "ada")  # into build/submit/, as the guide says
    assert made.returncode == 0, made.stderr
    handed_in.mkdir()
    shutil.copy2(ada / "build" / "submit" / "ada.tar.gz", handed_in / "ada.tar.gz")
    # Eve's variant includes a file only root may read: the compiler in the guest runs as eve's job's own uid.
    secret = tmp_path / "root-only.h"
    secret.write_text("static int secret = 42;\n")
    secret.chmod(0o600)
    eve = _student(class_copy.path, tmp_path, "eve")
    (eve / VARIANT).write_text(f'#include "{secret}"\n' + solution)

    students = (("bob", bob, ("--set", "bob-laptop")), ("cy", cy, ()), ("eve", eve, ()))
    for name, checkout, extra in students:
        made = invoke(checkout, "submit", "--student", name, "--output", str(handed_in / f"{name}.tar.gz"), *extra)
        assert made.returncode == 0, made.stderr
    with tarfile.open(handed_in / "bob.tar.gz") as tar:
        assert "bob/set.tar.gz" in tar.getnames(), "bob's set, forged status and all, is in his submission"

    # The instructor grades in the full course: one VM boot, under tcg-icount.
    env = {
        **os.environ,
        "INVOKE_COURSE_RESULTS": str(tmp_path / "results"),
        "INVOKE_COURSE_BUILD": str(tmp_path / "build"),
    }
    graded = invoke(ROOT, "grade", str(handed_in), "--lessons", "3", env=env)
    assert graded.returncode == 0, graded.stdout[-3000:] + graded.stderr[-3000:]
    assert "SAME AS THE SOLUTION" in graded.stdout
    assert not marker.exists(), "bob's code never ran on the instructor's host"
    grades = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "results" / grading.GRADES).glob("*.json")}
    assert sorted(grades) == ["ada", "bob", "cy", "eve"]
    for record in grades.values():
        assert record["where"]["acceleration"] == "tcg-icount" and record["where"]["unit"] == "icount ticks"
    ada_grade, bob_grade, cy_grade = (grades[name]["exercises"]["03-timing/onebyte"] for name in ("ada", "bob", "cy"))
    assert ada_grade["status"] == "works" and not ada_grade["same_as_solution"]
    assert ada_grade["cost"]["read-1"]["yours"] > 0 and ada_grade["cost"]["read-1"]["solution"] > 0
    assert bob_grade["status"] == "not yet", "the forged status changed nothing"
    assert re.search(r"uid 200\d\d,", bob_grade["detail"]) and "written: no" in bob_grade["detail"], bob_grade
    assert "solution seen: no" in bob_grade["detail"], "the checkout (the solutions) is hidden from a job"
    assert "sources of others: 0" in bob_grade["detail"], "the laid-out submissions are not readable by a job"
    assert cy_grade["status"] == "works" and cy_grade["same_as_solution"] is True
    # Two jobs of one boot count the same code to within a few instructions, not always to the tick (in one CI
    # run 0.996): where the guest's timer tick lands in each job's samples is not repeated (see lesson 9's page).
    ratio = cy_grade["cost"]["read-1"]["ratio"]
    assert abs(ratio - 1.0) <= 0.01, f"the solution's copy costs what the solution costs, within 1 %: {ratio}"
    eve_grade = grades["eve"]["exercises"]["03-timing/onebyte"]
    assert eve_grade["status"] == "does not compile" and "Permission denied" in eve_grade["detail"], eve_grade

    # The progress table shows the three graded rows, and bob's imported set as self-reported.
    exported = invoke(bob, "results.export", "--set", "bob-laptop", "--output", str(tmp_path / "bob-laptop.tar.gz"))
    assert exported.returncode == 0, exported.stderr
    assert invoke(ROOT, "results.import", str(tmp_path / "bob-laptop.tar.gz"), env=env).returncode == 0
    shown = invoke(ROOT, "results.exercises", env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    row = {name: next(line for line in lines if line.lstrip("| ").startswith(name)) for name in ("ada", "bob", "cy")}
    assert "graded" in row["ada"] and "works" in row["ada"]
    assert "graded" in row["bob"] and "not yet" in row["bob"]
    assert "SAME AS THE SOLUTION" in row["cy"]
    forged = next(line for line in lines if "bob-laptop" in line)
    assert "self-reported" in forged and "works" in forged
    assert "4 graded in the VM, 1 self-reported" in shown.stdout
    assert "ada" in (tmp_path / "build" / "progress.csv").read_text()

    # The progress page: the same rows, self-reported marked; its CSV beside it.
    built = invoke(ROOT, "site", env=env)
    assert built.returncode == 0, built.stderr[-2000:]
    page = (tmp_path / "build" / "html" / "docs" / "progress.html").read_text()
    for name in ("ada", "bob", "cy", "bob-laptop", "self-reported", "SAME AS THE SOLUTION"):
        assert name in page, name
    assert "bob-laptop" in (tmp_path / "build" / "html" / "progress.csv").read_text()

    # Every command of the guide's walkthrough ran, in its order, as written there.
    pending = list(RAN)
    for wanted in guide_commands():
        while pending and not _ran_as_written(wanted, pending[0]):
            pending.pop(0)
        assert pending, f"the guide's `invoke {shlex.join(wanted)}` was not run (in its order) by this test"
        pending.pop(0)


def test_a_guest_kernels_set_is_never_silently_replaced_by_another_release(tmp_path: Path) -> None:
    from course.kernel import set_identity
    from course.kernel.kernel_build import GuestKernel

    results = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "qemu-icount-debian-6.1", results / "qemu-icount-debian-6.1")
    shipped = set_identity.stored_release(results / "qemu-icount-debian-6.1")
    assert shipped.startswith("6.1.")
    newer = GuestKernel(shipped + "-next", Path("/boot/x"), Path("/usr/src/x"), Path("/lib/modules/x"))
    same = GuestKernel(shipped, Path("/boot/x"), Path("/usr/src/x"), Path("/lib/modules/x"))
    with pytest.raises(set_identity.ReleaseChangeError, match=f"holds {re.escape(shipped)}'s figures.*--force"):
        set_identity.refuse_release_change(results, {"6.1": newer}, "tcg-icount", "host", force=False)
    set_identity.refuse_release_change(results, {"6.1": newer}, "tcg-icount", "host", force=True)
    set_identity.refuse_release_change(results, {"6.1": same}, "tcg-icount", "host", force=False)
    set_identity.refuse_release_change(results, {"6.12": newer}, "tcg-icount", "host", force=False)  # a new set


def test_invoke_run_stops_before_replacing_a_shipped_set_with_another_release(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "qemu-icount-debian-6.1", results / "qemu-icount-debian-6.1")
    info = store.read_json(results / "qemu-icount-debian-6.1" / store.SET_FILE)
    info["guest"]["release"] = "6.1.0-1-amd64"  # a release no machine has installed
    store.write_json(results / "qemu-icount-debian-6.1" / store.SET_FILE, info)
    env = {**os.environ, "INVOKE_COURSE_RESULTS": str(results), "INVOKE_COURSE_BUILD": str(tmp_path / "build")}
    ran = invoke(ROOT, "run", "--guest-kernels", "6.1", "--acceleration", "tcg-icount", "--lesson", "4", env=env)
    assert ran.returncode == 2, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert "qemu-icount-debian-6.1 holds 6.1.0-1-amd64's figures" in ran.stderr and "--force" in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1, "one clear line"
    assert store.read_json(results / "qemu-icount-debian-6.1" / store.SET_FILE) == info, "nothing was touched"


#: Job 1 leaves a process running in a session of its own, a file in /tmp and shared memory; says where it was.
LEAVES_BEHIND = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/shm.h>
#include <unistd.h>
int main(int argc, char **argv) {
	(void)argc;
	shmget(0x4242, 4096, IPC_CREAT | 0666);
	FILE *f = fopen("/tmp/left-by-job-1", "w");
	if (f) { fputs("a note for the next job\n", f); fclose(f); }
	if (fork() == 0) { setsid(); for (;;) pause(); }
	printf("course: check job ok %s uid %d\n", argv[0], (int)getuid());
	return 0;
}
"""

#: Job 2 tries to list the folder of every job's folder, to pre-create the next one, and to find what job 1 left;
#: says whether it may gain privileges (no new privileges, no capability).
PRYS = r"""
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>
int main(int argc, char **argv) {
	(void)argc;
	char own[4096], base[4096], guess[4200];
	snprintf(own, sizeof own, "%s", argv[0]);
	snprintf(base, sizeof base, "%s", dirname(dirname(own)));
	snprintf(guess, sizeof guess, "%s/job-next", base);
	DIR *listed = opendir(base);
	printf("course: check pry listing %s\n", listed ? "yes" : strerror(errno));
	printf("course: check pry mkdir %s\n", mkdir(guess, 0777) == 0 ? "yes" : strerror(errno));
	printf("course: check pry note %s\n", access("/tmp/left-by-job-1", F_OK) == 0 ? "yes" : "absent");
	printf("course: check pry solution %s\n", access(SOLUTION, F_OK) == 0 ? "seen" : strerror(errno));
	printf("course: check pry shm %s\n", shmget(0x4242, 0, 0) >= 0 ? "found" : strerror(errno));
	printf("course: check pry uid %d\n", (int)getuid());
	int nnp = -1;
	unsigned long long effective = ~0ULL, permitted = ~0ULL;
	unsigned ids[3] = {0, 0, 0}, gids[3] = {0, 0, 0};
	char line[256], groups[256] = "unread";
	FILE *status = fopen("/proc/self/status", "r");
	while (status && fgets(line, sizeof line, status)) {
		sscanf(line, "NoNewPrivs: %d", &nnp);
		sscanf(line, "CapEff: %llx", &effective);
		sscanf(line, "CapPrm: %llx", &permitted);
		sscanf(line, "Uid: %u %u %u", &ids[0], &ids[1], &ids[2]);
		sscanf(line, "Gid: %u %u %u", &gids[0], &gids[1], &gids[2]);
		if (strncmp(line, "Groups:", 7) == 0) {
			char *listed = line + 7 + strspn(line + 7, " \t");
			listed[strcspn(listed, " \n")] = '\0';
			snprintf(groups, sizeof groups, "%s", *listed ? listed : "none");
		}
	}
	printf("course: check pry nnp %d\n", nnp);
	printf("course: check pry caps %llx,%llx\n", effective, permitted);
	printf("course: check pry uids %u,%u,%u\n", ids[0], ids[1], ids[2]);
	printf("course: check pry gids %u,%u,%u\n", gids[0], gids[1], gids[2]);
	printf("course: check pry groups %s\n", groups);
	return 0;
}
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_each_guest_job_runs_as_its_own_user_in_its_own_folder_and_leaves_nothing(tmp_path: Path) -> None:
    """The guest's helper (run here directly: the programs are this test's own) keeps the jobs apart."""
    from course.classroom import grading_guest

    for name, source in (("one", LEAVES_BEHIND), ("two", PRYS)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "main.c").write_text(source.replace("SOLUTION", json.dumps(str(ROOT / SOLUTION))))
    job = {"source": "main.c", "args": [], "stdin": "devnull", "timeout": 30}
    jobs = [
        {**job, "id": "reference|x|devnull", "tree": str(tmp_path / "one")},
        {**job, "id": "student/mallory|x|devnull", "tree": str(tmp_path / "two")},
        {**job, "id": "student/gone|x|devnull", "tree": str(tmp_path / "missing")},
    ]
    try:
        one, two, gone = grading_guest.run_all(jobs, tmp_path / "results.json")
        assert one["ok"] and two["ok"], (one, two)
        assert f"uid {grading_guest.job_uid(1)}" in one["stdout"] and f"uid {grading_guest.job_uid(2)}" in two["stdout"]
        folder_one = Path(one["stdout"].split("check job ok ")[1].split()[0]).parent
        assert folder_one.name.startswith("job-") and not folder_one.exists(), "job 1's folder went with it"
        said = dict(line.split(" ", 1) for line in two["stdout"].replace("course: check pry ", "").splitlines())
        assert said["listing"] == "Permission denied" and said["mkdir"] == "Permission denied", said
        assert said["note"] == "absent", "what job 1 left in /tmp did not reach job 2"
        assert said["shm"] == "No such file or directory", "job 1's System V memory was removed after it"
        assert said["solution"] == "No such file or directory", "the checkout, solutions and all, is hidden"
        assert said["nnp"] == "1" and said["caps"] == "0,0", "no capability, and none gained by an exec"
        own = ",".join([str(grading_guest.job_uid(2))] * 3)
        assert said["uids"] == own and said["gids"] == own, "real, effective and saved: no way back"
        assert said["groups"] == "none", "no supplementary group (root's among them)"
        assert grading_guest.processes_of(grading_guest.job_uid(1)) == [], "job 1's process in its own session ended"
        assert gone["id"] == "student/gone|x|devnull" and "the grading helper failed" in gone["helper_error"]
        state, _ = grading.outcome(gone, "x")
        assert state["status"] == "crashed" and state["grading_failed"] and "helper failed" in state["detail"]
    finally:
        for number in (1, 2, 3):
            grading_guest.end_processes(grading_guest.job_uid(number))
            grading_guest.remove_ipc_of(grading_guest.job_uid(number))
        Path("/tmp/left-by-job-1").unlink(missing_ok=True)


def test_a_graded_program_takes_at_most_the_grading_sample_count() -> None:
    assert grading.GRADING_SAMPLES == 10_000, "docs/instructors.md says 10,000: change both"
    assert grading.graded_args(("100000",)) == ("10000",)
    assert grading.graded_args(("100000", "--more")) == ("10000", "--more"), "only the sample count changes"
    assert grading.graded_args(("500",)) == ("500",) and grading.graded_args(()) == ()
    assert grading.graded_args(("-1", "100000")) == ("-1", "100000"), "no sample count first: as it is"
    (onebyte,) = grading.exercises(Layout(ROOT), [3])
    assert onebyte.args == ("10000",)
    jobs = grading._jobs(Path("/tree"), onebyte, grading.job_name(None), onebyte.solution)
    assert [job["args"] for job in jobs] == [["10000"]]


def test_what_a_job_left_in_an_overlay_is_looked_for_in_its_upper_layer_only(tmp_path: Path) -> None:
    """The guest's /tmp is an overlay over this host's (over 9p): a job's files are all in its upper layer."""
    from course.classroom import grading_guest

    upper = tmp_path / "upper layer"
    upper.mkdir()
    shown = str(upper).replace(" ", "\\040")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / / ro,relatime - 9p /dev/root ro,access=any,msize=512000,trans=virtio\n"
        f"36 22 0:33 / /tmp rw,relatime - overlay virtme_rw_overlay7 rw,lowerdir=/tmp,upperdir={shown},workdir=/w\n"
        "37 22 0:34 / /var/tmp rw,relatime - tmpfs tmpfs rw\n"
        f"38 22 0:35 / /gone rw - overlay o rw,lowerdir=/gone,upperdir={tmp_path / 'missing'},workdir=/w\n"
    )
    assert grading_guest.written_layer(Path("/tmp"), mountinfo) == upper
    assert grading_guest.written_layer(Path("/var/tmp"), mountinfo) == Path("/var/tmp"), "not an overlay: itself"
    assert grading_guest.written_layer(Path("/gone"), mountinfo) == Path("/gone"), "no upper layer to list: itself"
    assert grading_guest.written_layer(Path("/dev/shm"), mountinfo) == Path("/dev/shm"), "not a mount point: itself"
    with mountinfo.open("a") as more:  # mounted over the overlay: the last mount on a point is the one seen there
        more.write("39 36 0:36 / /tmp rw,relatime - tmpfs tmpfs rw\n")
    assert grading_guest.written_layer(Path("/tmp"), mountinfo) == Path("/tmp")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (files of other users)")
def test_a_job_hides_no_file_from_the_clean_up_in_a_folder_of_every_users(tmp_path: Path) -> None:
    """The guest's /tmp shows the host's (.X11-unix, .ICE-unix: root's, sticky, writable by all): a job's files
    there, or below a folder of root's, are removed too; another's stay, and no link is followed."""
    from course.classroom import grading_guest

    job, other = grading_guest.job_uid(1), grading_guest.job_uid(2)
    shared = tmp_path / "tmp"
    every = shared / ".X11-unix"
    below = shared / "root's" / "every user's"
    closed = shared / "closed"
    for folder, mode in ((shared, 0o1777), (every, 0o1777), (below.parent, 0o755), (below, 0o1777), (closed, 0o700)):
        folder.mkdir()
        folder.chmod(mode)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept").write_text("not the job's\n")
    theirs = every / "theirs"
    made = {
        every / "note": "file",
        below / "nest": "folder",
        every / "a link": "link",
        shared / "top": "file",
        shared / "name\nwith a newline": "file",
        theirs: "file",
    }
    for path, kind in made.items():
        if kind == "file":
            path.write_text("a note for the next job\n")
        elif kind == "folder":
            (path / "deeper").mkdir(parents=True)
            (path / "deeper" / "note").write_text("hidden\n")
        else:
            path.symlink_to(outside, target_is_directory=True)
        for each in [path, *(path.rglob("*") if kind == "folder" else ())]:
            os.chown(each, other if path == theirs else job, job, follow_symlinks=False)
    grading_guest.remove_files_of(job, (shared,))
    left = sorted(str(path.relative_to(shared)) for path in shared.rglob("*"))
    assert left == [".X11-unix", ".X11-unix/theirs", "closed", "root's", "root's/every user's"], left
    assert (outside / "kept").read_text() == "not the job's\n", "the link was removed, not followed"


def test_every_memory_file_system_any_user_may_write_is_cleaned_after_a_job(tmp_path: Path) -> None:
    """virtme-ng's /var/log is a tmpfs of mode 1777: a job's note there would reach the next job as well."""
    from course.classroom import grading_guest

    log, run = tmp_path / "var log", tmp_path / "run"
    for folder, mode in ((log, 0o1777), (run, 0o755)):
        folder.mkdir()
        folder.chmod(mode)
    shown = str(log).replace(" ", "\\040")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        f"40 22 0:40 / {shown} rw,relatime - tmpfs tmpfs rw\n"
        f"41 22 0:41 / {run} rw,relatime - tmpfs run rw,mode=755\n"
        f"42 22 0:42 / {tmp_path / 'gone'} rw,relatime - tmpfs tmpfs rw\n"
        "43 22 0:43 / /tmp rw,relatime - overlay o rw,lowerdir=/tmp,upperdir=/run/tmp/o/upper,workdir=/w\n"
        f"44 22 0:44 / {tmp_path / 'var'} rw - overlay o6 rw,lowerdir=/var,upperdir={shown},workdir=/w\n"
        f"45 22 0:45 / {tmp_path / 'usr'} rw - overlay o5 rw,lowerdir=/usr,upperdir={tmp_path / 'gone'},workdir=/w\n"
    )
    # An overlay over the host's /var (Ubuntu's /var/crash is every user's): looked through in its upper layer;
    # one whose upper layer is not there is not walked (that would be the host's whole tree, over 9p).
    shared = (*grading_guest.SHARED_TEMP, log, tmp_path / "var")
    assert grading_guest.shared_folders(mountinfo) == shared


def test_no_student_name_takes_the_reference_solutions_place_and_the_sources_are_private(tmp_path: Path) -> None:
    layout = Layout(ROOT)
    for name in ("solution", "reference", "Solution"):
        with pytest.raises(submission.SubmissionError, match="a name grading keeps for itself"):
            submission.pack(layout, name, tmp_path / "x.tar.gz")
        info = json.dumps({"student": name}).encode()
        forged = _tar(tmp_path / f"{name}.tar.gz", {f"{name}/SUBMISSION.json": info, f"{name}/{VARIANT}": b"int x;"})
        with pytest.raises(submission.SubmissionError, match="a name grading keeps for itself"):
            submission.read(forged, layout)
    # Even a name that slipped through could not meet the reference's jobs: they are named apart.
    wanted = grading.exercises(layout, [3])
    solutions = {exercise.solution: b"/* the solution */" for exercise in wanted}
    tree = grading._new_tree(Layout(ROOT, build_dir=tmp_path / "build"))
    assert tree.stat().st_mode & 0o777 == 0o700, "the guest's jobs (other uids) cannot read the laid-out sources"
    sneaky = submission.Submission("reference", tmp_path / "r.tar.gz", "", {VARIANT: b"/* mine */"})
    jobs = grading.plan(layout, tree, wanted, solutions, [sneaky])
    ids = [job["id"] for job in jobs]
    assert len(ids) == len(set(ids)) and {i.split("|")[0] for i in ids} == {"reference", "student/reference"}
    trees = {job["id"].split("|")[0]: Path(job["tree"]) for job in jobs}
    assert trees["reference"] != trees["student/reference"] and all(tree in t.parents for t in trees.values())
    assert (trees["student/reference"] / VARIANT).read_bytes() == b"/* mine */"


def _pax_bomb(path: Path, header_bytes: int) -> Path:
    """A small .tar.gz whose first member is a pax header of ``header_bytes`` (zeros: it compresses ~1000:1)."""
    info = tarfile.TarInfo("eve/././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, header_bytes
    import gzip

    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(info.tobuf(format=tarfile.USTAR_FORMAT))
        chunk = b"0" * (1024 * 1024)
        for _ in range(header_bytes // len(chunk)):
            out.write(chunk)
    return path


def test_a_tar_bomb_is_refused_before_tarfile_parses_it_and_memory_stays_bounded(tmp_path: Path) -> None:
    import tracemalloc

    bomb = _pax_bomb(tmp_path / "eve.tar.gz", 64 * 1024 * 1024)
    assert bomb.stat().st_size < 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(submission.SubmissionError, match="expands to more than 16 MiB"):
            submission.read(bomb, Layout(ROOT))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * submission.MAX_TAR, f"{peak / 2**20:.0f} MiB used reading a bomb"


def test_archive_names_reach_the_terminal_escaped(tmp_path: Path) -> None:
    folder = tmp_path / "handed-in"
    folder.mkdir()
    (folder / "\x1b[2Jeve\u202egpj.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(grading.GradingError, match="no submission could be read") as refused:
        grading.grade(Layout(ROOT, build_dir=tmp_path / "build"), folder, numbers=[3], progress=lambda line: None)
    message = str(refused.value)
    assert "\x1b" not in message and "\u202e" not in message, message
    assert "\\x1b[2Jeve\\u202egpj.tar.gz" in message


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_class_grades_are_never_committed() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", f"results/{grading.GRADES}/ada.json"], cwd=ROOT)
    assert ignored.returncode == 0, "results/_grades/ is in .gitignore: a class's grades stay off the repository"


def test_invoke_grade_exits_non_zero_when_a_job_could_not_be_graded(tmp_path: Path, monkeypatch, capsys) -> None:
    from invoke import Config, Exit, MockContext, Result

    import tasks

    config = Config()
    config.load_collection(tasks.ns.configuration())
    config.course.results, config.course.build = str(tmp_path / "results"), str(tmp_path / "build")

    record = {
        "student": "ada",
        "where": {"guest_kernel": "6.12", "acceleration": "tcg-icount"},
        "exercises": {
            "03-timing/onebyte": {
                "status": "crashed",
                "detail": "the grading helper failed on this job: FileExistsError: [Errno 17] File exists",
                "grading_failed": True,
            }
        },
    }
    refused = ["\\x1beve.tar.gz: not a submission archive"]
    monkeypatch.setattr(grading, "grade", lambda *args, **kwargs: ([record], refused))  # the task imports it on use
    with pytest.raises(Exit) as ended:
        tasks.grade(MockContext(config=config, run=Result()), str(tmp_path))
    assert ended.value.code == 1
    lines = str(ended.value.message).splitlines()
    assert lines[:2] == ["some submissions were refused:", refused[0]]
    assert lines[2] == "some exercises could not be graded (grade them again):"
    assert lines[3].startswith("ada 03-timing/onebyte: the grading helper failed on this job: FileExistsError")
    assert "crashed" in capsys.readouterr().out, "the table is shown first"


def test_a_job_grading_failed_on_is_never_hidden_behind_the_students_own_crash() -> None:
    exercise = grading.Exercise("03-timing/onebyte", VARIANT, SOLUTION, (), ("devnull", "file"))
    ada = submission.Submission("ada", Path("ada.tar.gz"), "", {VARIANT: b"int main(void) { return 1; }"})
    by_id = {
        "student/ada|03-timing/onebyte|devnull": {"built": True, "ok": False, "ended": "exited with status 1"},
        "student/ada|03-timing/onebyte|file": {"helper_error": "the grading helper failed on this job: OSError"},
    }
    record = grading._grade_of(ada, [exercise], by_id, {exercise.key: {}}, {SOLUTION: b""}, {})
    state = record["exercises"][exercise.key]
    assert state["status"] == "crashed" and state["grading_failed"], state
    assert "grading helper failed" in state["detail"]
