"""Sphinx configuration of the course site: lessons/ and docs/ become the HTML site."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the course package, for the extension and autodoc

project = "Kernel System Calls, measured"
author = "The course's authors, after Alessandro Rubini (Linux Magazine, 2000)"
copyright = "2026, " + author  # noqa: A001 - the name Sphinx reads

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.graphviz",
    "course.sphinxext",
]

root_doc = "docs/index"
include_patterns = ["docs/**", "lessons/**"]
exclude_patterns = ["build", ".venv", "README.md"]

myst_enable_extensions = ["colon_fence", "deflist", "attrs_inline"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = project
html_static_path: list[str] = []

graphviz_output_format = "svg"

autodoc_member_order = "bysource"
autodoc_typehints = "description"

# Where measured figures are read from; `invoke` passes these with -D.
course_results_dir = "results"
course_current_set = ""  # empty: this machine's set, else the newest measured set
course_sets: list[str] = []  # empty: every stored set

# The site's root index.html only points at the course's home page, docs/index.html.
html_extra_path = ["docs/_root"]
