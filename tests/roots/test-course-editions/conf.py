"""A course project of one page with an exercise whose prose gives its solution away (no sets)."""

extensions = ["myst_parser", "course.publish.sphinxext"]
myst_enable_extensions = ["colon_fence"]
exclude_patterns = ["results"]
course_results_dir = "results"
course_machines_page = "machines"
