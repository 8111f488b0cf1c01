"""Building the HTML site with Sphinx, in a process of its own.

The build only reads result files; it never measures. Sphinx's incremental build,
with the result files recorded as dependencies by :mod:`course.sphinxext`, rebuilds
only the pages whose figures changed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from course.layout import Layout


class SiteError(RuntimeError):
    """The Sphinx build failed; its output says where."""


def sphinx_command(layout: Layout, builder: str = "html", *, strict: bool = True, current_set: str = "") -> list[str]:
    command = [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        builder,
        "-q",
        "-d",
        str(layout.doctrees),
        str(layout.root),
        str(layout.html if builder == "html" else layout.build / builder),
        "-D",
        f"course_results_dir={layout.results}",
    ]
    if current_set:
        command += ["-D", f"course_current_set={current_set}"]
    if strict:
        command += ["-W", "--keep-going"]
    return command


def build_site(layout: Layout, *, strict: bool = True, current_set: str = "") -> float:
    """Build the site into ``build/html``; return the seconds it took.

    Strict builds print every warning and fail on the first page with one; others keep the
    warnings in ``build/sphinx-warnings.txt`` and print how many there are, so that a
    student rerunning one lesson is not buried under the other lessons' stale figures.
    """
    started = time.monotonic()
    command = sphinx_command(layout, strict=strict, current_set=current_set)
    warnings = layout.build / "sphinx-warnings.txt"
    if not strict:
        layout.build.mkdir(parents=True, exist_ok=True)
        command += ["-w", str(warnings)]
    finished = subprocess.run(command, stderr=None if strict else subprocess.DEVNULL)
    if finished.returncode != 0:
        raise SiteError(f"the site build failed (exit {finished.returncode}); the warnings above name each problem")
    if not strict and warnings.is_file():
        count = sum(1 for line in warnings.read_text().splitlines() if "WARNING" in line)
        if count:
            print(
                f"site: {count} warnings (missing or stale figures, listed in {warnings}); "
                "`invoke generate` remeasures what changed"
            )
    return time.monotonic() - started


def entry_page(layout: Layout) -> Path:
    return layout.html / "docs" / "index.html"
