"""The course pipeline's command line: `invoke --list` shows every task, `invoke --help TASK` its options.

Each task is a few lines over :mod:`course.commands`. Defaults live in one
``ns.configure`` below; ``invoke.yaml`` or ``INVOKE_COURSE_*`` variables override them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from invoke import Collection, Exit, task

from course import commands, lessons, site
from course.layout import Layout, find_root


def _layout(c) -> Layout:
    return Layout(find_root(), None if not c.course.results else Path(c.course.results))


def _fail_clearly(function):
    """Turn the course's own errors into one clear line and a non-zero exit, not a traceback."""

    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (lessons.LessonError, site.SiteError, commands.system.SystemError_, commands.store.StoreError) as error:
            raise Exit(f"error: {error}", code=2) from None
        except KeyboardInterrupt:
            raise Exit("interrupted: stored results are as they were before this run", code=130) from None

    wrapper.__wrapped__ = function
    return wrapper


@task(help={"check": "only list the missing Debian packages, install nothing"})
def setup(c, check=False):
    """Install the Debian packages the lessons need (compiler, binutils, graphviz)."""
    _fail_clearly(commands.setup)(_layout(c), install=not check)


@task(help={"lesson": "only this lesson's programs (its number)"})
def build(c, lesson=None):
    """Compile the lessons' programs into build/ (only those whose sources changed)."""
    from course import build as builder

    layout = _layout(c)
    chosen = [lessons.find(layout, int(lesson))] if lesson else lessons.discover(layout)
    for item in chosen:
        for program in item.programs:
            built = builder.build_program(layout, item, program)
            print(f"{item.name}/{program}: {'compiled' if built.rebuilt else 'unchanged'} -> {built.binary}")


@task(
    help={
        "lesson": "only this lesson (its number); default: all",
        "force": "rerun even when nothing changed since the stored results",
        "set": "name of the result set (default: derived from this machine)",
        "label": "a human label for the result set, shown on the site",
    }
)
def run(c, lesson=None, force=False, set=None, label=None):  # noqa: A002 - the option's name
    """Build and run the examples, storing results with their provenance (no site build)."""

    def go():
        reports, _ = commands.measure(
            _layout(c), [int(lesson)] if lesson else None, force=force, set_name=set or c.course.set, label=label
        )
        commands.print_reports(reports)

    _fail_clearly(go)()


@task(help={"number": "the lesson's number, as in lessons/NN-*.md", "set": "name of the result set"})
def lesson(c, number, set=None):  # noqa: A002
    """Rerun one lesson's exercise: rebuild if changed, run, store, update its pages, compare."""
    if not str(number).isdigit():
        raise Exit(f"error: lesson number must be a number, got {number!r}", code=2)
    ok = _fail_clearly(commands.lesson)(_layout(c), int(number), set_name=set or c.course.set)
    if not ok:
        raise Exit("some steps failed; see the failures above (earlier results were kept)", code=1)


@task(help={"strict": "turn Sphinx warnings into errors (as CI does)"})
def site_(c, strict=False):
    """Build the HTML site from the stored results into build/html (no measuring)."""
    layout = _layout(c)
    seconds = _fail_clearly(site.build_site)(layout, strict=strict, current_set=c.course.set or "")
    print(f"site built in {seconds:.1f} s: {site.entry_page(layout)}")


@task(
    help={
        "force": "rerun every example even if nothing changed",
        "set": "name of this machine's result set",
        "label": "a human label for the result set",
        "strict": "turn Sphinx warnings into errors",
    }
)
def generate(c, force=False, set=None, label=None, strict=False):  # noqa: A002
    """Generate the course: build and run every example that can run here, store results, build the site."""
    ok = _fail_clearly(commands.generate)(
        _layout(c), force=force, set_name=set or c.course.set, label=label, strict=strict
    )
    if not ok:
        raise Exit("the course was generated, but some steps failed; see above", code=1)


@task(help={"port": "port of the local preview", "host": "address to listen on"})
def serve(c, port=8000, host="127.0.0.1"):
    """Preview the site locally, rebuilding it when a lesson, doc or result changes."""
    layout = _layout(c)
    command = site.sphinx_command(layout, strict=False)[3:]  # sphinx-build's own arguments
    c.run(
        f"{sys.executable} -m sphinx_autobuild --host {host} --port {int(port)} "
        f"--watch results --watch course " + " ".join(f"'{arg}'" for arg in command if arg != "-q"),
        pty=True,
    )


@task(help={"fast": "skip the slow tests (real runs and the full site build)", "k": "only tests matching this"})
def test(c, fast=False, k=""):
    """Run the whole test suite (ruff, unit, Sphinx extension, integration, full site build)."""
    c.run(f"{sys.executable} -m ruff check course tests tasks.py conf.py")
    options = ["-m 'not slow'"] if fast else []
    if k:
        options.append(f"-k '{k}'")
    c.run(f"{sys.executable} -m pytest {' '.join(options)}", pty=False)


@task
def clean(c):
    """Remove build/ (binaries, site); stored results are kept."""
    commands.clean(_layout(c))


@task(help={"json": "print every set and measurement as JSON (schema: docs/results.md)"})
def results(c, json=False):
    """List the stored result sets, or print them all as JSON."""
    print(_fail_clearly(commands.results)(_layout(c), as_json=json))


ns = Collection(setup, build, run, lesson, generate, serve, test, clean, results)
ns.add_task(site_, name="site")
ns.configure({"course": {"set": "", "results": ""}})
