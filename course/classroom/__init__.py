"""Teaching a class: students' submissions and their grading in the disposable VM."""
