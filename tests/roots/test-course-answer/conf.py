"""A small course project for course-answer: canned guest sets whose shares are savings and costs."""

extensions = ["myst_parser", "course.publish.sphinxext"]
exclude_patterns = ["results"]
course_results_dir = "results"
course_current_set = "canned-machine"
course_machines_page = "machines"
