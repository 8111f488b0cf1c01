"""The course generator: measure the lessons' programs, store the figures with their
provenance, and place them into the Sphinx site.

The package keeps Sphinx at its edge: everything but :mod:`course.publish.sphinxext` runs
without Sphinx, so results can be measured on one machine and published on another.
"""

__version__ = "0.1.0"
