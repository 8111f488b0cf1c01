"""A small course project with canned results, for the extension's tests."""

extensions = ["myst_parser", "course.publish.sphinxext"]
exclude_patterns = ["results", "code"]
course_results_dir = "results"
course_current_set = "canned-machine"
course_machines_page = "machines"
