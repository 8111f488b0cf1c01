"""A course project with no sets: the progress page alone (its tests write the grades)."""

extensions = ["myst_parser", "course.publish.sphinxext"]
exclude_patterns = ["results"]
course_results_dir = "results"
course_machines_page = "machines"
