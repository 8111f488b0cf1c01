"""A small course with guest sets shown Skylake-Server-v4 (mitigations on, off), for guest_mitigations."""

extensions = ["myst_parser", "course.publish.sphinxext"]
exclude_patterns = ["results"]
course_results_dir = "results"
course_current_set = "canned-machine"
course_machines_page = "machines"
