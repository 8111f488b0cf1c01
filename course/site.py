"""Building the HTML site with Sphinx, in a process of its own.

The build only reads result files; it never measures. Sphinx's incremental build,
with the result files recorded as dependencies by :mod:`course.sphinxext`, rebuilds
only the pages whose figures changed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from course import edition
from course.layout import Layout


class SiteError(RuntimeError):
    """The Sphinx build failed; its output says where."""


def html_folder(layout: Layout, edition_name: str = "") -> Path:
    """Where an edition's HTML goes: the checkout's own edition in ``build/html``, another in ``build/<edition>/html``.

    Each edition keeps its own folder (and doctrees): a student edition built where the full
    one was would keep the full one's downloads, solutions among them.
    """
    other = edition.folder_name(layout.root, edition_name or edition.of_checkout(layout.root))
    return layout.build / other / "html" if other else layout.html


def _doctrees(layout: Layout, edition_name: str) -> Path:
    other = edition.folder_name(layout.root, edition_name or edition.of_checkout(layout.root))
    return layout.build / other / "doctrees" if other else layout.doctrees


def sphinx_command(
    layout: Layout, builder: str = "html", *, strict: bool = True, current_set: str = "", edition_name: str = ""
) -> list[str]:
    edition_name = edition_name or edition.of_checkout(layout.root)
    command = [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        builder,
        "-q",
        "-j",
        "auto",  # the pages are read and written on every CPU: a clean build takes half the time on two
        "-d",
        str(_doctrees(layout, edition_name)),
        str(layout.root),
        str(html_folder(layout, edition_name) if builder == "html" else layout.build / builder),
        "-D",
        f"course_results_dir={layout.results}",
        "-D",
        f"course_edition={edition_name}",
    ]
    if current_set:
        command += ["-D", f"course_current_set={current_set}"]
    if strict:
        command += ["-W", "--keep-going"]
    return command


def build_site(layout: Layout, *, strict: bool = True, current_set: str = "", edition_name: str = "") -> float:
    """Build the site into ``build/html``; return the seconds it took.

    Strict builds print every warning and fail on the first page with one; others keep the
    warnings in ``build/sphinx-warnings.txt`` and print how many there are, so that a
    student rerunning one lesson is not buried under the other lessons' stale figures.
    """
    started = time.monotonic()
    command = sphinx_command(layout, strict=strict, current_set=current_set, edition_name=edition_name)
    warnings = layout.build / "sphinx-warnings.txt"
    if not strict:
        layout.build.mkdir(parents=True, exist_ok=True)
        command += ["-w", str(warnings)]
    # Sphinx's stderr is read here (and echoed in strict builds) so that a failure names its cause.
    said: list[str] = []
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="backslashreplace") as process:
        assert process.stderr is not None
        for line in process.stderr:
            said.append(line)
            if strict:
                sys.stderr.write(line)
    if process.returncode != 0:
        raise SiteError(f"the site build failed (exit {process.returncode}): {sphinx_reason(''.join(said))}")
    remove_stale_generated_pages(layout, html_folder(layout, edition_name))
    if not strict and warnings.is_file():
        count = sum(1 for line in warnings.read_text().splitlines() if "WARNING" in line)
        if count:
            print(
                f"site: {count} warnings (missing or stale figures, listed in {warnings}); "
                "`invoke generate` remeasures what changed"
            )
    return time.monotonic() - started


#: What Sphinx's link checker says of a link that a reader would find broken.
BROKEN = ("broken", "timeout")


def check_links(layout: Layout, *, current_set: str = "") -> list[dict]:
    """Check every external link of the site (kernel sources, manual pages, tools); return Sphinx's records.

    It needs the internet, so it is a task of its own (``invoke linkcheck``), never part of the
    build or of the tests. Its doctrees are its own: a link check never makes the next HTML
    build reread every page.
    """
    out = layout.build / "linkcheck"
    command = sphinx_command(layout, "linkcheck", strict=False, current_set=current_set)
    command[command.index("-d") + 1] = str(out / ".doctrees")
    finished = subprocess.run(command, capture_output=True, text=True, errors="backslashreplace")
    report = out / "output.json"
    if finished.returncode not in (0, 1) or not report.is_file():  # 1: some link is broken, said in the report
        raise SiteError(f"the link check failed (exit {finished.returncode}): {sphinx_reason(finished.stderr)}")
    return [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines() if line.strip()]


def remove_stale_generated_pages(layout: Layout, html: Path | None = None) -> list[Path]:
    """Remove the built pages of result sets that are gone; return them.

    Sphinx forgets a page whose source is removed but leaves its HTML: a deleted set's machine
    page (generated from the set, see ``course.sphinxext``) would stay published until
    ``invoke clean``. Only pages without a source that carry the generated mark are removed.
    """
    from course.sphinxext import GENERATED  # Sphinx is loaded only here, after a build

    html = html or layout.html
    removed = []
    for page in html.rglob("*.html"):
        relative = page.relative_to(html)
        if relative.parts[0].startswith("_") or (layout.root / relative.with_suffix(".md")).exists():
            continue
        try:
            generated = GENERATED in page.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if generated:
            page.unlink()
            (html / "_sources" / relative.with_suffix(".md.txt")).unlink(missing_ok=True)
            removed.append(page)
    return removed


#: The lines of a Sphinx crash report that say nothing about the cause.
_BOILERPLATE = ("To report this error", "Please also report", "The full traceback has been saved in")


def sphinx_reason(stderr: str) -> str:
    """What Sphinx said went wrong, in one line: the error of its crash report, or its first warning."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    report = next((line for line in lines if line.endswith(".log") and "sphinx-err-" in line), "")
    if "Traceback" in lines:
        # The report's traceback ends with "module.ErrorClass: message"; the message is the cause.
        tail = [line for line in lines[lines.index("Traceback") + 1 :] if not line.startswith(_BOILERPLATE)]
        ending = [line for line in tail if line != report and not set(line) <= {"="}]
        if ending:
            cause = re.sub(r"^[\w.]+(Error|Exception|Warning): ", "", ending[-1])
            return cause + (f" (Sphinx's full report: {report})" if report else "")
    problems = [line for line in lines if re.search(r"\b(WARNING|ERROR|CRITICAL|SEVERE)\b|[Ee]rror:", line)]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return problems[0] + more
    useful = [line for line in lines if not line.startswith(_BOILERPLATE) and line != report]
    return " / ".join(useful[-3:]) or "Sphinx printed nothing; rerun `invoke site --strict` to see each warning"


def entry_page(layout: Layout, edition_name: str = "") -> Path:
    return html_folder(layout, edition_name) / "docs" / "index.html"
