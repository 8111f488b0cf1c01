"""Sphinx configuration of the course site: lessons/ and docs/ become the HTML site."""

import gc
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the course package, for the extension and autodoc

# A site build is one short process that makes millions of small objects (doctrees, the pickled
# environment, the extensions' imports) and keeps most of them to its end: Python's cyclic collector,
# run every 700 allocations, took an eighth of a rerun's site build for nothing. It still runs, less often.
gc.set_threshold(100_000, 50, 100)

project = "Kernel System Calls, measured"
author = "The course's authors, after Alessandro Rubini (Linux Magazine, 2000)"
copyright = "2026, " + author  # noqa: A001 - the name Sphinx reads

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.graphviz",
    "sphinx.ext.extlinks",
    "course.publish.sphinxext",
]

root_doc = "docs/index"
include_patterns = ["docs/**", "lessons/**"]
exclude_patterns = ["build", ".venv", "README.md"]

myst_enable_extensions = ["colon_fence", "deflist", "attrs_inline"]
myst_heading_anchors = 3
# Quotes and ellipses only: "--" stays two hyphens, for the command-line options the lessons name.
smartquotes_action = "qe"

html_theme = "furo"
html_title = project
html_static_path: list[str] = []
html_favicon = "docs/_static/favicon.svg"  # a clock's square wave: the ticks the course counts

graphviz_output_format = "svg"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Defaults as written (CHECKOUT, not the path of the checkout that built the site).
autodoc_preserve_defaults = True
# The course annotates its signatures; it writes no "# type: (...) -> ..." comments for autodoc to look for in
# the source of every function it documents (a twelfth of a clean build's reading).
autodoc_use_type_comments = False

# Where measured figures are read from; `invoke` passes these with -D.
course_results_dir = "results"
course_current_set = ""  # empty: this machine's set, else the newest measured set
course_sets: list[str] = []  # empty: every stored set
# "student" leaves the exercises' solutions out (`invoke site --edition student`); a student
# copy of the course (`invoke student-copy`) is that edition by default.
course_edition = "student" if (Path(__file__).parent / ".course-edition").is_file() else "full"
# A published site names the instructor's machine by its label, never "this machine" (`invoke publish`).
course_published = False

# Read the Docs (.readthedocs.yaml) builds the published student edition from the committed results.
if os.environ.get("READTHEDOCS") == "True":
    course_edition, course_published = "student", True

# The site's root index.html only points at the course's home page, docs/index.html.
html_extra_path = ["docs/_root"]
# ... and is no page of the EPUB (`invoke publish`). Here, not on the book's command line: a setting that makes
# Sphinx read every page again, and the book is built from the HTML build's doctrees.
epub_exclude_files = ["index.html"]
# The book's table of contents lists every page, the lessons too (the home page's list of them is a hidden toctree).
epub_tocscope = "includehidden"

# Kernel functions named in the lessons link to the source of the kernel the VM boots (Debian 12's
# linux-image-amd64), system calls to their manual pages. The site is built offline: these are
# checked only by the separate link check (`invoke linkcheck`), never by the test suite.
course_guest_kernel = "6.1"
extlinks = {
    "kfunc": (f"https://elixir.bootlin.com/linux/v{course_guest_kernel}/A/ident/%s", "%s()"),
    "man2": ("https://man7.org/linux/man-pages/man2/%s.2.html", "%s(2)"),
}
extlinks_detect_hardcoded_links = False  # the lessons cite some of these pages by hand, on purpose

# `invoke linkcheck` checks the links above and the lessons' own (it needs the internet): patient
# with slow servers, which a course read years from now will meet.
linkcheck_timeout = 30
linkcheck_retries = 2
