"""Sphinx extension: place stored measurements into the course's pages.

Used from MyST:

- ``{measure}`03-timing/read.devnull``: one value inline (``:median``, ``:ns``,
  ``:median-ns`` ... after the id; ``set@`` before it picks a result set);
- ``{host}`this machine's own kernel```: the words, with this machine's set and whether it is a VM;
- ``{course-output}``: a captured output block (a program's output, a disassembly);
- ``{course-table}``: measurements down, result sets across, the 2000 reference first;
- ``{course-answer}``: a lesson's answer, each saving in percent, 2000 beside today on one scale;
- ``{course-chart}``: bars across sets, the histogram of one measurement, or a timeline of probes (``:timeline:``);
- ``{course-failures}``: what failed in a lesson's last run, with its log;
- ``{course-machine}``: one result set's page (provenance, every figure); these pages are generated;
- ``{course-hardware}``: every set in one table, with chosen figures against 2000;
- ``{course-machine-pages}``: a link to every set's page (the pages are in no toctree, not in the sidebar);
- ``{course-mitigations}``: this machine's CPU vulnerabilities and mitigations;
- ``{course-kernel-run}``: where a lesson's kernel figures were measured (VM, emulation, host);
- ``{course-context}``: what a tick means on this machine (invariant TSC, hypervisor);
- ``{course-run-report}``: the execution report, each lesson's last run;
- ``{course-kept}``: after a student's rerun, which of a lesson's figures were kept from an earlier run, and when;
- ``{course-code}``, ``{course-downloads}``: listings cut from the real C files, and every file to download
  (``course.publish.sphinxext.code``);
- ``{course-kernels}``, ``{course-trace-diff}``: figures and call graphs across the guest kernels of the kernel
  matrix (``course.publish.sphinxext.kernels``);
- ``{course-guest-mitigations}``: each guest kernel's figures with mitigations on and off, counted in
  instructions under a CPU model its kernel treats as affected (``course.publish.sphinxext.guest_mitigations``);
- ``{course-progress}``: the class's progress, graded and self-reported (``course.publish.sphinxext.progress``).

A missing value is a warning naming it (a CI build with ``-W`` fails on it), and a
value from sources changed since it was measured is a warning too. Every result file
read is recorded as a dependency, so new results rebuild exactly the pages using them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import posixpath
import re
import unicodedata
import weakref
from collections.abc import Iterable, Set
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.domains.python import ObjectEntry, PythonDomain
from sphinx.environment import BuildEnvironment
from sphinx.errors import SphinxError
from sphinx.project import Project
from sphinx.util import logging
from sphinx.util._pathlib import _StrPath
from sphinx.util.parallel import make_chunks

from course import __version__
from course.kernel import guest_kernels
from course.publish.site import GENERATED, GENERATED_FOLDER  # a generated machine page's first line, and its folder
from course.publish.sphinxext import (
    chartcache,
    code,
    defaults,
    depends,
    epub,
    navigation,
    progress,
    published,
    searchstems,
    setdata,
    smartquotes,
    sourceanalysis,
    titlesonly,
    toctrees,
)
from course.publish.sphinxext.answer import CourseAnswer, CourseSizeLine
from course.publish.sphinxext.base import course_value, depart_course_value, name_graphviz_figures, visit_course_value
from course.publish.sphinxext.chart_directive import CourseChart
from course.publish.sphinxext.context import (
    CourseContext,
    CourseFailures,
    CourseKept,
    CourseKernelRun,
    CourseRunReport,
    HostRole,
)
from course.publish.sphinxext.data import CourseData, attach, data_of
from course.publish.sphinxext.figures import MeasureRole
from course.publish.sphinxext.guest_mitigations import CourseGuestMitigations
from course.publish.sphinxext.kernels import CourseKernels, CourseTraceDiff
from course.publish.sphinxext.machines import CourseHardware, CourseMachine, CourseMachinePages, CourseMitigations
from course.publish.sphinxext.output import CourseOutput
from course.publish.sphinxext.table_directive import CourseTable
from course.publish.sphinxext.traces import CourseTraceKinds
from course.results import store
from course.results.store import StoreError

logger = logging.getLogger(__name__)


class ResultFileError(SphinxError):
    """A result file the site cannot read: Sphinx prints the message (which names the file and the fix)."""

    category = "Result file error"


#: The attribute of the build's environment holding the keys of the result files' contents that passed the
#: checks (``store.read_json``): pickled with it, so that a planted key takes forging ``environment.pickle``,
#: which Sphinx unpickles (runs) at the next build anyway; a file of its own beside it was one more way in.
CHECKED_KEYS = "course_checked_files"


def _load_data(app: Sphinx) -> None:
    results = Path(app.config.course_results_dir)
    if not results.is_absolute():
        results = Path(app.srcdir) / results
    # What an earlier build of this output checked: a clean build (a fresh environment) checks all.
    earlier = getattr(app.env, CHECKED_KEYS, ())
    store.remember_checked(earlier)
    # The checks are shared between the cores only when there are checks to make: a rebuild's files are known.
    processes = 1 if earlier else app.parallel
    try:
        data = CourseData(
            results, Path(app.srcdir), app.config.course_current_set, list(app.config.course_sets), processes
        )
    except StoreError as error:
        raise ResultFileError(str(error)) from None
    setattr(app.env, CHECKED_KEYS, store.checked_keys())
    attach(app.env, data)
    for kept, other in guest_kernels.duplicate_guests(list(data.sets.values())):
        logger.warning(
            "course: result sets %r and %r are both the kernel matrix's boot of guest %r; "
            "%r is shown: remove or rename the other",
            kept.id,
            other.id,
            guest_kernels.matrix_guest(kept).get("name", "?"),
            kept.id,
            type="course",
            subtype="duplicate-guest",
        )
    _forget_checkout_pages(Path(app.srcdir) / app.config.course_machines_page)
    generated = Path(app.doctreedir) / GENERATED_FOLDER
    pages = _write_machine_pages(generated / app.config.course_machines_page, data)
    _read_generated_pages(app, {f"{app.config.course_machines_page}/{page.stem}": page for page in pages})
    if not data.current:
        logger.warning(
            "course: no measured result set in %s; run `invoke generate` to measure this machine",
            results,
            type="course",
            subtype="no-set",
        )


def markdown_text(text: str) -> str:
    """``text`` as literal MyST: every ASCII punctuation mark backslash-escaped, on one line.

    A set's label comes from whoever made the set (an imported archive is anyone's): unescaped,
    a label could open a directive (``{include}`` of a local file), a role or raw HTML.
    CommonMark makes a backslash before any ASCII punctuation a literal character, so
    nothing in the result can start markup; control characters and line breaks become spaces.
    """
    flat = "".join(" " if unicodedata.category(char)[0] in "CZ" and char != " " else char for char in text)
    return re.sub(r"""([!-/:-@\[-`{-~])""", r"\\\1", flat)


def _write_machine_pages(folder: Path, data: CourseData) -> list[Path]:
    """One page per shown result set, written only when its text changes (so Sphinx rereads nothing else); the pages.

    They go beside the build's doctrees, never into the checkout: two builds of one checkout (the
    tests run several at once) each read their own.
    """
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {}
    for result_set in data.sets.values():
        problem = store.page_name_problem(result_set.id)
        if problem:
            logger.warning(
                "course: result set folder %r %s; not shown: rename the folder", result_set.id, problem, type="course"
            )
    for result_set in data.with_pages():
        mark = ""
        if result_set.id == data.current_id:  # a set standing in for this machine's says so, in its source too
            mark = " (this machine)" if data.current_is_this_machine else f" ({published.STAND_IN})"
        title = markdown_text(f"{result_set.label}{mark}").strip() or result_set.id
        wanted[f"{result_set.id}.md"] = f"{GENERATED}\n# {title}\n\n```{{course-machine}} {result_set.id}\n```\n"
    for page in folder.glob("*.md"):
        if page.name not in wanted and page.read_text(encoding="utf-8").startswith(GENERATED):
            page.unlink()
    for name, text in wanted.items():
        page = folder / name
        if not page.is_file() or page.read_text(encoding="utf-8") != text:
            page.write_text(text, encoding="utf-8")
    return [folder / name for name in sorted(wanted)]


def _forget_checkout_pages(folder: Path) -> None:
    """Remove the machine pages that earlier versions generated into the checkout (their first line says so)."""
    for page in folder.glob("*.md") if folder.is_dir() else ():
        try:
            if page.read_text(encoding="utf-8").startswith(GENERATED):
                page.unlink()
        except FileNotFoundError:  # another build of this checkout removed it first
            continue
    with contextlib.suppress(OSError):  # left empty (it is not the course's: .gitignore): gone too
        folder.rmdir()


class GeneratedPagesProject(Project):
    """Sphinx's project, with pages whose sources live outside the source folder (the generated machine pages).

    Each keeps the name and the relative path a page of the source folder would have (its URL, its
    ``_sources`` copy); only the file read, and whose date says whether to read it again, is elsewhere.
    """

    generated: dict[str, Path]

    def discover(self, exclude_paths: Iterable[str] = (), include_paths: Iterable[str] = ("**",)) -> set[str]:
        super().discover(exclude_paths, include_paths)
        generated = getattr(self, "generated", {})
        # A build folder inside the source folder (Sphinx's test projects): its pages are found once, by their own name.
        files = {page.resolve() for page in generated.values()}
        for path, docname in list(self._path_to_docname.items()):
            if (self.srcdir / path).resolve() in files:
                self.docnames.discard(docname)
                del self._path_to_docname[path], self._docname_to_path[docname]
        for docname, page in generated.items():
            relative = Path(docname + page.suffix)
            self.docnames.add(docname)
            self._docname_to_path[docname] = relative
            self._path_to_docname[relative] = docname
        return self.docnames

    def doc2path(self, docname: str, absolute: bool) -> _StrPath:
        page = getattr(self, "generated", {}).get(docname)
        if absolute and page is not None:
            return _StrPath(page)
        return super().doc2path(docname, absolute)


def _read_generated_pages(app: Sphinx, pages: dict[str, Path]) -> None:
    """Make Sphinx find ``pages`` (docname: file) as if they were in the source folder."""
    project = app.project
    project.__class__ = GeneratedPagesProject  # the environment keeps (and pickles) this very object
    project.generated = pages  # type: ignore[attr-defined]


#: What marks a page whose reading costs most of a clean build's: autodoc imports and analyses a module for each.
_AUTODOC = re.compile(rb"^\s*\.\. auto(module|class|function)::\s*([\w.]+)", re.MULTILINE)

#: An autodoc directive's cost when its module's source is not found (or it documents one object of it).
_AUTODOC_COST = 12


def _module_source_size(name: str) -> int | None:
    """The size in bytes of module ``name``'s source file, found without importing the module itself."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    try:
        return Path(spec.origin).stat().st_size if spec and spec.origin else None
    except OSError:
        return None


def _reading_cost(path: Path) -> int:
    """A page's reading cost in rough units: its size in kilobytes, and far more for each autodoc directive.

    The API reference's pages are a few hundred bytes each, yet reading them is most of a clean
    build here (62 modules imported, analysed and documented); the others cost by their length.
    An ``automodule`` costs by the length of the module it documents: one kilobyte of source took
    about 1.3 times as long as a kilobyte of prose (the largest API page, 310 kB of modules, 2.1 s).
    """
    try:
        source = path.read_bytes()
    except OSError:
        return 1
    cost = 1 + len(source) // 1024
    for kind, name in _AUTODOC.findall(source):
        size = _module_source_size(name.decode()) if kind == b"module" else None
        cost += _AUTODOC_COST if size is None else 1 + size * 13 // 10240
    return cost


def _balanced_chunks(costs: dict[str, int], sizes: list[int], processes: int = 0) -> list[list[str]]:
    """``costs``' pages in chunks of ``sizes`` pages: the costliest first, each to the cheapest chunk with room.

    With ``processes``, the chunks that start at once: they take the costliest pages between them
    and the later chunks what is left, so that an autodoc page's imports and source analyses are
    repeated in as few processes as there are cores, not in every chunk.
    """
    chunks: list[list[str]] = [[] for _ in sizes]
    totals = [0] * len(sizes)
    first = range(min(processes, len(sizes))) if processes else range(len(sizes))
    for docname in sorted(costs, key=lambda name: (-costs[name], name)):
        open_chunks = [number for number in first if len(chunks[number]) < sizes[number]] or [
            number for number, size in enumerate(sizes) if len(chunks[number]) < size
        ]
        cheapest = min(open_chunks, key=lambda number: (totals[number], number))
        chunks[cheapest].append(docname)
        totals[cheapest] += costs[docname]
    return [sorted(chunk) for chunk in chunks]


#: Up to this many pages to read, a build reads and writes them in this process: a student's rerun of one lesson.
SERIAL_PAGES = 5


def _serial_for_a_handful(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
    """Read and write a handful of pages in this process, whatever ``-j`` says.

    Each process of a parallel read sends the whole environment back, pickled, to be merged, and a
    parallel write starts its own: for the three pages a rerun of lesson 3 rereads that costs more than
    reading them here (earlier Sphinx releases read five pages or fewer serially, whatever -j said).
    """
    if 0 < len(docnames) <= SERIAL_PAGES and app.parallel > 1:
        app.parallel = 1  # read before the writing decides (Builder.build): both phases stay in this process


def _balance_parallel_read(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
    """Order the pages to read so that the chunks Sphinx starts at once, one process a core, cost about the same.

    Sphinx cuts the sorted list into equal runs of pages (``make_chunks``) and starts as many as it
    has processes: every page of the API reference fell into the first run, and one core read them
    all while the other finished early. The later runs get the cheapest pages.
    """
    # Sphinx's own check (is_parallel_allowed) would warn a second time of an extension not parallel-safe.
    if app.parallel <= 1 or not all(extension.parallel_read_safe for extension in app.extensions.values()):
        return  # a serial read: its order is the sorted one, as always
    sizes = [len(chunk) for chunk in make_chunks(docnames, app.parallel)]
    costs = {docname: _reading_cost(Path(env.doc2path(docname))) for docname in docnames}
    docnames[:] = [docname for chunk in _balanced_chunks(costs, sizes, app.parallel) for docname in chunk]


def _a_writer_a_core(app: Sphinx, builder: Any) -> None:
    """Write the pages in as many processes as they were read in, beside the main process that resolves them.

    Sphinx writes in one process fewer than ``-j`` says: its main process resolves each page (references,
    the search index's words) and hands the pages over in runs, one run to a writing process. With one writer
    on two cores, the writer waited while the main process resolved the first run (the API pages, most of its
    work), and the main process idled while the writer went through the last runs alone. Two writers take
    smaller runs, the first sooner, and share the last ones. Runs only before a parallel write (a handful of
    pages is written in this process, ``_serial_for_a_handful``); the count is put back when the build ends.
    """
    if app.parallel > 1:
        _READING_PROCESSES[app] = app.parallel
        app.parallel += 1


def _as_many_processes_again(app: Sphinx, exception: Exception | None) -> None:
    app.parallel = _READING_PROCESSES.pop(app, app.parallel)


#: Of each application writing in one more process than it reads in: how many it reads in.
_READING_PROCESSES: weakref.WeakKeyDictionary[Sphinx, int] = weakref.WeakKeyDictionary()


class _PythonDomainLookingUpOnce(PythonDomain):
    """Sphinx's Python domain, each lookup of an object made once while the objects stay the same.

    Every type the API pages name in a parameter's description (``str``, ``Path``, ``dict``...) is a reference
    that Sphinx, finding no object of that name, looks up by suffix over every documented object: thousands of
    scans of the whole index in the build's main process, which resolves the pages one by one while another
    process writes them. A lookup's answer changes only when an object or a module is noted or forgotten.
    """

    def find_obj(
        self,
        env: BuildEnvironment,
        modname: str,
        classname: str,
        name: str,
        type: str | None,  # noqa: A002 - the name Sphinx calls it by
        searchmode: int = 0,
    ) -> list[tuple[str, ObjectEntry]]:
        found: dict[tuple, list[tuple[str, ObjectEntry]]] = self.__dict__.setdefault("_course_found", {})
        key = (modname, classname, name, type, searchmode)
        if key not in found:
            found[key] = super().find_obj(env, modname, classname, name, type, searchmode)
        return list(found[key])

    def _forget_lookups(self) -> None:
        self.__dict__.pop("_course_found", None)

    def note_object(self, *args: Any, **kwargs: Any) -> None:
        self._forget_lookups()
        super().note_object(*args, **kwargs)

    def note_module(self, *args: Any, **kwargs: Any) -> None:
        self._forget_lookups()
        super().note_module(*args, **kwargs)

    def clear_doc(self, docname: str) -> None:
        self._forget_lookups()
        super().clear_doc(docname)

    def merge_domaindata(self, docnames: Set[str], otherdata: dict[str, Any]) -> None:
        self._forget_lookups()
        super().merge_domaindata(docnames, otherdata)


def _outdated_when_sets_change(app: Sphinx, env: BuildEnvironment, added: set, changed: set, removed: set) -> list[str]:
    """Pages that list result sets must be rebuilt when a set appears or disappears."""
    signature = data_of(env).signature
    if getattr(env, "course_signature", None) == signature:
        return []
    env.course_signature = signature  # type: ignore[attr-defined]
    return sorted(getattr(env, "course_docs", set()) & set(env.all_docs))


def _forget_doc(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    getattr(env, "course_docs", set()).discard(docname)


def _merge(app: Sphinx, env: BuildEnvironment, docnames: set, other: BuildEnvironment) -> None:
    env.course_docs = getattr(env, "course_docs", set()) | (  # type: ignore[attr-defined]
        getattr(other, "course_docs", set()) & docnames
    )


def _link_values(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Point each value at its own row on its result set's page, with a URI right for this builder."""
    data = data_of(app.env)
    for node in doctree.findall(course_value):
        try:
            page = app.builder.get_relative_uri(docname, f"{app.config.course_machines_page}/{node['set_id']}")
        except Exception:  # builders without pages (linkcheck, text) have no URI to give
            node["href"] = ""
            continue
        lookup = data.find(node["measurement"], node["set_id"])
        if lookup and lookup.measurement:
            page += "#" + setdata.figure_target(node["measurement"], node.get("field", "min"), lookup.measurement)
        node["href"] = page
    # A set's data files sit beside its page in the output: their URI is relative to this page's.
    for node in doctree.findall(setdata.course_data_link):
        here = posixpath.dirname(app.builder.get_target_uri(docname))
        node["href"] = posixpath.relpath(node["target"], here or ".")


#: The site's navigation as the machine pages show it, by the keywords the theme asked it with (one build, one
#: process): they share one folder and are in no toctree, so each would render the very same tree.
_MACHINE_PAGES_NAVIGATION: dict[str, str] = {}


def _one_navigation_for_machine_pages(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree: nodes.document | None
) -> None:
    """Give the machine pages a ``toctree()`` that renders the navigation once for all of them.

    The theme (furo) lists the whole site on every page; rendered for each of 80 machine pages it
    took seconds of a class's build. Runs before the theme reads the context (priority 400).
    """
    project = app.project
    pages = getattr(project, "generated", {})
    if pagename not in pages or "toctree" not in context:
        return
    render = context["toctree"]

    def shared(**kwargs: Any) -> str:
        key = f"{posixpath.dirname(pagename)} {sorted(kwargs.items())!r}"
        if key not in _MACHINE_PAGES_NAVIGATION:
            _MACHINE_PAGES_NAVIGATION[key] = render(**kwargs)
        return _MACHINE_PAGES_NAVIGATION[key]

    context["toctree"] = shared


#: The set downloads' texts being computed while the pages are written (``_set_data_meanwhile``), by application.
_SET_DATA: weakref.WeakKeyDictionary[Sphinx, setdata.TextsMeanwhile] = weakref.WeakKeyDictionary()


def _set_data_meanwhile(app: Sphinx, builder: Any) -> None:
    """Start computing the set downloads in a process of their own, on the core the page writing leaves.

    Only in a parallel build: a serial one was asked to use one core.
    """
    if app.builder.format == "html" and app.parallel > 1:
        _SET_DATA[app] = setdata.TextsMeanwhile(data_of(app.env).with_pages())


def _write_set_data(app: Sphinx, exception: Exception | None) -> None:
    """Each shown set's measurements as JSON and CSV beside its page, once the HTML build succeeded."""
    meanwhile = _SET_DATA.pop(app, None)
    if exception is not None or app.builder.format != "html":
        if meanwhile is not None:
            meanwhile.close()
        return
    sets = data_of(app.env).with_pages()
    wanted = meanwhile.result() if meanwhile is not None and meanwhile.sets == sets else None
    # What each set's files were made from, beside the doctrees (a clean build has none): a rerun makes anew only
    # the files of the sets it changed.
    made_from = Path(app.doctreedir) / "course-set-data.json"
    try:
        before = json.loads(made_from.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or not ours to trust: every set's files are made
        before = {}
    digests = {s.id: setdata.digest(s) for s in sets}
    if not isinstance(before, dict):
        before = {}
    unchanged = {set_id for set_id, digest in digests.items() if before.get(set_id) == digest}
    setdata.write(Path(app.outdir) / app.config.course_machines_page, sets, wanted, unchanged)
    store.write_text(made_from, json.dumps(digests, indent=1, sort_keys=True))


def _copy_commands_too(app: Sphinx, config: Any) -> None:
    """A copy button on every code block and on every command of a captured output's caption.

    Console prompts need no pattern: Pygments marks them ``.gp`` (and a console's output
    ``.go``), which the button leaves out with the line numbers: what is copied runs as shown.
    """
    if "course-command" not in config.copybutton_selector:
        config.copybutton_selector += ", code.course-command"
    if config.copybutton_exclude == ".linenos":  # the button's default
        config.copybutton_exclude = ".linenos, .gp, .go"


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("course_results_dir", "results", "env", types=[str])
    app.add_config_value("course_current_set", "", "env", types=[str])
    app.add_config_value("course_sets", [], "env", types=[list])
    app.add_config_value("course_machines_page", "docs/machines", "env", types=[str])
    app.add_node(
        course_value,
        html=(visit_course_value, depart_course_value),
        latex=(lambda s, n: None, lambda s, n: None),
        text=(lambda s, n: None, lambda s, n: None),
    )
    app.add_node(
        setdata.course_data_link,
        html=(setdata.visit_course_data_link, setdata.depart_course_data_link),
        latex=(lambda s, n: None, lambda s, n: None),
        text=(lambda s, n: None, lambda s, n: None),
    )
    code.setup(app)
    progress.setup(app)
    published.setup(app)
    depends.setup(app)  # result files as dependencies, by content
    chartcache.setup(app)  # a chart is drawn again only when what it shows changed
    navigation.setup(app)  # the theme's navigation drawn again only when the table of contents changed
    toctrees.setup(app)  # a page is not written again for a reread page its toctree shows as before
    searchstems.setup(app)  # the search index's stems of earlier builds looked up, not computed again
    sourceanalysis.setup(app)  # autodoc's source analysis without the line ranges only viewcode reads
    defaults.setup(app)  # autodoc's defaults as written, each module's source parsed once
    titlesonly.setup(app)  # the navigation's entry of each page made once a process, not once a page written
    smartquotes.setup(app)  # smart quotes only for the blocks of text they can change
    epub.setup(app)  # the EPUB builder, its table of contents linked from the book's top (root page in docs/)
    app.add_role("measure", MeasureRole())
    app.add_role("host", HostRole())  # "this machine's own kernel", with the set's name and whether it is a VM
    app.add_directive("course-output", CourseOutput)
    app.add_directive("course-table", CourseTable)
    app.add_directive("course-chart", CourseChart)
    app.add_directive("course-size-line", CourseSizeLine)  # cost against read size, with the fitted line
    app.add_directive("course-answer", CourseAnswer)  # a lesson's answer, 2000 beside today (.answer)
    app.add_directive("course-failures", CourseFailures)
    app.add_directive("course-machine", CourseMachine)
    app.add_directive("course-hardware", CourseHardware)
    app.add_directive("course-machine-pages", CourseMachinePages)  # every set's page: they are in no toctree
    app.add_directive("course-mitigations", CourseMitigations)
    app.add_directive("course-kernel-run", CourseKernelRun)
    app.add_directive("course-context", CourseContext)
    app.add_directive("course-run-report", CourseRunReport)
    app.add_directive("course-kept", CourseKept)  # after a student's rerun: the figures kept, and from when
    app.add_directive("course-kernels", CourseKernels)  # the kernel matrix (course.publish.sphinxext.kernels)
    app.add_directive("course-trace-diff", CourseTraceDiff)
    app.add_directive("course-guest-mitigations", CourseGuestMitigations)  # lesson 8 (guest_mitigations)
    app.add_directive("course-trace-kinds", CourseTraceKinds)  # one read per kind of file (.traces)
    app.connect("builder-inited", _load_data)
    app.connect("html-page-context", name_graphviz_figures)
    app.connect("html-page-context", _one_navigation_for_machine_pages, priority=400)  # before the theme's
    app.connect("builder-inited", lambda app: _MACHINE_PAGES_NAVIGATION.clear())  # another build, another tree
    app.connect("env-get-outdated", _outdated_when_sets_change)
    app.connect("env-purge-doc", _forget_doc)
    app.connect("env-merge-info", _merge)
    app.connect("env-before-read-docs", _serial_for_a_handful, priority=400)  # before the chunks are balanced
    app.connect("env-before-read-docs", _balance_parallel_read)
    app.add_domain(_PythonDomainLookingUpOnce, override=True)  # the API pages' references resolved faster
    app.connect("doctree-resolved", _link_values)
    app.connect("write-started", _set_data_meanwhile)
    app.connect("write-started", _a_writer_a_core)  # Sphinx writes in -j - 1 processes beside the main one
    app.connect("build-finished", _as_many_processes_again)
    app.connect("build-finished", _write_set_data)
    app.add_css_file("course.css")
    app.add_js_file("course-values.js", loading_method="defer")  # a tap shows a figure's note (no hover on touch)
    app.add_js_file("course-tables.js", loading_method="defer")  # a wide table says it scrolls, where it does
    static = Path(__file__).parent / "static"
    app.connect("config-inited", lambda a, config: config.html_static_path.append(str(static)))
    app.setup_extension("sphinx_copybutton")
    app.connect("config-inited", _copy_commands_too, priority=400)  # before the button reads its selector
    return {
        "version": __version__,
        "parallel_read_safe": True,
        "parallel_write_safe": True,
        "env_version": _code_version(),
    }


def _code_version() -> int:
    """A number that changes with this extension's code.

    Pages hold the HTML its directives drew when they were read; Sphinx rereads every page
    when an extension's env_version changes, so a changed chart or table reaches every page.
    """
    return depends.code_version()
