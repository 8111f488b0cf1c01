"""``{course-trace-kinds}``: the call graphs of one read of several kinds of file, as one difference table.

The graphs (lesson 2's captures) share most of their lines: the dispatch, ``ksys_read()``, the
descriptor lookup, ``vfs_read()`` and its checks. A reader sees one graph in full above the
directive; the table names only the functions that some kinds of file call and others do not,
and every graph stays one click away, folded under it.
"""

from __future__ import annotations

from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives

from course.kernel import tracediff
from course.publish.sphinxext.base import MeasurementsDirective, entries, simple_table
from course.publish.sphinxext.code import course_fold
from course.publish.sphinxext.data import Lookup, shown_text


def kinds_table(graphs: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): each function that not every graph calls, and a mark under each kind that calls it.

    The functions come in the order of their first appearance, graph after graph, so that the table
    reads from the dispatch down to the methods.
    """
    called = {label: [call.name for call in tracediff.calls(text)] for label, text in graphs.items()}
    order = list(dict.fromkeys(name for names in called.values() for name in names))
    common = set.intersection(*(set(names) for names in called.values())) if called else set()
    rows = [
        [shown_call(name), *("✓" if name in called[label] else "" for label in graphs)]
        for name in order
        if name not in common
    ]
    rows.append(["functions in the graph", *(str(len(called[label])) for label in graphs)])
    return ["function", *graphs], rows


def shown_call(name: str) -> str:
    """A traced function as called: ``ovl_read_iter() [overlay]``, its module after the parentheses."""
    base, _, module = name.partition(" [")
    return f"{base}() [{module}" if module else f"{base}()"


class CourseTraceKinds(MeasurementsDirective):
    """This machine's call graphs of one read per kind of file: what differs, then each graph folded."""

    option_spec: ClassVar[dict] = {"caption": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        result_set = self.data.current
        if result_set is None:
            self.warn("no result set of this machine for the call graphs", "missing")
            return []
        graphs: dict[str, str] = {}
        for capture_id, label in entries(self.content):
            file = result_set.lesson_file(capture_id.split("/", 1)[0])
            self.use(Lookup(result_set, None, file if file.is_file() else None))
            capture = result_set.capture(capture_id)
            if capture is None:
                self.warn(f"output {capture_id!r} missing from result set {result_set.id!r}", "missing")
                continue
            graphs[label or capture_id] = shown_text(capture["text"])
        if not graphs:
            return []
        headers, rows = kinds_table(graphs)
        table = simple_table(headers, rows)
        table["classes"].append("course-trace-kinds")
        if self.options.get("caption"):
            table.insert(0, nodes.title(text=self.options["caption"]))
        fold = course_fold(summary="Show every call graph in full")
        for label, text in graphs.items():
            fold += nodes.paragraph(text=label)
            fold += nodes.literal_block(text, text, language="text")
        return [table, fold]
