"""Sphinx's command line in a process that ends as soon as the build has ended.

A site build leaves a heap of millions of objects (every page's doctree, the environment, the result
sets); a normal exit frees them one by one, which took 1.3-1.5 s after a class's clean build had written
its last file (0.2 s with this). Sphinx has closed every file it wrote by the time its ``main`` returns,
and the build's own helper processes end with it, so this flushes the standard streams and leaves at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def run(argv: Sequence[str]) -> None:
    """Run ``sphinx-build argv`` and end this process with its exit status, skipping the interpreter's teardown."""
    from sphinx.cmd.build import main

    status = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    run(sys.argv[1:])
