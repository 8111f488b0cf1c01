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
    """Build the site into ``build/html``; return the seconds it took."""
    started = time.monotonic()
    finished = subprocess.run(sphinx_command(layout, strict=strict, current_set=current_set))
    if finished.returncode != 0:
        raise SiteError(f"the site build failed (exit {finished.returncode}); the warnings above name each problem")
    return time.monotonic() - started


def entry_page(layout: Layout) -> Path:
    return layout.html / "docs" / "index.html"
