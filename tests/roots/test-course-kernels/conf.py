"""A small course project with the canned sets of a kernel matrix, for course.publish.sphinxext.kernels."""

extensions = ["myst_parser", "course.publish.sphinxext"]
exclude_patterns = ["results"]
course_results_dir = "results"
course_current_set = "canned-machine"
course_machines_page = "machines"
