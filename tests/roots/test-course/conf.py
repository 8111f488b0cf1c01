"""A small course project with canned results, for the extension's tests."""

extensions = ["myst_parser", "sphinx.ext.graphviz", "course.publish.sphinxext"]
graphviz_output_format = "svg"
exclude_patterns = ["results", "code"]
course_results_dir = "results"
course_current_set = "canned-machine"
course_machines_page = "machines"
