# The course's layout in small: the root page in a folder (docs/index), pages beside it and in another folder.
# No version: the book takes the course's (course.publish.sphinxext.epub).
project = "A book with its root in a folder"
root_doc = "docs/index"
extensions = ["course.publish.sphinxext.epub"]
